//! The peers the control plane knows: keys, allowed IPs, endpoint, and handshake state.
//! Also the master allowed-IPs table, from which workers get read-only snapshots.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use datapath::route::{AllowedIps, PeerId};
use ipnet::IpNet;
use proto::cookie::CookieJar;
use proto::handshake::{LocalIdentity, RemotePeer};
use proto::initiator::Initiator;

use crate::responders::{Directory, PeerKeys};
use proto::{PresharedKey, PublicKey};

/// One peer, as the control plane sees it. What only a handshake needs is boxed and made
/// on demand: a registry of 100,000 mostly idle peers should cost little memory.
pub struct Peer {
    /// Its number (shared with the workers).
    pub id: PeerId,
    /// Its static public key.
    pub public_key: PublicKey,
    /// Optional preshared key.
    pub preshared_key: Option<PresharedKey>,
    /// Handshake values and replay guard, shared with the responder threads; `None` while
    /// the interface has no private key.
    pub keys: Option<Arc<PeerKeys>>,
    /// MAC1/MAC2 stamping for messages to it, and its cookie; made on first use (`jar`).
    jar: Option<Box<CookieJar>>,
    /// Its allowed IPs, in the order they were added.
    pub allowed_ips: Vec<IpNet>,
    /// Where it was last seen (or configured).
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive in seconds (0 = off).
    pub persistent_keepalive: u16,
    /// Our handshakes with it: the pending initiation and its retransmit timer.
    pub initiator: Initiator,
    /// Handshake bytes received from it (WireGuard counts these in rx_bytes).
    pub handshake_rx_bytes: u64,
    /// Handshake bytes sent to it.
    pub handshake_tx_bytes: u64,
    /// The index of its newest session here (its transport messages name it).
    pub session_index: Option<u32>,
}

impl Peer {
    /// MAC1/MAC2 stamping for messages to it, and the cookie it sent us.
    pub fn jar(&mut self) -> &mut CookieJar {
        let key = self.public_key;
        self.jar
            .get_or_insert_with(|| Box::new(CookieJar::for_recipient(&key)))
    }

    /// The cookie jar and our handshakes with it, together (an initiation is stamped with
    /// the one and kept by the other).
    pub fn jar_and_initiator(&mut self) -> (&mut CookieJar, &mut Initiator) {
        let key = self.public_key;
        let jar = self
            .jar
            .get_or_insert_with(|| Box::new(CookieJar::for_recipient(&key)));
        (jar, &mut self.initiator)
    }

    /// The peer's handshake values, if we have a private key.
    pub fn remote(&self) -> Option<&RemotePeer> {
        self.keys.as_deref().map(|k| &k.remote)
    }
}

/// Every peer, by number and by key, and the master routing table.
#[derive(Default)]
pub struct Peers {
    slots: Vec<Option<Peer>>,
    /// Numbers of removed peers, for reuse (workers index their tables by number).
    free: Vec<PeerId>,
    by_key: HashMap<PublicKey, PeerId>,
    /// Allowed IPs of all peers.
    pub routes: AllowedIps,
    /// What the responder threads see of the peers.
    directory: Arc<Directory>,
}

impl Peers {
    /// The directory the responder threads read.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.clone()
    }

    /// Computes a peer's handshake values (new, or after our key or its preshared key
    /// changed; the replay guard carries over) and publishes them. A pending initiation made
    /// with the old values is the caller's to free: its index is in `Indices`.
    pub fn refresh_keys(&mut self, id: PeerId, identity: Option<&LocalIdentity>) {
        let Some(p) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        let previous = p.keys.take();
        p.keys = identity.map(|local| {
            let remote = RemotePeer::new(local, p.public_key, p.preshared_key.clone());
            Arc::new(PeerKeys::succeeding(id, remote, previous.as_deref()))
        });
        match &p.keys {
            Some(k) => self.directory.insert(p.public_key, k.clone()),
            None => self.directory.remove(&p.public_key),
        }
    }

    /// The peer with this number.
    pub fn get(&self, id: PeerId) -> Option<&Peer> {
        self.slots.get(id as usize)?.as_ref()
    }

    /// The peer with this number, mutably.
    pub fn get_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// Makes room for `more` peers at once (a bulk load grows each table once, not by doubling).
    pub fn reserve(&mut self, more: usize) {
        let free = self.free.len();
        self.slots.reserve(more.saturating_sub(free));
        self.by_key.reserve(more);
        self.directory.reserve(more);
    }

    /// The number of the peer with this key.
    pub fn id_of(&self, key: &PublicKey) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    /// Adds a peer with this key; returns its number.
    pub fn insert(&mut self, public_key: PublicKey, identity: Option<&LocalIdentity>) -> PeerId {
        let id = self.free.pop().unwrap_or(self.slots.len() as PeerId);
        let peer = Peer {
            id,
            public_key,
            preshared_key: None,
            keys: None,
            jar: None,
            allowed_ips: Vec::new(),
            endpoint: None,
            persistent_keepalive: 0,
            initiator: Initiator::default(),
            handshake_rx_bytes: 0,
            handshake_tx_bytes: 0,
            session_index: None,
        };
        if id as usize == self.slots.len() {
            self.slots.push(Some(peer));
        } else {
            self.slots[id as usize] = Some(peer);
        }
        self.by_key.insert(public_key, id);
        self.refresh_keys(id, identity);
        id
    }

    /// Removes a peer and its routes.
    pub fn remove(&mut self, id: PeerId) -> Option<Peer> {
        let peer = self.slots.get_mut(id as usize)?.take()?;
        self.free.push(id);
        self.by_key.remove(&peer.public_key);
        self.directory.remove(&peer.public_key);
        // The peer's own list, not a sweep of the table: removing many peers stays linear.
        for net in &peer.allowed_ips {
            self.routes.remove(*net, id);
        }
        Some(peer)
    }

    /// Routes `net` to peer `id`, taking it from whichever peer had it.
    pub fn add_allowed_ip(&mut self, id: PeerId, net: IpNet) {
        let net = net.trunc();
        if let Some(previous) = self.routes.insert(net, id) {
            if previous != id {
                if let Some(p) = self.get_mut(previous) {
                    p.allowed_ips.retain(|n| *n != net);
                }
            }
        }
        if let Some(p) = self.get_mut(id) {
            if !p.allowed_ips.contains(&net) {
                p.allowed_ips.push(net);
            }
        }
    }

    /// Stops routing `net` to peer `id`.
    pub fn remove_allowed_ip(&mut self, id: PeerId, net: IpNet) {
        let net = net.trunc();
        self.routes.remove(net, id);
        if let Some(p) = self.get_mut(id) {
            p.allowed_ips.retain(|n| *n != net);
        }
    }

    /// Removes every allowed IP of peer `id`.
    pub fn clear_allowed_ips(&mut self, id: PeerId) {
        let Some(p) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        for net in p.allowed_ips.drain(..) {
            self.routes.remove(net, id);
        }
    }

    /// Every peer, in number order.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.slots.iter().flatten()
    }

    /// Every peer, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.slots.iter_mut().flatten()
    }

    /// Peer numbers in use lie below this.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The peers numbered in `range` (clamped to the numbers in use).
    pub fn in_slots(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &Peer> {
        let end = range.end.min(self.slots.len());
        let start = range.start.min(end);
        self.slots[start..end].iter().flatten()
    }

    /// Numbers of every peer.
    pub fn ids(&self) -> Vec<PeerId> {
        self.iter().map(|p| p.id).collect()
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True if there are no peers.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::PrivateKey;

    #[test]
    fn prefixes_move_between_peers_and_ids_are_reused() {
        let mut peers = Peers::default();
        let a = peers.insert(PrivateKey::from_bytes([1; 32]).public_key(), None);
        let b = peers.insert(PrivateKey::from_bytes([2; 32]).public_key(), None);
        let net: IpNet = "10.0.0.0/24".parse().expect("net");
        peers.add_allowed_ip(a, net);
        peers.add_allowed_ip(b, "10.0.0.7/24".parse().expect("net"));
        assert!(
            peers.get(a).expect("a").allowed_ips.is_empty(),
            "moved away from a"
        );
        assert_eq!(peers.get(b).expect("b").allowed_ips, vec![net]);
        peers.remove(a);
        let c = peers.insert(PrivateKey::from_bytes([3; 32]).public_key(), None);
        assert_eq!(c, a, "the freed number is reused");
        assert_eq!(peers.len(), 2);
    }
}
