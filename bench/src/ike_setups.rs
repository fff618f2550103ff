//! IKE_SA setups per server CPU-second: the testbed's IKE client (the `ike` crate's
//! initiator, X25519, AES-256-GCM, a PSK or an ECDSA P-256 certificate) makes IKE_SA_INIT + IKE_AUTH for
//! distinct users one after the other against xgate and against strongSwan (charon) as the
//! responder, each pinned to CPU 0; the figure is setups over the server's CPU seconds.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result};
use ring::rand::SystemRandom;
use serde::Serialize;
use testbed::ike_client::{set_up, IkeUser};

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

/// Sets up one IKE SA per user from `client` (a namespace) against `server`, measuring the
/// server's CPU time with `cpu`.
pub fn measure(
    label: &'static str,
    client: &testbed::Netns,
    server: SocketAddr,
    users: Vec<IkeUser>,
    cpu: impl Fn() -> Result<f64>,
) -> Result<SetupFigure> {
    let cpu0 = cpu()?;
    let started = Instant::now();
    let setups = users.len();
    let auth = users.first().map_or("psk", IkeUser::auth);
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
