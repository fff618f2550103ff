//! The IKEv2 users side by side: after the run, the same users (identities, credentials,
//! source addresses, arrival pace) log in again against a fresh xgate and against each peer
//! the scenario names (strongSwan's charon with kernel-libipsec, as a deployed responder
//! logs), each server alone on the server CPUs, one login method after another. Per method:
//! the server's CPU seconds over those logins (all its threads, to the nanosecond), what it
//! spends idle over as long (its rate read just before), and its resident memory growth per
//! user logged in (one IKE SA with its CHILD_SA).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use testbed::{Netns, StrongswanServer};

use crate::ike_load::{IkeFigures, IkeUserSpec};
use crate::ike_target::{domain, IKE_IDENTITY};
use crate::run::{spawn_in, RunOptions};
use crate::target::{namespaces, Target, TargetKind, TargetOptions, SERVER_UNDERLAY};

/// The server's tunnel address the users ping (as in the run), and what they reach.
const TUNNEL: (Ipv4Addr, &str) = (Ipv4Addr::new(10, 96, 0, 1), "10.96.0.0/16");
/// strongSwan's pool: as many addresses as the most IKEv2 users a scenario may have.
const STRONGSWAN_POOL: &str = "10.97.0.2-10.97.31.250";
/// How long the server is left to settle after a method's logins before it is read.
const SETTLE: Duration = Duration::from_secs(1);
/// How long its idle spending is read for before a method's logins.
const IDLE: Duration = Duration::from_secs(2);

/// A server given the users, with what its figures are read from; dropped (stopped, its
/// namespaces removed) once its logins are done.
struct Server {
    label: &'static str,
    pid: u32,
    running: Running,
}

/// What runs, in the order it is stopped.
enum Running {
    Xgate(Box<Target>),
    Strongswan(Box<Charon>),
}

/// charon, then the namespace it runs in, then the users' (held only to be stopped, in
/// this order).
struct Charon {
    _charon: testbed::Strongswan,
    _server: testbed::Server,
    client_ns: Netns,
}

impl Server {
    fn client_ns(&self) -> &Netns {
        match &self.running {
            Running::Xgate(t) => &t.client_ns,
            Running::Strongswan(c) => &c.client_ns,
        }
    }
}

/// Runs `users` against a fresh xgate, then each of `peers`; rows by server, then method.
pub fn run(
    opts: &RunOptions,
    (users, pki): (&[IkeUserSpec], &Path),
    peers: &[String],
    (window, bound): (Duration, Duration),
) -> Result<Vec<IkeFigures>> {
    let mut rows = Vec::new();
    let servers = std::iter::once("xgate").chain(peers.iter().map(String::as_str));
    for (k, name) in servers.enumerate() {
        let target = TargetOptions {
            xgate: opts.xgate.clone(),
            dir: crate::target::work_dir(&format!("{}s{k}", opts.tag)),
            cpus: opts.server_cpus.clone(),
            tag: format!("{}s{k}", opts.tag),
            ike: Some(pki.to_path_buf()),
            failover: None,
        };
        let server = match name {
            "strongswan" => start_strongswan(&target, users, pki)?,
            _ => start_xgate(&target, users)?,
        };
        eprintln!(
            "{}: the same {} IKEv2 users, one method after another",
            server.label,
            users.len()
        );
        rows.extend(measure(
            &server,
            users,
            opts.load_cpus.first().copied(),
            (window, bound),
        )?);
    }
    Ok(rows)
}

/// A fresh xgate (IKEv2 on, no WireGuard users) with the users registered.
fn start_xgate(opts: &TargetOptions, users: &[IkeUserSpec]) -> Result<Server> {
    let target = Target::start(TargetKind::Xgate, opts)?;
    target.register_ike(users)?;
    Ok(Server {
        label: "xgate",
        pid: target.pid,
        running: Running::Xgate(Box::new(target)),
    })
}

/// charon as the responder in namespaces like xgate's: the server's certificate and the
/// CA, the users' passwords and keys, a connection per method told apart by identity.
fn start_strongswan(opts: &TargetOptions, users: &[IkeUserSpec], pki: &Path) -> Result<Server> {
    let (server, client_ns) = namespaces(opts)?;
    let secrets = |method: &str| -> Vec<(String, String)> {
        users
            .iter()
            .filter(|u| u.method == method)
            .filter_map(|u| match &u.credentials {
                ike::Credentials::Password { user, password, .. } => {
                    Some((user.clone(), password.clone()))
                }
                ike::Credentials::Psk(key) => Some((
                    u.identity.clone(),
                    String::from_utf8_lossy(key).into_owned(),
                )),
                ike::Credentials::Certificate(_) => None,
            })
            .collect()
    };
    let has = |method: &str| users.iter().any(|u| u.method == method);
    let config = StrongswanServer {
        local_addr: SERVER_UNDERLAY.to_string(),
        identity: IKE_IDENTITY.into(),
        cert: Some(testbed::CertFiles {
            name: "server".into(),
            cert: pki.join("server.pem"),
            key: pki.join("server.key"),
            ca: pki.join("ca.pem"),
        }),
        // What the users offer (Policy::modern()) and xgate picks first.
        proposals: "aes256gcm16-prfsha256-x25519".into(),
        esp_proposals: "aes256gcm16".into(),
        pool: STRONGSWAN_POOL.into(),
        tunnel: (TUNNEL.0.to_string(), TUNNEL.1.into()),
        psk_users: secrets("psk"),
        cert_users: has("cert").then(|| format!("*@{}", domain("cert"))),
        eap_users: has("eap").then(|| (format!("*@{}", domain("eap")), secrets("eap"))),
    };
    let charon = config.start(&server.ns, &opts.dir.join("charon"))?;
    let pid = charon.pid().context("charon has no process id")?;
    testbed::process::pin_process(pid, &opts.cpus)?;
    Ok(Server {
        label: "strongswan",
        pid,
        running: Running::Strongswan(Box::new(Charon {
            _charon: charon,
            _server: server,
            client_ns,
        })),
    })
}

/// Each method's users in turn against `server`, at the run's pace.
fn measure(
    server: &Server,
    users: &[IkeUserSpec],
    load_cpu: Option<usize>,
    (window, bound): (Duration, Duration),
) -> Result<Vec<IkeFigures>> {
    let methods = crate::ike_load::methods_of(users);
    let mut rows = Vec::new();
    for method in methods {
        let these: Vec<IkeUserSpec> = users
            .iter()
            .filter(|u| u.method == method)
            .cloned()
            .collect();
        // The same arrivals per second as in the run.
        let share = these.len() as f64 / users.len().max(1) as f64;
        let pace = window.mul_f64(share);
        let (idle0, _) = readings(server.pid)?;
        std::thread::sleep(IDLE);
        let (cpu0, rss0) = readings(server.pid)?;
        let idle_rate = (cpu0 - idle0) / IDLE.as_secs_f64();
        let threads0 = testbed::procstat::cpu_by_thread(server.pid);
        let started = Instant::now();
        let label = server.label;
        let ran = spawn_in(server.client_ns(), move || {
            if let Some(cpu) = load_cpu {
                testbed::process::pin_thread(&[cpu]);
            }
            let at = (SERVER_UNDERLAY, TUNNEL.0, label);
            crate::ike_load::run(&these, at, (Instant::now(), pace, bound))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the IKEv2 users' thread panicked"))??;
        std::thread::sleep(SETTLE);
        let (cpu1, rss1) = readings(server.pid)?;
        let span = started.elapsed().as_secs_f64();
        let threads =
            testbed::procstat::cpu_spent(&threads0, &testbed::procstat::cpu_by_thread(server.pid));
        for mut f in ran {
            f.cpu_by_thread = threads.clone();
            f.server_cpu_s = cpu1 - cpu0;
            f.idle_cpu_s = (idle_rate * span).min(f.server_cpu_s);
            if f.connected > 0 {
                f.bytes_per_sa = rss1.saturating_sub(rss0) as f64 / f.connected as f64;
            }
            rows.push(f);
        }
    }
    Ok(rows)
}

/// The server's CPU seconds (all threads) and resident bytes.
fn readings(pid: u32) -> Result<(f64, u64)> {
    let cpu = testbed::procstat::cpu_seconds_exact(pid).context("the server exited")?;
    Ok((cpu, testbed::procstat::rss_bytes(pid)))
}
