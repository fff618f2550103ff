//! The control plane's counters: handshake outcomes and the drops it decides, declared once
//! (see `datapath::stats` for how the table is read).

use datapath::stats::Family;

/// Handshakes completed, labelled by our role.
pub const HANDSHAKES_COMPLETED: Family = Family {
    name: "xgate_handshakes_completed_total",
    help: "Handshakes completed, by our role (each installs a session's keys in a worker).",
};

/// Initiations refused admission, labelled by why.
pub const INITIATIONS_REFUSED: Family = Family {
    name: "xgate_handshake_initiations_refused_total",
    help: "Initiations refused admission: source over its share of the backlog, the backlog \
           full, or a source whose initiations keep failing.",
};

/// Handshake messages the plane dropped, labelled by reason.
pub const HANDSHAKE_REJECTED: Family = Family {
    name: "xgate_handshake_rejected_total",
    help: "Handshake messages dropped, by reason.",
};

datapath::counters! {
    /// Handshake work and drops counted by the control plane.
    pub struct ControlCounters {
        /// Handshake initiations received with a valid MAC1.
        initiations_received: Stat "handshake_initiations_received"
            => "xgate_handshake_initiations_received_total";
        /// Responses sent (we were the responder).
        responses_sent: Stat "handshake_responses_sent"
            in HANDSHAKES_COMPLETED("role" = "responder");
        /// Handshake initiations sent (we were the initiator).
        initiations_sent: Stat "handshake_initiations_sent"
            => "xgate_handshake_initiations_sent_total";
        /// Handshakes we initiated that completed.
        initiator_completed: Stat "handshake_initiator_completed"
            in HANDSHAKES_COMPLETED("role" = "initiator");
        /// Cookie replies sent (to sources over their fair share, or with the backlog full).
        cookie_replies_sent: Stat "cookie_replies_sent" => "xgate_cookie_replies_sent_total";
        /// Initiations refused because their source had its share of the backlog waiting.
        initiations_over_share: Stat "handshake_initiations_over_share"
            in INITIATIONS_REFUSED("reason" = "over_share");
        /// Initiations refused because the whole backlog was full.
        initiations_backlog_full: Stat "handshake_initiations_backlog_full"
            in INITIATIONS_REFUSED("reason" = "backlog_full");
        /// Initiations refused because their source had spent its allowance of failures.
        initiations_failing_source: Stat "handshake_initiations_failing_source"
            in INITIATIONS_REFUSED("reason" = "failing_source");
        /// Cookie replies accepted.
        cookie_replies_received: Stat "cookie_replies_received";
        /// Dropped: MAC1 did not match our public key.
        bad_mac1: Drop "bad_mac1" in HANDSHAKE_REJECTED("reason" = "bad_mac1");
        /// Dropped: the initiation's static key did not decrypt for us.
        bad_static: Drop "bad_static" in HANDSHAKE_REJECTED("reason" = "bad_static");
        /// Dropped: a static key that is no configured peer's.
        unknown_peer: Drop "unknown_peer" in HANDSHAKE_REJECTED("reason" = "unknown_peer");
        /// Dropped: a timestamp or response that did not authenticate.
        bad_handshake: Drop "bad_handshake" in HANDSHAKE_REJECTED("reason" = "bad_handshake");
        /// Dropped: an initiation whose timestamp was not newer than the last accepted.
        replayed_initiation: Drop "replayed_initiation"
            in HANDSHAKE_REJECTED("reason" = "replayed_initiation");
        /// Dropped: more than 50 initiations per second from one peer.
        initiation_flood: Drop "initiation_flood"
            in HANDSHAKE_REJECTED("reason" = "initiation_flood");
        /// Dropped: a response or cookie reply for no pending initiation.
        unexpected_index: Drop "unexpected_index"
            in HANDSHAKE_REJECTED("reason" = "unexpected_index");
        /// Dropped: a cookie reply that did not authenticate.
        bad_cookie: Drop "bad_cookie" in HANDSHAKE_REJECTED("reason" = "bad_cookie");
        /// Dropped: a handshake message while the interface has no private key.
        no_private_key: Drop "no_private_key" in HANDSHAKE_REJECTED("reason" = "no_private_key");
        /// Dropped: an initiation refused admission from a source that already proved its
        /// address (a cookie reply would not slow it down).
        rate_limited: Drop "rate_limited" in HANDSHAKE_REJECTED("reason" = "rate_limited");
        /// Dropped: a response made for a peer (or private key) that changed while it was made.
        stale_answer: Drop "stale_answer" in HANDSHAKE_REJECTED("reason" = "stale_answer");
    }
}

#[cfg(test)]
mod tests {
    use datapath::stats::CounterKind;

    use super::*;

    #[test]
    fn drops_are_exported_under_their_own_name() {
        let c = ControlCounters {
            bad_static: 2,
            responses_sent: 5,
            ..Default::default()
        };
        let mut drops = 0;
        c.for_each(|def, v| {
            if def.kind == CounterKind::Drop {
                drops += 1;
                assert_eq!(def.family, Some(HANDSHAKE_REJECTED));
                assert_eq!(def.label, Some(("reason", def.name)));
            }
            if def.name == "handshake_responses_sent" {
                assert_eq!((v, def.label), (5, Some(("role", "responder"))));
            }
            if def.name == "bad_static" {
                assert_eq!(v, 2);
            }
        });
        assert_eq!(drops, 11);
    }
}
