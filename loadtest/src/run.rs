//! One run from start to finish: namespaces and server up, users registered, attempts
//! prepared, the load loop (with the flood beside it for mixed-flood), and the result.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use proto::{PrivateKey, PublicKey};

use crate::client::{Attempt, Shared};
use crate::failover::{Doomed, Observed};
use crate::ike_target;
use crate::results::{FloodFigures, RunResult, VERSION};
use crate::sampler::{Sample, Sampler};
use crate::scenario::{Kind, Scenario};
use crate::schedule;
use crate::tally::Measured;
use crate::target::{
    counters_delta, flood_source, user_source, Target, TargetKind, TargetOptions, SERVER_TUNNEL_IP,
};
use crate::threads::Spread;

/// What to run and where.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// The server.
    pub target: TargetKind,
    /// The `xgate` binary.
    pub xgate: PathBuf,
    /// CPUs the server is pinned to.
    pub server_cpus: Vec<usize>,
    /// CPUs the load threads are pinned to, round robin (empty: anywhere).
    pub load_cpus: Vec<usize>,
    /// Threads the simulated users are spread over.
    pub load_threads: usize,
    /// Show a live progress bar.
    pub progress: bool,
    /// Makes namespace names unique.
    pub tag: String,
}

/// Lets this process hold one socket per user if it may; returns how many it may hold.
fn raise_open_files(needed: u64) -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        if lim.rlim_cur >= needed {
            return Ok(lim.rlim_cur);
        }
        let wanted = libc::rlimit {
            rlim_cur: needed,
            rlim_max: lim.rlim_max.max(needed),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            return Ok(needed);
        }
        // Without CAP_SYS_RESOURCE the hard limit stands: take all of it.
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
        Ok(lim.rlim_max)
    }
}

/// Runs `f` over `items` on every CPU, keeping the order.
fn parallel_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<U>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// How many user sockets the process may hold: one per user if it may open that many files
/// (keeping 4,096 for the rest), else fewer, shared by users of the same load thread.
fn socket_count(users: usize, threads: usize) -> Result<usize> {
    let may_open = raise_open_files(users as u64 + 4096)?;
    let may_hold = may_open.saturating_sub(4096) as usize;
    let endpoints = crate::threads::endpoints_for(users, may_hold, threads);
    if endpoints < users {
        eprintln!(
            "the process may open {may_open} files: {users} users share {endpoints} source \
             addresses and ports (raise the hard limit of open files for one each)"
        );
    }
    Ok(endpoints)
}

/// The users, registered on the server and ready to arrive.
struct Prepared {
    /// Every attempt, sorted by arrival, its first initiation made.
    attempts: Vec<Attempt>,
    /// Each user's tunnel address.
    tunnel_ips: Vec<std::net::Ipv4Addr>,
    /// What every attempt shares (the clock starts when this is made).
    shared: Shared,
    /// Real initiations of one registered user, for the flood to replay (mixed-flood).
    replays: Vec<[u8; 148]>,
    /// The server's resident memory before and after registering the users.
    rss: (u64, u64),
}

/// Makes the users' keys, registers them on the server, and prepares every attempt.
fn prepare(s: &Scenario, target: &Target) -> Result<Prepared> {
    let users = s.users as usize;
    // Keys: one per user, plus one registered user whose initiations the flood replays.
    let flooding = s.kind == Kind::MixedFlood;
    let keys: Vec<PrivateKey> = (0..users + usize::from(flooding))
        .map(|_| PrivateKey::generate(&mut rand_core::OsRng))
        .collect();
    let publics: Vec<PublicKey> = parallel_map(&keys, PrivateKey::public_key);
    let rss_empty = crate::server_side::settled_rss(target.pid, Duration::ZERO);
    let t = Instant::now();
    let tunnel_ips = target.register(&publics)?;
    eprintln!(
        "registered {} users in {:.1} s",
        publics.len(),
        t.elapsed().as_secs_f64()
    );
    // xgate's API answers on tokio's blocking threads, which exit after 10 s idle; only
    // then does the allocator return what registering thousands of users took.
    let settle = if target.kind == TargetKind::Xgate && target.cluster.is_none() {
        Duration::from_secs(11)
    } else {
        Duration::ZERO
    };
    let rss_registered = crate::server_side::settled_rss(target.pid, settle);

    let traffic = s.traffic;
    let shared = Shared {
        server: target.endpoint,
        server_ip: SERVER_TUNNEL_IP,
        packet_bytes: traffic.packet_bytes(),
        echo_every: (traffic.packets_per_second() > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / traffic.packets_per_second())),
        traffic_for: Duration::from_secs_f64(traffic.seconds),
        start: Instant::now(),
        unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
        origin: None,
        killed: None,
    };
    let keepalive = (traffic.persistent_keepalive > 0)
        .then(|| Duration::from_secs(u64::from(traffic.persistent_keepalive)));
    let t = Instant::now();
    let server_key = target.public_key;
    let attempts: Vec<Attempt> = parallel_map(&schedule::arrivals(s), |a| {
        let u = a.user as usize;
        Attempt::prepare(*a, &keys[u], server_key, tunnel_ips[u], keepalive, &shared)
    });
    eprintln!(
        "prepared {} initiations in {:.1} s",
        attempts.len(),
        t.elapsed().as_secs_f64()
    );
    let replays = if flooding {
        testbed::flood::real_initiations(&keys[users], server_key, 64)
    } else {
        Vec::new()
    };
    Ok(Prepared {
        attempts,
        tunnel_ips,
        shared,
        replays,
        rss: (rss_empty, rss_registered),
    })
}

/// A progress bar of users connected (hidden unless asked for).
fn progress_bar(shown: bool, users: u64) -> ProgressBar {
    let bar = if shown {
        ProgressBar::new(users)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} connected  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The flood beside the load (mixed-flood), on a thread in the users' namespace.
fn start_flood(
    s: &Scenario,
    target: &Target,
    replays: Vec<[u8; 148]>,
) -> Option<std::thread::JoinHandle<Result<testbed::flood::FloodSent>>> {
    let plan = s.flood.map(|f| testbed::flood::FloodPlan {
        server: target.endpoint,
        server_key: target.public_key,
        sources: (0..f.sources).map(flood_source).collect(),
        forged_per_second: f.forged_per_second,
        replays,
        replayed_per_second: f.replayed_per_second,
        duration: Duration::from_secs_f64(s.seconds.max(1.0)),
    })?;
    Some(spawn_in(&target.client_ns, move || {
        testbed::flood::flood(&plan)
    }))
}

/// What the flood thread sent, once it has ended.
fn join_flood(
    flood: Option<std::thread::JoinHandle<Result<testbed::flood::FloodSent>>>,
) -> Result<Option<FloodFigures>> {
    let Some(h) = flood else {
        return Ok(None);
    };
    let sent = h
        .join()
        .map_err(|_| anyhow::anyhow!("the flood thread panicked"))??;
    Ok(Some(FloodFigures {
        forged_sent: sent.forged,
        replayed_sent: sent.replayed,
        refused_by_kernel: sent.refused,
    }))
}

/// What the load threads measured, the server's samples, and what the failure thread saw.
type Driven = (Measured, Vec<Sample>, Option<Observed>);

/// Runs the load threads in the users' namespace (pinned to `load_cpus`), sampling the server
/// each second, and the failure at its moment if there is one; returns what they measured
/// (their own CPU seconds too).
fn drive(
    target: &Target,
    opts: &RunOptions,
    (endpoints, spread): (usize, Spread),
    prepared: Prepared,
    (bar, failure): (ProgressBar, Option<Doomed>),
) -> Result<Driven> {
    let bound = opts.scenario.bound();
    let mut pids = vec![target.pid];
    if let Some(c) = &target.cluster {
        pids.push(c.survivor.pid()?);
    }
    target.client_ns.enter(move || -> Result<Driven> {
        let Prepared {
            attempts,
            tunnel_ips,
            mut shared,
            ..
        } = prepared;
        let sockets: Vec<std::net::UdpSocket> = (0..endpoints as u32)
            .map(|e| crate::engine::bind_endpoint(user_source(e)))
            .collect::<Result<_>>()?;
        // Offset zero is now for every load thread and for the failure.
        let origin = Instant::now();
        shared.origin = Some(origin);
        let failure = failure.map(|d| {
            let killed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            shared.killed = Some(killed.clone());
            crate::failover::arm(origin, d, killed)
        });
        // Started with the load, so sample k ends where the timeline's second k does.
        let sampler = Sampler::start(&pids, Duration::from_secs(1));
        let tally = crate::threads::run(
            sockets,
            &tunnel_ips,
            attempts,
            &shared,
            bound,
            &spread,
            |p| {
                bar.set_position(p.connected);
                bar.set_message(format!(
                    "{} arrived, {} cookies, {} gave up, {:.0} s",
                    p.arrived, p.cookies, p.failed, p.elapsed
                ));
            },
        );
        let samples = sampler.stop();
        let seen = match failure {
            Some(h) => Some(
                h.join()
                    .map_err(|_| anyhow::anyhow!("the failure thread panicked"))??,
            ),
            None => None,
        };
        Ok((tally?.measured(), samples, seen))
    })?
}

/// Starts the run's server (two nodes for a failover) and says what is about to run.
fn start_target(opts: &RunOptions, dir: PathBuf, ike: Option<PathBuf>) -> Result<Target> {
    let s = &opts.scenario;
    let target = Target::start(
        opts.target,
        &TargetOptions {
            xgate: opts.xgate.clone(),
            dir,
            cpus: opts.server_cpus.clone(),
            tag: opts.tag.clone(),
            ike,
            failover: s.failover.clone(),
        },
    )?;
    eprintln!(
        "{}: {} users, {:?} over {} s (bound {:.0} s)",
        opts.target.label(),
        s.users,
        s.kind,
        s.seconds,
        s.bound().as_secs_f64()
    );
    Ok(target)
}

/// Makes the scenario's IKEv2 users (in `pki`, if it has any) and registers them on xgate.
fn register_ike_users(
    opts: &RunOptions,
    target: &Target,
    pki: Option<&std::path::Path>,
) -> Result<Vec<crate::ike_load::IkeUserSpec>> {
    let s = &opts.scenario;
    let Some(pki) = pki else {
        return Ok(Vec::new());
    };
    anyhow::ensure!(
        target.kind == TargetKind::Xgate,
        "scenario {}: ike_users: the IKEv2 users log in to xgate (and to the scenario's \
         ike_peers after the run); run it with --target xgate",
        s.name
    );
    let methods = s.ike_methods();
    let users = ike_target::ike_users(&opts.xgate, pki, (s.ike_users, &methods), s.users)?;
    target.register_ike(&users)?;
    Ok(users)
}

/// A failover scenario's target made ready (real clients connected, every user on node B)
/// and what its failure will kill; None for other scenarios.
fn ready_for_failure(
    s: &Scenario,
    target: &mut Target,
    endpoints: usize,
) -> Result<Option<Doomed>> {
    let Some(f) = &s.failover else {
        return Ok(None);
    };
    // Node B's initiations name no receiver: only a user alone on its socket can take one.
    anyhow::ensure!(
        endpoints == s.users as usize,
        "scenario {}: a failover needs a socket per user, and the process may open only \
         {endpoints} for {} users: raise the limit of open files",
        s.name,
        s.users
    );
    Ok(Some(target.ready_for_failure(
        f,
        (s.users as usize, s.traffic.seconds),
    )?))
}

/// Runs one scenario against one target and returns what it measured.
pub fn run(opts: &RunOptions) -> Result<RunResult> {
    let s = &opts.scenario;
    s.check()?;
    let spread = Spread::new(opts.load_threads, opts.load_cpus.clone(), s.users as usize);
    let endpoints = socket_count(s.users as usize, spread.threads)?;
    let dir = crate::target::work_dir(&opts.tag);
    // One CA and one set of IKEv2 users for every server that gets them.
    let ike_pki = (s.ike_users > 0).then(|| dir.join("pki"));
    let mut target = start_target(opts, dir, ike_pki.clone())?;
    let pid = target.pid;
    let mut prepared = prepare(s, &target)?;
    let ike_users = register_ike_users(opts, &target, ike_pki.as_deref())?;
    let (rss_empty, rss_registered) = prepared.rss;
    let doomed = ready_for_failure(s, &mut target, endpoints)?;
    // A failover's counters would be half a story: node A's die with it.
    let counters_before = match doomed {
        Some(_) => None,
        None => target.counters()?,
    };
    let bar = progress_bar(opts.progress, s.users as u64);
    let flood = start_flood(s, &target, std::mem::take(&mut prepared.replays));
    let scraper = (s.scrapes_per_second > 0 && target.kind == TargetKind::Xgate).then(|| {
        let url = format!("http://{}/metrics", crate::target::API);
        crate::scraper::Scraper::start(&target.server.ns, url, s.scrapes_per_second, s.bound())
    });
    let threads_before = testbed::procstat::cpu_by_thread(pid);
    // The IKEv2 users log in on a thread of their own, over the same window.
    let window = Duration::from_secs_f64(s.seconds);
    let ike = (!ike_users.is_empty()).then(|| {
        let (users, bound) = (ike_users.clone(), s.bound());
        spawn_in(&target.client_ns, move || {
            let server = (crate::target::SERVER_UNDERLAY, SERVER_TUNNEL_IP, "xgate");
            crate::ike_load::run(&users, server, (Instant::now(), window, bound))
        })
    });
    let load_threads = spread.threads;
    let (mut measured, samples, seen) = drive(
        &target,
        opts,
        (endpoints, spread),
        prepared,
        (bar.clone(), doomed),
    )?;
    let failover = s
        .failover
        .as_ref()
        .zip(seen.as_ref())
        .map(|(f, seen)| crate::failover::figures(f.take_over, &measured.resumed, seen));
    let ike = match ike {
        Some(h) => h
            .join()
            .map_err(|_| anyhow::anyhow!("the IKEv2 users' thread panicked"))??,
        None => Vec::new(),
    };
    bar.finish_and_clear();
    let scrapes = scraper.map(crate::scraper::Scraper::finish).transpose()?;
    let rss_idle = crate::server_side::idle_rss(s, pid);
    let flood = join_flood(flood)?;
    if !target.is_running() {
        bail!(
            "{} exited during the run:\n{}",
            opts.target.label(),
            target.log()
        );
    }
    let threads_after = testbed::procstat::cpu_by_thread(pid);
    if counters_before.is_some() {
        // xgate's /metrics is the state its control plane publishes once a second: wait for a
        // publication taken after the run.
        std::thread::sleep(Duration::from_millis(1500));
    }
    let counters = match counters_before {
        Some(b) => target.counters()?.map(|a| counters_delta(&b, &a)),
        None => None,
    };
    let cpu_by_thread = testbed::procstat::cpu_spent(&threads_before, &threads_after);
    measured.clients.users = s.users as u64;
    measured.clients.endpoints = endpoints as u64;
    measured.clients.load_threads = load_threads as u64;
    let server = crate::server_side::server_figures(
        &mut measured,
        &samples,
        target.cpus,
        (rss_empty, rss_registered, rss_idle),
        cpu_by_thread,
        counters,
    );
    let ike_side_by_side = match &ike_pki {
        Some(pki) if !s.ike_peers.is_empty() => {
            // The run's server is done with: the side-by-side servers have the CPUs alone.
            drop(target);
            // The run's own figures are kept if the side by side fails (charon missing, say).
            crate::ike_side_by_side::run(opts, (&ike_users, pki), &s.ike_peers, (window, s.bound()))
                .unwrap_or_else(|e| {
                    eprintln!("IKEv2 side by side not measured: {e:#}");
                    Vec::new()
                })
        }
        _ => Vec::new(),
    };
    Ok(RunResult {
        version: VERSION,
        machine: testbed::machine::Machine::detect(),
        target: opts.target.label().into(),
        scenario: s.clone(),
        duration_s: measured.duration_s,
        clients: measured.clients,
        latency: measured.latency,
        server,
        timeline: measured.timeline,
        flood,
        scrapes,
        ike,
        ike_side_by_side,
        failover,
    })
}

/// Runs `f` on a new thread inside `ns` without waiting for it.
pub(crate) fn spawn_in<T: Send + 'static>(
    ns: &testbed::Netns,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    let path = format!("/var/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a descriptor we hold; affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        f()
    })
}
