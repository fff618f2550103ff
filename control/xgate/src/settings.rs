//! The whole configuration file: parsed once here, strictly (an unknown section or field is
//! an error), then validated by the crate that owns each section: the plane's `[interface]`
//! and `[[peer]]` and `[ike]`, the management service's `[registry]`, `[[pool]]`, `[api]`,
//! `[[group]]`.

use std::fs;
use std::path::Path;

use manage::config::{
    ApiSection, GroupSection, InterfaceFacts, ManageSections, ManageSettings, PoolSection,
    RegistrySection,
};
use plane::config::{
    err, ConfigError, IkeConfig, IkeSection, InterfaceSection, InterfaceSettings, PeerSection,
};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    interface: InterfaceSection,
    #[serde(default, rename = "peer")]
    peers: Vec<PeerSection>,
    registry: Option<RegistrySection>,
    api: Option<ApiSection>,
    #[serde(default, rename = "pool")]
    pools: Vec<PoolSection>,
    #[serde(default, rename = "group")]
    groups: Vec<GroupSection>,
    ike: Option<IkeSection>,
}

/// Everything `xgate up` needs, validated.
#[derive(Debug)]
pub struct Settings {
    /// The interface and its configured peers.
    pub interface: InterfaceSettings,
    /// The registry and the HTTP API.
    pub manage: ManageSettings,
    /// The IKEv2 responder.
    pub ike: IkeConfig,
}

impl Settings {
    /// The embedded defaults: what `xgate up` runs with when given no config file.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::from_file(FileConfig::default(), Path::new("."), true)
    }

    /// A bare interface configured later through its socket (no registry, no API).
    pub fn bare(name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            interface: InterfaceSettings::bare(name)?,
            manage: ManageSettings::default(),
            ike: IkeConfig {
                enabled: Some(false),
                ..IkeConfig::from_section(None)?
            },
        })
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|e| {
            err(
                path.display().to_string(),
                format!("cannot read config file: {e}"),
                "check the path, or run `xgate init` to write a default one",
            )
        })?;
        let mut settings = Self::parse(&text, path.parent().unwrap_or(Path::new(".")))?;
        if let Some(api) = settings.manage.api.as_mut() {
            api.source = std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string();
        }
        Ok(settings)
    }

    /// Parses config text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(" at line {}", text[..s.start].lines().count().max(1)))
                .unwrap_or_default();
            err(
                "config",
                format!("{}{at}", e.message()),
                "see the configuration reference in README.md",
            )
        })?;
        Self::from_file(file, base, false)
    }

    fn from_file(file: FileConfig, base: &Path, defaults: bool) -> Result<Self, ConfigError> {
        let interface =
            InterfaceSettings::from_sections(file.interface, file.peers, base, defaults)?;
        let facts = InterfaceFacts {
            name: &interface.name,
            addresses: &interface.addresses,
            base,
            defaults,
        };
        let sections = ManageSections {
            registry: file.registry,
            api: file.api,
            pools: file.pools,
            groups: file.groups,
        };
        let manage = ManageSettings::from_sections(sections, &facts)?;
        let ike = IkeConfig::from_section(file.ike)?;
        Ok(Self {
            interface,
            manage,
            ike,
        })
    }
}

#[cfg(test)]
mod tests {
    use plane::config::{DEFAULT_INTERFACE, DEFAULT_LISTEN_PORT, DEFAULT_MTU};
    use proto::PrivateKey;

    use super::*;
    use crate::template::default_config_text;

    #[test]
    fn init_template_parses_to_the_defaults() {
        let k = PrivateKey::from_bytes([7; 32]);
        let s = Settings::parse(&default_config_text(&k), Path::new(".")).expect("template parses");
        let i = &s.interface;
        assert_eq!(i.name, DEFAULT_INTERFACE);
        assert_eq!(i.listen_port, DEFAULT_LISTEN_PORT);
        assert_eq!(i.mtu, DEFAULT_MTU);
        assert_eq!(i.addresses.len(), 2);
        assert_eq!(
            i.private_key.as_ref().map(|p| p.to_base64()),
            Some(k.to_base64())
        );
        assert!(i.workers >= 1);
        assert!(s.manage.registry.is_some(), "the template keeps a registry");
    }

    #[test]
    fn unknown_sections_and_fields_are_refused() {
        let key = PrivateKey::from_bytes([1; 32]).to_base64();
        let interface = format!("[interface]\nprivate_key = \"{key}\"\n");
        for text in [
            format!("{interface}[bogus]\n"),
            format!("{interface}bogus = 1\n"),
            format!("{interface}[registry]\nfile = \"x\"\n"),
        ] {
            let e = Settings::parse(&text, Path::new(".")).expect_err(&text);
            assert_eq!(e.field, "config", "{text:?}: {e}");
            assert!(e.problem.contains("unknown"), "{text:?}: {e}");
        }
    }

    /// The test harness's typed config (testbed::config) writes only fields this parser
    /// knows, with the types it expects: every field set, read strictly.
    #[test]
    fn the_harness_config_builder_writes_what_xgate_reads() {
        use testbed::config::{Api, Group, Ike, Peer, Pool, Registry, XgateConfig};
        let key = PrivateKey::from_bytes([3; 32]);
        let mut c = XgateConfig::server("xt0", &key, 51820, &["10.77.0.1/16", "fd77::1/64"])
            .pinned(&[0, 1]);
        let i = &mut c.interface;
        i.private_key_file = Some("k".into());
        i.mtu = Some(1400);
        i.fwmark = Some(7);
        i.handshake_threads = Some(2);
        i.backend = Some("auto".into());
        i.outer_interfaces = vec!["eth0".into()];
        i.xdp_mode = Some("generic".into());
        c.peers.push(Peer {
            name: Some("p".into()),
            public_key: key.public_key().to_base64(),
            preshared_key: Some(key.to_base64()),
            preshared_key_file: Some("psk".into()),
            allowed_ips: vec!["10.77.0.2/32".into()],
            endpoint: Some("10.0.0.1:51820".into()),
            persistent_keepalive: Some(25),
        });
        c.registry = Some(Registry {
            path: Some("r.db".into()),
            url: None,
            take_over: None,
        });
        c.api = Some(Api {
            listen: Some("127.0.0.1:9180".into()),
            token_file: Some("t".into()),
            endpoint: Some("vpn.example:51820".into()),
            dns: vec!["10.77.0.53".into()],
            persistent_keepalive: Some(5),
            client_allowed_ips: vec!["10.0.0.0/8".into()],
            metrics_need_token: Some(true),
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            insecure_plaintext: Some(false),
            capacity_report: Some("bench-results".into()),
        });
        c.pools.push(Pool {
            name: Some("default".into()),
            ipv4: Some("10.77.0.0/16".into()),
            ipv6: Some("fd77::/64".into()),
            hold_secs: Some(60),
        });
        c.groups.push(Group {
            name: "g".into(),
            tunnel: Some("full".into()),
            client_allowed_ips: vec!["10.0.0.0/8".into()],
            dns: vec!["10.77.0.53".into()],
            persistent_keepalive: Some(5),
            mtu: Some(1380),
        });
        c.ike = Some(Ike {
            enabled: Some(true),
            port: Some(500),
            nat_port: Some(4500),
            encapsulation: Some("always".into()),
            identity: Some("vpn.example.com".into()),
            dpd_secs: Some(30),
            retransmit_ms: Some(2000),
            retransmit_tries: Some(5),
            certificate: Some("/etc/xgate/pki/server.pem".into()),
            private_key: Some("/etc/xgate/pki/server.key".into()),
            ca: Some("/etc/xgate/pki/ca.pem".into()),
            crl: Some("/etc/xgate/pki/crl.pem".into()),
            legacy_windows: Some(false),
            lockout_after: Some(5),
            lockout_secs: Some(300),
        });
        let text = c.to_toml().expect("serialises");
        let file: FileConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(file.peers.len(), 1);
        assert_eq!((file.pools.len(), file.groups.len()), (1, 1));
        assert!(file.registry.is_some() && file.api.is_some() && file.ike.is_some());

        // And what the rigs write (no key file, registry in a scratch directory) validates.
        let dir = std::env::temp_dir();
        let client = PrivateKey::from_bytes([4; 32]).public_key();
        let rig = XgateConfig::server("xt0", &key, 51820, &["10.77.0.1/16"])
            .pinned(&[0])
            .peer(&client.to_base64(), &["10.77.0.2/32"]);
        let text = rig.to_toml().expect("serialises");
        let s = Settings::parse(&text, &dir).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.interface.peers.len(), 1);
        assert_eq!(s.interface.workers, 1);
    }
}
