//! What an IKEv2 user is granted, from its registry record and its group's client policy:
//! how it authenticates, its virtual addresses, the DNS servers, and what it may reach (the group's
//! client allowed IPs, as split-tunnel subnets unless they are everything). The IKE
//! responder gets these; it never reads the registry.

use std::net::IpAddr;

use ike::{Assignment, Grant, Identity, TrafficSelector, UserAuth};
use plane::ike::IkeUser;

use crate::api::ClientPolicy;
use crate::registry::{IkeUserAuth, IkeUserRecord};

/// Prefix length given with a virtual IPv6 address (the client's own /128 within the pool).
const V6_PREFIX: u8 = 128;

/// The responder's view of `user` under `policy`.
pub fn ike_user(user: &IkeUserRecord, policy: &ClientPolicy) -> IkeUser {
    let v4 = user.addresses.iter().find_map(|a| match a {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    });
    let v6 = user.addresses.iter().find_map(|a| match a {
        IpAddr::V6(v6) => Some((*v6, V6_PREFIX)),
        IpAddr::V4(_) => None,
    });
    let everything = |n: &ipnet::IpNet| n.prefix_len() == 0;
    // A full tunnel names no subnets: the client then sends everything (RFC 7296 §3.15.1).
    let subnets = if policy.allowed_ips.iter().any(everything) {
        Vec::new()
    } else {
        policy
            .allowed_ips
            .iter()
            .map(|n| (n.network(), n.prefix_len()))
            .collect()
    };
    let reach = policy
        .allowed_ips
        .iter()
        .map(|n| TrafficSelector::prefix(n.network(), n.prefix_len()))
        .collect();
    IkeUser {
        identity: Identity::from_text(&user.identity),
        name: user.name.clone(),
        grant: Grant {
            auth: match &user.auth {
                IkeUserAuth::Psk(k) => UserAuth::Psk(k.clone()),
                IkeUserAuth::Certificate => UserAuth::Certificate,
                IkeUserAuth::Eap(h) => UserAuth::Eap(ike::eap::mschapv2::NtHash::from_bytes(**h)),
            },
            assignment: Assignment {
                v4,
                v6,
                dns: policy.dns.clone(),
                subnets,
            },
            reach,
        },
    }
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    fn record() -> IkeUserRecord {
        IkeUserRecord {
            id: 1,
            name: "alice".into(),
            group: "default".into(),
            identity: "alice@example.com".into(),
            auth: IkeUserAuth::Psk(Zeroizing::new(vec![7; 32])),
            addresses: vec![
                "10.77.0.5".parse().expect("v4"),
                "fd77::5".parse().expect("v6"),
            ],
            created_at: 0,
        }
    }

    fn policy(allowed: &[&str]) -> ClientPolicy {
        ClientPolicy {
            allowed_ips: allowed.iter().map(|a| a.parse().expect("net")).collect(),
            dns: vec!["10.77.0.1".parse().expect("dns")],
            mtu: 1420,
            keepalive: 25,
        }
    }

    #[test]
    fn a_split_tunnel_names_its_subnets_and_a_full_tunnel_none() {
        let split = ike_user(&record(), &policy(&["10.77.0.0/16", "fd77::/64"]));
        let a = &split.grant.assignment;
        assert_eq!(a.v4, Some("10.77.0.5".parse().expect("v4")));
        assert_eq!(a.v6, Some(("fd77::5".parse().expect("v6"), 128)));
        assert_eq!(a.subnets.len(), 2);
        assert_eq!(split.grant.reach.len(), 2);
        assert_eq!(split.identity.display(), "alice@example.com");
        let full = ike_user(&record(), &policy(&["0.0.0.0/0", "::/0"]));
        assert!(full.grant.assignment.subnets.is_empty());
        assert_eq!(full.grant.reach.len(), 2);
    }
}
