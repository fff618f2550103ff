//! What `/proc` says about a process: CPU time (whole, or by thread name), resident
//! memory, whether it still lives and whose child it is. Used by the load tests, the benchmark and the loadtest harness.

use std::collections::BTreeMap;
use std::path::Path;

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// A `stat` line's command name and the fields after it (the state first, then the parent's
/// PID, ...). The name is in parentheses and may hold spaces and parentheses itself, so it
/// ends at the last ')'.
fn split_stat(text: &str) -> Option<(&str, Vec<&str>)> {
    let open = text.find('(')?;
    let (head, rest) = text.rsplit_once(')')?;
    Some((head.get(open + 1..)?, rest.split_whitespace().collect()))
}

/// (command name, user + system CPU seconds) from a `stat` file.
fn read_stat(path: &Path) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (name, fields) = split_stat(&text)?;
    // utime and stime are the 14th and 15th fields of the line.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((name.to_string(), ticks / clock_ticks()))
}

/// The state letter, the parent's PID and the start time (clock ticks since boot, which tell
/// a process apart from a later one given the same PID) of a process; None once it is gone.
fn state_parent_start(pid: u32) -> Option<(String, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = split_stat(&text)?;
    Some((
        fields.first()?.to_string(),
        fields.get(1)?.parse().ok()?,
        fields.get(19)?.parse().ok()?,
    ))
}

/// The process exists and is not a zombie (exited, not yet reaped).
pub fn alive(pid: u32) -> bool {
    state_parent_start(pid).is_some_and(|(state, _, _)| state != "Z")
}

/// The PID of a process's parent; None once it is gone.
pub fn parent(pid: u32) -> Option<u32> {
    state_parent_start(pid).map(|(_, parent, _)| parent)
}

/// A process's parent and start time, read together; None once it is gone.
pub fn parent_and_start(pid: u32) -> Option<(u32, u64)> {
    state_parent_start(pid).map(|(_, parent, start)| (parent, start))
}

/// CPU seconds (user + system) of a process, all its threads; None once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    read_stat(Path::new(&format!("/proc/{pid}/stat"))).map(|(_, s)| s)
}

/// CPU seconds of a process to the nanosecond (its CPU-time clock: every thread, those that
/// ended included), for spans a clock tick would blur; None once the process is gone.
pub fn cpu_seconds_exact(pid: u32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t through a valid pointer.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return None;
    }
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return None;
    }
    Some(t.tv_sec as f64 + t.tv_nsec as f64 / 1e9)
}

/// CPU seconds of a process's threads, summed by thread name without its number
/// (`xgate-worker-0` and `xgate-worker-1` count as `xgate-worker`).
pub fn cpu_by_thread(pid: u32) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some((name, s)) = read_stat(&entry.path().join("stat")) {
            let name = name
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .trim_end_matches('-')
                .to_string();
            *by_name.entry(name).or_insert(0.0) += s;
        }
    }
    by_name
}

/// CPU seconds by thread spent between two readings of `cpu_by_thread`.
pub fn cpu_spent(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, s)| (name.clone(), s - before.get(name).copied().unwrap_or(0.0)))
        .collect()
}

/// Resident memory of a process in bytes (0 once it is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_cpu_time_grows_with_work_and_agrees_with_the_ticks() {
        let me = std::process::id();
        let (exact0, ticks0) = (
            cpu_seconds_exact(me).expect("me"),
            cpu_seconds(me).expect("me"),
        );
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let exact = cpu_seconds_exact(me).expect("me") - exact0;
        let ticks = cpu_seconds(me).expect("me") - ticks0;
        assert!(exact > 0.2, "300 ms of spinning: {exact}");
        assert!((exact - ticks).abs() < 0.1, "{exact} against {ticks}");
    }

    #[test]
    fn this_process_has_cpu_time_memory_and_a_main_thread() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(pid).is_some_and(|s| s >= 0.0));
        assert!(
            rss_bytes(pid) > 1 << 20,
            "a test binary uses more than 1 MiB"
        );
        assert!(!cpu_by_thread(pid).is_empty());
        assert_eq!(cpu_seconds(u32::MAX), None, "no such process");
        assert_eq!(rss_bytes(u32::MAX), 0);
    }
}
