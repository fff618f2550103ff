//! The CRL file, looked at every few seconds while the responder runs: rewritten (`xgate pki
//! revoke`, or the operator's own CA), it is read again and its revocations count from the
//! next IKE_AUTH, with no restart. A file that does not read or parse keeps the CRLs held
//! before, says why in the log, and is tried again at the next look. Users logged in with a
//! certificate the new CRLs revoke are disconnected then (`IkeEngine::replace_trust`).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use ike::TrustStore;

/// How often the file's modification time is looked at.
const EVERY: Duration = Duration::from_secs(2);

/// Where the CRLs come from: the CA certificates they go with, and the CRL file.
#[derive(Debug, Clone)]
pub struct CrlSource {
    /// The CA certificates (PEM), as `[ike] ca` gave them at start.
    pub ca_pem: Vec<u8>,
    /// The CRL file, `[ike] crl`.
    pub crl: PathBuf,
}

/// The watch on one CRL file.
pub struct CrlWatch {
    source: CrlSource,
    seen: Option<SystemTime>,
    next: Instant,
}

impl CrlWatch {
    /// A watch on `source`, whose current contents are already in use.
    pub fn new(source: CrlSource, now: Instant) -> Self {
        let seen = modified(&source);
        Self {
            source,
            seen,
            next: now + EVERY,
        }
    }

    /// A new trust store when the file changed since it was last read.
    pub fn poll(&mut self, now: Instant) -> Option<TrustStore> {
        if now < self.next {
            return None;
        }
        self.next = now + EVERY;
        let m = modified(&self.source);
        if m.is_none() || m == self.seen {
            return None;
        }
        let path = self.source.crl.display();
        let read = std::fs::read(&self.source.crl)
            .map_err(|e| e.to_string())
            .and_then(|crl| {
                TrustStore::from_pem(&self.source.ca_pem, Some(&crl)).map_err(|e| e.to_string())
            });
        match read {
            Ok(store) => {
                tracing::info!("ike: {path} read again; its revocations count from now");
                self.seen = m;
                Some(store)
            }
            // Not marked seen: a file caught half-written is read again at the next look.
            Err(e) => {
                tracing::warn!(
                    "ike: {path} changed but cannot be used ({e}); the CRLs held before stay"
                );
                None
            }
        }
    }
}

fn modified(source: &CrlSource) -> Option<SystemTime> {
    std::fs::metadata(&source.crl)
        .and_then(|m| m.modified())
        .ok()
}
