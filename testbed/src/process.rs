//! Child processes that stop when dropped (SIGTERM, then SIGKILL), found again only by PID.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A started program with its log file.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// Its exit code, once it was reaped (its PID may be another process's by then).
    exited: Option<i32>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with output to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = crate::interrupt::spawn_daemon(&mut cmd)
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Self {
            child: Some(child),
            exited: None,
            log: log.to_path_buf(),
        })
    }

    /// The process ID, while the process is not yet reaped (after that the PID may name
    /// another process).
    pub fn pid(&self) -> Option<u32> {
        self.child
            .as_ref()
            .filter(|_| self.exited.is_none())
            .map(Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.reap().is_none()
    }

    /// Its exit code if it has exited (reaping it the first time; kept from then on), None
    /// while it runs.
    fn reap(&mut self) -> Option<i32> {
        if self.exited.is_none() {
            self.exited = self.child.as_mut().and_then(crate::interrupt::try_reap);
        }
        self.exited
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit; returns its exit code.
    pub fn signal_and_wait(&mut self, signal: i32, timeout: Duration) -> Option<i32> {
        // Once reaped its PID may be another process's: signal only a child not yet reaped.
        if self.reap().is_none() {
            let pid = self.child.as_ref()?.id();
            // SAFETY: signals our own child by PID, not yet reaped (only its owner, holding
            // this `&mut`, reaps it).
            unsafe { libc::kill(pid as i32, signal) };
        }
        self.wait(timeout)
    }

    /// Waits up to `timeout` for the process to exit on its own; returns its exit code, or
    /// `None` if it still runs (it is stopped when dropped).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        self.child.as_ref()?;
        let until = Instant::now() + timeout;
        loop {
            if let Some(code) = self.reap() {
                self.child = None;
                return Some(code);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill_hard(&mut self) {
        // One already reaped is left alone: its PID may be another daemon's by now.
        if let Some(mut c) = self.child.take().filter(|_| self.exited.is_none()) {
            crate::interrupt::kill_and_reap(&mut c);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some()
            && self
                .signal_and_wait(libc::SIGTERM, Duration::from_secs(5))
                .is_none()
        {
            self.kill_hard();
        }
    }
}

/// Lets the calling thread run only on `cpus`.
pub fn pin_thread(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it; pid 0 = this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus {
            libc::CPU_SET(*c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Pins every thread of process `pid` (and threads it makes later) to `cpus` (`taskset -a`).
/// A thread that ends while taskset walks the list makes it fail, as a starting daemon's
/// short-lived threads do, so it is tried a few times.
pub fn pin_process(pid: u32, cpus: &[usize]) -> Result<()> {
    let list: Vec<String> = cpus.iter().map(ToString::to_string).collect();
    let (list, pid) = (list.join(","), pid.to_string());
    let mut tries = 0;
    loop {
        let result = crate::netns::run(Command::new("taskset").args(["-a", "-cp", &list, &pid]));
        match result {
            Ok(_) => return Ok(()),
            Err(_) if tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("pinning process {pid} to CPUs {list}"))
            }
        }
    }
}

/// Polls `f` every 50 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finds a program on PATH or in ~/.cargo/bin (where `cargo install` puts boringtun-cli).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.push(PathBuf::from("/root/.cargo/bin"));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_daemon_has_no_pid_and_keeps_its_exit_code() {
        let log = std::env::temp_dir().join(format!("xgate-daemon-{}.log", std::process::id()));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let mut d = Daemon::spawn(cmd, &log).expect("sh starts");
        assert!(d.pid().is_some(), "a PID while it is not reaped");
        assert!(wait_until(Duration::from_secs(5), || !d.is_running()));
        // Reaped by is_running: its PID may be reused, so it is not handed out any more.
        assert_eq!(d.pid(), None);
        assert_eq!(d.wait(Duration::ZERO), Some(3), "the code is known at once");
        assert_eq!(d.signal_and_wait(libc::SIGTERM, Duration::ZERO), None);
        let _ = std::fs::remove_file(&log);
    }
}
