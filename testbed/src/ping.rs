//! `ping` through a tunnel, with its result parsed.

use anyhow::{Context, Result};

use crate::netns::Netns;

/// What `ping` reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingReport {
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
    /// Average round trip, milliseconds (0 if none came back).
    pub avg_rtt_ms: f64,
}

/// Pings `target` from `ns` `count` times (200 ms apart, 2 s timeout each).
pub fn ping(ns: &Netns, target: &str, count: u32) -> Result<PingReport> {
    ping_every(ns, target, count, 0.2)
}

/// Pings `target` from `ns` `count` times, `interval` seconds apart (root may go to 0.002).
pub fn ping_every(ns: &Netns, target: &str, count: u32, interval: f64) -> Result<PingReport> {
    let count_text = count.to_string();
    let interval_text = format!("{interval}");
    let out = ns
        .command("ping")
        .args([
            "-n",
            "-q",
            "-c",
            &count_text,
            "-i",
            &interval_text,
            "-W",
            "2",
            target,
        ])
        .output()
        .context("running ping (apt install iputils-ping)")?;
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// One echo to `target` from `ns`, waiting up to `wait` for the reply: true if it came (for
/// timing when traffic resumes, to about `wait`).
pub fn answered_within(ns: &Netns, target: &str, wait: std::time::Duration) -> bool {
    let wait_text = format!("{:.3}", wait.as_secs_f64());
    ns.command("ping")
        .args(["-n", "-q", "-c", "1", "-W", &wait_text, target])
        .output()
        .ok()
        .and_then(|out| parse(&String::from_utf8_lossy(&out.stdout)).ok())
        .is_some_and(|r| r.received == 1)
}

/// Parses ping's summary lines.
pub fn parse(text: &str) -> Result<PingReport> {
    let stats = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .context("ping printed no summary")?;
    let nums: Vec<u32> = stats
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let avg = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok(PingReport {
        sent: nums.first().copied().unwrap_or(0),
        received: nums.get(1).copied().unwrap_or(0),
        avg_rtt_ms: avg,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_iputils_summary() {
        let text = "--- 10.77.0.1 ping statistics ---\n3 packets transmitted, 2 received, 33% packet loss, time 402ms\nrtt min/avg/max/mdev = 0.5/0.75/1.0/0.2 ms\n";
        let r = super::parse(text).expect("parses");
        assert_eq!((r.sent, r.received), (3, 2));
        assert!((r.avg_rtt_ms - 0.75).abs() < 1e-9);
    }
}
