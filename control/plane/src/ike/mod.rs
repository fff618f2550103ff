//! IKEv2 in the handshake plane: the responder on UDP 500 and 4500 that authenticates users
//! with a pre-shared key each, a certificate or a password (EAP-MSCHAPv2) and gives them
//! their addresses, by the `ike` crate's rules.
//!
//! - `engine`: the responder's state, without sockets or threads (tests drive it directly).
//! - `intake`: IKE_SA_INIT through the per-source fair admission before any key exchange.
//! - `service`: its thread, the sockets' readers, and the handle the management service
//!   and the daemon use.
//! - `counters`: negotiations by outcome, drops by reason.
//! - `slot`: the responder's handle for the management service, started on demand.
//! - `crl_watch`: the CRL file read again when it changes.
//! - `lockout`: password users locked for a while after repeated failures.
//!
//! ESP is the workers': each CHILD_SA's keys go to the control plane as an `EspChange`,
//! which routes the user's addresses to its tunnel and installs the SA on the worker its
//! SPI names.

mod counters;
mod crl_watch;
mod engine;
mod intake;
mod lockout;
mod service;
mod slot;
#[cfg(test)]
mod tests;

pub use counters::IkeCounters;
pub use crl_watch::{CrlSource, CrlWatch};
pub use engine::{IkeEngine, Outgoing};
pub use lockout::Lockout;
pub use service::{IkeHandle, IkeService, IkeState, IkeStats};
pub use slot::{IkeSlot, IkeStarter};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ike::{CertAuth, Grant, Identity, Policy, Timing};

/// The standard IKE port.
pub const IKE_PORT: u16 = 500;
/// The NAT-traversal port (IKE with a non-ESP marker, and UDP-encapsulated ESP).
pub const NAT_T_PORT: u16 = 4500;
/// Half-open SAs above which IKE_SA_INIT must carry a cookie.
pub const COOKIE_THRESHOLD: usize = 1024;

/// How the responder runs.
#[derive(Debug, Clone)]
pub struct IkeSettings {
    /// The IKE port (500; 0 = any free port, for tests).
    pub port: u16,
    /// The NAT-T port (4500; 0 = any free port, for tests).
    pub nat_port: u16,
    /// This server's identity, as IKE_AUTH sends it.
    pub local_id: Identity,
    /// The IKE SA proposals taken.
    pub ike: Policy,
    /// The ESP proposals taken.
    pub esp: Policy,
    /// The SAs' timers.
    pub timing: Timing,
    /// Half-open SAs above which a cookie is asked for.
    pub cookie_threshold: usize,
    /// The datapath workers ESP is spread over (each SA's SPIs name its worker).
    pub workers: usize,
    /// The server's certificate and the CAs client certificates must lead to, when set.
    pub certs: Option<Arc<CertAuth>>,
    /// The CRL file to read again when it changes, when `[ike] crl` is set.
    pub crl_source: Option<CrlSource>,
    /// Raw ESP may be negotiated: `[ike] encapsulation = "when-nat"`, and (the daemon sees to
    /// it) AF_XDP steers IP protocol 50. NAT is then reported honestly and a peer with none
    /// between sends ESP unencapsulated. Otherwise a NAT is always claimed, so every peer
    /// encapsulates ESP in UDP (RFC 7296 §2.23 lets a host that takes ESP only in UDP do
    /// this).
    pub raw_esp: bool,
    /// Wrong passwords in a row after which a password user is locked.
    pub lockout_after: u32,
    /// How long a lock lasts.
    pub lockout_for: Duration,
    /// The CA certificate (DER) clients check this server's certificate by, for the
    /// profiles handed to them: `[ike] ca`'s first, else the top of the server's chain.
    pub client_ca: Option<Vec<u8>>,
}

/// A user IKE_AUTH may authenticate: its identity, its name in the registry, and what it
/// is granted.
#[derive(Debug, Clone)]
pub struct IkeUser {
    /// The identity it authenticates as.
    pub identity: Identity,
    /// Its name, for logs and status.
    pub name: String,
    /// Its key, addresses, DNS and reach.
    pub grant: Grant,
}

/// An IKE SA that is up, as status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaSummary {
    /// The user's identity.
    pub identity: Identity,
    /// The user's registry name.
    pub name: String,
    /// Where the user is.
    pub remote: SocketAddr,
    /// Its virtual addresses.
    pub addresses: Vec<IpAddr>,
    /// The CHILD_SA's cipher.
    pub encryption: String,
    /// When it came up.
    pub since: SystemTime,
    /// Its ESP tunnel's number (the workers' counters are kept by it), once installed.
    pub tunnel: Option<u32>,
    /// When a CHILD_SA was last rekeyed (or made again).
    pub child_rekeyed: Option<SystemTime>,
    /// When the IKE SA was last rekeyed.
    pub ike_rekeyed: Option<SystemTime>,
}
