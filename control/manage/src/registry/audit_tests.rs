//! The audit log on both engines: entries come back newest first, paged, each text bounded.

use super::audit::MAX_TEXT;
use super::test_support::{open, pool, TempDb};

fn entries_come_back_newest_first_and_bounded(db: TempDb) {
    let mut registry = open(&db, vec![pool("10.78.0.0/24", None)]);
    registry
        .audit(1_000, "web:alice", "add user", "bob (id 1)")
        .expect("audit");
    let long = "é".repeat(MAX_TEXT);
    registry
        .audit(2_000, "api:ops", "POST /api/v1/peers", &long)
        .expect("audit");
    let all = registry.audit_log(None, 10).expect("log");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].actor, "api:ops");
    assert!(all[0].detail.len() <= MAX_TEXT && all[0].detail.starts_with('é'));
    assert_eq!(
        (all[1].at_ms, all[1].detail.as_str()),
        (1_000, "bob (id 1)")
    );
    let older = registry.audit_log(Some(all[0].id), 10).expect("page");
    assert_eq!(older, all[1..]);
}

on_both_engines!(entries_come_back_newest_first_and_bounded);
