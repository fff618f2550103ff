//! Identification payloads (RFC 7296 §3.5) and the AUTH payload with a pre-shared key
//! (§2.15): AUTH = prf(prf(PSK, "Key Pad for IKEv2"), signed octets), the signed octets being
//! the sender's first message, the peer's nonce and prf(SK_p, the sender's ID payload body).

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::ParseError;
use crate::prf::Prf;

/// An identity type (RFC 7296 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdType(pub u8);

impl IdType {
    /// An IPv4 address (4 bytes).
    pub const IPV4_ADDR: Self = Self(1);
    /// A fully-qualified domain name.
    pub const FQDN: Self = Self(2);
    /// An e-mail address.
    pub const RFC822_ADDR: Self = Self(3);
    /// An IPv6 address (16 bytes).
    pub const IPV6_ADDR: Self = Self(5);
    /// A DER-encoded X.500 distinguished name (certificates).
    pub const DER_ASN1_DN: Self = Self(9);
    /// Opaque bytes.
    pub const KEY_ID: Self = Self(11);
}

/// An identity: its type and data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The type.
    pub kind: IdType,
    /// The data, as sent.
    pub data: Vec<u8>,
}

impl Identity {
    /// Reads an IDi or IDr payload's body.
    pub fn read(body: &[u8]) -> Result<Self, ParseError> {
        if body.len() < 5 {
            return Err(ParseError::Truncated {
                need: 5,
                have: body.len(),
            });
        }
        Ok(Self {
            kind: IdType(body[0]),
            data: body[4..].to_vec(),
        })
    }

    /// The payload body: type, three reserved bytes, data, as this side sends it (AUTH
    /// signs a peer's ID body as it was received).
    pub fn body(&self) -> Vec<u8> {
        let mut out = vec![self.kind.0, 0, 0, 0];
        out.extend_from_slice(&self.data);
        out
    }

    /// An identity as operators write it, typed as strongSwan infers it: an IP address, an
    /// e-mail address (it has an @), else a host name (FQDN); a leading @ makes the rest a
    /// host name whatever it looks like.
    pub fn from_text(text: &str) -> Self {
        if let Some(name) = text.strip_prefix('@') {
            return Self {
                kind: IdType::FQDN,
                data: name.as_bytes().to_vec(),
            };
        }
        let (kind, data) = match text.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => (IdType::IPV4_ADDR, a.octets().to_vec()),
            Ok(std::net::IpAddr::V6(a)) => (IdType::IPV6_ADDR, a.octets().to_vec()),
            Err(_) if text.contains('@') => (IdType::RFC822_ADDR, text.as_bytes().to_vec()),
            Err(_) => (IdType::FQDN, text.as_bytes().to_vec()),
        };
        Self { kind, data }
    }

    /// Why `text` cannot be written as an identity, if it cannot: empty, longer than 255
    /// bytes, or with spaces or control characters.
    pub fn check_text(text: &str) -> Result<(), &'static str> {
        let body = text.strip_prefix('@').unwrap_or(text);
        if body.is_empty() || text.len() > 255 {
            return Err("1 to 255 characters");
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("no spaces or control characters");
        }
        Ok(())
    }

    /// The identity written so that `from_text` reads it back: as `display`, with an @ before
    /// a host name that would otherwise read as an address. One identity has one text.
    pub fn to_text(&self) -> String {
        let shown = self.display();
        if self.kind == IdType::FQDN && Self::from_text(&shown) != *self {
            format!("@{shown}")
        } else {
            shown
        }
    }

    /// The identity as people read it: the name or address, else hex.
    pub fn display(&self) -> String {
        match (self.kind, self.data.len()) {
            (IdType::FQDN | IdType::RFC822_ADDR, _) => String::from_utf8_lossy(&self.data).into(),
            (IdType::IPV4_ADDR, 4) => {
                let d = &self.data;
                std::net::Ipv4Addr::new(d[0], d[1], d[2], d[3]).to_string()
            }
            (IdType::IPV6_ADDR, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&self.data);
                std::net::Ipv6Addr::from(a).to_string()
            }
            _ => self.data.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// An authentication method (RFC 7296 §3.8, RFC 7427).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthMethod(pub u8);

impl AuthMethod {
    /// RSA signature with SHA-1 (RFC 7296's own).
    pub const RSA_SIG: Self = Self(1);
    /// Shared Key Message Integrity Code: a pre-shared key.
    pub const PSK: Self = Self(2);
    /// ECDSA with SHA-256 on P-256.
    pub const ECDSA_256: Self = Self(9);
    /// Digital signature (RFC 7427): the algorithm named inside.
    pub const DIGITAL_SIGNATURE: Self = Self(14);
}

/// Reads an AUTH payload's body: method and data.
pub fn read_auth(body: &[u8]) -> Result<(AuthMethod, &[u8]), ParseError> {
    if body.len() < 5 {
        return Err(ParseError::Truncated {
            need: 5,
            have: body.len(),
        });
    }
    Ok((AuthMethod(body[0]), &body[4..]))
}

/// An AUTH payload's body.
pub fn auth_body(method: AuthMethod, data: &[u8]) -> Vec<u8> {
    let mut out = vec![method.0, 0, 0, 0];
    out.extend_from_slice(data);
    out
}

/// The pad every PSK AUTH value is keyed with (RFC 7296 §2.15).
const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The octets a side signs: its first message, the peer's nonce, and prf(SK_p, its ID
/// payload's body as sent, reserved bytes and all) (SK_pi for the initiator, SK_pr for the
/// responder).
pub fn signed_octets(
    prf: Prf,
    own_first_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let maced_id = prf.compute(sk_p, &[id_body]);
    [own_first_message, peer_nonce, &maced_id].concat()
}

/// The PSK AUTH value over `signed`.
pub fn psk_auth(prf: Prf, psk: &[u8], signed: &[u8]) -> Zeroizing<Vec<u8>> {
    let keyed = prf.compute(psk, &[KEY_PAD]);
    prf.compute(&keyed, &[signed])
}

/// Whether a received PSK AUTH value is the one expected (compared in constant time).
pub fn psk_auth_holds(prf: Prf, psk: &[u8], signed: &[u8], received: &[u8]) -> bool {
    psk_auth(prf, psk, signed).ct_eq(received).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_written_as_text_take_the_type_strongswan_infers() {
        for (text, kind) in [
            ("alice@example.com", IdType::RFC822_ADDR),
            ("vpn.example.com", IdType::FQDN),
            ("192.0.2.7", IdType::IPV4_ADDR),
            ("2001:db8::7", IdType::IPV6_ADDR),
        ] {
            let id = Identity::from_text(text);
            assert_eq!(id.kind, kind, "{text}");
            assert_eq!(id.display(), text);
        }
        // One identity, one text: addresses are written the one way, @ forces a name.
        assert_eq!(
            Identity::from_text("2001:DB8:0::7").display(),
            "2001:db8::7"
        );
        let forced = Identity::from_text("@192.0.2.7");
        assert_eq!(
            (forced.kind, forced.display()),
            (IdType::FQDN, "192.0.2.7".into())
        );
        assert_eq!(forced.to_text(), "@192.0.2.7");
        assert_eq!(
            Identity::from_text("@vpn.example.com").to_text(),
            "vpn.example.com"
        );
        assert!(Identity::check_text("two words").is_err());
        assert!(Identity::check_text("@").is_err());
        assert!(Identity::check_text("alice@example.com").is_ok());
    }

    #[test]
    fn identities_read_back_and_read_as_people_write_them() {
        let id = Identity {
            kind: IdType::FQDN,
            data: b"vpn.example.com".to_vec(),
        };
        assert_eq!(Identity::read(&id.body()), Ok(id.clone()));
        assert_eq!(id.display(), "vpn.example.com");
        let v4 = Identity {
            kind: IdType::IPV4_ADDR,
            data: vec![192, 0, 2, 1],
        };
        assert_eq!(v4.display(), "192.0.2.1");
        assert!(Identity::read(&[2, 0, 0, 0]).is_err(), "no data");
    }

    #[test]
    fn the_psk_auth_follows_rfc_7296_and_tells_a_wrong_key() {
        let prf = Prf::HmacSha256;
        let id = Identity {
            kind: IdType::RFC822_ADDR,
            data: b"alice@example.com".to_vec(),
        };
        let signed = signed_octets(
            prf,
            b"message one",
            b"responder nonce",
            b"sk_pi",
            &id.body(),
        );
        // By the letter of §2.15, with ring's HMAC composed by hand.
        let maced = prf.compute(b"sk_pi", &[&[3u8, 0, 0, 0][..], b"alice@example.com"]);
        assert_eq!(
            signed,
            [&b"message one"[..], b"responder nonce", &maced].concat()
        );
        let inner = prf.compute(b"secret", &[b"Key Pad for IKEv2"]);
        let expected = prf.compute(&inner, &[&signed]);
        assert_eq!(psk_auth(prf, b"secret", &signed), expected);
        assert!(psk_auth_holds(prf, b"secret", &signed, &expected));
        assert!(!psk_auth_holds(prf, b"Secret", &signed, &expected));
        assert!(!psk_auth_holds(prf, b"secret", &signed, &expected[..31]));
        let body = auth_body(AuthMethod::PSK, &expected);
        assert_eq!(read_auth(&body), Ok((AuthMethod::PSK, &expected[..])));
    }
}
