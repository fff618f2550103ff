//! `/metrics`: Prometheus text format (version 0.0.4). Read on request from the control
//! plane's state (handshakes, cookies, sessions, every worker's packets and drops by reason),
//! the registry (its size) and the API itself (request latency).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{blocking, ApiState};
use plane::engine::DeviceState;
use plane::stats::{DropReason, WorkerCounters};

/// Upper bounds (seconds) of the API latency histogram's buckets.
const BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// How long API requests took, as a Prometheus histogram.
#[derive(Default)]
pub struct Latency {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    micros: AtomicU64,
}

impl Latency {
    fn record(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            if secs <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Middleware: times every request.
pub async fn time_requests(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    state.latency.record(started.elapsed());
    response
}

/// Writes one metric family: its help, type and samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

fn one(v: u64) -> Vec<(String, u64)> {
    vec![(String::new(), v)]
}

fn per_worker(
    workers: &[WorkerCounters],
    f: impl Fn(&WorkerCounters) -> u64,
) -> Vec<(String, u64)> {
    workers
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("{{worker=\"{i}\"}}"), f(w)))
        .collect()
}

/// The whole exposition.
fn render(state: &DeviceState, registry_size: u64, latency: &Latency, now: Duration) -> String {
    let mut s = String::new();
    let c = &state.control;
    family(
        &mut s,
        "xgate_handshake_initiations_received_total",
        "counter",
        "Handshake initiations received with a valid MAC1.",
        &one(c.initiations_received),
    );
    family(
        &mut s,
        "xgate_handshakes_completed_total",
        "counter",
        "Handshakes completed, by our role (each installs a session's keys in a worker).",
        &[
            ("{role=\"responder\"}".into(), c.responses_sent),
            ("{role=\"initiator\"}".into(), c.initiator_completed),
        ],
    );
    family(
        &mut s,
        "xgate_handshake_initiations_sent_total",
        "counter",
        "Handshake initiations sent (we were the initiator).",
        &one(c.initiations_sent),
    );
    let rejected: Vec<(String, u64)> = c
        .drops()
        .into_iter()
        .map(|(reason, v)| (format!("{{reason=\"{reason}\"}}"), v))
        .collect();
    family(
        &mut s,
        "xgate_handshake_rejected_total",
        "counter",
        "Handshake messages dropped, by reason.",
        &rejected,
    );
    family(
        &mut s,
        "xgate_cookie_replies_sent_total",
        "counter",
        "Cookie replies sent (to sources over their fair share, or with the backlog full).",
        &one(c.cookie_replies_sent),
    );
    family(
        &mut s,
        "xgate_handshake_initiations_refused_total",
        "counter",
        "Initiations refused admission: source over its share of the backlog, the backlog full, or a source whose initiations keep failing.",
        &[
            ("{reason=\"over_share\"}".into(), c.initiations_over_share),
            (
                "{reason=\"backlog_full\"}".into(),
                c.initiations_backlog_full,
            ),
            (
                "{reason=\"failing_source\"}".into(),
                c.initiations_failing_source,
            ),
        ],
    );
    let recent = state
        .peers
        .iter()
        .filter(|p| {
            p.last_handshake
                .is_some_and(|t| now.saturating_sub(t) < Duration::from_secs(180))
        })
        .count() as u64;
    family(
        &mut s,
        "xgate_sessions_active",
        "gauge",
        "Peers whose latest handshake is under 180 s old (a usable session).",
        &one(recent),
    );
    family(
        &mut s,
        "xgate_receiver_indices_in_use",
        "gauge",
        "Receiver indices in use (sessions and pending handshakes).",
        &one(state.indices_in_use as u64),
    );
    family(
        &mut s,
        "xgate_peers",
        "gauge",
        "Peers on the interface.",
        &one(state.peers.len() as u64),
    );
    family(
        &mut s,
        "xgate_registry_peers",
        "gauge",
        "Peers in the registry, revoked included.",
        &one(registry_size),
    );
    let w = &state.per_worker;
    for (name, help, f) in [
        (
            "xgate_worker_rx_datagrams_total",
            "Datagrams received on the outer socket.",
            (|c: &WorkerCounters| c.rx_datagrams) as fn(&WorkerCounters) -> u64,
        ),
        (
            "xgate_worker_tx_datagrams_total",
            "Datagrams sent on the outer socket.",
            |c| c.tx_datagrams,
        ),
        (
            "xgate_worker_rx_bytes_total",
            "Bytes of datagrams received on the outer socket.",
            |c| c.rx_bytes,
        ),
        (
            "xgate_worker_tx_bytes_total",
            "Bytes of datagrams sent on the outer socket.",
            |c| c.tx_bytes,
        ),
        (
            "xgate_worker_key_installs_total",
            "Sessions installed in the worker (a completed handshake's keys each).",
            |c| c.sessions_installed,
        ),
        (
            "xgate_worker_sessions_compacted_total",
            "Sessions whose expanded keys were freed while their peer was idle (rebuilt by its next packet).",
            |c| c.sessions_compacted,
        ),
        (
            "xgate_worker_outer_kernel_sends_total",
            "Datagrams the AF_XDP backend sent through the kernel's UDP socket (no link path to the peer known yet).",
            |c| c.outer_kernel_sends,
        ),
        (
            "xgate_worker_xdp_rx_frames_total",
            "Datagrams received through AF_XDP sockets.",
            |c| c.xdp_rx_frames,
        ),
        (
            "xgate_worker_xdp_tx_frames_total",
            "Datagrams sent through AF_XDP sockets.",
            |c| c.xdp_tx_frames,
        ),
        (
            "xgate_worker_tun_reads_total",
            "Packets read from the TUN (a super-packet counts once).",
            |c| c.tun_reads,
        ),
        (
            "xgate_worker_tun_writes_total",
            "Packets written into the TUN.",
            |c| c.tun_writes,
        ),
        (
            "xgate_worker_handed_over_total",
            "Packets passed to the worker that owns their peer.",
            |c| c.handed_over,
        ),
    ] {
        family(&mut s, name, "counter", help, &per_worker(w, f));
    }
    let drops: Vec<(String, u64)> = w
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            DropReason::ALL.iter().map(move |r| {
                (
                    format!("{{worker=\"{i}\",reason=\"{}\"}}", r.name()),
                    c.drops_for(*r),
                )
            })
        })
        .collect();
    family(
        &mut s,
        "xgate_worker_drops_total",
        "counter",
        "Packets a worker dropped, by reason.",
        &drops,
    );
    let (rx, tx) = state
        .peers
        .iter()
        .fold((0, 0), |(r, t), p| (r + p.rx_bytes, t + p.tx_bytes));
    family(
        &mut s,
        "xgate_transport_bytes_total",
        "counter",
        "Bytes of WireGuard messages, all peers.",
        &[
            ("{direction=\"rx\"}".into(), rx),
            ("{direction=\"tx\"}".into(), tx),
        ],
    );
    let _ = writeln!(
        s,
        "# HELP xgate_api_request_duration_seconds HTTP API request latency."
    );
    let _ = writeln!(s, "# TYPE xgate_api_request_duration_seconds histogram");
    for (b, le) in latency.buckets.iter().zip(BUCKETS) {
        let _ = writeln!(
            s,
            "xgate_api_request_duration_seconds_bucket{{le=\"{le}\"}} {}",
            b.load(Ordering::Relaxed)
        );
    }
    let count = latency.count.load(Ordering::Relaxed);
    let _ = writeln!(
        s,
        "xgate_api_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        s,
        "xgate_api_request_duration_seconds_sum {}",
        latency.micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(s, "xgate_api_request_duration_seconds_count {count}");
    s
}

/// GET /metrics
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let text = blocking(move || {
        let device = state.device()?;
        let size = state.registry()?.count()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Ok(render(&device, size, &state.latency, now))
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
