//! The XDP steering program, assembled here rather than compiled: it is about seventy eBPF
//! instructions, so a small assembler with labels keeps the build free of clang and an eBPF
//! toolchain, and the bytes are the same on every machine. The kernel's verifier checks it at
//! load (and in the tests); `PROG_TEST_RUN` checks what it does with hand-built frames.
//!
//! What it does: a UDP datagram to the listen port (or ESP in UDP to the NAT-T port, not IKE
//! behind its zero marker, or raw ESP: IP protocol 50) at one of the host's own addresses, in
//! an Ethernet frame with up to two VLAN tags and an IPv4 header without options that is not
//! a fragment, or an IPv6 header whose next header is UDP (or ESP), is redirected to the
//! AF_XDP socket of the queue it arrived on. Everything else (ARP, NDP, ICMP, TCP, other
//! ports, traffic the host forwards, IPv4 options, fragments, IPv6 extension headers) goes on
//! to the kernel unchanged; what xgate wants of it still reaches it there (its UDP sockets,
//! and for raw ESP the raw socket `raw_esp_reader` reads).

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// Destination register in the low nibble, source in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// `XDP_ABORTED`: the program failed (the frame is dropped and traced).
pub const XDP_ABORTED: u32 = 0;
/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`: on to the kernel's network stack.
pub const XDP_PASS: u32 = 2;
/// `XDP_REDIRECT`: to the map's target (here an AF_XDP socket).
pub const XDP_REDIRECT: u32 = 4;

// Opcode parts (linux/bpf.h, linux/bpf_common.h).
pub(super) const LDX_MEM: u8 = 0x01 | 0x60; // class LDX, mode MEM
pub(super) const ST_MEM: u8 = 0x02 | 0x60; // class ST, mode MEM (store an immediate)
pub(super) const STX_MEM: u8 = 0x03 | 0x60; // class STX, mode MEM (store a register)
pub(super) const SIZE_DW: u8 = 0x18;
pub(super) const SIZE_W: u8 = 0x00;
pub(super) const SIZE_H: u8 = 0x08;
pub(super) const SIZE_B: u8 = 0x10;
pub(super) const ALU64: u8 = 0x07;
pub(super) const JMP: u8 = 0x05;
pub(super) const SRC_X: u8 = 0x08;
pub(super) const OP_ADD: u8 = 0x00;
pub(super) const OP_AND: u8 = 0x50;
pub(super) const OP_MOV: u8 = 0xb0;
pub(super) const JA: u8 = 0x00;
pub(super) const JEQ: u8 = 0x10;
pub(super) const JGT: u8 = 0x20;
pub(super) const JNE: u8 = 0x50;
pub(super) const CALL: u8 = 0x80;
pub(super) const EXIT: u8 = 0x90;
/// `BPF_LD | BPF_IMM | BPF_DW`: a 64-bit immediate over two slots.
const LD_IMM64: u8 = 0x18;
/// `BPF_PSEUDO_MAP_FD`: the immediate of an `LD_IMM64` is a map's descriptor.
const PSEUDO_MAP_FD: u8 = 1;
/// `bpf_redirect_map(map, key, flags)`: the low bits of `flags` are the verdict when the
/// map's slot is empty.
pub(super) const HELPER_REDIRECT_MAP: i32 = 51;
/// `bpf_map_lookup_elem(map, key)`: a pointer to the value, or null.
pub(super) const HELPER_MAP_LOOKUP: i32 = 1;
/// The frame pointer (read-only); the stack lies below it.
pub(super) const R10: u8 = 10;
/// Where the address key is built on the stack (16 bytes below the frame pointer).
pub(super) const KEY_AT: i16 = -16;

/// `struct xdp_md` field offsets.
pub(super) const MD_DATA: i16 = 0;
pub(super) const MD_DATA_END: i16 = 4;
pub(super) const MD_RX_QUEUE: i16 = 16;

pub(super) const R0: u8 = 0;
pub(super) const R1: u8 = 1;
pub(super) const R2: u8 = 2;
pub(super) const R3: u8 = 3;
pub(super) const R4: u8 = 4;
pub(super) const R5: u8 = 5;
pub(super) const R6: u8 = 6;
pub(super) const R7: u8 = 7;
pub(super) const R8: u8 = 8;

/// A place in the program jumps can name before it is bound.
#[derive(Debug, Clone, Copy)]
pub(super) struct Label(usize);

/// Collects instructions; jumps to labels are resolved by `finish`.
#[derive(Default)]
pub(super) struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub(super) fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        });
    }

    pub(super) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    pub(super) fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    pub(super) fn load(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.emit(LDX_MEM | size, dst, src, off, 0);
    }

    pub(super) fn mov_reg(&mut self, dst: u8, src: u8) {
        self.emit(ALU64 | OP_MOV | SRC_X, dst, src, 0, 0);
    }

    pub(super) fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.emit(ALU64 | OP_MOV, dst, 0, 0, imm);
    }

    pub(super) fn add_imm(&mut self, dst: u8, imm: i32) {
        self.emit(ALU64 | OP_ADD, dst, 0, 0, imm);
    }

    pub(super) fn and_imm(&mut self, dst: u8, imm: i32) {
        self.emit(ALU64 | OP_AND, dst, 0, 0, imm);
    }

    pub(super) fn jump_imm(&mut self, op: u8, dst: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.emit(JMP | op, dst, 0, 0, imm);
    }

    pub(super) fn jump_reg(&mut self, op: u8, dst: u8, src: u8, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.emit(JMP | op | SRC_X, dst, src, 0, 0);
    }

    pub(super) fn store_imm(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
        self.emit(ST_MEM | size, dst, 0, off, imm);
    }

    pub(super) fn store(&mut self, size: u8, dst: u8, off: i16, src: u8) {
        self.emit(STX_MEM | size, dst, src, off, 0);
    }

    pub(super) fn ld_map(&mut self, dst: u8, map_fd: i32) {
        self.emit(LD_IMM64, dst, PSEUDO_MAP_FD, 0, map_fd);
        self.emit(0, 0, 0, 0, 0);
    }

    /// `R0 = bpf_map_lookup_elem(map, R10 + key_at)`: a pointer to the value, or null.
    pub(super) fn map_lookup(&mut self, map_fd: i32, key_at: i16) {
        self.ld_map(R1, map_fd);
        self.mov_reg(R2, R10);
        self.add_imm(R2, i32::from(key_at));
        self.emit(JMP | CALL, 0, 0, 0, HELPER_MAP_LOOKUP);
    }

    /// Jumps to `pass` unless `len` bytes from packet pointer `R2` lie before `data_end` (`R3`).
    pub(super) fn need(&mut self, len: i32, pass: Label) {
        self.mov_reg(R4, R2);
        self.add_imm(R4, len);
        self.jump_reg(JGT, R4, R3, pass);
    }

    pub(super) fn finish(mut self) -> Vec<Insn> {
        for (at, label) in self.fixups {
            let target = self.labels[label.0].expect("every label is bound");
            self.insns[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.insns
    }
}

/// A 16-bit field as the program loads it from the wire (big-endian bytes, host-order load).
pub(super) fn wire16(value: u16) -> i32 {
    i32::from(u16::from_ne_bytes(value.to_be_bytes()))
}

/// A 32-bit value stored so that its bytes lie in memory big-endian, as on the wire.
pub(super) fn wire32(value: u32) -> i32 {
    i32::from_ne_bytes(value.to_be_bytes())
}

pub(super) const ETH_HEADER: i32 = 14;
pub(super) const ETHERTYPE_AT: i16 = 12;
const VLAN_TAG: i32 = 4;
pub(super) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(super) const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPPROTO_UDP: i32 = 17;
const IPPROTO_ESP: i32 = 50;
/// IPv4 version 4 with a 20-byte header (no options).
pub(super) const IPV4_PLAIN: i32 = 0x45;
/// IPv4 "more fragments" flag and fragment offset.
pub(super) const IPV4_FRAGMENT_BITS: u16 = 0x3fff;

/// What the steering program takes to the AF_XDP sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Steered {
    /// The WireGuard listen port.
    pub port: u16,
    /// The NAT-T port whose ESP is taken (datagrams whose first four bytes are not the
    /// non-ESP marker, so IKE still reaches the kernel's socket); 0: none.
    pub nat_port: u16,
    /// Raw ESP (IP protocol 50) too.
    pub raw_esp: bool,
}

/// The steering program for what `steered` names: frames for it, to an address in
/// `local_map` (a hash map keyed by 16-byte IPv6 addresses, IPv4 ones mapped as
/// ::ffff:a.b.c.d), go to the socket in `xsk_map`'s slot for their receive queue;
/// `empty_slot` is the verdict when that slot has no socket (`XDP_PASS` in service, so a
/// queue without a socket still reaches the kernel).
pub fn steering(steered: Steered, xsk_map: i32, local_map: i32, empty_slot: u32) -> Vec<Insn> {
    let Steered {
        port,
        nat_port,
        raw_esp,
    } = steered;
    let mut asm = Asm::default();
    let pass = asm.label();
    let ipv4 = asm.label();
    let ipv6 = asm.label();
    let lookup = asm.label();
    let ipv4_take = asm.label();
    let ipv6_take = asm.label();

    asm.mov_reg(R6, R1);
    asm.load(SIZE_W, R2, R1, MD_DATA);
    asm.load(SIZE_W, R3, R1, MD_DATA_END);
    asm.need(ETH_HEADER, pass);
    asm.load(SIZE_H, R5, R2, ETHERTYPE_AT);
    // Up to two VLAN tags (802.1Q, or 802.1ad outside 802.1Q): step over each one.
    for _ in 0..2 {
        let tagged = asm.label();
        let untagged = asm.label();
        asm.jump_imm(JEQ, R5, wire16(ETHERTYPE_VLAN), tagged);
        asm.jump_imm(JNE, R5, wire16(ETHERTYPE_QINQ), untagged);
        asm.bind(tagged);
        asm.add_imm(R2, VLAN_TAG);
        asm.need(ETH_HEADER, pass);
        asm.load(SIZE_H, R5, R2, ETHERTYPE_AT);
        asm.bind(untagged);
    }
    asm.add_imm(R2, ETH_HEADER);
    asm.jump_imm(JEQ, R5, wire16(ETHERTYPE_IPV4), ipv4);
    asm.jump_imm(JEQ, R5, wire16(ETHERTYPE_IPV6), ipv6);
    asm.jump_imm(JA, R0, 0, pass);

    // Eight bytes past the IP header: a UDP header, or ESP's SPI and sequence number.
    asm.bind(ipv4);
    asm.need(20 + 8, pass);
    asm.load(SIZE_B, R5, R2, 0);
    asm.jump_imm(JNE, R5, IPV4_PLAIN, pass);
    asm.load(SIZE_H, R5, R2, 6);
    asm.and_imm(R5, wire16(IPV4_FRAGMENT_BITS));
    asm.jump_imm(JNE, R5, 0, pass);
    asm.load(SIZE_B, R5, R2, 9);
    if raw_esp {
        asm.jump_imm(JEQ, R5, IPPROTO_ESP, ipv4_take);
    }
    asm.jump_imm(JNE, R5, IPPROTO_UDP, pass);
    asm.load(SIZE_H, R5, R2, 20 + 2);
    asm.jump_imm(JEQ, R5, wire16(port), ipv4_take);
    esp_only(&mut asm, nat_port, 20, pass);
    asm.bind(ipv4_take);
    // Key: ::ffff:<destination>.
    asm.store_imm(SIZE_DW, R10, KEY_AT, 0);
    asm.store_imm(SIZE_W, R10, KEY_AT + 8, wire32(0x0000_ffff));
    asm.load(SIZE_W, R5, R2, 16);
    asm.store(SIZE_W, R10, KEY_AT + 12, R5);
    asm.jump_imm(JA, R0, 0, lookup);

    asm.bind(ipv6);
    asm.need(40 + 8, pass);
    asm.load(SIZE_B, R5, R2, 6);
    if raw_esp {
        asm.jump_imm(JEQ, R5, IPPROTO_ESP, ipv6_take);
    }
    asm.jump_imm(JNE, R5, IPPROTO_UDP, pass);
    asm.load(SIZE_H, R5, R2, 40 + 2);
    asm.jump_imm(JEQ, R5, wire16(port), ipv6_take);
    esp_only(&mut asm, nat_port, 40, pass);
    asm.bind(ipv6_take);
    // Key: the destination address, copied to the stack.
    for word in 0..4 {
        asm.load(SIZE_W, R5, R2, 24 + 4 * word);
        asm.store(SIZE_W, R10, KEY_AT + 4 * word, R5);
    }

    // Only datagrams to the host's own addresses: what it forwards stays with the kernel.
    asm.bind(lookup);
    asm.map_lookup(local_map, KEY_AT);
    asm.jump_imm(JEQ, R0, 0, pass);
    asm.ld_map(R1, xsk_map);
    asm.load(SIZE_W, R2, R6, MD_RX_QUEUE);
    asm.mov_imm(R3, empty_slot as i32);
    asm.emit(JMP | CALL, 0, 0, 0, HELPER_REDIRECT_MAP);
    asm.emit(JMP | EXIT, 0, 0, 0, 0);

    asm.bind(pass);
    asm.mov_imm(R0, XDP_PASS as i32);
    asm.emit(JMP | EXIT, 0, 0, 0, 0);
    asm.finish()
}

/// With the destination port in R5 and the IP header (`ip_len` bytes) at R2: falls through
/// for ESP on `nat_port`, jumps to `pass` for anything else (another port, IKE behind its
/// zero marker, a datagram too short to tell).
fn esp_only(asm: &mut Asm, nat_port: u16, ip_len: i32, pass: Label) {
    if nat_port == 0 {
        asm.jump_imm(JA, R0, 0, pass);
        return;
    }
    asm.jump_imm(JNE, R5, wire16(nat_port), pass);
    asm.need(ip_len + 8 + 4, pass);
    asm.load(SIZE_W, R5, R2, (ip_len + 8) as i16);
    asm.jump_imm(JEQ, R5, 0, pass);
}
