//! What the IKE responder counts: negotiations by outcome, and every dropped message by its
//! reason (the reasons are the rules' own words, so a new one needs no new field).

use std::collections::BTreeMap;

use ike::AuthRefusal;

/// The IKE responder's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IkeCounters {
    /// IKE_SA_INIT requests that made a half-open SA.
    pub inits_accepted: u64,
    /// IKE_SA_INIT requests answered again (retransmissions).
    pub init_retransmissions: u64,
    /// IKE_SA_INIT requests answered with a cookie (too many half-open SAs).
    pub cookies_sent: u64,
    /// IKE_SA_INIT offers with nothing in common.
    pub inits_no_proposal: u64,
    /// IKE_AUTH's ESP offers with nothing in common.
    pub no_proposal_chosen: u64,
    /// KE payloads of a group other than the one chosen (answered with it).
    pub invalid_ke: u64,
    /// Users authenticated.
    pub auth_succeeded: u64,
    /// IKE_AUTH refused: unknown user, wrong key, another method, a refused certificate.
    pub auth_failed: u64,
    /// `auth_failed` by reason ("wrong password", "no such user", ...).
    pub auth_failed_reasons: BTreeMap<&'static str, u64>,
    /// Password users locked after repeated wrong passwords.
    pub users_locked: u64,
    /// Client certificates refused, by reason (also counted in `auth_failed`).
    pub cert_refused: BTreeMap<&'static str, u64>,
    /// IKE_AUTH refused: traffic selectors outside the user's reach.
    pub ts_unacceptable: u64,
    /// IKE_AUTH refused: no address to give.
    pub address_failures: u64,
    /// IKE_AUTH refused for a missing or unusable payload.
    pub auth_malformed: u64,
    /// Half-open SAs whose IKE_AUTH never came.
    pub half_open_expired: u64,
    /// Fragments of requests kept until their message was whole (RFC 7383).
    pub fragments_kept: u64,
    /// Requests of SAs answered again (retransmissions).
    pub retransmissions_answered: u64,
    /// CHILD_SAs the peer deleted.
    pub children_deleted: u64,
    /// CHILD_SAs the peer rekeyed.
    pub children_rekeyed: u64,
    /// CHILD_SAs the peer made again after the last one expired.
    pub children_created: u64,
    /// IKE SAs the peer rekeyed.
    pub ike_rekeyed: u64,
    /// SAs the peer moved to new addresses (MOBIKE's UPDATE_SA_ADDRESSES).
    pub mobike_moves: u64,
    /// SAs ended because the peer stopped answering.
    pub dead_peers: u64,
    /// SAs closed because their user authenticated again (one SA per user).
    pub replaced: u64,
    /// SAs closed because their user's certificate no longer held when the CRLs changed
    /// (revoked, or expired, since it logged in).
    pub certificate_withdrawn: u64,
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
}

impl IkeCounters {
    /// Counts a dropped message.
    pub fn drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    /// Counts an answered IKE_AUTH refusal by its kind.
    pub fn count_auth_refusal(&mut self, why: &AuthRefusal) {
        match why {
            AuthRefusal::AuthenticationFailed { why, .. } => {
                self.auth_failed += 1;
                *self.auth_failed_reasons.entry(why).or_default() += 1;
            }
            AuthRefusal::CertificateRefused { why, .. } => {
                self.auth_failed += 1;
                *self.cert_refused.entry(why.reason()).or_default() += 1;
            }
            AuthRefusal::NoProposalChosen { .. } => self.no_proposal_chosen += 1,
            AuthRefusal::TsUnacceptable(_) => self.ts_unacceptable += 1,
            AuthRefusal::NoAddress(_) => self.address_failures += 1,
            AuthRefusal::Missing(_) | AuthRefusal::NotOurs(_) | AuthRefusal::BadIcv => {
                self.auth_malformed += 1
            }
        }
    }
}
