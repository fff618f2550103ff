//! The ESP decrypt path alone: users of the bench's IKE client set up their SAs with xgate,
//! then send pre-sealed ESP (every sequence number distinct) to the NAT-T port as fast as
//! the sending core can. Measured as the WireGuard decrypt path is (`generator::deliver`):
//! what xgate writes into its TUN per second of its own CPU.

use std::net::{SocketAddr, UdpSocket};

use anyhow::{Context, Result};
use ike::esp::{Outbound, ESP_HEADROOM, ESP_TAILROOM, NEXT_IPV4};
use ring::rand::SystemRandom;

use crate::generator::{deliver, DecryptFigure, Loaded};
use crate::ike_setups::CLIENT;
use testbed::ike_client::{set_up, IkeUser};

/// The NAT-T port of the server.
const NAT_T: &str = "10.210.0.1:4500";

/// Where the ESP decrypt path's inner packets go: not an address of the server, so its kernel
/// counts each packet in and drops it.
pub const NOWHERE: [u8; 4] = [10, 77, 250, 250];

/// Sets up `user`'s SA and seals `count` ESP packets carrying `size`-byte inner packets from
/// its address to `dst`. Runs inside the client namespace.
pub fn load(user: &IkeUser, size: usize, count: usize, dst: [u8; 4]) -> Result<Loaded> {
    let rng = SystemRandom::new();
    let server: SocketAddr = "10.210.0.1:500".parse()?;
    let (est, _) = set_up(CLIENT, server, user, &rng)?;
    let child = &est.child;
    let mut sa = Outbound::new(child.spi_r, &child.suite, &child.i_to_r)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let src = est.assignment.v4.context("no address assigned")?.octets();
    let body = vec![0u8; size.saturating_sub(testbed::packet::IPV4_HEADER)];
    let inner = testbed::packet::ipv4(src, dst, testbed::packet::UDP, &body);
    let socket = UdpSocket::bind(format!("{CLIENT}:0"))?;
    socket.connect(NAT_T)?;
    socket.set_nonblocking(true)?;
    let mut packets = Vec::with_capacity(count);
    let mut buf = vec![0u8; ESP_HEADROOM + inner.len() + ESP_TAILROOM];
    for _ in 0..count {
        buf[ESP_HEADROOM..ESP_HEADROOM + inner.len()].copy_from_slice(&inner);
        let at = ESP_HEADROOM..ESP_HEADROOM + inner.len();
        let range = sa
            .seal(&mut buf, at, NEXT_IPV4)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        packets.push(buf[range].to_vec());
    }
    Ok(Loaded { socket, packets })
}

/// `users` each send `count` packets of `size` bytes to xgate in `rig`.
pub fn measure(
    rig: &crate::ipsec::Rig,
    users: Vec<IkeUser>,
    size: usize,
    count: usize,
) -> Result<DecryptFigure> {
    let clients = users.len();
    let loaded = rig
        .client_ns
        .enter(move || -> Result<Vec<Loaded>> {
            users
                .iter()
                .map(|u| load(u, size, count, NOWHERE))
                .collect()
        })?
        .context("ESP users")?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let tun_rx = || rig.server_tun_rx();
    let cpu = || rig.server_cpu_seconds();
    // XGATE_BENCH_PROFILE=xgate-esp:<size> profiles a run (development).
    let want = std::env::var("XGATE_BENCH_PROFILE").is_ok_and(|s| s == format!("xgate-esp:{size}"));
    let perf = || match (want, rig.server_pid()) {
        (true, Ok(pid)) => crate::generator::Profiler::start(pid, &std::env::temp_dir()).map(Some),
        _ => Ok(None),
    };
    let (figure, profile) = deliver(&loaded, (tun_rx, cpu), perf, |d| {
        DecryptFigure::of("xgate-esp".into(), size, clients, d)
    })?;
    figure.print();
    if let Some(p) = profile {
        eprintln!("where xgate's time goes (ESP decrypt, {size} B):\n{p}");
    }
    Ok(figure)
}
