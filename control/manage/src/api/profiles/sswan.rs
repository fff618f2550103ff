//! A profile for strongSwan's Android app (`.sswan`, JSON): the server's address, identity
//! and CA, the user's EAP identity (or its certificate's identity), and the preferred suite
//! in strongSwan's notation. The app takes no pre-shared keys: a PSK user gets none.

use base64::Engine as _;
use ike::{DhGroup, Encr, Prf};
use serde_json::json;

use super::{split_subnets, uuid, IkeServer, Preferred, ProfileError};
use crate::api::client_config::ClientPolicy;
use crate::registry::{IkeUserAuth, IkeUserRecord};

/// strongSwan's names for the suite: ("aes256gcm16-prfsha256-ecp256", "aes256gcm16").
pub fn strongswan_names(p: &Preferred) -> (String, String) {
    let encr = match p.encr {
        Encr::AesGcm16 { key_bits } => format!("aes{key_bits}gcm16"),
        Encr::AesCbc { key_bits } => format!("aes{key_bits}"),
        Encr::ChaCha20Poly1305 => "chacha20poly1305".into(),
    };
    let prf = match p.prf {
        Prf::HmacSha1 => "prfsha1",
        Prf::HmacSha256 => "prfsha256",
        Prf::HmacSha384 => "prfsha384",
        Prf::HmacSha512 => "prfsha512",
    };
    let group = match p.dh {
        DhGroup::Ecp256 => "ecp256",
        DhGroup::Ecp384 => "ecp384",
        DhGroup::Modp2048 => "modp2048",
        DhGroup::Modp1024 => "modp1024",
        DhGroup::Curve25519 => "x25519",
    };
    (format!("{encr}-{prf}-{group}"), encr)
}

/// The profile of `user`.
pub fn sswan(
    server: &IkeServer,
    user: &IkeUserRecord,
    policy: &ClientPolicy,
    p: &Preferred,
) -> Result<Vec<u8>, ProfileError> {
    let (kind, local) = match &user.auth {
        IkeUserAuth::Eap(_) => ("ikev2-eap", json!({ "eap_id": user.identity })),
        IkeUserAuth::Certificate => ("ikev2-cert", json!({ "id": user.identity })),
        IkeUserAuth::Psk(_) => {
            return Err(ProfileError::Unsupported(
                "strongSwan's Android app takes no pre-shared key: make this user a password \
                 user (--password) or a certificate user (--certificate)"
                    .into(),
            ))
        }
    };
    let mut remote = json!({ "addr": server.address, "id": server.identity });
    if let Some(ca) = &server.ca {
        remote["cert"] = json!(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    let (ike, esp) = strongswan_names(p);
    let mut profile = json!({
        "uuid": uuid(server, user, "sswan").to_lowercase(),
        "name": format!("xgate {}", server.identity),
        "type": kind,
        "remote": remote,
        "local": local,
        "ike-proposal": ike,
        "esp-proposal": esp,
    });
    let subnets = split_subnets(policy);
    if !subnets.is_empty() {
        profile["split-tunneling"] = json!({ "subnets": subnets.join(" ") });
    }
    serde_json::to_vec_pretty(&profile)
        .map_err(|e| ProfileError::Unsupported(format!("the profile could not be written: {e}")))
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    #[test]
    fn a_password_user_s_profile_names_server_user_and_suite() {
        let server = IkeServer {
            address: "10.201.1.1".into(),
            identity: "vpn.example.com".into(),
            ca: Some(vec![1, 2, 3]),
        };
        let user = IkeUserRecord {
            id: 5,
            name: "ana".into(),
            group: "default".into(),
            identity: "ana".into(),
            auth: IkeUserAuth::Eap(Zeroizing::new([0; 16])),
            addresses: vec![],
            created_at: 0,
        };
        let policy = ClientPolicy {
            allowed_ips: vec!["10.77.0.0/16".parse().expect("net")],
            dns: vec![],
            mtu: 1420,
            keepalive: 25,
        };
        let bytes = sswan(&server, &user, &policy, &Preferred::server()).expect("made");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(v["type"], "ikev2-eap");
        assert_eq!(v["remote"]["addr"], "10.201.1.1");
        assert_eq!(v["remote"]["id"], "vpn.example.com");
        assert_eq!(v["remote"]["cert"], "AQID");
        assert_eq!(v["local"]["eap_id"], "ana");
        assert_eq!(v["ike-proposal"], "aes256gcm16-prfsha256-ecp256");
        assert_eq!(v["esp-proposal"], "aes256gcm16");
        assert_eq!(v["split-tunneling"]["subnets"], "10.77.0.0/16");
    }
}
