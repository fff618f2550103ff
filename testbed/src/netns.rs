//! Network namespaces and veth pairs that remove themselves: a namespace kills the processes
//! it holds (by PID, from `ip netns pids`) and is deleted when dropped.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// Runs a command to completion; fails with its stderr if it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out: Output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS...`.
pub fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// A network namespace created by this process.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (replacing a stale one left by a crashed run) with `lo` up.
    pub fn create(name: &str) -> Result<Self> {
        if std::path::Path::new("/var/run/netns").join(name).exists() {
            remove(name);
        }
        crate::interrupt::create_namespace(name, || ip(&["netns", "add", name]).map(drop))?;
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a program inside the namespace to completion.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// `ip ARGS...` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `f` on a thread whose network namespace is this one (sockets it opens live here).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.spawn(f)
            .join()
            .map_err(|_| anyhow::anyhow!("thread in {} panicked", self.name))?
    }

    /// Starts `f` on a thread whose network namespace is this one, without waiting for it.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T>> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || -> Result<T> {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            // SAFETY: setns on a descriptor we hold; affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        })
    }

    /// PIDs of processes in this namespace.
    pub fn pids(&self) -> Vec<i32> {
        pids_of(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

/// PIDs of processes in namespace `name`.
fn pids_of(name: &str) -> Vec<i32> {
    ip(&["netns", "pids", name])
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Stops the processes in namespace `name`, deletes it and forgets it.
pub(crate) fn remove(name: &str) {
    remove_unregistered(name);
    crate::interrupt::namespace_removed(name);
}

/// Stops the processes in namespace `name`, then deletes it.
pub(crate) fn remove_unregistered(name: &str) {
    stop_processes(|| pids_of(name));
    let _ = ip(&["netns", "del", name]);
}

/// How long processes get to end on SIGTERM before SIGKILL.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Sends SIGTERM to the processes `left` lists, gives them `GRACE` to end, then SIGKILL to
/// those still listed.
pub(crate) fn stop_processes(left: impl Fn() -> Vec<i32>) {
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        let pids = left();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: signals a PID the caller listed as in a namespace we created or as a
            // child of ours.
            unsafe { libc::kill(pid, sig) };
        }
        let until = std::time::Instant::now() + GRACE;
        while std::time::Instant::now() < until && !left().is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Connects two namespaces with a veth pair and addresses (`addr/prefix` each side).
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_addr: &str,
    b: &Netns,
    b_if: &str,
    b_addr: &str,
) -> Result<()> {
    veth_queues(a, a_if, a_addr, b, b_if, b_addr, 1)
}

/// `veth` with `queues` receive and transmit queues on each end (what AF_XDP binds to).
pub fn veth_queues(
    a: &Netns,
    a_if: &str,
    a_addr: &str,
    b: &Netns,
    b_if: &str,
    b_addr: &str,
    queues: u32,
) -> Result<()> {
    let queues = queues.to_string();
    let mut args = vec!["link", "add", a_if, "netns", a.name()];
    if queues != "1" {
        args.extend(["numrxqueues", &queues, "numtxqueues", &queues]);
    }
    args.extend(["type", "veth", "peer", "name", b_if, "netns", b.name()]);
    if queues != "1" {
        args.extend(["numrxqueues", &queues, "numtxqueues", &queues]);
    }
    ip(&args)?;
    a.ip(&["addr", "add", a_addr, "dev", a_if])?;
    b.ip(&["addr", "add", b_addr, "dev", b_if])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}
