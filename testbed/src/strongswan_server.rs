//! strongSwan's charon as a road-warrior server (kernel-libipsec), the side-by-side peer of
//! xgate's IKEv2 responder in the bench and the loadtest: one connection per way its users
//! log in (pre-shared keys, certificates, EAP-MSCHAPv2), addresses from a pool, the server's
//! tunnel address on its loopback.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};

use crate::netns::Netns;
use crate::strongswan::{place_credentials, CertFiles, Strongswan};

/// What the server answers with, and whom.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// The address it answers on.
    pub local_addr: String,
    /// Its IKE identity.
    pub identity: String,
    /// Its certificate (with the CA the users' certificates are checked against); needed by
    /// certificate and EAP users.
    pub cert: Option<CertFiles>,
    /// IKE proposals, as swanctl writes them.
    pub proposals: String,
    /// ESP proposals.
    pub esp_proposals: String,
    /// The users' addresses, as a range ("10.77.0.2-10.77.15.250").
    pub pool: String,
    /// Its tunnel address (a /32 on its loopback) and what the users reach through it.
    pub tunnel: (String, String),
    /// Users by pre-shared key: (identity, key); the server authenticates by key too.
    pub psk_users: Vec<(String, String)>,
    /// Users by certificate: the pattern their identities match ("*@cert.example.com").
    pub cert_users: Option<String>,
    /// Users by EAP-MSCHAPv2: the pattern their IKE identities match, then (EAP identity,
    /// password) each.
    pub eap_users: Option<(String, Vec<(String, String)>)>,
}

impl ServerConfig {
    /// The whole swanctl.conf; an identity swanctl would not read as one word is an error.
    pub fn swanctl_conf(&self) -> Result<String> {
        self.check()?;
        let mut connections = String::new();
        if !self.psk_users.is_empty() {
            self.connection(&mut connections, "rw-psk", "psk", ("psk", "%any"));
        }
        if let Some(pattern) = &self.cert_users {
            self.connection(&mut connections, "rw-cert", "pubkey", ("pubkey", pattern));
        }
        if let Some((pattern, _)) = &self.eap_users {
            let remote = ("eap-mschapv2\n      eap_id = %any", pattern.as_str());
            self.connection(&mut connections, "rw-eap", "pubkey", remote);
        }
        let mut secrets = String::new();
        for (i, (identity, key)) in self.psk_users.iter().enumerate() {
            let _ = write!(
                secrets,
                "  ike-{i} {{\n    id-1 = {identity}\n    id-2 = {}\n    secret = {}\n  }}\n",
                self.identity,
                hex(key)
            );
        }
        for (i, (user, password)) in self.eap_users.iter().flat_map(|e| &e.1).enumerate() {
            let _ = write!(
                secrets,
                "  eap-{i} {{\n    id = {user}\n    secret = {}\n  }}\n",
                hex(password)
            );
        }
        Ok(format!(
            "connections {{\n{connections}}}\npools {{\n  users {{\n    addrs = {}\n  }}\n}}\n\
             secrets {{\n{secrets}}}\n",
            self.pool
        ))
    }

    /// Every identity, pattern and address is one plain word (secrets go as hex).
    fn check(&self) -> Result<()> {
        let plain = |v: &str| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@._*%:-/,".contains(c))
        };
        let eap = self.eap_users.iter().flat_map(|(p, users)| {
            std::iter::once(p.as_str()).chain(users.iter().map(|u| u.0.as_str()))
        });
        let words = [&self.local_addr, &self.identity, &self.pool]
            .into_iter()
            .map(String::as_str)
            .chain(self.psk_users.iter().map(|u| u.0.as_str()))
            .chain(self.cert_users.iter().map(String::as_str))
            .chain(eap);
        for w in words {
            if !plain(w) {
                bail!("{w:?} is not one plain word swanctl.conf can carry unquoted");
            }
        }
        if (self.cert_users.is_some() || self.eap_users.is_some()) && self.cert.is_none() {
            bail!("certificate and EAP users need the server's certificate");
        }
        Ok(())
    }

    /// One connection: the server authenticating by `local`, the users by `remote` (the
    /// method, then the pattern of their identities).
    fn connection(&self, out: &mut String, name: &str, local: &str, remote: (&str, &str)) {
        let certs = match (&self.cert, local) {
            (Some(c), "pubkey") => format!("\n      certs = {}.pem", c.name),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "  {name} {{\n    version = 2\n    local_addrs = {addr}\n    pools = users\n    \
             proposals = {ike}\n    local {{\n      auth = {local}{certs}\n      id = {id}\n    \
             }}\n    remote {{\n      auth = {method}\n      id = {pattern}\n    }}\n    \
             children {{\n      rw {{\n        local_ts = {ts}\n        esp_proposals = {esp}\n      \
             }}\n    }}\n  }}\n",
            addr = self.local_addr,
            ike = self.proposals,
            id = self.identity,
            method = remote.0,
            pattern = remote.1,
            ts = self.tunnel.1,
            esp = self.esp_proposals,
        );
    }

    /// Puts the tunnel address on `ns`'s loopback and starts charon in `ns` with its files in
    /// `dir`, logging as a deployed server does.
    pub fn start(&self, ns: &Netns, dir: &Path) -> Result<Strongswan> {
        ns.ip(&["addr", "add", &format!("{}/32", self.tunnel.0), "dev", "lo"])?;
        if let Some(cert) = &self.cert {
            place_credentials(dir, cert)?;
        }
        Strongswan::start_server(ns, dir, &self.swanctl_conf()?)
    }
}

/// A secret as swanctl takes it in hex (`0x...`): nothing in it needs quoting.
fn hex(secret: &str) -> String {
    let digits: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    format!("0x{digits}")
}

#[cfg(test)]
mod tests {
    use super::ServerConfig;

    #[test]
    fn each_method_gets_its_connection_and_every_user_a_secret() {
        let c = ServerConfig {
            local_addr: "10.0.0.1".into(),
            identity: "vpn.example.com".into(),
            proposals: "aes256gcm16-prfsha256-x25519".into(),
            esp_proposals: "aes256gcm16".into(),
            pool: "10.77.0.2-10.77.0.9".into(),
            tunnel: ("10.77.0.1".into(), "10.77.0.0/16".into()),
            psk_users: vec![("u0@example.com".into(), "k0".into())],
            eap_users: Some((
                "*@eap.example.com".into(),
                vec![("e0@eap.example.com".into(), "pw 0".into())],
            )),
            ..ServerConfig::default()
        };
        let err = c.swanctl_conf().expect_err("no certificate");
        assert!(err.to_string().contains("certificate"), "{err}");
        let c = ServerConfig {
            cert: Some(crate::CertFiles {
                name: "server".into(),
                cert: "server.pem".into(),
                key: "server.key".into(),
                ca: "ca.pem".into(),
            }),
            ..c
        };
        let text = c.swanctl_conf().expect("written");
        assert!(
            text.contains("rw-psk {") && text.contains("rw-eap {"),
            "{text}"
        );
        assert!(!text.contains("rw-cert"), "no certificate users: {text}");
        assert!(text.contains("id-1 = u0@example.com") && text.contains("secret = 0x6b30"));
        assert!(text.contains("id = e0@eap.example.com") && text.contains("0x70772030"));
        assert!(text.contains("eap_id = %any") && text.contains("addrs = 10.77.0.2-10.77.0.9"));
        // Braces balance: swanctl reads it (the bench and loadtest load it for real).
        let opens = text.matches('{').count();
        assert_eq!(opens, text.matches('}').count(), "{text}");
        let bad = ServerConfig {
            psk_users: vec![("u1@example.com }\n evil {".into(), "k".into())],
            ..c
        };
        assert!(
            bad.swanctl_conf().is_err(),
            "an identity that breaks the file is refused"
        );
    }
}
