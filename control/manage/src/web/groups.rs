//! Groups: each one's client policy (full or split tunnel, what clients route into it, DNS,
//! MTU, keepalive), the pool its users' addresses come from, and how many users it has.
//! Groups are configured (`[[group]]`, `[[pool]]`), so the page shows them; it changes none.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::guard::{PageError, SignedIn};
use super::{grouped, listed, render, Nav, Web};
use crate::api::blocking;
use crate::registry::ListFilter;

/// One group's row.
struct GroupRow {
    name: String,
    tunnel: &'static str,
    routes: String,
    dns: String,
    mtu: usize,
    keepalive: String,
    pool: String,
    users: String,
}

/// The groups page.
#[derive(askama::Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    nav: Nav,
    rows: Vec<GroupRow>,
}

/// GET /groups
pub async fn page(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
) -> Result<Response, PageError> {
    let api = web.api.clone();
    let rows = blocking(move || {
        let template = api.client_template();
        let mut registry = api.registry_handle();
        api.group_names()
            .iter()
            .map(|name| {
                let policy = template.policy(name);
                let full = policy.allowed_ips.iter().any(|n| n.prefix_len() == 0);
                let pool = registry.pool_of_group(name).map_or_else(
                    || "-".to_string(),
                    |p| {
                        let nets: Vec<String> =
                            p.v4.iter()
                                .chain(p.v6.iter())
                                .map(ToString::to_string)
                                .collect();
                        format!("{} ({})", p.name, listed(&nets))
                    },
                );
                let filter = ListFilter {
                    group: Some(name.clone()),
                    revoked: false,
                    ..ListFilter::default()
                };
                let users = registry.count_matching(&filter)?;
                Ok(GroupRow {
                    name: name.clone(),
                    tunnel: if full { "full" } else { "split" },
                    routes: listed(&policy.allowed_ips),
                    dns: listed(&policy.dns),
                    mtu: policy.mtu,
                    keepalive: match policy.keepalive {
                        0 => "off".into(),
                        s => format!("{s} s"),
                    },
                    pool,
                    users: grouped(users),
                })
            })
            .collect::<Result<Vec<_>, crate::api::ApiError>>()
    })
    .await?;
    Ok(render(&GroupsPage {
        nav: Nav::new(&session, "groups"),
        rows,
    }))
}
