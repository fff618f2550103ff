//! The `[ike]` section: whether the IKEv2 responder runs, its ports, the identity it
//! authenticates as, its certificate and the CAs client certificates must lead to, and its
//! liveness timers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ike::{CertAuth, Credential, Identity, Policy, Timing, TrustStore};
use serde::Deserialize;

use super::{err, ConfigError};
use crate::ike::{CrlSource, IkeSettings, COOKIE_THRESHOLD, IKE_PORT, NAT_T_PORT};

/// `[ike]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IkeSection {
    /// true: always run; false: never; unset: run when a certificate is set or the registry
    /// holds IKEv2 users.
    pub enabled: Option<bool>,
    /// The IKE port (500).
    pub port: Option<u16>,
    /// The NAT-traversal port (4500).
    pub nat_port: Option<u16>,
    /// "when-nat" (ESP in UDP only through a NAT, raw otherwise, where the backend takes raw
    /// ESP) or "always" (every peer is asked to encapsulate).
    pub encapsulation: Option<String>,
    /// This server's identity (default: the host name).
    pub identity: Option<String>,
    /// Seconds of quiet before a peer is checked (30).
    pub dpd_secs: Option<u64>,
    /// Milliseconds before a check is first sent again (2000; doubled each time).
    pub retransmit_ms: Option<u64>,
    /// Sendings of a check before the peer is declared dead (5).
    pub retransmit_tries: Option<u32>,
    /// The server's certificate (PEM; its chain may follow), naming `identity`.
    pub certificate: Option<PathBuf>,
    /// The certificate's private key (PEM, PKCS#8; RSA also PKCS#1).
    pub private_key: Option<PathBuf>,
    /// The CA certificates client certificates must lead to (PEM).
    pub ca: Option<PathBuf>,
    /// The CAs' certificate revocation lists (PEM).
    pub crl: Option<PathBuf>,
    /// Also take what Windows proposes untouched: SHA-1 and the 1024-bit MODP group (false).
    pub legacy_windows: Option<bool>,
    /// Wrong passwords in a row after which a password user is locked (5).
    pub lockout_after: Option<u32>,
    /// Seconds a lock lasts (300).
    pub lockout_secs: Option<u64>,
}

/// `[ike]`, validated.
#[derive(Debug, Clone)]
pub struct IkeConfig {
    /// `Some(true)` always, `Some(false)` never, `None` when IKEv2 users exist.
    pub enabled: Option<bool>,
    /// How the responder runs.
    pub settings: IkeSettings,
    /// `legacy_windows`: SHA-1 and MODP-1024 are taken (the daemon warns at start).
    pub legacy_windows: bool,
}

/// What `legacy_windows = true` weakens, for the startup log.
pub const LEGACY_WARNING: &str = "ike.legacy_windows is on: IKE SAs may use the 1024-bit \
     MODP group (within reach of precomputation by a well-funded attacker) and SHA-1 (RFC 8247 \
     deprecates it), so a recorded session could be decrypted or forged later; set Windows clients to \
     AES-GCM and ECP-256 (Set-VpnConnectionIPsecConfiguration) and turn this off";

/// The host's name, the default identity.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "xgate".into())
}

impl IkeConfig {
    /// Validates the section (absent: every default).
    pub fn from_section(s: Option<IkeSection>) -> Result<Self, ConfigError> {
        let s = s.unwrap_or_default();
        let port = s.port.unwrap_or(IKE_PORT);
        let nat_port = s.nat_port.unwrap_or(NAT_T_PORT);
        if port == nat_port && port != 0 {
            return Err(err(
                "ike.nat_port",
                format!("the same port as ike.port ({port})"),
                "NAT traversal needs a port of its own: leave both unset for 500 and 4500",
            ));
        }
        let raw_esp = match s.encapsulation.as_deref() {
            None | Some("when-nat") => true,
            Some("always") => false,
            Some(other) => {
                return Err(err(
                    "ike.encapsulation",
                    format!("{other:?} is not a choice"),
                    "use \"when-nat\" (the default: raw ESP where no NAT is, with the AF_XDP \
                     backend) or \"always\" (ESP in UDP for every peer, as through a firewall \
                     that passes UDP 500/4500 but not IP protocol 50)",
                ))
            }
        };
        let identity = s.identity.clone().unwrap_or_else(host_name);
        if let Err(why) = Identity::check_text(&identity) {
            return Err(err(
                "ike.identity",
                format!("{identity:?} is not an identity ({why})"),
                "use the server's host name or address as clients expect it, e.g. \
                 \"vpn.example.com\"",
            ));
        }
        let dpd = s.dpd_secs.unwrap_or(30);
        let retransmit = s.retransmit_ms.unwrap_or(2000);
        let tries = s.retransmit_tries.unwrap_or(5);
        if !(1..=3600).contains(&dpd) {
            return Err(err(
                "ike.dpd_secs",
                format!("{dpd} is out of range"),
                "use 1 to 3600 seconds (30 is the default)",
            ));
        }
        if !(100..=60_000).contains(&retransmit) || !(1..=10).contains(&tries) {
            return Err(err(
                "ike.retransmit_ms",
                format!("{retransmit} ms, {tries} tries is out of range"),
                "use 100 to 60000 ms and 1 to 10 tries (2000 ms, 5 tries are the defaults)",
            ));
        }
        let timing = Timing {
            auth_within: Duration::from_secs(30),
            dpd_after: Duration::from_secs(dpd),
            retransmit: Duration::from_millis(retransmit),
            tries,
        };
        let (certs, crl_source, client_ca) = certificates(&s, &Identity::from_text(&identity))?;
        let legacy_windows = s.legacy_windows.unwrap_or(false);
        let (lockout_after, lockout_secs) =
            (s.lockout_after.unwrap_or(5), s.lockout_secs.unwrap_or(300));
        if !(1..=100).contains(&lockout_after) || !(1..=86_400).contains(&lockout_secs) {
            return Err(err(
                "ike.lockout_after",
                format!("{lockout_after} failures, {lockout_secs} s is out of range"),
                "use 1 to 100 wrong passwords and 1 to 86400 seconds (5 and 300 are the defaults)",
            ));
        }
        let ike = if legacy_windows {
            Policy::native_clients().with_legacy()
        } else {
            Policy::native_clients()
        };
        Ok(Self {
            legacy_windows,
            // A server certificate says IKEv2 is wanted.
            enabled: s.enabled.or(certs.as_ref().map(|_| true)),
            settings: IkeSettings {
                port,
                nat_port,
                local_id: Identity::from_text(&identity),
                esp: ike.clone(),
                ike,
                timing,
                cookie_threshold: COOKIE_THRESHOLD,
                workers: 1,
                certs,
                crl_source,
                // Taken back by the daemon unless AF_XDP steers raw ESP.
                raw_esp,
                lockout_after,
                lockout_for: Duration::from_secs(lockout_secs),
                client_ca,
            },
        })
    }
}

/// Reads `path` for the setting `field`, saying which file failed and why.
fn read(field: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| {
        err(
            field,
            format!("{} cannot be read: {e}", path.display()),
            "give the path of a readable PEM file",
        )
    })
}

/// What `certificates` reads: the server's credential and client CAs, where the CRLs are,
/// and the CA clients check the server by (DER).
type Certificates = (Option<Arc<CertAuth>>, Option<CrlSource>, Option<Vec<u8>>);

/// The server's credential and the client CAs, when `certificate` is set, and the CRL file
/// to watch.
fn certificates(s: &IkeSection, id: &Identity) -> Result<Certificates, ConfigError> {
    let (cert, key) = match (&s.certificate, &s.private_key) {
        (None, None) if s.ca.is_none() && s.crl.is_none() => return Ok((None, None, None)),
        (Some(c), Some(k)) => (c, k),
        _ => {
            return Err(err(
                "ike.certificate",
                "ike.certificate and ike.private_key go together, and client certificates \
                 (ike.ca, ike.crl) need the server's own",
                "set both ike.certificate and ike.private_key, e.g. to the files \
                 `xgate pki server` writes",
            ))
        }
    };
    let rng = ring::rand::SystemRandom::new();
    let own = Credential::from_pem(
        &read("ike.certificate", cert)?,
        &read("ike.private_key", key)?,
        &rng,
    )
    .map_err(|e| {
        err(
            "ike.certificate",
            format!("{} with {}: {e}", cert.display(), key.display()),
            "give the certificate and the key it was issued for (ECDSA or RSA, PEM)",
        )
    })?;
    own.check_identity(id).map_err(|e| {
        err(
            "ike.identity",
            e.to_string(),
            "set ike.identity to a name the certificate carries, or issue one for it",
        )
    })?;
    let mut crl_source = None;
    // What clients check the server by: [ike] ca's first (xgate pki's one CA signs both),
    // else the top of the server's own chain.
    let mut client_ca = own.chain().last().cloned();
    let trust = match &s.ca {
        None if s.crl.is_some() => {
            return Err(err(
                "ike.crl",
                "a CRL without ike.ca",
                "set ike.ca to the CA certificates that issued the client certificates",
            ))
        }
        None => None,
        Some(ca) => {
            let crl = s.crl.as_ref().map(|c| read("ike.crl", c)).transpose()?;
            let ca_pem = read("ike.ca", ca)?;
            if let Some(first) = ike::pem_certificates(&ca_pem)
                .ok()
                .and_then(|c| c.into_iter().next())
            {
                client_ca = Some(first);
            }
            let store = TrustStore::from_pem(&ca_pem, crl.as_deref());
            crl_source = s.crl.clone().map(|crl| CrlSource { ca_pem, crl });
            Some(store.map_err(|e| {
                err(
                    "ike.ca",
                    e.to_string(),
                    "give PEM CA certificates (and a PEM CRL they signed)",
                )
            })?)
        }
    };
    Ok((
        Some(Arc::new(CertAuth::new(own, trust))),
        crl_source,
        client_ca,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let c = IkeConfig::from_section(None).expect("defaults");
        assert_eq!(c.enabled, None);
        assert_eq!((c.settings.port, c.settings.nat_port), (500, 4500));
        assert_eq!(c.settings.timing, Timing::default());
        let same = IkeSection {
            port: Some(4500),
            ..IkeSection::default()
        };
        let e = IkeConfig::from_section(Some(same)).expect_err("same ports");
        assert!(e.to_string().starts_with("ike.nat_port"), "{e}");
        assert!(c.settings.raw_esp, "raw ESP where no NAT is, by default");
        let always = IkeSection {
            encapsulation: Some("always".into()),
            ..IkeSection::default()
        };
        let c = IkeConfig::from_section(Some(always)).expect("always");
        assert!(!c.settings.raw_esp);
        let typo = IkeSection {
            encapsulation: Some("sometimes".into()),
            ..IkeSection::default()
        };
        let e = IkeConfig::from_section(Some(typo)).expect_err("not a choice");
        assert!(e.to_string().starts_with("ike.encapsulation"), "{e}");
        let dpd = IkeSection {
            dpd_secs: Some(0),
            ..IkeSection::default()
        };
        assert!(IkeConfig::from_section(Some(dpd)).is_err());
        let id = IkeSection {
            identity: Some("two words".into()),
            ..IkeSection::default()
        };
        assert!(IkeConfig::from_section(Some(id)).is_err());
    }
}
