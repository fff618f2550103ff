//! The netlink queries against a real kernel, in namespaces this test creates: interfaces
//! and addresses as `ip` set them, the route towards a neighbour, its link address once a
//! ping made the kernel resolve it, and the path the AF_XDP backend derives from them.

use std::net::IpAddr;
use std::time::Instant;

use datapath::io::af_xdp::neighbours::Neighbours;
use datapath::kernel::netlink::Netlink;
use testbed::netns::{veth_queues, Netns};

fn interface_mac(ns: &Netns, name: &'static str) -> (u32, Vec<u8>) {
    ns.enter(move || {
        let mut netlink = Netlink::open().expect("netlink");
        let found = netlink
            .interface(name)
            .expect("interfaces")
            .expect("interface listed");
        assert!(found.up && !found.loopback, "{found:?}");
        (found.index, found.mac)
    })
    .expect("enter")
}

#[test]
fn routes_neighbours_and_paths_match_what_ip_set_up() {
    let a = Netns::create("xnl-a").expect("netns");
    let b = Netns::create("xnl-b").expect("netns");
    veth_queues(&a, "nla", "10.184.0.1/24", &b, "nlb", "10.184.0.2/24", 1).expect("veth");
    let (index, mac_a) = interface_mac(&a, "nla");
    let (_, mac_b) = interface_mac(&b, "nlb");
    assert_eq!(mac_a.len(), 6);

    let peer: IpAddr = "10.184.0.2".parse().expect("ip");
    let before = a
        .enter(move || {
            let mut netlink = Netlink::open().expect("netlink");
            netlink.neighbour(index, peer).expect("neighbour query")
        })
        .expect("enter");
    assert_eq!(before, None, "no neighbour entry before any traffic");
    a.run("ping", &["-c", "1", "-W", "2", "10.184.0.2"])
        .expect("ping resolves the neighbour");

    let (addresses, route, unreachable, neighbour, path) = a
        .enter(move || {
            let mut netlink = Netlink::open().expect("netlink");
            let addresses = netlink.addresses().expect("addresses");
            let route = netlink.route_to(peer).expect("route query");
            let unreachable = netlink
                .route_to("192.0.2.1".parse().expect("ip"))
                .expect("route query");
            let neighbour = netlink.neighbour(index, peer).expect("neighbour query");
            let mut cache = Neighbours::default();
            let mac: [u8; 6] = mac_a.as_slice().try_into().expect("6 bytes");
            let path = cache.path_to(peer, Instant::now(), |i| (i == index).then_some(mac));
            (addresses, route, unreachable, neighbour, path)
        })
        .expect("enter");
    assert!(
        addresses.contains(&(index, "10.184.0.1".parse().expect("ip"))),
        "{addresses:?}"
    );
    let route = route.expect("a route to the neighbour");
    assert_eq!(route.ifindex, index);
    assert_eq!(route.gateway, None);
    assert_eq!(route.source, Some("10.184.0.1".parse().expect("ip")));
    assert_eq!(unreachable, None, "no default route in the namespace");
    assert_eq!(neighbour.map(|m| m.to_vec()), Some(mac_b.clone()));
    let path = path.expect("a path once the neighbour is known");
    assert_eq!(path.ifindex, index);
    assert_eq!(path.next_hop.to_vec(), mac_b);
    assert_eq!(path.local, "10.184.0.1".parse::<IpAddr>().expect("ip"));
}
