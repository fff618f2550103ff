//! The peer registry behind a running xgate: peers kept in the database connect with real
//! clients, with the addresses the registry assigned, and revoked peers stay out.

mod common;

use std::time::Duration;

use common::Rig;
use manage::registry::{NewPeer, Pool, Registry};
use testbed::Implementation;

fn pools() -> Vec<Pool> {
    vec![Pool {
        name: "default".into(),
        v4: Some("10.77.0.0/16".parse().expect("prefix")),
        v6: Some("fd77::/64".parse().expect("prefix")),
        reserved: vec![
            "10.77.0.1".parse().expect("ip"),
            "fd77::1".parse().expect("ip"),
        ],
        hold_secs: 3600,
    }]
}

#[test]
fn registered_peers_connect_and_revoked_ones_do_not() {
    let mut rig = Rig::new("reg");
    let go = rig.add_client(Implementation::WireguardGo);
    let bt = rig.add_client(Implementation::Boringtun);
    let outsider = rig.add_client(Implementation::WireguardGo);
    let db = rig.use_registry();
    let mut registry = Registry::open(&db, pools()).expect("registry");
    let new = |i: usize| NewPeer {
        name: format!("client-{i}"),
        group: "default".into(),
        public_key: rig.clients[i].peer.public_key,
        preshared_key: None,
        allowed_ips: Vec::new(),
    };
    let made = registry
        .create(&[new(go), new(bt), new(outsider)], 1)
        .expect("register");
    for (p, c) in made.iter().zip(&rig.clients) {
        // The rig gave client n the addresses .n+1 / ::n+1; the pool hands out the same.
        assert_eq!(
            p.addresses,
            [
                c.v4.parse::<std::net::IpAddr>().expect("ip"),
                c.v6.parse::<std::net::IpAddr>().expect("ip")
            ],
            "{}",
            p.name
        );
    }
    registry.revoke(made[outsider].id, 2).expect("revoke");
    drop(registry);

    rig.start_xgate();
    for c in [go, bt, outsider] {
        rig.connect(c, None);
    }
    for c in [go, bt] {
        assert!(
            rig.ping_until_reply(c, "10.77.0.1", Duration::from_secs(10)),
            "registered client {c} got no tunnel: {}",
            rig.log()
        );
    }
    assert!(
        !rig.ping_until_reply(outsider, "10.77.0.1", Duration::from_secs(2)),
        "a revoked peer got through"
    );
    let dump = rig.dump();
    assert_eq!(dump.len(), 2, "only the active peers are loaded: {dump:?}");
    assert!(rig.log().contains("registry loaded"), "{}", rig.log());
}
