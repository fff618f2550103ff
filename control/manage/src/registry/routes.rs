//! Prefixes routed to a peer beyond its own addresses (a network behind it): they must not
//! overlap an address pool (whose addresses xgate hands out: a nested prefix would take
//! other users' traffic), and they follow the config file's rule among peers
//! (`plane::config::same_route`: no prefix for two peers, nested ones by longest match).

use ipnet::IpNet;

use super::store::{params, Sql};
use super::{Pool, RegistryError};
use plane::config::same_route;

/// True if `a` and `b` share any address.
fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Refuses `wanted` for peer `id` (`None` for one not created yet) if a prefix overlaps a
/// pool or is an active peer's prefix too.
pub(super) fn check_routes(
    tx: &mut impl Sql,
    pools: &[Pool],
    id: Option<i64>,
    wanted: &[IpNet],
) -> Result<(), RegistryError> {
    if wanted.is_empty() {
        return Ok(());
    }
    for net in wanted {
        for pool in pools {
            if let Some(p) = pool.v4.iter().chain(&pool.v6).find(|p| overlap(net, p)) {
                return Err(RegistryError::RouteOverlap {
                    prefix: *net,
                    other: format!("address pool {:?} ({p})", pool.name),
                });
            }
        }
    }
    // Only peers with prefixes of their own: usually few, whatever the registry's size.
    let rows = tx.query(
        "SELECT id, allowed_ips FROM peers \
         WHERE allowed_ips != '' AND revoked_at IS NULL AND id != ?1",
        params![id.unwrap_or(-1)],
    )?;
    for row in rows {
        let (other, text) = (row.int(0)?, row.text(1)?);
        for theirs in text.split(',').filter_map(|s| s.parse::<IpNet>().ok()) {
            if let Some(net) = wanted.iter().find(|n| same_route(n, &theirs)) {
                return Err(RegistryError::RouteOverlap {
                    prefix: *net,
                    other: format!("peer {other}'s {theirs}"),
                });
            }
        }
    }
    Ok(())
}
