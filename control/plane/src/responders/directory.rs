//! What the responder threads may read of the peers: our identity, each peer's handshake
//! values, and each peer's replay guard. The control plane writes it when peers or our key
//! change; responder threads only read, under a read lock held for a lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use datapath::route::PeerId;
use proto::handshake::{LocalIdentity, RemotePeer};
use proto::responder::{GuardRefusal, InitiationGuard, ResponderPeers};
use proto::tai64n::Tai64N;
use proto::PublicKey;

/// One peer's handshake values and the guard its initiations pass.
pub struct PeerKeys {
    /// The peer's number.
    pub id: PeerId,
    /// Values derived from its key, our key and the preshared key.
    pub remote: RemotePeer,
    /// Shared with the keys this replaced and the keys that replace it: a responder still
    /// holding old keys must record what it accepts where the new keys see it.
    guard: Arc<Mutex<InitiationGuard>>,
}

impl PeerKeys {
    /// Keys for peer `id`, with a fresh guard.
    pub fn new(id: PeerId, remote: RemotePeer) -> Self {
        Self {
            id,
            remote,
            guard: Arc::new(Mutex::new(InitiationGuard::default())),
        }
    }

    /// Keys for peer `id` that replace `previous` (our key or its preshared key changed): the
    /// replay guard carries over, or an initiation captured before the change would be
    /// accepted again (and move the peer's endpoint to whoever replayed it).
    pub fn succeeding(id: PeerId, remote: RemotePeer, previous: Option<&PeerKeys>) -> Self {
        Self {
            id,
            remote,
            guard: previous.map_or_else(Default::default, |p| p.guard.clone()),
        }
    }
}

#[derive(Default)]
struct Entries {
    local: Option<Arc<LocalIdentity>>,
    peers: HashMap<PublicKey, Arc<PeerKeys>>,
}

/// Our identity and every peer's keys, shared with the responder threads.
#[derive(Default)]
pub struct Directory {
    entries: RwLock<Entries>,
    /// Where new peers go to be precomputed in idle time (once started).
    warmer: OnceLock<crossbeam_channel::Sender<super::warmup::WarmJob>>,
}

impl Directory {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Our identity, if we have a private key.
    pub fn local(&self) -> Option<Arc<LocalIdentity>> {
        self.read().local.clone()
    }

    /// The keys of the peer with this public key.
    pub fn peer(&self, key: &PublicKey) -> Option<Arc<PeerKeys>> {
        self.read().peers.get(key).cloned()
    }

    /// Replaces our identity.
    pub fn set_local(&self, local: Option<Arc<LocalIdentity>>) {
        self.write().local = local;
    }

    /// Starts precomputing every peer published from now on, in idle time.
    pub fn warm_in_background(&self) -> std::io::Result<()> {
        if self.warmer.get().is_none() {
            let _ = self.warmer.set(super::warmup::start()?);
        }
        Ok(())
    }

    /// Publishes (or replaces) a peer's keys.
    pub fn insert(&self, key: PublicKey, keys: Arc<PeerKeys>) {
        let mut entries = self.write();
        if let (Some(warmer), Some(local)) = (self.warmer.get(), &entries.local) {
            let _ = warmer.send((Arc::downgrade(&keys), Arc::downgrade(local)));
        }
        entries.peers.insert(key, keys);
    }

    /// Makes room for `more` peers at once.
    pub fn reserve(&self, more: usize) {
        self.write().peers.reserve(more);
    }

    /// Withdraws a peer's keys.
    pub fn remove(&self, key: &PublicKey) {
        self.write().peers.remove(key);
    }
}

/// The directory as the responder rules (`proto::responder`) look peers up: each peer's
/// guard is shared with the keys before and after it, behind a lock held only for the check.
impl ResponderPeers for &Directory {
    type Peer = Arc<PeerKeys>;

    fn find(&self, initiator: &PublicKey) -> Option<Arc<PeerKeys>> {
        self.peer(initiator)
    }

    fn remote<'a>(&'a self, peer: &'a Arc<PeerKeys>) -> &'a RemotePeer {
        &peer.remote
    }

    fn admit(
        &mut self,
        peer: &Arc<PeerKeys>,
        timestamp: Tai64N,
        now: Instant,
    ) -> Result<(), GuardRefusal> {
        let mut guard = peer.guard.lock().unwrap_or_else(|e| e.into_inner());
        guard.admit(timestamp, now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use proto::PrivateKey;

    #[test]
    fn the_guard_refuses_old_timestamps_and_bursts() {
        let local = LocalIdentity::new(&PrivateKey::from_bytes([1; 32]));
        let remote = RemotePeer::new(&local, PrivateKey::from_bytes([2; 32]).public_key(), None);
        let keys = Arc::new(PeerKeys::new(0, remote));
        let dir = Directory::default();
        let mut peers = &dir;
        let t0 = Instant::now();
        let ts = |s| Tai64N::from_unix(Duration::from_secs(s));
        assert_eq!(peers.admit(&keys, ts(10), t0), Ok(()));
        assert_eq!(
            peers.admit(&keys, ts(10), t0 + Duration::from_secs(1)),
            Err(GuardRefusal::Replayed)
        );
        assert_eq!(
            peers.admit(&keys, ts(11), t0 + Duration::from_millis(5)),
            Err(GuardRefusal::TooSoon)
        );
        assert_eq!(
            peers.admit(&keys, ts(11), t0 + Duration::from_secs(1)),
            Ok(())
        );
        let remote = RemotePeer::new(&local, PrivateKey::from_bytes([2; 32]).public_key(), None);
        let next = Arc::new(PeerKeys::succeeding(0, remote, Some(&keys)));
        assert_eq!(
            peers.admit(&next, ts(11), t0 + Duration::from_secs(5)),
            Err(GuardRefusal::Replayed),
            "the guard survives new keys"
        );
    }
}
