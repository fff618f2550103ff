//! The decrypt generator through the LAN lab: one simulated client makes a real handshake,
//! then blasts pre-sealed packets addressed to the LAN host, so the concentrator decrypts
//! and forwards each to the LAN as fast as it can. What counts is what reaches the LAN
//! host's veth, per second of the concentrator's CPU (packets per server core) and of the
//! whole machine's. The same again with ESP (AES-256-GCM) from a user of the bench's IKE
//! client, for xgate.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use proto::PrivateKey;
use testbed::lan_host::HOST_V4;
use testbed::Netns;

use crate::esp_generator;
use crate::generator::{deliver, load, DecryptFigure, Loaded};
use crate::ipsec::add_user;
use crate::lan_lab::{start_with, LabServer, LAN_HOST_IFACE};
use testbed::ike_client::{IkeUser, Proof};

/// The LAN host's veth counters: (packets, IP bytes) received.
fn lan_received(lan: &Netns) -> Result<(u64, u64)> {
    let read = |what: &str| -> Result<u64> {
        let path = format!("/sys/class/net/{LAN_HOST_IFACE}/statistics/{what}");
        let text = lan.run("cat", &[&path])?;
        text.trim()
            .parse()
            .with_context(|| format!("{path}: {text:?}"))
    };
    let packets = read("rx_packets")?;
    // The veth counts Ethernet frames: the IP packet is 14 bytes shorter.
    Ok((packets, read("rx_bytes")?.saturating_sub(14 * packets)))
}

/// What the simulated client's packets are sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// WireGuard (ChaCha20-Poly1305).
    WireGuard,
    /// ESP with AES-256-GCM (xgate only).
    Esp,
}

/// Sends `count` packets of `size` bytes, sealed as `sealing` says, through `server` to the
/// LAN host.
pub fn measure(
    (server, sealing): (LabServer, Sealing),
    xgate: &Path,
    dir: &Path,
    size: usize,
    count: usize,
) -> Result<DecryptFigure> {
    let esp = sealing == Sealing::Esp;
    anyhow::ensure!(
        !esp || server.is_xgate(),
        "only xgate speaks ESP in the lab"
    );
    let (rig, lan) = start_with(server, xgate, dir, esp)?;
    // The concentrator's kernel learns the LAN host's link address first, as a router on a
    // LAN would have it; the generator sends nothing that would make it ask.
    let resolved = testbed::wait_until(Duration::from_secs(5), || {
        testbed::ping(&rig.server.ns, HOST_V4, 1).is_ok_and(|p| p.received == 1)
    });
    anyhow::ensure!(resolved, "{}: the LAN host never answered", server.label());
    let dst: [u8; 4] = HOST_V4
        .parse::<std::net::Ipv4Addr>()
        .context("the LAN host's address")?
        .octets();
    let loaded = if esp {
        let token = rig.server.api_token().context("an API token")?;
        let identity = "lan@example.com";
        let psk = add_user(&rig.server, xgate, token.trim(), ("lan", identity, ""))?;
        let user = IkeUser {
            identity: identity.into(),
            proof: Proof::Psk(psk),
        };
        rig.client_ns
            .enter(move || esp_generator::load(&user, size, count, dst))?
            .context("the ESP user")?
    } else {
        let key = PrivateKey::generate(&mut rand_core::OsRng);
        rig.server.add_peer(&key.public_key(), "10.77.1.2/32")?;
        let server_key = rig.server_key;
        rig.client_ns
            .enter(move || load(key, server_key, 0, (size, dst), count))?
            .context("the simulated client")?
    };
    let loaded: Vec<Loaded> = vec![loaded];
    std::thread::sleep(Duration::from_millis(200));
    let received = || lan_received(&lan);
    let cpu = || rig.server_cpu_seconds();
    let label = format!("{}{} → LAN", server.label(), if esp { " ESP" } else { "" });
    let (figure, _) = deliver(
        &loaded,
        (received, cpu),
        || Ok(None),
        |d| DecryptFigure::of(label, size, 1, d),
    )?;
    figure.print();
    drop(loaded);
    drop(lan);
    Ok(figure)
}
