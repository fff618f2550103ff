//! ESP tunnels (IKEv2 users) in the control plane: the IKE responder says when a user's
//! CHILD_SAs come, go or move; the plane routes the user's virtual addresses to the tunnel's
//! number in the one allowed-IPs table WireGuard peers use, and passes the SAs to the worker
//! that owns the tunnel (the one its inbound SPIs name).

use std::net::SocketAddr;

use datapath::io::EspEncap;
use datapath::messages::{EspSa, ToWorker};
use datapath::route::PeerId;
use ipnet::IpNet;

use super::ControlPlane;

/// What the IKE responder tells the plane about a user's ESP tunnel.
pub enum EspChange {
    /// The user authenticated: route `addresses` to `tunnel` and install its first SA.
    Up {
        /// The tunnel's number (`messages::ESP_TUNNEL` set; owned by `sa`'s worker).
        tunnel: PeerId,
        /// The user's virtual addresses.
        addresses: Vec<IpNet>,
        /// The first CHILD_SA.
        sa: Box<EspSa>,
        /// Where the user is.
        endpoint: SocketAddr,
        /// How ESP travels to it.
        encap: EspEncap,
    },
    /// A CHILD_SA was rekeyed (or made again after one expired).
    Rekeyed {
        /// The tunnel.
        tunnel: PeerId,
        /// The new SA.
        sa: Box<EspSa>,
        /// Where the user is.
        endpoint: SocketAddr,
        /// How ESP travels to it.
        encap: EspEncap,
    },
    /// A CHILD_SA was deleted: our SPI of it.
    SaGone {
        /// The tunnel.
        tunnel: PeerId,
        /// Our (inbound) SPI.
        spi: u32,
    },
    /// The user's IKE SA moved (a NAT rebinding).
    Moved {
        /// The tunnel.
        tunnel: PeerId,
        /// The new address.
        endpoint: SocketAddr,
    },
    /// The user's IKE SA ended.
    Down {
        /// The tunnel.
        tunnel: PeerId,
    },
}

impl ControlPlane {
    /// Applies a change to an ESP tunnel.
    pub(super) fn on_esp(&mut self, change: EspChange) {
        match change {
            EspChange::Up {
                tunnel,
                addresses,
                sa,
                endpoint,
                encap,
            } => {
                for net in &addresses {
                    self.peers.add_allowed_ip(tunnel, *net);
                }
                self.esp_routes.insert(tunnel, addresses);
                self.routes_dirty = true;
                let msg = ToWorker::InstallEsp {
                    tunnel,
                    sa,
                    endpoint,
                    encap,
                };
                self.send_to_owner(tunnel, msg);
            }
            EspChange::Rekeyed {
                tunnel,
                sa,
                endpoint,
                encap,
            } => {
                let msg = ToWorker::InstallEsp {
                    tunnel,
                    sa,
                    endpoint,
                    encap,
                };
                self.send_to_owner(tunnel, msg);
            }
            EspChange::SaGone { tunnel, spi } => {
                self.send_to_owner(tunnel, ToWorker::RemoveEspSa { tunnel, spi })
            }
            EspChange::Moved { tunnel, endpoint } => {
                self.send_to_owner(tunnel, ToWorker::MoveEsp { tunnel, endpoint })
            }
            EspChange::Down { tunnel } => {
                for net in self.esp_routes.remove(&tunnel).unwrap_or_default() {
                    self.peers.routes.remove(net, tunnel);
                }
                self.routes_dirty = true;
                self.send_to_owner(tunnel, ToWorker::RemoveEsp { tunnel });
                // The routes without it go out now, ahead of anything that reuses its number.
                self.publish_routes();
            }
        }
    }
}
