//! Forged transport packets naming another worker's receiver indices, sprayed at 100,000 a
//! second over AF_XDP (where each socket takes what lands on its queue and hands the rest
//! over), are dropped where they land: they are not copied into the owner's handover queue,
//! and a real session whose packets cross between workers loses nothing to them.

mod common;

use std::time::Duration;

use common::Rig;
use datapath::messages::INDEX_WORKER_SHIFT;
use testbed::server::show_number;
use testbed::spray::{spray, SprayPlan};
use testbed::{ping, Implementation};

fn stat(rig: &Rig, section: &str, name: &str) -> u64 {
    show_number(&rig.show(), section, name).expect("xgate show")
}

/// A client whose datagrams land on a worker other than its session's owner (handed over):
/// the flow hash picks the queue, so new source ports are tried until one does.
fn crossing_client(rig: &Rig) -> usize {
    for attempt in 0..12u16 {
        for c in 0..rig.clients.len() {
            let before = stat(rig, "stats", "outer_handed_over");
            let p = ping(&rig.clients[c].ns, "10.77.0.1", 3).expect("ping");
            assert_eq!(p.received, 3, "tunnel of client {c}: {p:?}");
            if stat(rig, "stats", "outer_handed_over") >= before + 3 {
                return c;
            }
        }
        for (c, client) in rig.clients.iter().enumerate() {
            let port = (41000 + attempt * 10 + c as u16).to_string();
            testbed::clients::wg(
                &client.ns,
                &["set", &client.peer.iface, "listen-port", &port],
            )
            .expect("rebind");
        }
    }
    panic!("no client's datagrams crossed between workers in 12 tries");
}

#[test]
fn forged_indices_sprayed_at_100k_per_second_are_not_handed_over() {
    let mut rig = Rig::af_xdp("fhand");
    rig.add_client(Implementation::WireguardGo);
    rig.add_client(Implementation::WireguardGo);
    rig.start_and_connect();
    let c = crossing_client(&rig);

    let handed_before = stat(&rig, "stats", "outer_handed_over");
    let unknown_before = stat(&rig, "drops", "unknown_index");
    let plan = SprayPlan {
        server: format!("{}:{}", rig.clients[c].server_underlay, rig.port)
            .parse()
            .expect("address"),
        source: rig.clients[c].underlay.parse().expect("address"),
        ports: 32,
        // Both workers' indices: wherever a forged packet lands, half name the other worker.
        index_high: vec![0, 1 << INDEX_WORKER_SHIFT],
        low_mask: (1 << INDEX_WORKER_SHIFT) - 1,
        per_second: 100_000,
        duration: Duration::from_secs(3),
    };
    let sprayer = rig.clients[c].ns.spawn(move || spray(&plan));
    // The real session's packets cross between workers all the while.
    let pings =
        testbed::ping::ping_every(&rig.clients[c].ns, "10.77.0.1", 500, 0.005).expect("ping");
    let sprayed = sprayer.join().expect("sprayer").expect("in the namespace");
    let sprayed = sprayed.expect("spray");
    let shown = rig.show();
    let handed = stat(&rig, "stats", "outer_handed_over") - handed_before;
    let unknown = stat(&rig, "drops", "unknown_index") - unknown_before;
    let full = stat(&rig, "drops", "handover_full");
    eprintln!(
        "sprayed {} (refused {}), dropped as unknown {unknown}, handed over {handed}, \
         handover_full {full}; pings {}/{}",
        sprayed.sent, sprayed.refused, pings.received, pings.sent
    );
    assert!(sprayed.sent >= 250_000, "the spray fell short: {sprayed:?}");
    assert!(
        unknown >= sprayed.sent / 2,
        "the spray did not reach xgate: {unknown} of {} dropped as unknown\n{shown}",
        sprayed.sent
    );
    // Only the real session crossed: its pings and their replies' companions, not the spray.
    assert!(
        handed < 5_000,
        "{handed} datagrams handed over during the spray: forged ones were copied\n{shown}"
    );
    assert_eq!(full, 0, "handovers dropped at a full queue\n{shown}");
    assert!(
        pings.received * 100 >= pings.sent * 95,
        "the real session lost pings: {pings:?}"
    );
}
