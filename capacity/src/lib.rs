//! The sizing calculator: cores, boxes and memory for a number of users, a traffic volume and a
//! login latency target, from measured figures only (loadtest runs against xgate and the
//! datapath benchmark). A figure that was not measured is an error naming the run to do, never
//! a default. Pure arithmetic: the loadtest's report and the web console's capacity page both
//! answer with it; the figures come from `loadtest` (which writes them beside its report).

use serde::{Deserialize, Serialize};

/// The datapath test whose CPU cost per byte sizes traffic (one TCP stream, full-size packets).
pub const DATAPATH_TEST: &str = "tcp-1";

/// Why a need could not be sized: what is missing or wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SizingError(pub String);

/// `Err(SizingError)` with a formatted message.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err(SizingError(format!($($arg)*)))
    };
}

/// Refuses with the message unless `cond` holds.
macro_rules! require {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            refuse!($($arg)*);
        }
    };
}

/// A sizing's result.
pub type Result<T> = std::result::Result<T, SizingError>;

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// Figures measured on xgate, each with the run or file it comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Handshakes completed per server CPU-second (the best xgate run).
    pub handshakes_per_core_s: Option<(f64, String)>,
    /// One per xgate run in which every attempt connected: (peak arrivals per second per
    /// server core, handshake p99 in ms, source).
    pub login_rate_per_core_at_p99: Vec<(f64, f64, String)>,
    /// Tunnelled Gbit/s per server core (datapath benchmark, xgate, one TCP stream).
    pub gbps_per_core: Option<(f64, String)>,
    /// Resident bytes per connected idle session (the xgate run with the most users).
    pub bytes_per_session: Option<(f64, String)>,
    /// Resident bytes per registered, unconnected user (the xgate run with the most users).
    pub bytes_per_registered_user: Option<(f64, String)>,
    /// IKEv2 logins per server CPU-second of the costliest method xgate was measured with
    /// side by side: (rate, method, source).
    pub ike_setups_per_core_s: Option<(f64, String, String)>,
    /// Resident bytes per IKEv2 user logged in (IKE SA and CHILD_SA), the largest such
    /// xgate measurement.
    pub bytes_per_ike_sa: Option<(f64, String)>,
}

/// What a deployment must carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Need {
    /// Users, all of whom may log in during the surge.
    pub users: u64,
    /// Tunnelled traffic, Gbit/s (0 = size for logins only).
    pub gbps: f64,
    /// Handshake latency the users may see at the 99th percentile, ms.
    pub p99_ms: f64,
    /// Window in which every user logs in, seconds.
    pub surge_seconds: f64,
    /// Cores in one box.
    pub cores_per_box: u32,
    /// The share of the users on IKEv2 (0 to 1), the rest on WireGuard.
    pub ike_share: f64,
}

/// The answer: cores, boxes, memory, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    /// Cores the login surge needs (None when no users are asked for).
    pub cores_for_logins: Option<f64>,
    /// Cores the traffic needs (None when no traffic is asked for).
    pub cores_for_traffic: Option<f64>,
    /// Resident memory for every user registered and connected, bytes (None if not measured).
    pub memory_bytes: Option<f64>,
    /// Cores, rounded up.
    pub cores: u64,
    /// Boxes of `Need::cores_per_box` cores.
    pub boxes: u64,
    /// Which need sets the core count: "login surge" or "throughput".
    pub bound_by: String,
    /// One line per figure with its source; the last is the one-line answer.
    pub lines: Vec<String>,
}

/// The best login rate per core among the runs that met the latency target.
fn best_login_rate(p99_ms: f64, m: &Measured) -> Result<(f64, f64, String)> {
    let entries = &m.login_rate_per_core_at_p99;
    let best = entries
        .iter()
        .filter(|e| e.1 <= p99_ms && positive(e.0))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(best) = best {
        return Ok(best.clone());
    }
    match entries.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
        Some((rate, p99, source)) => refuse!(
            "no xgate run met handshake p99 <= {p99_ms} ms: the lowest p99 measured is {p99:.1} ms \
             ({rate:.0} users/s per core, {source}); run a scenario at a lower arrival rate per \
             core, or allow a looser --p99-ms"
        ),
        None => refuse!(
            "no xgate run in which every user connected: run a login scenario (e.g. surge) \
             against xgate before sizing for users"
        ),
    }
}

/// A byte count in the unit that reads best.
pub fn human_bytes(b: f64) -> String {
    const KIB: f64 = 1024.0;
    match b {
        b if b >= KIB * KIB * KIB => format!("{:.1} GiB", b / (KIB * KIB * KIB)),
        b if b >= KIB * KIB => format!("{:.0} MiB", b / (KIB * KIB)),
        b if b >= KIB => format!("{:.1} KiB", b / KIB),
        b => format!("{b:.0} B"),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A need that can be sized: positive durations and targets, something to size.
fn check(need: &Need) -> Result<()> {
    require!(
        positive(need.surge_seconds),
        "the surge must last more than 0 s (got {})",
        need.surge_seconds
    );
    require!(
        positive(need.p99_ms),
        "the p99 target must be above 0 ms (got {})",
        need.p99_ms
    );
    require!(
        need.gbps.is_finite() && need.gbps >= 0.0,
        "traffic must be 0 or more Gbit/s (got {})",
        need.gbps
    );
    require!(need.cores_per_box > 0, "a box needs at least one core");
    require!(
        (0.0..=1.0).contains(&need.ike_share),
        "the IKEv2 share of the users must be 0 to 1 (got {})",
        need.ike_share
    );
    require!(
        need.users > 0 || need.gbps > 0.0,
        "nothing to size: give users or Gbit/s"
    );
    Ok(())
}

/// Cores a need takes, and why (the figure and its source).
type Cores = Option<(f64, String)>;

/// The users on WireGuard and on IKEv2.
fn split(need: &Need) -> (f64, f64) {
    let ike = (need.users as f64 * need.ike_share).round();
    (need.users as f64 - ike, ike)
}

/// Cores the login surge needs (WireGuard and IKEv2 logins together); lines of working in
/// `lines`.
fn login_cores(need: &Need, m: &Measured, lines: &mut Vec<String>) -> Result<Cores> {
    if need.users == 0 {
        return Ok(None);
    }
    let (wg_users, ike_users) = split(need);
    let mut cores = 0.0;
    let mut why = Vec::new();
    if wg_users > 0.0 {
        let (rate, p99, source) = best_login_rate(need.p99_ms, m)?;
        let arrivals = wg_users / need.surge_seconds;
        let c = arrivals / rate;
        lines.push(format!(
            "login surge: {wg_users:.0} WireGuard users over {} s = {arrivals:.0} arrivals/s; \
             xgate took {rate:.0} arrivals/s per core with handshake p99 {p99:.1} ms <= {} ms \
             ({source}): {c:.2} cores",
            need.surge_seconds, need.p99_ms
        ));
        cores += c;
        why.push(format!(
            "{rate:.0} users/s per core at p99 {p99:.1} ms, {source}"
        ));
    }
    if ike_users > 0.0 {
        let Some((rate, method, source)) = &m.ike_setups_per_core_s else {
            refuse!(
                "{ike_users:.0} IKEv2 users need xgate's IKEv2 logins per CPU-second, which no \
                 run measured: run surge-mixed (make surge), whose side-by-side part measures \
                 them, or size with --ike-share 0"
            );
        };
        let arrivals = ike_users / need.surge_seconds;
        let c = arrivals / rate;
        lines.push(format!(
            "IKEv2 logins: {ike_users:.0} users over {} s = {arrivals:.0} logins/s; xgate made \
             {rate:.0} per CPU-second by {method}, the costliest method measured ({source}; a \
             throughput figure, its latency is in that run's side-by-side table): {c:.2} cores",
            need.surge_seconds
        ));
        cores += c;
        why.push(format!(
            "{rate:.0} IKEv2 logins per CPU-s by {method}, {source}"
        ));
    }
    Ok(Some((cores, why.join("; "))))
}

/// Cores the traffic needs; a line of working in `lines`.
fn traffic_cores(need: &Need, m: &Measured, lines: &mut Vec<String>) -> Result<Cores> {
    if need.gbps > 0.0 {
        let Some((per_core, source)) = &m.gbps_per_core else {
            refuse!(
                "{} Gbit/s needs the Gbit/s per core of xgate ({DATAPATH_TEST} in the datapath \
                 benchmark), which was not given: run `make bench` (writes \
                 bench-results/datapath-*.json)",
                need.gbps
            );
        };
        require!(
            positive(*per_core),
            "{source} gives {per_core} Gbit/s per core"
        );
        let cores = need.gbps / per_core;
        lines.push(format!(
            "throughput: {} Gbit/s at {per_core:.2} Gbit/s per core ({source}): {cores:.2} cores",
            need.gbps
        ));
        return Ok(Some((
            cores,
            format!("{per_core:.1} Gbit/s per core, {source}"),
        )));
    }
    Ok(None)
}

/// Memory for the users (sessions, IKEv2 SAs and registrations), when every figure it takes
/// was measured.
fn memory(need: &Need, m: &Measured, lines: &mut Vec<String>) -> Option<f64> {
    if need.users == 0 {
        return None;
    }
    let (wg_users, ike_users) = split(need);
    let ike = match &m.bytes_per_ike_sa {
        _ if ike_users == 0.0 => Some((0.0, String::new())),
        Some((b, src)) => Some((
            *b,
            format!(" + {ike_users:.0} x {b:.0} B per IKEv2 user, {src}"),
        )),
        None => None,
    };
    match (&m.bytes_per_session, &m.bytes_per_registered_user, ike) {
        (Some((session, s_src)), Some((registered, r_src)), Some((per_sa, ike_part))) => {
            let bytes = wg_users * session + ike_users * per_sa + need.users as f64 * registered;
            lines.push(format!(
                "memory: {wg_users:.0} x {session:.0} B per WireGuard session, {s_src}{ike_part} \
                 + {} x {registered:.0} B per registered user, {r_src} = {}",
                need.users,
                human_bytes(bytes)
            ));
            Some(bytes)
        }
        _ => {
            lines.push(
                "memory: not sized (bytes per session and per registered user come from a run \
                 against xgate that connects users; per IKEv2 user from surge-mixed's side by \
                 side)"
                    .to_string(),
            );
            None
        }
    }
}

/// Sizes a deployment for `need` from the measured figures; errors name the missing figure
/// and the run that would measure it.
pub fn size(need: &Need, m: &Measured) -> Result<Sizing> {
    check(need)?;
    let mut lines = Vec::new();
    // (cores, why) per need; `why` names the figure and its source for the answer line.
    let logins = login_cores(need, m, &mut lines)?;
    let traffic = traffic_cores(need, m, &mut lines)?;
    let wg_users = split(need).0;
    match &m.handshakes_per_core_s {
        Some((h, source)) if wg_users > 0.0 => lines.push(format!(
            "handshakes: {h:.0} per CPU-second ({source}); every WireGuard user reconnecting at \
             once costs {:.1} CPU-seconds",
            wg_users / h
        )),
        _ => {}
    }
    let memory_bytes = memory(need, m, &mut lines);

    let traffic_cores = traffic.as_ref().map_or(0.0, |t| t.0);
    let (bound_by, exact, why) = match (logins.clone(), traffic.clone()) {
        (Some((c, why)), _) if c >= traffic_cores => ("login surge", c, why),
        (_, Some((c, why))) => ("throughput", c, why),
        (Some((c, why)), None) => ("login surge", c, why),
        (None, None) => refuse!("nothing to size: give users or Gbit/s"),
    };
    // A hair below a whole number is float noise from the division, not a fraction of a core.
    let cores = ((exact - 1e-9).ceil().max(1.0)) as u64;
    let boxes = cores.div_ceil(u64::from(need.cores_per_box));
    let memory = memory_bytes
        .map(|b| format!(", {} of memory", human_bytes(b)))
        .unwrap_or_default();
    lines.push(format!(
        "{} users, {} Gbit/s, p99 <= {} ms over a {} s surge: {} ({} of {}){memory} — bound by \
         {bound_by} ({why})",
        need.users,
        need.gbps,
        need.p99_ms,
        need.surge_seconds,
        plural(cores, "core", "cores"),
        plural(boxes, "box", "boxes"),
        need.cores_per_box,
    ));
    Ok(Sizing {
        cores_for_logins: logins.map(|l| l.0),
        cores_for_traffic: traffic.map(|t| t.0),
        memory_bytes,
        cores,
        boxes,
        bound_by: bound_by.to_string(),
        lines,
    })
}

/// The one-line answer of a sizing (its last line).
pub fn sizing_line(s: &Sizing) -> String {
    s.lines.last().cloned().unwrap_or_default()
}
