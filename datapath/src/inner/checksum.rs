//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// Adds `data` as big-endian 16-bit words to a running one's-complement sum. Reads eight
/// bytes at a time into a 64-bit sum with end-around carry (the one's-complement sum of the
/// 64-bit words is that of their 16-bit words, RFC 1071 §2). The sum comes back folded to
/// 16 bits, so callers may add a few small terms to it with plain (wrapping) additions.
pub fn sum(acc: u32, data: &[u8]) -> u32 {
    let mut wide = u64::from(acc);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let (s, carry) = wide.overflowing_add(u64::from_be_bytes([
            w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        ]));
        wide = s + u64::from(carry);
    }
    // Fold to 32 bits, then add the last 0-7 bytes as the 16-bit words they are.
    let folded = (wide & 0xffff_ffff) + (wide >> 32);
    let mut acc = ((folded & 0xffff_ffff) + (folded >> 32)) as u32;
    let mut pairs = words.remainder().chunks_exact(2);
    for w in &mut pairs {
        acc = add_carry(acc, u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = pairs.remainder() {
        acc = add_carry(acc, u32::from(*last) << 8);
    }
    let acc = (acc & 0xffff) + (acc >> 16);
    (acc & 0xffff) + (acc >> 16)
}

/// `a + b` with the carry out of bit 31 added back in (one's-complement addition).
fn add_carry(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s + u32::from(carry)
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

    /// The checksum as RFC 1071 writes it: one 16-bit word at a time.
    fn word_by_word(data: &[u8]) -> u16 {
        let mut acc = 0u64;
        for w in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn eight_bytes_at_a_time_agrees_with_word_by_word() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut data = vec![0u8; 70_000];
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        // Every length to 300 and every start offset to 9, then a 64 KiB super-packet, all
        // 0xff (the largest carries) and all zero.
        for start in 0..9 {
            for len in 0..300 {
                let d = &data[start..start + len];
                assert_eq!(of(d), word_by_word(d), "offset {start}, {len} bytes");
            }
        }
        assert_eq!(of(&data[..65_535]), word_by_word(&data[..65_535]));
        let ones = vec![0xffu8; 65_535];
        assert_eq!(of(&ones), word_by_word(&ones));
        assert_eq!(of(&[0u8; 40]), 0xffff);
        // A running sum carried across calls, as the pseudo-header's is.
        let acc = sum(sum(0xfffe_fffe, &data[..12]), &data[12..1400]);
        let mut joined = vec![0xff, 0xfe, 0xff, 0xfe];
        joined.extend_from_slice(&data[..1400]);
        assert_eq!(finish(acc), word_by_word(&joined));
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
