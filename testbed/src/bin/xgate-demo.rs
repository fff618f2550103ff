//! `make demo`: xgate with its embedded defaults in one namespace, a `wireguard-go` client and a
//! `boringtun-cli` client in two more, each registered through xgate's HTTP API (`xgate peer
//! add`), which assigns its tunnel addresses, and a strongSwan IKEv2 client in a fourth, made a
//! user with `xgate ike user add` (the first user starts the IKEv2 responder) and connecting
//! with the `swanctl.conf` xgate exports; each client pings and moves checksummed data both
//! ways. Prints what held, then `xgate status` from the API, then removes the peers and the
//! user. Then the LAN side both ways: that xgate's decrypted packets went through the TUN
//! (`inner = "tun"`, the default); a second xgate with `inner = "af-xdp"` and a LAN host
//! behind it carries the wireguard-go client's traffic to the LAN host on AF_XDP sockets, and
//! the counters say so. Everything is removed at the end. Exit 0 only if every step held.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use testbed::clients::wg;
use testbed::config::{Peer, XgateConfig};
use testbed::lan_host::{lan_host, route_lan_through, HOST_V4, HOST_V6, LAN_PREFIXES};
use testbed::{
    ping, tcp_transfer, veth_queues, wait_until, Implementation, Netns, Strongswan, WgPeer, Xgate,
};

/// Bytes moved each way per client.
const TRANSFER: u64 = 32 * 1024 * 1024;

struct ClientResult {
    name: &'static str,
    handshake: bool,
    rtt_ms: f64,
    pings: (u32, u32),
    mbytes: f64,
    mbit_up: f64,
    mbit_down: f64,
    checksums_match: bool,
    /// IPv6 through the tunnel (None: not tried).
    ipv6: Option<bool>,
}

fn xgate_binary() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("xgate")));
    std::env::args()
        .skip_while(|a| a != "--xgate")
        .nth(1)
        .map(PathBuf::from)
        .or(beside)
        .unwrap_or_else(|| PathBuf::from("xgate"))
}

/// Runs `xgate ARGS` in the server's namespace (the API listens on its loopback).
fn xgate_cli(server_ns: &Netns, args: &[&str]) -> Result<String> {
    server_ns.run(xgate_binary().to_str().unwrap_or("xgate"), args)
}

/// Signs in to the web console from the server's namespace with the first API token (as a
/// browser would: a form post, then the session cookie) and reads the overview's count of
/// users online.
fn console_online(server_ns: &Netns, dir: &std::path::Path) -> Result<String> {
    let token = std::fs::read_to_string("/var/lib/xgate/xgate0.api-tokens.secret")
        .context("the API token xgate made at its first start")?;
    let jar = dir.join("console-cookies");
    let jar = jar.to_str().unwrap_or("console-cookies");
    let form = format!("token={}", token.trim());
    server_ns.run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-c",
            jar,
            "--data",
            &form,
            "http://127.0.0.1:9180/login",
        ],
    )?;
    let page = server_ns.run("curl", &["-sS", "-b", jar, "http://127.0.0.1:9180/"])?;
    let online = page
        .split("id=\"online\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .ok_or_else(|| anyhow::anyhow!("the overview did not show (not signed in?)"))?;
    Ok(online.to_string())
}

/// The ids of entries named `demo-*` anywhere in `listing` (a `--json` list answer).
fn demo_ids(listing: &serde_json::Value, out: &mut Vec<i64>) {
    match listing {
        serde_json::Value::Array(items) => items.iter().for_each(|v| demo_ids(v, out)),
        serde_json::Value::Object(map) => {
            let named = map
                .get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| n.starts_with("demo-"));
            match (named, map.get("id").and_then(serde_json::Value::as_i64)) {
                (true, Some(id)) => out.push(id),
                _ => map.values().for_each(|v| demo_ids(v, out)),
            }
        }
        _ => {}
    }
}

/// Removes the peers and IKEv2 users a demo stopped half-way left in the registry (xgate's
/// embedded defaults keep one on the host), so this run can add them again.
fn forget_leftovers(server_ns: &Netns) -> Result<()> {
    for (list, rm) in [
        (&["peer", "list", "--json"][..], &["peer", "rm"][..]),
        (
            &["ike", "user", "list", "--json"][..],
            &["ike", "user", "rm"][..],
        ),
    ] {
        let listing: serde_json::Value =
            serde_json::from_str(&xgate_cli(server_ns, list)?).context("a --json listing")?;
        let mut ids = Vec::new();
        demo_ids(&listing, &mut ids);
        for id in ids {
            let id = id.to_string();
            xgate_cli(server_ns, &[rm, &[id.as_str()]].concat())?;
            println!("  (removed {} {id}, left by an earlier demo)", rm.join(" "));
        }
    }
    Ok(())
}

/// A client's namespace and its link to the server's (two queues each way), made before
/// xgate starts: like a NIC, the underlay is there when the daemon looks for interfaces.
fn underlay(implementation: Implementation, n: u8, server_ns: &Netns) -> Result<Netns> {
    let ns = Netns::create(&format!(
        "xgdemo-{}",
        implementation.label().split('-').next().unwrap_or("c")
    ))?;
    let underlay = format!("10.201.{n}");
    veth_queues(
        server_ns,
        &format!("xgd-s{n}"),
        &format!("{underlay}.1/24"),
        &ns,
        &format!("xgd-c{n}"),
        &format!("{underlay}.2/24"),
        2,
    )?;
    Ok(ns)
}

fn client(
    implementation: Implementation,
    n: u8,
    ns: &Netns,
    server_ns: &Netns,
    server: &Xgate,
    dir: &Path,
) -> Result<(WgPeer, (String, String), i64)> {
    let underlay = format!("10.201.{n}");
    let iface = format!("xgd-{}", &implementation.label()[..2]);
    let peer = WgPeer::start(implementation, ns, &iface, dir)?;
    // Registered through the API: the registry keeps it and its pool assigns the addresses.
    let key = peer.public_key.to_base64();
    let name = format!("demo-{}", implementation.label());
    let made: serde_json::Value = serde_json::from_str(&xgate_cli(
        server_ns,
        &["peer", "add", &name, "--public-key", &key, "--json"],
    )?)
    .context("xgate peer add --json")?;
    let id = made["peer"]["id"].as_i64().context("peer id")?;
    let address = |i: usize| {
        made["peer"]["addresses"][i]
            .as_str()
            .map(str::to_string)
            .context("assigned address")
    };
    let (v4, v6) = (address(0)?, address(1)?);
    peer.configure(ns, &[&format!("{v4}/16"), &format!("{v6}/64")], 1420)?;
    peer.set_peer(
        ns,
        &server.public_key,
        Some(&format!("{underlay}.1:51820")),
        "10.77.0.0/16,fd77::/64",
        Some(25),
    )?;
    Ok((peer, (v4, v6), id))
}

fn exercise(
    name: &'static str,
    ns: &Netns,
    server_ns: &Netns,
    peer: &WgPeer,
    seed: u64,
) -> Result<ClientResult> {
    let p = ping(ns, "10.77.0.1", 5)?;
    let handshake = wait_until(Duration::from_secs(5), || {
        wg(ns, &["show", &peer.iface, "latest-handshakes"])
            .map(|t| t.split_whitespace().nth(1).is_some_and(|s| s != "0"))
            .unwrap_or(false)
    });
    let p6 = ping(ns, "fd77::1", 3)?;
    let up_to: SocketAddr = "10.77.0.1:5201".parse()?;
    let up = tcp_transfer(server_ns, up_to, ns, TRANSFER, seed)?;
    let client_addr = wg(server_ns, &["show", "xgate0", "allowed-ips"])?
        .lines()
        .find(|l| l.starts_with(&peer.public_key.to_base64()))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .context("client address on the server")?;
    let down_to: SocketAddr = format!("{client_addr}:5202").parse()?;
    let down = tcp_transfer(ns, down_to, server_ns, TRANSFER, seed + 1)?;
    Ok(ClientResult {
        name,
        handshake,
        rtt_ms: p.avg_rtt_ms,
        pings: (p.received, p.sent),
        mbytes: (up.bytes + down.bytes) as f64 / 1e6,
        mbit_up: up.mbit_per_s(),
        mbit_down: down.mbit_per_s(),
        checksums_match: up.intact(TRANSFER) && down.intact(TRANSFER),
        ipv6: Some(p6.received == p6.sent && p6.sent > 0),
    })
}

/// The strongSwan client's namespace and link, made before xgate starts as the others are.
fn swan_underlay(server_ns: &Netns) -> Result<Netns> {
    let ns = Netns::create("xgdemo-swan")?;
    veth_queues(
        server_ns,
        "xgd-s3",
        "10.201.3.1/24",
        &ns,
        "xgd-c3",
        "10.201.3.2/24",
        2,
    )?;
    Ok(ns)
}

/// Makes the IKEv2 user (the first one starts xgate's responder), starts strongSwan with the
/// `swanctl.conf` xgate exports for it and connects; returns charon, the user's id and
/// address, and whether the connection came up.
fn swan_client(
    ns: &Netns,
    server_ns: &Netns,
    dir: &Path,
) -> Result<(Strongswan, i64, String, bool)> {
    let made: serde_json::Value = serde_json::from_str(&xgate_cli(
        server_ns,
        &[
            "ike",
            "user",
            "add",
            "demo-strongswan",
            "--identity",
            "swan@demo.example",
            "--json",
        ],
    )?)
    .context("xgate ike user add --json")?;
    let id = made["id"].as_i64().context("user id")?;
    let addr = made["addresses"][0]
        .as_str()
        .context("assigned address")?
        .to_string();
    // The export names the server as clients elsewhere reach it; here it is across the veth.
    let exported = xgate_cli(server_ns, &["ike", "user", "config", &id.to_string()])?;
    let conf: String = exported
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("remote_addrs") {
                "    remote_addrs = 10.201.3.1".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let charon = Strongswan::start_with_swanctl(ns, &dir.join("strongswan"), &conf)?;
    let (up, _) = charon.initiate(20)?;
    Ok((charon, id, addr, up))
}

/// Pings and moves data both ways through the strongSwan client's ESP tunnel.
fn exercise_swan(ns: &Netns, server_ns: &Netns, addr: &str, up: bool) -> Result<ClientResult> {
    let p = ping(ns, "10.77.0.1", 5)?;
    let there: SocketAddr = "10.77.0.1:5203".parse()?;
    let sent = tcp_transfer(server_ns, there, ns, TRANSFER, 1003)?;
    let back: SocketAddr = format!("{addr}:5204").parse()?;
    let received = tcp_transfer(ns, back, server_ns, TRANSFER, 1004)?;
    Ok(ClientResult {
        name: "strongswan",
        handshake: up,
        rtt_ms: p.avg_rtt_ms,
        pings: (p.received, p.sent),
        mbytes: (sent.bytes + received.bytes) as f64 / 1e6,
        mbit_up: sent.mbit_per_s(),
        mbit_down: received.mbit_per_s(),
        checksums_match: sent.intact(TRANSFER) && received.intact(TRANSFER),
        ipv6: None,
    })
}

/// The results table; true if every client's every step held.
fn print_results(results: &[ClientResult]) -> bool {
    println!(
        "\n{:<15} {:>9} {:>8} {:>6} {:>8} {:>11} {:>11} {:>9} {:>5}",
        "client",
        "handshake",
        "rtt ms",
        "pings",
        "MB moved",
        "up Mbit/s",
        "down Mbit/s",
        "sha256",
        "ipv6"
    );
    let mut all_ok = true;
    for r in results {
        let ok =
            r.handshake && r.pings.0 == r.pings.1 && r.checksums_match && r.ipv6 != Some(false);
        all_ok &= ok;
        println!(
            "{:<15} {:>9} {:>8.2} {:>6} {:>8.1} {:>11.0} {:>11.0} {:>9} {:>5}",
            r.name,
            if r.handshake { "ok" } else { "FAILED" },
            r.rtt_ms,
            format!("{}/{}", r.pings.0, r.pings.1),
            r.mbytes,
            r.mbit_up,
            r.mbit_down,
            if r.checksums_match {
                "match"
            } else {
                "MISMATCH"
            },
            match r.ipv6 {
                Some(true) => "ok",
                Some(false) => "FAILED",
                None => "-",
            },
        );
    }
    all_ok
}

/// A datapath counter from `xgate show --json` (summed over interfaces).
fn stat(server_ns: &Netns, binary: &Path, name: &str) -> Result<u64> {
    let text = server_ns.run(binary.to_str().unwrap_or("xgate"), &["show", "--json"])?;
    let shown: serde_json::Value = serde_json::from_str(&text).context("xgate show --json")?;
    let all = shown.as_array().context("a list of interfaces")?;
    Ok(all.iter().filter_map(|i| i["stats"][name].as_u64()).sum())
}

/// `inner = "af-xdp"`: a second xgate (interface xgate1, no registry) with a LAN host behind
/// it; the wireguard-go client `peer` (tunnel addresses `v4`, `v6`, in `ns`) reaches the LAN host
/// and the LAN host reaches it, through the LAN interface's AF_XDP sockets.
fn lan_side(
    (server_ns, binary, dir): (&Netns, &Path, &Path),
    (ns, peer, (v4, v6)): (&Netns, &WgPeer, &(String, String)),
) -> Result<bool> {
    println!("\n== the LAN side on AF_XDP: xgate1 with inner = \"af-xdp\" and a LAN host ==\n");
    let lan = lan_host(server_ns, "xgdemo-lan", ("xgd-lan", "xgd-lanh"), 2)?;
    let key = proto::PrivateKey::generate(&mut rand_core::OsRng);
    let mut config = XgateConfig::server("xgate1", &key, 51820, &["10.77.0.1/16", "fd77::1/64"]);
    config.interface.inner = Some("af-xdp".into());
    config.interface.lan_interfaces = vec!["xgd-lan".into()];
    config.peers.push(Peer {
        name: Some("demo-wireguard-go".into()),
        public_key: peer.public_key.to_base64(),
        allowed_ips: vec![format!("{v4}/32"), format!("{v6}/128")],
        ..Peer::default()
    });
    let path = dir.join("xgate1.toml");
    config.write(&path)?;
    let path_arg = path.to_str().context("config path")?;
    let server = Xgate::start(
        binary,
        server_ns,
        &["--config", path_arg],
        "xgate1",
        &dir.join("xgate1.log"),
    )?;
    let allowed = format!("10.77.0.0/16,fd77::/64,{LAN_PREFIXES}");
    peer.set_peer(
        ns,
        &server.public_key,
        Some("10.201.1.1:51820"),
        &allowed,
        Some(25),
    )?;
    route_lan_through(ns, &peer.iface)?;
    println!(
        "xgate1 up: lan_interfaces = [\"xgd-lan\"], LAN host {HOST_V4} / {HOST_V6} in xgdemo-lan"
    );
    let reached = wait_until(Duration::from_secs(10), || {
        ping(ns, HOST_V4, 1).is_ok_and(|p| p.received == 1)
    });
    let p4 = ping(ns, HOST_V4, 5)?;
    let p6 = ping(ns, HOST_V6, 5)?;
    let back = ping(&lan, v4, 5)?;
    // The pings taught the kernel the LAN host's link addresses: from here on nothing for
    // the LAN should need the TUN.
    let tun_before = stat(server_ns, binary, "tun_writes")?;
    let up = tcp_transfer(&lan, format!("{HOST_V4}:5301").parse()?, ns, TRANSFER, 7)?;
    let down = tcp_transfer(ns, format!("[{v6}]:5302").parse()?, &lan, TRANSFER, 8)?;
    let (rx, tx) = (
        stat(server_ns, binary, "lan_rx_packets")?,
        stat(server_ns, binary, "lan_tx_packets")?,
    );
    let tun = stat(server_ns, binary, "tun_writes")? - tun_before;
    let pings_ok = reached && p4.received == 5 && p6.received == 5 && back.received == 5;
    let data_ok = up.intact(TRANSFER) && down.intact(TRANSFER);
    println!(
        "client -> LAN host: ping v4 {}/5, v6 {}/5; LAN host -> client: ping {}/5",
        p4.received, p6.received, back.received
    );
    println!(
        "{} MB each way, checksums {}: client -> LAN (IPv4) {:.0} Mbit/s, LAN -> client (IPv6) \
         {:.0} Mbit/s",
        TRANSFER >> 20,
        if data_ok { "match" } else { "MISMATCH" },
        up.mbit_per_s(),
        down.mbit_per_s()
    );
    let carried = rx > 10_000 && tx > 10_000 && tun == 0;
    println!(
        "LAN AF_XDP sockets: {rx} packets in, {tx} out; written into the TUN meanwhile: {tun} ({})",
        if carried { "ok" } else { "FAILED" }
    );
    let log = std::fs::read_to_string(dir.join("xgate1.log")).unwrap_or_default();
    if let Some(line) = log.lines().find(|l| l.contains("xgate is up")) {
        let from = line.find("backend=").unwrap_or(0);
        println!("xgate1's log: {}", &line[from..]);
    }
    drop(server);
    drop(lan);
    Ok(pings_ok && data_ok && carried)
}

fn demo() -> Result<bool> {
    // Ended with Ctrl-C, the demo still removes its namespaces and clients.
    testbed::interrupt::clean_up_on_signals()?;
    let binary = xgate_binary();
    if !binary.exists() {
        bail!(
            "{} not found; run `make demo` (it builds xgate first)",
            binary.display()
        );
    }
    let dir = std::env::temp_dir().join("xgate-demo");
    std::fs::create_dir_all(&dir)?;
    println!(
        "== xgate demo: embedded defaults, two real WireGuard clients and a strongSwan IKEv2 \
         client ==\n"
    );

    let server_ns = Netns::create("xgdemo-srv")?;
    let clients = [
        (1u8, Implementation::WireguardGo),
        (2, Implementation::Boringtun),
    ];
    let mut underlays = Vec::new();
    for (n, implementation) in clients {
        underlays.push(underlay(implementation, n, &server_ns)?);
    }
    let swan_ns = swan_underlay(&server_ns)?;
    let server = Xgate::start(&binary, &server_ns, &[], "xgate0", &dir.join("xgate.log"))?;
    println!(
        "xgate up in namespace xgdemo-srv: interface xgate0, port 51820, 10.77.0.1/16, fd77::1/64"
    );
    println!("  public key {}", server.public_key);
    let status: serde_json::Value =
        serde_json::from_str(&xgate_cli(&server_ns, &["status", "--json"])?)
            .context("xgate status --json")?;
    println!(
        "  backend \"auto\" got: {}\n",
        status["backend"].as_str().unwrap_or("(not reported)")
    );

    forget_leftovers(&server_ns)?;
    let mut results = Vec::new();
    let mut namespaces = Vec::new();
    let mut ids = Vec::new();
    for ((n, implementation), ns) in clients.into_iter().zip(underlays) {
        let (peer, (addr, addr6), id) = client(implementation, n, &ns, &server_ns, &server, &dir)?;
        println!(
            "{} client in namespace {}, registered by the API as peer {id} with {addr}: connecting...",
            implementation.label(),
            ns.name()
        );
        ids.push(id);
        let r = exercise(
            implementation.label(),
            &ns,
            &server_ns,
            &peer,
            1000 + u64::from(n),
        )?;
        results.push(r);
        namespaces.push((ns, peer, (addr, addr6)));
    }
    let (charon, swan_id, swan_addr, swan_up) = swan_client(&swan_ns, &server_ns, &dir)?;
    println!(
        "strongswan client in namespace {}, made IKEv2 user {swan_id} with {swan_addr}, \
         connected with the exported swanctl.conf: {}",
        swan_ns.name(),
        if swan_up { "up" } else { "FAILED" }
    );
    results.push(exercise_swan(&swan_ns, &server_ns, &swan_addr, swan_up)?);

    let all_ok = print_results(&results);
    // The overview's figures are sampled once a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let console_ok = match console_online(&server_ns, &dir) {
        Ok(n) => {
            println!(
                "\nweb console (http://127.0.0.1:9180/ in xgdemo-srv): signed in with the API \
                 token; the overview shows {n} users online"
            );
            true
        }
        Err(e) => {
            println!("\nweb console: FAILED to sign in and read the overview: {e:#}");
            false
        }
    };
    println!("\n$ xgate status");
    print!("{}", xgate_cli(&server_ns, &["status"])?);
    println!("\n$ xgate ike status");
    print!("{}", xgate_cli(&server_ns, &["ike", "status"])?);
    println!("\n$ xgate show");
    let show = server_ns.run(binary.to_str().unwrap_or("xgate"), &["show", "xgate0"])?;
    print!("{show}");
    // The demo's peers leave the registry with it.
    for id in ids {
        xgate_cli(&server_ns, &["peer", "rm", &id.to_string()])?;
    }
    xgate_cli(&server_ns, &["ike", "user", "rm", &swan_id.to_string()])?;
    drop(charon);
    drop(swan_ns);
    let tun_writes = stat(&server_ns, &binary, "tun_writes")?;
    println!("\nxgate0 (inner = \"tun\", the default) wrote {tun_writes} decrypted packets into the TUN.");
    drop(server);
    let lan_ok = match namespaces.first() {
        Some((ns, peer, addrs)) => lan_side((&server_ns, &binary, &dir), (ns, peer, addrs))?,
        None => false,
    };
    drop(namespaces);
    drop(server_ns);
    println!("\nremoved namespaces xgdemo-*, the clients and xgate.");
    Ok(all_ok && lan_ok && console_ok)
}

fn main() -> ExitCode {
    match demo() {
        Ok(true) => {
            println!("demo: every step held.");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("demo: FAILED (see the table above).");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
