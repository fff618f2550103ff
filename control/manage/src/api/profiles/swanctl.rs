//! An IKEv2 user's strongSwan client configuration (`swanctl.conf`): the connection to this
//! server with its identity, the user's identity and key (or certificate, whose files the
//! user places beside it; or a password the user types in, as xgate keeps only its hash), a
//! virtual address asked for in
//! both families, what goes into the tunnel (the group's client allowed IPs), and the
//! proposals the server takes. ESP goes in UDP (`encap = yes`), which passes NATs and which
//! strongSwan's userspace ESP (kernel-libipsec) needs.

use std::fmt::Write as _;

use super::IkeServer;
use crate::api::client_config::ClientPolicy;
use crate::registry::{IkeUserAuth, IkeUserRecord};

/// The host part of an `host:port` endpoint (brackets of an IPv6 address removed).
pub fn endpoint_host(endpoint: &str) -> String {
    let host = match endpoint.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => endpoint,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Escapes a value for a double-quoted swanctl string.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `swanctl.conf` of `user` under `policy`.
pub fn swanctl_conf(server: &IkeServer, user: &IkeUserRecord, policy: &ClientPolicy) -> String {
    let mut ts: Vec<String> = policy.allowed_ips.iter().map(ToString::to_string).collect();
    if ts.is_empty() {
        ts.push("0.0.0.0/0".into());
        ts.push("::/0".into());
    }
    let (auth, credentials) = match &user.auth {
        IkeUserAuth::Psk(psk) => (
            "psk".to_string(),
            format!(
                "secrets {{\n  ike-xgate {{\n    id-1 = {id}\n    id-2 = {server}\n    \
                 secret = {secret}\n  }}\n}}\n",
                id = quoted(&user.identity),
                server = quoted(&server.identity),
                secret = quoted(&String::from_utf8_lossy(psk)),
            ),
        ),
        IkeUserAuth::Eap(_) => (
            format!("eap-mschapv2\n      eap_id = {}", quoted(&user.identity)),
            format!(
                "# The server's CA certificate goes in x509ca/ beside this file. xgate keeps only a\n\
                 # hash of the password: replace PASSWORD below with it.\n\
                 secrets {{\n  eap-xgate {{\n    id = {id}\n    secret = \"PASSWORD\"\n  }}\n}}\n",
                id = quoted(&user.identity),
            ),
        ),
        IkeUserAuth::Certificate => (
            format!("pubkey\n      certs = {}.pem", user.name),
            format!(
                "# The certificate goes in x509/{name}.pem, its key in private/{name}.key and \
                 the\n# server's CA certificate in x509ca/, beside this file (`xgate pki \
                 client` writes them).\n",
                name = user.name
            ),
        ),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "# strongSwan client configuration of {name} (IKEv2 user {id}), made by xgate.\n\
         # Load it with: swanctl --load-all --file <this file>; connect with:\n\
         # swanctl --initiate --child xgate\n\
         connections {{\n  xgate {{\n    version = 2\n    remote_addrs = {addr}\n    \
         vips = 0.0.0.0, ::\n    encap = yes\n    \
         proposals = aes256gcm16-prfsha256-x25519, chacha20poly1305-prfsha256-x25519, \
         aes256gcm16-prfsha384-ecp256\n    \
         local {{\n      auth = {auth}\n      id = {id_text}\n    }}\n    \
         remote {{\n      auth = {remote_auth}\n      id = {server_id}\n    }}\n    \
         children {{\n      xgate {{\n        remote_ts = {ts}\n        \
         esp_proposals = aes256gcm16, chacha20poly1305\n      }}\n    }}\n  }}\n}}\n\
         {credentials}",
        name = user.name,
        id = user.id,
        addr = server.address,
        id_text = quoted(&user.identity),
        remote_auth = match user.auth {
            IkeUserAuth::Psk(_) => "psk",
            // A certificate or password user checks the server by its certificate.
            IkeUserAuth::Certificate | IkeUserAuth::Eap(_) => "pubkey",
        },
        server_id = quoted(&server.identity),
        ts = ts.join(", "),
    );
    out
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    #[test]
    fn names_server_user_key_and_reach() {
        let user = IkeUserRecord {
            id: 4,
            name: "alice".into(),
            group: "default".into(),
            identity: "alice@example.com".into(),
            auth: IkeUserAuth::Psk(Zeroizing::new(b"a \"quoted\" key of hers".to_vec())),
            addresses: vec!["10.77.0.4".parse().expect("ip")],
            created_at: 0,
        };
        let policy = ClientPolicy {
            allowed_ips: vec!["10.77.0.0/16".parse().expect("net")],
            dns: Vec::new(),
            mtu: 1420,
            keepalive: 0,
        };
        let server = IkeServer {
            address: endpoint_host("[2001:db8::1]:51820"),
            identity: "vpn.example.com".into(),
            ca: None,
        };
        let text = swanctl_conf(&server, &user, &policy);
        assert!(text.contains("remote_addrs = 2001:db8::1\n"), "{text}");
        assert!(text.contains("id = \"alice@example.com\""), "{text}");
        assert!(text.contains("id = \"vpn.example.com\""), "{text}");
        assert!(text.contains("remote_ts = 10.77.0.0/16\n"), "{text}");
        assert!(
            text.contains(r#"secret = "a \"quoted\" key of hers""#),
            "{text}"
        );
        let carol = IkeUserRecord {
            name: "carol".into(),
            auth: IkeUserAuth::Certificate,
            ..user
        };
        let text = swanctl_conf(&server, &carol, &policy);
        assert!(
            text.contains("auth = pubkey\n      certs = carol.pem\n"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(endpoint_host("vpn.example.com:51820"), "vpn.example.com");
        assert_eq!(endpoint_host("192.0.2.1"), "192.0.2.1");
    }
}
