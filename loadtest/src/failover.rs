//! The failure in a failover scenario, and what it measured. At the scenario's moment node A
//! loses power: its xgate and keepalived are SIGKILLed and its links go down. Then this
//! watches node B for the service address, and probes each real client (one echo at a time,
//! waiting 100 ms) until it passes traffic again. The simulated users time themselves: each
//! notes when the first echo it sent after the failure came back (see `client::Attempt`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use testbed::bridge::holds_address;
use testbed::keepalived::Keepalived;
use testbed::Xgate;

use crate::cluster_target::{RealClient, NODE_LINKS, SERVICE_IP};
use crate::results::Summary;

/// How long a client probe waits for its echo: the resolution of the clients' times.
const PROBE: Duration = Duration::from_millis(100);

/// What dies, when, and who watches.
pub struct Doomed {
    /// From the start of the load to the failure.
    pub after: Duration,
    /// Node A's xgate.
    pub xgate: Xgate,
    /// Node A's keepalived.
    pub vrrp: Keepalived,
    /// Node A's namespace (by name: its links go down).
    pub node_ns: String,
    /// Node B's namespace (by name: watched for the address).
    pub survivor_ns: String,
    /// The real clients to probe.
    pub clients: Vec<RealClient>,
    /// How long after the failure to keep probing.
    pub patience: Duration,
}

/// What the failure thread saw.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// From the kill to the address on node B (None: it never moved).
    pub moved: Option<Duration>,
    /// Each real client: label, and from the kill to its first echo back (None: never).
    pub clients: Vec<(String, Option<Duration>)>,
}

/// Kills node A `doomed.after` past `origin` (the load's offset zero) and watches what
/// follows; writes the moment of the kill to `killed` (nanoseconds past `origin`) for the
/// simulated users. The thread's answer is what it saw.
pub fn arm(
    origin: Instant,
    mut doomed: Doomed,
    killed_at: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<Observed>> {
    std::thread::spawn(move || {
        std::thread::sleep((origin + doomed.after).saturating_duration_since(Instant::now()));
        // Noted before the kill: an echo sent after this may meet a dead node.
        let killed = Instant::now();
        let nanos = killed.saturating_duration_since(origin).as_nanos();
        killed_at.store(
            u64::try_from(nanos).unwrap_or(u64::MAX).max(1),
            Ordering::Relaxed,
        );
        doomed.xgate.daemon.kill_hard();
        doomed.vrrp.kill();
        for link in NODE_LINKS {
            testbed::netns::ip(&["-n", &doomed.node_ns, "link", "set", link, "down"])?;
        }
        let end = killed + doomed.patience;
        let service = SERVICE_IP.to_string();
        let mut moved = None;
        while moved.is_none() && Instant::now() < end {
            if holds_address(&doomed.survivor_ns, NODE_LINKS[1], &service) {
                moved = Some(killed.elapsed());
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let target = crate::target::SERVER_TUNNEL_IP.to_string();
        let mut resumed: Vec<Option<Duration>> = vec![None; doomed.clients.len()];
        while Instant::now() < end && resumed.iter().any(Option::is_none) {
            let round = Instant::now();
            for (c, r) in doomed.clients.iter().zip(resumed.iter_mut()) {
                // Timed from the probe's start: its echo left then.
                let sent = killed.elapsed();
                if r.is_none() && testbed::ping::answered_within(&c.ns, &target, PROBE) {
                    *r = Some(sent);
                }
            }
            // At least a probe's wait per round, even if ping fails at once.
            std::thread::sleep(PROBE.saturating_sub(round.elapsed()));
        }
        let clients = doomed
            .clients
            .iter()
            .map(|c| c.label.clone())
            .zip(resumed)
            .collect();
        Ok(Observed { moved, clients })
    })
}

/// A real client's time to resume.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientResume {
    /// "wireguard-go" or "boringtun-cli".
    pub client: String,
    /// From the address move to its first echo back (None: never within the patience).
    pub after_move_ms: Option<f64>,
}

/// A failover's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailoverFigures {
    /// Whether node B took over A's users (survivor-initiated handshakes).
    pub take_over: bool,
    /// From A's death to the service address on B, ms (None: it never moved).
    pub moved_after_ms: Option<f64>,
    /// Simulated users connected before the failure.
    pub users: u64,
    /// How many of them passed traffic again.
    pub resumed: u64,
    /// How many never did before the run ended.
    pub never: u64,
    /// From the address move to each resumed user's first echo back, ms.
    pub resume_after_move_ms: Summary,
    /// The same, every user's, ascending (the report's plot).
    #[serde(default)]
    pub resumed_ms: Vec<u32>,
    /// The real clients.
    pub clients: Vec<ClientResume>,
}

/// The figures from what the users and the failure thread saw. `resumed`: per user
/// connected before the failure, from the failure to its first echo back.
pub fn figures(take_over: bool, resumed: &[Option<Duration>], seen: &Observed) -> FailoverFigures {
    let moved = seen.moved.unwrap_or_default();
    let mut h = crate::tally::histogram();
    for r in resumed.iter().flatten() {
        h.record(r.saturating_sub(moved).as_micros().max(1) as u64)
            .ok();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut each: Vec<u32> = resumed
        .iter()
        .flatten()
        .map(|r| {
            r.saturating_sub(moved)
                .as_millis()
                .min(u128::from(u32::MAX)) as u32
        })
        .collect();
    each.sort_unstable();
    FailoverFigures {
        take_over,
        moved_after_ms: seen.moved.map(ms),
        users: resumed.len() as u64,
        resumed: resumed.iter().flatten().count() as u64,
        never: resumed.iter().filter(|r| r.is_none()).count() as u64,
        resume_after_move_ms: Summary::of_micros(&h),
        resumed_ms: each,
        clients: seen
            .clients
            .iter()
            .map(|(label, r)| ClientResume {
                client: label.clone(),
                after_move_ms: r.map(|d| ms(d.saturating_sub(moved))),
            })
            .collect(),
    }
}

/// One line for the console.
pub fn line(f: &FailoverFigures) -> String {
    let ms = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{:.0} ms", v));
    let clients: Vec<String> = f
        .clients
        .iter()
        .map(|c| format!("{} {}", c.client, ms(c.after_move_ms)))
        .collect();
    let r = &f.resume_after_move_ms;
    format!(
        "failover ({}): address moved {} after the kill; {}/{} users passed traffic again \
         (p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms after the move), {} never; {}",
        if f.take_over {
            "take-over"
        } else {
            "no take-over"
        },
        ms(f.moved_after_ms),
        f.resumed,
        f.users,
        r.p50,
        r.p99,
        r.max,
        f.never,
        clients.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_count_from_the_address_move() {
        let s = |ms| Some(Duration::from_millis(ms));
        let seen = Observed {
            moved: s(300),
            clients: vec![
                ("wireguard-go".into(), s(450)),
                ("boringtun-cli".into(), None),
            ],
        };
        let f = figures(true, &[s(400), s(1300), None], &seen);
        assert_eq!((f.users, f.resumed, f.never), (3, 2, 1));
        assert!((f.resume_after_move_ms.max - 1000.0).abs() < 2.0, "{f:?}");
        assert!((f.resume_after_move_ms.p50 - 100.0).abs() < 1.0, "{f:?}");
        assert_eq!(f.moved_after_ms, Some(300.0));
        assert_eq!(f.resumed_ms, [100, 1000]);
        assert_eq!(f.clients[0].after_move_ms, Some(150.0));
        assert_eq!(f.clients[1].after_move_ms, None);
    }
}
