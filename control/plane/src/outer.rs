//! Setting up the outer side before the workers start: with `backend = "auto"` or "af-xdp",
//! the XDP steering program on the outer interfaces (the workers then bind their AF_XDP
//! sockets); with "io-uring", or when "auto" cannot set AF_XDP up, nothing beyond the UDP
//! sockets, and one log line says why. With `inner = "af-xdp"` or "auto", the LAN program on
//! the LAN interfaces too ("auto" falls back to the TUN, saying why). While it runs,
//! `follow_interfaces` keeps the steering in step with interfaces and addresses coming and
//! going.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use datapath::io::af_xdp::backend::MAX_MTU as XDP_MAX_MTU;
use datapath::io::af_xdp::steering::{Steering, SteeringError};
use datapath::kernel::netlink::Netlink;
use datapath::launch::WorkerHandle;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use crate::config::{Backend, Inner, OuterSettings, XdpModeSetting};

/// The AF_XDP set-up, or why there is none.
pub struct OuterSide {
    /// The steering programs, when AF_XDP is in use.
    pub steering: Option<Arc<Steering>>,
    /// What the outer side runs on, for logs and status.
    pub summary: String,
}

/// AF_XDP on the outer interfaces, and on the LAN ones with `lan`.
fn try_af_xdp(settings: &OuterSettings, port: u16, mtu: usize, lan: bool) -> Result<Steering> {
    if mtu > XDP_MAX_MTU {
        return Err(anyhow!(
            "interface.mtu {mtu} is above {XDP_MAX_MTU}, the largest whose datagrams fit an AF_XDP frame; \
             lower mtu or set backend = \"io-uring\""
        ));
    }
    let mut netlink = Netlink::open().map_err(|e| anyhow!("cannot open a netlink socket: {e}"))?;
    // The workers' UDP sockets are bound to the wildcard address: every interface with an
    // address can receive our datagrams.
    let generic = settings.xdp_mode == XdpModeSetting::Generic;
    let lan_interfaces: &[String] = if lan { &settings.lan_interfaces } else { &[] };
    let sides = (settings.interfaces.as_slice(), lan_interfaces, mtu);
    Steering::attach_with_lan(&mut netlink, sides, port, generic).map_err(|e| match e {
        SteeringError::NoSuchInterface(_) => anyhow!("interface.outer_interfaces: {e}"),
        SteeringError::NoSuchLanInterface(_) => anyhow!("interface.lan_interfaces: {e}"),
        other => anyhow!("{other}"),
    })
}

/// AF_XDP with the LAN side where it is wanted; "auto" falls back to the outer side alone
/// (the TUN carries the LAN's traffic) with one log line.
fn try_sides(settings: &OuterSettings, port: u16, mtu: usize) -> Result<Steering> {
    if !settings.lan_wanted() {
        return try_af_xdp(settings, port, mtu, false);
    }
    match try_af_xdp(settings, port, mtu, true) {
        Ok(s) => Ok(s),
        Err(e) if settings.inner == Inner::Auto => {
            tracing::info!("LAN side not on AF_XDP ({e:#}); LAN traffic goes through the TUN");
            try_af_xdp(settings, port, mtu, false)
        }
        Err(e) => Err(e.context(
            "inner = \"af-xdp\": setting up AF_XDP on the LAN interfaces failed (inner = \"auto\" \
             would fall back to the TUN)",
        )),
    }
}

/// The LAN side cannot run without AF_XDP: an error if it was demanded, a log line if "auto".
fn lan_needs_af_xdp(settings: &OuterSettings, why: &str) -> Result<()> {
    match (settings.lan_wanted(), settings.inner) {
        (true, Inner::AfXdp) => bail!(
            "inner = \"af-xdp\" needs AF_XDP on the outer side too, but {why}; set inner = \
             \"auto\" or \"tun\", or fix the outer side"
        ),
        (true, _) => {
            tracing::info!("LAN side not on AF_XDP ({why}); LAN traffic goes through the TUN");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// rtnetlink multicast groups: links, IPv4 and IPv6 addresses.
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
/// Changes come in bursts (an interface and its addresses): wait this long for the rest.
const SETTLE: Duration = Duration::from_millis(100);

/// The thread that follows interface changes; stopped and joined when dropped (within about
/// a second: its event socket's receive timeout).
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Follows interface and address changes: the steering re-evaluates its interfaces and
/// addresses, and the workers, woken, rebind. Runs until the returned guard is dropped.
pub fn follow_interfaces(steering: Arc<Steering>, workers: Vec<WorkerHandle>) -> Result<Follower> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let mut events = Socket::new(NETLINK_ROUTE).context("netlink socket for interface events")?;
    events
        .bind_auto()
        .context("binding the netlink event socket")?;
    for group in [RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR] {
        events
            .add_membership(group)
            .context("subscribing to interface events")?;
    }
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: sets SO_RCVTIMEO from a live timeval of the size given.
    let ret = unsafe {
        libc::setsockopt(
            events.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        // Without it the thread could not see the stop flag, and shutdown would wait forever.
        return Err(std::io::Error::last_os_error())
            .context("a receive timeout on the event socket");
    }
    let mut query = Netlink::open().context("netlink socket for interface queries")?;
    let thread = std::thread::Builder::new()
        .name("xgate-outer".into())
        .spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !stopped.load(Ordering::Relaxed) {
                match events.recv(&mut &mut buf[..], 0) {
                    Ok(_) => {}
                    // Events were lost (the socket's buffer overflowed): look afresh.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(e) => {
                        let quiet = matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        );
                        if !quiet {
                            tracing::debug!("interface events: {e}");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        // A timeout: only a refresh that could not finish is tried again.
                        if !steering.incomplete() {
                            continue;
                        }
                    }
                }
                std::thread::sleep(SETTLE);
                // What came meanwhile is covered by the one re-evaluation below.
                let _ = events.set_non_blocking(true);
                while events.recv(&mut &mut buf[..], 0).is_ok() {}
                let _ = events.set_non_blocking(false);
                match steering.refresh(&mut query) {
                    Ok(true) => {
                        tracing::info!("outer side now: af-xdp on {}", steering.describe());
                        for w in &workers {
                            w.wake();
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!("AF_XDP interfaces not re-evaluated: {e}"),
                }
            }
        })
        .context("starting the interface-following thread")?;
    Ok(Follower {
        stop,
        thread: Some(thread),
    })
}

/// Which way outer traffic passes the host firewall, as status displays say it.
pub fn firewall_path(af_xdp: bool) -> &'static str {
    if af_xdp {
        "XDP: the listen port's UDP reaches xgate before netfilter, so nftables/iptables rules \
         and policy routing do not apply to it"
    } else {
        "kernel UDP: nftables/iptables rules, fwmark and policy routing apply"
    }
}

/// Sets up the outer side for listen port `port`, inner MTU `mtu` and firewall mark
/// `fwmark` (0 = none).
pub fn prepare(settings: &OuterSettings, port: u16, mtu: usize, fwmark: u32) -> Result<OuterSide> {
    if settings.backend == Backend::IoUring {
        lan_needs_af_xdp(settings, "backend = \"io-uring\"")?;
        return Ok(OuterSide {
            steering: None,
            summary: "io-uring (configured)".into(),
        });
    }
    // AF_XDP hands our port to userspace before netfilter, and its replies leave straight
    // for the NIC: no socket carries the mark, no rule or routing table sees them.
    if fwmark != 0 {
        if settings.backend == Backend::AfXdp {
            bail!(
                "backend = \"af-xdp\" with fwmark = {fwmark}: AF_XDP replies skip the firewall \
                 mark and policy routing; remove fwmark, or use backend = \"io-uring\" (\"auto\" \
                 picks io_uring when fwmark is set)"
            );
        }
        lan_needs_af_xdp(settings, "fwmark is set")?;
        let summary = "io-uring (fwmark is set: AF_XDP replies would skip it)".to_string();
        tracing::info!("outer side: {summary}");
        return Ok(OuterSide {
            steering: None,
            summary,
        });
    }
    match try_sides(settings, port, mtu) {
        Ok(steering) => {
            let summary = format!("af-xdp on {}", steering.describe());
            tracing::info!("outer side: {summary}");
            Ok(OuterSide {
                steering: Some(Arc::new(steering)),
                summary,
            })
        }
        Err(e) if settings.backend == Backend::Auto => {
            tracing::info!("AF_XDP not used ({e:#}); outer datagrams go through io_uring UDP sockets");
            lan_needs_af_xdp(settings, "AF_XDP could not be set up")?;
            Ok(OuterSide {
                steering: None,
                summary: format!("io-uring (AF_XDP unavailable: {e:#})"),
            })
        }
        Err(e) => Err(e.context("backend = \"af-xdp\": setting up AF_XDP failed (backend = \"auto\" would fall back to io_uring)")),
    }
}
