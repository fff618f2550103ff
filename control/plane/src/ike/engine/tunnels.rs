//! What the responder gives the datapath for each user: a tunnel number owned by one worker,
//! CHILD_SA SPIs that name that worker, each CHILD_SA's packet rules, and how its ESP
//! travels, reported to the control plane as `EspChange`s.

use std::collections::VecDeque;

use datapath::io::EspEncap;
use datapath::messages::{EspSa, ESP_TUNNEL};
use datapath::route::PeerId;
use ike::esp::{Inbound, Outbound};
use ike::{ChildSa, IkeSa};
use ring::rand::SecureRandom;

/// Tunnel numbers, handed out per worker: number `n` belongs to worker `n % workers`, as
/// `messages::peer_owner` reads it.
pub(super) struct TunnelNumbers {
    workers: usize,
    /// Per worker: the next never-used number's multiple, and numbers given back (reused
    /// oldest first, so a number is not at once another user's while its old routes may
    /// still be in a worker's table).
    next: Vec<u32>,
    free: Vec<VecDeque<PeerId>>,
}

impl TunnelNumbers {
    /// Numbers for `workers` workers (at least one).
    pub(super) fn new(workers: usize) -> Self {
        let workers = workers.clamp(1, datapath::messages::MAX_WORKERS);
        Self {
            workers,
            next: vec![0; workers],
            free: vec![VecDeque::new(); workers],
        }
    }

    /// How many workers share the tunnels.
    pub(super) fn workers(&self) -> usize {
        self.workers
    }

    /// A tunnel number owned by `worker`.
    pub(super) fn take(&mut self, worker: usize) -> PeerId {
        let w = worker % self.workers;
        if let Some(n) = self.free[w].pop_front() {
            return n;
        }
        let k = self.next[w];
        self.next[w] += 1;
        ESP_TUNNEL | (k * self.workers as u32 + w as u32)
    }

    /// Gives a number back.
    pub(super) fn give_back(&mut self, tunnel: PeerId) {
        let w = datapath::messages::peer_owner(tunnel, self.workers);
        self.free[w].push_back(tunnel);
    }
}

/// A random inbound SPI whose top byte names `worker` (`messages::spi_owner`), never below 256
/// (RFC 4303 reserves 1-255); `None` without randomness.
pub(super) fn spi_for(worker: usize, rng: &dyn SecureRandom) -> Option<[u8; 4]> {
    loop {
        let mut spi = [0u8; 4];
        rng.fill(&mut spi[1..]).ok()?;
        spi[0] = worker as u8;
        if u32::from_be_bytes(spi) >= 256 {
            return Some(spi);
        }
    }
}

/// How ESP travels to the peer of `sa`: in UDP where NAT detection found a NAT on either
/// side (or we claimed one, when the datapath does not take raw ESP: `raw_esp` false), as IP
/// protocol 50 otherwise. The worker follows the peer's own packets from then on.
pub(super) fn encap_of(sa: &IkeSa, raw_esp: bool) -> EspEncap {
    let nat = sa.keys().nat;
    if raw_esp && !nat.peer_behind_nat && !nat.self_behind_nat {
        EspEncap::Raw
    } else {
        EspEncap::Udp
    }
}

/// A CHILD_SA's packet rules as the responder runs them: it receives on `spi_r` with the
/// initiator's keys and sends on `spi_i` with its own.
pub(super) fn esp_sa(child: &ChildSa) -> Result<Box<EspSa>, String> {
    let inbound =
        Inbound::new(child.spi_r, &child.suite, &child.i_to_r).map_err(|e| e.to_string())?;
    let outbound =
        Outbound::new(child.spi_i, &child.suite, &child.r_to_i).map_err(|e| e.to_string())?;
    Ok(Box::new(EspSa { inbound, outbound }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::messages::{peer_owner, spi_owner};

    #[test]
    fn tunnels_and_spis_name_the_same_worker() {
        let rng = ring::rand::SystemRandom::new();
        let mut numbers = TunnelNumbers::new(3);
        for worker in 0..3 {
            for _ in 0..5 {
                let t = numbers.take(worker);
                assert_eq!(peer_owner(t, 3), worker);
                assert!(datapath::messages::is_esp(t));
                let spi = spi_for(worker, &rng).expect("randomness");
                assert_eq!(spi_owner(u32::from_be_bytes(spi)), worker);
                assert!(u32::from_be_bytes(spi) >= 256);
            }
        }
        let t = numbers.take(1);
        numbers.give_back(t);
        assert_eq!(
            numbers.take(1),
            t,
            "a number given back is reused by its worker"
        );
    }
}
