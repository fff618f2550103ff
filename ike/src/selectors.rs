//! Traffic selectors (RFC 7296 §3.13): address ranges with a protocol and a port range, as
//! the TSi and TSr payloads carry them, and their narrowing to what a user may reach
//! (§2.9): the responder answers with the intersections of what was asked and what is allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::ParseError;

/// TS_IPV4_ADDR_RANGE.
const TS_IPV4: u8 = 7;
/// TS_IPV6_ADDR_RANGE.
const TS_IPV6: u8 = 8;

/// One selector: addresses `start..=end` (one family), IP protocol (0: any), ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// IP protocol, 0 for any.
    pub protocol: u8,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
}

/// An address as a number in its family's range, with the family's width.
fn num(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn addr(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        // A v4 number never exceeds u32: it came from one.
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

impl TrafficSelector {
    /// Every address of `prefix`/`len`, any protocol and port.
    pub fn prefix(prefix: IpAddr, len: u8) -> Self {
        let (v6, n) = num(prefix);
        let bits: u32 = if v6 { 128 } else { 32 };
        let host_bits = bits.saturating_sub(u32::from(len));
        let host_mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        Self {
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: addr(v6, n & !host_mask),
            end: addr(v6, n | host_mask),
        }
    }

    /// The selectors of both families' everything (0.0.0.0/0 and ::/0).
    pub fn everything() -> [Self; 2] {
        [
            Self::prefix(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            Self::prefix(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        ]
    }

    /// What both `self` and `other` cover, if anything.
    pub fn intersect(&self, other: &Self) -> Option<Self> {
        let ((v6a, sa), (_, ea)) = (num(self.start), num(self.end));
        let ((v6b, sb), (_, eb)) = (num(other.start), num(other.end));
        if v6a != v6b {
            return None;
        }
        let protocol = match (self.protocol, other.protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let (start, end) = (sa.max(sb), ea.min(eb));
        let (start_port, end_port) = (
            self.start_port.max(other.start_port),
            self.end_port.min(other.end_port),
        );
        (start <= end && start_port <= end_port).then(|| Self {
            protocol,
            start_port,
            end_port,
            start: addr(v6a, start),
            end: addr(v6a, end),
        })
    }
}

/// What of `asked` lies within `allowed`: every non-empty intersection, in `asked`'s order.
pub fn narrow(asked: &[TrafficSelector], allowed: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for a in asked {
        for b in allowed {
            if let Some(c) = a.intersect(b) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// Reads a TSi or TSr payload's body; selectors of types other than the two address ranges
/// are skipped (none is taken, as if not sent).
pub fn read_ts(body: &[u8]) -> Result<Vec<TrafficSelector>, ParseError> {
    let truncated = |need| ParseError::Truncated {
        need,
        have: body.len(),
    };
    let count = usize::from(*body.first().ok_or(truncated(4))?);
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..count {
        let head = body.get(at..at + 8).ok_or(truncated(at + 8))?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let sel = body
            .get(at..at + len)
            .filter(|_| len >= 8)
            .ok_or(truncated(at + len.max(8)))?;
        let width = match head[0] {
            TS_IPV4 => 4,
            TS_IPV6 => 16,
            _ => {
                at += len;
                continue;
            }
        };
        if len != 8 + 2 * width {
            return Err(truncated(at + 8 + 2 * width));
        }
        let ip = |b: &[u8]| -> IpAddr {
            if width == 4 {
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            } else {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                IpAddr::V6(Ipv6Addr::from(a))
            }
        };
        out.push(TrafficSelector {
            protocol: head[1],
            start_port: u16::from_be_bytes([head[4], head[5]]),
            end_port: u16::from_be_bytes([head[6], head[7]]),
            start: ip(&sel[8..8 + width]),
            end: ip(&sel[8 + width..]),
        });
        at += len;
    }
    if at != body.len() {
        return Err(ParseError::TrailingBytes(body.len().saturating_sub(at)));
    }
    Ok(out)
}

/// A TSi or TSr payload's body with `selectors` (at most 255).
pub fn ts_body(selectors: &[TrafficSelector]) -> Vec<u8> {
    let selectors = &selectors[..selectors.len().min(255)];
    // At most 255, from the line above.
    let mut out = vec![selectors.len() as u8, 0, 0, 0];
    for s in selectors {
        let (kind, len, octets): (u8, u16, Vec<u8>) = match (s.start, s.end) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (TS_IPV4, 16, [a.octets(), b.octets()].concat()),
            (IpAddr::V6(a), IpAddr::V6(b)) => (TS_IPV6, 40, [a.octets(), b.octets()].concat()),
            _ => continue, // mixed families are no selector
        };
        out.extend_from_slice(&[kind, s.protocol]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&s.start_port.to_be_bytes());
        out.extend_from_slice(&s.end_port.to_be_bytes());
        out.extend_from_slice(&octets);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn selectors_read_back_as_written() {
        let sels = [
            TrafficSelector::prefix(ip("10.77.0.0"), 16),
            TrafficSelector::prefix(ip("fd77::"), 64),
        ];
        let body = ts_body(&sels);
        assert_eq!(body.len(), 4 + 16 + 40);
        assert_eq!(read_ts(&body), Ok(sels.to_vec()));
        assert_eq!(sels[0].end, ip("10.77.255.255"));
        assert_eq!(sels[1].end, ip("fd77::ffff:ffff:ffff:ffff"));
        assert!(read_ts(&body[..body.len() - 1]).is_err());
        assert!(read_ts(&[]).is_err());
    }

    #[test]
    fn a_full_tunnel_request_narrows_to_what_the_group_allows() {
        let asked = TrafficSelector::everything();
        let allowed = [
            TrafficSelector::prefix(ip("10.77.0.0"), 16),
            TrafficSelector::prefix(ip("192.168.30.0"), 24),
        ];
        let got = narrow(&asked, &allowed);
        assert_eq!(got, allowed.to_vec(), "the v6 half has nothing allowed");
        // A protocol and port asked for survive; disjoint ranges vanish.
        let dns = TrafficSelector {
            protocol: 17,
            start_port: 53,
            end_port: 53,
            ..TrafficSelector::prefix(ip("10.77.0.53"), 32)
        };
        assert_eq!(narrow(&[dns], &allowed), vec![dns]);
        let outside = TrafficSelector::prefix(ip("172.16.0.0"), 12);
        assert!(narrow(&[outside], &allowed).is_empty());
    }
}
