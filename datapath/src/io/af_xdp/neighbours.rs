//! Link paths to peers no datagram has come from yet (a configured endpoint, a client whose
//! handshake came in before any of its transport data): the route the kernel would take and
//! the next hop's link address from its neighbour table, asked over netlink on a miss and
//! kept a while. Where the kernel has no complete neighbour entry the datagram goes through
//! the kernel's socket instead, which resolves it; a later lookup then finds the entry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::io::LinkPath;
use crate::kernel::netlink::Netlink;

/// How long a found path is trusted before it is asked again.
const FOUND_FOR: Duration = Duration::from_secs(30);
/// How long a destination with no route of ours is remembered (each miss costs a netlink
/// round trip).
const NOT_OURS_FOR: Duration = Duration::from_secs(1);
/// How long an unresolved next hop is remembered: the packet that missed has made the kernel
/// resolve it, which takes about a round trip; until asked again every packet to it goes
/// through the kernel (a second of a bulk transfer was 70,000 packets).
const UNRESOLVED_FOR: Duration = Duration::from_millis(20);
/// Destinations remembered at most.
const CAPACITY: usize = 4096;

/// Why no path was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMiss {
    /// The kernel routes the address out of none of the interfaces asked about (or not at
    /// all, or to the host itself).
    NotOurs,
    /// The route leaves by one of them, but the next hop's link address is not known yet.
    Unresolved,
}

/// A worker's cache of looked-up paths.
#[derive(Default)]
pub struct Neighbours {
    netlink: Option<Netlink>,
    cache: HashMap<IpAddr, (Result<LinkPath, PathMiss>, Instant)>,
}

impl Neighbours {
    /// The path to `to` through one of `interfaces` (index to our link address on it), as
    /// the kernel's tables give it.
    pub fn path_to(
        &mut self,
        to: IpAddr,
        now: Instant,
        interfaces: impl Fn(u32) -> Option<[u8; 6]>,
    ) -> Result<LinkPath, PathMiss> {
        if let Some((path, until)) = self.cache.get(&to) {
            if now < *until {
                return *path;
            }
        }
        let path = self.look_up(to, &interfaces);
        if self.cache.len() >= CAPACITY {
            // Expired entries first; if none, any one (a miss costs a lookup, not a packet).
            self.cache.retain(|_, (_, until)| now < *until);
            if self.cache.len() >= CAPACITY {
                if let Some(key) = self.cache.keys().next().copied() {
                    self.cache.remove(&key);
                }
            }
        }
        let keep = match path {
            Ok(_) => FOUND_FOR,
            Err(PathMiss::NotOurs) => NOT_OURS_FOR,
            Err(PathMiss::Unresolved) => UNRESOLVED_FOR,
        };
        self.cache.insert(to, (path, now + keep));
        path
    }

    fn look_up(
        &mut self,
        to: IpAddr,
        interfaces: &dyn Fn(u32) -> Option<[u8; 6]>,
    ) -> Result<LinkPath, PathMiss> {
        if self.netlink.is_none() {
            self.netlink = Netlink::open()
                .map_err(|e| tracing::debug!("netlink for neighbour lookups: {e}"))
                .ok();
        }
        let netlink = self.netlink.as_mut().ok_or(PathMiss::NotOurs)?;
        let route = netlink
            .route_to(to)
            .ok()
            .flatten()
            .ok_or(PathMiss::NotOurs)?;
        let local_mac = interfaces(route.ifindex).ok_or(PathMiss::NotOurs)?;
        let local = route.source.ok_or(PathMiss::NotOurs)?;
        let next_hop = netlink
            .neighbour(route.ifindex, route.gateway.unwrap_or(to))
            .ok()
            .flatten()
            .ok_or(PathMiss::Unresolved)?;
        Ok(LinkPath {
            ifindex: route.ifindex,
            local,
            local_mac,
            next_hop,
        })
    }
}
