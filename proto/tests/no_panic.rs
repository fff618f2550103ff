//! Property tests over network input: random and mutated datagrams into the message parser,
//! the handshake responder and an established session. Nothing may panic, and nothing mutated
//! may authenticate. 100,000 cases each.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proto::cookie::CookieJar;
use proto::wire::{self, Message};
use proto::{inner, PrivateKey, Received, Tunnel, TunnelConfig};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const CASES: u32 = 100_000;

struct Pair {
    server: Tunnel<ChaCha20Rng>,
    client: Tunnel<ChaCha20Rng>,
    server_key: proto::PublicKey,
    now: Instant,
    valid_transport: Vec<u8>,
}

fn from() -> SocketAddr {
    "192.0.2.9:4000".parse().expect("addr")
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        let s = PrivateKey::from_bytes([0x31; 32]);
        let c = PrivateKey::from_bytes([0x32; 32]);
        let config = |own: &PrivateKey, peer: &PrivateKey| TunnelConfig {
            private_key: own.clone(),
            peer_public_key: peer.public_key(),
            preshared_key: None,
            persistent_keepalive: None,
            mtu: 1420,
        };
        let mut server = Tunnel::new(
            config(&s, &c),
            now,
            Duration::from_secs(1_700_000_000),
            ChaCha20Rng::seed_from_u64(1),
        );
        let mut client = Tunnel::new(
            config(&c, &s),
            now,
            Duration::from_secs(1_700_000_000),
            ChaCha20Rng::seed_from_u64(2),
        );
        // Handshake, then one data packet to confirm the responder's session.
        let mut ping = vec![0u8; 40];
        ping[0] = 0x45;
        ping[2..4].copy_from_slice(&40u16.to_be_bytes());
        client.send(now, &ping);
        for _ in 0..3 {
            while let Some(mut d) = client.poll_transmit() {
                let _ = server.handle_datagram(now, from(), &mut d);
            }
            while let Some(mut d) = server.poll_transmit() {
                let _ = client.handle_datagram(now, from(), &mut d);
            }
        }
        client.send(now, &ping);
        let valid_transport = client.poll_transmit().expect("established");
        Pair {
            server,
            client,
            server_key: s.public_key(),
            now,
            valid_transport,
        }
    }
}

thread_local! {
    static PAIR: RefCell<Pair> = RefCell::new(Pair::new());
}

/// A datagram shaped like message `kind` (1-4) or raw (0), optionally with a valid MAC1.
fn shaped(kind: u8, mut body: Vec<u8>, stamp: bool, server_key: &proto::PublicKey) -> Vec<u8> {
    let exact = match kind {
        1 => Some(148),
        2 => Some(92),
        3 => Some(64),
        _ => None,
    };
    if let Some(n) = exact {
        body.resize(n, 0);
    }
    if kind > 0 && body.len() >= 4 {
        body[..4].copy_from_slice(&u32::from(kind).to_le_bytes());
    }
    if stamp {
        CookieJar::for_recipient(server_key).stamp(&mut body, Instant::now());
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random datagrams, some dressed as real message types with valid MAC1 so they reach the
    /// Diffie-Hellman and AEAD steps, never panic and never yield an inner packet.
    #[test]
    fn random_datagrams_are_refused_without_panic(
        kind in 0u8..5,
        body in proptest::collection::vec(any::<u8>(), 0..1600),
        stamp in any::<bool>(),
    ) {
        PAIR.with(|p| {
            let mut p = p.borrow_mut();
            let key = p.server_key;
            let mut d = shaped(kind, body, stamp, &key);
            let _ = Message::parse(&d);
            let _ = wire::receiver_index(&d);
            let _ = inner::parse(&d);
            let now = p.now;
            let r = p.server.handle_datagram(now, from(), &mut d);
            prop_assert!(!matches!(r, Ok(Received::Packet(_))), "random bytes decrypted: {:?}", r);
            while p.server.poll_transmit().is_some() {}
            Ok(())
        })?;
    }

    /// A valid transport packet with any change (flipped bits, truncation, extension) is refused.
    #[test]
    fn mutated_transport_never_authenticates(
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
        cut in any::<Option<usize>>(),
        extra in proptest::collection::vec(any::<u8>(), 0..3),
    ) {
        PAIR.with(|p| {
            let mut p = p.borrow_mut();
            let mut d = p.valid_transport.clone();
            for (at, mask) in &flips {
                let i = at % d.len();
                d[i] ^= mask;
            }
            if let Some(c) = cut {
                d.truncate(c % (d.len() + 1));
            }
            d.extend_from_slice(&extra);
            let changed = d != p.valid_transport;
            let now = p.now;
            let r = p.server.handle_datagram(now, from(), &mut d);
            if changed {
                prop_assert!(r.is_err(), "a mutated packet was accepted: {:?}", r);
            }
            // Keep the pair in sync: a fresh valid packet for the next case.
            let mut ping = vec![0u8; 40];
            ping[0] = 0x45;
            ping[2..4].copy_from_slice(&40u16.to_be_bytes());
            p.client.send(now, &ping);
            p.valid_transport = p.client.poll_transmit().expect("sealed");
            Ok(())
        })?;
    }
}
