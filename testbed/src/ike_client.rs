//! A blocking IKEv2 client over the `ike` crate's `Login`, for tests and the bench: one
//! login (IKE_SA_INIT and IKE_AUTH, by PSK, certificate or password) from a fresh UDP socket, returning the SA with its first
//! CHILD_SA (whose keys the caller then seals and opens ESP with, `ike::esp`). It offers
//! `Policy::modern()`, so the server picks AES-256-GCM, HMAC-SHA2-256 and Curve25519.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use ike::{
    ClientCerts, Credentials, DhGroup, Endpoints, Established, Identity, Login, LoginConfig,
    LoginStep, NatFinding, Policy, ServerTrust,
};
use ring::rand::{SecureRandom, SystemRandom};

/// How a user proves itself.
#[derive(Clone)]
pub enum Proof {
    /// Its key.
    Psk(String),
    /// Its certificate and key, and the CA the server's certificate is checked against.
    Certificate(Arc<ClientCerts>),
    /// A password by EAP-MSCHAPv2 as `user`, the server checked against `server`.
    Password {
        /// The EAP identity.
        user: String,
        /// The password.
        password: String,
        /// The CAs and identity the server's certificate is checked against.
        server: Arc<ServerTrust>,
    },
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
    /// The method's label: "psk", "ecdsa-p256" (the certificates the tests and bench make)
    /// or "eap-mschapv2".
    pub fn auth(&self) -> &'static str {
        match self.proof {
            Proof::Psk(_) => "psk",
            Proof::Certificate(_) => "ecdsa-p256",
            Proof::Password { .. } => "eap-mschapv2",
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

/// `user`'s whole login against `server` (`ike::Login`: IKE_SA_INIT, a cookie or another
/// group if asked, IKE_AUTH by the user's method), from a fresh socket on address `local`:
/// the SA with its first CHILD_SA, and what NAT detection found. NAT detection is honest
/// here (no NAT is claimed).
pub fn set_up(
    local: &str,
    server: SocketAddr,
    user: &IkeUser,
    rng: &SystemRandom,
) -> Result<(Box<Established>, NatFinding)> {
    let sock = UdpSocket::bind(format!("{local}:0"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut esp_spi = [0u8; 4];
    rng.fill(&mut esp_spi)
        .map_err(|_| anyhow!("no randomness"))?;
    esp_spi[0] |= 0x80;
    let credentials = match &user.proof {
        Proof::Psk(psk) => Credentials::Psk(psk.as_bytes().to_vec()),
        Proof::Certificate(c) => Credentials::Certificate(c.clone()),
        Proof::Password {
            user,
            password,
            server,
        } => Credentials::Password {
            user: user.clone(),
            password: password.clone(),
            server: server.clone(),
        },
    };
    let config = LoginConfig {
        identity: Identity::from_text(&user.identity),
        credentials,
        policy: Policy::modern(),
        group: DhGroup::Curve25519,
        endpoints: Endpoints {
            local: sock.local_addr()?,
            remote: server,
            force_nat_t: false,
        },
        esp_spi,
    };
    let mut login = Login::start(config, rng).map_err(|e| anyhow!("IKE_SA_INIT: {e}"))?;
    // A cookie, another group, and EAP's five exchanges fit well within this.
    for _ in 0..10 {
        let answer = exchange(&sock, server, &login.request)?;
        match login.on_response(&answer, rng) {
            Ok(LoginStep::Send | LoginStep::Ignored) => continue,
            Ok(LoginStep::Established(est, nat)) => return Ok((est, nat)),
            Ok(LoginStep::Refused(why)) => bail!("refused: {why:?}"),
            Err(e) => bail!("login: {e}"),
        }
    }
    bail!("no login after ten exchanges")
}
