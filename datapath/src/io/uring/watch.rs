//! Descriptors whose readiness ends the backend's wait (AF_XDP sockets): a multishot poll
//! armed on each, re-armed when it ends, and cancelled when the descriptor goes (the poll
//! holds its file open until then).

use std::os::fd::RawFd;

use io_uring::opcode;
use io_uring::types::{CancelBuilder, Fd};

use super::{user_data, UringBackend, OP_CANCEL, OP_POLL};

impl UringBackend {
    /// Makes readiness of `fd` to read end a wait (nothing is read from it here).
    pub fn watch(&mut self, fd: RawFd) {
        self.watched.push(Some((fd, false)));
    }

    /// Stops watching `fd` (its poll is cancelled: the poll holds the file open until then).
    pub fn unwatch(&mut self, fd: RawFd) {
        for i in 0..self.watched.len() {
            if self.watched[i].is_some_and(|(f, _)| f == fd) {
                self.watched[i] = None;
                let cancel = opcode::AsyncCancel2::new(CancelBuilder::user_data(user_data(
                    OP_POLL, 0, i as u32,
                )))
                .build()
                .user_data(user_data(OP_CANCEL, 0, 0));
                let _ = self.push(cancel);
            }
        }
    }

    pub(super) fn arm_watched(&mut self) {
        for i in 0..self.watched.len() {
            let Some((fd, armed)) = self.watched[i] else {
                continue;
            };
            if armed {
                continue;
            }
            let entry = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(user_data(OP_POLL, 0, i as u32));
            let ok = self.push(entry);
            if let Some(w) = self.watched[i].as_mut() {
                w.1 = ok;
            }
        }
    }
}
