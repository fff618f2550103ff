//! Failover of a two-node cluster (Debian's PostgreSQL and keepalived, two xgate nodes in
//! namespaces on one bridge): 500 simulated users, one wireguard-go and one boringtun-cli
//! client connect through node A and keep pinging; node A is SIGKILLed and its links go
//! down. With take-over, node B starts a handshake with each of A's users as soon as the
//! service address reaches it: everyone passes traffic again within 5 s of the move (the
//! target is 2 s). Without, the standard clients come back only after their own ~15 s.

mod common;

use loadtest::failover::{line, FailoverFigures};
use loadtest::run::run;

/// One failover at a time: two on a 2-core machine would measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fail_over(take_over: bool, tag: &str) -> FailoverFigures {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut options = common::options("small-failover", tag);
    if let Some(f) = options.scenario.failover.as_mut() {
        f.take_over = take_over;
    }
    let r = run(&options).expect("the run");
    assert_eq!(
        r.clients.connected, 500,
        "everyone connected through A first"
    );
    let f = r.failover.expect("failover figures");
    println!("{}", line(&f));
    assert!(f.moved_after_ms.is_some(), "the address never moved: {f:?}");
    assert_eq!(f.clients.len(), 2, "{f:?}");
    assert!(f.users >= 490, "users connected before the failure: {f:?}");
    f
}

#[test]
fn after_node_a_dies_every_user_passes_traffic_through_b_within_5_s_of_the_move() {
    let f = fail_over(true, "fo");
    assert_eq!(f.never, 0, "users who never came back: {f:?}");
    assert!(
        f.resume_after_move_ms.max <= 5000.0,
        "the slowest user took {:.0} ms after the move",
        f.resume_after_move_ms.max
    );
    for c in &f.clients {
        let took = c
            .after_move_ms
            .unwrap_or_else(|| panic!("{} never came back", c.client));
        assert!(took <= 5000.0, "{} took {took:.0} ms", c.client);
    }
}

#[test]
fn without_take_over_standard_clients_need_their_own_15_s() {
    let f = fail_over(false, "fn");
    for c in &f.clients {
        let took = c
            .after_move_ms
            .unwrap_or_else(|| panic!("{} never came back within 20 s", c.client));
        assert!(
            took >= 5000.0,
            "{} came back alone in {took:.0} ms",
            c.client
        );
    }
    assert!(
        f.resume_after_move_ms.p50 >= 5000.0,
        "the simulated users came back alone sooner than a standard client: {f:?}"
    );
}
