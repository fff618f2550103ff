//! `[[peer]]` sections: each peer's key, preshared key, allowed IPs, endpoint and keepalive,
//! validated against the others (one key, one owner per prefix) and our own key.

use std::collections::HashMap;
use std::fs;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use ipnet::IpNet;
use proto::{PresharedKey, PublicKey};

use super::{err, ConfigError, PeerSection};
use crate::update::PeerUpdate;

pub(super) fn peer_update(
    i: usize,
    p: PeerSection,
    base: &Path,
    own_public: Option<&PublicKey>,
    seen_keys: &mut HashMap<PublicKey, usize>,
    seen_prefixes: &mut HashMap<IpNet, usize>,
) -> Result<(Option<String>, PeerUpdate), ConfigError> {
    let field = |f: &str| format!("peer[{i}].{f}");
    let text = p.public_key.ok_or_else(|| {
        err(
            field("public_key"),
            "missing",
            "every [[peer]] needs the public_key its client prints with `wg pubkey`",
        )
    })?;
    let public_key = PublicKey::from_base64(&text).map_err(|e| {
        err(
            field("public_key"),
            format!("not a WireGuard key: {e}"),
            "copy the client's `wg pubkey` output",
        )
    })?;
    if own_public == Some(&public_key) {
        return Err(err(
            field("public_key"),
            "is this interface's own public key",
            "use the client's key, not the server's",
        ));
    }
    if let Some(other) = seen_keys.insert(public_key, i) {
        return Err(err(
            field("public_key"),
            format!("same key as peer[{other}]"),
            "list each peer once",
        ));
    }
    let mut update = PeerUpdate::new(public_key);
    update.replace_allowed_ips = true;
    update.preshared_key = match (p.preshared_key, p.preshared_key_file) {
        (Some(_), Some(_)) => {
            return Err(err(
                field("preshared_key"),
                "both preshared_key and preshared_key_file are set",
                "keep only one",
            ))
        }
        (Some(t), None) => Some(Some(PresharedKey::from_base64(&t).map_err(|e| {
            err(
                field("preshared_key"),
                format!("not a key: {e}"),
                "generate one with `xgate genpsk`",
            )
        })?)),
        (None, Some(f)) => {
            let path = base.join(f);
            let t = fs::read_to_string(&path).map_err(|e| {
                err(
                    field("preshared_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                    "create it with `xgate genpsk`",
                )
            })?;
            Some(Some(PresharedKey::from_base64(&t).map_err(|e| {
                err(
                    field("preshared_key_file"),
                    format!("{} holds no key: {e}", path.display()),
                    "write `xgate genpsk` output into it",
                )
            })?))
        }
        (None, None) => None,
    };
    for (j, a) in p.allowed_ips.iter().enumerate() {
        let net: IpNet = a.parse().map_err(|_| {
            err(
                format!("peer[{i}].allowed_ips[{j}]"),
                format!("{a:?} is not a prefix"),
                "write it like \"10.77.0.2/32\" or \"fd77::2/128\"",
            )
        })?;
        // Keyed by the truncated prefix: `same_route` as a map lookup.
        let net = net.trunc();
        match seen_prefixes.insert(net, i) {
            Some(other) if other != i => {
                return Err(err(
                    format!("peer[{i}].allowed_ips[{j}]"),
                    format!("{net} is also allowed for peer[{other}]"),
                    "a prefix routes to exactly one peer: remove one of them",
                ))
            }
            _ => update.allowed_ips.push(net),
        }
    }
    if let Some(e) = p.endpoint {
        update.endpoint = Some(resolve_endpoint(&e).map_err(|problem| {
            err(
                field("endpoint"),
                problem,
                "write it as host:port, e.g. \"192.0.2.1:51820\"",
            )
        })?);
    }
    update.persistent_keepalive = p.persistent_keepalive;
    Ok((p.name, update))
}

/// The one rule for prefixes routed to peers, for the config file and the registry alike: a
/// prefix routes to exactly one peer, so two peers may not hold the same prefix; nested
/// prefixes are fine (the longest match wins, as in WireGuard).
pub fn same_route(a: &IpNet, b: &IpNet) -> bool {
    a.trunc() == b.trunc()
}

/// Resolves `host:port` (numeric or by name).
pub fn resolve_endpoint(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}
