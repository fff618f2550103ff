//! The bench's network: a server namespace running one WireGuard implementation pinned to
//! chosen CPUs, and a client namespace joined to it by a veth pair. Everything is removed when
//! the rig is dropped (processes by PID, namespaces by name).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use proto::PublicKey;
use testbed::clients::wg;
use testbed::{veth, Daemon, Implementation, Netns, WgPeer, Xgate};

/// The server's underlay address and port.
pub const SERVER_ENDPOINT: &str = "10.210.0.1:51820";
/// The server's tunnel address.
pub const SERVER_TUNNEL_IP: &str = "10.77.0.1";
/// Server interface name (the same for every implementation).
pub const SERVER_IFACE: &str = "xb0";

/// Which server is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
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

impl Server {
    /// A short name for reports.
    pub fn label(self) -> String {
        match self {
            Server::Xgate(1) => "xgate".into(),
            Server::Xgate(n) => format!("xgate-{n}w"),
            Server::XgateAfXdp => "xgate-af-xdp".into(),
            Server::XgateAfXdpGeneric => "xgate-af-xdp-generic".into(),
            Server::Boringtun => "boringtun-cli".into(),
            Server::WireguardGo => "wireguard-go".into(),
        }
    }
}

enum Process {
    Xgate(Xgate),
    Peer(WgPeer),
}

/// A running server in its namespace, and the client namespace.
pub struct Rig {
    process: Process,
    /// The server's public key.
    pub server_key: PublicKey,
    /// Client namespace (dropped before the server's).
    pub client_ns: Netns,
    /// Server namespace.
    pub server_ns: Netns,
    /// Where logs and keys go.
    pub dir: PathBuf,
}

/// Pins every thread of `pid` (and threads it creates later) to `cpus` ("0" or "0,1").
pub fn pin(pid: u32, cpus: &str) -> Result<()> {
    testbed::netns::run(std::process::Command::new("taskset").args([
        "-a",
        "-cp",
        cpus,
        &pid.to_string(),
    ]))
    .map(|_| ())
    .with_context(|| format!("pinning {pid} to CPUs {cpus}"))
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

impl Rig {
    /// Starts `server` in a fresh namespace pair, pinned to CPU 0 (or CPUs 0..n for xgate
    /// with n workers).
    pub fn start(server: Server, xgate_binary: &Path, dir: &Path) -> Result<Rig> {
        let server_ns = Netns::create("xbench-srv")?;
        let client_ns = Netns::create("xbench-cli")?;
        veth(
            &server_ns,
            "xbs",
            "10.210.0.1/24",
            &client_ns,
            "xbc",
            "10.210.0.2/24",
        )?;
        // Coalesce runs of datagrams on the server side, as a NIC's GRO would: veth does GRO
        // only when asked, and then hands UDP_GRO sockets one buffer per run.
        server_ns.run("ethtool", &["-K", "xbs", "gro", "on"])?;
        let xgate = match server {
            Server::Xgate(workers) => Some((workers, "backend = \"io-uring\"\n")),
            Server::XgateAfXdp => Some((1, "backend = \"af-xdp\"\n")),
            Server::XgateAfXdpGeneric => {
                Some((1, "backend = \"af-xdp\"\nxdp_mode = \"generic\"\n"))
            }
            Server::Boringtun | Server::WireguardGo => None,
        };
        let (process, server_key, pid, cpus) = match xgate {
            Some((workers, backend)) => {
                let key = proto::PrivateKey::generate(&mut rand_core::OsRng);
                let cpus: Vec<String> = (0..workers).map(|c| c.to_string()).collect();
                let config = format!(
                    "[interface]\nname = \"{SERVER_IFACE}\"\nprivate_key = \"{}\"\nlisten_port = 51820\n\
                     address = [\"{SERVER_TUNNEL_IP}/16\"]\nmtu = 1420\nworkers = {workers}\ncpus = [{}]\n{backend}",
                    key.to_base64(),
                    cpus.join(", ")
                );
                let path = dir.join("xgate.toml");
                std::fs::write(&path, config)?;
                let x = Xgate::start(
                    xgate_binary,
                    &server_ns,
                    &["--config", path.to_str().unwrap_or_default()],
                    SERVER_IFACE,
                    &dir.join("xgate.log"),
                )?;
                let pid = x.daemon.pid().context("xgate pid")?;
                (Process::Xgate(x), key.public_key(), pid, cpus.join(","))
            }
            None => {
                let implementation = if server == Server::Boringtun {
                    Implementation::Boringtun
                } else {
                    Implementation::WireguardGo
                };
                let peer = WgPeer::start(implementation, &server_ns, SERVER_IFACE, dir)?;
                peer.configure(&server_ns, &[&format!("{SERVER_TUNNEL_IP}/16")], 1420)?;
                wg(&server_ns, &["set", SERVER_IFACE, "listen-port", "51820"])?;
                let pid = peer.daemon.pid().context("server pid")?;
                let key = peer.public_key;
                (Process::Peer(peer), key, pid, "0".to_string())
            }
        };
        pin(pid, &cpus)?;
        Ok(Rig {
            process,
            server_key,
            client_ns,
            server_ns,
            dir: dir.to_path_buf(),
        })
    }

    /// The server process's PID.
    pub fn server_pid(&self) -> Option<u32> {
        match &self.process {
            Process::Xgate(x) => x.daemon.pid(),
            Process::Peer(p) => p.daemon.pid(),
        }
    }

    /// The server's CPU time so far (user + system, all threads), in seconds.
    pub fn server_cpu_seconds(&self) -> Result<f64> {
        let pid = self.server_pid().context("server exited")?;
        testbed::procstat::cpu_seconds(pid).context("server exited")
    }

    /// Inner packets and bytes the server has written into its TUN so far (a coalesced
    /// write of many TCP segments counts as one packet).
    pub fn server_tun_rx(&self) -> Result<(u64, u64)> {
        Ok((
            self.server_counter(SERVER_IFACE, "rx_packets")?,
            self.server_counter(SERVER_IFACE, "rx_bytes")?,
        ))
    }

    /// Datagrams that reached the server's side of the veth so far (before any GRO).
    pub fn server_datagrams_in(&self) -> Result<u64> {
        self.server_counter("xbs", "rx_packets")
    }

    fn server_counter(&self, iface: &str, what: &str) -> Result<u64> {
        let path = format!("/sys/class/net/{iface}/statistics/{what}");
        let text = self.server_ns.run("cat", &[&path])?;
        text.trim()
            .parse()
            .with_context(|| format!("{path}: {text:?}"))
    }

    /// Adds a client peer to the server (by UAPI, the same for every implementation).
    pub fn add_peer(&self, key: &PublicKey, allowed_ip: &str) -> Result<()> {
        wg(
            &self.server_ns,
            &[
                "set",
                SERVER_IFACE,
                "peer",
                &key.to_base64(),
                "allowed-ips",
                allowed_ip,
            ],
        )
        .map(|_| ())
    }

    /// Starts a wireguard-go client (pinned to CPU 1) with tunnel address 10.77.0.2.
    pub fn wireguard_go_client(&self) -> Result<WgPeer> {
        let client = WgPeer::start(
            Implementation::WireguardGo,
            &self.client_ns,
            "xbc0",
            &self.dir,
        )?;
        client.configure(&self.client_ns, &["10.77.0.2/16"], 1420)?;
        self.add_peer(&client.public_key, "10.77.0.2/32")?;
        client.set_peer(
            &self.client_ns,
            &self.server_key,
            Some(SERVER_ENDPOINT),
            "10.77.0.0/16",
            None,
        )?;
        pin(client.daemon.pid().context("client pid")?, "1")?;
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
        let mut cmd = self.server_ns.command("taskset");
        cmd.args(["-c", "1", "iperf3", "-s", "-p", "5201"]);
        let d = Daemon::spawn(cmd, &self.dir.join("iperf3-server.log"))?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(d)
    }
}
