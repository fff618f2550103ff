//! Cryptokey routing: allowed IPs → peer, by longest-prefix match.
//!
//! Outbound, the destination of an inner packet picks the peer to encrypt for. Inbound, the
//! source of a decrypted packet must map back to the peer whose key opened it. One table serves
//! both; the control plane owns the master copy and hands workers read-only snapshots.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// A peer's number, dense and reused, shared by the control plane and the workers.
pub type PeerId = u32;

/// The allowed-IPs table of one interface.
#[derive(Clone, Default)]
pub struct AllowedIps {
    v4: PrefixMap<Ipv4Net, PeerId>,
    v6: PrefixMap<Ipv6Net, PeerId>,
}

impl std::fmt::Debug for AllowedIps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllowedIps")
            .field("v4", &self.v4.len())
            .field("v6", &self.v6.len())
            .finish()
    }
}

impl AllowedIps {
    /// Routes `net` (host bits cleared) to `peer`; returns the peer that had it before, as
    /// WireGuard moves a prefix from one peer to another.
    pub fn insert(&mut self, net: IpNet, peer: PeerId) -> Option<PeerId> {
        match net.trunc() {
            IpNet::V4(n) => self.v4.insert(n, peer),
            IpNet::V6(n) => self.v6.insert(n, peer),
        }
    }

    /// Removes `net` if `peer` has it.
    pub fn remove(&mut self, net: IpNet, peer: PeerId) {
        match net.trunc() {
            IpNet::V4(n) => {
                if self.v4.get(&n) == Some(&peer) {
                    self.v4.remove(&n);
                }
            }
            IpNet::V6(n) => {
                if self.v6.get(&n) == Some(&peer) {
                    self.v6.remove(&n);
                }
            }
        }
    }

    /// Removes every prefix of `peer`.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.v4.retain(|_, p| *p != peer);
        self.v6.retain(|_, p| *p != peer);
    }

    /// The peer whose most specific prefix contains `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<PeerId> {
        match addr {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, p)| *p),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, p)| *p),
        }
    }

    /// The peer that has exactly `net`, if any.
    pub fn owner(&self, net: IpNet) -> Option<PeerId> {
        match net.trunc() {
            IpNet::V4(n) => self.v4.get(&n).copied(),
            IpNet::V6(n) => self.v6.get(&n).copied(),
        }
    }

    /// Every prefix of `peer`, IPv4 first, in address order.
    pub fn of_peer(&self, peer: PeerId) -> Vec<IpNet> {
        let v4 = self
            .v4
            .iter()
            .filter(|(_, p)| **p == peer)
            .map(|(n, _)| IpNet::V4(n));
        let v6 = self
            .v6
            .iter()
            .filter(|(_, p)| **p == peer)
            .map(|(n, _)| IpNet::V6(n));
        v4.chain(v6).collect()
    }

    /// Every prefix, IPv4 first, in address order.
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        let v4 = self.v4.iter().map(|(n, _)| IpNet::V4(n));
        v4.chain(self.v6.iter().map(|(n, _)| IpNet::V6(n)))
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True if no prefix is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A worker's view of the table: the snapshot it was last handed, and the last address it
/// looked up there (a stream asks for the same one packet after packet, its replies for the
/// same address as their destination), so that lookup is a comparison, not a trie walk.
#[derive(Debug, Default)]
pub struct Routes {
    table: Arc<AllowedIps>,
    last: Option<(IpAddr, Option<PeerId>)>,
}

impl Routes {
    /// Takes a new snapshot; what the old one answered is forgotten with it.
    pub fn replace(&mut self, table: Arc<AllowedIps>) {
        self.table = table;
        self.last = None;
    }

    /// The peer whose most specific prefix contains `addr` (`AllowedIps::lookup`).
    pub fn lookup(&mut self, addr: IpAddr) -> Option<PeerId> {
        match self.last {
            Some((last, peer)) if last == addr => peer,
            _ => {
                let peer = self.table.lookup(addr);
                self.last = Some((addr, peer));
                peer
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn longest_prefix_wins_and_families_are_separate() {
        let mut t = AllowedIps::default();
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.1.0.0/16"), 2);
        t.insert(net("10.1.2.3/32"), 3);
        t.insert(net("::/0"), 4);
        assert_eq!(t.lookup(ip("10.9.9.9")), Some(1));
        assert_eq!(t.lookup(ip("10.1.9.9")), Some(2));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(3));
        assert_eq!(t.lookup(ip("11.0.0.1")), None);
        assert_eq!(t.lookup(ip("fd00::1")), Some(4));
    }

    #[test]
    fn prefixes_move_between_peers_and_host_bits_are_cleared() {
        let mut t = AllowedIps::default();
        assert_eq!(t.insert(net("10.0.0.5/24"), 1), None);
        assert_eq!(t.owner(net("10.0.0.0/24")), Some(1));
        assert_eq!(t.insert(net("10.0.0.0/24"), 2), Some(1));
        assert_eq!(t.of_peer(1), vec![]);
        t.remove(net("10.0.0.0/24"), 1);
        assert_eq!(
            t.lookup(ip("10.0.0.9")),
            Some(2),
            "removing another peer's prefix is a no-op"
        );
        t.insert(net("fd00::/64"), 2);
        assert_eq!(t.of_peer(2), vec![net("10.0.0.0/24"), net("fd00::/64")]);
        t.remove_peer(2);
        assert!(t.is_empty());
    }

    #[test]
    fn a_worker_view_answers_as_the_table_and_forgets_with_a_new_snapshot() {
        let mut t = AllowedIps::default();
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.1.0.0/16"), 2);
        let mut routes = Routes::default();
        routes.replace(Arc::new(t.clone()));
        for addr in [
            "10.1.2.3", "10.1.2.3", "10.9.9.9", "11.0.0.1", "11.0.0.1", "10.1.2.3",
        ] {
            assert_eq!(routes.lookup(ip(addr)), t.lookup(ip(addr)), "{addr}");
        }
        // The same address asked again after the table changed gets the new answer.
        t.insert(net("10.1.2.0/24"), 3);
        routes.replace(Arc::new(t));
        assert_eq!(routes.lookup(ip("10.1.2.3")), Some(3));
        routes.replace(Arc::new(AllowedIps::default()));
        assert_eq!(routes.lookup(ip("10.1.2.3")), None);
    }
}
