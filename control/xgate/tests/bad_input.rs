//! Bad input to a running daemon: truncated, oversized, unknown type, bad MAC1, forged tag,
//! replayed initiation, replayed data counter, inner source outside allowed IPs, and a bounded
//! burst of random datagrams. Each is dropped, its counter in `xgate show` goes up, and a
//! legitimate client keeps getting ping replies.
//!
//! The client is xgate's own `proto::Tunnel` over a UDP socket in the client namespace, so the
//! test can also send what no well-behaved client would. Once on the io_uring backend, once on
//! the AF_XDP backend.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Rig;
use proto::cookie::CookieJar;
use proto::handshake::{create_initiation, LocalIdentity, RemotePeer};
use proto::tai64n::Tai64N;
use proto::{PrivateKey, Received, Tunnel, TunnelConfig};
use rand_core::{OsRng, RngCore};

/// An IPv4 ICMP echo request of 60 bytes.
fn echo_request(src: [u8; 4], dst: [u8; 4], seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 60];
    testbed::packet::echo_request_v4(&mut p, src, dst, (0x7867, seq), &[]);
    p
}

fn is_echo_reply(p: &[u8], seq: u16) -> bool {
    p.len() >= 28 && p[9] == 1 && p[20] == 0 && p[26..28] == seq.to_be_bytes()
}

struct ProtoClient {
    tunnel: Tunnel<OsRng>,
    key: PrivateKey,
    sock: UdpSocket,
    server: SocketAddr,
    server_key: proto::PublicKey,
    first_initiation: Option<Vec<u8>>,
    last_data: Option<Vec<u8>>,
    seq: u16,
}

impl ProtoClient {
    fn flush(&mut self) {
        while let Some(d) = self.tunnel.poll_transmit() {
            if d.len() == 148 && d[0] == 1 && self.first_initiation.is_none() {
                self.first_initiation = Some(d.clone());
            }
            if d[0] == 4 && d.len() > 32 {
                self.last_data = Some(d.clone());
            }
            self.sock.send_to(&d, self.server).expect("send");
        }
    }

    /// Sends an echo request through the tunnel and waits up to 3 s for its reply.
    fn ping(&mut self) -> bool {
        self.seq += 1;
        let seq = self.seq;
        self.tunnel.send(
            Instant::now(),
            &echo_request([10, 77, 0, 2], [10, 77, 0, 1], seq),
        );
        self.flush();
        let until = Instant::now() + Duration::from_secs(3);
        let mut buf = vec![0u8; 2048];
        while Instant::now() < until {
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                if let Ok(Received::Packet(r)) =
                    self.tunnel
                        .handle_datagram(Instant::now(), from, &mut buf[..n])
                {
                    if is_echo_reply(&buf[r], seq) {
                        self.flush();
                        return true;
                    }
                }
            }
            self.tunnel.handle_timeout(Instant::now());
            self.flush();
        }
        false
    }

    fn raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).expect("send");
    }
}

/// Sends `what`, then checks the drop counter `reason` rose by `by` and a ping still passes.
fn expect_drop(
    rig: &Rig,
    client: &mut ProtoClient,
    reason: &str,
    by: u64,
    what: impl FnOnce(&mut ProtoClient),
) {
    let before = rig.drops(reason);
    what(client);
    let counted = testbed::wait_until(Duration::from_secs(3), || rig.drops(reason) >= before + by);
    assert!(
        counted,
        "drop_{reason} did not rise by {by} (was {before}, now {})",
        rig.drops(reason)
    );
    assert!(
        client.ping(),
        "legitimate traffic stopped after {reason}; log:\n{}",
        rig.log()
    );
}

#[test]
fn every_kind_of_bad_input_is_counted_and_dropped() {
    bad_input("bad", false);
}

#[test]
fn every_kind_of_bad_input_is_counted_and_dropped_af_xdp() {
    bad_input("badx", true);
}

fn bad_input(tag: &str, af_xdp: bool) {
    let mut rig = if af_xdp {
        Rig::af_xdp(tag)
    } else {
        Rig::new(tag)
    };
    let client_ns = common::client_ns(&rig.server.ns, tag);
    let key = PrivateKey::generate(&mut OsRng);
    let config = rig
        .config()
        .peer(&key.public_key().to_base64(), &["10.77.0.2/32"]);
    rig.start_xgate_with(&config);

    let mut client = connect(&rig, &client_ns, key);
    each_kind_is_dropped(&rig, &mut client);
    random_burst(&mut client);
    assert!(
        rig.xgate().daemon.is_running(),
        "xgate died on random input"
    );
    let snmp = rig
        .server
        .ns
        .run("cat", &["/proc/net/snmp"])
        .unwrap_or_default();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    eprintln!("server UDP counters after burst:\n{}", udp.join("\n"));
    // UDP under a burst loses datagrams in the kernel's socket buffer (counted above as
    // RcvbufErrors); a ping that was lost is sent again, as ping(8) would.
    let recovered = (0..5).any(|_| client.ping());
    assert!(
        recovered,
        "no traffic after the random burst: {}\nlog:\n{}",
        rig.show(),
        rig.log()
    );
    let shown = rig.show();
    eprintln!("drops after the burst: {}", shown["drops"]);
    rig.assert_backend_carried_traffic();
}

/// A client on proto's `Tunnel` from the client namespace, with a first ping answered.
fn connect(rig: &Rig, client_ns: &testbed::Netns, key: PrivateKey) -> ProtoClient {
    let sock = client_ns
        .enter(|| UdpSocket::bind("10.201.1.2:0"))
        .expect("enter")
        .expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let now = Instant::now();
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let server: SocketAddr = "10.201.1.1:51820".parse().expect("addr");
    let mut tunnel = Tunnel::new(
        TunnelConfig {
            private_key: key.clone(),
            peer_public_key: rig.server_key.public_key(),
            preshared_key: None,
            persistent_keepalive: None,
            mtu: 1420,
        },
        now,
        unix,
        OsRng,
    );
    tunnel.set_endpoint(server);
    let mut client = ProtoClient {
        tunnel,
        key,
        sock,
        server,
        server_key: rig.server_key.public_key(),
        first_initiation: None,
        last_data: None,
        seq: 0,
    };
    assert!(
        client.ping(),
        "no reply from xgate to a clean client; log:\n{}",
        rig.log()
    );
    client
}

/// Each kind of bad datagram, sent alone, is dropped and counted under its reason.
fn each_kind_is_dropped(rig: &Rig, client: &mut ProtoClient) {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    expect_drop(rig, client, "truncated", 1, |c| {
        c.raw(&[4, 0, 0, 0, 1, 2, 3, 4, 5, 6])
    });
    expect_drop(rig, client, "oversized", 2, |c| {
        let mut big = vec![0u8; 3000];
        big[0] = 4;
        c.raw(&big);
        let mut long_init = vec![0u8; 149];
        long_init[0] = 1;
        c.raw(&long_init);
    });
    expect_drop(rig, client, "unknown_type", 1, |c| c.raw(&[9u8; 64]));
    expect_drop(rig, client, "bad_mac1", 1, |c| {
        let local = LocalIdentity::new(&c.key);
        let remote = RemotePeer::new(&local, c.server_key, None);
        let (_, mut init) =
            create_initiation(&local, &remote, 5, Tai64N::from_unix(unix), &mut OsRng)
                .expect("init");
        CookieJar::for_recipient(&c.server_key).stamp(&mut init, Instant::now());
        init[120] ^= 0x01;
        c.raw(&init);
    });
    expect_drop(rig, client, "bad_tag", 1, |c| {
        c.tunnel.send(
            Instant::now(),
            &echo_request([10, 77, 0, 2], [10, 77, 0, 1], 999),
        );
        let mut d = c.tunnel.poll_transmit().expect("sealed");
        let last = d.len() - 1;
        d[last] ^= 0x80;
        c.raw(&d);
    });
    expect_drop(rig, client, "replayed_initiation", 1, |c| {
        let init = c
            .first_initiation
            .clone()
            .expect("captured the first initiation");
        c.raw(&init);
    });
    expect_drop(rig, client, "replayed", 1, |c| {
        let d = c.last_data.clone().expect("captured a data packet");
        c.raw(&d);
    });
    expect_drop(rig, client, "source_not_allowed", 1, |c| {
        c.tunnel.send(
            Instant::now(),
            &echo_request([10, 99, 0, 5], [10, 77, 0, 1], 1000),
        );
        c.flush();
    });
}

/// A bounded burst of random datagrams (20,000 or 20 s), some dressed as WireGuard messages.
fn random_burst(client: &mut ProtoClient) {
    let mut rng = OsRng;
    let started = Instant::now();
    for i in 0..20_000u32 {
        // One in five is raw noise; the rest carry a real type at a plausible size, so they
        // reach MAC checks, index lookups and the control plane.
        let kind = i % 5;
        let len = match kind {
            1 => 148,
            2 => 92,
            3 => 64,
            4 => 32 + (rng.next_u32() % 1400) as usize,
            _ => (rng.next_u32() % 1500) as usize,
        };
        let mut d = vec![0u8; len];
        rng.fill_bytes(&mut d);
        if kind > 0 {
            d[..4].copy_from_slice(&kind.to_le_bytes());
        }
        client.raw(&d);
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
}
