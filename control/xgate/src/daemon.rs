//! `xgate up`: brings the interface up, runs until told to stop, and removes what it created.
//!
//! Order matters for "nothing left behind": every step that can fail on bad configuration
//! (socket claim, registry, port, TUN, addresses) happens before anything lasting exists, and
//! every part is a guard that stops what it started when dropped. `Daemon` holds them in
//! teardown order, the reverse of the start, so a start that fails half-way (its locals
//! dropped newest first) and a normal stop take things down the same way. The UAPI socket
//! comes last.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use datapath::kernel::tun::{Interface, Tun, TunError};
use datapath::kernel::udp::BindError;
use datapath::launch::{LaunchConfig, Workers};
use manage::api::ApiServer;
use manage::events::EventHub;
use manage::{Management, ServerFacts, TokenReloader};
use plane::config::{Backend, InterfaceSettings};
use plane::engine::{
    ControlPlane, OuterSummary, PlaneChannels, PlaneHandle, RunningPlane, StopReason,
    HANDSHAKE_QUEUE,
};
use plane::outer::{Follower, OuterSide};
use plane::uapi::{self, UapiServer};
use plane::update::{DeviceUpdate, PeerUpdate};
use proto::PrivateKey;
use signal_hook::iterator::Signals;

use crate::settings::Settings;

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

/// SIGINT and SIGTERM become a stop request; the thread ends when dropped.
struct SignalThread {
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalThread {
    /// Takes SIGINT, SIGTERM and SIGHUP from their default actions, first thing: a SIGHUP
    /// (`systemctl reload`) during a start must not end it half-way. What arrives before the
    /// thread runs waits for it.
    fn listen() -> Result<Signals> {
        Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
            .context("installing signal handlers")
    }

    /// SIGINT and SIGTERM stop the daemon; SIGHUP rereads the API's token file (and nothing
    /// else: the daemon goes on).
    fn start(
        mut signals: Signals,
        stop: Sender<StopReason>,
        tokens: Option<TokenReloader>,
    ) -> Result<Self> {
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("xgate-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig != libc::SIGHUP {
                        let _ = stop.send(StopReason::Signal(sig));
                        return;
                    }
                    match &tokens {
                        Some(t) => t.reload(),
                        None => tracing::info!("SIGHUP: no API tokens to reread"),
                    }
                }
            })
            .context("starting the signal thread")?;
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for SignalThread {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything `xgate up` started. Fields drop in declaration order, which is the teardown
/// order: first what takes requests from outside, then the plane (every holder of its
/// requests is gone by then), the follower (it lets go of the steering programs), the workers
/// (closing their TUN queues deletes the interface and its addresses), and last the outer
/// side (the XDP programs detach with their last holder).
struct Daemon {
    _signals: SignalThread,
    _uapi: UapiServer,
    _api: Option<ApiServer>,
    _ike: crate::ike_start::IkeGuard,
    _plane: RunningPlane,
    _follower: Option<Follower>,
    _workers: Workers,
    _outer: OuterSide,
    stop: Receiver<StopReason>,
}

/// Warns when another interface already has an address inside one of this interface's
/// tunnel prefixes (two xgate interfaces both on 10.77.0.0/16, say): replies would follow
/// whichever route the kernel prefers. A warning, not a refusal: it may be deliberate.
fn warn_of_shared_prefixes(s: &InterfaceSettings) {
    let (name, prefixes) = (&s.name, &s.addresses);
    use datapath::kernel::netlink::Netlink;
    let Ok(mut netlink) = Netlink::open() else {
        return;
    };
    let (Ok(interfaces), Ok(addresses)) = (netlink.interfaces(), netlink.addresses()) else {
        return;
    };
    for net in prefixes {
        let network = net.trunc();
        for (index, ip) in &addresses {
            let Some(other) = interfaces.iter().find(|i| i.index == *index) else {
                continue;
            };
            if other.name != *name && !other.loopback && network.contains(ip) {
                tracing::warn!(
                    "interface.address: {network} is also claimed by interface {} ({ip}): \
                     traffic for it follows whichever route the kernel prefers; give each \
                     interface a prefix of its own",
                    other.name
                );
            }
        }
    }
}

/// The outer UDP sockets, the port they got, and the TUN interface, configured and up.
fn open_interface(s: &InterfaceSettings) -> Result<(Vec<Arc<OwnedFd>>, u16, Tun)> {
    let sockets: Vec<Arc<OwnedFd>> = bind_with_grace(s.listen_port, s.workers, s.fwmark)
        .map_err(bind_error)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let listen_port = sockets
        .first()
        .map(|s| datapath::kernel::udp::local_port(s))
        .transpose()
        .context("reading the bound port")?
        .unwrap_or(s.listen_port);
    warn_of_shared_prefixes(s);
    let tun = Tun::open(&s.name, s.workers, true).map_err(tun_error)?;
    let iface = Interface::new(&s.name);
    iface
        .set_mtu(s.mtu)
        .map_err(|e| anyhow!("interface.mtu: {e}"))?;
    for a in &s.addresses {
        iface
            .add_address(*a)
            .map_err(|e| anyhow!("interface.address: {e}"))?;
    }
    iface.up().map_err(|e| anyhow!("{e}"))?;
    Ok((sockets, listen_port, tun))
}

impl Daemon {
    /// Starts every part in order; on an error, what started is stopped again (newest first).
    fn start(
        settings: Settings,
        api_listener: Option<std::net::TcpListener>,
        launched: Instant,
    ) -> Result<Self> {
        let signals = SignalThread::listen()?;
        let Settings {
            interface: s,
            manage,
            ike,
        } = settings;
        // Before anything lasting exists: a registry that cannot be opened stops the start.
        let cluster_key = s.private_key.as_ref().map(proto::PrivateKey::public_key);
        let (management, registered) = match Management::open(&manage, api_listener, cluster_key)? {
            Some((m, peers)) => (Some(m), peers),
            None => (None, Vec::new()),
        };
        let (sockets, listen_port, mut tun) = open_interface(&s)?;

        let outer = plane::outer::prepare(&s.outer, listen_port, s.mtu, s.fwmark)?;
        // The LAN side steers the pools' traffic from the start (without a registry, the
        // interface's own prefixes: what the kernel routes into the TUN); the plane adds the
        // peers' allowed IPs.
        let lan_pools: Vec<_> = match &manage.registry {
            Some(r) => r
                .pools
                .iter()
                .flat_map(|p| p.v4.into_iter().chain(p.v6))
                .collect(),
            None => s.addresses.iter().map(|a| a.trunc()).collect(),
        };
        if let Some(steering) = outer.steering.as_ref().filter(|s| s.has_lan()) {
            steering
                .set_lan_prefixes(&lan_pools)
                .context("steering the pools' traffic on the LAN interfaces")?;
        }
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let events = EventHub::default();
        let (hs_tx, hs_rx) = crossbeam_channel::bounded(HANDSHAKE_QUEUE);
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let workers = Workers::launch(
            LaunchConfig {
                mtu: s.mtu,
                cpus: s.cpus.clone(),
                tun_vnet_header: tun.vnet_header(),
                tun_udp_super_packets: tun.takes_udp_super_packets(),
                xdp: outer.steering.clone(),
                listen_port,
                xdp_fallback: s.outer.backend == Backend::Auto,
                batch_linger: s.batch_linger,
            },
            sockets.clone(),
            tun.take_queues(),
            hs_tx,
            ev_tx,
        )
        .context("starting datapath workers")?;

        // Interfaces and addresses that come and go after the start are followed.
        let follower = outer.steering.as_ref().and_then(|steering| {
            plane::outer::follow_interfaces(steering.clone(), workers.handles.clone())
                .map_err(|e| tracing::warn!("interface changes will not be followed: {e:#}"))
                .ok()
        });
        let (stop_tx, stop) = crossbeam_channel::unbounded();
        crate::panics::stop_on_panic(stop_tx.clone());
        let mut control = ControlPlane::new(
            &s.name,
            listen_port,
            s.fwmark,
            s.handshake_threads,
            PlaneChannels {
                handshakes: hs_rx,
                events: ev_rx,
                requests: req_rx,
                stop: stop_tx.clone(),
                workers: workers.handles.clone(),
                sockets,
                events_out: Arc::new(events.clone()),
                outer: OuterSummary {
                    summary: outer.summary.clone(),
                    per_worker: workers.outer.clone(),
                    steering: outer.steering.clone(),
                    lan_pools,
                },
                live_indices: workers.live_indices.clone(),
            },
        )
        .map_err(|e| anyhow!("starting the handshake responder threads: {e}"))?;
        let public_key = s.private_key.as_ref().map(PrivateKey::public_key);
        let initial = DeviceUpdate {
            private_key: s.private_key.map(Some),
            peers: s
                .peers
                .into_iter()
                .map(|(_, p)| p)
                .chain(registered)
                .collect::<Vec<PeerUpdate>>(),
            ..DeviceUpdate::default()
        };
        control
            .apply(initial)
            .map_err(|e| anyhow!("applying configuration: {e}"))?;
        let board = control.board();
        let running = control.spawn().context("starting the control plane")?;
        let handle = PlaneHandle::new(req_tx, board);

        let server = public_key.map(|public_key| ServerFacts {
            public_key,
            listen_port,
            mtu: s.mtu,
            interface: s.name.clone(),
        });
        let context = (management.as_ref(), &events, &handle);
        let xdp = outer.steering.clone();
        let (ike, ike_slot) =
            crate::ike_start::for_daemon(ike, context, (&workers, xdp), s.fwmark)?;
        let (api, tokens) = match management {
            Some(m) => m.serve(handle.clone(), events, server, ike_slot)?.unzip(),
            None => (None, None),
        };
        let uapi_server = UapiServer::start(&s.name, handle, stop_tx.clone())
            .map_err(|e| anyhow!("UAPI socket: {e}"))?;
        let signals = SignalThread::start(signals, stop_tx, tokens)?;

        tracing::info!(
            interface = %s.name,
            public_key = %public_key.map(|k| k.to_base64()).unwrap_or_else(|| "(none yet)".into()),
            listen_port,
            workers = workers.len(),
            mtu = s.mtu,
            backend = %outer.summary,
            startup_ms = launched.elapsed().as_millis() as u64,
            "xgate is up"
        );
        Ok(Self {
            _signals: signals,
            _uapi: uapi_server,
            _api: api,
            _ike: ike,
            _plane: running,
            _follower: follower,
            _workers: workers,
            _outer: outer,
            stop,
        })
    }
}

/// Runs the daemon in the foreground until SIGINT/SIGTERM, interface deletion or socket
/// deletion; returns once everything it created is gone.
pub fn up(mut settings: Settings) -> Result<()> {
    let launched = Instant::now();
    // Before any thread starts: khugepaged's copying stalled the workers and the handshake
    // plane for ~20 ms every 10 s (datapath/src/kernel/huge_pages.rs).
    if let Err(e) = datapath::kernel::huge_pages::refuse_transparent_huge_pages() {
        tracing::warn!("transparent huge pages left on (prctl: {e}); expect rare 20 ms stalls");
    }
    // An interface of this name running already is said as such, before its API's port
    // is found busy; then the API's port: a busy one stops the start before any file is made.
    uapi::claim(&settings.interface.name).map_err(|e| anyhow!("interface.name: {e}"))?;
    let api_listener = manage::service::bind_api(&settings.manage)?;
    if let Some(path) = settings
        .interface
        .create_pending_key()
        .map_err(|e| anyhow!("{e}"))?
    {
        tracing::info!(path = %path.display(), "created this interface's private key");
    }
    let daemon = Daemon::start(settings, api_listener, launched)?;
    tell_service_manager(sd_notify::NotifyState::Ready);
    let reason = daemon.stop.recv().unwrap_or(StopReason::SocketRemoved);
    let started = Instant::now();
    tracing::info!(?reason, "shutting down");
    tell_service_manager(sd_notify::NotifyState::Stopping);
    drop(daemon);
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "stopped; interface removed"
    );
    match reason {
        StopReason::WorkerFailed(e) => Err(anyhow!("datapath failed: {e}")),
        StopReason::Panicked(e) => Err(anyhow!("{e}; everything it ran is stopped and removed")),
        _ => Ok(()),
    }
}

/// Tells systemd (`Type=notify`) that xgate is up or going down; nothing when not started by it
/// (no `NOTIFY_SOCKET`).
fn tell_service_manager(state: sd_notify::NotifyState) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!("could not tell systemd of the daemon's state: {e}");
    }
}
