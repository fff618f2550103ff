//! Certificates checked again while their users stay connected: when the CRLs change, every
//! SA up by a certificate is queued, and each tick checks a bounded number of them (a CRL
//! change with ten thousand certificate users does not stall the IKE thread for seconds),
//! closing with a Delete those whose chain no longer holds (revoked, or expired, since).

use std::sync::Arc;
use std::time::Instant;

use ike::IkeSa;

use super::{unix_secs, IkeEngine, Outgoing};

/// Chains checked per tick (about 100 ms apart): a few hundred microseconds each.
const PER_TICK: usize = 64;

impl IkeEngine {
    /// Checks client certificates against `trust` from now on (CRLs read again), and queues
    /// every SA up by a certificate to be checked again: a revocation takes effect within
    /// seconds, not at the user's next login. Returns the Deletes of the first checks.
    pub fn replace_trust(&mut self, trust: ike::TrustStore, now: Instant) -> Vec<Outgoing> {
        let Some(certs) = &self.settings.certs else {
            return Vec::new();
        };
        self.settings.certs = Some(Arc::new(certs.with_trust(Some(trust))));
        self.recheck = self
            .sas
            .iter()
            .filter(|(_, e)| e.up.is_some() && !e.superseded && !e.peer_certs.is_empty())
            .map(|(spi, _)| *spi)
            .collect();
        self.recheck_some(now)
    }

    /// Checks up to `PER_TICK` queued SAs; closes those whose chain no longer verifies.
    pub(super) fn recheck_some(&mut self, now: Instant) -> Vec<Outgoing> {
        if self.recheck.is_empty() {
            return Vec::new();
        }
        let Some(trust) = self.settings.certs.clone() else {
            self.recheck.clear();
            return Vec::new();
        };
        let Some(trust) = trust.trust.as_ref() else {
            self.recheck.clear();
            return Vec::new();
        };
        let take = self.recheck.len().min(PER_TICK);
        let batch: Vec<[u8; 8]> = self.recheck.drain(..take).collect();
        let unix = unix_secs();
        let mut withdrawn = Vec::new();
        for spi in batch {
            // Gone, or rekeyed since (its successor was queued with it).
            let Some(e) = self.sas.get(&spi).filter(|e| !e.superseded) else {
                continue;
            };
            let Some(up) = e.up.as_ref() else {
                continue;
            };
            let chain: Vec<&[u8]> = e.peer_certs.iter().map(Vec::as_slice).collect();
            let role = ike::PeerRole::Client;
            if let Err(why) = trust.verify(&chain, (&up.identity, role), unix) {
                tracing::warn!(
                    identity = %up.identity.display(),
                    "IKE SA closed: its certificate no longer holds ({why})"
                );
                withdrawn.push(spi);
            }
        }
        self.counters.certificate_withdrawn += withdrawn.len() as u64;
        self.run_on(withdrawn, now, IkeSa::close)
    }

    /// SA `old` was rekeyed into `new`: if `old` waits for a check, so does `new`.
    pub(super) fn recheck_follows(&mut self, old: [u8; 8], new: [u8; 8]) {
        if self.recheck.contains(&old) {
            self.recheck.push(new);
        }
    }
}
