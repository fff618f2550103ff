//! The HTTP API (`/api/v1/`): JSON over HTTP/1.1, served by axum on a small tokio runtime of
//! its own, apart from the datapath and the control-plane thread. Registry work (SQLite,
//! blocking) runs on tokio's blocking threads; changes reach the running interface through
//! the same request channel the `wg` socket uses.
//!
//! - `auth`: bearer tokens, kept as hashes, and their roles.
//! - `audit`: the audit log, written for every change and served.
//! - `peer_routes`: the peer endpoints.
//! - `ike_routes`: IKEv2 users and SAs.
//! - `profiles`: an IKEv2 user's client profiles: swanctl.conf, .mobileconfig, PowerShell,
//!   .sswan.
//! - `status`: live peer and worker state.
//! - `client_config`: `wg-quick` files for clients.
//! - `error`: JSON errors.
//! - `expiry`: peers revoked when their expiry passes.
//! - `sse`: the server-sent event stream.
//! - `last_seen`: tunnel-up times written to the registry, batched.
//! - `metrics`: `/metrics` for Prometheus.
//! - `tokens`: the token file, read and watched.
//! - `token_admin`: its edits (`xgate token`).
//! - `limits`: body size and request deadline.
//! - `serve`: connections (their cap, deadlines, shutdown).
//! - `tls`: HTTPS from the operator's PEM files.
//! - `registry_health`: whether the registry answers (status and metrics say so).
//! - `cluster`: the nodes sharing the registry (`GET /api/v1/cluster`).
//! - `console_access`: what the web console reads and does through the API's state.

mod audit;
mod auth;
mod client_config;
mod cluster;
mod console_access;
mod error;
mod expiry;
mod ike_routes;
mod last_seen;
mod limits;
mod metrics;
mod peer_routes;
mod profiles;
mod registry_health;
mod serve;
mod sse;
mod status;
mod tls;
mod token_admin;
mod tokens;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use audit::AuditNote;
pub use auth::{hash_token, Caller};
pub use auth::{matching as matching_token, matching_hash as matching_token_hash};
pub use client_config::{ClientPolicy, ClientTemplate};
pub use error::{ApiError, ApiJson};
pub use limits::{Limits, MAX_BODY};
pub(crate) use peer_routes::{
    change_peer, check_known_group, delete_peer, parse_prefixes, revoke_peer,
};
pub use peer_routes::{MAX_BULK, NO_KEY_FOR_QR};
pub use profiles::{Format as ProfileFormat, Preferred};
pub use sse::MAX_SUBSCRIBERS;
pub use tls::{server_config as tls_config, TlsError};
pub use token_admin::{
    add as add_token, entries as token_entries, revoke as revoke_token, Revoked, TokenEntry,
};
pub use tokens::{
    load as read_tokens, load_or_create as load_tokens, reload, secret_path, Role, Token,
};

use plane::engine::{PlaneHandle, Published, WorkerRates};
use plane::update::{DeviceUpdate, PeerUpdate};

use crate::events::EventHub;
use crate::registry::Registry;

/// What the handlers share.
pub struct ApiState {
    registry: Mutex<Registry>,
    plane: PlaneHandle,
    tokens: std::sync::RwLock<Vec<Token>>,
    client: ClientTemplate,
    metrics_need_token: bool,
    latency: metrics::Latency,
    rendered: metrics::Rendered,
    changed: Mutex<Option<std::time::Instant>>,
    events: EventHub,
    subscribers: AtomicUsize,
    warnings: Vec<String>,
    /// The groups a peer may be created in: "default", the pools' and `[[group]]`s' names.
    groups: Vec<String>,
    /// Refused sign-ins, logged at a bounded rate.
    refusals: auth::Refusals,
    /// The interface served (named in a 401, for the CLI).
    interface: String,
    /// The token file, reread when it changes.
    token_file: Option<std::path::PathBuf>,
    /// The IKEv2 responder, when it runs or may be started.
    ike: plane::ike::IkeSlot,
    /// Held from a registry change until the interface has it, here and in the follower,
    /// so the interface takes a peer's changes in the order the registry made them (a
    /// follower's older read never lands after this node's newer change).
    apply_order: Mutex<()>,
    /// Whether the registry answers.
    health: registry_health::RegistryHealth,
    /// The registry's engine ("sqlite" or "postgres").
    engine: &'static str,
    /// The web console's sessions and figures.
    pub console: crate::web::Console,
    /// Where the settings came from (a config file's path, or "embedded defaults").
    source: String,
    /// The loadtest's capacity report directory, if configured.
    capacity_report: Option<std::path::PathBuf>,
}

impl ApiState {
    /// State over an open registry, the control plane's request channel, the accepted tokens
    /// and what client configurations share; `metrics_need_token` puts `/metrics`
    /// behind the token too; peer changes are published on `events`.
    pub fn new(
        registry: Registry,
        plane: PlaneHandle,
        tokens: Vec<Token>,
        client: ClientTemplate,
        metrics_need_token: bool,
        events: EventHub,
        warnings: Vec<String>,
    ) -> Self {
        let mut groups: Vec<String> = std::iter::once("default".to_string())
            .chain(registry.pool_names())
            .chain(client.groups.keys().cloned())
            .collect();
        groups.sort();
        groups.dedup();
        Self {
            registry: Mutex::new(registry),
            plane,
            tokens: std::sync::RwLock::new(tokens),
            client,
            metrics_need_token,
            latency: metrics::Latency::default(),
            rendered: metrics::Rendered::default(),
            changed: Mutex::new(None),
            events,
            subscribers: AtomicUsize::new(0),
            warnings,
            groups,
            refusals: auth::Refusals::default(),
            interface: String::new(),
            token_file: None,
            ike: plane::ike::IkeSlot::default(),
            apply_order: Mutex::new(()),
            health: registry_health::RegistryHealth::default(),
            engine: "sqlite",
            console: crate::web::Console::default(),
            source: String::new(),
            capacity_report: None,
        }
    }

    /// The same, showing the capacity report in `dir` (`[api] capacity_report`).
    pub fn with_capacity_report(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.capacity_report = dir;
        self
    }

    /// The same, its settings read from `source` (a config file's path).
    pub fn from_config(mut self, source: &str) -> Self {
        self.source = source.to_string();
        self
    }

    /// The same, over a registry on `engine` ("sqlite" or "postgres").
    pub fn on_engine(mut self, engine: &'static str) -> Self {
        self.engine = engine;
        self
    }

    /// The same, with the IKEv2 responder its users are handed to.
    pub fn with_ike(mut self, ike: plane::ike::IkeSlot) -> Self {
        self.ike = ike;
        self
    }

    /// The same, serving `interface` with tokens from `token_file` (reread when it changes).
    pub fn serving(mut self, interface: &str, token_file: std::path::PathBuf) -> Self {
        self.interface = interface.to_string();
        self.token_file = Some(token_file);
        self
    }

    /// Replaces the accepted tokens (the token file was read again).
    pub fn set_tokens(&self, tokens: Vec<Token>) {
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = tokens;
    }

    /// The order lock: taken before the registry (never while holding it), held until the
    /// change is applied.
    pub fn in_order(&self) -> MutexGuard<'_, ()> {
        self.apply_order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The registry, also after a handler panicked while holding it: each registry call is one
    /// SQLite transaction, rolled back if it did not finish, so what the lock guards is whole.
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The interface's state as the control plane last published it (about a second old at
    /// most): reading it costs the plane nothing, however often `/metrics` is scraped. Right
    /// after start, before the first publication, the plane is asked directly.
    fn snapshot(&self) -> Result<Arc<Published>, ApiError> {
        if let Some(p) = self.plane.published() {
            return Ok(p);
        }
        let state = self.plane.state(Duration::from_secs(5)).map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the interface is shutting down",
            )
        })?;
        let rates = vec![WorkerRates::default(); state.per_worker.len()];
        Ok(Arc::new(Published {
            state,
            taken: std::time::Instant::now(),
            rates,
        }))
    }

    /// The published state, once it includes this API's latest change (read-your-writes for
    /// status; the plane publishes promptly after a change), or the newest within a second.
    async fn fresh_snapshot(self: &Arc<Self>) -> Result<Arc<Published>, ApiError> {
        let since = *self.changed.lock().unwrap_or_else(PoisonError::into_inner);
        let until = std::time::Instant::now() + FRESH_WAIT;
        while let Some(p) = self.plane.published() {
            if since.is_none_or(|c| p.taken >= c) || std::time::Instant::now() >= until {
                return Ok(p);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let state = self.clone();
        blocking(move || state.snapshot()).await
    }

    /// Applies peer changes to the running interface and waits for the answer.
    fn apply(&self, peers: Vec<PeerUpdate>) -> Result<(), ApiError> {
        // Before the request: the plane's first publication after it is taken later.
        *self.changed.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(std::time::Instant::now());
        let unavailable = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the change is saved but the interface is shutting down; it applies at next start",
            )
        };
        let update = DeviceUpdate {
            peers,
            ..DeviceUpdate::default()
        };
        match self.plane.apply(update, Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the change is saved but applying it failed: {e}"),
            )),
            Err(_) => Err(unavailable()),
        }
    }
}

impl ApiState {
    /// Applies what another node changed in a shared registry: `peers` to the interface, and
    /// `ike_users` (all of them, when they changed) to the IKEv2 responder if it runs.
    pub fn apply_followed(
        &self,
        peers: Vec<PeerUpdate>,
        ike_users: Option<&[crate::registry::IkeUserRecord]>,
    ) -> Result<(), ApiError> {
        if !peers.is_empty() {
            self.apply(peers)?;
        }
        self.health.reached();
        let Some(users) = ike_users else {
            return Ok(());
        };
        // Another node's first user starts the responder here too, as a local one would.
        let ike = if users.is_empty() {
            self.ike.get()
        } else {
            self.ike.get_or_start().0
        };
        if let Some(ike) = ike {
            let all = users
                .iter()
                .map(|u| crate::ike_grants::ike_user(u, self.client.policy(&u.group)));
            ike.set_users(all.collect(), true);
        }
        Ok(())
    }
}

impl ApiState {
    /// A subscription to the event stream, from now on (the heartbeat's fresh sessions).
    pub(crate) fn subscribe_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<crate::events::Stamped> {
        self.events.subscribe()
    }

    /// A subscription to transport messages for unknown indices, from now on.
    pub(crate) fn subscribe_strays(
        &self,
    ) -> tokio::sync::broadcast::Receiver<crate::events::Stray> {
        self.events.subscribe_strays()
    }

    /// Records that reaching the registry failed (the follower or the heartbeat found it
    /// away) or works.
    pub fn registry_reached(&self, trouble: Option<&crate::registry::RegistryError>) {
        match trouble {
            Some(e) => self.health.unreachable(e),
            None => self.health.reached(),
        }
    }

    /// The peers with a session (a handshake within 3 minutes) and an endpoint: where each
    /// user's client is, for a node that may take them over.
    pub fn live_sessions(&self) -> Vec<crate::registry::SeenSession> {
        let Some(p) = self.plane.published() else {
            return Vec::new();
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        p.state
            .peers
            .iter()
            .filter_map(|peer| {
                let at = peer.last_handshake?;
                (now.saturating_sub(at) < Duration::from_millis(crate::registry::RECENT_MS))
                    .then_some(())?;
                Some(crate::registry::SeenSession {
                    receiver_index: peer.receiver_index,
                    public_key: peer.public_key,
                    endpoint: peer.endpoint?,
                    seen_ms: at.as_millis() as u64,
                })
            })
            .collect()
    }

    /// What this node serves, for its heartbeat: peers on the interface, peers with a
    /// session (a handshake within 3 minutes), and handshakes completed since start.
    pub fn node_figures(&self) -> (u64, u64, u64) {
        let Some(p) = self.plane.published() else {
            return (0, 0, 0);
        };
        let state = &p.state;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let sessions = state
            .peers
            .iter()
            .filter(|peer| {
                peer.last_handshake.is_some_and(|t| {
                    now.saturating_sub(t) < Duration::from_millis(crate::registry::RECENT_MS)
                })
            })
            .count();
        let c = &state.control;
        let handshakes = c.responses_sent + c.initiator_completed;
        (state.peers.len() as u64, sessions as u64, handshakes)
    }
}

/// How long a status waits for the plane to publish the API's latest change.
const FRESH_WAIT: Duration = Duration::from_secs(1);

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs blocking registry work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error while handling the request",
        )
    })?
}

/// The OpenAPI description of every route, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route: the API behind the token, `/metrics` behind it only if so configured, the
/// web console at `/` (its cookies Secure when `secure`: served over TLS); each request held
/// to `limits`.
pub fn router(state: Arc<ApiState>, limits: Limits, secure: bool) -> Router {
    let token = || axum::middleware::from_fn_with_state(state.clone(), auth::require_token);
    let mut metrics = Router::new().route("/metrics", get(metrics::metrics));
    // The description is public: it holds no data.
    let docs = Router::new().route(
        "/openapi.json",
        get(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                OPENAPI,
            )
        }),
    );
    if state.metrics_need_token {
        metrics = metrics.route_layer(token());
    }
    let api = Router::new()
        .route(
            "/api/v1/peers",
            post(peer_routes::create).get(peer_routes::list),
        )
        .route("/api/v1/peers/bulk", post(peer_routes::create_bulk))
        .route(
            "/api/v1/peers/{id}",
            get(peer_routes::get)
                .patch(peer_routes::change)
                .delete(peer_routes::delete),
        )
        .route("/api/v1/peers/{id}/revoke", post(peer_routes::revoke))
        .route("/api/v1/peers/{id}/config", get(peer_routes::config))
        .route(
            "/api/v1/ike/users",
            post(ike_routes::create).get(ike_routes::list),
        )
        .route(
            "/api/v1/ike/users/{id}",
            axum::routing::delete(ike_routes::delete),
        )
        .route("/api/v1/ike/users/{id}/config", get(ike_routes::config))
        .route("/api/v1/ike/users/{id}/profile", get(ike_routes::profile))
        .route("/api/v1/ike/sas", get(ike_routes::sas))
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/cluster", get(cluster::cluster))
        .route("/api/v1/cluster/take-over", post(cluster::take_over))
        .route("/api/v1/events", get(sse::stream))
        .route("/api/v1/audit", get(audit::list))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see /openapi.json")
        })
        // The token is checked first (the outer layer); the audit sees who passed.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .route_layer(token());
    metrics
        .merge(docs)
        .merge(api)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::time_requests,
        ))
        .with_state(state.clone())
        .merge(crate::web::router(state, secure))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(limits, limits::limit))
}

/// A running API server; stops when dropped.
pub struct ApiServer {
    /// Other nodes' changes, when the registry is shared (stopped first when dropped).
    follower: Option<crate::follower::Follower>,
    state: Arc<ApiState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where it listens.
    pub local_addr: SocketAddr,
}

impl ApiServer {
    /// Serves `state` on `listener` (bound early, before the daemon made anything: a busy
    /// port stops the start with nothing left behind) on one thread of its own (registry work
    /// on tokio's blocking threads), over HTTPS when `tls` is given, each client held to
    /// `limits`.
    pub fn start(
        listener: std::net::TcpListener,
        state: Arc<ApiState>,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
    ) -> std::io::Result<Self> {
        // One thread: an idle API woken by each request (a Prometheus scrape, say) costs
        // about 55 us a request this way, against 90 us with a multi-thread runtime, whose
        // idle workers wake each other (measured at 200 paced scrapes/s).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .thread_name("xgate-api")
            .enable_all()
            .build()?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _inside = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let recorder = runtime.spawn(last_seen::record(state.clone()));
        let watcher = runtime.spawn(tokens::watch(state.clone()));
        let sampler = runtime.spawn(crate::web::history::run(state.clone()));
        let expirer = runtime.spawn(expiry::run(state.clone()));
        let app = router(state.clone(), limits, tls.is_some());
        let thread = std::thread::Builder::new()
            .name("xgate-api-serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
                    serve::serve(listener, app, tls, limits, stopped).await;
                    recorder.abort();
                    watcher.abort();
                    sampler.abort();
                    expirer.abort();
                });
            })?;
        Ok(Self {
            follower: None,
            state,
            stop: Some(stop),
            thread: Some(thread),
            local_addr,
        })
    }
}

impl ApiServer {
    /// The same, applying other nodes' changes with `follower` while it serves.
    pub fn following(mut self, follower: Option<crate::follower::Follower>) -> Self {
        self.follower = follower;
        self
    }

    /// The state it serves (for reloading its tokens).
    pub fn state(&self) -> Arc<ApiState> {
        self.state.clone()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        drop(self.follower.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
