//! An AF_XDP socket bound to one receive queue of one interface, with its four rings. The
//! first socket on a UMEM registers it; others share it (`XDP_SHARED_UMEM`) with fill and
//! completion rings of their own.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use thiserror::Error;

use super::ring::Ring;
use super::umem;
use crate::io::frames::Frames;

/// Entries in each ring (powers of two).
#[derive(Debug, Clone, Copy)]
pub struct RingSizes {
    /// Frames lent to the kernel for receiving.
    pub fill: u32,
    /// Sent frames the kernel gives back.
    pub completion: u32,
    /// Received frames.
    pub rx: u32,
    /// Frames to send.
    pub tx: u32,
}

/// Setting up an AF_XDP socket failed.
#[derive(Debug, Error)]
pub enum XskError {
    /// A step of the set-up failed.
    #[error("AF_XDP socket on interface {ifindex} queue {queue}: {step}: {source}")]
    Setup {
        /// Interface index.
        ifindex: u32,
        /// Receive queue.
        queue: u32,
        /// What was being done.
        step: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
}

impl XskError {
    /// The OS error behind it.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            XskError::Setup { source, .. } => source.raw_os_error(),
        }
    }
}

/// A bound AF_XDP socket.
pub struct XskSocket {
    // Rings before the descriptor: they are unmapped before the socket closes.
    /// UMEM frames lent to the kernel for receiving (offsets).
    pub fill: Ring<u64>,
    /// Sent frames given back (offsets as sent).
    pub completion: Ring<u64>,
    /// Received frames.
    pub rx: Ring<libc::xdp_desc>,
    /// Frames to send.
    pub tx: Ring<libc::xdp_desc>,
    fd: OwnedFd,
    ifindex: u32,
    queue: u32,
    zero_copy: bool,
}

fn setsockopt<T>(fd: &OwnedFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: passes a live value and its size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getsockopt<T>(fd: &OwnedFd, name: libc::c_int) -> io::Result<T> {
    // SAFETY: the kernel writes at most `len` bytes into a zeroed, plain-data value.
    unsafe {
        let mut value: T = zeroed();
        let mut len = size_of::<T>() as libc::socklen_t;
        let ret = libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        );
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(value)
    }
}

impl XskSocket {
    /// Opens a socket on queue `queue` of interface `ifindex` using `frames` as its UMEM:
    /// registering them, or sharing the registration `shared_with` made. Zero-copy where the driver supports it,
    /// copy mode otherwise (`zero_copy` says which).
    pub fn bind(
        frames: &Frames,
        shared_with: Option<&XskSocket>,
        ifindex: u32,
        queue: u32,
        sizes: RingSizes,
    ) -> Result<Self, XskError> {
        let fail = |step: &'static str| {
            move |source: io::Error| XskError::Setup {
                ifindex,
                queue,
                step,
                source,
            }
        };
        // SAFETY: plain socket(2); the result is checked and owned below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(fail("socket(AF_XDP)")(io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor only we hold.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if shared_with.is_none() {
            setsockopt(&fd, libc::XDP_UMEM_REG, &umem::registration(frames))
                .map_err(fail("registering the UMEM (XDP_UMEM_REG)"))?;
        }
        setsockopt(&fd, libc::XDP_UMEM_FILL_RING, &sizes.fill).map_err(fail("fill ring"))?;
        setsockopt(&fd, libc::XDP_UMEM_COMPLETION_RING, &sizes.completion)
            .map_err(fail("completion ring"))?;
        setsockopt(&fd, libc::XDP_RX_RING, &sizes.rx).map_err(fail("rx ring"))?;
        setsockopt(&fd, libc::XDP_TX_RING, &sizes.tx).map_err(fail("tx ring"))?;
        let offsets: libc::xdp_mmap_offsets =
            getsockopt(&fd, libc::XDP_MMAP_OFFSETS).map_err(fail("ring offsets"))?;
        let fill = Ring::map(
            &fd,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
            sizes.fill,
            &offsets.fr,
        )
        .map_err(fail("mapping the fill ring"))?;
        let completion = Ring::map(
            &fd,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
            sizes.completion,
            &offsets.cr,
        )
        .map_err(fail("mapping the completion ring"))?;
        let rx = Ring::map(&fd, libc::XDP_PGOFF_RX_RING, sizes.rx, &offsets.rx)
            .map_err(fail("mapping the rx ring"))?;
        let tx = Ring::map(&fd, libc::XDP_PGOFF_TX_RING, sizes.tx, &offsets.tx)
            .map_err(fail("mapping the tx ring"))?;

        // No copy/zero-copy flag: the kernel tries zero-copy and falls back to copying.
        let mut addr: libc::sockaddr_xdp = {
            // SAFETY: a plain-data struct, valid when zeroed.
            unsafe { zeroed() }
        };
        addr.sxdp_family = libc::AF_XDP as u16;
        addr.sxdp_flags = libc::XDP_USE_NEED_WAKEUP;
        addr.sxdp_ifindex = ifindex;
        addr.sxdp_queue_id = queue;
        if let Some(first) = shared_with {
            // A sharing socket inherits the first one's mode and flags; naming any is EINVAL.
            addr.sxdp_flags = libc::XDP_SHARED_UMEM;
            addr.sxdp_shared_umem_fd = first.fd.as_raw_fd() as u32;
        }
        // SAFETY: binds to a live sockaddr_xdp of the size given.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            return Err(fail("bind")(io::Error::last_os_error()));
        }
        let options: libc::xdp_options =
            getsockopt(&fd, libc::XDP_OPTIONS).map_err(fail("reading the bound mode"))?;
        Ok(Self {
            fill,
            completion,
            rx,
            tx,
            fd,
            ifindex,
            queue,
            zero_copy: options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0,
        })
    }

    /// The socket's descriptor (for the XSKMAP and for polling).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The interface it is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The receive queue it is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The driver gives it frames without copying.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Asks the kernel to send what the tx ring holds (in copy mode sending happens only
    /// here, at most 32 frames per call). A busy or full device is not an error: the frames
    /// stay queued for the next kick.
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length send with no buffer, as the AF_XDP interface defines.
        let ret = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => Ok(()),
                _ => Err(err),
            };
        }
        Ok(())
    }

    /// Asks the driver to take frames from the fill ring (when it set the wake-up flag).
    pub fn kick_rx(&self) {
        // SAFETY: a zero-length, non-blocking receive with no buffer.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// The kernel's counters for this socket (drops for a full rx ring, an empty fill ring...).
    pub fn statistics(&self) -> io::Result<libc::xdp_statistics> {
        getsockopt(&self.fd, libc::XDP_STATISTICS)
    }
}
