//! `[[group]]` sections: what the client configurations of one group of peers contain, where
//! it differs from `[api]`: full or split tunnel, DNS servers, MTU, keepalive. A peer's group
//! is the one it was created with (`xgate peer add --group`, the API's `group` field).

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use plane::config::{err, parse_list, ConfigError, MAX_MTU};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[group]]` as written.
pub struct GroupSection {
    name: Option<String>,
    tunnel: Option<String>,
    client_allowed_ips: Option<Vec<String>>,
    dns: Option<Vec<String>>,
    persistent_keepalive: Option<u16>,
    mtu: Option<usize>,
}

/// One group's client-configuration policy; `None` takes the `[api]` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicy {
    /// The group's name.
    pub name: String,
    /// What its clients route into the tunnel.
    pub client_allowed_ips: Option<Vec<IpNet>>,
    /// DNS servers pushed to its clients.
    pub dns: Option<Vec<IpAddr>>,
    /// Keepalive in its client configurations (0 = off).
    pub persistent_keepalive: Option<u16>,
    /// Tunnel MTU in its client configurations.
    pub mtu: Option<usize>,
}

/// Everything into the tunnel: what `tunnel = "full"` means.
fn full_tunnel() -> Vec<IpNet> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Validates the `[[group]]` sections (only meaningful with the API, which hands out client
/// configurations).
pub(super) fn group_policies(
    sections: Vec<GroupSection>,
    api: bool,
) -> Result<Vec<GroupPolicy>, ConfigError> {
    if !sections.is_empty() && !api {
        return Err(err(
            "group",
            "groups shape the client configurations the API hands out, and there is no registry",
            "add [registry] (the API comes with it), or remove the [[group]] sections",
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(sections.len());
    for (i, g) in sections.into_iter().enumerate() {
        let at = |field: &str| format!("group[{i}].{field}");
        let name = g.name.unwrap_or_default();
        if name.trim().is_empty() {
            return Err(err(
                at("name"),
                "missing",
                "name the group, e.g. name = \"staff\"",
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(err(
                at("name"),
                format!("group {name:?} is defined twice"),
                "merge the two sections",
            ));
        }
        let listed = g
            .client_allowed_ips
            .map(|list| {
                parse_list::<IpNet>(
                    &at("client_allowed_ips"),
                    &list,
                    "a prefix",
                    "write it like \"10.0.0.0/8\" or \"fd00::/8\"",
                )
            })
            .transpose()?;
        let client_allowed_ips = match (g.tunnel.as_deref(), listed) {
            (Some("full"), None) => Some(full_tunnel()),
            (Some("full"), Some(_)) => {
                return Err(err(
                    at("tunnel"),
                    "\"full\" sends everything into the tunnel, and client_allowed_ips lists prefixes too",
                    "keep one: tunnel = \"full\", or tunnel = \"split\" with client_allowed_ips",
                ))
            }
            (Some("split") | None, listed) => listed,
            (Some(other), _) => {
                return Err(err(
                    at("tunnel"),
                    format!("{other:?} is not a tunnel mode"),
                    "use \"full\" (everything) or \"split\" (client_allowed_ips, default: the pools)",
                ))
            }
        };
        if let Some(mtu) = g.mtu {
            if !(1280..=MAX_MTU).contains(&mtu) {
                return Err(err(
                    at("mtu"),
                    format!("{mtu} is out of range"),
                    format!("use 1280..={MAX_MTU}; 1420 suits most links"),
                ));
            }
        }
        let dns = g
            .dns
            .map(|list| {
                parse_list::<IpAddr>(
                    &at("dns"),
                    &list,
                    "an IP address",
                    "write it like \"10.77.0.1\" or \"fd77::1\"",
                )
            })
            .transpose()?;
        out.push(GroupPolicy {
            name,
            client_allowed_ips,
            dns,
            persistent_keepalive: g.persistent_keepalive,
            mtu: g.mtu,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testing::parse;

    #[test]
    fn groups_set_their_own_policy_and_mistakes_name_the_field() {
        let s = parse(
            "[registry]\n[[group]]\nname = \"staff\"\ntunnel = \"full\"\ndns = [\"10.77.0.53\"]\n\
             [[group]]\nname = \"vendors\"\nclient_allowed_ips = [\"10.10.0.0/16\"]\nmtu = 1380\n\
             persistent_keepalive = 25\n",
        )
        .expect("groups");
        let groups = s.api.expect("api").groups;
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0].client_allowed_ips,
            Some(vec![
                "0.0.0.0/0".parse().expect("net"),
                "::/0".parse().expect("net")
            ])
        );
        assert_eq!(groups[0].mtu, None, "unset: the [api] value applies");
        assert_eq!(
            (groups[1].mtu, groups[1].persistent_keepalive),
            (Some(1380), Some(25))
        );
        for (extra, want) in [
            ("[[group]]\nname = \"a\"\n", "there is no registry"),
            ("[registry]\n[[group]]\ntunnel = \"full\"\n", "group[0].name: missing"),
            (
                "[registry]\n[[group]]\nname = \"a\"\n[[group]]\nname = \"a\"\n",
                "defined twice",
            ),
            ("[registry]\n[[group]]\nname = \"a\"\ntunnel = \"half\"\n", "not a tunnel mode"),
            (
                "[registry]\n[[group]]\nname = \"a\"\ntunnel = \"full\"\nclient_allowed_ips = [\"10.0.0.0/8\"]\n",
                "keep one",
            ),
            ("[registry]\n[[group]]\nname = \"a\"\nmtu = 100\n", "group[0].mtu"),
            ("[registry]\n[[group]]\nname = \"a\"\ndns = [\"x\"]\n", "group[0].dns[0]"),
            ("[registry]\n[[group]]\nname = \"a\"\ncolour = 1\n", "unknown field"),
        ] {
            let e = parse(extra).expect_err(extra);
            assert!(e.contains(want), "{extra:?}: {e}");
        }
    }
}
