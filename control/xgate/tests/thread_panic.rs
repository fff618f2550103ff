//! No silent thread death: a datapath worker made to panic (through the debug build's fault
//! trigger) stops the whole daemon, which says which thread panicked and why, removes its
//! interface and socket, and exits non-zero for systemd to restart it.

mod common;

use std::time::{Duration, Instant};

use common::Rig;
use datapath::worker::faults::FAULT_FILE_VAR;
use testbed::clients::uapi_socket;
use testbed::Implementation;

#[test]
fn a_worker_panic_stops_the_daemon_naming_the_thread() {
    let mut rig = Rig::new("panic");
    rig.add_client(Implementation::WireguardGo);
    let trigger = rig.dir.join("fault");
    rig.server.env.push((
        FAULT_FILE_VAR.into(),
        trigger.to_string_lossy().into_owned(),
    ));
    rig.start_and_connect();

    std::fs::write(&trigger, "panic-worker-1").expect("trigger");
    // Worker 1 is asked for its state within a second (the plane publishes every second).
    let started = Instant::now();
    let code = rig
        .xgate()
        .daemon
        .wait(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("xgate kept running without worker 1"));
    let log = rig.log();
    assert_ne!(code, 0, "a panic is a failure: {log}");
    for line in [
        "thread xgate-worker-1 panicked",
        "test fault: worker 1 panics",
        "stopping the daemon",
    ] {
        assert!(log.contains(line), "the log lacks {line:?}:\n{log}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        started.elapsed()
    );
    let iface = rig.iface();
    assert!(
        rig.server.ns.ip(&["link", "show", &iface]).is_err(),
        "interface {iface} left behind"
    );
    assert!(!uapi_socket(&iface).exists(), "socket left behind");
}
