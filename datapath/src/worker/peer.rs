//! What a worker keeps per peer it owns: the peer's transport state (sessions, traffic
//! timers, endpoint: `proto::transport`, whose rules the worker runs), how its datagrams
//! arrive, packets waiting for a handshake, and counters.

use std::time::Instant;

use proto::timers::RekeyGate;
use proto::transport::Transport;

use crate::io::BufId;
use crate::route::PeerId;

/// Packets held per peer while a handshake is pending.
pub const MAX_STAGED: usize = 32;

/// One owned peer.
#[derive(Debug, Default)]
pub struct PeerSlot {
    /// Sessions, traffic timers and endpoint.
    pub transport: Transport,
    /// How the endpoint's last authenticated datagram arrived (AF_XDP): replies leave that way.
    pub link: Option<crate::io::LinkPath>,
    /// Inner packets (buffer, length) waiting for a session.
    pub staged: Vec<(BufId, usize)>,
    /// Bytes of authenticated transport messages received.
    pub rx_bytes: u64,
    /// Bytes of transport messages sent.
    pub tx_bytes: u64,
    /// When the current session became usable.
    pub last_handshake: Option<Instant>,
    /// Requests for a handshake to the control plane: at most one per REKEY_TIMEOUT.
    pub asked: RekeyGate,
    /// rx_bytes + tx_bytes when the worker last looked, and since when they have not moved:
    /// idleness is read from the counters once a second, never stamped per packet.
    pub quiet: (u64, Option<Instant>),
}

impl PeerSlot {
    /// A peer with no sessions. Staging space is reserved when first needed: most peers of a
    /// large registry are idle, and 512 bytes each would add up.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The peers one worker owns. Worker `owner` of `stride` owns the peers whose number is
/// `owner` modulo `stride` (`messages::peer_owner`), so peer `id` sits at `id / stride`:
/// a dense table with no room spent on other workers' peers.
#[derive(Debug)]
pub struct PeerTable {
    slots: Vec<Option<PeerSlot>>,
    owner: usize,
    stride: usize,
}

impl PeerTable {
    /// The table of worker `owner` of `stride`.
    pub fn new(owner: usize, stride: usize) -> Self {
        Self {
            slots: Vec::new(),
            owner,
            stride: stride.max(1),
        }
    }

    fn local(&self, id: PeerId) -> Option<usize> {
        let id = id as usize;
        (id % self.stride == self.owner).then_some(id / self.stride)
    }

    /// Peer `id`, if this worker has it.
    pub fn get(&self, id: PeerId) -> Option<&PeerSlot> {
        self.slots.get(self.local(id)?)?.as_ref()
    }

    /// Peer `id`, mutably, if this worker has it.
    pub fn get_mut(&mut self, id: PeerId) -> Option<&mut PeerSlot> {
        let i = self.local(id)?;
        self.slots.get_mut(i)?.as_mut()
    }

    /// Peer `id`, created if new; `None` if another worker owns it.
    pub fn get_or_insert(&mut self, id: PeerId) -> Option<&mut PeerSlot> {
        let i = self.local(id)?;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        Some(self.slots[i].get_or_insert_with(PeerSlot::new))
    }

    /// Removes peer `id`.
    pub fn take(&mut self, id: PeerId) -> Option<PeerSlot> {
        let i = self.local(id)?;
        self.slots.get_mut(i)?.take()
    }

    /// The numbers of the peers held (for walks that need `&mut self` of the worker).
    pub fn ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| (i * self.stride + self.owner) as PeerId)
    }

    /// Every peer held, with its number, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (PeerId, &mut PeerSlot)> + '_ {
        let (stride, owner) = (self.stride, self.owner);
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(move |(i, s)| s.as_mut().map(|s| ((i * stride + owner) as PeerId, s)))
    }

    /// Every peer held, with its number.
    pub fn iter(&self) -> impl Iterator<Item = (PeerId, &PeerSlot)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.as_ref()
                .map(|s| ((i * self.stride + self.owner) as PeerId, s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_holds_only_its_own_peers_densely() {
        let mut t = PeerTable::new(1, 3);
        assert!(t.get_or_insert(4).is_some(), "4 % 3 == 1");
        assert!(t.get_or_insert(5).is_none(), "worker 2 owns 5");
        assert!(t.get_or_insert(1).is_some());
        assert_eq!(t.slots.len(), 2, "ids 1 and 4 at 0 and 1");
        assert_eq!(t.ids().collect::<Vec<_>>(), vec![1, 4]);
        assert!(t.take(4).is_some() && t.get(4).is_none());
        assert_eq!(t.iter().map(|(id, _)| id).collect::<Vec<_>>(), vec![1]);
    }
}
