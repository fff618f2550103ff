//! System calls per packet: `perf stat` counts the server's `raw_syscalls:sys_enter` events
//! while a test runs. Counting a tracepoint costs about a tenth of a microsecond per call,
//! against the microsecond or more the call itself costs, and every server pays it alike.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// `perf stat` attached to one process.
pub struct SyscallCount {
    child: Child,
    out: PathBuf,
}

impl SyscallCount {
    /// Starts counting the system calls of process `pid` (every thread), writing to `dir`.
    pub fn start(pid: u32, dir: &Path) -> Result<Self> {
        let out = dir.join("syscalls.csv");
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf stat (apt install linux-perf)")?;
        // perf attaches to every thread before it counts.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Self { child, out })
    }

    /// Stops counting; the number of system calls, if perf counted them.
    pub fn finish(mut self) -> Option<u64> {
        // SAFETY: signals the perf process we started, by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).ok()?;
        parse(&text)
    }
}

/// The count from `perf stat -x ,` output ("12345,,raw_syscalls:sys_enter,...").
fn parse(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains("raw_syscalls:sys_enter"))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_perf_stats_csv() {
        let text = "# started on Fri Dec  4\n\n40711,,raw_syscalls:sys_enter,5012345678,100.00,,\n";
        assert_eq!(parse(text), Some(40711));
        assert_eq!(
            parse("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n"),
            None
        );
        assert_eq!(parse(""), None);
    }
}
