//! IKE_SA_INIT through the same fair admission as WireGuard's initiations
//! (`admission::Admission`): a request that would cost a key exchange waits in its source's
//! queue (sources that proved their address with a cookie in a queue of their own, served
//! first), so a flood from a few addresses fills only its own queues and a newcomer is served
//! within a round. A source over its share, or a full backlog, gets a COOKIE reply and no key
//! exchange. Everything else (retransmissions, messages of existing SAs) is cheap and goes
//! to the engine at once.

use std::net::SocketAddr;
use std::time::Instant;

use super::engine::{IkeEngine, Outgoing};
use crate::admission::{Admission, Refused, SourceKey};

/// IKE_SA_INIT requests waiting, from sources that have not proved their address, and from
/// those that have.
const BACKLOG: usize = 1024;
const PROVEN_BACKLOG: usize = 1024;

/// One datagram as the readers pass it on.
#[derive(Debug)]
pub struct Datagram {
    /// The IKE message (non-ESP marker removed).
    pub bytes: Vec<u8>,
    /// Who sent it.
    pub from: SocketAddr,
    /// Our address and port it reached.
    pub to: SocketAddr,
}

/// The admission in front of the engine's key exchanges.
pub struct InitIntake {
    admission: Admission<Datagram>,
}

/// A datagram's fingerprint for the replay filter: its bytes, and the second it came in.
/// IKE retransmits the same bytes (a second or more apart), so a copy within the same second
/// is a replay and one a second later a retransmission the engine may answer.
fn fingerprint(bytes: &[u8], now: Instant, epoch: Instant) -> [u8; 32] {
    let second = now.saturating_duration_since(epoch).as_secs().to_be_bytes();
    let d = ring::digest::digest(&ring::digest::SHA256, &[bytes, &second].concat());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl InitIntake {
    /// An empty intake.
    pub fn new(now: Instant) -> Self {
        Self {
            admission: Admission::new(BACKLOG, PROVEN_BACKLOG, now),
        }
    }

    /// Takes `d` at `now` (`epoch`: when the service began): answered at once, queued, or
    /// turned away with a cookie. Returns what to send now.
    pub fn arrive(
        &mut self,
        engine: &mut IkeEngine,
        d: Datagram,
        (now, epoch): (Instant, Instant),
    ) -> Vec<Outgoing> {
        let Some(proven) = engine.new_init(&d.bytes, d.from) else {
            return engine.on_message(&d.bytes, d.from, d.to, now);
        };
        let print = fingerprint(&d.bytes, now, epoch);
        let (bytes, from, to) = (d.bytes.clone(), d.from, d.to);
        match self
            .admission
            .offer(SourceKey::of(d.from), proven, &print, d, now)
        {
            Ok(()) => Vec::new(),
            Err(Refused::Replay) => {
                engine.count_drop("IKE_SA_INIT replayed");
                Vec::new()
            }
            // A proven source over its share waits for its next retransmission.
            Err(_) if proven => {
                engine.count_drop("IKE_SA_INIT over its source's share");
                Vec::new()
            }
            Err(_) => engine.cookie_reply(&bytes, from, to),
        }
    }

    /// Up to `room` queued requests answered (key exchanges made); what to send.
    pub fn work(&mut self, engine: &mut IkeEngine, room: usize) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for d in self.admission.take(room) {
            out.extend(engine.on_message(&d.bytes, d.from, d.to, Instant::now()));
        }
        out
    }

    /// Requests waiting.
    pub fn waiting(&self) -> usize {
        self.admission.waiting()
    }
}
