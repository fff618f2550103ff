//! SIGHUP rereads the API's token file: a token added to it works, one taken out no longer
//! does, and the daemon goes on (it used to die on SIGHUP, leaving its socket behind).

mod common;

use std::time::Duration;

use common::api::{call, start_with_api, SMALL_POOL};
use testbed::wait_until;

fn hangup(rig: &common::Rig) {
    let pid = rig.server.pid().expect("xgate's pid");
    // SAFETY: signals the daemon this test started, by its PID.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
}

#[test]
fn sighup_rereads_the_token_file_and_the_daemon_goes_on() {
    let (mut rig, first) = start_with_api("thup", SMALL_POOL);
    let file = testbed::config::registry_files(&rig.dir).1;
    let second = "xg_added_by_the_operator";
    let listed = |token: &str| call(&rig, "GET", "/api/v1/peers", Some(token), None).0;
    assert_eq!(listed(second), 401);

    // Added: accepted after SIGHUP.
    let hashes = std::fs::read_to_string(&file).expect("token file");
    let added = format!("{hashes}{}\n", hex::encode(manage::api::hash_token(second)));
    std::fs::write(&file, &added).expect("add a token");
    hangup(&rig);
    assert!(
        wait_until(Duration::from_secs(5), || listed(second) == 200),
        "the added token is not accepted: {}",
        rig.log()
    );
    assert_eq!(listed(&first), 200);

    // Taken out: refused after SIGHUP.
    let only_second = format!("{}\n", hex::encode(manage::api::hash_token(second)));
    std::fs::write(&file, only_second).expect("remove the first token");
    hangup(&rig);
    assert!(
        wait_until(Duration::from_secs(5), || listed(&first) == 401),
        "the removed token is still accepted"
    );
    assert!(
        rig.server.is_running(),
        "SIGHUP stopped xgate: {}",
        rig.log()
    );
    assert!(rig.log().contains("API tokens reloaded"), "{}", rig.log());
}
