use std::collections::HashSet;
use std::time::Duration;

use super::test_support::{ip, new_peer, open, pool, TempDb, HOLD};
use super::*;

fn created_peers_get_dual_stack_addresses_and_read_back_whole(db: TempDb) {
    let mut r = open(&db, vec![pool("10.77.0.0/16", Some("fd77::/64"))]);
    let made = r
        .create(&[new_peer(2, "default"), new_peer(3, "sales")], 1000)
        .expect("create");
    // .1 and ::1 are the server's own: the first peer gets .2 and ::2.
    assert_eq!(made[0].addresses, [ip("10.77.0.2"), ip("fd77::2")]);
    assert_eq!(made[1].addresses, [ip("10.77.0.3"), ip("fd77::3")]);
    assert_eq!(
        made[1].group, "sales",
        "unknown groups use the default pool"
    );
    assert_eq!(
        made[1].routes(),
        [
            "10.77.0.3/32".parse().expect("net"),
            "fd77::3/128".parse().expect("net"),
            "192.168.30.0/24".parse().expect("net")
        ]
    );
    assert_eq!(made[0].preshared_key, Some([2; 32]));
    assert_eq!((made[0].created_at, made[0].updated_at), (1000, 1000));
    assert_eq!(r.get(made[0].id).expect("get"), made[0]);
    assert_eq!(
        r.find_by_key(&new_peer(3, "").public_key).expect("find"),
        Some(made[1].clone())
    );
    assert_eq!(
        r.find_by_key(&new_peer(9, "").public_key).expect("find"),
        None
    );
    // Reopening the file finds the same peers.
    drop(r);
    let mut r = open(&db, vec![pool("10.77.0.0/16", Some("fd77::/64"))]);
    assert_eq!(r.active().expect("active"), made);
}

fn a_duplicate_key_is_refused_and_its_batch_leaves_nothing_behind(db: TempDb) {
    let mut r = open(&db, vec![pool("10.77.0.0/24", None)]);
    r.create(&[new_peer(1, "default")], 1).expect("first");
    let mut same_key = new_peer(1, "default");
    same_key.name = "someone else".into();
    let err = r
        .create(&[new_peer(2, "default"), same_key], 2)
        .expect_err("duplicate");
    assert!(matches!(err, RegistryError::DuplicateKey(_)), "{err}");
    assert!(err.to_string().contains("exists already"), "{err}");
    assert_eq!(r.count().expect("count"), 1, "the batch is all or nothing");
    // The address the failed batch had taken is free again.
    let next = r.create(&[new_peer(2, "default")], 3).expect("retry");
    assert_eq!(next[0].addresses, [ip("10.77.0.3")]);
}

fn an_exhausted_pool_says_so(db: TempDb) {
    // A /29: .0 network, .7 broadcast, .1 reserved: .2 to .6 for peers.
    let mut r = open(&db, vec![pool("10.77.0.0/29", None)]);
    for n in 0..5 {
        r.create(&[new_peer(n, "default")], 1).expect("room left");
    }
    let err = r.create(&[new_peer(5, "default")], 1).expect_err("full");
    assert!(matches!(err, RegistryError::PoolExhausted { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("10.77.0.0/29") && text.contains("widen"),
        "{text}"
    );
    let used: HashSet<_> = r
        .active()
        .expect("active")
        .into_iter()
        .flat_map(|p| p.addresses)
        .collect();
    let want: HashSet<_> = (2..=6).map(|i| ip(&format!("10.77.0.{i}"))).collect();
    assert_eq!(used, want);
}

fn released_addresses_rest_for_the_hold_time_before_reuse(db: TempDb) {
    let mut r = open(&db, vec![pool("10.77.0.0/29", None)]);
    let a = r.create(&[new_peer(1, "default")], 100).expect("a")[0].clone();
    let revoked = r.revoke(a.id, 200).expect("revoke");
    assert_eq!(revoked.revoked_at, Some(200));
    assert!(
        revoked.addresses.is_empty(),
        "a revoked peer holds no address"
    );
    // A second revoke changes nothing (the API then publishes no second event).
    let (again, changed) = r.revoke_once(a.id, 300).expect("again");
    assert!(!changed);
    assert_eq!(
        (again.revoked_at, again.updated_at),
        (Some(200), revoked.updated_at)
    );
    // Within the hold a new peer gets a never-used address.
    let b = r
        .create(&[new_peer(2, "default")], 200 + HOLD - 1)
        .expect("b");
    assert_ne!(b[0].addresses, a.addresses);
    // After it the released one comes back first.
    let c = r.create(&[new_peer(3, "default")], 200 + HOLD).expect("c");
    assert_eq!(c[0].addresses, a.addresses);
    // Deleting releases too.
    r.delete(c[0].id, 5000).expect("delete");
    assert!(matches!(r.get(c[0].id), Err(RegistryError::NoSuchPeer(_))));
    let d = r.create(&[new_peer(4, "default")], 5000 + HOLD).expect("d");
    assert_eq!(d[0].addresses, c[0].addresses);
    // The deleted peer had the highest id; it is not given again.
    assert!(d[0].id > c[0].id, "id {} reused", c[0].id);
}

fn concurrent_creation_on_two_connections_never_shares_an_address(db: TempDb) {
    open(&db, vec![pool("10.77.0.0/16", Some("fd77::/64"))]);
    let threads: Vec<_> = (0..2u8)
        .map(|t| {
            let location = db.location();
            std::thread::spawn(move || {
                let mut r =
                    Registry::open_at(&location, vec![pool("10.77.0.0/16", Some("fd77::/64"))])
                        .expect("open");
                for n in 0..100u8 {
                    let mut p = new_peer(n, "default");
                    p.public_key.0[1] = t;
                    p.name = format!("thread-{t}-{}", p.name);
                    // Routed prefixes may not overlap: each thread's peer 3 gets its own.
                    for net in &mut p.allowed_ips {
                        *net = format!("192.168.{}.0/24", 30 + t).parse().expect("net");
                    }
                    r.create(&[p], 1).expect("create");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let mut r = open(&db, vec![pool("10.77.0.0/16", Some("fd77::/64"))]);
    let peers = r.active().expect("active");
    assert_eq!(peers.len(), 200);
    let addresses: Vec<_> = peers.iter().flat_map(|p| p.addresses.clone()).collect();
    let unique: HashSet<_> = addresses.iter().collect();
    assert_eq!(addresses.len(), 400);
    assert_eq!(unique.len(), 400, "an address was handed out twice");
}

fn listing_pages_filters_by_group_and_hides_revoked_on_request(db: TempDb) {
    let mut r = open(&db, vec![pool("10.77.0.0/24", None)]);
    let groups = ["eng", "sales", "eng", "eng", "sales"];
    let peers: Vec<_> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| new_peer(i as u8, g))
        .collect();
    let made = r.create(&peers, 1).expect("create");
    r.revoke(made[2].id, 2).expect("revoke");
    let mut page = |after, group: Option<&str>, revoked| {
        r.list(&ListFilter {
            group: group.map(String::from),
            after,
            limit: 2,
            revoked,
            search: None,
        })
        .expect("list")
        .iter()
        .map(|p| p.id)
        .collect::<Vec<_>>()
    };
    let ids: Vec<_> = made.iter().map(|p| p.id).collect();
    assert_eq!(page(0, None, true), ids[..2]);
    assert_eq!(page(ids[1], None, true), ids[2..4]);
    assert_eq!(page(ids[3], None, true), ids[4..]);
    assert_eq!(page(0, Some("eng"), true), [ids[0], ids[2]]);
    assert_eq!(page(0, Some("eng"), false), [ids[0], ids[3]]);
    assert_eq!(page(0, Some("nobody"), true), Vec::<i64>::new());
    // A search matches part of a name in any case; its wildcards are plain characters.
    let mut found = |text: &str, revoked| {
        let filter = ListFilter {
            limit: 10,
            revoked,
            search: Some(text.into()),
            ..ListFilter::default()
        };
        let ids: Vec<i64> = r
            .list(&filter)
            .expect("search")
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(r.count_matching(&filter).expect("count"), ids.len() as u64);
        ids
    };
    assert_eq!(found("USER-4", true), [ids[4]]);
    assert_eq!(found("ser-", true), ids);
    assert_eq!(found("ser-", false).len(), 4, "revoked left out");
    assert!(found("user_", true).is_empty() && found("%", true).is_empty());
}

fn updates_change_only_what_they_name(db: TempDb) {
    let mut r = open(&db, vec![pool("10.77.0.0/24", None)]);
    let p = r.create(&[new_peer(2, "default")], 1).expect("create")[0].clone();
    let nets: Vec<IpNet> = vec!["172.16.0.0/12".parse().expect("net")];
    let changed = r
        .update(
            p.id,
            &PeerChange {
                allowed_ips: Some(nets.clone()),
                preshared_key: Some(None),
                ..PeerChange::default()
            },
            9,
        )
        .expect("update");
    assert_eq!(changed.allowed_ips, nets);
    assert_eq!(changed.preshared_key, None);
    assert_eq!((changed.name.as_str(), changed.updated_at), ("user-2", 9));
    assert_eq!(changed.addresses, p.addresses);
    assert!(matches!(
        r.update(999, &PeerChange::default(), 9),
        Err(RegistryError::NoSuchPeer(999))
    ));
    assert!(matches!(
        r.revoke(999, 9),
        Err(RegistryError::NoSuchPeer(999))
    ));
    assert!(matches!(
        r.delete(999, 9),
        Err(RegistryError::NoSuchPeer(999))
    ));
    r.record_handshakes(&[(p.public_key, 77), (PublicKey([9; 32]), 78)])
        .expect("handshake; an unknown key is no error");
    assert_eq!(r.get(p.id).expect("get").last_handshake, Some(77));
    r.record_handshakes(&[(p.public_key, 70)]).expect("older");
    assert_eq!(
        r.get(p.id).expect("get").last_handshake,
        Some(77),
        "a late batch never moves the time back"
    );
}

#[test]
fn a_database_from_a_newer_xgate_is_refused_with_a_clear_error() {
    let db = TempDb::new("newer");
    drop(open(&db, vec![pool("10.77.0.0/24", None)]));
    let conn = Connection::open(db.path()).expect("raw open");
    conn.pragma_update(None, "user_version", 99)
        .expect("set version");
    drop(conn);
    let err = Registry::open(db.path(), Vec::new())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("upgrade xgate"), "{err}");
}

fn a_group_without_a_pool_and_no_default_is_an_error(db: TempDb) {
    let mut r = open(&db, Vec::new());
    let err = r.create(&[new_peer(1, "eng")], 1).expect_err("no pool");
    assert!(matches!(err, RegistryError::NoPool(_)), "{err}");
    assert_eq!(r.count().expect("count"), 0);
}

fn routed_prefixes_may_not_overlap_a_pool_nor_be_another_peers(db: TempDb) {
    let mut r = open(&db, vec![pool("10.77.0.0/24", Some("fd77::/64"))]);
    let net = |s: &str| -> IpNet { s.parse().expect("net") };
    let with_routes = |n: u8, nets: &[&str]| {
        let mut p = new_peer(n, "default");
        p.allowed_ips = nets.iter().map(|s| net(s)).collect();
        p
    };
    let a = r
        .create(&[with_routes(10, &["192.168.10.0/24"])], 1)
        .expect("a")[0]
        .clone();
    for (nets, what) in [
        (vec!["192.168.10.0/24"], "peer"),
        (vec!["192.168.10.1/24"], "peer"),
        (vec!["10.77.0.64/26"], "address pool"),
        (vec!["fd77::/48"], "address pool"),
        (vec!["0.0.0.0/0"], "address pool"),
    ] {
        let e = r.create(&[with_routes(11, &nets)], 2).expect_err("overlap");
        assert!(
            matches!(&e, RegistryError::RouteOverlap { other, .. } if other.contains(what)),
            "{nets:?}: {e}"
        );
    }
    // Nested prefixes are fine, as in the config file: the longest match wins.
    r.create(&[with_routes(15, &["192.168.10.128/25"])], 2)
        .expect("nested inside a's");
    // A batch may not route a prefix twice, and leaves nothing behind when refused.
    let before = r.count().expect("count");
    let batch = [
        with_routes(12, &["172.16.0.0/16"]),
        with_routes(13, &["172.16.0.0/16"]),
    ];
    assert!(matches!(
        r.create(&batch, 3),
        Err(RegistryError::RouteOverlap { .. })
    ));
    assert_eq!(r.count().expect("count"), before);
    // Changing a peer's own prefixes is not an overlap with itself; with another's it is.
    let change = |nets: &[&str]| PeerChange {
        allowed_ips: Some(nets.iter().map(|s| net(s)).collect()),
        ..PeerChange::default()
    };
    r.update(a.id, &change(&["192.168.10.0/23"]), 4)
        .expect("own prefix widened");
    let b = r
        .create(&[with_routes(14, &["172.20.0.0/16"])], 5)
        .expect("b")[0]
        .clone();
    assert!(matches!(
        r.update(b.id, &change(&["192.168.10.0/23"]), 6),
        Err(RegistryError::RouteOverlap { .. })
    ));
    // A revoked peer's prefixes are free again.
    r.revoke(a.id, 7).expect("revoke");
    r.update(b.id, &change(&["192.168.10.0/23"]), 8)
        .expect("free after revocation");
}

fn a_group_change_moves_pools_only_when_the_pool_differs_and_expiry_is_found(db: TempDb) {
    let mut eng = pool("10.88.0.0/24", None);
    eng.name = "eng".into();
    let mut r = open(&db, vec![pool("10.77.0.0/24", None), eng]);
    let made = r
        .create(&[new_peer(1, "default"), new_peer(2, "default")], 1)
        .expect("create");
    let moved = |group: &str| PeerChange {
        group: Some(group.into()),
        ..PeerChange::default()
    };
    // "sales" has no pool of its own: same addresses, new group.
    let p = r.update(made[0].id, &moved("sales"), 2).expect("to sales");
    assert_eq!(
        (p.group.as_str(), &p.addresses),
        ("sales", &made[0].addresses)
    );
    let p = r.update(made[0].id, &moved("eng"), 3).expect("to eng");
    assert_eq!(p.addresses, [ip("10.88.0.1")], "from eng's pool");
    let expiring = PeerChange {
        expires_at: Some(Some(100)),
        ..PeerChange::default()
    };
    r.update(made[1].id, &expiring, 4).expect("expiry");
    assert_eq!(r.get(made[1].id).expect("get").expires_at, Some(100));
    assert!(r.expired(99).expect("expired").is_empty());
    assert_eq!(r.expired(100).expect("expired"), [made[1].id]);
    r.revoke(made[1].id, 101).expect("revoke");
    assert!(r.expired(200).expect("expired").is_empty(), "revoked: done");
}

on_both_engines!(
    a_group_change_moves_pools_only_when_the_pool_differs_and_expiry_is_found,
    created_peers_get_dual_stack_addresses_and_read_back_whole,
    a_duplicate_key_is_refused_and_its_batch_leaves_nothing_behind,
    an_exhausted_pool_says_so,
    released_addresses_rest_for_the_hold_time_before_reuse,
    concurrent_creation_on_two_connections_never_shares_an_address,
    listing_pages_filters_by_group_and_hides_revoked_on_request,
    updates_change_only_what_they_name,
    a_group_without_a_pool_and_no_default_is_an_error,
    routed_prefixes_may_not_overlap_a_pool_nor_be_another_peers,
    certificate_users_hold_no_key_and_never_count_as_sharing_one,
    ike_users_and_peers_never_share_an_address,
    a_taken_name_identity_or_key_and_a_short_key_are_refused,
    every_change_is_logged_in_order_with_its_node_and_announced,
);

fn every_change_is_logged_in_order_with_its_node_and_announced(db: TempDb) {
    use super::{ChangeListener, Subject};
    let mut a = open(&db, vec![pool("10.77.0.0/24", None)]);
    a.set_node("node-a");
    let mut listener = ChangeListener::open(&db.location()).expect("listen");
    assert_eq!(listener.is_some(), matches!(db, TempDb::Postgres(_)));
    let before = a.last_change().expect("last");
    let p = a
        .create(&[new_peer(1, "default"), new_peer(2, "default")], 1)
        .expect("create");
    a.revoke(p[0].id, 2).expect("revoke");
    a.delete(p[1].id, 3).expect("delete");
    let u = a.create_ike_user(&cert_user("carol"), 4).expect("carol");
    a.delete_ike_user(u.id, 5).expect("delete carol");
    // Refused writes log nothing.
    let last = a.last_change().expect("last");
    a.create(&[new_peer(1, "default")], 6)
        .expect_err("a duplicate");
    a.revoke(p[0].id, 7).expect("revoked already: no change");
    assert_eq!(a.last_change().expect("last"), last);
    let log = a.changes_after(before, 100).expect("log");
    let subjects: Vec<_> = log.iter().map(|c| c.subject).collect();
    assert_eq!(
        subjects,
        [
            Subject::Peer(p[0].id),
            Subject::Peer(p[1].id),
            Subject::Peer(p[0].id),
            Subject::Peer(p[1].id),
            Subject::IkeUser(u.id),
            Subject::IkeUser(u.id),
        ]
    );
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
    assert!(log.iter().all(|c| c.node == "node-a"));
    assert_eq!(
        log[3].public_key,
        Some(p[1].public_key),
        "a deleted peer's key"
    );
    assert_eq!(log[5].at, 5);
    let tail = a.changes_after(log[2].seq, 2).expect("tail");
    assert_eq!(tail, log[3..5]);
    if let Some(l) = listener.as_mut() {
        assert!(l.wait(Duration::from_secs(5)).expect("wait"), "announced");
    }
}

// IKEv2 users.

use zeroize::Zeroizing;

const NOW: u64 = 1_700_000_000;

fn user(name: &str, identity: &str, psk: &[u8]) -> super::NewIkeUser {
    super::NewIkeUser {
        name: name.into(),
        group: "default".into(),
        identity: identity.into(),
        auth: super::IkeUserAuth::Psk(Zeroizing::new(psk.to_vec())),
    }
}

fn cert_user(name: &str) -> super::NewIkeUser {
    super::NewIkeUser {
        name: name.into(),
        group: "default".into(),
        identity: format!("{name}@example.com"),
        auth: super::IkeUserAuth::Certificate,
    }
}

fn certificate_users_hold_no_key_and_never_count_as_sharing_one(db: TempDb) {
    let mut reg = open(&db, vec![pool("10.77.0.0/24", None)]);
    let c = reg
        .create_ike_user(&cert_user("carol"), NOW)
        .expect("carol");
    let d = reg.create_ike_user(&cert_user("dave"), NOW).expect("dave");
    assert_eq!(c.auth, super::IkeUserAuth::Certificate);
    assert_eq!(reg.ike_user(d.id).expect("dave").auth.name(), "certificate");
    assert_ne!(c.addresses, d.addresses);
}

/// A raw database at schema `version`, as an older xgate left it.
fn at_version(db: &TempDb, version: usize) -> Connection {
    let mut conn = Connection::open(db.path()).expect("raw open");
    conn.pragma_update(None, "foreign_keys", "ON").expect("fk");
    for (i, sql) in super::schema::MIGRATIONS.iter().take(version).enumerate() {
        let tx = conn.transaction().expect("tx");
        tx.execute_batch(sql).expect("migration");
        tx.pragma_update(None, "user_version", i + 1)
            .expect("version");
        tx.commit().expect("commit");
    }
    conn
}

#[test]
fn a_version_3_registry_keeps_its_ike_users_and_their_addresses_when_upgraded() {
    let db = TempDb::new("ike-v3");
    let conn = at_version(&db, 3);
    // alice (5) and a user made after her and deleted (9): 9 must never be given again.
    conn.execute_batch(
        "INSERT INTO ike_users (id, name, identity, psk, created_at, updated_at)
             VALUES (5, 'alice', 'alice@example.com', zeroblob(32), 1, 1);
         INSERT INTO ike_users (id, name, identity, psk, created_at, updated_at)
             VALUES (9, 'gone', 'gone@example.com', randomblob(32), 1, 1);
         DELETE FROM ike_users WHERE id = 9;
         INSERT INTO addresses (address, pool, ike_user_id) VALUES ('10.77.0.9', 'p', 5);",
    )
    .expect("a version 3 user");
    drop(conn);
    let mut reg = open(&db, vec![pool("10.77.0.0/24", None)]);
    let alice = reg.ike_user(5).expect("alice kept");
    assert_eq!(alice.auth.psk(), Some(&[0u8; 32][..]));
    assert_eq!(
        alice.addresses,
        vec!["10.77.0.9".parse::<std::net::IpAddr>().expect("ip")]
    );
    let next = reg
        .create_ike_user(&cert_user("carol"), NOW)
        .expect("carol");
    assert_eq!(next.id, 10, "the id counter carried over the rebuild");
}

fn ike_users_and_peers_never_share_an_address(db: TempDb) {
    let mut reg = open(&db, vec![pool("10.77.0.0/24", Some("fd77::/64"))]);
    let p = reg.create(&[new_peer(1, "default")], NOW).expect("peer");
    let a = reg
        .create_ike_user(&user("alice", "alice@example.com", &[1; 32]), NOW)
        .expect("alice");
    assert_eq!(a.addresses.len(), p[0].addresses.len());
    for addr in &a.addresses {
        assert!(!p[0].addresses.contains(addr), "{addr} held twice");
    }
    assert_eq!(reg.ike_users().expect("list"), vec![a.clone()]);
    let gone = reg.delete_ike_user(a.id, NOW).expect("delete");
    assert_eq!(gone.addresses, a.addresses);
    assert!(reg.ike_users().expect("list").is_empty());
    assert!(matches!(
        reg.ike_user(a.id),
        Err(RegistryError::NoSuchIkeUser(_))
    ));
}

fn a_taken_name_identity_or_key_and_a_short_key_are_refused(db: TempDb) {
    let mut reg = open(&db, vec![pool("10.77.0.0/24", None)]);
    reg.create_ike_user(&user("alice", "alice@example.com", &[1; 32]), NOW)
        .expect("alice");
    let refused =
        |r: Result<super::IkeUserRecord, RegistryError>| r.expect_err("refused").to_string();
    let e = refused(reg.create_ike_user(&user("alice", "a2@example.com", &[2; 32]), NOW));
    assert!(e.contains("name \"alice\""), "{e}");
    let e = refused(reg.create_ike_user(&user("bob", "alice@example.com", &[2; 32]), NOW));
    assert!(e.contains("identity"), "{e}");
    let e = refused(reg.create_ike_user(&user("bob", "bob@example.com", &[1; 32]), NOW));
    assert!(e.contains("another user's"), "{e}");
    let e = refused(reg.create_ike_user(&user("bob", "bob@example.com", &[3; 8]), NOW));
    assert!(e.contains("at least 16"), "{e}");
    assert_eq!(reg.ike_users().expect("list").len(), 1, "nothing half-made");
}

#[test]
fn password_users_keep_only_their_nt_hash_and_a_version_4_registry_upgrades() {
    let db = TempDb::new("ike-eap");
    let conn = at_version(&db, 4);
    conn.execute_batch(
        "INSERT INTO ike_users (id, name, identity, auth, psk, created_at, updated_at)
             VALUES (3, 'carol', 'carol@example.com', 'certificate', NULL, 1, 1);",
    )
    .expect("a version 4 user");
    drop(conn);
    let mut reg = open(&db, vec![pool("10.77.0.0/24", None)]);
    assert_eq!(reg.ike_user(3).expect("carol").auth.name(), "certificate");
    let hash = [0x44u8; 16];
    let bob = super::NewIkeUser {
        name: "bob".into(),
        group: "default".into(),
        identity: "bob".into(),
        auth: super::IkeUserAuth::Eap(Zeroizing::new(hash)),
    };
    let made = reg.create_ike_user(&bob, NOW).expect("bob");
    assert_eq!(made.id, 4);
    drop(reg);
    let mut reg = open(&db, vec![pool("10.77.0.0/24", None)]);
    let read = reg.ike_user(4).expect("bob kept");
    assert_eq!(read.auth.nt_hash(), Some(&hash[..]));
    assert_eq!(read.auth.psk(), None);
    assert_eq!(format!("{:?}", read.auth), "eap", "Debug shows no hash");
    drop(reg);
    // The schema itself refuses a password user without a hash, or with a key.
    let conn = Connection::open(db.path()).expect("raw open");
    for row in [
        "(9, 'x', 'x', 'eap', NULL, NULL, 1, 1)",
        "(9, 'x', 'x', 'eap', zeroblob(32), zeroblob(16), 1, 1)",
        "(9, 'x', 'x', 'psk', zeroblob(32), zeroblob(16), 1, 1)",
        "(9, 'x', 'x', 'eap', NULL, zeroblob(15), 1, 1)",
    ] {
        let sql = format!(
            "INSERT INTO ike_users (id, name, identity, auth, psk, nt_hash, created_at, \
             updated_at) VALUES {row}"
        );
        assert!(conn.execute(&sql, []).is_err(), "{row} taken");
    }
}

#[test]
fn passwords_never_show_where_a_location_is_named() {
    for (url, shown) in [
        ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
        ("postgres://u:se@cret@h/db", "postgres://u:***@h/db"),
        (
            "postgres://u@h/db?password=secret&sslmode=disable",
            "postgres://u@h/db?password=***&sslmode=disable",
        ),
        (
            "host=/run/pg dbname=x password=secret",
            "host=/run/pg dbname=x password=***",
        ),
        ("postgres://h/db", "postgres://h/db"),
    ] {
        assert_eq!(without_password(url), shown);
        assert_eq!(Location::Postgres(url.into()).to_string(), shown);
    }
}
