//! Idle-time precomputation of each peer's static-static Diffie-Hellman. Peers are loaded
//! lazily (a daemon with 100,000 peers must answer at once), so each one's first handshake
//! would pay an extra X25519; users are registered long before the morning they all log
//! in, so a thread at the lowest scheduling class (SCHED_IDLE: it runs only when a core
//! has nothing else to do) computes it for every new peer in the meantime.

use std::sync::Weak;

use crossbeam_channel::{Receiver, Sender};
use proto::handshake::LocalIdentity;

use super::directory::PeerKeys;

/// A peer to precompute and the identity to precompute it for, both held weakly: a peer
/// removed (or a key replaced) before its turn costs nothing and keeps nothing alive.
pub type WarmJob = (Weak<PeerKeys>, Weak<LocalIdentity>);

/// Starts the warm-up thread; it ends when every sender is dropped.
pub fn start() -> std::io::Result<Sender<WarmJob>> {
    let (tx, rx) = crossbeam_channel::unbounded::<WarmJob>();
    std::thread::Builder::new()
        .name("xgate-hs-warm".into())
        .spawn(move || {
            lowest_priority();
            warm(&rx);
        })?;
    Ok(tx)
}

fn warm(rx: &Receiver<WarmJob>) {
    while let Ok((keys, local)) = rx.recv() {
        if let (Some(k), Some(local)) = (keys.upgrade(), local.upgrade()) {
            k.remote.precompute(&local);
        }
    }
}

/// SCHED_IDLE for the calling thread (falls back to nice 19 if refused).
fn lowest_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is valid for the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        // SAFETY: plain syscall on the calling thread.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responders::Directory;
    use proto::handshake::RemotePeer;
    use proto::PrivateKey;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn new_peers_are_precomputed_in_the_background() {
        let dir = Directory::default();
        dir.warm_in_background().expect("warm-up thread");
        let local = Arc::new(LocalIdentity::new(&PrivateKey::from_bytes([7; 32])));
        dir.set_local(Some(local.clone()));
        let keys: Vec<Arc<PeerKeys>> = (0..50u8)
            .map(|i| {
                let public = PrivateKey::from_bytes([i + 10; 32]).public_key();
                let k = Arc::new(PeerKeys::new(
                    i.into(),
                    RemotePeer::new(&local, public, None),
                ));
                assert!(
                    !k.remote.is_precomputed(),
                    "nothing is computed on creation"
                );
                dir.insert(public, k.clone());
                k
            })
            .collect();
        let until = Instant::now() + Duration::from_secs(10);
        while keys.iter().any(|k| !k.remote.is_precomputed()) {
            assert!(
                Instant::now() < until,
                "the warm-up thread precomputes every peer"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
