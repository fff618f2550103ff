//! The peers the control plane knows: keys, allowed IPs, endpoint, and handshake state.
//! Also the master allowed-IPs table, from which workers get read-only snapshots.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use datapath::route::{AllowedIps, PeerId};
use ipnet::IpNet;
use proto::cookie::CookieJar;
use proto::handshake::{InitiatorHandshake, LocalIdentity, RemotePeer};
use proto::tai64n::Tai64N;
use proto::timers::HandshakeTimers;
use proto::{PresharedKey, PublicKey};

/// One peer, as the control plane sees it.
pub struct Peer {
    /// Its number (shared with the workers).
    pub id: PeerId,
    /// Its static public key.
    pub public_key: PublicKey,
    /// Optional preshared key.
    pub preshared_key: Option<PresharedKey>,
    /// Precomputed handshake values; `None` while the interface has no private key.
    pub remote: Option<RemotePeer>,
    /// MAC1/MAC2 stamping for messages to it, and its cookie.
    pub jar: CookieJar,
    /// Its allowed IPs, in the order they were added.
    pub allowed_ips: Vec<IpNet>,
    /// Where it was last seen (or configured).
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive in seconds (0 = off).
    pub persistent_keepalive: u16,
    /// Our initiation awaiting its response.
    pub pending: Option<InitiatorHandshake>,
    /// Retransmission of our initiations.
    pub timers: HandshakeTimers,
    /// Newest initiation timestamp accepted from it (replay protection).
    pub last_timestamp: Option<Tai64N>,
    /// When we last accepted an initiation from it (flood protection).
    pub last_initiation_consumed: Option<Instant>,
    /// Handshake bytes received from it (WireGuard counts these in rx_bytes).
    pub handshake_rx_bytes: u64,
    /// Handshake bytes sent to it.
    pub handshake_tx_bytes: u64,
}

impl Peer {
    /// Recomputes the handshake values after our key or its preshared key changed.
    pub fn refresh_remote(&mut self, identity: Option<&LocalIdentity>) {
        self.remote = identity
            .map(|local| RemotePeer::new(local, self.public_key, self.preshared_key.clone()));
        self.pending = None;
        self.last_timestamp = None;
    }
}

/// Every peer, by number and by key, and the master routing table.
#[derive(Default)]
pub struct Peers {
    slots: Vec<Option<Peer>>,
    by_key: HashMap<PublicKey, PeerId>,
    /// Allowed IPs of all peers.
    pub routes: AllowedIps,
}

impl Peers {
    /// The peer with this number.
    pub fn get(&self, id: PeerId) -> Option<&Peer> {
        self.slots.get(id as usize)?.as_ref()
    }

    /// The peer with this number, mutably.
    pub fn get_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// The number of the peer with this key.
    pub fn id_of(&self, key: &PublicKey) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    /// Adds a peer with this key; returns its number.
    pub fn insert(&mut self, public_key: PublicKey, identity: Option<&LocalIdentity>) -> PeerId {
        let id = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len()) as PeerId;
        let mut peer = Peer {
            id,
            public_key,
            preshared_key: None,
            remote: None,
            jar: CookieJar::for_recipient(&public_key),
            allowed_ips: Vec::new(),
            endpoint: None,
            persistent_keepalive: 0,
            pending: None,
            timers: HandshakeTimers::default(),
            last_timestamp: None,
            last_initiation_consumed: None,
            handshake_rx_bytes: 0,
            handshake_tx_bytes: 0,
        };
        peer.refresh_remote(identity);
        if id as usize == self.slots.len() {
            self.slots.push(Some(peer));
        } else {
            self.slots[id as usize] = Some(peer);
        }
        self.by_key.insert(public_key, id);
        id
    }

    /// Removes a peer and its routes.
    pub fn remove(&mut self, id: PeerId) -> Option<Peer> {
        let peer = self.slots.get_mut(id as usize)?.take()?;
        self.by_key.remove(&peer.public_key);
        self.routes.remove_peer(id);
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
        self.routes.remove_peer(id);
        if let Some(p) = self.get_mut(id) {
            p.allowed_ips.clear();
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
