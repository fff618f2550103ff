//! An Apple configuration profile (`.mobileconfig`, a property list) for macOS and iOS: the
//! server's CA (`com.apple.security.root`) and a managed IKEv2 VPN (`com.apple.vpn.managed`)
//! naming the server, its identity, how the user logs in (EAP-MSCHAPv2 with the user's name,
//! the device asking for the password; a pre-shared key; or a certificate the user installs),
//! and the preferred suite for IKE and ESP, so the device uses AES-GCM rather than its CBC
//! defaults. Written by the `plist` crate.

use plist::{Dictionary, Value};

use super::{split_subnets, uuid, Format, IkeServer, Preferred, ProfileError};
use crate::api::client_config::ClientPolicy;
use crate::registry::{IkeUserAuth, IkeUserRecord};

/// The reverse-DNS prefix of every payload identifier.
const PREFIX: &str = "net.xgate.vpn";

/// Apple's names for the suite: "AES-256-GCM", "SHA2-256", group number.
fn suite(p: &Preferred) -> Value {
    let mut d = Dictionary::new();
    d.insert(
        "EncryptionAlgorithm".into(),
        format!("AES-{}-GCM", p.key_bits()).into(),
    );
    d.insert(
        "IntegrityAlgorithm".into(),
        format!("SHA2-{}", p.hash_bits()).into(),
    );
    d.insert(
        "DiffieHellmanGroup".into(),
        Value::Integer(i64::from(p.dh.id()).into()),
    );
    d.insert("LifeTimeInMinutes".into(), Value::Integer(1440.into()));
    Value::Dictionary(d)
}

/// A payload's common keys.
fn payload(kind: &str, id: &str, uuid: String, name: &str) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert("PayloadType".into(), kind.into());
    d.insert("PayloadIdentifier".into(), id.into());
    d.insert("PayloadUUID".into(), uuid.into());
    d.insert("PayloadVersion".into(), Value::Integer(1.into()));
    d.insert("PayloadDisplayName".into(), name.into());
    d
}

/// The IKEv2 dictionary of the VPN payload.
fn ikev2(
    server: &IkeServer,
    user: &IkeUserRecord,
    p: &Preferred,
) -> Result<Dictionary, ProfileError> {
    let mut d = Dictionary::new();
    d.insert("RemoteAddress".into(), server.address.as_str().into());
    d.insert("RemoteIdentifier".into(), server.identity.as_str().into());
    d.insert("LocalIdentifier".into(), user.identity.as_str().into());
    match &user.auth {
        IkeUserAuth::Eap(_) => {
            // The server by its certificate, the user by EAP; the device asks for the
            // password (none is in the file: xgate keeps only its hash).
            d.insert("AuthenticationMethod".into(), "None".into());
            d.insert("ExtendedAuthEnabled".into(), Value::Integer(1.into()));
            d.insert("AuthName".into(), user.identity.as_str().into());
        }
        IkeUserAuth::Psk(psk) => {
            d.insert("AuthenticationMethod".into(), "SharedSecret".into());
            d.insert(
                "SharedSecret".into(),
                String::from_utf8_lossy(psk).into_owned().into(),
            );
        }
        IkeUserAuth::Certificate => {
            d.insert("AuthenticationMethod".into(), "Certificate".into());
        }
    }
    if server.ca.is_none() && !matches!(user.auth, IkeUserAuth::Psk(_)) {
        return Err(ProfileError::Unsupported(
            "the server has no certificate ([ike] certificate), which this user's device \
             checks it by"
                .into(),
        ));
    }
    d.insert("IKESecurityAssociationParameters".into(), suite(p));
    d.insert("ChildSecurityAssociationParameters".into(), suite(p));
    d.insert("DeadPeerDetectionRate".into(), "Medium".into());
    d.insert("DisableMOBIKE".into(), Value::Integer(0.into()));
    d.insert("EnablePFS".into(), Value::Integer(1.into()));
    Ok(d)
}

/// The profile of `user`, as the XML property list the devices read.
pub fn mobileconfig(
    server: &IkeServer,
    user: &IkeUserRecord,
    policy: &ClientPolicy,
    p: &Preferred,
) -> Result<Vec<u8>, ProfileError> {
    let name = format!("xgate {}", server.identity);
    let mut content = Vec::new();
    if let Some(ca) = &server.ca {
        let mut root = payload(
            "com.apple.security.root",
            &format!("{PREFIX}.ca"),
            uuid(server, user, "ca"),
            "xgate VPN CA",
        );
        root.insert("PayloadContent".into(), Value::Data(ca.clone()));
        content.push(Value::Dictionary(root));
    }
    let mut vpn = payload(
        "com.apple.vpn.managed",
        &format!("{PREFIX}.ikev2"),
        uuid(server, user, "vpn"),
        &name,
    );
    vpn.insert("UserDefinedName".into(), name.as_str().into());
    vpn.insert("VPNType".into(), "IKEv2".into());
    let mut ike = ikev2(server, user, p)?;
    let subnets = split_subnets(policy);
    if !subnets.is_empty() {
        // A split tunnel: only the group's subnets go in (they come in the CP reply too).
        ike.insert("IncludeAllNetworks".into(), Value::Integer(0.into()));
    }
    vpn.insert("IKEv2".into(), Value::Dictionary(ike));
    content.push(Value::Dictionary(vpn));
    let mut top = payload(
        "Configuration",
        &format!("{PREFIX}.{}", user.id),
        uuid(server, user, "profile"),
        &name,
    );
    top.insert(
        "PayloadDescription".into(),
        Format::Mobileconfig.instructions().join("\n").into(),
    );
    top.insert("PayloadContent".into(), Value::Array(content));
    let mut out = Vec::new();
    Value::Dictionary(top)
        .to_writer_xml(&mut out)
        .map_err(|e| ProfileError::Unsupported(format!("the profile could not be written: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    fn user(auth: IkeUserAuth) -> IkeUserRecord {
        IkeUserRecord {
            id: 3,
            name: "maria".into(),
            group: "default".into(),
            identity: "maria".into(),
            auth,
            addresses: vec!["10.77.0.3".parse().expect("ip")],
            created_at: 0,
        }
    }

    fn server() -> IkeServer {
        IkeServer {
            address: "vpn.example.com".into(),
            identity: "vpn.example.com".into(),
            ca: Some(vec![0x30, 0x82, 1, 2]),
        }
    }

    fn policy() -> ClientPolicy {
        ClientPolicy {
            allowed_ips: vec!["10.77.0.0/16".parse().expect("net")],
            dns: vec![],
            mtu: 1420,
            keepalive: 25,
        }
    }

    /// The file parses back as a property list, with the CA and the VPN payload's fields.
    #[test]
    fn a_password_user_s_profile_is_a_property_list_with_its_payloads() {
        let p = Preferred::server();
        let bytes = mobileconfig(
            &server(),
            &user(IkeUserAuth::Eap(Zeroizing::new([1; 16]))),
            &policy(),
            &p,
        )
        .expect("made");
        let v = Value::from_reader_xml(&bytes[..]).expect("a property list");
        let top = v.as_dictionary().expect("a dictionary");
        assert_eq!(top["PayloadType"].as_string(), Some("Configuration"));
        let description = top["PayloadDescription"].as_string().expect("text");
        assert_eq!(description.lines().count(), 3, "three lines for the user");
        let content = top["PayloadContent"].as_array().expect("payloads");
        let ca = content[0].as_dictionary().expect("CA");
        assert_eq!(
            ca["PayloadType"].as_string(),
            Some("com.apple.security.root")
        );
        assert_eq!(
            ca["PayloadContent"].as_data(),
            Some(&[0x30, 0x82, 1, 2][..])
        );
        let vpn = content[1].as_dictionary().expect("VPN");
        assert_eq!(
            vpn["PayloadType"].as_string(),
            Some("com.apple.vpn.managed")
        );
        assert_eq!(vpn["VPNType"].as_string(), Some("IKEv2"));
        let ike = vpn["IKEv2"].as_dictionary().expect("IKEv2");
        assert_eq!(ike["RemoteAddress"].as_string(), Some("vpn.example.com"));
        assert_eq!(ike["RemoteIdentifier"].as_string(), Some("vpn.example.com"));
        assert_eq!(ike["AuthenticationMethod"].as_string(), Some("None"));
        assert_eq!(ike["ExtendedAuthEnabled"].as_signed_integer(), Some(1));
        assert_eq!(ike["AuthName"].as_string(), Some("maria"));
        assert!(!ike.contains_key("AuthPassword"), "no password in the file");
        for sa in [
            "IKESecurityAssociationParameters",
            "ChildSecurityAssociationParameters",
        ] {
            let s = ike[sa].as_dictionary().expect(sa);
            assert_eq!(s["EncryptionAlgorithm"].as_string(), Some("AES-256-GCM"));
            assert_eq!(s["IntegrityAlgorithm"].as_string(), Some("SHA2-256"));
            assert_eq!(s["DiffieHellmanGroup"].as_signed_integer(), Some(19));
        }
        // Stable identifiers: the same file twice.
        let again = mobileconfig(
            &server(),
            &user(IkeUserAuth::Eap(Zeroizing::new([1; 16]))),
            &policy(),
            &p,
        )
        .expect("made");
        assert_eq!(bytes, again);
    }

    #[test]
    fn a_psk_user_gets_its_key_and_a_password_user_needs_a_server_certificate() {
        let p = Preferred::server();
        let psk = IkeUserAuth::Psk(Zeroizing::new(b"0123456789abcdef".to_vec()));
        let bytes = mobileconfig(&server(), &user(psk), &policy(), &p).expect("made");
        let v = Value::from_reader_xml(&bytes[..]).expect("plist");
        let vpn = &v.as_dictionary().expect("d")["PayloadContent"]
            .as_array()
            .expect("a")[1];
        let ike = vpn.as_dictionary().expect("d")["IKEv2"]
            .as_dictionary()
            .expect("d");
        assert_eq!(ike["SharedSecret"].as_string(), Some("0123456789abcdef"));
        let no_cert = IkeServer {
            ca: None,
            ..server()
        };
        let eap = user(IkeUserAuth::Eap(Zeroizing::new([1; 16])));
        assert!(mobileconfig(&no_cert, &eap, &policy(), &p).is_err());
    }
}
