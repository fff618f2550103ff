//! Tunnel-state and peer-change events. Each goes to the log (target `xgate::events`, one
//! line of JSON, so alerting can follow it in text or JSON logs; sessions at debug, changes
//! at info) and to every subscriber of the API's event stream. Publishing never blocks: a subscriber that falls behind loses the
//! oldest events and is told how many.

use std::time::{SystemTime, UNIX_EPOCH};

use plane::events::{EventSink, TunnelEvent};
use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for a slow subscriber before the oldest are dropped.
const BACKLOG: usize = 4096;

/// Something operators follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A peer without a usable session got one.
    TunnelUp {
        /// The peer's public key (base64).
        public_key: String,
        /// Where it is.
        endpoint: String,
        /// The session's index here (recorded for the cluster; not streamed).
        #[serde(skip)]
        receiver_index: u32,
    },
    /// A peer's tunnel ended: its last session expired, or the peer was removed.
    TunnelDown {
        /// The peer's public key (base64).
        public_key: String,
        /// "expired" or "removed".
        reason: &'static str,
    },
    /// An IKE SA was authenticated.
    IkeSaUp {
        /// The user's identity.
        identity: String,
        /// Where the user is.
        endpoint: String,
        /// The virtual addresses given.
        addresses: Vec<String>,
    },
    /// An IKE SA ended: "deleted" (by the peer), "dead" (stopped answering), "closed".
    IkeSaDown {
        /// The user's identity.
        identity: String,
        /// Why.
        reason: &'static str,
    },
    /// An IKEv2 user was registered.
    IkeUserCreated {
        /// Registry id.
        id: i64,
        /// Its name.
        name: String,
        /// Its identity.
        identity: String,
    },
    /// An IKEv2 user was deleted (its SAs are closed).
    IkeUserDeleted {
        /// Registry id.
        id: i64,
        /// Its identity.
        identity: String,
    },
    /// A peer was registered.
    PeerCreated {
        /// Registry id.
        id: i64,
        /// Its name.
        name: String,
        /// Its public key (base64).
        public_key: String,
    },
    /// A registered peer changed.
    PeerChanged {
        /// Registry id.
        id: i64,
    },
    /// A registered peer was revoked.
    PeerRevoked {
        /// Registry id.
        id: i64,
        /// Its public key (base64).
        public_key: String,
    },
    /// A registered peer was deleted.
    PeerDeleted {
        /// Registry id.
        id: i64,
        /// Its public key (base64).
        public_key: String,
    },
}

impl Event {
    /// The event's name (`tunnel_up`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::TunnelUp { .. } => "tunnel_up",
            Event::TunnelDown { .. } => "tunnel_down",
            Event::IkeSaUp { .. } => "ike_sa_up",
            Event::IkeSaDown { .. } => "ike_sa_down",
            Event::IkeUserCreated { .. } => "ike_user_created",
            Event::IkeUserDeleted { .. } => "ike_user_deleted",
            Event::PeerCreated { .. } => "peer_created",
            Event::PeerChanged { .. } => "peer_changed",
            Event::PeerRevoked { .. } => "peer_revoked",
            Event::PeerDeleted { .. } => "peer_deleted",
        }
    }

    /// One of a user's sessions coming or going (as many as logins), not a change an
    /// operator made.
    pub fn per_session(&self) -> bool {
        matches!(
            self,
            Event::TunnelUp { .. }
                | Event::TunnelDown { .. }
                | Event::IkeSaUp { .. }
                | Event::IkeSaDown { .. }
        )
    }
}

/// An event with its time, as logged and streamed.
#[derive(Debug, Clone, Serialize)]
pub struct Stamped {
    /// Unix seconds.
    pub at: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// A transport message for an index no session here has, and where it came from (a
/// cluster's own signal, not streamed to operators).
pub type Stray = (u32, std::net::SocketAddr);

/// Where events are published; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Stamped>,
    strays: broadcast::Sender<Stray>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
            strays: broadcast::channel(BACKLOG).0,
        }
    }
}

impl EventHub {
    /// Logs `event` and hands it to every subscriber. Tunnels coming and going are logged at
    /// debug: a morning's surge is one per user, and formatting and writing 100,000 lines
    /// took a tenth of the handshake plane's time; peer changes are logged at info.
    pub fn publish(&self, event: Event) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let stamped = Stamped { at, event };
        let name = stamped.event.name();
        let json = || serde_json::to_string(&stamped).unwrap_or_default();
        if stamped.event.per_session() {
            if tracing::enabled!(target: "xgate::events", tracing::Level::DEBUG) {
                tracing::debug!(target: "xgate::events", event = name, "{}", json());
            }
        } else if tracing::enabled!(target: "xgate::events", tracing::Level::INFO) {
            tracing::info!(target: "xgate::events", event = name, "{}", json());
        }
        // No subscriber is not an error.
        let _ = self.sender.send(stamped);
    }

    /// A new subscription, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.sender.subscribe()
    }

    /// A new subscription to the strays, from now on.
    pub fn subscribe_strays(&self) -> broadcast::Receiver<Stray> {
        self.strays.subscribe()
    }
}

impl EventSink for EventHub {
    fn publish(&self, event: TunnelEvent) {
        EventHub::publish(
            self,
            match event {
                TunnelEvent::Stray {
                    receiver_index,
                    endpoint,
                } => {
                    // No subscriber (a single node) is not an error.
                    let _ = self.strays.send((receiver_index, endpoint));
                    return;
                }
                TunnelEvent::Up {
                    public_key,
                    endpoint,
                    receiver_index,
                } => Event::TunnelUp {
                    public_key: public_key.to_base64(),
                    endpoint: endpoint.to_string(),
                    receiver_index,
                },
                TunnelEvent::Down { public_key, reason } => Event::TunnelDown {
                    public_key: public_key.to_base64(),
                    reason: reason.as_str(),
                },
                TunnelEvent::IkeUp {
                    identity,
                    endpoint,
                    addresses,
                } => Event::IkeSaUp {
                    identity,
                    endpoint: endpoint.to_string(),
                    addresses: addresses.iter().map(ToString::to_string).collect(),
                },
                TunnelEvent::IkeDown { identity, reason } => Event::IkeSaDown { identity, reason },
            },
        );
    }
}
