//! What a run cut short leaves behind, and its removal. Namespaces and daemons remove
//! themselves when dropped, but a SIGTERM (`timeout`), SIGINT (Ctrl-C) or SIGHUP ends a process
//! without unwinding, so nothing is dropped: the daemons outlive it (reparented to init) and
//! the namespaces stay. Every namespace and daemon registers here while it lives; a program
//! that calls `clean_up_on_signals` removes them all when such a signal comes, then exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Names of namespaces created and not yet removed.
static NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// PIDs of daemons started and not yet reaped.
static DAEMONS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Notes a namespace about to be created.
pub(crate) fn namespace_created(name: &str) {
    if let Ok(mut names) = NAMESPACES.lock() {
        names.push(name.to_string());
    }
}

/// Forgets a namespace that was removed.
pub(crate) fn namespace_removed(name: &str) {
    if let Ok(mut names) = NAMESPACES.lock() {
        names.retain(|n| n != name);
    }
}

/// Notes a daemon that was started.
pub(crate) fn daemon_started(pid: u32) {
    if let Ok(mut pids) = DAEMONS.lock() {
        pids.push(pid);
    }
}

/// Forgets a daemon that was reaped (its PID may be reused from now on).
pub(crate) fn daemon_reaped(pid: u32) {
    if let Ok(mut pids) = DAEMONS.lock() {
        pids.retain(|p| *p != pid);
    }
}

/// Set once the clean-up has begun: a second signal then ends the process at once, in case
/// the clean-up itself is stuck.
static CLEANING: AtomicBool = AtomicBool::new(false);

/// From now on SIGINT, SIGTERM and SIGHUP stop every daemon this process started (SIGTERM,
/// then SIGKILL), remove every namespace it created with the processes inside, and exit with
/// 128 + the signal, as the signal itself would have. A second signal during that exits at
/// once.
pub fn clean_up_on_signals() -> Result<()> {
    let signals = [SIGINT, SIGTERM, SIGHUP];
    for signal in signals {
        // Registered before the iterator's handler, so it sees the flag as the last signal
        // left it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, &CLEANING)
            .context("installing the signal handlers")?;
    }
    let mut signals = Signals::new(signals).context("installing the signal handlers")?;
    std::thread::Builder::new()
        .name("clean-up".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                CLEANING.store(true, Ordering::SeqCst);
                eprintln!("signal {signal}: stopping daemons and removing namespaces");
                clean_up();
                std::process::exit(128 + signal);
            }
        })
        .context("starting the clean-up thread")?;
    Ok(())
}

/// Stops the registered daemons and removes the registered namespaces, newest first.
fn clean_up() {
    let pids = DAEMONS.lock().map(|p| p.clone()).unwrap_or_default();
    let ours: Vec<i32> = pids
        .iter()
        .rev()
        .filter(|pid| is_our_child(**pid))
        .map(|pid| *pid as i32)
        .collect();
    crate::netns::stop_processes(|| ours.iter().copied().filter(|p| alive(*p)).collect());
    let names = NAMESPACES.lock().map(|n| n.clone()).unwrap_or_default();
    for name in names.iter().rev() {
        crate::netns::remove(name);
    }
}

/// The PID names a child of this process (not a stranger that reused a reaped child's PID).
fn is_our_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The parent is the second field after the command, which is in parentheses.
    let parent = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse::<u32>().ok());
    parent == Some(std::process::id())
}

/// The process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// How long processes get to end on SIGTERM before SIGKILL.
pub(crate) const GRACE: Duration = Duration::from_secs(2);
