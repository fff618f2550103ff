//! How busy each datapath worker thread is: its CPU time (user + system) from
//! /proc/self/task/<tid>/stat between two samples, as a share of the time between them. The
//! workers are the daemon's own threads named `xgate-worker-N`.

use std::collections::HashMap;
use std::time::Instant;

/// Clock ticks per second in /proc's times: USER_HZ, which Linux fixes at 100 for every
/// architecture's /proc ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// The CPU ticks each worker (by number) has used so far, read now. A thread's name is cut
/// at 15 characters, so from worker 100 on two names can read alike: such a number is left
/// out rather than given another thread's time.
fn worker_ticks() -> HashMap<usize, u64> {
    let mut out = HashMap::new();
    let mut twice = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        let Some(n) = name
            .trim()
            .strip_prefix("xgate-worker-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some(ticks) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| cpu_ticks(&s))
        {
            if out.insert(n, ticks).is_some() {
                twice.push(n);
            }
        }
    }
    for n in twice {
        out.remove(&n);
    }
    out
}

/// utime + stime from a stat line (fields 14 and 15, counted after the parenthesised name,
/// which may itself hold spaces).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The previous reading, for shares between two.
#[derive(Debug, Default)]
pub struct WorkerLoad {
    before: Option<(Instant, HashMap<usize, u64>)>,
}

impl WorkerLoad {
    /// Each worker's busy share (0 to 1) since the last call, by worker number (empty the
    /// first time).
    pub fn sample(&mut self) -> HashMap<usize, f64> {
        let now = (Instant::now(), worker_ticks());
        let shares = match &self.before {
            Some((at, ticks)) => {
                let secs = now.0.saturating_duration_since(*at).as_secs_f64();
                now.1
                    .iter()
                    .filter(|_| secs > 0.0)
                    .map(|(n, t)| {
                        let used = t.saturating_sub(ticks.get(n).copied().unwrap_or(*t));
                        (*n, (used as f64 / TICKS_PER_SECOND / secs).min(1.0))
                    })
                    .collect()
            }
            None => HashMap::new(),
        };
        self.before = Some(now);
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_times_come_after_the_name_even_with_spaces_in_it() {
        let stat = "4242 (xgate worker) S 1 2 3 4 5 6 7 8 9 10 120 35 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(stat), Some(155));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn a_busy_thread_shows_up_under_its_worker_number() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let (running, started) = std::sync::mpsc::channel();
        let spin = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("xgate-worker-7".into())
                .spawn(move || {
                    let _ = running.send(());
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
                .expect("thread")
        };
        // Named and running before the first reading.
        started.recv().expect("the thread runs");
        let mut load = WorkerLoad::default();
        assert!(load.sample().is_empty(), "nothing to compare with yet");
        std::thread::sleep(std::time::Duration::from_millis(250));
        let shares = load.sample();
        stop.store(true, Ordering::Relaxed);
        let _ = spin.join();
        let share = shares.get(&7).copied().unwrap_or(0.0);
        // Any tick at all (10 ms): a loaded test machine may give it little of the 250 ms.
        assert!(share > 0.0, "a spinning worker at {share:.2}");
        assert!(!shares.contains_key(&0), "no other worker here");
    }
}
