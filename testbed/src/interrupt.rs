//! What a run cut short leaves behind, and its removal. Namespaces and daemons remove
//! themselves when dropped, but a SIGTERM (`timeout`), SIGINT (Ctrl-C) or SIGHUP ends a process
//! without unwinding, so nothing is dropped: the daemons outlive it (reparented to init) and
//! the namespaces stay. Every namespace and daemon registers here while it lives; a program
//! that calls `clean_up_on_signals` removes them all when such a signal comes, then exits.
//!
//! The clean-up holds the registry from its start to the exit, so the rest of the program,
//! which goes on running meanwhile, blocks as soon as it makes or drops a namespace or daemon
//! (and so cannot leave one behind, or return from `main` first); a result file it would
//! write then is refused (`write_result`), since the run it describes was cut short.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::{bail, Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Names of namespaces created and not yet removed.
static NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// PIDs of daemons started and not yet reaped.
static DAEMONS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Set once the clean-up has begun: results are no longer written.
static CLEANING: AtomicBool = AtomicBool::new(false);
/// Held while result files are renamed into place, and by the clean-up from its start.
static RESULTS: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Creates namespace `name` with `add` and notes it, as one step (blocks while a clean-up
/// runs, so none is made unnoted or removed half-made).
pub(crate) fn create_namespace(name: &str, add: impl FnOnce() -> Result<()>) -> Result<()> {
    let mut names = lock(&NAMESPACES);
    // Noted first: Ctrl-C reaches the `ip` child too, which may have made it before dying.
    names.push(name.to_string());
    let made = add();
    if made.is_err() && !Path::new("/var/run/netns").join(name).exists() {
        names.retain(|n| n != name);
    }
    made
}

/// Forgets a namespace that was removed (blocks while a clean-up runs).
pub(crate) fn namespace_removed(name: &str) {
    lock(&NAMESPACES).retain(|n| n != name);
}

/// Starts `cmd` and notes it as one atomic step (blocks while a clean-up runs, so no daemon
/// starts unnoted).
pub(crate) fn spawn_daemon(cmd: &mut Command) -> std::io::Result<Child> {
    let mut pids = lock(&DAEMONS);
    let child = cmd.spawn()?;
    pids.push(child.id());
    Ok(child)
}

/// Reaps `child` if it has exited, forgetting it in the same step (its PID may be reused
/// once reaped); returns its exit code then (-1: killed by a signal, or it cannot be waited
/// for, which counts as gone), None while it runs.
pub(crate) fn try_reap(child: &mut Child) -> Option<i32> {
    let mut pids = lock(&DAEMONS);
    let code = match child.try_wait() {
        Ok(None) => return None,
        Ok(Some(status)) => status.code().unwrap_or(-1),
        Err(_) => -1,
    };
    pids.retain(|p| *p != child.id());
    Some(code)
}

/// Kills and reaps `child`, forgetting it in the same step.
pub(crate) fn kill_and_reap(child: &mut Child) {
    let mut pids = lock(&DAEMONS);
    let _ = child.kill();
    let _ = child.wait();
    pids.retain(|p| *p != child.id());
}

/// Writes a result file whole (a temporary file renamed into place), unless a clean-up has
/// begun: then the run was cut short and its results are refused.
pub fn write_result(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    write_results(&[(path, contents.as_ref())])
}

/// Writes result files that belong together (raw figures and their report) all or none as
/// far as a signal goes: each is written to a temporary file and all are renamed into place
/// under a lock the clean-up takes first, so a clean-up never falls between them; once one
/// has begun they are refused. (An I/O error in the middle of the renames can still leave a
/// set part written; the temporary files are removed.)
pub fn write_results(files: &[(&Path, &[u8])]) -> Result<()> {
    // Taken before anything is written: a clean-up that holds it never lets go (it exits), and
    // must not find temporary files it did not wait for.
    let _renaming = lock(&RESULTS);
    if CLEANING.load(Ordering::SeqCst) {
        bail!("not writing {}: the run was cut short", files_named(files));
    }
    let mut temps = Vec::with_capacity(files.len());
    let done = write_then_rename(files, &mut temps);
    if done.is_err() {
        for tmp in &temps {
            let _ = std::fs::remove_file(tmp);
        }
    }
    done
}

/// Writes each file to a temporary one beside it (noted in `temps` before it is written),
/// then renames them all into place.
fn write_then_rename(files: &[(&Path, &[u8])], temps: &mut Vec<PathBuf>) -> Result<()> {
    for (path, contents) in files {
        let name = path.file_name().context("a result file needs a name")?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        temps.push(tmp.clone());
        std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    }
    for (tmp, (path, _)) in temps.iter().zip(files) {
        std::fs::rename(tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    }
    Ok(())
}

/// The files' paths, for a message.
fn files_named(files: &[(&Path, &[u8])]) -> String {
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    names.join(", ")
}

/// From now on SIGINT, SIGTERM and SIGHUP stop every daemon this process started (SIGTERM,
/// then SIGKILL), remove every namespace it created with the processes inside, and exit with
/// 128 + the signal, as the signal itself would have. Signals that come during the clean-up
/// are not acted on: `timeout` sends its SIGTERM twice (to the process, then to its group), so
/// "a second signal ends it at once" would cut the clean-up short; SIGKILL still does. A
/// signal this process was told to ignore (`nohup`, a background job) stays ignored.
pub fn clean_up_on_signals() -> Result<()> {
    let signals: Vec<i32> = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|s| !ignored(*s))
        .collect();
    let mut signals = Signals::new(signals).context("installing the signal handlers")?;
    std::thread::Builder::new()
        .name("clean-up".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                clean_up_and_exit(signal);
            }
        })
        .context("starting the clean-up thread")?;
    Ok(())
}

/// Whether `signal` is ignored in this process (SIG_IGN).
fn ignored(signal: i32) -> bool {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action only queries.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Stops the registered daemons, removes the registered namespaces (newest first) and exits,
/// holding the registry throughout.
fn clean_up_and_exit(signal: i32) -> ! {
    // Set before waiting for the locks (the main thread may hold one a while): no result is
    // written from now on.
    CLEANING.store(true, Ordering::SeqCst);
    // Results being renamed into place finish first (a set is written whole or not at all).
    let _results = lock(&RESULTS);
    let daemons = lock(&DAEMONS);
    let names = lock(&NAMESPACES);
    // Not eprintln: with SIGHUP the terminal may be gone, and a failed write must not stop
    // the clean-up.
    let _ = writeln!(
        std::io::stderr(),
        "signal {signal}: stopping daemons and removing namespaces"
    );
    let ours: Vec<u32> = daemons
        .iter()
        .rev()
        .copied()
        .filter(|pid| is_our_child(*pid))
        .collect();
    crate::netns::stop_processes(|| {
        ours.iter()
            .filter(|p| crate::procstat::alive(**p))
            .map(|p| *p as i32)
            .collect()
    });
    for name in names.iter().rev() {
        crate::netns::remove_unregistered(name);
    }
    std::process::exit(128 + signal);
}

/// The PID names a child of this process (not a stranger that reused a reaped child's PID).
fn is_our_child(pid: u32) -> bool {
    crate::procstat::parent(pid) == Some(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_renamed_into_place_together_and_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("xgate-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let (raw, md) = (dir.join("r.json"), dir.join("r.md"));
        write_results(&[(&raw, b"{}".as_slice()), (&md, b"# r".as_slice())]).expect("written");
        assert_eq!(std::fs::read(&raw).expect("raw"), b"{}");
        assert_eq!(std::fs::read(&md).expect("md"), b"# r");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("listing")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "only the results: {names:?}");
        // One that cannot be written (its directory does not exist) writes none of the set.
        let other = dir.join("s.json");
        let missing = dir.join("no-such-dir").join("s.md");
        assert!(write_results(&[(&other, b"1".as_slice()), (&missing, b"2".as_slice())]).is_err());
        assert!(!other.exists(), "half a set was written");
        assert_eq!(std::fs::read_dir(&dir).expect("listing").count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
