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
use crate::results::{FloodFigures, RunResult, ServerFigures, VERSION};
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
    let rss_empty = settled_rss(target.pid, Duration::ZERO);
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
    let rss_registered = settled_rss(target.pid, settle);

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
        fail_at: None,
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
        // The engine's clock starts now at `shared.start`: the failure is set on both.
        let failure = failure.map(|d| {
            let after = d.after;
            shared.fail_at = Some(shared.start + after);
            crate::failover::arm(Instant::now() + after, d)
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

/// Runs one scenario against one target and returns what it measured.
pub fn run(opts: &RunOptions) -> Result<RunResult> {
    let s = &opts.scenario;
    s.check()?;
    let spread = Spread::new(opts.load_threads, opts.load_cpus.clone(), s.users as usize);
    let endpoints = socket_count(s.users as usize, spread.threads)?;
    let dir = crate::target::work_dir(&opts.tag);
    // One CA and one set of IKEv2 users for every server that gets them.
    let ike_pki = (s.ike_users > 0).then(|| dir.join("pki"));
    let mut target = Target::start(
        opts.target,
        &TargetOptions {
            xgate: opts.xgate.clone(),
            dir: dir.clone(),
            cpus: opts.server_cpus.clone(),
            tag: opts.tag.clone(),
            ike: ike_pki.clone(),
            failover: s.failover.clone(),
        },
    )?;
    let pid = target.pid;
    eprintln!(
        "{}: {} users, {:?} over {} s (bound {:.0} s)",
        opts.target.label(),
        s.users,
        s.kind,
        s.seconds,
        s.bound().as_secs_f64()
    );
    let mut prepared = prepare(s, &target)?;
    anyhow::ensure!(
        s.ike_users == 0 || target.kind == TargetKind::Xgate,
        "scenario {}: ike_users: the IKEv2 users log in to xgate (and to the scenario's \
         ike_peers after the run); run it with --target xgate",
        s.name
    );
    let ike_users = match &ike_pki {
        Some(pki) => {
            let methods = s.ike_methods();
            let users = ike_target::ike_users(&opts.xgate, pki, (s.ike_users, &methods), s.users)?;
            target.register_ike(&users)?;
            users
        }
        None => Vec::new(),
    };
    let (rss_empty, rss_registered) = prepared.rss;
    // A failover's counters would be half a story: node A's die with it.
    let doomed = match &s.failover {
        Some(f) => Some(target.ready_for_failure(f, s.users as usize)?),
        None => None,
    };
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
    // Everyone stays connected and silent, so the server can show what an idle session costs.
    if s.idle_seconds > 0.0 {
        eprintln!(
            "idle for {:.0} s before reading memory per idle session",
            s.idle_seconds
        );
        std::thread::sleep(Duration::from_secs_f64(s.idle_seconds));
    }
    let rss_idle = (s.idle_seconds > 0.0).then(|| testbed::procstat::rss_bytes(pid));
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
    let server = server_figures(
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

/// Fills the timeline's server columns from the samples and derives the server figures.
fn server_figures(
    m: &mut Measured,
    samples: &[Sample],
    cpus: usize,
    (rss_empty, rss_registered, rss_idle): (u64, u64, Option<u64>),
    cpu_seconds_by_thread: std::collections::BTreeMap<String, f64>,
    counters: Option<crate::results::ServerCounters>,
) -> ServerFigures {
    for (k, sec) in m.timeline.iter_mut().enumerate() {
        if let (Some(a), Some(b)) = (samples.get(k), samples.get(k + 1)) {
            sec.server_cpu_cores = (b.cpu_s - a.cpu_s) / (b.t - a.t).max(1e-3);
            sec.server_rss_bytes = b.rss;
        }
    }
    let cpu_seconds = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => b.cpu_s - a.cpu_s,
        _ => 0.0,
    };
    // Memory per session: growth above the lowest reading (the registered users' settled
    // reading, or a lower one during the run, with the sessions it already had: the allocator
    // returns what the registration's threads freed only once other threads allocate), per
    // session added since.
    let rss_connected = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    let seen = m.timeline.iter().filter(|s| s.server_rss_bytes > 0);
    // A reading with more than a tenth of the sessions already up is no floor.
    let most = m.clients.peak_connected.max(1);
    let floor = seen
        .clone()
        .map(|s| (s.server_rss_bytes, s.connected))
        .filter(|&(_, sessions)| sessions * 10 <= most)
        .chain([(rss_registered, 0)])
        .min_by_key(|&(rss, _)| rss)
        .unwrap_or((rss_registered, 0));
    let peak = seen
        .max_by_key(|s| (s.connected, s.server_rss_bytes))
        .map_or((rss_connected, 0), |s| (s.server_rss_bytes, s.connected));
    let connected_end = m.timeline.last().map_or(0, |s| s.connected);
    let per = |rss: u64, sessions: u64| {
        if sessions > floor.1 {
            rss.saturating_sub(floor.0) as f64 / (sessions - floor.1) as f64
        } else {
            0.0
        }
    };
    let bytes_per_active_session = per(peak.0, peak.1);
    let bytes_per_session = rss_idle.map_or(bytes_per_active_session, |r| per(r, connected_end));
    // Handshakes per CPU-second over the seconds in which handshakes completed.
    let (hs, cpu): (u64, f64) = m
        .timeline
        .iter()
        .filter(|s| s.handshakes > 0)
        .fold((0, 0.0), |(h, c), s| {
            (h + s.handshakes, c + s.server_cpu_cores)
        });
    let users = m.clients.users.max(1) as f64;
    ServerFigures {
        cpus,
        cpu_seconds,
        cpu_seconds_by_thread,
        rss_registered_bytes: rss_registered,
        rss_connected_bytes: rss_connected,
        bytes_per_registered_user: floor.0.saturating_sub(rss_empty) as f64 / users,
        bytes_per_session,
        bytes_per_active_session,
        rss_idle_bytes: rss_idle.unwrap_or(0),
        handshakes_per_cpu_second: if cpu > 0.0 { hs as f64 / cpu } else { 0.0 },
        counters,
    }
}

/// The server's resident memory once at least `min_wait` has passed and it has stopped
/// falling (at most `min_wait` + 10 s).
fn settled_rss(pid: u32, min_wait: Duration) -> u64 {
    std::thread::sleep(min_wait);
    let mut readings = vec![testbed::procstat::rss_bytes(pid)];
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        readings.push(testbed::procstat::rss_bytes(pid));
        // Settled: no reading in the last second is 1% below the one a second earlier.
        if let [.., earlier, _, _, _, last] = readings[..] {
            if last as f64 >= earlier as f64 * 0.99 {
                break;
            }
        }
    }
    readings.last().copied().unwrap_or(0)
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
