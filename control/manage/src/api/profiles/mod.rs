//! The client profiles operators hand to IKEv2 users, one file per kind of device:
//!
//! - `swanctl`: strongSwan's `swanctl.conf` (Linux, and strongSwan anywhere);
//! - `mobileconfig`: an Apple configuration profile (macOS, iOS): the CA and a managed
//!   IKEv2 VPN;
//! - `powershell`: a Windows PowerShell script (`Add-VpnConnection` and
//!   `Set-VpnConnectionIPsecConfiguration`), so Windows proposes AES-GCM and P-256 rather
//!   than its weak defaults;
//! - `sswan`: a profile for strongSwan's Android app.
//!
//! Each asks for the suite the server prefers among what every OS client speaks (`Preferred`),
//! and says in three lines what the user does on the device.

pub mod mobileconfig;
pub mod powershell;
pub mod sswan;
pub mod swanctl;

use ike::{DhGroup, Encr, Policy, Prf};

use super::client_config::ClientPolicy;
use crate::registry::IkeUserRecord;

/// What every profile names of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeServer {
    /// Where clients reach it (a host name or address, no port).
    pub address: String,
    /// Its identity in IKE_AUTH.
    pub identity: String,
    /// The CA certificate (DER) its certificate leads to, when it has one.
    pub ca: Option<Vec<u8>>,
}

/// The suite the profiles ask for: the server's first AEAD cipher and PRF, and P-256, the
/// group the OS clients all speak (Windows and Apple have no Curve25519).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preferred {
    /// The cipher (IKE and ESP).
    pub encr: Encr,
    /// The PRF (IKE).
    pub prf: Prf,
    /// The Diffie-Hellman group (IKE, and PFS).
    pub dh: DhGroup,
}

impl Preferred {
    /// What `policy` (the server's) prefers among what the OS clients speak.
    pub fn of(policy: &Policy) -> Self {
        let encr = policy
            .encr
            .iter()
            .copied()
            .find(|e| matches!(e, Encr::AesGcm16 { .. }))
            .unwrap_or(Encr::AesGcm16 { key_bits: 256 });
        let prf = policy.prf.first().copied().unwrap_or(Prf::HmacSha256);
        let dh = if policy.dh.contains(&DhGroup::Ecp256) {
            DhGroup::Ecp256
        } else {
            policy.dh.first().copied().unwrap_or(DhGroup::Ecp256)
        };
        Self { encr, prf, dh }
    }

    /// The server's own: its native-client policy.
    pub fn server() -> Self {
        Self::of(&Policy::native_clients())
    }

    /// AES key bits.
    fn key_bits(&self) -> u16 {
        match self.encr {
            Encr::AesGcm16 { key_bits } | Encr::AesCbc { key_bits } => key_bits,
            Encr::ChaCha20Poly1305 => 256,
        }
    }

    /// The PRF's hash as the OS clients name it (SHA2-256 ...).
    fn hash_bits(&self) -> u16 {
        match self.prf {
            Prf::HmacSha1 => 160,
            Prf::HmacSha256 => 256,
            Prf::HmacSha384 => 384,
            Prf::HmacSha512 => 512,
        }
    }
}

/// A profile's kind, as the API's `format` and the CLI's `--format` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// strongSwan's swanctl.conf.
    Swanctl,
    /// Apple's .mobileconfig.
    Mobileconfig,
    /// A Windows PowerShell script.
    Powershell,
    /// strongSwan's Android app's .sswan.
    Sswan,
}

impl Format {
    /// The format named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "swanctl" => Self::Swanctl,
            "mobileconfig" => Self::Mobileconfig,
            "powershell" => Self::Powershell,
            "sswan" => Self::Sswan,
            _ => return None,
        })
    }

    /// The content type and file name suffix.
    pub fn media(self) -> (&'static str, &'static str) {
        match self {
            Self::Swanctl => ("text/plain; charset=utf-8", "swanctl.conf"),
            Self::Mobileconfig => ("application/x-apple-aspen-config", "mobileconfig"),
            Self::Powershell => ("text/plain; charset=utf-8", "ps1"),
            Self::Sswan => ("application/vnd.strongswan.profile", "sswan"),
        }
    }

    /// What the user does with the file on the device, in three lines.
    pub fn instructions(self) -> [&'static str; 3] {
        match self {
            Self::Swanctl => [
                "1. Put this file in /etc/swanctl/conf.d/ (with the CA in x509ca/, a password in place of PASSWORD).",
                "2. Load it: swanctl --load-all",
                "3. Connect: swanctl --initiate --child xgate",
            ],
            Self::Mobileconfig => [
                "1. Open this file on the Mac, iPhone or iPad (mail, AirDrop or Safari) and allow it.",
                "2. Install it: Settings > General > VPN & Device Management (macOS: System Settings > Privacy & Security > Profiles).",
                "3. Connect in Settings > VPN, giving your password when asked.",
            ],
            Self::Powershell => [
                "1. Save this file as xgate-vpn.ps1 on the Windows computer.",
                "2. Run it in PowerShell as administrator: powershell -ExecutionPolicy Bypass -File xgate-vpn.ps1",
                "3. Connect from the network menu (VPN), giving your password when asked.",
            ],
            Self::Sswan => [
                "1. Install the strongSwan VPN Client app from the store.",
                "2. Open this file with it (or: menu > Import VPN profile).",
                "3. Connect in the app, giving your password when asked.",
            ],
        }
    }
}

/// Why a user gets no profile of a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The device's built-in client cannot log in the way this user does.
    #[error("{0}")]
    Unsupported(String),
}

/// The profile of `format` for `user` under `policy`.
pub fn profile(
    format: Format,
    server: &IkeServer,
    user: &IkeUserRecord,
    policy: &ClientPolicy,
) -> Result<Vec<u8>, ProfileError> {
    let preferred = Preferred::server();
    match format {
        Format::Swanctl => Ok(swanctl::swanctl_conf(server, user, policy).into_bytes()),
        Format::Mobileconfig => mobileconfig::mobileconfig(server, user, policy, &preferred),
        Format::Powershell => {
            powershell::script(server, user, policy, &preferred).map(String::into_bytes)
        }
        Format::Sswan => sswan::sswan(server, user, policy, &preferred),
    }
}

/// A stable UUID for `what` of `user` on `server` (downloaded again, a profile replaces its
/// earlier copy on the device), shaped as a version-4 UUID.
fn uuid(server: &IkeServer, user: &IkeUserRecord, what: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("xgate|{}|{}|{what}", server.identity, user.id));
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The group's subnets as prefixes, or none for a full tunnel.
fn split_subnets(policy: &ClientPolicy) -> Vec<String> {
    if policy.allowed_ips.iter().any(|n| n.prefix_len() == 0) {
        return Vec::new();
    }
    policy.allowed_ips.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use ike::{choose, ProtocolId, Transform, TransformType};

    use super::*;

    /// What the profiles ask for is what the server's own policy takes first of it: offered
    /// alone, it is chosen as it is.
    #[test]
    fn the_profiles_ask_for_a_suite_the_server_takes() {
        let p = Preferred::server();
        assert_eq!(p.encr, Encr::AesGcm16 { key_bits: 256 });
        assert_eq!((p.prf, p.dh), (Prf::HmacSha256, DhGroup::Ecp256));
        let offer = vec![ike::Proposal {
            number: 1,
            protocol: ProtocolId::IKE,
            spi: Vec::new(),
            transforms: vec![
                p.encr.transform(),
                Transform::new(TransformType::PRF, p.prf.transform_id(), None),
                Transform::new(TransformType::DH, p.dh.id(), None),
            ],
        }];
        let chosen = choose(&offer, ProtocolId::IKE, &Policy::native_clients()).expect("taken");
        assert_eq!(
            (chosen.suite.encr, chosen.suite.prf, chosen.suite.dh),
            (p.encr, Some(p.prf), Some(p.dh))
        );
        assert_eq!(
            powershell::windows_names(&p),
            ("GCMAES256".to_string(), "SHA256", "ECP256")
        );
        assert_eq!(
            sswan::strongswan_names(&p),
            (
                "aes256gcm16-prfsha256-ecp256".to_string(),
                "aes256gcm16".to_string()
            )
        );
    }
}
