//! `xgate up`: brings the interface up, runs until told to stop, and removes what it created.
//!
//! Order matters for "nothing left behind": every step that can fail on bad configuration
//! (socket claim, port, TUN, addresses) happens before anything lasting exists, and each
//! object is owned so that an early return tears it down. The UAPI socket comes last.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use datapath::kernel::tun::{Interface, Tun, TunError};
use datapath::kernel::udp::BindError;
use datapath::launch::{LaunchConfig, Workers};

use crate::api::{ApiServer, ApiState, ClientPolicy, ClientTemplate};
use crate::config::{ApiSettings, RegistrySettings, Settings};
use crate::plane::{ControlPlane, PlaneLinks, StopReason, HANDSHAKE_QUEUE};
use crate::registry::{Peer, Registry};
use crate::uapi::{self, UapiServer};
use crate::update::{DeviceUpdate, PeerUpdate};

fn bind_error(e: BindError) -> anyhow::Error {
    match e {
        BindError::InUse { port } => anyhow!(
            "interface.listen_port: UDP port {port} is already in use (another WireGuard or xgate?); \
             choose another listen_port or stop the other process"
        ),
        BindError::Permission { port } => anyhow!(
            "interface.listen_port: no permission to bind UDP port {port}; use a port above 1023 or run as root"
        ),
        other => anyhow!("interface.listen_port: {other}"),
    }
}

fn tun_error(e: TunError) -> anyhow::Error {
    match e {
        TunError::Permission { name } => anyhow!(
            "cannot create TUN interface {name}: permission denied; run as root or grant CAP_NET_ADMIN"
        ),
        TunError::NoDevice { source } => anyhow!(
            "cannot open /dev/net/tun ({source}); load the tun module (modprobe tun) or, in a container, pass the device"
        ),
        TunError::Busy { name } => anyhow!(
            "interface.name: {name} already exists and is not a free multi-queue TUN; delete it (ip link del {name}) or choose another name"
        ),
        other => anyhow!("{other}"),
    }
}

/// How long a busy port is retried: a crashed xgate's sockets outlive it by tens of
/// milliseconds (io_uring releases them asynchronously), and a supervisor may restart at once.
const PORT_GRACE: Duration = Duration::from_secs(2);

fn bind_with_grace(port: u16, workers: usize, fwmark: u32) -> Result<Vec<OwnedFd>, BindError> {
    let until = Instant::now() + PORT_GRACE;
    loop {
        match datapath::kernel::udp::bind_sockets(port, workers, fwmark) {
            Err(BindError::InUse { .. }) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Opens the registry (creating its directory) and reads the peers that are not revoked.
fn load_registry(settings: &RegistrySettings) -> Result<(Registry, Vec<Peer>)> {
    let path = &settings.path;
    let place = || format!("registry.path ({})", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: creating its directory", place()))?;
    }
    let started = Instant::now();
    let registry = Registry::open(path, settings.pools.clone()).with_context(place)?;
    let peers = registry.active().with_context(place)?;
    tracing::info!(
        peers = peers.len(),
        ms = started.elapsed().as_millis() as u64,
        path = %path.display(),
        "registry loaded"
    );
    Ok((registry, peers))
}

/// What every client configuration the API hands out shares.
fn client_template(
    settings: &Settings,
    api: &ApiSettings,
    server_key: proto::PublicKey,
    listen_port: u16,
) -> ClientTemplate {
    let pools = settings.registry.iter().flat_map(|r| &r.pools);
    let allowed_ips = api.client_allowed_ips.clone().unwrap_or_else(|| {
        pools
            .flat_map(|p| p.v4.iter().chain(p.v6.iter()).copied())
            .collect()
    });
    let endpoint = api.endpoint.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}:{listen_port}")
    });
    let default = ClientPolicy {
        allowed_ips,
        dns: api.dns.clone(),
        mtu: settings.mtu,
        keepalive: api.persistent_keepalive,
    };
    let groups = api
        .groups
        .iter()
        .map(|g| {
            let policy = ClientPolicy {
                allowed_ips: g
                    .client_allowed_ips
                    .clone()
                    .unwrap_or_else(|| default.allowed_ips.clone()),
                dns: g.dns.clone().unwrap_or_else(|| default.dns.clone()),
                mtu: g.mtu.unwrap_or(default.mtu),
                keepalive: g.persistent_keepalive.unwrap_or(default.keepalive),
            };
            (g.name.clone(), policy)
        })
        .collect();
    ClientTemplate {
        server_key,
        endpoint,
        default,
        groups,
    }
}

/// Starts the HTTP API over the registry.
fn start_api(
    api: &ApiSettings,
    registry: Registry,
    plane: crossbeam_channel::Sender<crate::plane::Request>,
    client: ClientTemplate,
    events: crate::events::EventHub,
) -> Result<ApiServer> {
    let hashes = crate::api::load_tokens(&api.token_file)
        .with_context(|| format!("api.token_file ({})", api.token_file.display()))?;
    let state = Arc::new(ApiState::new(
        registry,
        plane,
        hashes,
        client,
        api.metrics_need_token,
        events,
    ));
    let server = ApiServer::start(api.listen, state).map_err(|e| {
        anyhow!(
            "api.listen: cannot listen on {}: {e}; choose another address or port",
            api.listen
        )
    })?;
    tracing::info!(listen = %server.local_addr, "HTTP API up");
    Ok(server)
}

/// Runs the daemon in the foreground until SIGINT/SIGTERM, interface deletion or socket
/// deletion; returns once everything it created is gone.
pub fn up(settings: Settings) -> Result<()> {
    let launched = Instant::now();
    let name = settings.name.clone();
    uapi::claim(&name).map_err(|e| anyhow!("interface.name: {e}"))?;
    // Before anything lasting exists: a registry that cannot be opened stops the start.
    let (registry, registered) = match &settings.registry {
        Some(r) => {
            let (registry, peers) = load_registry(r)?;
            (Some(registry), peers)
        }
        None => (None, Vec::new()),
    };

    let sockets: Vec<Arc<OwnedFd>> =
        bind_with_grace(settings.listen_port, settings.workers, settings.fwmark)
            .map_err(bind_error)?
            .into_iter()
            .map(Arc::new)
            .collect();
    let listen_port = sockets
        .first()
        .map(|s| datapath::kernel::udp::local_port(s))
        .transpose()
        .context("reading the bound port")?
        .unwrap_or(settings.listen_port);

    let mut tun = Tun::open(&name, settings.workers, true).map_err(tun_error)?;
    let iface = Interface::new(&name);
    iface
        .set_mtu(settings.mtu)
        .map_err(|e| anyhow!("interface.mtu: {e}"))?;
    for a in &settings.addresses {
        iface
            .add_address(*a)
            .map_err(|e| anyhow!("interface.address: {e}"))?;
    }
    iface.up().map_err(|e| anyhow!("{e}"))?;

    let outer = crate::outer::prepare(&settings.outer, listen_port, settings.mtu)?;
    let (hs_tx, hs_rx) = crossbeam_channel::bounded(HANDSHAKE_QUEUE);
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let workers = Workers::launch(
        LaunchConfig {
            mtu: settings.mtu,
            cpus: settings.cpus.clone(),
            tun_vnet_header: tun.vnet_header(),
            xdp: outer.steering.clone(),
            listen_port,
            xdp_fallback: settings.outer.backend == crate::config::Backend::Auto,
        },
        sockets.clone(),
        tun.take_queues(),
        hs_tx,
        ev_tx,
    )
    .context("starting datapath workers")?;

    // Interfaces and addresses that come and go after the start are followed.
    let follow_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = match &outer.steering {
        Some(steering) => match crate::outer::follow_interfaces(
            steering.clone(),
            workers.handles.clone(),
            follow_stop.clone(),
        ) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("interface changes will not be followed: {e:#}");
                None
            }
        },
        None => None,
    };
    let (stop_tx, stop_rx) = crossbeam_channel::unbounded();
    let (req_tx, req_rx) = crossbeam_channel::unbounded();
    let events = crate::events::EventHub::default();
    let plane = ControlPlane::new(
        &name,
        listen_port,
        settings.fwmark,
        settings.handshake_threads,
        PlaneLinks {
            handshakes: hs_rx,
            events: ev_rx,
            requests: req_rx,
            stop: stop_tx.clone(),
            workers: workers.handles.clone(),
            sockets,
            events_out: events.clone(),
            outer: crate::plane::OuterLinks {
                summary: outer.summary.clone(),
                per_worker: workers.outer.clone(),
                steering: outer.steering.clone(),
            },
        },
    );
    let mut plane = match plane {
        Ok(p) => p,
        Err(e) => {
            workers.shutdown();
            return Err(anyhow!("starting the handshake responder threads: {e}"));
        }
    };
    let public_key = settings.private_key.as_ref().map(|k| k.public_key());
    let client = settings
        .api
        .as_ref()
        .zip(public_key)
        .map(|(api, key)| client_template(&settings, api, key, listen_port));
    let initial = DeviceUpdate {
        private_key: settings.private_key.map(Some),
        peers: settings
            .peers
            .into_iter()
            .map(|(_, p)| p)
            .chain(registered.into_iter().map(|p| PeerUpdate::registered(&p)))
            .collect(),
        ..DeviceUpdate::default()
    };
    if let Err(e) = plane.apply(initial) {
        workers.shutdown();
        return Err(anyhow!("applying configuration: {e}"));
    }
    let plane_thread = std::thread::Builder::new()
        .name("xgate-control".into())
        .spawn(move || plane.run())
        .context("starting the control plane")?;

    let api = match (registry, &settings.api, client) {
        (Some(registry), Some(api), Some(client)) => {
            match start_api(api, registry, req_tx.clone(), client, events.clone()) {
                Ok(server) => Some(server),
                Err(e) => {
                    drop(req_tx);
                    let _ = plane_thread.join();
                    workers.shutdown();
                    return Err(e);
                }
            }
        }
        _ => None,
    };

    let server = match UapiServer::start(&name, req_tx.clone(), stop_tx.clone()) {
        Ok(s) => s,
        Err(e) => {
            drop(api);
            drop(req_tx);
            let _ = plane_thread.join();
            workers.shutdown();
            return Err(anyhow!("UAPI socket: {e}"));
        }
    };

    let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])
        .context("installing signal handlers")?;
    let signal_handle = signals.handle();
    let signal_stop = stop_tx;
    std::thread::Builder::new()
        .name("xgate-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let _ = signal_stop.send(StopReason::Signal(sig));
            }
        })
        .context("starting the signal thread")?;

    tracing::info!(
        interface = %name,
        public_key = %public_key.map(|k| k.to_base64()).unwrap_or_else(|| "(none yet)".into()),
        listen_port,
        workers = workers.len(),
        mtu = settings.mtu,
        backend = %outer.summary,
        startup_ms = launched.elapsed().as_millis() as u64,
        "xgate is up"
    );

    let reason = stop_rx.recv().unwrap_or(StopReason::SocketRemoved);
    let started = Instant::now();
    tracing::info!(?reason, "shutting down");
    signal_handle.close();
    server.stop();
    drop(api);
    drop(req_tx);
    let _ = plane_thread.join();
    // The follower lets go of the steering programs (they detach with the last holder).
    follow_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = follower {
        let _ = t.join();
    }
    // Closing the workers' TUN queues deletes the interface and its addresses.
    workers.shutdown();
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "stopped; interface removed"
    );
    match reason {
        StopReason::WorkerFailed(e) => Err(anyhow!("datapath failed: {e}")),
        _ => Ok(()),
    }
}
