//! `xgate-userspace [-f] INTERFACE`: the calling convention `wg-quick` expects of a userspace
//! WireGuard (`WG_QUICK_USERSPACE_IMPLEMENTATION=xgate-userspace wg-quick up wg0`).
//!
//! Starts `xgate up --interface INTERFACE` (the `xgate` binary beside this one) detached, waits
//! until its UAPI socket answers, and exits 0; or exits 1 with the daemon's error. With `-f` it
//! runs the daemon in the foreground instead.

#![forbid(unsafe_code)]

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(15);

fn xgate_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("xgate")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("xgate"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let foreground = args.iter().any(|a| a == "-f" || a == "--foreground");
    let Some(name) = args.iter().find(|a| !a.starts_with('-')) else {
        eprintln!("usage: xgate-userspace [-f|--foreground] INTERFACE");
        return ExitCode::from(2);
    };
    let mut cmd = Command::new(xgate_binary());
    cmd.args(["up", "--interface", name]);
    if foreground {
        let e = cmd.exec();
        eprintln!("xgate-userspace: cannot run xgate: {e}");
        return ExitCode::FAILURE;
    }
    let log = PathBuf::from(format!("/var/log/xgate-{name}.log"));
    let stderr = std::fs::File::create(&log)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xgate-userspace: cannot start xgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let socket = plane::uapi::socket_path(name);
    let started = Instant::now();
    while started.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!("xgate-userspace: xgate exited ({status}): {}", tail.trim());
            return ExitCode::FAILURE;
        }
        if UnixStream::connect(&socket).is_ok() {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "xgate-userspace: {} did not appear within {READY_TIMEOUT:?}; see {}",
        socket.display(),
        log.display()
    );
    let _ = child.kill();
    ExitCode::FAILURE
}
