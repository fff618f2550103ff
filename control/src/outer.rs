//! Setting up the outer side before the workers start: with `backend = "auto"` or "af-xdp",
//! the XDP steering program on the outer interfaces (the workers then bind their AF_XDP
//! sockets); with "io-uring", or when "auto" cannot set AF_XDP up, nothing beyond the UDP
//! sockets, and one log line says why.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use datapath::io::af_xdp::backend::MAX_MTU as XDP_MAX_MTU;
use datapath::io::af_xdp::steering::{choose_interfaces, Steering};
use datapath::netlink::Netlink;

use crate::config::{Backend, OuterSettings, XdpModeSetting};

/// The AF_XDP set-up, or why there is none.
pub struct OuterSide {
    /// The steering programs, when AF_XDP is in use.
    pub steering: Option<Arc<Steering>>,
    /// What the outer side runs on, for logs and status.
    pub summary: String,
}

fn try_af_xdp(settings: &OuterSettings, port: u16, mtu: usize) -> Result<Steering> {
    if mtu > XDP_MAX_MTU {
        return Err(anyhow!(
            "interface.mtu {mtu} is above {XDP_MAX_MTU}, the largest whose datagrams fit an AF_XDP frame; \
             lower mtu or set backend = \"io-uring\""
        ));
    }
    let mut netlink = Netlink::open().map_err(|e| anyhow!("cannot open a netlink socket: {e}"))?;
    // The workers' UDP sockets are bound to the wildcard address: every interface with an
    // address can receive our datagrams.
    let interfaces = choose_interfaces(&mut netlink, &settings.interfaces, None)
        .map_err(|e| anyhow!("interface.outer_interfaces: {e}"))?;
    let generic = settings.xdp_mode == XdpModeSetting::Generic;
    Ok(Steering::attach(&mut netlink, &interfaces, port, generic)?)
}

/// Sets up the outer side for listen port `port` and inner MTU `mtu`.
pub fn prepare(settings: &OuterSettings, port: u16, mtu: usize) -> Result<OuterSide> {
    if settings.backend == Backend::IoUring {
        return Ok(OuterSide {
            steering: None,
            summary: "io-uring (configured)".into(),
        });
    }
    match try_af_xdp(settings, port, mtu) {
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
            Ok(OuterSide {
                steering: None,
                summary: format!("io-uring (AF_XDP unavailable: {e:#})"),
            })
        }
        Err(e) => Err(e.context("backend = \"af-xdp\": setting up AF_XDP failed (backend = \"auto\" would fall back to io_uring)")),
    }
}
