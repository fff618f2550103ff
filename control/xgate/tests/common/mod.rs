//! Shared rig for the namespace tests: xgate as a server in one namespace, real WireGuard
//! clients in others, joined by veth pairs. Names carry a per-test tag so tests run in parallel;
//! everything is removed on drop.
#![allow(dead_code)]

pub mod api;
pub mod load;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use proto::PrivateKey;
use testbed::clients::{wg, wg_dump_peers, DumpPeer};
use testbed::{
    ping, tcp_transfer, veth, veth_queues, wait_until, Implementation, Netns, Transfer, WgPeer,
    Xgate,
};

/// The xgate binary cargo built for these tests.
pub fn xgate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xgate"))
}

/// Fails the test early with a clear reason if it cannot create namespaces.
pub fn require_root() {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "namespace tests need root (CAP_NET_ADMIN): run `make test` as root"
    );
}

/// One client: its namespace, its WireGuard process, its addresses.
pub struct Client {
    /// Namespace.
    pub ns: Netns,
    /// The WireGuard process.
    pub peer: WgPeer,
    /// Tunnel IPv4 address.
    pub v4: String,
    /// Tunnel IPv6 address.
    pub v6: String,
    /// Underlay address of the client side of its veth.
    pub underlay: String,
    /// Underlay address of the server side of its veth.
    pub server_underlay: String,
    /// Its veth interface (client side).
    pub veth: String,
}

/// A server namespace with xgate and any number of clients.
pub struct Rig {
    /// Short tag unique to the test (at most 6 characters).
    pub tag: String,
    /// Scratch directory for configs and logs.
    pub dir: PathBuf,
    /// The server's namespace.
    pub server_ns: Netns,
    /// The server's private key.
    pub server_key: PrivateKey,
    /// Running xgate, once started.
    pub xgate: Option<Xgate>,
    /// Clients, in the order added.
    pub clients: Vec<Client>,
    /// UDP port xgate listens on.
    pub port: u16,
    /// Datapath workers (2 by default: packets cross between workers' sockets and queues).
    pub workers: usize,
    /// A registry database to keep peers in; clients are then not listed in the config.
    pub registry: Option<PathBuf>,
    /// Further config text (sections such as [api], [[pool]] or [[peer]]), after the
    /// registry's or before the clients' peers.
    pub extra_config: String,
    /// The outer backend xgate is told to use ("io-uring" or "af-xdp": no "auto", so a
    /// test of AF_XDP fails rather than falls back).
    pub backend: &'static str,
}

/// Receive and transmit queues of every veth a rig makes (AF_XDP binds one socket to each).
pub const VETH_QUEUES: u32 = 2;

impl Rig {
    /// A rig whose names carry `tag`.
    pub fn new(tag: &str) -> Self {
        require_root();
        assert!(tag.len() <= 6, "tag too long for interface names");
        let dir = scratch(tag);
        Self {
            tag: tag.into(),
            server_ns: Netns::create(&format!("xt-{tag}-s")).expect("server namespace"),
            server_key: PrivateKey::generate(&mut rand_core::OsRng),
            xgate: None,
            clients: Vec::new(),
            port: 51820,
            workers: 2,
            registry: None,
            extra_config: String::new(),
            backend: "io-uring",
            dir,
        }
    }

    /// A rig whose xgate uses the AF_XDP backend.
    pub fn af_xdp(tag: &str) -> Self {
        let mut rig = Self::new(tag);
        rig.backend = "af-xdp";
        rig
    }

    /// Starts xgate, points every client at it and checks each gets a ping reply.
    pub fn start_and_connect(&mut self) {
        self.start_xgate();
        for c in 0..self.clients.len() {
            self.connect(c, None);
            assert!(
                self.ping_until_reply(c, "10.77.0.1", Duration::from_secs(10)),
                "no tunnel for client {c}: {}",
                self.log()
            );
        }
    }

    /// Checks that datagrams went both ways through AF_XDP sockets when the rig uses them.
    pub fn assert_backend_carried_traffic(&self) {
        if self.backend != "af-xdp" {
            return;
        }
        let rx = self.stat("xdp_rx_frames");
        let tx = self.stat("xdp_tx_frames");
        assert!(
            rx > 0 && tx > 0,
            "AF_XDP carried rx {rx} tx {tx}\n{}",
            self.log()
        );
        // The clients start every exchange here, so every answer knows the way back: none
        // needed the kernel's socket.
        let kernel = self.stat("outer_kernel_sends");
        assert_eq!(
            kernel,
            0,
            "datagrams sent through the kernel's socket\n{}",
            self.show()
        );
    }

    /// A datapath counter from `xgate show` (`stat_NAME` in the UAPI answer).
    pub fn stat(&self, name: &str) -> u64 {
        self.show()["stats"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// The server's interface name.
    /// A running xgate with one wireguard-go and one boringtun-cli client, both connected
    /// (returned as their indices, in that order).
    pub fn with_both_clients(tag: &str, af_xdp: bool) -> (Self, usize, usize) {
        let mut rig = if af_xdp {
            Rig::af_xdp(tag)
        } else {
            Rig::new(tag)
        };
        let go = rig.add_client(Implementation::WireguardGo);
        let bt = rig.add_client(Implementation::Boringtun);
        rig.start_xgate();
        rig.connect(go, None);
        rig.connect(bt, None);
        (rig, go, bt)
    }

    pub fn iface(&self) -> String {
        format!("xt{}s", self.tag)
    }

    /// Starts a client (its process and tunnel addresses); `connect` points it at the server.
    pub fn add_client(&mut self, implementation: Implementation) -> usize {
        let n = self.clients.len() + 1;
        let ns = Netns::create(&format!("xt-{}-c{n}", self.tag)).expect("client namespace");
        let underlay = format!("10.201.{n}.2");
        let server_underlay = format!("10.201.{n}.1");
        let veth_client = format!("xtv{n}c");
        veth_queues(
            &self.server_ns,
            &format!("xtv{n}s"),
            &format!("{server_underlay}/24"),
            &ns,
            &veth_client,
            &format!("{underlay}/24"),
            VETH_QUEUES,
        )
        .expect("veth");
        let iface = format!("xt{}c{n}", self.tag);
        let peer = WgPeer::start(implementation, &ns, &iface, &self.dir).expect("client starts");
        let v4 = format!("10.77.0.{}", n + 1);
        let v6 = format!("fd77::{}", n + 1);
        peer.configure(&ns, &[&format!("{v4}/16"), &format!("{v6}/64")], 1420)
            .expect("client addresses");
        self.clients.push(Client {
            ns,
            peer,
            v4,
            v6,
            underlay,
            server_underlay,
            veth: veth_client,
        });
        n - 1
    }

    /// The server config: key, port, addresses, and every client added so far as a peer.
    pub fn config_text(&self) -> String {
        let mut text = format!(
            "[interface]\nname = \"{}\"\nprivate_key = \"{}\"\nlisten_port = {}\naddress = [\"10.77.0.1/16\", \"fd77::1/64\"]\nworkers = {}\nbackend = \"{}\"\n",
            self.iface(),
            self.server_key.to_base64(),
            self.port,
            self.workers,
            self.backend
        );
        if let Some(db) = &self.registry {
            text += &format!("\n[registry]\npath = \"{}\"\n", db.display());
            text += &self.extra_config;
            return text;
        }
        text += &self.extra_config;
        for c in &self.clients {
            text += &format!(
                "\n[[peer]]\nname = \"{}\"\npublic_key = \"{}\"\nallowed_ips = [\"{}/32\", \"{}/128\"]\n",
                c.peer.implementation.label(),
                c.peer.public_key,
                c.v4,
                c.v6
            );
        }
        text
    }

    /// Writes the config and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let path = self.dir.join("xgate.toml");
        std::fs::write(&path, self.config_text()).expect("config written");
        path
    }

    /// Starts xgate from the config (replacing a running one's handle).
    pub fn start_xgate(&mut self) {
        let config = self.write_config();
        let log = self
            .dir
            .join(format!("xgate-{}.log", self.xgate.is_some() as u8));
        let xgate = Xgate::start(
            &xgate_bin(),
            &self.server_ns,
            &["--config", config.to_str().expect("utf-8 path")],
            &self.iface(),
            &log,
        )
        .expect("xgate starts");
        assert_eq!(xgate.public_key, self.server_key.public_key());
        self.xgate = Some(xgate);
    }

    /// Points client `i` at the server.
    pub fn connect(&self, i: usize, keepalive: Option<u16>) {
        let c = &self.clients[i];
        let endpoint = format!("{}:{}", c.server_underlay, self.port);
        c.peer
            .set_peer(
                &c.ns,
                &self.server_key.public_key(),
                Some(&endpoint),
                "10.77.0.0/16,fd77::/64",
                keepalive,
            )
            .expect("client peer set");
    }

    /// Pings the server's tunnel address from client `i` until a reply comes, up to `timeout`.
    pub fn ping_until_reply(&self, i: usize, target: &str, timeout: Duration) -> bool {
        let c = &self.clients[i];
        wait_until(timeout, || {
            ping(&c.ns, target, 1).is_ok_and(|r| r.received == 1)
        })
    }

    /// Sends `bytes` from client `i` to the server over TCP (IPv4 or IPv6 tunnel address).
    pub fn upload(&self, i: usize, server_addr: &str, port: u16, bytes: u64) -> Result<Transfer> {
        let to: SocketAddr = format!("{server_addr}:{port}").parse()?;
        tcp_transfer(
            &self.server_ns,
            to,
            &self.clients[i].ns,
            bytes,
            7 + i as u64,
        )
    }

    /// Sends `bytes` from the server to client `i` over TCP.
    pub fn download(&self, i: usize, port: u16, bytes: u64) -> Result<Transfer> {
        let to: SocketAddr = format!("{}:{port}", self.clients[i].v4).parse()?;
        tcp_transfer(
            &self.clients[i].ns,
            to,
            &self.server_ns,
            bytes,
            99 + i as u64,
        )
    }

    /// `xgate show --json`, parsed.
    pub fn show(&self) -> serde_json::Value {
        let out = self
            .server_ns
            .run(
                xgate_bin().to_str().expect("path"),
                &["show", &self.iface(), "--json"],
            )
            .expect("xgate show runs");
        serde_json::from_str(&out).expect("xgate show --json is JSON")
    }

    /// A drop counter from `xgate show`.
    pub fn drops(&self, reason: &str) -> u64 {
        self.show()["drops"][reason]
            .as_u64()
            .unwrap_or_else(|| panic!("no drop counter {reason}"))
    }

    /// `wg show IFACE dump` on the server.
    pub fn dump(&self) -> Vec<DumpPeer> {
        wg_dump_peers(&self.server_ns, &self.iface()).expect("wg show dump")
    }

    /// `wg ARGS` in the server namespace.
    pub fn wg(&self, args: &[&str]) -> Result<String> {
        wg(&self.server_ns, args)
    }

    /// The xgate log so far (for failure messages).
    pub fn log(&self) -> String {
        self.xgate
            .as_ref()
            .map(|x| x.daemon.log_text())
            .unwrap_or_default()
    }
}

/// An emptied scratch directory for test `tag`.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("xgate-tests").join(tag);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A client namespace `xt-{tag}-c` joined to `server` by a veth: server 10.201.1.1/24, client
/// 10.201.1.2/24.
pub fn client_ns(server: &Netns, tag: &str) -> Netns {
    let ns = Netns::create(&format!("xt-{tag}-c")).expect("client namespace");
    veth(
        server,
        "xtv1s",
        "10.201.1.1/24",
        &ns,
        "xtv1c",
        "10.201.1.2/24",
    )
    .expect("veth");
    ns
}

/// A scratch directory and a server and client namespace joined by a veth (see `client_ns`).
pub fn ns_pair(tag: &str) -> (PathBuf, Netns, Netns) {
    require_root();
    let dir = scratch(tag);
    let server = Netns::create(&format!("xt-{tag}-s")).expect("server namespace");
    let client = client_ns(&server, tag);
    (dir, server, client)
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("file written");
    p
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Stop xgate first (SIGTERM: it removes its socket), then clean a socket left stale by
        // a test that killed it outright.
        drop(self.xgate.take());
        let socket = testbed::clients::uapi_socket(&self.iface());
        if socket.exists() && std::os::unix::net::UnixStream::connect(&socket).is_err() {
            let _ = std::fs::remove_file(socket);
        }
    }
}
