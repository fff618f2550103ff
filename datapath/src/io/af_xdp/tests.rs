//! The steering program against the kernel: its verifier, and its verdicts on hand-built frames.

use super::bpf::{AddressMap, XdpProgram, XskMap};
use super::frame::{write_headers, Path, MAX_HEADERS};
use super::program::{steering, Steered, XDP_DROP, XDP_PASS};

const PORT: u16 = 51820;
const NAT_PORT: u16 = 4500;
/// Everything steered: the listen port, ESP on the NAT-T port and raw ESP.
const ALL: Steered = Steered {
    port: PORT,
    nat_port: NAT_PORT,
    raw_esp: true,
};

/// A frame carrying a UDP datagram from `from` to `to`.
fn udp_frame(from: &str, to: &str) -> Vec<u8> {
    frame(from, to, false)
}

/// A frame carrying a 32-byte UDP datagram, or (`raw_esp`) ESP packet, from `from` to `to`.
fn frame(from: &str, to: &str, raw_esp: bool) -> Vec<u8> {
    let path = Path {
        from: from.parse().expect("address"),
        to: to.parse().expect("address"),
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        raw_esp,
    };
    let mut buf = vec![0u8; MAX_HEADERS + 32];
    let end = buf.len();
    let range = write_headers(&mut buf, MAX_HEADERS..end, &path);
    buf[range].to_vec()
}

/// The host's addresses in these tests.
fn local_addresses() -> AddressMap {
    let local = AddressMap::new().expect("hash map (needs CAP_BPF)");
    for ip in ["10.0.0.1", "fd00::1"] {
        local.insert(ip.parse().expect("ip")).expect("insert");
    }
    local
}

/// The program as loaded in service, except that a frame for an empty socket slot is dropped
/// instead of passed: so a test can tell "steered" from "left to the kernel".
fn load_marking() -> (XskMap, AddressMap, XdpProgram) {
    load_marking_of(ALL)
}

fn load_marking_of(steered: Steered) -> (XskMap, AddressMap, XdpProgram) {
    let map = XskMap::new(4).expect("XSKMAP (needs CAP_BPF)");
    let local = local_addresses();
    let program = XdpProgram::load(
        "xgate_test",
        &steering(steered, map.fd(), local.fd(), XDP_DROP),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (map, local, program)
}

#[test]
fn verifier_accepts_the_service_program() {
    let map = XskMap::new(2).expect("XSKMAP (needs CAP_BPF)");
    let local = local_addresses();
    XdpProgram::load(
        "xgate_steer",
        &steering(ALL, map.fd(), local.fd(), XDP_PASS),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn datagrams_for_the_port_are_steered_over_ipv4_and_ipv6() {
    let (_map, _local, program) = load_marking();
    for (from, to) in [
        ("10.0.0.2:40000", "10.0.0.1:51820"),
        ("[fd00::2]:40000", "[fd00::1]:51820"),
    ] {
        let frame = udp_frame(from, to);
        assert_eq!(
            program.test_run(&frame).expect("test run"),
            XDP_DROP,
            "{to}"
        );
        // Behind one and two VLAN tags too.
        let mut tagged = frame[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0, 5]);
        tagged.extend_from_slice(&frame[12..]);
        assert_eq!(program.test_run(&tagged).expect("test run"), XDP_DROP);
        let mut qinq = frame[..12].to_vec();
        qinq.extend_from_slice(&[0x88, 0xa8, 0, 7, 0x81, 0x00, 0, 5]);
        qinq.extend_from_slice(&frame[12..]);
        assert_eq!(program.test_run(&qinq).expect("test run"), XDP_DROP);
    }
}

#[test]
fn everything_else_goes_to_the_kernel() {
    let (_map, _local, program) = load_marking();
    let ours = udp_frame("10.0.0.2:40000", "10.0.0.1:51820");
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("other port", udp_frame("10.0.0.2:40000", "10.0.0.1:53")),
        ("v6 other port", udp_frame("[fd00::2]:1", "[fd00::1]:51821")),
        (
            "source port ours",
            udp_frame("10.0.0.1:51820", "10.0.0.2:40000"),
        ),
        ("forwarded v4", udp_frame("10.0.0.2:1", "10.0.0.9:51820")),
        ("forwarded v6", udp_frame("[fd00::2]:1", "[fd00::9]:51820")),
        (
            "v4 as v6",
            udp_frame("[fd00::2]:1", "[::ffff:10.0.0.9]:51820"),
        ),
    ];
    let mut arp = ours.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    cases.push(("arp", arp));
    let mut tcp = ours.clone();
    tcp[14 + 9] = 6;
    cases.push(("tcp", tcp));
    let mut fragment = ours.clone();
    fragment[14 + 6] |= 0x20;
    cases.push(("first fragment", fragment));
    let mut later_fragment = ours.clone();
    later_fragment[14 + 7] = 0x10;
    cases.push(("later fragment", later_fragment));
    let mut options = ours.clone();
    options[14] = 0x46;
    cases.push(("ipv4 options", options));
    let mut v6_ext = udp_frame("[fd00::2]:40000", "[fd00::1]:51820");
    v6_ext[14 + 6] = 0; // hop-by-hop options header first
    cases.push(("ipv6 extension header", v6_ext));
    let mut icmp6 = udp_frame("[fd00::2]:40000", "[fd00::1]:51820");
    icmp6[14 + 6] = 58;
    cases.push(("icmpv6 / ndp", icmp6));
    // Cut inside the IP or UDP header (the kernel's test runner needs 14 bytes at least).
    for cut in [14, 20, 14 + 27] {
        cases.push(("truncated v4", ours[..cut].to_vec()));
    }
    let ours_v6 = udp_frame("[fd00::2]:40000", "[fd00::1]:51820");
    cases.push(("truncated v6", ours_v6[..14 + 47].to_vec()));
    for (what, frame) in cases {
        assert_eq!(
            program.test_run(&frame).expect("test run"),
            XDP_PASS,
            "{what}"
        );
    }
}

#[test]
fn esp_on_the_nat_t_port_is_steered_and_ike_there_is_left_to_the_kernel() {
    let (_map, _local, program) = load_marking();
    for (from, to) in [
        ("10.0.0.2:4500", "10.0.0.1:4500"),
        ("[fd00::2]:4500", "[fd00::1]:4500"),
    ] {
        // udp_frame's 32-byte payload is zeros: the non-ESP marker, IKE.
        let ike = udp_frame(from, to);
        assert_eq!(
            program.test_run(&ike).expect("run"),
            XDP_PASS,
            "IKE to {to}"
        );
        let mut esp = ike.clone();
        let payload = esp.len() - 32;
        esp[payload..payload + 4].copy_from_slice(&0x0100_0001u32.to_be_bytes());
        assert_eq!(
            program.test_run(&esp).expect("run"),
            XDP_DROP,
            "ESP to {to}"
        );
        // Too short to tell: the kernel's socket has it (a NAT keepalive, say).
        let short = esp[..payload + 2].to_vec();
        assert_eq!(
            program.test_run(&short).expect("run"),
            XDP_PASS,
            "short to {to}"
        );
    }
    let other = udp_frame("10.0.0.2:4500", "10.0.0.1:4501");
    assert_eq!(program.test_run(&other).expect("run"), XDP_PASS);
}

#[test]
fn raw_esp_is_steered_only_when_asked_and_only_whole_and_ours() {
    let (_map, _local, program) = load_marking();
    let off = Steered {
        raw_esp: false,
        ..ALL
    };
    let (_map2, _local2, without) = load_marking_of(off);
    for (from, to) in [("10.0.0.2:0", "10.0.0.1:0"), ("[fd00::2]:0", "[fd00::1]:0")] {
        let esp = frame(from, to, true);
        assert_eq!(program.test_run(&esp).expect("run"), XDP_DROP, "{to}");
        assert_eq!(without.test_run(&esp).expect("run"), XDP_PASS, "{to}");
        // Not ours (forwarded), or too short for an SPI and a sequence number.
        let forwarded = frame(
            from,
            &to.replace(".1:", ".9:").replace("::1]", "::9]"),
            true,
        );
        assert_eq!(program.test_run(&forwarded).expect("run"), XDP_PASS);
        let ip = if to.starts_with('[') { 40 } else { 20 };
        let short = esp[..14 + ip + 7].to_vec();
        assert_eq!(program.test_run(&short).expect("run"), XDP_PASS);
    }
    let mut fragment = frame("10.0.0.2:0", "10.0.0.1:0", true);
    fragment[14 + 6] |= 0x20;
    assert_eq!(program.test_run(&fragment).expect("run"), XDP_PASS);
    // IPv6 with a fragment header (44) first: the kernel's, which puts it back together.
    let mut v6_fragment = frame("[fd00::2]:0", "[fd00::1]:0", true);
    v6_fragment[14 + 6] = 44;
    assert_eq!(program.test_run(&v6_fragment).expect("run"), XDP_PASS);
}
