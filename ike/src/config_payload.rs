//! The Configuration payload (RFC 7296 §3.15): a client asks (CFG_REQUEST) for a virtual
//! address and DNS servers; the responder answers (CFG_REPLY) with what the registry assigned
//! and the group's policy (DNS, the subnets reached through the tunnel).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::ParseError;

/// The configuration payload's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CfgType(pub u8);

impl CfgType {
    /// A client's request.
    pub const REQUEST: Self = Self(1);
    /// The answer to a request.
    pub const REPLY: Self = Self(2);
}

/// Attribute types (RFC 7296 §3.15.1).
pub mod attr {
    /// A virtual IPv4 address.
    pub const INTERNAL_IP4_ADDRESS: u16 = 1;
    /// An IPv4 DNS server.
    pub const INTERNAL_IP4_DNS: u16 = 3;
    /// A virtual IPv6 address and prefix length.
    pub const INTERNAL_IP6_ADDRESS: u16 = 8;
    /// An IPv6 DNS server.
    pub const INTERNAL_IP6_DNS: u16 = 10;
    /// An IPv4 subnet reached through the tunnel.
    pub const INTERNAL_IP4_SUBNET: u16 = 13;
    /// An IPv6 subnet reached through the tunnel.
    pub const INTERNAL_IP6_SUBNET: u16 = 15;
}

/// One attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpAttribute {
    /// Its type (15 bits).
    pub kind: u16,
    /// Its value (empty in a request that asks for any).
    pub value: Vec<u8>,
}

/// A Configuration payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPayload {
    /// Request, reply...
    pub cfg: CfgType,
    /// The attributes.
    pub attributes: Vec<CpAttribute>,
}

/// What a reply gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// The virtual IPv4 address.
    pub v4: Option<Ipv4Addr>,
    /// The virtual IPv6 address and its prefix length.
    pub v6: Option<(Ipv6Addr, u8)>,
    /// DNS servers.
    pub dns: Vec<IpAddr>,
    /// Subnets reached through the tunnel (split tunnel), with prefix lengths.
    pub subnets: Vec<(IpAddr, u8)>,
}

impl ConfigPayload {
    /// The request strongSwan's clients send: both families' address and DNS, values empty.
    pub fn ask_for_addresses() -> Self {
        let ask = |kind| CpAttribute {
            kind,
            value: Vec::new(),
        };
        Self {
            cfg: CfgType::REQUEST,
            attributes: vec![
                ask(attr::INTERNAL_IP4_ADDRESS),
                ask(attr::INTERNAL_IP6_ADDRESS),
                ask(attr::INTERNAL_IP4_DNS),
                ask(attr::INTERNAL_IP6_DNS),
            ],
        }
    }

    /// Reads a CP payload's body.
    pub fn read(body: &[u8]) -> Result<Self, ParseError> {
        let head = body.get(..4).ok_or(ParseError::Truncated {
            need: 4,
            have: body.len(),
        })?;
        let mut attributes = Vec::new();
        let mut at = 4;
        while at < body.len() {
            let h = body.get(at..at + 4).ok_or(ParseError::Truncated {
                need: at + 4,
                have: body.len(),
            })?;
            let kind = u16::from_be_bytes([h[0], h[1]]) & 0x7fff;
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let value = body
                .get(at + 4..at + 4 + len)
                .ok_or(ParseError::Truncated {
                    need: at + 4 + len,
                    have: body.len(),
                })?;
            attributes.push(CpAttribute {
                kind,
                value: value.to_vec(),
            });
            at += 4 + len;
        }
        Ok(Self {
            cfg: CfgType(head[0]),
            attributes,
        })
    }

    /// The payload body.
    pub fn body(&self) -> Vec<u8> {
        let mut out = vec![self.cfg.0, 0, 0, 0];
        for a in &self.attributes {
            out.extend_from_slice(&(a.kind & 0x7fff).to_be_bytes());
            // Values here are addresses: a few bytes.
            out.extend_from_slice(&(a.value.len() as u16).to_be_bytes());
            out.extend_from_slice(&a.value);
        }
        out
    }

    /// Whether a request asks for an attribute of `kind`.
    pub fn asks(&self, kind: u16) -> bool {
        self.attributes.iter().any(|a| a.kind == kind)
    }

    /// The reply carrying `a`, for a request that asked `asked` (an address of a family is
    /// given only if asked for; DNS of a family likewise; subnets always).
    pub fn reply(asked: &Self, a: &Assignment) -> Self {
        let mut attributes = Vec::new();
        let mut push = |kind, value: Vec<u8>| attributes.push(CpAttribute { kind, value });
        if let (Some(v4), true) = (a.v4, asked.asks(attr::INTERNAL_IP4_ADDRESS)) {
            push(attr::INTERNAL_IP4_ADDRESS, v4.octets().to_vec());
        }
        if let (Some((v6, len)), true) = (a.v6, asked.asks(attr::INTERNAL_IP6_ADDRESS)) {
            push(
                attr::INTERNAL_IP6_ADDRESS,
                [&v6.octets()[..], &[len]].concat(),
            );
        }
        for d in &a.dns {
            match d {
                IpAddr::V4(d) if asked.asks(attr::INTERNAL_IP4_DNS) => {
                    push(attr::INTERNAL_IP4_DNS, d.octets().to_vec());
                }
                IpAddr::V6(d) if asked.asks(attr::INTERNAL_IP6_DNS) => {
                    push(attr::INTERNAL_IP6_DNS, d.octets().to_vec());
                }
                _ => {}
            }
        }
        for (net, len) in &a.subnets {
            match net {
                IpAddr::V4(n) => {
                    let mask = u32::MAX
                        .checked_shl(32 - u32::from((*len).min(32)))
                        .unwrap_or(0);
                    let value = [n.octets(), mask.to_be_bytes()].concat();
                    push(attr::INTERNAL_IP4_SUBNET, value);
                }
                IpAddr::V6(n) => {
                    push(
                        attr::INTERNAL_IP6_SUBNET,
                        [&n.octets()[..], &[*len]].concat(),
                    );
                }
            }
        }
        Self {
            cfg: CfgType::REPLY,
            attributes,
        }
    }

    /// What a reply assigns (the initiator's reading).
    pub fn assignment(&self) -> Assignment {
        let mut a = Assignment::default();
        for at in &self.attributes {
            let v = &at.value;
            match (at.kind, v.len()) {
                (attr::INTERNAL_IP4_ADDRESS, 4) => {
                    a.v4 = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3]))
                }
                (attr::INTERNAL_IP6_ADDRESS, 17) => a.v6 = Some((v6(&v[..16]), v[16])),
                (attr::INTERNAL_IP4_DNS, 4) => {
                    a.dns.push(Ipv4Addr::new(v[0], v[1], v[2], v[3]).into())
                }
                (attr::INTERNAL_IP6_DNS, 16) => a.dns.push(v6(v).into()),
                (attr::INTERNAL_IP4_SUBNET, 8) => {
                    let mask = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
                    let net = Ipv4Addr::new(v[0], v[1], v[2], v[3]);
                    a.subnets.push((net.into(), mask.leading_ones() as u8));
                }
                (attr::INTERNAL_IP6_SUBNET, 17) => a.subnets.push((v6(&v[..16]).into(), v[16])),
                _ => {}
            }
        }
        a
    }
}

fn v6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ConfigPayload {
        ConfigPayload::ask_for_addresses()
    }

    #[test]
    fn a_reply_gives_what_was_asked_and_reads_back() {
        let asked = ConfigPayload::read(&request().body()).expect("reads");
        assert_eq!(asked, request());
        let given = Assignment {
            v4: Some(Ipv4Addr::new(10, 77, 0, 2)),
            v6: Some(("fd77::2".parse().expect("v6"), 64)),
            dns: vec![
                "10.77.0.53".parse().expect("dns"),
                "fd77::53".parse().expect("dns"),
            ],
            subnets: vec![("10.77.0.0".parse().expect("net"), 16)],
        };
        let reply = ConfigPayload::reply(&asked, &given);
        let read = ConfigPayload::read(&reply.body()).expect("reads");
        assert_eq!(read.cfg, CfgType::REPLY);
        assert_eq!(read.assignment(), given);
        // A v4-only request gets no v6 address and no v6 DNS.
        let v4_only = ConfigPayload {
            cfg: CfgType::REQUEST,
            attributes: vec![CpAttribute {
                kind: attr::INTERNAL_IP4_ADDRESS,
                value: Vec::new(),
            }],
        };
        let a = ConfigPayload::reply(&v4_only, &given).assignment();
        assert_eq!((a.v4, a.v6, a.dns.len()), (given.v4, None, 0));
    }

    #[test]
    fn a_cut_attribute_is_refused() {
        let body = request().body();
        assert!(ConfigPayload::read(&body[..6]).is_err());
        assert!(ConfigPayload::read(&[1, 0]).is_err());
        let mut long = ConfigPayload::reply(&request(), &Assignment::default()).body();
        long.extend_from_slice(&[0, 1, 0, 4, 10]);
        assert!(ConfigPayload::read(&long).is_err());
    }
}
