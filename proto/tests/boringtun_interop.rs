//! Cross-implementation: xgate's `Tunnel` against the `boringtun` crate's `Tunn`, in memory.
//!
//! Both clocks are driven by the test (boringtun through its `mock-instant` feature), so three
//! and more rekeys happen in milliseconds. Every datagram crosses between the two
//! implementations; nothing of one is used to check the other.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boringtun::noise::{errors::WireGuardError, Tunn, TunnResult};
use mock_instant::MockClock;
use proto::replay::ReplayError;
use proto::session::TransportError;
use proto::{Event, PrivateKey, Received, Tunnel, TunnelConfig, TunnelError};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

/// boringtun's mock clock is process-wide state: run one scenario at a time.
static CLOCK: Mutex<()> = Mutex::new(());

const BT_ADDR: &str = "192.0.2.2:40000";

struct Pair {
    xgate: Tunnel<ChaCha20Rng>,
    bt: Tunn,
    base: Instant,
    offset: Duration,
    /// Inner packets each side received, in order.
    at_xgate: Vec<Vec<u8>>,
    at_bt: Vec<Vec<u8>>,
    handshakes: usize,
}

/// An IPv4 packet of `len` bytes whose body encodes `seq`, so loss or reordering shows.
fn ip_packet(seq: u32, len: usize) -> Vec<u8> {
    let len = len.max(28);
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, 2]);
    p[16..20].copy_from_slice(&[10, 0, 0, 1]);
    p[20..24].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[24..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    p
}

impl Pair {
    fn new(psk: Option<[u8; 32]>) -> Self {
        let x_priv = PrivateKey::from_bytes([0x11; 32]);
        // boringtun takes x25519-dalek 2 keys, the same crate version xgate uses.
        let b_secret = StaticSecret::from([0x22; 32]);
        let b_public = XPublic::from(&b_secret);
        let base = Instant::now();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let xgate = Tunnel::new(
            TunnelConfig {
                private_key: x_priv.clone(),
                peer_public_key: proto::PublicKey(b_public.to_bytes()),
                preshared_key: psk.map(proto::PresharedKey),
                persistent_keepalive: None,
                mtu: 1420,
            },
            base,
            unix,
            ChaCha20Rng::seed_from_u64(99),
        );
        let x_public = XPublic::from(x_priv.public_key().0);
        let bt = Tunn::new(b_secret, x_public, psk, None, 7, None);
        Pair {
            xgate,
            bt,
            base,
            offset: Duration::ZERO,
            at_xgate: Vec::new(),
            at_bt: Vec::new(),
            handshakes: 0,
        }
    }

    fn now(&self) -> Instant {
        self.base + self.offset
    }

    fn advance(&mut self, by: Duration) {
        self.offset += by;
        MockClock::advance(by);
        let now = self.now();
        self.xgate.handle_timeout(now);
        let mut buf = vec![0u8; 2048];
        if let TunnResult::WriteToNetwork(d) = self.bt.update_timers(&mut buf) {
            let d = d.to_vec();
            self.deliver_to_xgate(d).ok();
        }
        self.pump();
    }

    /// Delivers a datagram from boringtun to xgate.
    fn deliver_to_xgate(&mut self, mut datagram: Vec<u8>) -> Result<Received, TunnelError> {
        let from: SocketAddr = BT_ADDR.parse().expect("addr");
        let now = self.now();
        let r = self.xgate.handle_datagram(now, from, &mut datagram)?;
        if let Received::Packet(range) = &r {
            self.at_xgate.push(datagram[range.clone()].to_vec());
        }
        while let Some(e) = self.xgate.poll_event() {
            if matches!(e, Event::HandshakeComplete { .. }) {
                self.handshakes += 1;
            }
        }
        Ok(r)
    }

    /// Delivers a datagram from xgate to boringtun; returns boringtun's verdict.
    fn deliver_to_bt(&mut self, datagram: &[u8]) -> Result<(), WireGuardError> {
        let from = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut buf = vec![0u8; 2048];
        let mut replies = Vec::new();
        let mut result = match self.bt.decapsulate(Some(from), datagram, &mut buf) {
            TunnResult::Err(e) => Err(e),
            TunnResult::WriteToNetwork(d) => {
                replies.push(d.to_vec());
                Ok(())
            }
            TunnResult::WriteToTunnelV4(p, _) => {
                self.at_bt.push(p.to_vec());
                Ok(())
            }
            TunnResult::WriteToTunnelV6(p, _) => {
                self.at_bt.push(p.to_vec());
                Ok(())
            }
            TunnResult::Done => Ok(()),
        };
        // boringtun asks to be called again while it has queued packets to flush.
        if !replies.is_empty() {
            while let TunnResult::WriteToNetwork(d) = self.bt.decapsulate(None, &[], &mut buf) {
                replies.push(d.to_vec());
            }
        }
        for r in replies {
            if let Err(e) = self.deliver_to_xgate(r) {
                result = Err(WireGuardError::InvalidPacket);
                eprintln!("xgate refused a boringtun reply: {e}");
            }
        }
        result
    }

    /// Moves everything xgate wants to send to boringtun, until both are quiet.
    fn pump(&mut self) {
        while let Some(d) = self.xgate.poll_transmit() {
            if let Err(e) = self.deliver_to_bt(&d) {
                panic!("boringtun refused an xgate datagram: {e:?}");
            }
        }
    }

    fn xgate_sends(&mut self, packet: &[u8]) {
        let now = self.now();
        self.xgate.send(now, packet);
        self.pump();
    }

    /// boringtun encapsulates a packet; returns the datagram it produced (already delivered
    /// to xgate unless `deliver` is false).
    fn bt_sends(&mut self, packet: &[u8], deliver: bool) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        let d = match self.bt.encapsulate(packet, &mut buf) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            TunnResult::Done => return None,
            other => panic!("unexpected encapsulate result {other:?}"),
        };
        if deliver {
            if let Err(e) = self.deliver_to_xgate(d.clone()) {
                panic!("xgate refused a boringtun datagram: {e}");
            }
            self.pump();
        }
        Some(d)
    }

    /// 10,000 packets (5,000 each way), advancing 15 s every 250, so about 600 s pass and the
    /// initiator rekeys every 120 s.
    fn exchange_through_rekeys(&mut self) {
        let mut seq = 0u32;
        for _round in 0..40 {
            for _ in 0..125 {
                let p = ip_packet(seq, 28 + (seq as usize * 37) % 1392);
                let before = self.at_bt.len();
                self.xgate_sends(&p);
                assert_eq!(
                    self.at_bt.len(),
                    before + 1,
                    "packet {seq} did not reach boringtun"
                );
                assert_eq!(self.at_bt.last(), Some(&p));
                seq += 1;
                let q = ip_packet(seq, 28 + (seq as usize * 53) % 1392);
                let before = self.at_xgate.len();
                self.bt_sends(&q, true);
                assert_eq!(
                    self.at_xgate.len(),
                    before + 1,
                    "packet {seq} did not reach xgate"
                );
                assert_eq!(self.at_xgate.last(), Some(&q));
                seq += 1;
            }
            self.advance(Duration::from_secs(15));
        }
        assert_eq!(seq, 10_000);
    }

    /// Replays, a counter outside the window and a forged tag, in both directions.
    fn check_rejections(&mut self) {
        // boringtun → xgate: duplicate counter.
        let d = self.bt_sends(&ip_packet(1, 100), true).expect("datagram");
        assert!(matches!(
            self.deliver_to_xgate(d.clone()),
            Err(TunnelError::Transport(TransportError::Replay(
                ReplayError::Duplicate { .. }
            )))
        ));
        // Forged tag.
        let mut forged = self.bt_sends(&ip_packet(2, 100), false).expect("datagram");
        let last = forged.len() - 1;
        forged[last] ^= 0x55;
        assert_eq!(
            self.deliver_to_xgate(forged).err(),
            Some(TunnelError::Transport(TransportError::BadTag))
        );
        // A counter that has fallen out of the window: keep an early packet, send a window's
        // worth after it, then replay it.
        let early = self.bt_sends(&ip_packet(3, 60), false).expect("datagram");
        for i in 0..proto::replay::WINDOW_SIZE as u32 + 10 {
            self.bt_sends(&ip_packet(10 + i, 40), true);
        }
        assert!(matches!(
            self.deliver_to_xgate(early),
            Err(TunnelError::Transport(TransportError::Replay(
                ReplayError::TooOld { .. }
            )))
        ));

        // xgate → boringtun: boringtun refuses our replays and forgeries too.
        let now = self.now();
        self.xgate.send(now, &ip_packet(5, 80));
        let d = self.xgate.poll_transmit().expect("sealed");
        self.deliver_to_bt(&d).expect("first copy accepted");
        assert!(
            self.deliver_to_bt(&d).is_err(),
            "boringtun accepted a replay of our packet"
        );
        self.xgate.send(now, &ip_packet(6, 80));
        let mut d = self.xgate.poll_transmit().expect("sealed");
        d[20] ^= 1;
        assert!(
            self.deliver_to_bt(&d).is_err(),
            "boringtun accepted a forged packet"
        );
    }
}

#[test]
fn xgate_initiates_to_boringtun_through_rekeys() {
    let _clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut pair = Pair::new(None);
    pair.xgate.set_endpoint(BT_ADDR.parse().expect("addr"));
    pair.xgate_sends(&ip_packet(0, 64));
    assert_eq!(pair.handshakes, 1, "handshake completed");
    assert_eq!(
        pair.at_bt.len(),
        1,
        "the staged packet was delivered after the handshake"
    );
    pair.exchange_through_rekeys();
    eprintln!("handshakes completed: {}", pair.handshakes);
    assert!(
        pair.handshakes >= 4,
        "only {} handshakes: fewer than 3 rekeys",
        pair.handshakes
    );
    pair.check_rejections();
}

#[test]
fn boringtun_initiates_to_xgate_through_rekeys_with_psk() {
    let _clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut pair = Pair::new(Some([0x5a; 32]));
    // boringtun stages the packet and sends an initiation; xgate answers as responder.
    let init = pair.bt_sends(&ip_packet(0, 64), false).expect("initiation");
    assert_eq!(init.len(), 148);
    pair.deliver_to_xgate(init)
        .expect("xgate accepts the initiation");
    pair.pump();
    // boringtun's staged packet confirms the session to xgate.
    assert_eq!(pair.handshakes, 1);
    assert_eq!(pair.at_xgate.len(), 1);
    pair.exchange_through_rekeys();
    eprintln!("handshakes completed: {}", pair.handshakes);
    assert!(
        pair.handshakes >= 4,
        "only {} handshakes: fewer than 3 rekeys",
        pair.handshakes
    );
    pair.check_rejections();
}

#[test]
fn replayed_initiation_is_refused_by_xgate() {
    let _clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut pair = Pair::new(None);
    let init = pair.bt_sends(&ip_packet(0, 64), false).expect("initiation");
    pair.deliver_to_xgate(init.clone())
        .expect("first initiation accepted");
    pair.pump();
    pair.advance(Duration::from_secs(1));
    assert_eq!(
        pair.deliver_to_xgate(init).err(),
        Some(TunnelError::ReplayedInitiation)
    );
}
