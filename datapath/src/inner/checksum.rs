//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// Adds `data` as big-endian 16-bit words to a running one's-complement sum.
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a running sum into the final 16-bit checksum (already complemented).
pub fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` alone.
pub fn of(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// Updates checksum `check` for one 16-bit field changing from `old` to `new` (RFC 1624,
/// equation 3), without reading the rest of the packet.
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    finish(acc)
}

/// The sum of an IPv4 or IPv6 pseudo-header for an upper-layer packet of `len` bytes.
pub fn pseudo_header(src: &[u8], dst: &[u8], protocol: u8, len: usize) -> u32 {
    let acc = sum(sum(0, src), dst);
    acc.wrapping_add(u32::from(protocol))
        .wrapping_add((len as u32) >> 16)
        .wrapping_add(len as u32 & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (checksum 220d).
        assert_eq!(
            of(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
    }

    #[test]
    fn incremental_update_matches_recomputation() {
        let mut data = [
            0x45u8, 0, 0, 60, 0x1c, 0x46, 0x40, 0, 0x40, 6, 0, 0, 10, 0, 0, 1,
        ];
        let before = of(&data);
        let old = u16::from_be_bytes([data[2], data[3]]);
        data[2..4].copy_from_slice(&1380u16.to_be_bytes());
        assert_eq!(update(before, old, 1380), of(&data));
    }
}
