//! The limit: `ring`'s ChaCha20-Poly1305 and AES-256-GCM sealing and opening in place on one
//! core, through the same seam the datapath uses.

use std::time::{Duration, Instant};

use proto::aead::{wireguard_nonce, Cipher, PacketAead, RingKey};
use serde::Serialize;

/// One cipher, one operation, one payload size.
#[derive(Debug, Clone, Serialize)]
pub struct CipherFigure {
    /// "chacha20-poly1305" or "aes-256-gcm".
    pub cipher: &'static str,
    /// "seal" or "open".
    pub op: &'static str,
    /// Payload bytes per packet.
    pub payload: usize,
    /// Payload gigabytes per second.
    pub gbyte_per_s: f64,
    /// Millions of packets per second.
    pub mpps: f64,
}

fn name(cipher: Cipher) -> &'static str {
    match cipher {
        Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
        Cipher::Aes256Gcm => "aes-256-gcm",
    }
}

/// Runs each operation for `each`, pinned to CPU `cpu`.
pub fn measure(each: Duration) -> Vec<CipherFigure> {
    let mut out = Vec::new();
    for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
        let key = RingKey::new(cipher, &[0x5a; 32]);
        for payload in [64usize, 512, 1420] {
            let mut data = vec![0x42u8; payload];
            // Seal: a fresh nonce per packet, as the datapath does.
            let (n, secs) = timed(each, |i| {
                let _ = key.seal(wireguard_nonce(i), &[], &mut data);
            });
            out.push(figure(cipher, "seal", payload, n, secs));
            // Open: the same sealed packet every time (opening does not change the input
            // when it fails, so re-seal once per call to keep the tag valid is not needed:
            // we open a copy).
            let mut sealed = vec![0x42u8; payload];
            let tag = key
                .seal(wireguard_nonce(1), &[], &mut sealed)
                .unwrap_or([0; 16]);
            let mut work = sealed.clone();
            let (n, secs) = timed(each, |_| {
                work.copy_from_slice(&sealed);
                let _ = key.open(wireguard_nonce(1), &[], &mut work, &tag);
            });
            out.push(figure(cipher, "open", payload, n, secs));
        }
    }
    out
}

/// Calls `f` in batches until `each` has passed; returns calls and seconds.
fn timed(each: Duration, mut f: impl FnMut(u64)) -> (u64, f64) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < each {
        for _ in 0..256 {
            f(n);
            n += 1;
        }
    }
    (n, start.elapsed().as_secs_f64())
}

fn figure(cipher: Cipher, op: &'static str, payload: usize, n: u64, secs: f64) -> CipherFigure {
    CipherFigure {
        cipher: name(cipher),
        op,
        payload,
        gbyte_per_s: n as f64 * payload as f64 / secs / 1e9,
        mpps: n as f64 / secs / 1e6,
    }
}
