//! TCP MSS clamping: a SYN crossing the tunnel has its maximum segment size lowered to what
//! fits the tunnel MTU, so neither end sends segments the tunnel would have to refuse.

use super::checksum;

const TCP: u8 = 6;
const SYN: u8 = 0x02;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// The largest MSS for an inner packet of IP `version` in a tunnel of `mtu` bytes: the MTU
/// less the IP header (20 or 40 bytes) and the TCP header (20 bytes).
pub fn mss_limit(version: u8, mtu: usize) -> u16 {
    let overhead = if version == 6 { 60 } else { 40 };
    mtu.saturating_sub(overhead).min(usize::from(u16::MAX)) as u16
}

/// The TCP segment of an unfragmented IPv4 or IPv6 packet, if it carries one.
fn tcp_segment(packet: &mut [u8]) -> Option<&mut [u8]> {
    let offset = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
            if *packet.get(9)? != TCP || frag != 0 || ihl < 20 {
                return None;
            }
            ihl
        }
        // Extension headers are rare on SYNs; those packets pass unclamped.
        6 if *packet.get(6)? == TCP => 40,
        _ => return None,
    };
    packet.get_mut(offset..)
}

/// Lowers the MSS option of a TCP SYN in `packet` to `mss_limit(version, mtu)`; true if it
/// changed. Anything else (not TCP, not a SYN, no MSS option, malformed) is left alone.
pub fn clamp_mss(packet: &mut [u8], mtu: usize) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    let limit = mss_limit(first >> 4, mtu);
    let Some(tcp) = tcp_segment(packet) else {
        return false;
    };
    if tcp.len() < 20 || tcp[13] & SYN == 0 {
        return false;
    }
    let header_len = usize::from(tcp[12] >> 4) * 4;
    if header_len < 20 || header_len > tcp.len() {
        return false;
    }
    let mut at = 20;
    while at < header_len {
        match tcp[at] {
            OPT_END => return false,
            OPT_NOP => at += 1,
            kind => {
                let Some(&len) = tcp.get(at + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || at + len > header_len {
                    return false;
                }
                if kind == OPT_MSS && len == 4 {
                    let old = u16::from_be_bytes([tcp[at + 2], tcp[at + 3]]);
                    if old <= limit {
                        return false;
                    }
                    tcp[at + 2..at + 4].copy_from_slice(&limit.to_be_bytes());
                    let check = u16::from_be_bytes([tcp[16], tcp[17]]);
                    let check = checksum::update(check, old, limit);
                    tcp[16..18].copy_from_slice(&check.to_be_bytes());
                    return true;
                }
                at += len;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use testbed::packet::{mss_and_checksum_ok, syn};

    #[test]
    fn clamps_ipv4_and_ipv6_syns_and_keeps_checksums_valid() {
        for (version, limit) in [(4u8, 1380u16), (6, 1360)] {
            let mut p = syn(version, 1460);
            assert!(mss_and_checksum_ok(&p).1, "test packet is well formed");
            assert!(clamp_mss(&mut p, 1420));
            assert_eq!(mss_and_checksum_ok(&p), (limit, true), "IPv{version}");
            // A second pass (or a smaller MSS already) changes nothing.
            assert!(!clamp_mss(&mut p, 1420));
            let mut small = syn(version, 536);
            assert!(!clamp_mss(&mut small, 1420));
            assert_eq!(mss_and_checksum_ok(&small), (536, true));
        }
    }

    #[test]
    fn leaves_non_syns_and_malformed_options_alone() {
        let mut ack = syn(4, 1460);
        ack[33] = 0x10;
        assert!(!clamp_mss(&mut ack, 1420));
        let mut bad = syn(4, 1460);
        bad[41] = 40; // MSS option claims to run past the header
        assert!(!clamp_mss(&mut bad, 1420));
        for n in 0..48 {
            let mut cut = syn(4, 1460)[..n].to_vec();
            let _ = clamp_mss(&mut cut, 1420);
        }
    }
}
