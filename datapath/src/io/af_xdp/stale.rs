//! Attaching a steering program where an earlier xgate may have left one: a program attached
//! the old way (netlink, not a link) under our name is removed first; anyone else's is left
//! alone and named in the error.

use super::bpf::{program_name, XdpLink, XdpMode, XdpProgram};
use super::steering::{SteeringError, PROGRAM_NAME};
use crate::kernel::netlink::{Interface, Netlink};

/// Attaches `program` to `interface`, native first unless `force_generic`; a program an
/// earlier xgate left attached the old way is removed first.
pub fn attach_replacing_stale(
    netlink: &mut Netlink,
    interface: &Interface,
    program: &XdpProgram,
    force_generic: bool,
) -> Result<XdpLink, SteeringError> {
    let modes: &[XdpMode] = if force_generic {
        &[XdpMode::Generic]
    } else {
        &[XdpMode::Native, XdpMode::Generic]
    };
    let mut last = None;
    for &mode in modes {
        match XdpLink::attach(program, interface.index, mode) {
            Ok(link) => return Ok(link),
            Err(e) if matches!(e.os_error(), Some(libc::EBUSY | libc::EEXIST)) => {
                remove_stale(netlink, interface)?;
                return XdpLink::attach(program, interface.index, mode).map_err(|source| {
                    SteeringError::Bpf {
                        interface: interface.name.clone(),
                        source,
                    }
                });
            }
            Err(e) => {
                tracing::debug!(interface = %interface.name, mode = mode.name(), "XDP attach refused: {e}");
                last = Some(e);
            }
        }
    }
    Err(SteeringError::Bpf {
        interface: interface.name.clone(),
        source: last.expect("at least one mode was tried"),
    })
}

/// Removes the program on `interface` if an earlier xgate left it; refuses anyone else's.
fn remove_stale(netlink: &mut Netlink, interface: &Interface) -> Result<(), SteeringError> {
    let current = netlink
        .interfaces()?
        .into_iter()
        .find(|i| i.index == interface.index)
        .and_then(|i| i.xdp);
    let Some((id, attached)) = current else {
        return Ok(());
    };
    let name = program_name(id).unwrap_or_else(|e| format!("(name unreadable: {e})"));
    if name != PROGRAM_NAME {
        return Err(SteeringError::Occupied {
            interface: interface.name.clone(),
            name,
            id,
        });
    }
    let flags = match attached {
        netlink_packet_route::link::XdpAttached::SocketBuffer => XdpMode::Generic.flag(),
        _ => XdpMode::Native.flag(),
    };
    netlink.detach_xdp(interface.index, flags).map_err(|e| {
        // Detaching fails when the program is held by a link: another xgate is running.
        tracing::debug!(interface = %interface.name, "netlink XDP detach refused: {e}");
        SteeringError::HeldByAnotherXgate {
            interface: interface.name.clone(),
            id,
        }
    })?;
    tracing::warn!(
        interface = %interface.name,
        id,
        "replaced a steering program left by an earlier xgate"
    );
    Ok(())
}
