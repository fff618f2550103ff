//! A Windows PowerShell script that sets up the built-in VPN client: the server's CA into the
//! machine's root store, `Add-VpnConnection` (IKEv2; EAP-MSCHAPv2 for a password user, the
//! machine certificate for a certificate user; the group's subnets when it is a split tunnel),
//! then `Set-VpnConnectionIPsecConfiguration` with the suite the server prefers (AES-GCM,
//! SHA2, P-256), so Windows does not fall back to AES-CBC, SHA-1 and MODP-1024. Windows'
//! IKEv2 client has no pre-shared keys: a PSK user gets none.

use std::fmt::Write as _;

use base64::Engine as _;
use ike::{DhGroup, Encr, Prf};

use super::{split_subnets, Format, IkeServer, Preferred, ProfileError};
use crate::api::client_config::ClientPolicy;
use crate::registry::{IkeUserAuth, IkeUserRecord};

/// Windows' names for the suite: (cipher and ESP transform, integrity check, DH group).
pub fn windows_names(p: &Preferred) -> (String, &'static str, &'static str) {
    let cipher = match p.encr {
        Encr::AesGcm16 { key_bits } => format!("GCMAES{key_bits}"),
        Encr::AesCbc { key_bits } => format!("AES{key_bits}"),
        Encr::ChaCha20Poly1305 => "GCMAES256".into(),
    };
    let integrity = match p.prf {
        Prf::HmacSha1 => "SHA196",
        Prf::HmacSha256 => "SHA256",
        Prf::HmacSha384 => "SHA384",
        Prf::HmacSha512 => "SHA384",
    };
    let group = match p.dh {
        DhGroup::Ecp256 => "ECP256",
        DhGroup::Ecp384 => "ECP384",
        DhGroup::Modp2048 => "Group14",
        DhGroup::Modp1024 => "Group2",
        DhGroup::Curve25519 => "ECP256",
    };
    (cipher, integrity, group)
}

/// PowerShell's single-quoted string of `s`.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The script of `user`.
pub fn script(
    server: &IkeServer,
    user: &IkeUserRecord,
    policy: &ClientPolicy,
    p: &Preferred,
) -> Result<String, ProfileError> {
    let method = match &user.auth {
        IkeUserAuth::Eap(_) => "Eap",
        IkeUserAuth::Certificate => "MachineCertificate",
        IkeUserAuth::Psk(_) => {
            return Err(ProfileError::Unsupported(
                "Windows' built-in IKEv2 client takes no pre-shared key: make this user a \
                 password user (--password) or a certificate user (--certificate)"
                    .into(),
            ))
        }
    };
    let Some(ca) = &server.ca else {
        return Err(ProfileError::Unsupported(
            "the server has no certificate ([ike] certificate), which Windows checks it by".into(),
        ));
    };
    let name = format!("xgate {}", server.identity);
    let (cipher, integrity, group) = windows_names(p);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# xgate VPN for {} (IKEv2 user {}), made by xgate.",
        user.name, user.id
    );
    for line in Format::Powershell.instructions() {
        let _ = writeln!(out, "# {line}");
    }
    let _ = write!(
        out,
        "$ErrorActionPreference = 'Stop'\n\
         $Name = {name}\n\
         $CaFile = Join-Path $env:TEMP 'xgate-ca.cer'\n\
         [System.IO.File]::WriteAllBytes($CaFile, [System.Convert]::FromBase64String({ca}))\n\
         Import-Certificate -FilePath $CaFile -CertStoreLocation Cert:\\LocalMachine\\Root | Out-Null\n\
         Add-VpnConnection -Name $Name -ServerAddress {address} -TunnelType Ikev2 \
         -AuthenticationMethod {method} -EncryptionLevel Required -RememberCredential{split} -Force\n\
         Set-VpnConnectionIPsecConfiguration -ConnectionName $Name \
         -AuthenticationTransformConstants {cipher} -CipherTransformConstants {cipher} \
         -EncryptionMethod {cipher} -IntegrityCheckMethod {integrity} -DHGroup {group} \
         -PfsGroup {pfs} -Force\n",
        name = quoted(&name),
        ca = quoted(&base64::engine::general_purpose::STANDARD.encode(ca)),
        address = quoted(&server.address),
        split = if split_subnets(policy).is_empty() { "" } else { " -SplitTunneling" },
        pfs = if group == "ECP256" { "ECP256" } else { "PFS2048" },
    );
    for subnet in split_subnets(policy) {
        let _ = writeln!(
            out,
            "Add-VpnConnectionRoute -ConnectionName $Name -DestinationPrefix {}",
            quoted(&subnet)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    fn user(auth: IkeUserAuth) -> IkeUserRecord {
        IkeUserRecord {
            id: 4,
            name: "walter".into(),
            group: "default".into(),
            identity: "walter".into(),
            auth,
            addresses: vec![],
            created_at: 0,
        }
    }

    fn server() -> IkeServer {
        IkeServer {
            address: "vpn.example.com".into(),
            identity: "vpn.example.com".into(),
            ca: Some(vec![1, 2, 3]),
        }
    }

    fn policy(nets: &[&str]) -> ClientPolicy {
        ClientPolicy {
            allowed_ips: nets.iter().map(|n| n.parse().expect("net")).collect(),
            dns: vec![],
            mtu: 1420,
            keepalive: 25,
        }
    }

    #[test]
    fn the_script_names_the_preferred_suite_and_the_split_routes() {
        let p = Preferred::server();
        let eap = user(IkeUserAuth::Eap(Zeroizing::new([0; 16])));
        let s = script(&server(), &eap, &policy(&["10.77.0.0/16"]), &p).expect("script");
        assert!(
            s.contains("-TunnelType Ikev2 -AuthenticationMethod Eap"),
            "{s}"
        );
        assert!(s.contains("-CipherTransformConstants GCMAES256"), "{s}");
        assert!(
            s.contains("-IntegrityCheckMethod SHA256 -DHGroup ECP256"),
            "{s}"
        );
        assert!(s.contains("-SplitTunneling"), "{s}");
        assert!(s.contains("-DestinationPrefix '10.77.0.0/16'"), "{s}");
        assert_eq!(
            s.lines().filter(|l| l.starts_with("# ")).count(),
            4,
            "a title, three steps"
        );
        let full = script(&server(), &eap, &policy(&["0.0.0.0/0"]), &p).expect("script");
        assert!(!full.contains("SplitTunneling") && !full.contains("Add-VpnConnectionRoute"));
        let psk = user(IkeUserAuth::Psk(Zeroizing::new(vec![1; 16])));
        let refused = script(&server(), &psk, &policy(&[]), &p).expect_err("no PSK on Windows");
        assert!(refused.to_string().contains("--password"), "{refused}");
    }
}
