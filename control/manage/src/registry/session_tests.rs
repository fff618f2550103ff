//! The registry's session records on both engines: a silent node's sessions claimed once,
//! newest first; a surge's worth written at once; sessions claimed by the index a transport
//! message named.

use super::test_support::{new_peer, open, pool, TempDb};
use super::SeenSession;

fn a_silent_nodes_sessions_are_claimed_once_newest_first(db: TempDb) {
    let mut a = open(&db, vec![pool("10.77.0.0/24", None)]);
    a.set_node("node-a");
    let seen = |n: u8, ms: u64| SeenSession {
        public_key: new_peer(n, "default").public_key,
        endpoint: format!("192.0.2.{n}:5182{n}").parse().expect("endpoint"),
        seen_ms: ms,
        receiver_index: Some(u32::from(n) << 8),
    };
    a.record_sessions(&[seen(1, 100), seen(2, 300), seen(3, 200)])
        .expect("record");
    // A newer handshake moves the session; the old endpoint is forgotten.
    let mut moved = seen(3, 250);
    moved.endpoint = "198.51.100.3:4000".parse().expect("endpoint");
    a.record_sessions(&[moved]).expect("record again");
    let mut b = open(&db, vec![pool("10.77.0.0/24", None)]);
    b.set_node("node-b");
    let taken = b.take_over_sessions("node-a", 150).expect("take over");
    assert_eq!(taken, [seen(2, 300), moved], "recent ones, newest first");
    let mut c = open(&db, vec![pool("10.77.0.0/24", None)]);
    c.set_node("node-c");
    assert!(c
        .take_over_sessions("node-a", 150)
        .expect("again")
        .is_empty());
    assert!(
        c.take_over_sessions("node-b", 0).expect("b's").len() == 2,
        "b holds what it claimed"
    );
    // A surge's worth at once (several statements), one user twice: the newer row stays.
    let many: Vec<SeenSession> = (0..1200u32)
        .map(|i| {
            let mut key = [9u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            SeenSession {
                public_key: proto::PublicKey(key),
                endpoint: "203.0.113.1:1000".parse().expect("endpoint"),
                seen_ms: 1000 + u64::from(i),
                receiver_index: None,
            }
        })
        .collect();
    let mut older = many[5];
    older.seen_ms = 10;
    let batch: Vec<SeenSession> = many.iter().copied().chain([older]).collect();
    a.record_sessions(&batch).expect("record many");
    let taken = c.take_over_sessions("node-a", 500).expect("take many");
    assert_eq!(taken.len(), 1200);
    assert_eq!(taken[0], many[1199], "newest first");
    assert!(taken.contains(&many[5]), "the newer of the two");
}

fn a_stray_message_claims_its_session_by_index_reaching_only_its_own_address(db: TempDb) {
    let mut a = open(&db, vec![pool("10.77.0.0/24", None)]);
    a.set_node("node-a");
    let seen = |n: u8, index: u32| SeenSession {
        public_key: new_peer(n, "default").public_key,
        endpoint: format!("192.0.2.{n}:5182{n}").parse().expect("endpoint"),
        seen_ms: 1000,
        receiver_index: Some(index),
    };
    // Two of a's users share index 7 (random per node): neither is reached by it.
    a.record_sessions(&[seen(1, 5), seen(2, 6), seen(3, 7), seen(4, 7)])
        .expect("record");
    let mut b = open(&db, vec![pool("10.77.0.0/24", None)]);
    b.set_node("node-b");
    let rebound: std::net::SocketAddr = "192.0.2.1:7000".parse().expect("same address");
    let forged: std::net::SocketAddr = "198.51.100.9:7000".parse().expect("elsewhere");
    let got = b
        .take_over_by_index(&[(5, rebound), (6, forged), (7, rebound), (99, rebound)], 0)
        .expect("look up");
    let got: Vec<_> = got
        .into_iter()
        .map(|(node, s)| (node, s.public_key, s.endpoint))
        .collect();
    assert_eq!(
        got,
        [
            // A new port at the recorded address: reached there.
            ("node-a".to_string(), seen(1, 5).public_key, rebound),
            // Another address: reached where it was recorded, never at the sender.
            (
                "node-a".to_string(),
                seen(2, 6).public_key,
                seen(2, 6).endpoint
            ),
        ]
    );
    assert!(
        b.take_over_by_index(&[(5, rebound)], 0)
            .expect("again")
            .is_empty(),
        "b's own now: nothing to take"
    );
    // One index twice in a batch: claimed once.
    let mut d = open(&db, vec![pool("10.77.0.0/24", None)]);
    d.set_node("node-d");
    a.record_sessions(&[SeenSession {
        seen_ms: 2000,
        ..seen(5, 8)
    }])
    .expect("record");
    let twice = d
        .take_over_by_index(&[(8, forged), (8, rebound)], 0)
        .expect("look up");
    assert_eq!(twice.len(), 1, "{twice:?}");
    let mut c = open(&db, vec![pool("10.77.0.0/24", None)]);
    c.set_node("node-c");
    assert!(
        c.take_over_by_index(&[(5, rebound)], 2000)
            .expect("old")
            .is_empty(),
        "older than `since`"
    );
}

on_both_engines!(
    a_silent_nodes_sessions_are_claimed_once_newest_first,
    a_stray_message_claims_its_session_by_index_reaching_only_its_own_address,
);
