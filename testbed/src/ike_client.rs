//! A blocking IKEv2 client over the `ike` crate's initiator, for tests and the bench: one
//! IKE_SA_INIT and IKE_AUTH from a fresh UDP socket, returning the SA with its first
//! CHILD_SA (whose keys the caller then seals and opens ESP with, `ike::esp`). It offers
//! `Policy::modern()`, so the server picks AES-256-GCM, HMAC-SHA2-256 and Curve25519.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use ike::{
    AuthInitiator, AuthOutcome, ClientCerts, DhGroup, Endpoints, Established, Identity, InitReply,
    InitiatorInit, NatFinding, Policy,
};
use ring::rand::{SecureRandom, SystemRandom};

/// How a user proves itself.
#[derive(Clone)]
pub enum Proof {
    /// Its key.
    Psk(String),
    /// Its certificate and key, and the CA the server's certificate is checked against.
    Certificate(Arc<ClientCerts>),
}

/// A user the client authenticates as.
#[derive(Clone)]
pub struct IkeUser {
    /// Its identity (an e-mail address).
    pub identity: String,
    /// Its key or certificate.
    pub proof: Proof,
}

impl IkeUser {
    /// The method's label: "psk" or "ecdsa-p256" (the certificates the tests and bench make).
    pub fn auth(&self) -> &'static str {
        match self.proof {
            Proof::Psk(_) => "psk",
            Proof::Certificate(_) => "ecdsa-p256",
        }
    }
}

/// Sends `request` and waits for the answer, sending again twice on a 2-second silence.
fn exchange(sock: &UdpSocket, server: SocketAddr, request: &[u8]) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        sock.send_to(request, server)?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => return Ok(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no answer from {server}")
}

/// One IKE_SA_INIT and IKE_AUTH as `user` against `server`, from a fresh socket on address
/// `local`: the SA with its first CHILD_SA, and what NAT detection found. NAT detection is
/// honest here (no NAT is claimed).
pub fn set_up(
    local: &str,
    server: SocketAddr,
    user: &IkeUser,
    rng: &SystemRandom,
) -> Result<(Box<Established>, NatFinding)> {
    let sock = UdpSocket::bind(format!("{local}:0"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let ends = Endpoints {
        local: sock.local_addr()?,
        remote: server,
        force_nat_t: false,
    };
    let policy = Policy::modern();
    let offer = policy.ike_offer(&[]);
    let init = InitiatorInit::start(offer, policy.clone(), DhGroup::Curve25519, ends, rng)
        .map_err(|e| anyhow!("IKE_SA_INIT: {e}"))?;
    let answer = exchange(&sock, server, &init.request)?;
    let sa = match init.on_response(&answer) {
        Ok(InitReply::Established(sa)) => sa,
        Ok(other) => bail!("IKE_SA_INIT answered {other:?}"),
        Err(e) => bail!("IKE_SA_INIT: {e}"),
    };
    let nat = sa.nat;
    let id = Identity::from_text(&user.identity);
    let mut spi = [0u8; 4];
    rng.fill(&mut spi).map_err(|_| anyhow!("no randomness"))?;
    spi[0] |= 0x80;
    let offer = policy.esp_offer(spi, false);
    let auth = match &user.proof {
        Proof::Psk(psk) => AuthInitiator::start(*sa, &id, psk.as_bytes(), offer, policy, rng),
        Proof::Certificate(c) => {
            AuthInitiator::start_with_certificate(*sa, &id, c.clone(), offer, policy, rng)
        }
    }
    .map_err(|e| anyhow!("IKE_AUTH: {e}"))?;
    let answer = exchange(&sock, server, &auth.request)?;
    match auth.on_response(&answer) {
        Ok(AuthOutcome::Established(est)) => Ok((est, nat)),
        Ok(AuthOutcome::Refused(why)) => bail!("IKE_AUTH refused: {why:?}"),
        Err(e) => bail!("IKE_AUTH: {e}"),
    }
}
