//! IKE_SA setups per server CPU-second: a client of this crate (the `ike` crate's initiator,
//! X25519, AES-256-GCM, a PSK or an ECDSA P-256 certificate) makes IKE_SA_INIT + IKE_AUTH for
//! distinct users one after the other against xgate and against strongSwan (charon) as the
//! responder, each pinned to CPU 0; the figure is setups over the server's CPU seconds.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ike::{
    AuthInitiator, AuthOutcome, ClientCerts, DhGroup, Endpoints, Established, Identity, InitReply,
    InitiatorInit, Policy, Proposal, ProtocolId, Transform, TransformType,
};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

/// The client's underlay address.
pub const CLIENT: &str = "10.210.0.2";

/// One server's rate.
#[derive(Debug, Clone, Serialize)]
pub struct SetupFigure {
    /// Server label.
    pub server: &'static str,
    /// "psk" or "ecdsa-p256".
    pub auth: &'static str,
    /// Setups completed.
    pub setups: usize,
    /// Wall-clock seconds they took.
    pub seconds: f64,
    /// Server CPU seconds (all threads) over them.
    pub server_cpu_s: f64,
    /// Setups per server CPU-second.
    pub per_cpu_s: f64,
}

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
pub struct User {
    /// Its identity (an e-mail address).
    pub identity: String,
    /// Its key or certificate.
    pub proof: Proof,
}

impl User {
    /// The method's label.
    fn auth(&self) -> &'static str {
        match self.proof {
            Proof::Psk(_) => "psk",
            Proof::Certificate(_) => "ecdsa-p256",
        }
    }
}

fn t(kind: u8, id: u16, bits: Option<u16>) -> Transform {
    Transform::new(TransformType(kind), id, bits)
}

/// AES-256-GCM, PRF HMAC-SHA2-256, Curve25519.
fn ike_offer() -> Vec<Proposal> {
    vec![Proposal {
        number: 1,
        protocol: ProtocolId::IKE,
        spi: Vec::new(),
        transforms: vec![t(1, 20, Some(256)), t(2, 5, None), t(4, 31, None)],
    }]
}

/// ESP AES-256-GCM (with and without ESN), our SPI `spi`.
fn esp_offer(spi: [u8; 4]) -> Vec<Proposal> {
    vec![Proposal {
        number: 1,
        protocol: ProtocolId::ESP,
        spi: spi.to_vec(),
        transforms: vec![t(1, 20, Some(256)), t(5, 1, None), t(5, 0, None)],
    }]
}

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

/// One IKE_SA_INIT and IKE_AUTH as `user`, from a fresh socket on `local`: the SA with its
/// first CHILD_SA.
pub fn set_up(
    local: &str,
    server: SocketAddr,
    user: &User,
    rng: &SystemRandom,
) -> Result<Box<Established>> {
    let sock = UdpSocket::bind(format!("{local}:0"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let ends = Endpoints {
        local: sock.local_addr()?,
        remote: server,
        force_nat_t: false,
    };
    let init = InitiatorInit::start(
        ike_offer(),
        Policy::modern(),
        DhGroup::Curve25519,
        ends,
        rng,
    )
    .map_err(|e| anyhow::anyhow!("IKE_SA_INIT: {e}"))?;
    let answer = exchange(&sock, server, &init.request)?;
    let sa = match init.on_response(&answer) {
        Ok(InitReply::Established(sa)) => sa,
        Ok(other) => bail!("IKE_SA_INIT answered {other:?}"),
        Err(e) => bail!("IKE_SA_INIT: {e}"),
    };
    let id = Identity::from_text(&user.identity);
    let mut spi = [0u8; 4];
    rng.fill(&mut spi)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    spi[0] |= 0x80;
    let (offer, policy) = (esp_offer(spi), Policy::modern());
    let auth = match &user.proof {
        Proof::Psk(psk) => AuthInitiator::start(*sa, &id, psk.as_bytes(), offer, policy, rng),
        Proof::Certificate(c) => {
            AuthInitiator::start_with_certificate(*sa, &id, c.clone(), offer, policy, rng)
        }
    }
    .map_err(|e| anyhow::anyhow!("IKE_AUTH: {e}"))?;
    let answer = exchange(&sock, server, &auth.request)?;
    match auth.on_response(&answer) {
        Ok(AuthOutcome::Established(est)) => Ok(est),
        Ok(AuthOutcome::Refused(why)) => bail!("IKE_AUTH refused: {why:?}"),
        Err(e) => bail!("IKE_AUTH: {e}"),
    }
}

/// Sets up one IKE SA per user from `client` (a namespace) against `server`, measuring the
/// server's CPU time with `cpu`.
pub fn measure(
    label: &'static str,
    client: &testbed::Netns,
    server: SocketAddr,
    users: Vec<User>,
    cpu: impl Fn() -> Result<f64>,
) -> Result<SetupFigure> {
    let cpu0 = cpu()?;
    let started = Instant::now();
    let setups = users.len();
    let auth = users.first().map_or("psk", User::auth);
    client.enter(move || -> Result<()> {
        testbed::process::pin_thread(&[1]);
        let rng = SystemRandom::new();
        for user in &users {
            set_up("10.210.0.2", server, user, &rng)
                .with_context(|| format!("setting up {}", user.identity))?;
        }
        Ok(())
    })??;
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu_s = cpu()? - cpu0;
    let figure = SetupFigure {
        server: label,
        auth,
        setups,
        seconds,
        server_cpu_s,
        per_cpu_s: setups as f64 / server_cpu_s.max(1e-9),
    };
    eprintln!(
        "  {:<20} {} IKE SAs ({auth}) in {:.2} s: {:>7.0} per server CPU-second",
        label, setups, seconds, figure.per_cpu_s
    );
    Ok(figure)
}
