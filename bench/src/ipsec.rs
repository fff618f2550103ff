//! The IPsec section: the same strongSwan client (kernel-libipsec, AES-256-GCM, UDP
//! encapsulation) sends through ESP to xgate and to strongSwan itself as the server (charon
//! with kernel-libipsec, userspace ESP as there is no ESP kernel module here). Each server is
//! pinned to CPU 0, everything else to CPU 1; the figure is the server's CPU seconds per GB
//! of inner bytes delivered, the median of transfers made in rounds that alternate the two
//! servers. Written to `bench-results/ipsec-<date>-<commit>.json` and
//! `ipsec.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use testbed::config::{Ike, Pool};
use testbed::machine::Machine;
use testbed::{Daemon, Netns, Strongswan, StrongswanConfig, StrongswanServer, XgateConfig};

use crate::ike_pki::{BenchPki, CERT_DOMAIN};
use crate::ike_setups::SetupFigure;
use crate::rig::{SERVER_IFACE, SERVER_TUNNEL_IP};
use testbed::ike_client::{IkeUser, Proof};

mod transfer;

use transfer::{ping_rtt, rtt_or_nan, transfer};

/// Seconds each iperf3 test runs.
const SECONDS: u32 = 5;
/// Rounds, each one transfer per test and server; the figure is the median transfer (one 5-s
/// transfer moves by ±10% between runs on a 2-core VM, and the machine's speed drifts by more
/// over some minutes).
const REPEATS: usize = 3;
const _: () = assert!(REPEATS % 2 == 1, "a median needs an odd count");
/// The tests: TCP with one and four streams.
const TESTS: [&str; 2] = ["tcp-1", "tcp-4"];
/// The target: xgate's CPU per GB at most this share of strongSwan's.
const TARGET: f64 = 0.25;
const IDENTITY: &str = "alice@example.com";
/// Users the IKE setup rate is measured with, one IKE SA each: by PSK, by certificate.
const SETUP_USERS: usize = 1000;
const CERT_USERS: usize = 300;
/// Echo requests 10 ms apart sent through the idle tunnel before the transfers.
const IDLE_PINGS: u32 = 100;
/// Echo requests 10 ms apart sent through the tunnel during each transfer (from 0.5 s in).
const LOADED_PINGS: u32 = 300;
/// Users sending in the decrypt-path test (one, as in the WireGuard decrypt section).
const DECRYPT_USERS: usize = 1;

/// Which server is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpsecServer {
    /// xgate, one worker (the outer side on AF_XDP, the default where it works), its IKE
    /// responder beside it.
    Xgate,
    /// strongSwan's charon with kernel-libipsec as the responder.
    Strongswan,
}

impl IpsecServer {
    fn label(self) -> &'static str {
        match self {
            IpsecServer::Xgate => "xgate",
            IpsecServer::Strongswan => "strongswan-libipsec",
        }
    }
}

/// One test against one server.
#[derive(Debug, Clone, Serialize)]
pub struct IpsecFigure {
    /// Server label.
    pub server: &'static str,
    /// "tcp-1" or "tcp-4".
    pub test: &'static str,
    /// Goodput iperf3's receiver saw, Gbit/s.
    pub gbit_per_s: f64,
    /// Server CPU seconds (all threads, user + system) over the test.
    pub server_cpu_s: f64,
    /// Server CPU seconds per GB of inner bytes iperf3 received.
    pub cpu_s_per_gb: f64,
    /// CPU-s per GB of every transfer of the test, in the order run (this figure is the
    /// median one).
    pub runs: Vec<f64>,
    /// Average ping round trip through the tunnel with no other traffic, milliseconds.
    pub idle_rtt_ms: f64,
    /// Average ping round trip through the tunnel during the transfer, milliseconds.
    pub loaded_rtt_ms: f64,
}

/// The section's results.
#[derive(Debug, Serialize)]
pub struct IpsecResults {
    /// Where and what.
    pub machine: Machine,
    /// Every test.
    pub figures: Vec<IpsecFigure>,
    /// IKE SA setups per server CPU-second.
    pub setups: Vec<SetupFigure>,
    /// xgate's ESP decrypt path alone.
    pub decrypt: Vec<crate::generator::DecryptFigure>,
    /// `ring`'s AES-256-GCM on one core (the limit).
    pub cipher: Vec<crate::cipher::CipherFigure>,
}

/// A server namespace with the measured server, a client namespace with strongSwan.
pub struct Rig {
    /// The client namespace.
    pub client_ns: Netns,
    server: testbed::Server,
    /// strongSwan as the server, when it is the one measured.
    responder: Option<Strongswan>,
    client: Option<Strongswan>,
    /// The users the setup rate is measured with.
    setup_users: Vec<IkeUser>,
}

impl Rig {
    fn start(kind: IpsecServer, xgate: &Path, dir: &Path, pki: &BenchPki) -> Result<Self> {
        let (mut server, client_ns) = crate::rig::namespaces(dir)?;
        let (psk, responder, setup_users) = match kind {
            IpsecServer::Xgate => {
                let (psk, users) = start_xgate(&mut server, xgate, dir, pki)?;
                (psk, None, users)
            }
            IpsecServer::Strongswan => {
                let psk = "a key of the benchmark's own, long enough".to_string();
                let users: Vec<IkeUser> = (0..SETUP_USERS)
                    .map(|i| IkeUser {
                        identity: format!("u{i}@example.com"),
                        proof: Proof::Psk(format!("the key of user {i}, long enough")),
                    })
                    .collect();
                let at = dir.join("responder");
                let r = start_responder(&server.ns, &at, (&psk, pki), &users)?;
                (psk, Some(r), users)
            }
        };
        let mut rig = Rig {
            client_ns,
            server,
            responder,
            client: None,
            setup_users,
        };
        let pid = rig.server_pid()?;
        testbed::process::pin_process(pid, &[0])?;
        let config = StrongswanConfig::psk("10.210.0.1", IDENTITY, &psk);
        let client = Strongswan::start(&rig.client_ns, &dir.join("client"), &config)?;
        testbed::process::pin_process(client.pid().context("client pid")?, &[1])?;
        let (ok, out) = client.initiate(20)?;
        if !ok {
            bail!(
                "the strongSwan client did not connect to {}: {out}",
                kind.label()
            );
        }
        rig.client = Some(client);
        let up = testbed::wait_until(Duration::from_secs(10), || {
            testbed::ping(&rig.client_ns, SERVER_TUNNEL_IP, 1).is_ok_and(|p| p.received == 1)
        });
        if !up {
            bail!("no ping through ESP to {}", kind.label());
        }
        Ok(rig)
    }

    /// The measured server's process id.
    pub fn server_pid(&self) -> Result<u32> {
        match &self.responder {
            Some(r) => r.pid().context("responder pid"),
            None => self.server.pid(),
        }
    }

    /// The server's CPU seconds so far.
    pub fn server_cpu_seconds(&self) -> Result<f64> {
        testbed::procstat::cpu_seconds(self.server_pid()?).context("the server exited")
    }

    /// Packets and bytes xgate wrote into its TUN so far.
    pub fn server_tun_rx(&self) -> Result<(u64, u64)> {
        Ok((
            self.server.link_counter(SERVER_IFACE, "rx_packets")?,
            self.server.link_counter(SERVER_IFACE, "rx_bytes")?,
        ))
    }
}

/// xgate with a registry, a pool and the IKE responder (with `pki`'s server certificate);
/// IKEv2 users made with the CLI, the certificate users too. Returns the throughput user's
/// key and the PSK setup users.
fn start_xgate(
    server: &mut testbed::Server,
    xgate: &Path,
    dir: &Path,
    pki: &BenchPki,
) -> Result<(String, Vec<IkeUser>)> {
    let key = proto::PrivateKey::generate(&mut rand_core::OsRng);
    let server_config = XgateConfig::server(
        SERVER_IFACE,
        &key,
        51820,
        &[&format!("{SERVER_TUNNEL_IP}/16")],
    )
    .pinned(&[0]);
    let mut config = with_responder(server_config, dir);
    config.interface.mtu = Some(1420);
    let ike = config.ike.get_or_insert_with(Ike::default);
    ike.certificate = pki.path("server.pem");
    ike.private_key = pki.path("server.key");
    ike.ca = pki.path("ca.pem");
    server.start_xgate(xgate, &config)?;
    let token = server
        .api_token()
        .context("an API token")?
        .trim()
        .to_string();
    let add = |name: &str, identity: &str, how: &str| {
        add_user(server, xgate, &token, (name, identity, how))
    };
    let psk = add("alice", IDENTITY, "")?;
    let users = (0..SETUP_USERS)
        .map(|i| {
            let identity = format!("u{i}@example.com");
            add(&format!("u{i}"), &identity, "").map(|psk| IkeUser {
                identity,
                proof: Proof::Psk(psk),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for i in 0..pki.users.len() {
        add(
            &format!("c{i}"),
            &format!("c{i}@{CERT_DOMAIN}"),
            "--certificate",
        )?;
    }
    Ok((psk, users))
}

/// `config` with a registry in `dir`, a pool for IKEv2 users and the IKEv2 responder on (PSK
/// users; a caller that wants certificates adds the server's).
pub(crate) fn with_responder(config: XgateConfig, dir: &Path) -> XgateConfig {
    let mut config = config.registry_in(dir);
    config.pools.push(Pool {
        ipv4: Some("10.77.0.0/20".into()),
        ..Pool::default()
    });
    config.ike = Some(Ike {
        enabled: Some(true),
        identity: Some("vpn.example.com".into()),
        ..Ike::default()
    });
    config
}

/// Adds IKEv2 user `name` with `identity` to xgate in `server` through its CLI (`how`: "" for
/// a generated pre-shared key, which is returned, or "--certificate").
pub(crate) fn add_user(
    server: &testbed::Server,
    xgate: &Path,
    token: &str,
    (name, identity, how): (&str, &str, &str),
) -> Result<String> {
    let binary = xgate.to_str().context("xgate's path")?;
    let args = [
        "ike",
        "user",
        "add",
        name,
        "--identity",
        identity,
        "--token",
        token,
        how,
    ];
    let args = if how.is_empty() { &args[..8] } else { &args };
    Ok(server.ns.run(binary, args)?.trim().to_string())
}

/// strongSwan as the responder: the users' keys, a pool, 10.77.0.1 on the loopback; the
/// certificate users (identities under CERT_DOMAIN) by a connection of their own with the
/// server's certificate.
fn start_responder(
    ns: &Netns,
    dir: &Path,
    (psk, pki): (&str, &BenchPki),
    users: &[IkeUser],
) -> Result<Strongswan> {
    let mut psk_users = vec![(IDENTITY.to_string(), psk.to_string())];
    psk_users.extend(users.iter().filter_map(|u| match &u.proof {
        Proof::Psk(key) => Some((u.identity.clone(), key.clone())),
        _ => None,
    }));
    StrongswanServer {
        local_addr: "10.210.0.1".into(),
        identity: "vpn.example.com".into(),
        cert: Some(pki.server_files()),
        proposals: "aes256gcm16-prfsha256-x25519".into(),
        esp_proposals: "aes256gcm16".into(),
        pool: "10.77.0.2-10.77.15.250".into(),
        tunnel: (SERVER_TUNNEL_IP.into(), "10.77.0.0/16".into()),
        psk_users,
        cert_users: Some(format!("*@{CERT_DOMAIN}")),
        eap_users: None,
    }
    .start(ns, dir)
}

/// What one round against a server measured: throughput, and in the last round the setup
/// rate and (xgate) the decrypt path alone.
type ServerFigures = (
    Vec<IpsecFigure>,
    Vec<SetupFigure>,
    Vec<crate::generator::DecryptFigure>,
);

/// One round against `kind`, on a rig started afresh: one transfer per test; with
/// `extras`, also the IKE setup rate and (xgate) the decrypt path alone with `counts`
/// packets at 64 and 1420 bytes.
fn measure_server(
    kind: IpsecServer,
    (xgate, pki): (&Path, &BenchPki),
    dir: &Path,
    (counts, extras): ((usize, usize), bool),
) -> Result<ServerFigures> {
    let mut rig = Rig::start(kind, xgate, dir, pki)?;
    let mut cmd = rig.server.ns.command("taskset");
    cmd.args(["-c", "1", "iperf3", "-s", "-p", "5201"]);
    let _iperf = Daemon::spawn(cmd, &dir.join(format!("iperf3-{}.log", kind.label())))?;
    std::thread::sleep(Duration::from_millis(300));
    let idle_rtt_ms = rtt_or_nan(ping_rtt(&rig.client_ns, IDLE_PINGS), "idle");
    let out = TESTS
        .iter()
        .map(|test| transfer(&rig, kind, test, idle_rtt_ms))
        .collect::<Result<Vec<_>>>()?;
    let (mut setups, mut decrypt) = (Vec::new(), Vec::new());
    if !extras {
        return Ok((out, setups, decrypt));
    }
    let users = std::mem::take(&mut rig.setup_users);
    let server = "10.210.0.1:500".parse().expect("address");
    // The decrypt users go last: their earlier SAs are replaced, not measured twice.
    let decrypt_users: Vec<IkeUser> = users.iter().take(DECRYPT_USERS).cloned().collect();
    for users in [users, pki.users.clone()] {
        let f = crate::ike_setups::measure(kind.label(), &rig.client_ns, server, users, || {
            rig.server_cpu_seconds()
        })?;
        setups.push(f);
    }
    if kind == IpsecServer::Xgate {
        for (size, count) in [(64, counts.0), (1420, counts.1)] {
            let per_user = count / DECRYPT_USERS;
            let users = decrypt_users.clone();
            decrypt.push(crate::esp_generator::measure(&rig, users, size, per_user)?);
        }
    }
    Ok((out, setups, decrypt))
}

/// Measures both servers in one run, in `REPEATS` rounds that start each server afresh in
/// turn, the order swapping from round to round (xgate first in the first), so that a machine
/// whose speed drifts over the minutes of the run weighs on both alike; the IKE setup rates
/// and the decrypt path alone (with `counts` packets at 64 and 1420 bytes) in the last round.
/// `machine` and `cipher` come from the run.
pub fn measure(
    xgate: &Path,
    dir: &Path,
    counts: (usize, usize),
    (machine, cipher): (Machine, Vec<crate::cipher::CipherFigure>),
) -> Result<IpsecResults> {
    eprintln!("IPsec: the same strongSwan client, ESP AES-256-GCM, server on CPU 0");
    let mut results = IpsecResults {
        machine,
        figures: Vec::new(),
        setups: Vec::new(),
        decrypt: Vec::new(),
        cipher: cipher
            .into_iter()
            .filter(|c| c.cipher == "aes-256-gcm" && c.op == "open")
            .collect(),
    };
    let pki = BenchPki::make(xgate, dir, CERT_USERS)?;
    let mut transfers = Vec::new();
    for round in 0..REPEATS {
        let mut order = [IpsecServer::Xgate, IpsecServer::Strongswan];
        if round % 2 == 1 {
            order.reverse();
        }
        for kind in order {
            let here = dir.join(format!("{}-{}", kind.label(), round + 1));
            std::fs::create_dir_all(&here)?;
            let extras = (counts, round + 1 == REPEATS);
            let (f, s, d) = measure_server(kind, (xgate, &pki), &here, extras)?;
            transfers.extend(f);
            results.setups.extend(s);
            results.decrypt.extend(d);
        }
    }
    results.figures = medians(transfers);
    Ok(results)
}

/// Per server and test, the median transfer (by CPU-s per GB) with every transfer's figure
/// beside it, in the order run.
fn medians(transfers: Vec<IpsecFigure>) -> Vec<IpsecFigure> {
    let mut out = Vec::new();
    for server in [IpsecServer::Xgate, IpsecServer::Strongswan] {
        for test in TESTS {
            let mut runs: Vec<IpsecFigure> = transfers
                .iter()
                .filter(|f| f.server == server.label() && f.test == test)
                .cloned()
                .collect();
            if runs.is_empty() {
                continue;
            }
            let all: Vec<f64> = runs.iter().map(|f| f.cpu_s_per_gb).collect();
            runs.sort_by(|a, b| a.cpu_s_per_gb.total_cmp(&b.cpu_s_per_gb));
            let mut median = runs.swap_remove(runs.len() / 2);
            median.runs = all;
            out.push(median);
        }
    }
    out
}

/// Every run's figure, for the table.
fn every(runs: &[f64]) -> String {
    let each: Vec<String> = runs.iter().map(|r| format!("{r:.2}")).collect();
    each.join(", ")
}

impl IpsecResults {
    fn figure(&self, server: &str, test: &str) -> Option<&IpsecFigure> {
        self.figures
            .iter()
            .find(|f| f.server == server && f.test == test)
    }

    /// The table the README shows (also in `ipsec.md`).
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| test | xgate CPU-s/GB (every run) | strongSwan CPU-s/GB (every run) | \
             xgate/strongSwan (medians) | target | \
             xgate Gbit/s | strongSwan Gbit/s | xgate ping ms idle / loaded | \
             strongSwan ping ms idle / loaded |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        for test in TESTS {
            let (Some(x), Some(w)) = (
                self.figure("xgate", test),
                self.figure("strongswan-libipsec", test),
            ) else {
                continue;
            };
            let r = x.cpu_s_per_gb / w.cpu_s_per_gb;
            let verdict = if r <= TARGET { "met" } else { "**missed**" };
            let _ = writeln!(
                s,
                "| {test} | {:.2} ({}) | {:.2} ({}) | {r:.2} | ≤ {TARGET} {verdict} | {:.2} | \
                 {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |",
                x.cpu_s_per_gb,
                every(&x.runs),
                w.cpu_s_per_gb,
                every(&w.runs),
                x.gbit_per_s,
                w.gbit_per_s,
                x.idle_rtt_ms,
                x.loaded_rtt_ms,
                w.idle_rtt_ms,
                w.loaded_rtt_ms
            );
        }
        let _ = writeln!(
            s,
            "\n| IKE SA setups (X25519) | authentication | per server CPU-second | setups | wall s |\n|---|---|---|---|---|"
        );
        for f in &self.setups {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {:.2} |",
                f.server, f.auth, f.per_cpu_s, f.setups, f.seconds
            );
        }
        let _ = writeln!(
            s,
            "\n| ESP decrypt path alone | packets per server core | ring AES-256-GCM open, one core | share of the limit |\n|---|---|---|---|"
        );
        for d in &self.decrypt {
            let limit = self
                .cipher
                .iter()
                .find(|c| c.payload == d.size)
                .map_or(f64::NAN, |c| c.mpps * 1e6);
            let _ = writeln!(
                s,
                "| {} B | {:.0} | {:.0} | {:.2} |",
                d.size,
                d.pps_per_core,
                limit,
                d.pps_per_core / limit
            );
        }
        s
    }

    /// Writes `ipsec-<date>-<commit>.json` and `ipsec.md` into `dir`; returns the JSON's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let m = &self.machine;
        let json = dir.join(format!("ipsec-{}-{}.json", m.date, m.commit));
        let raw = serde_json::to_string_pretty(self)?;
        let md = format!(
            "# IPsec: xgate against strongSwan as the server\n\n\
             {} ({} cores), kernel {}, commit {}, {}. Raw figures: `{}`.\n\n\
             Throughput: the same strongSwan client (charon, kernel-libipsec, AES-256-GCM in \
             UDP) sends {SECONDS} s of iperf3 TCP through ESP to each server, once per test in \
             each of {REPEATS} rounds; a round starts each server afresh in turn, the order \
             swapping from round to round (xgate first in the first), so that the machine's \
             drift over the run weighs on both alike. Each row is the median transfer's (by \
             CPU-s/GB; every transfer's CPU-s/GB in brackets, in the order run; its Gbit/s and \
             pings are that transfer's); the server is \
             pinned to CPU 0, the client and iperf3 to CPU 1. strongSwan as the server also \
             runs kernel-libipsec (userspace ESP): this machine has no ESP kernel module. The \
             figure is the server's own CPU seconds per GB iperf3 received. Ping: the average \
             round trip of pings 10 ms apart from the client through the tunnel to the \
             server's tunnel address, idle ({IDLE_PINGS}) and beside the transfer \
             ({LOADED_PINGS}, from 0.5 s in); under load they share the transfer's queue at the \
             bottleneck (the README's IPsec section says where it was found). xgate runs \
             with its default `batch_linger_us`.\n\n\
             IKE SA setups: the bench's client (the `ike` crate's initiator) makes IKE_SA_INIT \
             and IKE_AUTH (X25519, one CHILD_SA) for {SETUP_USERS} PSK users, then for \
             {CERT_USERS} users with ECDSA P-256 certificates (RFC 7427 signatures both ways, \
             the server's certificate ECDSA P-256 too), one after the other, in the last \
             round; the figure is setups per second of the server's CPU.\n\n\
             ESP decrypt path alone (xgate): one user sends pre-sealed ESP (distinct sequence \
             numbers) to the NAT-T port from CPU 1 as fast as it can; packets per second of \
             xgate's CPU against `ring`'s AES-256-GCM open on one core (the same payload \
             size), as the WireGuard decrypt section measures.\n\n{}",
            m.cpu,
            m.cores,
            m.kernel,
            m.commit,
            m.date,
            json.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default(),
            self.table()
        );
        testbed::interrupt::write_results(&[
            (&json, raw.as_bytes()),
            (&dir.join("ipsec.md"), md.as_bytes()),
        ])?;
        Ok(json)
    }
}
