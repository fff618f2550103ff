//! A run cut short by a signal removes what it made (`testbed::interrupt`): this test runs
//! itself again as a child that makes a namespace and two daemons, then ends it with SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testbed::procstat::alive;
use testbed::{Daemon, Netns};

/// Set in the child: the namespace it is to make.
const CHILD: &str = "XGATE_INTERRUPT_CHILD";
const TEST: &str = "a_signal_stops_the_daemons_and_removes_the_namespaces_of_the_run_it_ends";

#[test]
fn a_signal_stops_the_daemons_and_removes_the_namespaces_of_the_run_it_ends() {
    if let Ok(name) = std::env::var(CHILD) {
        return be_the_child(&name);
    }
    let name = format!("xtb-intr-{}", std::process::id());
    let ready = std::env::temp_dir().join(format!("{name}.ready"));
    let _ = std::fs::remove_file(&ready);
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["--exact", TEST, "--test-threads=1"])
        .env(CHILD, &name)
        .stdout(Stdio::null())
        .spawn()
        .expect("the child run");
    // The child writes its daemons' PIDs once everything is made (the harness captures its
    // stdout, so a file says it).
    let until = Instant::now() + Duration::from_secs(20);
    let pids: Vec<u32> = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            if let Some(line) = text.strip_suffix('\n') {
                break line
                    .split_whitespace()
                    .map(|p| p.parse().expect("a PID"))
                    .collect();
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the child ended ({status}) before making its namespace and daemons");
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
            panic!("the child made nothing within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&ready);
    let netns = Path::new("/var/run/netns").join(&name);
    assert!(netns.exists(), "{name} was made");
    assert!(pids.iter().all(|p| alive(*p)), "both daemons run");

    // Twice, as `timeout` does (to the process, then to its group): the second must not cut
    // the clean-up short.
    for _ in 0..2 {
        // SAFETY: signals the child this test started (not yet reaped: waited for below).
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(20));
    }
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
            for pid in &pids {
                // SAFETY: signals the daemons the child reported, which it left running.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
            panic!("the child did not exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "exits as SIGTERM would"
    );
    assert!(!netns.exists(), "{name} is gone");
    // Orphaned by the child's exit, a stopped daemon is reaped by init at once.
    let gone = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        assert!(!alive(pid), "daemon {pid} was stopped");
    }
}

/// Makes namespace `name`, a daemon outside it and one inside, reports their PIDs and waits
/// for the signal (30 s at most).
fn be_the_child(name: &str) {
    testbed::interrupt::clean_up_on_signals().expect("signal handlers");
    let dir = std::env::temp_dir();
    let ns = Netns::create(name).expect("the namespace");
    let mut sleep = Command::new("sleep");
    sleep.arg("60");
    let outside = Daemon::spawn(sleep, &dir.join(format!("{name}-outside.log"))).expect("sleep");
    // It ignores SIGTERM (inherited through exec), so the clean-up waits out its grace and
    // kills it: long enough for the second SIGTERM to come in the middle.
    let mut inside = ns.command("sh");
    inside.args(["-c", "trap '' TERM; exec sleep 60"]);
    let inside = Daemon::spawn(inside, &dir.join(format!("{name}-inside.log"))).expect("sleep");
    let pid = |d: &Daemon| d.pid().expect("running");
    let ready = dir.join(format!("{name}.ready"));
    let line = format!("{} {}\n", pid(&outside), pid(&inside));
    std::fs::write(&ready, line).expect("the ready file");
    std::thread::sleep(Duration::from_secs(30));
    panic!("no signal came within 30 s");
}
