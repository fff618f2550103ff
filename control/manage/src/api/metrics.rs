//! `/metrics`: Prometheus text format (version 0.0.4), gzipped when asked. Rendered once per
//! publication of the state the control plane publishes every second (handshakes, cookies, sessions, every worker's packets and drops by reason),
//! the IKEv2 responder's own publication (negotiations by outcome, SAs, drops), the registry
//! (its size) and the API itself (request latency).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{blocking, ApiState};
use crate::registry::Trouble;
use plane::engine::DeviceState;
use plane::stats::{CounterDef, Family};

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

/// Counter families gathered from the counter tables, in the order they first appear.
#[derive(Default)]
struct Families(Vec<(Family, Vec<(String, u64)>)>);

impl Families {
    /// Adds one counter's sample (of worker `worker`, for per-worker tables).
    fn add(&mut self, def: &CounterDef, worker: Option<usize>, value: u64) {
        let Some(exported) = def.family else {
            return;
        };
        let mut labels = Vec::new();
        if let Some(w) = worker {
            labels.push(format!("worker=\"{w}\""));
        }
        if let Some((key, label)) = def.label {
            labels.push(format!("{key}=\"{label}\""));
        }
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        match self.0.iter_mut().find(|(f, _)| f.name == exported.name) {
            Some((_, samples)) => samples.push((labels, value)),
            None => self.0.push((exported, vec![(labels, value)])),
        }
    }

    fn write(&self, out: &mut String) {
        for (f, samples) in &self.0 {
            family(out, f.name, "counter", f.help.trim(), samples);
        }
    }
}

/// The gauges: sessions, indices, peers, registry size.
fn gauges(s: &mut String, state: &DeviceState, registry_size: u64, now: Duration) {
    let recent = state
        .peers
        .iter()
        .filter(|p| {
            p.last_handshake
                .is_some_and(|t| now.saturating_sub(t) < Duration::from_secs(180))
        })
        .count() as u64;
    family(
        s,
        "xgate_sessions_active",
        "gauge",
        "Peers whose latest handshake is under 180 s old (a usable session).",
        &one(recent),
    );
    family(
        s,
        "xgate_receiver_indices_in_use",
        "gauge",
        "Receiver indices in use (sessions and pending handshakes).",
        &one(state.indices_in_use as u64),
    );
    family(
        s,
        "xgate_peers",
        "gauge",
        "Peers on the interface.",
        &one(state.peers.len() as u64),
    );
    family(
        s,
        "xgate_registry_peers",
        "gauge",
        "Peers in the registry, revoked included.",
        &one(registry_size),
    );
}

/// A label value from a drop reason as the rules word it ("bad ICV" → "bad_icv").
fn reason_label(reason: &str) -> String {
    reason
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The IKEv2 responder's families: negotiations by outcome, SAs, drops by reason.
fn ike_families(s: &mut String, ike: &plane::ike::IkeStats) {
    let c = &ike.counters;
    let labelled = |pairs: &[(&str, u64)], key: &str| -> Vec<(String, u64)> {
        pairs
            .iter()
            .map(|(l, v)| (format!("{{{key}=\"{l}\"}}"), *v))
            .collect()
    };
    family(
        s,
        "xgate_ike_sa_init_total",
        "counter",
        "IKE_SA_INIT requests by outcome.",
        &labelled(
            &[
                ("accepted", c.inits_accepted),
                ("retransmission", c.init_retransmissions),
                ("cookie_sent", c.cookies_sent),
                ("invalid_ke", c.invalid_ke),
                ("no_proposal_chosen", c.inits_no_proposal),
            ],
            "outcome",
        ),
    );
    family(
        s,
        "xgate_ike_auth_total",
        "counter",
        "IKE_AUTH requests by outcome.",
        &labelled(
            &[
                ("succeeded", c.auth_succeeded),
                ("authentication_failed", c.auth_failed),
                ("no_proposal_chosen", c.no_proposal_chosen),
                ("ts_unacceptable", c.ts_unacceptable),
                ("internal_address_failure", c.address_failures),
                ("malformed", c.auth_malformed),
            ],
            "outcome",
        ),
    );
    family(
        s,
        "xgate_ike_child_sas_total",
        "counter",
        "CHILD_SAs the peers rekeyed, made again after expiry, or deleted.",
        &labelled(
            &[
                ("rekeyed", c.children_rekeyed),
                ("created", c.children_created),
                ("deleted", c.children_deleted),
            ],
            "event",
        ),
    );
    family(
        s,
        "xgate_ike_sas_rekeyed_total",
        "counter",
        "IKE SAs the peers rekeyed (the successor carries on; the old one is deleted).",
        &one(c.ike_rekeyed),
    );
    family(
        s,
        "xgate_ike_sas_ended_total",
        "counter",
        "IKE SAs ended by this side, by reason.",
        &labelled(
            &[
                ("dead", c.dead_peers),
                ("replaced", c.replaced),
                ("certificate_withdrawn", c.certificate_withdrawn),
                ("half_open_expired", c.half_open_expired),
            ],
            "reason",
        ),
    );
    let refused: Vec<(&str, u64)> = ike::CertRefusal::REASONS
        .iter()
        .map(|r| (*r, c.cert_refused.get(r).copied().unwrap_or(0)))
        .collect();
    family(
        s,
        "xgate_ike_certificates_refused_total",
        "counter",
        "Client certificates refused at IKE_AUTH, by reason (also in authentication_failed).",
        &labelled(&refused, "reason"),
    );
    let gauges: [(&str, &str, u64); 3] = [
        ("xgate_ike_sas_up", "IKE SAs up.", ike.sas_up as u64),
        (
            "xgate_ike_sas_half_open",
            "IKE SAs not (yet) authenticated.",
            ike.half_open as u64,
        ),
        (
            "xgate_ike_users",
            "IKEv2 users who may authenticate.",
            ike.users as u64,
        ),
    ];
    for (name, help, v) in gauges {
        family(s, name, "gauge", help, &one(v));
    }
    let mut dropped: Vec<(String, u64)> = c
        .dropped
        .iter()
        .map(|(r, v)| (format!("{{reason=\"{}\"}}", reason_label(r)), *v))
        .collect();
    dropped.push(("{reason=\"queue_full\"}".into(), ike.queue_full));
    dropped.push(("{reason=\"esp_not_carried\"}".into(), ike.esp_not_carried));
    family(
        s,
        "xgate_ike_dropped_total",
        "counter",
        "IKE datagrams dropped, by reason.",
        &dropped,
    );
}

/// The API's own request latency, as a histogram.
fn latency_histogram(s: &mut String, latency: &Latency) {
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
}

/// The exposition but for the API's own latency (the same for every scrape of one
/// publication): every counter the plane and the workers declare (their tables say which are
/// exported, under which name and label), the gauges and traffic by direction.
fn render_state(state: &DeviceState, registry_size: u64, now: Duration) -> String {
    let mut s = String::new();
    let mut control = Families::default();
    state.control.for_each(|def, v| control.add(def, None, v));
    control.write(&mut s);
    gauges(&mut s, state, registry_size, now);
    let mut workers = Families::default();
    for (i, w) in state.per_worker.iter().enumerate() {
        w.for_each(|def, v| workers.add(def, Some(i), v));
    }
    workers.write(&mut s);
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
    s
}

/// One publication's exposition, plain and gzipped (as Prometheus asks for it).
#[derive(Clone)]
struct Exposition {
    plain: Bytes,
    gzip: Bytes,
}

/// The exposition of the latest publication, kept until the next: scrapes in between cost
/// neither a render nor a registry count nor a copy. (The API's own latency in it is as of
/// the publication, like everything else.)
#[derive(Default)]
pub struct Rendered {
    latest: Mutex<Option<(Instant, Exposition)>>,
}

impl Rendered {
    fn get(&self, taken: Instant) -> Option<Exposition> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest
            .as_ref()
            .filter(|(t, _)| *t == taken)
            .map(|(_, e)| e.clone())
    }

    fn keep(&self, taken: Instant, exposition: Exposition) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some((taken, exposition));
    }
}

fn gzip(text: &[u8]) -> Bytes {
    use std::io::Write;
    // Level 1: a fifth of the size for little CPU, once a second at most.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(text);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// GET /metrics
pub async fn metrics(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cached = state
        .plane
        .published()
        .and_then(|p| state.rendered.get(p.taken));
    let exposition = match cached {
        Some(e) => e,
        None => {
            let state = state.clone();
            blocking(move || {
                let published = state.snapshot()?;
                // While the registry is away the last count known is shown, and said so.
                let counted = match state.registry().count() {
                    Err(e) if e.trouble() == Trouble::Other => return Err(e.into()),
                    other => other,
                };
                let size = state.health.counted(counted);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO);
                let mut text = render_state(&published.state, size, now);
                registry_reachable(&mut text, state.health.trouble().is_none());
                if let Some(ike) = state.ike.get().and_then(|i| i.published()) {
                    ike_families(&mut text, &ike);
                }
                latency_histogram(&mut text, &state.latency);
                let exposition = Exposition {
                    gzip: gzip(text.as_bytes()),
                    plain: Bytes::from(text),
                };
                state.rendered.keep(published.taken, exposition.clone());
                Ok(exposition)
            })
            .await?
        }
    };
    let wants_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // "gzip", "gzip;q=0.5"; not "gzip;q=0" (refused).
            v.split(',').any(|e| {
                let mut parts = e.split(';').map(str::trim);
                parts.next() == Some("gzip")
                    && !parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse() == Ok(0.0)))
            })
        });
    let content_type = (
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    );
    let vary = (header::VARY, "accept-encoding");
    Ok(if wants_gzip {
        let encoding = (header::CONTENT_ENCODING, "gzip");
        ([content_type, encoding, vary], exposition.gzip).into_response()
    } else {
        ([content_type, vary], exposition.plain).into_response()
    })
}

/// Whether the registry database answers (0: connected users keep their sessions, changes
/// are refused until it is back).
fn registry_reachable(s: &mut String, reachable: bool) {
    let _ = write!(
        s,
        "# HELP xgate_registry_reachable 1 while the registry database answers; 0 while it \
         cannot be reached (connected users keep their sessions, changes are refused).\n\
         # TYPE xgate_registry_reachable gauge\nxgate_registry_reachable {}\n",
        u8::from(reachable)
    );
}

#[cfg(test)]
mod tests {
    use plane::engine::ControlCounters;
    use plane::stats::{DropReason, WorkerCounters};

    use super::*;

    /// The names and labels scrapers and the loadtest read (`parse_counters`) stay as they are.
    #[test]
    fn counters_are_exported_under_their_published_names() {
        let control = ControlCounters {
            responses_sent: 5,
            initiations_over_share: 2,
            bad_static: 3,
            cookie_replies_received: 9,
            ..Default::default()
        };
        let mut w0 = WorkerCounters::default();
        w0.drop(DropReason::BadTag);
        let w1 = WorkerCounters {
            sessions_installed: 4,
            mss_clamped: 6,
            ..Default::default()
        };
        let state = DeviceState {
            name: "xg".into(),
            private_key: None,
            listen_port: 51820,
            fwmark: 0,
            workers: 2,
            backend: "io-uring".into(),
            backend_per_worker: Vec::new(),
            firewall: "",
            peers: Vec::new(),
            datapath: WorkerCounters::default(),
            per_worker: vec![w0, w1],
            control,
            indices_in_use: 1,
            esp_tunnels: Vec::new(),
        };
        let mut text = render_state(&state, 7, Duration::ZERO);
        latency_histogram(&mut text, &Latency::default());
        for line in [
            "xgate_handshakes_completed_total{role=\"responder\"} 5",
            "xgate_handshakes_completed_total{role=\"initiator\"} 0",
            "xgate_handshake_initiations_refused_total{reason=\"over_share\"} 2",
            "xgate_handshake_rejected_total{reason=\"bad_static\"} 3",
            "xgate_handshake_initiations_received_total 0",
            "xgate_cookie_replies_sent_total 0",
            "xgate_worker_drops_total{worker=\"0\",reason=\"bad_tag\"} 1",
            "xgate_worker_drops_total{worker=\"1\",reason=\"bad_tag\"} 0",
            "xgate_worker_key_installs_total{worker=\"1\"} 4",
            "xgate_worker_rx_datagrams_total{worker=\"0\"} 0",
            "xgate_receiver_indices_in_use 1",
            "xgate_registry_peers 7",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Counters kept for `xgate show` only are not exported.
        assert!(!text.contains("mss_clamped") && !text.contains("cookie_replies_received"));
        // Each family has one HELP and one TYPE line, before its samples.
        let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
        let mut names: Vec<&str> = helps.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a family printed twice");
        assert!(text.contains(
            "# HELP xgate_worker_sessions_compacted_total Sessions whose expanded keys were freed \
             while their peer was idle (rebuilt by its next packet).\n"
        ));
    }

    #[test]
    fn ike_outcomes_and_drop_reasons_are_labelled() {
        let mut stats = plane::ike::IkeStats::default();
        stats.counters.auth_failed = 2;
        stats.counters.drop("bad ICV");
        stats.counters.cert_refused.insert("revoked", 4);
        stats.sas_up = 3;
        let mut text = String::new();
        ike_families(&mut text, &stats);
        for line in [
            "xgate_ike_auth_total{outcome=\"authentication_failed\"} 2",
            "xgate_ike_dropped_total{reason=\"bad_icv\"} 1",
            "xgate_ike_sas_up 3",
            "xgate_ike_sa_init_total{outcome=\"cookie_sent\"} 0",
            "xgate_ike_certificates_refused_total{reason=\"revoked\"} 4",
            "xgate_ike_certificates_refused_total{reason=\"expired\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
