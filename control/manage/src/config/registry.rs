//! The `[registry]` and `[[pool]]` sections: where the peer registry lives and which
//! prefixes its address pools hand out.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::registry::{Location, Pool};
use plane::config::{err, ConfigError, STATE_DIR};

/// Seconds a released tunnel address rests before reuse, unless a pool says otherwise.
pub const DEFAULT_HOLD_SECS: u64 = 3600;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[registry]` as written.
pub struct RegistrySection {
    path: Option<PathBuf>,
    url: Option<String>,
    take_over: Option<bool>,
    insecure_plaintext: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[pool]]` as written.
pub struct PoolSection {
    name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    hold_secs: Option<u64>,
}

/// Where the registry is and what its pools hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// The database: an SQLite file (the default) or PostgreSQL.
    pub location: Location,
    /// On a shared registry: start handshakes toward a silent node's recent users.
    pub take_over: bool,
    /// Address pools ("default" serves groups without a pool of their own).
    pub pools: Vec<Pool>,
}

/// The registry settings: on with the embedded defaults or a `[registry]` section, off
/// otherwise (peers then come from the file and `wg set` only).
pub(super) fn registry_settings(
    section: Option<RegistrySection>,
    pools: Vec<PoolSection>,
    addresses: &[IpNet],
    base: &Path,
    name: &str,
    defaults: bool,
) -> Result<Option<RegistrySettings>, ConfigError> {
    let Some(section) = section.or_else(|| defaults.then(RegistrySection::default)) else {
        if !pools.is_empty() {
            return Err(err(
                "pool",
                "address pools are set but there is no [registry] section",
                "add [registry] (optionally with path = \"...\") to keep peers in the registry",
            ));
        }
        return Ok(None);
    };
    let take_over = section.take_over.unwrap_or(true);
    let location = match (section.path, section.url) {
        (Some(_), Some(_)) => {
            return Err(err(
                "registry",
                "both path (an SQLite file) and url (PostgreSQL) are set",
                "keep path for a registry on this machine, or url for one shared by a cluster",
            ))
        }
        (None, Some(url)) => Location::Postgres(postgres_url(
            url,
            section.insecure_plaintext.unwrap_or(false),
        )?),
        (path, None) => Location::File(path.map_or_else(
            || Path::new(STATE_DIR).join(format!("{name}.db")),
            |p| base.join(p),
        )),
    };
    let reserved: Vec<IpAddr> = addresses.iter().map(|a| a.addr()).collect();
    let pools = if pools.is_empty() {
        vec![default_pool(addresses, reserved)?]
    } else {
        pools
            .into_iter()
            .enumerate()
            .map(|(i, p)| pool(i, p, &reserved))
            .collect::<Result<Vec<_>, _>>()?
    };
    for (i, p) in pools.iter().enumerate() {
        if pools[..i].iter().any(|q| q.name == p.name) {
            return Err(err(
                format!("pool[{i}].name"),
                format!("pool {:?} is defined twice", p.name),
                "give each [[pool]] its own name",
            ));
        }
    }
    Ok(Some(RegistrySettings {
        location,
        pools,
        take_over,
    }))
}

/// Checks a PostgreSQL connection string (the server itself is reached at start): its form,
/// and that it names no server across a network, since xgate does not speak TLS to
/// PostgreSQL yet and the registry holds preshared keys and IKEv2 secrets; `insecure`
/// (`insecure_plaintext = true`) allows one on a private network.
fn postgres_url(url: String, insecure: bool) -> Result<String, ConfigError> {
    let shown = crate::registry::without_password(&url);
    let form_ok = url.starts_with("postgres://")
        || url.starts_with("postgresql://")
        || (!url.contains("://") && url.contains('='));
    let parsed = form_ok
        .then(|| url.parse::<postgres::Config>().ok())
        .flatten();
    let Some(config) = parsed else {
        return Err(err(
            "registry.url",
            format!("{shown:?} is not a PostgreSQL connection string"),
            "write it as \"postgres://user@host/database\" or \"host=/run/postgresql \
             dbname=xgate\"",
        ));
    };
    let loopback = |name: &str| {
        let name = name.trim_end_matches('.');
        name.eq_ignore_ascii_case("localhost")
            || name.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
    };
    // Where the connection goes: hostaddr when given (it overrides the host's name),
    // else the hosts' names (a Unix socket's directory is local).
    let remote: Vec<String> = if config.get_hostaddrs().is_empty() {
        config
            .get_hosts()
            .iter()
            .filter_map(|h| match h {
                postgres::config::Host::Tcp(name) if !loopback(name) => Some(name.clone()),
                _ => None,
            })
            .collect()
    } else {
        config
            .get_hostaddrs()
            .iter()
            .filter(|a| !a.is_loopback())
            .map(ToString::to_string)
            .collect()
    };
    if !remote.is_empty() && !insecure {
        return Err(err(
            "registry.url",
            format!(
                "PostgreSQL at {} would carry preshared keys and IKEv2 secrets in clear (xgate \
                 does not speak TLS to PostgreSQL yet)",
                remote.join(", ")
            ),
            "use a Unix socket or a loopback address (a WireGuard or SSH tunnel to the database \
             host), or set registry.insecure_plaintext = true on a private network",
        ));
    }
    Ok(url)
}

/// The pool the interface's own prefixes make: clients get addresses beside the server's.
fn default_pool(addresses: &[IpNet], reserved: Vec<IpAddr>) -> Result<Pool, ConfigError> {
    let v4 = addresses
        .iter()
        .find(|a| matches!(a, IpNet::V4(_)))
        .map(IpNet::trunc);
    let v6 = addresses
        .iter()
        .find(|a| matches!(a, IpNet::V6(_)))
        .map(IpNet::trunc);
    if v4.is_none() && v6.is_none() {
        return Err(err(
            "pool",
            "the registry needs an address pool and the interface has no address to derive one from",
            "add interface.address, or a [[pool]] with ipv4 and/or ipv6 prefixes",
        ));
    }
    Ok(Pool {
        name: "default".into(),
        v4,
        v6,
        reserved,
        hold_secs: DEFAULT_HOLD_SECS,
    })
}

fn pool(i: usize, p: PoolSection, reserved: &[IpAddr]) -> Result<Pool, ConfigError> {
    let field = |f: &str| format!("pool[{i}].{f}");
    let prefix = |text: Option<String>, f: &str, v6: bool| -> Result<Option<IpNet>, ConfigError> {
        let Some(text) = text else { return Ok(None) };
        let example = if v6 { "fd77::/64" } else { "10.77.0.0/16" };
        let net: IpNet = text.parse().map_err(|_| {
            err(
                field(f),
                format!("{text:?} is not a prefix"),
                format!("write it like \"{example}\""),
            )
        })?;
        if matches!(net, IpNet::V6(_)) != v6 {
            return Err(err(
                field(f),
                format!("{text:?} is the wrong address family"),
                format!("{f} takes a prefix like \"{example}\""),
            ));
        }
        if net.trunc() != net {
            return Err(err(
                field(f),
                format!("{text:?} has host bits set"),
                format!("use the network address: \"{}\"", net.trunc()),
            ));
        }
        Ok(Some(net))
    };
    let v4 = prefix(p.ipv4, "ipv4", false)?;
    let v6 = prefix(p.ipv6, "ipv6", true)?;
    if v4.is_none() && v6.is_none() {
        return Err(err(
            format!("pool[{i}]"),
            "the pool has neither an ipv4 nor an ipv6 prefix",
            "add ipv4 = \"10.78.0.0/16\" and/or ipv6 = \"fd78::/64\"",
        ));
    }
    Ok(Pool {
        name: p.name.unwrap_or_else(|| "default".into()),
        v4,
        v6,
        reserved: reserved.to_vec(),
        hold_secs: p.hold_secs.unwrap_or(DEFAULT_HOLD_SECS),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::parse;
    use crate::registry::Location;

    #[test]
    fn a_registry_section_turns_it_on_with_a_pool_beside_the_interface() {
        assert_eq!(parse("").expect("no registry").registry, None);
        let s = parse("[registry]\npath = \"peers.db\"\n").expect("registry");
        let r = s.registry.expect("on");
        assert_eq!(
            r.location,
            Location::File("/etc/xgate/peers.db".into()),
            "relative to the config"
        );
        let p = &r.pools[0];
        assert_eq!(p.name, "default");
        assert_eq!(p.v4, Some("10.77.0.0/16".parse().expect("net")));
        assert_eq!(p.v6, Some("fd77::/64".parse().expect("net")));
        assert_eq!(
            p.reserved,
            [
                "10.77.0.1".parse::<std::net::IpAddr>().expect("ip"),
                "fd77::1".parse().expect("ip")
            ]
        );
        assert_eq!(p.hold_secs, super::DEFAULT_HOLD_SECS);
        let default_path = parse("[registry]\n")
            .expect("default path")
            .registry
            .expect("on");
        assert_eq!(
            default_path.location,
            Location::File("/var/lib/xgate/xgate0.db".into())
        );
        let pg = parse(
            "[registry]\nurl = \"postgres://xgate@db.example/xgate\"\ninsecure_plaintext = true\n",
        )
        .expect("a PostgreSQL registry")
        .registry
        .expect("on");
        assert_eq!(
            pg.location,
            Location::Postgres("postgres://xgate@db.example/xgate".into())
        );
        for local in [
            "postgres://xgate@LOCALHOST/xgate",
            "host=db.example hostaddr=127.0.0.1 dbname=xgate",
            "postgres://xgate@127.0.0.1:5433/xgate",
            "host=/run/postgresql dbname=xgate",
        ] {
            let text = format!("[registry]\nurl = \"{local}\"\n");
            assert!(parse(&text).is_ok(), "{local}");
        }
    }

    #[test]
    fn pools_are_read_and_checked() {
        let s = parse(
            "[registry]\n[[pool]]\nname = \"sales\"\nipv4 = \"10.78.0.0/16\"\nhold_secs = 60\n\
             [[pool]]\nipv6 = \"fd79::/64\"\n",
        )
        .expect("pools");
        let pools = s.registry.expect("on").pools;
        assert_eq!(pools.len(), 2);
        assert_eq!((pools[0].name.as_str(), pools[0].hold_secs), ("sales", 60));
        assert_eq!((pools[1].name.as_str(), pools[1].v4), ("default", None));
        for (extra, want) in [
            ("[[pool]]\nipv4 = \"10.78.0.0/16\"\n", "no [registry] section"),
            ("[registry]\n[[pool]]\nipv4 = \"fd78::/64\"\n", "wrong address family"),
            ("[registry]\n[[pool]]\nipv4 = \"10.78.0.1/16\"\n", "host bits set"),
            ("[registry]\n[[pool]]\nipv4 = \"ten\"\n", "is not a prefix"),
            ("[registry]\n[[pool]]\nname = \"x\"\n", "neither an ipv4 nor an ipv6"),
            (
                "[registry]\n[[pool]]\nipv4 = \"10.78.0.0/16\"\n[[pool]]\nipv4 = \"10.79.0.0/16\"\n",
                "defined twice",
            ),
            ("[registry]\nfile = \"x\"\n", "unknown field"),
            (
                "[registry]\npath = \"a.db\"\nurl = \"postgres://h/db\"\n",
                "both path (an SQLite file) and url (PostgreSQL)",
            ),
            (
                "[registry]\nurl = \"mysql://u:secret@h/db\"\n",
                "\"mysql://u:***@h/db\" is not a PostgreSQL connection string",
            ),
            (
                "[registry]\nurl = \"postgres://u@db.example/x\"\n",
                "PostgreSQL at db.example would carry preshared keys",
            ),
            (
                "[registry]\nurl = \"host=localhost hostaddr=10.1.2.3 dbname=x\"\n",
                "PostgreSQL at 10.1.2.3 would carry",
            ),
        ] {
            let e = parse(extra).expect_err(extra);
            assert!(e.contains(want), "{extra:?}: {e}");
        }
    }
}
