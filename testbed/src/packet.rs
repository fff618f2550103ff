//! Test packets: what the tests, the bench and the loadtest put into tunnels and check on the
//! way out. The checksum here is written apart from the datapath's own (RFC 1071, one byte
//! pair at a time), so a datapath checksum bug cannot cancel out in a test that uses both.

/// The Internet checksum (RFC 1071) of `data`: zero when `data` holds a correct checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for pair in data.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |b| u32::from(*b));
        acc += hi | lo;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_odd_lengths() {
        // RFC 1071 section 3: these bytes sum to 0xddf2 before the complement.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // A trailing odd byte counts as its pair's high byte.
        assert_eq!(checksum(&[0xab]), !0xab00);
        // A header carrying its own checksum sums to zero.
        let mut h = [
            0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }
}
