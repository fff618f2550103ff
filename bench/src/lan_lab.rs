//! The LAN lab (issue 20): client ↔ concentrator (an outer veth and a LAN veth) ↔ LAN host.
//! The same client (wireguard-go for every server; xgate too for xgate's two LAN sides, so
//! the client is not what limits them) sends through the tunnel to iperf3 on the LAN host,
//! so the concentrator decrypts and forwards every packet to the LAN. Concentrators: xgate with
//! `inner = "tun"` (the kernel forwards from the TUN) and with `inner = "af-xdp"` (AF_XDP
//! sockets on the LAN veth), both with the outer side on AF_XDP; boringtun-cli and
//! wireguard-go with the kernel forwarding. The server is pinned to CPU 0; the client, both
//! iperf3 ends and (by RPS) the LAN host's receive to CPU 1. Per test: goodput, the server
//! process's CPU seconds per GB and the whole machine's (every CPU's busy time: the kernel's
//! forwarding counts wherever it ran).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use testbed::config::Peer;
use testbed::lan_host::{lan_host, route_lan_through, HOST_V4, LAN_PREFIXES};
use testbed::{Daemon, Implementation, Netns, WgPeer, Xgate, XgateConfig};

use crate::generator::{machine_busy_seconds, DecryptFigure};
use crate::peers::{goodput, iperf_args_to, SECONDS};
use crate::report::{ratio, verdict};
use crate::rig::{namespaces, xgate_config, Rig, ServerKind, SERVER_ENDPOINT};

/// The concentrators the lab compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabServer {
    /// xgate, decrypted packets into the TUN.
    XgateTun,
    /// xgate, decrypted packets out of the LAN veth's AF_XDP sockets.
    XgateLan,
    /// boringtun-cli, the kernel forwarding.
    Boringtun,
    /// wireguard-go, the kernel forwarding.
    WireguardGo,
}

impl LabServer {
    /// Every one, in report order.
    pub const ALL: [LabServer; 4] = [
        LabServer::XgateTun,
        LabServer::XgateLan,
        LabServer::Boringtun,
        LabServer::WireguardGo,
    ];

    /// xgate, with either LAN side.
    pub fn is_xgate(self) -> bool {
        matches!(self, LabServer::XgateTun | LabServer::XgateLan)
    }

    /// The name reports use.
    pub fn label(self) -> &'static str {
        match self {
            LabServer::XgateTun => "xgate inner=tun",
            LabServer::XgateLan => "xgate inner=af-xdp",
            LabServer::Boringtun => "boringtun-cli",
            LabServer::WireguardGo => "wireguard-go",
        }
    }
}

/// Who sends through the lab's tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabClient {
    /// Debian's wireguard-go, as in the peers section.
    WireguardGo,
    /// xgate (AF_XDP on the client's veth, one worker on CPU 1).
    Xgate,
}

impl LabClient {
    /// The name reports use.
    pub fn label(self) -> &'static str {
        match self {
            LabClient::WireguardGo => "wireguard-go",
            LabClient::Xgate => "xgate",
        }
    }
}

/// The client's interface when it is xgate.
const CLIENT_IFACE: &str = "xbcx0";

/// A running client, kept until the lab ends.
enum Client {
    Peer(WgPeer),
    Xgate(Xgate),
}

impl Client {
    /// Its tunnel interface.
    fn iface(&self) -> &str {
        match self {
            Client::Peer(p) => &p.iface,
            Client::Xgate(x) => &x.iface,
        }
    }
}

/// The tests the lab runs.
pub const LAB_TESTS: [&str; 4] = ["tcp-1", "tcp-4", "udp-64", "udp-1420"];

/// One test through one concentrator.
#[derive(Debug, Clone, Serialize)]
pub struct LabFigure {
    /// Concentrator label.
    pub server: String,
    /// Client label.
    pub client: String,
    /// Test name.
    pub test: String,
    /// Goodput iperf3's receiver (the LAN host) saw, Gbit/s.
    pub gbit_per_s: f64,
    /// The concentrator process's CPU seconds per GB delivered.
    pub server_cpu_s_per_gb: f64,
    /// The whole machine's busy CPU seconds per GB delivered.
    pub machine_cpu_s_per_gb: f64,
    /// xgate: packets its LAN sockets sent during the test (0 on the TUN).
    pub lan_tx_packets: u64,
    /// xgate: packets it wrote into the TUN during the test.
    pub tun_writes: u64,
    /// xgate: decrypted packets that went into the TUN instead of the LAN, by reason
    /// ("unresolved 12, not_lan 3"; empty when none).
    pub lan_fallbacks: String,
    /// UDP tests: datagrams the LAN host's sockets received per CPU-second of the
    /// concentrator.
    pub packets_per_server_core: Option<f64>,
    /// The concentrator's system calls per inner packet: UDP datagrams the LAN host's
    /// sockets received, or TCP bytes over 1,368-byte segments (None if perf could not count).
    pub syscalls_per_packet: Option<f64>,
}

/// xgate's LAN fallback counters, by reason.
const FALLBACKS: [&str; 5] = ["not_lan", "unresolved", "fragment", "too_big", "ttl"];

/// xgate's LAN fallback counters now (zeros for the peers).
fn fallbacks(rig: &Rig, server: LabServer) -> [u64; 5] {
    FALLBACKS.map(|r| xgate_stat(rig, server, &format!("lan_fallback_{r}")))
}

/// The LAN host's end of its veth.
pub(crate) const LAN_HOST_IFACE: &str = "xblh";

/// UDP datagrams the LAN host's sockets have received (`Udp: InDatagrams` of its
/// namespace's /proc/net/snmp): counted after the kernel cuts super-packets, unlike the
/// interface's packet count.
fn lan_host_datagrams(lan: &Netns) -> Result<u64> {
    let snmp = lan.run("cat", &["/proc/net/snmp"])?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next(), udp.next());
    let (Some(names), Some(values)) = (names, values) else {
        anyhow::bail!("no Udp lines in the LAN host's /proc/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InDatagrams")
        .and_then(|(_, v)| v.parse().ok())
        .context("Udp InDatagrams in the LAN host's /proc/net/snmp")
}

/// Bytes of TCP payload per segment through the tunnel (1,420-byte MTU, IPv4 and TCP
/// headers with timestamps): the TCP tests' packets are counted as their bytes over this.
const TCP_SEGMENT_PAYLOAD: f64 = 1368.0;

/// The lab with `server` running: the bench rig, and the LAN host's namespace.
pub(crate) fn start(server: LabServer, xgate: &Path, dir: &Path) -> Result<(Rig, Netns)> {
    start_with(server, xgate, dir, false)
}

/// As `start`; with `ike`, xgate also runs its IKEv2 responder (PSK users, a pool of its own,
/// a registry in `dir`).
pub(crate) fn start_with(
    server: LabServer,
    xgate: &Path,
    dir: &Path,
    ike: bool,
) -> Result<(Rig, Netns)> {
    let (mut srv, client_ns) = namespaces(dir)?;
    let lan = lan_host(&srv.ns, "xbench-lan", ("xbl", LAN_HOST_IFACE), 1)?;
    // The LAN host coalesces what it receives, as a NIC's GRO would (the server side's veth
    // does the same): without it, frames from the LAN side's AF_XDP sockets reach its TCP one
    // segment at a time, while the TUN path hands the kernel super-packets.
    lan.run("ethtool", &["-K", LAN_HOST_IFACE, "gro", "on"])?;
    // On a LAN the host's TCP/UDP receive runs on its own machine; a veth runs it in the
    // sender's context, which would charge it to the concentrator's CPU 0 (the forwarding
    // kernel's for the peers, the AF_XDP sender's for xgate). RPS moves it to CPU 1, beside
    // the client, for every server alike; GRO stays where the veth's NAPI runs.
    let rps = format!("/sys/class/net/{LAN_HOST_IFACE}/queues/rx-0/rps_cpus");
    lan.run("sh", &["-c", &format!("echo 2 > {rps}")])
        .context("steering the LAN host's receive to CPU 1 (RPS)")?;
    let (server_key, cpus) = match server {
        LabServer::XgateTun | LabServer::XgateLan => {
            let mut config = xgate_config(ServerKind::XgateAfXdp).context("xgate's config")?;
            // The LAN veth is never an outer interface, whatever the LAN side runs on.
            config.interface.outer_interfaces = vec!["xbs".into()];
            if server == LabServer::XgateLan {
                config.interface.inner = Some("af-xdp".into());
                config.interface.lan_interfaces = vec!["xbl".into()];
            }
            if ike {
                config = crate::ipsec::with_responder(config, dir);
            }
            let cpus = config.interface.cpus.clone();
            (srv.start_xgate(xgate, &config)?, cpus)
        }
        LabServer::Boringtun | LabServer::WireguardGo => {
            let implementation = if server == LabServer::Boringtun {
                Implementation::Boringtun
            } else {
                Implementation::WireguardGo
            };
            let address = format!("{}/16", crate::rig::SERVER_TUNNEL_IP);
            (srv.start_peer(implementation, &[&address], 51820)?, vec![0])
        }
    };
    srv.pin(&cpus)?;
    let rig = Rig {
        client_ns,
        server: srv,
        server_key,
    };
    Ok((rig, lan))
}

/// A counter of xgate's (0 for the peers, which have none).
fn xgate_stat(rig: &Rig, server: LabServer, name: &str) -> u64 {
    if server.is_xgate() {
        rig.server.stat(name).unwrap_or(0)
    } else {
        0
    }
}

/// Starts `kind` as the client, its peer the server, the LAN routed through the tunnel.
fn start_client(kind: LabClient, rig: &Rig, xgate: &Path) -> Result<Client> {
    let allowed = format!("10.77.0.0/16,{LAN_PREFIXES}");
    let client = match kind {
        LabClient::WireguardGo => {
            let client = rig.wireguard_go_client()?;
            client.set_peer(
                &rig.client_ns,
                &rig.server_key,
                Some(SERVER_ENDPOINT),
                &allowed,
                None,
            )?;
            Client::Peer(client)
        }
        LabClient::Xgate => {
            let key = proto::PrivateKey::generate(&mut rand_core::OsRng);
            let mut config =
                XgateConfig::server(CLIENT_IFACE, &key, 51821, &["10.77.0.2/16"]).pinned(&[1]);
            config.interface.mtu = Some(1420);
            config.interface.backend = Some("af-xdp".into());
            config.interface.outer_interfaces = vec!["xbc".into()];
            config.peers = vec![Peer {
                public_key: rig.server_key.to_base64(),
                allowed_ips: allowed.split(',').map(Into::into).collect(),
                endpoint: Some(SERVER_ENDPOINT.into()),
                ..Peer::default()
            }];
            let path = rig.server.dir.join("xgate-client.toml");
            config.write(&path)?;
            let path = path.to_str().context("scratch path is not UTF-8")?;
            let log = rig.server.dir.join("xgate-client.log");
            let client = Xgate::start(
                xgate,
                &rig.client_ns,
                &["--config", path],
                CLIENT_IFACE,
                &log,
            )?;
            let pid = client.daemon.pid().context("the xgate client's pid")?;
            testbed::process::pin_process(pid, &[1])?;
            rig.server.add_peer(&client.public_key, "10.77.0.2/32")?;
            Client::Xgate(client)
        }
    };
    route_lan_through(&rig.client_ns, client.iface())?;
    Ok(client)
}

/// What one server and client gave: every test's figure, and for xgate as both ends the
/// server's profile during one more tcp-1 run.
pub struct LabRun {
    /// Every test's figure.
    pub figures: Vec<LabFigure>,
    /// `perf report`'s top entries for the server during an extra tcp-1 run.
    pub profile: Option<(String, String)>,
}

/// The server's profile during one more tcp-1 run (not one of the measured ones: perf's
/// own cost stays out of the figures).
fn profile_tcp_1(rig: &Rig, label: String, dir: &Path) -> Result<(String, String)> {
    let pid = rig.server.pid()?;
    let profiler = crate::generator::Profiler::start(pid, dir)?;
    let mut cmd = rig.client_ns.command("taskset");
    cmd.args(["-c", "1", "iperf3"])
        .args(iperf_args_to("tcp-1", HOST_V4));
    testbed::netns::run(&mut cmd).context("iperf3 tcp-1 under perf")?;
    Ok((label, profiler.finish()?))
}

/// Runs every lab test through `server` with `client_kind` sending.
pub fn measure(
    server: LabServer,
    client_kind: LabClient,
    xgate: &Path,
    dir: &Path,
) -> Result<LabRun> {
    let (rig, lan) = start(server, xgate, dir)?;
    let client = start_client(client_kind, &rig, xgate)?;
    // The first packets teach the concentrator's kernel the LAN host's link address.
    let reached = testbed::wait_until(Duration::from_secs(10), || {
        testbed::ping(&rig.client_ns, HOST_V4, 1).is_ok_and(|p| p.received == 1)
    });
    anyhow::ensure!(
        reached,
        "{} with a {} client: the LAN host never answered",
        server.label(),
        client_kind.label()
    );
    let mut cmd = lan.command("taskset");
    cmd.args(["-c", "1", "iperf3", "-s", "-p", "5201"]);
    let _iperf = Daemon::spawn(cmd, &rig.server.dir.join("iperf3-lan.log"))?;
    std::thread::sleep(Duration::from_millis(300));
    let mut out = Vec::new();
    for test in LAB_TESTS {
        let (cpu0, busy0) = (rig.server_cpu_seconds()?, machine_busy_seconds()?);
        let lan0 = xgate_stat(&rig, server, "lan_tx_packets");
        let tun0 = xgate_stat(&rig, server, "tun_writes");
        let fallbacks0 = fallbacks(&rig, server);
        let datagrams0 = lan_host_datagrams(&lan)?;
        let syscalls = crate::syscalls::SyscallCount::start(rig.server.pid()?, dir)?;
        let mut cmd = rig.client_ns.command("taskset");
        cmd.args(["-c", "1", "iperf3"])
            .args(iperf_args_to(test, HOST_V4));
        let text = testbed::netns::run(&mut cmd)
            .with_context(|| format!("iperf3 {test} through {}", server.label()))?;
        let cpu = rig.server_cpu_seconds()? - cpu0;
        let busy = machine_busy_seconds()? - busy0;
        let calls = syscalls.finish();
        let datagrams = lan_host_datagrams(&lan)? - datagrams0;
        let json: Value = serde_json::from_str(&text).context("iperf3 JSON")?;
        let gbit = goodput(&json, test.starts_with("udp"));
        let gb = gbit * f64::from(SECONDS) / 8.0;
        let fallen: Vec<String> = FALLBACKS
            .iter()
            .zip(fallbacks(&rig, server).iter().zip(fallbacks0))
            .filter(|(_, (now, before))| **now > *before)
            .map(|(reason, (now, before))| format!("{reason} {}", now - before))
            .collect();
        // UDP: the datagrams the LAN host's sockets took (after super-packets are cut).
        let packets = test.starts_with("udp").then_some(datagrams as f64);
        let per_gb = |s: f64| if gb > 0.0 { s / gb } else { f64::NAN };
        let figure = LabFigure {
            server: server.label().into(),
            client: client_kind.label().into(),
            test: test.into(),
            gbit_per_s: gbit,
            server_cpu_s_per_gb: per_gb(cpu),
            machine_cpu_s_per_gb: per_gb(busy),
            lan_tx_packets: xgate_stat(&rig, server, "lan_tx_packets") - lan0,
            tun_writes: xgate_stat(&rig, server, "tun_writes") - tun0,
            lan_fallbacks: fallen.join(", "),
            packets_per_server_core: packets.filter(|_| cpu > 0.0).map(|p| p / cpu),
            syscalls_per_packet: calls.and_then(|c| {
                // Not the interfaces' packet counts: a super-packet crosses a veth as one.
                let inner = packets.unwrap_or(gb * 1e9 / TCP_SEGMENT_PAYLOAD);
                (inner > 0.0).then(|| c as f64 / inner)
            }),
        };
        eprintln!(
            "  {:<20} {:<13} {:<9} {:>6.2} Gbit/s  server {:>6.2} CPU-s/GB  machine {:>6.2} CPU-s/GB  \
             LAN sends {} TUN writes {} ({}) pkt/core-s {} syscalls/pkt {}",
            figure.server,
            figure.client,
            figure.test,
            figure.gbit_per_s,
            figure.server_cpu_s_per_gb,
            figure.machine_cpu_s_per_gb,
            figure.lan_tx_packets,
            figure.tun_writes,
            figure.lan_fallbacks,
            figure
                .packets_per_server_core
                .map_or("-".into(), |p| format!("{p:.0}")),
            figure
                .syscalls_per_packet
                .map_or("-".into(), |p| format!("{p:.3}")),
        );
        out.push(figure);
    }
    let profile = if server.is_xgate() && client_kind == LabClient::Xgate {
        let label = format!("{}, xgate client, tcp-1", server.label());
        Some(profile_tcp_1(&rig, label, dir)?)
    } else {
        None
    };
    drop(client);
    drop(lan);
    Ok(LabRun {
        figures: out,
        profile,
    })
}

/// The figure for `server`, `client` and `test`, if measured.
fn find<'a>(
    figures: &'a [LabFigure],
    server: LabServer,
    client: LabClient,
    test: &str,
) -> Option<&'a LabFigure> {
    figures
        .iter()
        .find(|f| f.server == server.label() && f.client == client.label() && f.test == test)
}

/// The lab's section of `datapath.md`: every figure, the ratios, issue 20's targets, the
/// decrypt generator's figures and the profiles.
pub fn section(
    figures: &[LabFigure],
    decrypt: &[DecryptFigure],
    profiles: &[(String, String)],
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if figures.is_empty() && decrypt.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\n## LAN lab: client → concentrator → LAN host\n\nA client sends iperf3 traffic \
         through the tunnel to a host on the concentrator's LAN veth, so every packet is \
         decrypted and forwarded to the LAN. xgate's outer side is on AF_XDP both times; \
         `inner=tun` hands decrypted packets to the kernel through the TUN, `inner=af-xdp` \
         sends them from the LAN veth's AF_XDP sockets. boringtun-cli and wireguard-go forward \
         through the kernel. The client is wireguard-go for every server, and xgate for \
         xgate's two LAN sides. Server pinned to CPU 0, the client and iperf3 to CPU 1, and \
         the LAN host's receive steered to CPU 1 by RPS (on a LAN it runs on the host's own \
         machine; a veth would run it on whichever CPU sent). The machine figure counts every \
         CPU's busy time. System calls per packet: the server \
         process's (`perf stat -e raw_syscalls:sys_enter`) over the inner packets (UDP: \
         datagrams the LAN host's sockets received; TCP: bytes over 1,368-byte segments).\n\n\
         | server | client | test | Gbit/s | server CPU-s/GB | machine CPU-s/GB | packets per server CPU-s | system calls per packet | LAN socket sends | TUN writes (LAN fallbacks) |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    for f in figures {
        let fallbacks = if f.lan_fallbacks.is_empty() {
            String::new()
        } else {
            format!(" ({})", f.lan_fallbacks)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {}{fallbacks} |",
            f.server,
            f.client,
            f.test,
            f.gbit_per_s,
            f.server_cpu_s_per_gb,
            f.machine_cpu_s_per_gb,
            f.packets_per_server_core
                .map_or("–".into(), |p| format!("{p:.0}")),
            f.syscalls_per_packet
                .map_or("–".into(), |p| format!("{p:.3}")),
            f.lan_tx_packets,
            f.tun_writes,
        );
    }
    s.push('\n');
    for client in [LabClient::WireguardGo, LabClient::Xgate] {
        let get = |server| find(figures, server, client, "tcp-1");
        let (Some(lan), Some(tun)) = (get(LabServer::XgateLan), get(LabServer::XgateTun)) else {
            continue;
        };
        let machine = ratio(lan.machine_cpu_s_per_gb, tun.machine_cpu_s_per_gb);
        let _ = writeln!(
            s,
            "- tcp-1, {} client, whole machine: `inner=af-xdp` spends {machine:.2}× the CPU per \
             GB of `inner=tun` (target ≤ 0.6: {}); the server process alone {:.2}×.",
            client.label(),
            verdict(machine <= 0.6),
            ratio(lan.server_cpu_s_per_gb, tun.server_cpu_s_per_gb)
        );
        let peers = [
            (LabServer::Boringtun, 1.0 / 3.0),
            (LabServer::WireguardGo, 0.25),
        ];
        for (peer, target) in peers {
            // The peers are measured with the wireguard-go client only.
            let Some(p) = find(figures, peer, LabClient::WireguardGo, "tcp-1") else {
                continue;
            };
            let r = ratio(lan.server_cpu_s_per_gb, p.server_cpu_s_per_gb);
            let _ = writeln!(
                s,
                "- tcp-1, server CPU per GB, `inner=af-xdp` ({} client) against {} \
                 (wireguard-go client): {r:.2}× (target ≤ {target:.2}: {}); whole machine {:.2}×.",
                client.label(),
                peer.label(),
                verdict(r <= target),
                ratio(lan.machine_cpu_s_per_gb, p.machine_cpu_s_per_gb)
            );
        }
    }
    decrypt_table(&mut s, decrypt);
    for (label, text) in profiles {
        let _ = writeln!(
            s,
            "\nThe server during one more tcp-1 run ({label}), `perf report` top entries:\n\n```\n{}\n```",
            text.trim()
        );
    }
    s
}

/// The decrypt generator's figures through the lab, each against `inner=tun` at its size.
fn decrypt_table(s: &mut String, decrypt: &[DecryptFigure]) {
    use std::fmt::Write as _;
    if decrypt.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nThe decrypt generator through the lab: one simulated client blasts pre-sealed \
         packets to the LAN host; counted where they arrive (the LAN host's veth). The ESP \
         rows: a user of the bench's IKE client, AES-256-GCM in UDP, xgate only; each xgate \
         row is compared with the same sealing through the TUN.\n\n\
         | server | size | sent | delivered | pps | packets per server CPU-s | inner Gbit per server CPU-s (Gbit/s per busy core) | packets per busy machine CPU-s | per server CPU-s against inner=tun |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    let (tun, lan) = (LabServer::XgateTun.label(), LabServer::XgateLan.label());
    for f in decrypt {
        // xgate: the same sealing through the TUN; a peer: xgate's WireGuard through the TUN.
        let twin = if f.server.starts_with("xgate") {
            f.server.replacen(lan, tun, 1)
        } else {
            format!("{tun} → LAN")
        };
        let base = decrypt
            .iter()
            .find(|b| b.size == f.size && b.server == twin)
            .map_or(f64::NAN, |b| ratio(f.pps_per_core, b.pps_per_core));
        let _ = writeln!(
            s,
            "| {} | {} B | {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {base:.2}× |",
            f.server,
            f.size,
            f.sent,
            f.delivered,
            f.pps,
            f.pps_per_core,
            f.pps_per_core * f.size as f64 * 8.0 / 1e9,
            f.pps_per_machine_cpu
        );
    }
}
