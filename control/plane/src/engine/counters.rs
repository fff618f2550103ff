//! The control plane's counters: handshake outcomes and the drops it decides.

/// Handshake work and drops counted by the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlCounters {
    /// Initiations with a valid MAC1.
    pub initiations_received: u64,
    /// Responses sent (we were the responder).
    pub responses_sent: u64,
    /// Initiations sent (we were the initiator).
    pub initiations_sent: u64,
    /// Handshakes we initiated that completed.
    pub initiator_completed: u64,
    /// Cookie replies sent (to sources over their fair share, or with the backlog full).
    pub cookie_replies_sent: u64,
    /// Initiations refused because their source had its share of the backlog waiting.
    pub initiations_over_share: u64,
    /// Initiations refused because the whole backlog was full.
    pub initiations_backlog_full: u64,
    /// Initiations refused because their source had spent its allowance of failures.
    pub initiations_failing_source: u64,
    /// Cookie replies accepted.
    pub cookie_replies_received: u64,
    /// Dropped: MAC1 did not match our public key.
    pub bad_mac1: u64,
    /// Dropped: the initiation's static key did not decrypt for us.
    pub bad_static: u64,
    /// Dropped: a static key that is no configured peer's.
    pub unknown_peer: u64,
    /// Dropped: a timestamp or response that did not authenticate.
    pub bad_handshake: u64,
    /// Dropped: an initiation whose timestamp was not newer than the last accepted.
    pub replayed_initiation: u64,
    /// Dropped: more than 50 initiations per second from one peer.
    pub initiation_flood: u64,
    /// Dropped: a response or cookie reply for no pending initiation.
    pub unexpected_index: u64,
    /// Dropped: a cookie reply that did not authenticate.
    pub bad_cookie: u64,
    /// Dropped: a handshake message while the interface has no private key.
    pub no_private_key: u64,
    /// Dropped: an initiation refused admission from a source that already proved its address
    /// (a cookie reply would not slow it down).
    pub rate_limited: u64,
    /// Dropped: a response made for a peer (or private key) that changed while it was made.
    pub stale_answer: u64,
}

impl ControlCounters {
    /// Every counter with its stable name (scripts parse these).
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("handshake_initiations_received", self.initiations_received),
            ("handshake_responses_sent", self.responses_sent),
            ("handshake_initiations_sent", self.initiations_sent),
            ("handshake_initiator_completed", self.initiator_completed),
            ("cookie_replies_sent", self.cookie_replies_sent),
            (
                "handshake_initiations_over_share",
                self.initiations_over_share,
            ),
            (
                "handshake_initiations_backlog_full",
                self.initiations_backlog_full,
            ),
            (
                "handshake_initiations_failing_source",
                self.initiations_failing_source,
            ),
            ("cookie_replies_received", self.cookie_replies_received),
        ]
    }

    /// The drop counters with their stable names.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("bad_mac1", self.bad_mac1),
            ("bad_static", self.bad_static),
            ("unknown_peer", self.unknown_peer),
            ("bad_handshake", self.bad_handshake),
            ("replayed_initiation", self.replayed_initiation),
            ("initiation_flood", self.initiation_flood),
            ("unexpected_index", self.unexpected_index),
            ("bad_cookie", self.bad_cookie),
            ("no_private_key", self.no_private_key),
            ("rate_limited", self.rate_limited),
            ("stale_answer", self.stale_answer),
        ]
    }
}
