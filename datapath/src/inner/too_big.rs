//! ICMP "fragmentation needed" (IPv4) and ICMPv6 "packet too big" for inner packets larger
//! than the tunnel MTU, written back into the TUN so the sender's path MTU discovery learns the
//! tunnel's size instead of losing packets silently.

use super::checksum;

/// Longest error this module writes: IPv6's minimum MTU, as RFC 4443 asks.
pub const TOO_BIG_MAX_LEN: usize = 1280;
/// IPv4 errors quote at most this much (RFC 1812 allows up to 576 bytes in all).
const IPV4_MAX_LEN: usize = 576;

fn is_icmp_error(protocol: u8, packet: &[u8], offset: usize) -> bool {
    match (protocol, packet.get(offset)) {
        // ICMP: echo (0/8) and the like are queries; 3, 4, 5, 11 and 12 are errors.
        (1, Some(t)) => matches!(t, 3 | 4 | 5 | 11 | 12),
        // ICMPv6: types below 128 are errors.
        (58, Some(t)) => *t < 128,
        _ => false,
    }
}

/// Writes into `out` the ICMP error telling the sender of `packet` that the tunnel's MTU is
/// `mtu`, and returns its length. `None` when no error is due: an IPv4 packet without DF
/// (it may be fragmented instead), an ICMP error itself, or a malformed packet.
pub fn packet_too_big(packet: &[u8], mtu: usize, out: &mut [u8]) -> Option<usize> {
    match packet.first()? >> 4 {
        4 => ipv4(packet, mtu, out),
        6 => ipv6(packet, mtu, out),
        _ => None,
    }
}

fn ipv4(packet: &[u8], mtu: usize, out: &mut [u8]) -> Option<usize> {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let flags = *packet.get(6)?;
    if ihl < 20 || packet.len() < ihl || flags & 0x40 == 0 {
        return None;
    }
    if is_icmp_error(packet[9], packet, ihl) || packet[12] >= 224 || packet[12] == 0 {
        return None;
    }
    let quoted = packet.len().min(IPV4_MAX_LEN - 28);
    let total = 28 + quoted;
    let out = out.get_mut(..total)?;
    // Version 4, IHL 5, DSCP CS6 (network control), TTL 64, protocol ICMP.
    out[..12].copy_from_slice(&[0x45, 0xc0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0]);
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    // From the destination the sender tried to reach, back to the sender.
    out[12..16].copy_from_slice(&packet[16..20]);
    out[16..20].copy_from_slice(&packet[12..16]);
    let ip_check = checksum::of(&out[..20]);
    out[10..12].copy_from_slice(&ip_check.to_be_bytes());
    let icmp = &mut out[20..];
    icmp[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&(mtu.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    icmp[8..].copy_from_slice(&packet[..quoted]);
    let c = checksum::of(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

fn ipv6(packet: &[u8], mtu: usize, out: &mut [u8]) -> Option<usize> {
    if packet.len() < 40 || is_icmp_error(packet[6], packet, 40) {
        return None;
    }
    // Never answer a multicast or unspecified source.
    if packet[8] == 0xff || packet[8..24].iter().all(|b| *b == 0) {
        return None;
    }
    let quoted = packet.len().min(TOO_BIG_MAX_LEN - 48);
    let payload = 8 + quoted;
    let total = 40 + payload;
    let out = out.get_mut(..total)?;
    out[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, 58, 64]);
    out[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    out[8..24].copy_from_slice(&packet[24..40]);
    out[24..40].copy_from_slice(&packet[8..24]);
    let (header, icmp) = out.split_at_mut(40);
    icmp[..8].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    icmp[4..8].copy_from_slice(&(mtu as u32).to_be_bytes());
    icmp[8..].copy_from_slice(&packet[..quoted]);
    let pseudo = checksum::pseudo_header(&header[8..24], &header[24..40], 58, payload);
    let c = checksum::finish(checksum::sum(pseudo, icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_v4(len: usize, df: bool) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = if df { 0x40 } else { 0 };
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 77, 0, 1]);
        p[16..20].copy_from_slice(&[10, 77, 0, 2]);
        p
    }

    #[test]
    fn ipv4_fragmentation_needed_quotes_and_checksums() {
        let p = big_v4(1500, true);
        let mut out = [0u8; TOO_BIG_MAX_LEN];
        let n = packet_too_big(&p, 1420, &mut out).expect("due");
        assert_eq!(n, 576);
        let e = &out[..n];
        assert_eq!(checksum::of(&e[..20]), 0, "IP header checksum");
        assert_eq!(checksum::of(&e[20..]), 0, "ICMP checksum");
        assert_eq!((e[20], e[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([e[26], e[27]]), 1420);
        assert_eq!(&e[12..16], &[10, 77, 0, 2]);
        assert_eq!(&e[16..20], &[10, 77, 0, 1]);
        assert_eq!(&e[28..48], &p[..20]);
        assert_eq!(packet_too_big(&big_v4(1500, false), 1420, &mut out), None);
    }

    #[test]
    fn ipv6_packet_too_big_fits_the_minimum_mtu() {
        let mut p = vec![0u8; 1500];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&1460u16.to_be_bytes());
        p[6] = 17;
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
        let mut out = [0u8; TOO_BIG_MAX_LEN];
        let n = packet_too_big(&p, 1420, &mut out).expect("due");
        assert_eq!(n, 1280);
        let pseudo = checksum::pseudo_header(&out[8..24], &out[24..40], 58, n - 40);
        assert_eq!(checksum::finish(checksum::sum(pseudo, &out[40..n])), 0);
        assert_eq!(out[40], 2);
        assert_eq!(
            u32::from_be_bytes([out[44], out[45], out[46], out[47]]),
            1420
        );
        // An ICMPv6 error is never answered with another.
        p[6] = 58;
        p[40] = 1;
        assert_eq!(packet_too_big(&p, 1420, &mut out), None);
    }

    #[test]
    fn truncated_input_is_refused_not_a_panic() {
        let p = big_v4(1500, true);
        let mut out = [0u8; TOO_BIG_MAX_LEN];
        for n in 0..40 {
            let _ = packet_too_big(&p[..n], 1420, &mut out);
        }
    }
}
