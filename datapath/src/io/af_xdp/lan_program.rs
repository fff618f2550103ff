//! The XDP program on a LAN interface (`inner = "af-xdp"`): a frame addressed to our link
//! address whose IP destination lies in a prefix the VPN serves (a pool, or a peer's allowed
//! IPs: `RouteMap`) and is not one of the host's own addresses goes to the AF_XDP socket of
//! its receive queue, so the worker seals it for the peer without the kernel's stack.
//! Everything else goes on to the kernel: ARP, neighbour discovery, multicast, the host's own
//! traffic, destinations the VPN does not serve, VLAN-tagged frames. Packets for the VPN's
//! prefixes that the kernel must handle (IPv4 fragments and options, TTL or hop limit 1, a
//! frame larger than an AF_XDP frame) go on too, counted by reason in `PassCounters`; the
//! kernel then forwards them into the TUN.

use super::lan_maps::LanPass;
use super::program::{
    wire16, wire32, Asm, Insn, Label, CALL, ETHERTYPE_AT, ETHERTYPE_IPV4, ETHERTYPE_IPV6,
    ETH_HEADER, EXIT, HELPER_REDIRECT_MAP, IPV4_FRAGMENT_BITS, IPV4_PLAIN, JA, JEQ, JGT, JMP, JNE,
    KEY_AT, MD_DATA, MD_DATA_END, MD_RX_QUEUE, R0, R1, R10, R2, R3, R4, R5, R6, R7, R8, SIZE_B,
    SIZE_DW, SIZE_H, SIZE_W, XDP_PASS,
};

/// Where the LPM key's prefix length lies: just below the 16 address bytes at `KEY_AT`.
const PREFIX_LEN_AT: i16 = KEY_AT - 4;
/// Where a counter's slot number is put for its lookup.
const SLOT_AT: i16 = KEY_AT - 8;
/// IPv6 next header: ICMPv6.
const IPPROTO_ICMPV6: i32 = 58;
/// ICMPv6 types of neighbour discovery: router solicitation to redirect (RFC 4861).
const ND_TYPES: std::ops::RangeInclusive<i32> = 133..=137;

/// What the LAN program needs to know of its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanSteered {
    /// The interface's link address: frames to another (bridged, promiscuous) go on.
    pub mac: [u8; 6],
    /// The longest frame an AF_XDP frame takes whole.
    pub max_frame: u16,
}

/// The maps the program uses, by descriptor.
#[derive(Debug, Clone, Copy)]
pub struct LanMaps {
    /// The AF_XDP sockets by receive queue.
    pub xsk: i32,
    /// The host's own addresses (`AddressMap`).
    pub local: i32,
    /// The prefixes the VPN serves (`RouteMap`).
    pub routes: i32,
    /// Where it counts what it left to the kernel (`PassCounters`).
    pub counters: i32,
}

/// The LAN steering program; `empty_slot` is the verdict when the queue's socket slot is
/// empty (`XDP_PASS` in service).
pub fn lan_steering(lan: LanSteered, maps: LanMaps, empty_slot: u32) -> Vec<Insn> {
    let mut asm = Asm::default();
    let pass = asm.label();
    let ipv4 = asm.label();
    let ipv6 = asm.label();
    let lookup = asm.label();
    let counted: Vec<(LanPass, Label)> = LanPass::ALL.iter().map(|r| (*r, asm.label())).collect();
    let count = |reason: LanPass| {
        counted
            .iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, l)| *l)
            .unwrap_or(pass)
    };

    // R6: the context; R7: the IP header; R8: whether the frame is too long (all three kept
    // over helper calls).
    asm.mov_reg(R6, R1);
    asm.load(SIZE_W, R2, R1, MD_DATA);
    asm.load(SIZE_W, R3, R1, MD_DATA_END);
    asm.need(ETH_HEADER, pass);
    // Three 16-bit compares: a 64-bit jump's immediate is sign-extended, so a 32-bit word
    // with its top bit set would never compare equal to the zero-extended load.
    for (i, pair) in lan.mac.chunks_exact(2).enumerate() {
        asm.load(SIZE_H, R5, R2, 2 * i as i16);
        asm.jump_imm(
            JNE,
            R5,
            wire16(u16::from_be_bytes([pair[0], pair[1]])),
            pass,
        );
    }
    // Too long for an AF_XDP frame (R8 = 1): noted here, counted only once it proves ours.
    let fits = asm.label();
    asm.mov_imm(R8, 0);
    asm.mov_reg(R4, R2);
    asm.add_imm(R4, i32::from(lan.max_frame) + 1);
    asm.jump_reg(JGT, R4, R3, fits);
    asm.mov_imm(R8, 1);
    asm.bind(fits);
    asm.load(SIZE_H, R5, R2, ETHERTYPE_AT);
    asm.mov_reg(R7, R2);
    asm.add_imm(R7, ETH_HEADER);
    asm.jump_imm(JEQ, R5, wire16(ETHERTYPE_IPV4), ipv4);
    asm.jump_imm(JEQ, R5, wire16(ETHERTYPE_IPV6), ipv6);
    asm.jump_imm(JA, R0, 0, pass);

    asm.bind(ipv4);
    asm.mov_reg(R2, R7);
    asm.need(20, pass);
    asm.store_imm(SIZE_DW, R10, KEY_AT, 0);
    asm.store_imm(SIZE_W, R10, KEY_AT + 8, wire32(0x0000_ffff));
    asm.load(SIZE_W, R5, R7, 16);
    asm.store(SIZE_W, R10, KEY_AT + 12, R5);
    asm.mov_imm(R5, 4);
    asm.jump_imm(JA, R0, 0, lookup);

    asm.bind(ipv6);
    asm.mov_reg(R2, R7);
    asm.need(40 + 1, pass);
    // Multicast (neighbour solicitations among it) and neighbour discovery stay the kernel's.
    asm.load(SIZE_B, R5, R7, 24);
    asm.jump_imm(JEQ, R5, 0xff, pass);
    let not_icmp = asm.label();
    asm.load(SIZE_B, R5, R7, 6);
    asm.jump_imm(JNE, R5, IPPROTO_ICMPV6, not_icmp);
    asm.load(SIZE_B, R5, R7, 40);
    for kind in ND_TYPES {
        asm.jump_imm(JEQ, R5, kind, pass);
    }
    asm.bind(not_icmp);
    for word in 0..4 {
        asm.load(SIZE_W, R5, R7, 24 + 4 * word);
        asm.store(SIZE_W, R10, KEY_AT + 4 * word, R5);
    }
    asm.mov_imm(R5, 6);

    // The host's own addresses first, then the VPN's prefixes; R5 holds the IP version, kept
    // on the stack over the calls.
    asm.bind(lookup);
    asm.store(SIZE_W, R10, SLOT_AT, R5);
    asm.map_lookup(maps.local, KEY_AT);
    asm.jump_imm(JNE, R0, 0, pass);
    asm.store_imm(SIZE_W, R10, PREFIX_LEN_AT, 128);
    asm.map_lookup(maps.routes, PREFIX_LEN_AT);
    asm.jump_imm(JEQ, R0, 0, pass);

    // Ours: what only the kernel handles goes there, counted.
    asm.jump_imm(JEQ, R8, 1, count(LanPass::TooLong));
    let v6_checks = asm.label();
    let take = asm.label();
    asm.load(SIZE_W, R5, R10, SLOT_AT);
    asm.jump_imm(JEQ, R5, 6, v6_checks);
    // IPv4 (its 20 bytes were checked before the calls; R7 kept its range).
    asm.load(SIZE_B, R5, R7, 0);
    asm.jump_imm(JNE, R5, IPV4_PLAIN, count(LanPass::Options));
    asm.load(SIZE_H, R5, R7, 6);
    asm.and_imm(R5, wire16(IPV4_FRAGMENT_BITS));
    asm.jump_imm(JNE, R5, 0, count(LanPass::Fragment));
    asm.load(SIZE_B, R5, R7, 8);
    asm.jump_imm(JGT, R5, 1, take);
    asm.jump_imm(JA, R0, 0, count(LanPass::Ttl));
    asm.bind(v6_checks);
    asm.load(SIZE_B, R5, R7, 7);
    asm.jump_imm(JGT, R5, 1, take);
    asm.jump_imm(JA, R0, 0, count(LanPass::Ttl));

    asm.bind(take);
    asm.ld_map(R1, maps.xsk);
    asm.load(SIZE_W, R2, R6, MD_RX_QUEUE);
    asm.mov_imm(R3, empty_slot as i32);
    asm.emit(JMP | CALL, 0, 0, 0, HELPER_REDIRECT_MAP);
    asm.emit(JMP | EXIT, 0, 0, 0, 0);

    // Each reason: its per-CPU slot bumped, then on to the kernel.
    for (reason, label) in &counted {
        asm.bind(*label);
        asm.store_imm(SIZE_W, R10, SLOT_AT, reason.slot() as i32);
        asm.map_lookup(maps.counters, SLOT_AT);
        asm.jump_imm(JEQ, R0, 0, pass);
        asm.load(SIZE_DW, R4, R0, 0);
        asm.add_imm(R4, 1);
        asm.store(SIZE_DW, R0, 0, R4);
        asm.jump_imm(JA, R0, 0, pass);
    }

    asm.bind(pass);
    asm.mov_imm(R0, XDP_PASS as i32);
    asm.emit(JMP | EXIT, 0, 0, 0, 0);
    asm.finish()
}
