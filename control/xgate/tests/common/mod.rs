//! Shared rig for the namespace tests: xgate as a server in one namespace, real WireGuard
//! clients in others, joined by veth pairs. Names carry a per-test tag so tests run in parallel;
//! everything is removed on drop.
#![allow(dead_code)]

pub mod api;
pub mod cluster;
pub mod ike;
pub mod load;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use proto::PrivateKey;
use testbed::clients::{wg_dump_peers, DumpPeer};
use testbed::{
    ping, tcp_transfer, veth, veth_queues, wait_until, Implementation, Netns, Server, Transfer,
    WgPeer, Xgate, XgateConfig,
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
    /// Clients, in the order added (dropped before the server).
    pub clients: Vec<Client>,
    /// The server's private key.
    pub server_key: PrivateKey,
    /// UDP port xgate listens on.
    pub port: u16,
    /// Datapath workers (2 by default: packets cross between workers' sockets and queues).
    pub workers: usize,
    /// The outer backend xgate is told to use ("io-uring" or "af-xdp": no "auto", so a
    /// test of AF_XDP fails rather than falls back).
    pub backend: &'static str,
    /// Sections beyond `[interface]` (registry, API, pools, groups, further peers); the
    /// interface comes from the fields above, and the clients are listed as peers unless a
    /// registry keeps them.
    pub config: XgateConfig,
    /// The server's namespace and its xgate, once started.
    pub server: Server,
}

/// Receive and transmit queues of every veth a rig makes (AF_XDP binds one socket to each).
pub const VETH_QUEUES: u32 = 2;

impl Rig {
    /// A rig whose names carry `tag`.
    pub fn new(tag: &str) -> Self {
        require_root();
        assert!(tag.len() <= 6, "tag too long for interface names");
        let dir = scratch(tag);
        let server = Server::new(&format!("xt-{tag}-s"), &format!("xt{tag}s"), &dir)
            .expect("server namespace");
        Self {
            tag: tag.into(),
            server,
            server_key: PrivateKey::generate(&mut rand_core::OsRng),
            clients: Vec::new(),
            port: 51820,
            workers: 2,
            config: XgateConfig::default(),
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

    /// Keeps peers in a fresh registry in the scratch directory (with the API and its token
    /// file beside it); returns the database's path.
    pub fn use_registry(&mut self) -> PathBuf {
        self.config = std::mem::take(&mut self.config).registry_in(&self.dir);
        testbed::config::registry_files(&self.dir).0
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
        self.server.stat(name).expect("xgate show")
    }

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

    /// The server's interface name.
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
            &self.server.ns,
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

    /// The server config: key, port, addresses, `config`'s sections, and every client added
    /// so far as a peer (unless a registry keeps the peers).
    pub fn config(&self) -> XgateConfig {
        let mut config = self.config.clone();
        config.interface = XgateConfig::server(
            &self.iface(),
            &self.server_key,
            self.port,
            &["10.77.0.1/16", "fd77::1/64"],
        )
        .interface;
        config.interface.workers = Some(self.workers);
        config.interface.backend = Some(self.backend.into());
        if config.registry.is_none() {
            for c in &self.clients {
                config.peers.push(testbed::config::Peer {
                    name: Some(c.peer.implementation.label().into()),
                    public_key: c.peer.public_key.to_base64(),
                    allowed_ips: vec![format!("{}/32", c.v4), format!("{}/128", c.v6)],
                    ..testbed::config::Peer::default()
                });
            }
        }
        config
    }

    /// Writes the config and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let path = self.dir.join("xgate.toml");
        self.config().write(&path).expect("config written");
        path
    }

    /// Starts xgate from `config()` (stopping a running one first).
    pub fn start_xgate(&mut self) {
        let config = self.config();
        self.start_xgate_with(&config);
    }

    /// Starts xgate from `config` (stopping a running one first).
    pub fn start_xgate_with(&mut self, config: &XgateConfig) {
        let key = self
            .server
            .start_xgate(&xgate_bin(), config)
            .expect("xgate starts");
        assert_eq!(key, self.server_key.public_key());
    }

    /// The running xgate.
    pub fn xgate(&mut self) -> &mut Xgate {
        self.server.xgate_mut().expect("xgate is running")
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
            &self.server.ns,
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
            &self.server.ns,
            bytes,
            99 + i as u64,
        )
    }

    /// `xgate show --json`, parsed.
    pub fn show(&self) -> serde_json::Value {
        self.server.show().expect("xgate show")
    }

    /// A drop counter from `xgate show`.
    pub fn drops(&self, reason: &str) -> u64 {
        self.server.drops(reason).expect("xgate show")
    }

    /// `wg show IFACE dump` on the server.
    pub fn dump(&self) -> Vec<DumpPeer> {
        wg_dump_peers(&self.server.ns, &self.iface()).expect("wg show dump")
    }

    /// `wg ARGS` in the server namespace.
    pub fn wg(&self, args: &[&str]) -> Result<String> {
        self.server.wg(args)
    }

    /// The xgate log so far (for failure messages).
    pub fn log(&self) -> String {
        self.server.log()
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
        self.server.stop();
        let socket = testbed::clients::uapi_socket(&self.iface());
        if socket.exists() && std::os::unix::net::UnixStream::connect(&socket).is_err() {
            let _ = std::fs::remove_file(socket);
        }
    }
}
