//! A panicking thread stops the daemon: a dead worker or control plane would otherwise leave
//! an interface that looks up while its peers' packets go nowhere. Each panic is logged with
//! its thread, place and message; then the daemon is told to stop, tears everything down and
//! exits non-zero, for systemd (`Restart=on-failure`) or the operator to start it again.
//!
//! Two kinds of thread are exempt, because a panic there ends one request and nothing else:
//! the HTTP API's runtime threads (tokio catches a handler's panic and drops the connection)
//! and the UAPI socket's per-connection threads.

use std::time::Duration;

use crossbeam_channel::Sender;
use plane::engine::StopReason;

/// Threads whose panic ends only the request they served.
const CONTAINED: [&str; 2] = ["xgate-api", "xgate-uapi-conn"];

/// If the orderly stop has not ended the process this long after a panic, it exits anyway.
const LAST_RESORT: Duration = Duration::from_secs(20);

/// Exit status of that last resort (EX_SOFTWARE).
const EXIT_SOFTWARE: i32 = 70;

/// Installs the hook: from now on a thread's panic sends `StopReason::Panicked` to `stop`.
pub fn stop_on_panic(stop: Sender<StopReason>) {
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed").to_string();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let place = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        let what = format!("thread {name} panicked{place}: {message}");
        if CONTAINED.contains(&name.as_str()) {
            tracing::error!("{what}; only its request failed");
            return;
        }
        tracing::error!("{what}; stopping the daemon");
        if stop.send(StopReason::Panicked(what.clone())).is_ok() {
            std::thread::spawn(move || {
                std::thread::sleep(LAST_RESORT);
                eprintln!("xgate: still not stopped {LAST_RESORT:?} after: {what}; exiting");
                std::process::exit(EXIT_SOFTWARE);
            });
        }
    }));
}
