//! The users' sockets under one epoll: the load loop sleeps here until a datagram arrives or
//! its next deadline is due.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use anyhow::Result;

/// An epoll instance over the users' sockets (event data = the socket's index).
pub struct Epoll(i32);

impl Epoll {
    /// Watches every socket of `sockets` for datagrams to read.
    pub fn new(sockets: &[UdpSocket]) -> Result<Self> {
        // SAFETY: plain syscall; the descriptor is owned by the returned value.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        anyhow::ensure!(
            fd >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        let e = Epoll(fd);
        for (i, socket) in sockets.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both descriptors are open; `ev` is valid for the call.
            let rc =
                unsafe { libc::epoll_ctl(fd, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut ev) };
            anyhow::ensure!(rc == 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        }
        Ok(e)
    }

    /// Waits up to `timeout_ms` for ready sockets; returns how many events were filled in.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: `events` is a valid buffer of its length.
        let n = unsafe {
            libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms)
        };
        n.max(0) as usize
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}
