//! The bench's network: a server namespace running one WireGuard implementation pinned to
//! chosen CPUs, and a client namespace joined to it by a veth pair. Everything is removed when
//! the rig is dropped (processes by PID, namespaces by name).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use proto::PublicKey;
use testbed::{veth, Daemon, Implementation, Netns, WgPeer, XgateConfig};

/// The server's underlay address and port.
pub const SERVER_ENDPOINT: &str = "10.210.0.1:51820";
/// The server's tunnel address.
pub const SERVER_TUNNEL_IP: &str = "10.77.0.1";
/// Server interface name (the same for every implementation).
pub const SERVER_IFACE: &str = "xb0";

/// Which server is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// xgate on its io_uring backend with this many workers (pinned to CPUs 0..n).
    Xgate(usize),
    /// xgate on its AF_XDP backend, one worker; the XDP program in native (driver) mode.
    XgateAfXdp,
    /// xgate on its AF_XDP backend, one worker; the XDP program in generic mode.
    XgateAfXdpGeneric,
    /// boringtun-cli.
    Boringtun,
    /// wireguard-go.
    WireguardGo,
}

impl ServerKind {
    /// A short name for reports.
    pub fn label(self) -> String {
        match self {
            ServerKind::Xgate(1) => "xgate".into(),
            ServerKind::Xgate(n) => format!("xgate-{n}w"),
            ServerKind::XgateAfXdp => "xgate-af-xdp".into(),
            ServerKind::XgateAfXdpGeneric => "xgate-af-xdp-generic".into(),
            ServerKind::Boringtun => "boringtun-cli".into(),
            ServerKind::WireguardGo => "wireguard-go".into(),
        }
    }
}

/// A running server in its namespace, and the client namespace.
pub struct Rig {
    /// Client namespace (dropped before the server's).
    pub client_ns: Netns,
    /// The server and its namespace.
    pub server: testbed::Server,
    /// The server's public key.
    pub server_key: PublicKey,
}

pub use testbed::process::pin_thread;

/// Runs `f` with the calling thread pinned to `cpu`, then lets it run anywhere again (so the
/// servers this process starts later do not inherit the pin).
pub fn on_cpu<T>(cpu: usize, f: impl FnOnce() -> T) -> T {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    pin_thread(&[cpu]);
    let out = f();
    pin_thread(&(0..online).collect::<Vec<_>>());
    out
}

/// xgate's config for `kind` (None for the peer implementations).
pub(crate) fn xgate_config(kind: ServerKind) -> Option<XgateConfig> {
    let (workers, backend, mode) = match kind {
        ServerKind::Xgate(workers) => (workers, "io-uring", None),
        ServerKind::XgateAfXdp => (1, "af-xdp", None),
        ServerKind::XgateAfXdpGeneric => (1, "af-xdp", Some("generic")),
        ServerKind::Boringtun | ServerKind::WireguardGo => return None,
    };
    let key = proto::PrivateKey::generate(&mut rand_core::OsRng);
    let cpus: Vec<usize> = (0..workers).collect();
    let mut config = XgateConfig::server(
        SERVER_IFACE,
        &key,
        51820,
        &[&format!("{SERVER_TUNNEL_IP}/16")],
    )
    .pinned(&cpus);
    config.interface.mtu = Some(1420);
    config.interface.backend = Some(backend.into());
    config.interface.xdp_mode = mode.map(Into::into);
    Some(config)
}

/// The bench's server namespace (with its scratch directory) and client namespace, joined
/// by a veth: the server at 10.210.0.1, the client at 10.210.0.2.
pub fn namespaces(dir: &Path) -> Result<(testbed::Server, Netns)> {
    let server = testbed::Server::new("xbench-srv", SERVER_IFACE, dir)?;
    let client_ns = Netns::create("xbench-cli")?;
    veth(
        &server.ns,
        "xbs",
        "10.210.0.1/24",
        &client_ns,
        "xbc",
        "10.210.0.2/24",
    )?;
    // Coalesce runs of datagrams on the server side, as a NIC's GRO would: veth does GRO
    // only when asked, and then hands UDP_GRO sockets one buffer per run.
    server.ns.run("ethtool", &["-K", "xbs", "gro", "on"])?;
    Ok((server, client_ns))
}

impl Rig {
    /// Starts `kind` in a fresh namespace pair, pinned to CPU 0 (or CPUs 0..n for xgate
    /// with n workers).
    pub fn start(kind: ServerKind, xgate_binary: &Path, dir: &Path) -> Result<Rig> {
        let (mut server, client_ns) = namespaces(dir)?;
        let (server_key, cpus) = match xgate_config(kind) {
            Some(config) => {
                let cpus = config.interface.cpus.clone();
                (server.start_xgate(xgate_binary, &config)?, cpus)
            }
            None => {
                let implementation = if kind == ServerKind::Boringtun {
                    Implementation::Boringtun
                } else {
                    Implementation::WireguardGo
                };
                let address = format!("{SERVER_TUNNEL_IP}/16");
                (
                    server.start_peer(implementation, &[&address], 51820)?,
                    vec![0],
                )
            }
        };
        server.pin(&cpus)?;
        Ok(Rig {
            client_ns,
            server,
            server_key,
        })
    }

    /// The server's CPU time so far (user + system, all threads), in seconds.
    pub fn server_cpu_seconds(&self) -> Result<f64> {
        self.server.cpu_seconds()
    }

    /// Inner packets and bytes the server has written into its TUN so far (a coalesced
    /// write of many TCP segments counts as one packet).
    pub fn server_tun_rx(&self) -> Result<(u64, u64)> {
        Ok((
            self.server.link_counter(SERVER_IFACE, "rx_packets")?,
            self.server.link_counter(SERVER_IFACE, "rx_bytes")?,
        ))
    }

    /// Datagrams that reached the server's side of the veth so far (before any GRO).
    pub fn server_datagrams_in(&self) -> Result<u64> {
        self.server.link_counter("xbs", "rx_packets")
    }

    /// Starts a wireguard-go client (pinned to CPU 1) with tunnel address 10.77.0.2.
    pub fn wireguard_go_client(&self) -> Result<WgPeer> {
        let client = WgPeer::start(
            Implementation::WireguardGo,
            &self.client_ns,
            "xbc0",
            &self.server.dir,
        )?;
        client.configure(&self.client_ns, &["10.77.0.2/16"], 1420)?;
        self.server.add_peer(&client.public_key, "10.77.0.2/32")?;
        client.set_peer(
            &self.client_ns,
            &self.server_key,
            Some(SERVER_ENDPOINT),
            "10.77.0.0/16",
            None,
        )?;
        testbed::process::pin_process(client.daemon.pid().context("client pid")?, &[1])?;
        let up = testbed::wait_until(Duration::from_secs(10), || {
            testbed::ping(&self.client_ns, SERVER_TUNNEL_IP, 1).is_ok_and(|p| p.received == 1)
        });
        if !up {
            bail!("the wireguard-go client got no ping through to {SERVER_TUNNEL_IP}");
        }
        Ok(client)
    }

    /// Starts an iperf3 server in the server namespace, pinned to CPU 1.
    pub fn iperf3_server(&self) -> Result<Daemon> {
        let mut cmd = self.server.ns.command("taskset");
        cmd.args(["-c", "1", "iperf3", "-s", "-p", "5201"]);
        let d = Daemon::spawn(cmd, &self.server.dir.join("iperf3-server.log"))?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(d)
    }
}
