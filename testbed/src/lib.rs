//! Test and demo harness for xgate: network namespaces, veth pairs, real WireGuard peers
//! (`wireguard-go`, `boringtun-cli`, xgate), strongSwan IKEv2 clients, pings and checksummed TCP transfers.
//!
//! Everything it creates is removed when dropped: processes by PID, namespaces (and the
//! interfaces inside them) by name. Traffic only ever goes to namespaces it created.
#![warn(missing_docs)]

pub mod bridge;
pub mod browser;
pub mod clients;
pub mod config;
pub mod flood;
pub mod fuzz;
pub mod ike_client;
pub mod interrupt;
pub mod keepalived;
pub mod lan_host;
pub mod machine;
pub mod netns;
pub mod packet;
pub mod ping;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod procstat;
pub mod raw_esp;
pub mod server;
pub mod spray;
pub mod strongswan;
pub mod strongswan_server;
pub mod transfer;

pub use clients::{Implementation, WgPeer, Xgate};
pub use config::XgateConfig;
pub use netns::{veth, veth_queues, Netns};
pub use ping::{ping, PingReport};
pub use process::{wait_until, Daemon};
pub use server::Server;
pub use strongswan::{place_credentials, CertFiles, EapLogin, Strongswan, StrongswanConfig};
pub use strongswan_server::ServerConfig as StrongswanServer;
pub use transfer::{tcp_transfer, Transfer};
