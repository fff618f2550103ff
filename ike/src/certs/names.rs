//! Whether a certificate names an identity (RFC 4945 §3.1): a distinguished name must be the
//! subject's; a host name, an e-mail address or an IP address must be among the
//! subjectAltNames (host names and e-mail addresses compared without case).

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::trust::CertRefusal;
use crate::identity::{IdType, Identity};

/// Whether the DER certificate `der` names `id`.
pub fn names_identity(der: &[u8], id: &Identity) -> Result<bool, CertRefusal> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| CertRefusal::Unreadable(format!("the certificate: {e}")))?;
    if id.kind == IdType::DER_ASN1_DN {
        return Ok(cert.subject().as_raw() == id.data.as_slice());
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertRefusal::Unreadable(format!("subjectAltName: {e}")))?;
    let Some(san) = san else {
        return Ok(false);
    };
    let text = std::str::from_utf8(&id.data).unwrap_or("");
    Ok(san.value.general_names.iter().any(|n| match (id.kind, n) {
        (IdType::FQDN, GeneralName::DNSName(d)) => d.eq_ignore_ascii_case(text),
        (IdType::RFC822_ADDR, GeneralName::RFC822Name(m)) => m.eq_ignore_ascii_case(text),
        (IdType::IPV4_ADDR | IdType::IPV6_ADDR, GeneralName::IPAddress(a)) => {
            *a == id.data.as_slice()
        }
        _ => false,
    }))
}
