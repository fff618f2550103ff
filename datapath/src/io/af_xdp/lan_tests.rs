//! The LAN steering program against the kernel: its verifier, its verdicts on hand-built
//! frames, the reasons it counts, and the route map's longest-prefix matches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::bpf::{AddressMap, XdpProgram, XskMap};
use super::lan_maps::{LanPass, PassCounters, RouteMap};
use super::lan_program::{lan_steering, LanMaps, LanSteered};
use super::program::{XDP_DROP, XDP_PASS};

/// Every byte's top bit set: the program compares it whole, however it is split.
const OUR_MAC: [u8; 6] = [0xfe, 0xdc, 0xba, 0x98, 0x86, 0xf0];
const MAX_FRAME: u16 = 1778;
const LAN: LanSteered = LanSteered {
    mac: OUR_MAC,
    max_frame: MAX_FRAME,
};

/// The maps and the program, loaded; a frame for an empty socket slot is dropped (not
/// passed) so a test tells "steered" from "left to the kernel".
struct Loaded {
    _xsk: XskMap,
    _local: AddressMap,
    routes: RouteMap,
    counters: PassCounters,
    program: XdpProgram,
}

fn load(empty_slot: u32) -> Loaded {
    let xsk = XskMap::new(4).expect("XSKMAP (needs CAP_BPF)");
    let local = AddressMap::new().expect("hash map");
    for ip in ["10.77.0.1", "fd77::1"] {
        local.insert(ip.parse().expect("ip")).expect("insert");
    }
    let routes = RouteMap::new().expect("LPM trie");
    for net in ["10.77.0.0/16", "fd77::/64", "192.168.50.7/32"] {
        routes.insert(net.parse().expect("net")).expect("insert");
    }
    let counters = PassCounters::new().expect("per-CPU array");
    let maps = LanMaps {
        xsk: xsk.fd(),
        local: local.fd(),
        routes: routes.fd(),
        counters: counters.fd(),
    };
    let program = XdpProgram::load("xgate_lan_test", &lan_steering(LAN, maps, empty_slot))
        .unwrap_or_else(|e| panic!("{e}"));
    Loaded {
        _xsk: xsk,
        _local: local,
        routes,
        counters,
        program,
    }
}

/// An Ethernet frame to `mac` of type `ethertype` around `payload`.
fn ethernet(mac: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = mac.to_vec();
    f.extend_from_slice(&[2, 0, 0, 0, 0, 0x20]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet to `dst` of `len` bytes with the header fields a test varies.
fn ipv4(dst: Ipv4Addr, ttl: u8, fragment: u16, options: bool, len: usize) -> Vec<u8> {
    let ihl = if options { 6 } else { 5 };
    let mut p = vec![0u8; len.max(ihl * 4 + 8)];
    p[0] = 0x40 | ihl as u8;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[6..8].copy_from_slice(&fragment.to_be_bytes());
    p[8] = ttl;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 202, 0, 2]);
    p[16..20].copy_from_slice(&dst.octets());
    p
}

/// An IPv6 packet to `dst` carrying `next` (ICMPv6 type `icmp_type` when 58).
fn ipv6(dst: Ipv6Addr, hop_limit: u8, next: u8, icmp_type: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 24];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&24u16.to_be_bytes());
    p[6] = next;
    p[7] = hop_limit;
    p[8..24].copy_from_slice(&"fd02::2".parse::<Ipv6Addr>().expect("ip").octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = icmp_type;
    p
}

fn v4(dst: &str) -> Vec<u8> {
    ethernet(
        OUR_MAC,
        0x0800,
        &ipv4(dst.parse().expect("ip"), 64, 0, false, 60),
    )
}

fn verdict(l: &Loaded, frame: &[u8]) -> u32 {
    l.program.test_run(frame).expect("test run")
}

#[test]
fn verifier_accepts_the_service_program() {
    load(XDP_PASS);
}

#[test]
fn packets_for_the_vpns_prefixes_are_steered_and_the_rest_left_to_the_kernel() {
    let l = load(XDP_DROP);
    let to_v6 = |dst: &str, next: u8, kind: u8| {
        ethernet(
            OUR_MAC,
            0x86dd,
            &ipv6(dst.parse().expect("ip"), 64, next, kind),
        )
    };
    let steered = [
        ("a pool address", v4("10.77.3.4")),
        ("a peer's allowed IP outside the pools", v4("192.168.50.7")),
        ("an IPv6 pool address", to_v6("fd77::42", 17, 0)),
        (
            "ICMPv6 that is not neighbour discovery",
            to_v6("fd77::42", 58, 128),
        ),
    ];
    for (what, frame) in steered {
        assert_eq!(verdict(&l, &frame), XDP_DROP, "{what} is steered");
    }
    let mut other_mac = v4("10.77.3.4");
    other_mac[5] ^= 1;
    let arp = ethernet(OUR_MAC, 0x0806, &[0u8; 28]);
    let mut vlan = ethernet(OUR_MAC, 0x8100, &[0, 5, 0x08, 0]);
    vlan.extend_from_slice(&ipv4("10.77.3.4".parse().expect("ip"), 64, 0, false, 60));
    let passed = [
        ("the host's own address inside a pool", v4("10.77.0.1")),
        ("the host's own IPv6 address", to_v6("fd77::1", 17, 0)),
        ("a destination the VPN does not serve", v4("192.168.50.8")),
        ("another link address", other_mac),
        ("ARP", arp),
        ("a VLAN-tagged frame", vlan),
        ("IPv6 multicast", to_v6("ff02::1:ff00:42", 58, 135)),
        (
            "a neighbour solicitation to a pool address",
            to_v6("fd77::42", 58, 135),
        ),
        // PROG_TEST_RUN takes nothing shorter than an Ethernet header.
        (
            "a truncated IPv4 header",
            ethernet(OUR_MAC, 0x0800, &[0x45; 12]),
        ),
        (
            "a truncated IPv6 header",
            ethernet(OUR_MAC, 0x86dd, &[0x60; 38]),
        ),
    ];
    for (what, frame) in passed {
        assert_eq!(verdict(&l, &frame), XDP_PASS, "{what} goes to the kernel");
    }
    assert_eq!(
        l.counters.read().expect("counters"),
        [0; 4],
        "none of these is counted"
    );
}

#[test]
fn what_only_the_kernel_handles_goes_there_counted_by_reason() {
    let l = load(XDP_DROP);
    let pool: Ipv4Addr = "10.77.3.4".parse().expect("ip");
    let cases = [
        (LanPass::Fragment, ipv4(pool, 64, 0x2000, false, 60)),
        (LanPass::Fragment, ipv4(pool, 64, 0x0010, false, 60)),
        (LanPass::Options, ipv4(pool, 64, 0, true, 60)),
        (LanPass::Ttl, ipv4(pool, 1, 0, false, 60)),
        (LanPass::TooLong, ipv4(pool, 64, 0, false, 1800)),
    ];
    for (reason, packet) in &cases {
        let frame = ethernet(OUR_MAC, 0x0800, packet);
        assert_eq!(verdict(&l, &frame), XDP_PASS, "{reason:?}");
    }
    let hop_limit_1 = ipv6("fd77::42".parse().expect("ip"), 1, 17, 0);
    assert_eq!(
        verdict(&l, &ethernet(OUR_MAC, 0x86dd, &hop_limit_1)),
        XDP_PASS
    );
    // Not for the VPN: neither steered nor counted, however odd.
    let elsewhere = ipv4("192.168.9.9".parse().expect("ip"), 1, 0x2000, true, 60);
    assert_eq!(
        verdict(&l, &ethernet(OUR_MAC, 0x0800, &elsewhere)),
        XDP_PASS
    );
    // A frame just within the limit is still taken.
    let longest = ipv4(pool, 64, 0, false, usize::from(MAX_FRAME) - 14);
    assert_eq!(verdict(&l, &ethernet(OUR_MAC, 0x0800, &longest)), XDP_DROP);
    let counts = l.counters.read().expect("counters");
    let by = |r: LanPass| counts[r.slot() as usize];
    assert_eq!(
        [
            LanPass::Fragment,
            LanPass::Options,
            LanPass::Ttl,
            LanPass::TooLong
        ]
        .map(by),
        [2, 1, 2, 1],
        "{counts:?}"
    );
}

#[test]
fn the_route_map_matches_the_longest_prefix_and_forgets_what_is_removed() {
    let l = load(XDP_DROP);
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert!(l.routes.covers(ip("10.77.200.1")) && l.routes.covers(ip("fd77::9")));
    assert!(!l.routes.covers(ip("10.78.0.1")) && !l.routes.covers(ip("fd78::9")));
    l.routes
        .remove("192.168.50.7/32".parse().expect("net"))
        .expect("removed");
    assert!(!l.routes.covers(ip("192.168.50.7")));
    assert_eq!(
        verdict(&l, &v4("192.168.50.7")),
        XDP_PASS,
        "no longer steered"
    );
    // Removing a prefix that is not there is an error the caller sees.
    assert!(l
        .routes
        .remove("10.77.0.0/24".parse().expect("net"))
        .is_err());
    assert!(l.routes.covers(ip("10.77.0.9")), "the /16 stays");
}
