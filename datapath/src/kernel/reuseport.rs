//! Steering of received datagrams to the worker that owns their session. The outer sockets
//! form one SO_REUSEPORT group, in worker order; a classic BPF program attached to the group
//! reads the receiver index of each WireGuard message and picks the socket of the worker named
//! in its top byte (`messages::INDEX_WORKER_SHIFT`). So a session's packets reach its owner
//! whatever address or port the client roams to, and the hand-over queue is only the fallback.
//! Initiations (no receiver index yet) and anything the program cannot place are spread by the
//! kernel's flow hash, as without a program.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::messages::INDEX_WORKER_SHIFT;

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

// Classic BPF opcodes (linux/filter.h).
const LD_ABS_BYTE: u16 = 0x30;
const LD_ABS_WORD: u16 = 0x20;
const ADD_K: u16 = 0x04;
const JEQ_K: u16 = 0x15;
const RET_A: u16 = 0x16;
const RET_K: u16 = 0x06;

/// A return value no group has a socket for: the kernel falls back to its flow hash.
const NO_SOCKET: u32 = u32::MAX;

/// Byte offset, from the start of the UDP payload, of the receiver index's top byte (indices
/// are little-endian): bytes 4..8 in transport data and cookie replies, 8..12 in responses.
const OWNER_BYTE: u32 = 4 + INDEX_WORKER_SHIFT / 8;
const OWNER_BYTE_RESPONSE: u32 = 8 + INDEX_WORKER_SHIFT / 8;
const _: () = assert!(
    INDEX_WORKER_SHIFT == 24,
    "the owner must be the index's top byte"
);

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The program: the kernel runs it with the packet's data starting at the UDP payload and
/// takes the result as an index into the group's sockets (out of range: flow hash). A load
/// beyond a short packet ends the program with 0, the first worker, which drops it as
/// malformed.
fn program() -> [libc::sock_filter; 8] {
    [
        /* 0 */ op(LD_ABS_BYTE, 0, 0, 0), // message type
        /* 1 */ op(JEQ_K, 5, 0, 1), // initiation: no owner yet -> 7
        /* 2 */ op(JEQ_K, 2, 0, 2), // response -> 5
        /* 3 */ op(LD_ABS_BYTE, 0, 0, OWNER_BYTE), // transport data, cookie reply
        /* 4 */ op(RET_A, 0, 0, 0),
        /* 5 */ op(LD_ABS_BYTE, 0, 0, OWNER_BYTE_RESPONSE),
        /* 6 */ op(RET_A, 0, 0, 0),
        /* 7 */ op(RET_K, 0, 0, NO_SOCKET),
    ]
}

/// The NAT-T port's program. Its group is the IKE responder's socket (index 0) and then the
/// workers' in order: IKE (the non-ESP marker, four zero bytes) and anything shorter than a
/// word (NAT keepalives) go to the responder; ESP goes to the worker its SPI's top byte names
/// (`messages::spi_owner`), at index owner + 1.
fn esp_program() -> [libc::sock_filter; 6] {
    [
        /* 0 */ op(LD_ABS_WORD, 0, 0, 0), // SPI or non-ESP marker; short: returns 0
        /* 1 */ op(JEQ_K, 3, 0, 0), // marker: IKE -> 5
        /* 2 */ op(LD_ABS_BYTE, 0, 0, 0), // the SPI's top byte: its worker
        /* 3 */ op(ADD_K, 0, 0, 1),
        /* 4 */ op(RET_A, 0, 0, 0),
        /* 5 */ op(RET_K, 0, 0, 0),
    ]
}

/// Attaches the steering program to the reuseport group `socket` belongs to. The group's
/// sockets must have been bound in worker order.
pub fn attach(socket: &OwnedFd) -> io::Result<()> {
    attach_program(socket, &mut program())
}

/// Attaches the NAT-T port's program (`esp_program`) to the group `socket` belongs to, whose
/// first socket is the IKE responder's and the rest the workers' in order.
pub fn attach_esp(socket: &OwnedFd) -> io::Result<()> {
    attach_program(socket, &mut esp_program())
}

fn attach_program(socket: &OwnedFd, filter: &mut [libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: passes a pointer to a live sock_fprog (whose filter outlives the call, the kernel
    // copies it) and its size.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::udp::{bind_sockets, local_port};
    use std::net::UdpSocket;
    use std::os::fd::{FromRawFd, IntoRawFd};
    use std::time::Duration;

    /// Which of the group's sockets received `datagram` (sent from a fresh client socket).
    fn receiver_of(group: &[UdpSocket], port: u16, datagram: &[u8]) -> Option<usize> {
        let client = UdpSocket::bind("127.0.0.1:0").expect("client");
        client.send_to(datagram, ("127.0.0.1", port)).expect("send");
        let mut buf = [0u8; 64];
        for _ in 0..200 {
            for (i, s) in group.iter().enumerate() {
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    assert_eq!(&buf[..n], datagram);
                    return Some(i);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    fn message(kind: u8, receiver_at: usize, owner: u8) -> Vec<u8> {
        let mut m = vec![0u8; 32];
        m[0] = kind;
        m[receiver_at..receiver_at + 4].copy_from_slice(&[0x5a, 0xa5, 0x3c, owner]);
        m
    }

    #[test]
    fn packets_reach_the_worker_named_by_their_receiver_index_from_any_source_port() {
        let sockets = bind_sockets(0, 2, 0).expect("bind two sockets");
        let port = local_port(&sockets[0]).expect("port");
        attach(&sockets[0]).expect("attach steering");
        let group: Vec<UdpSocket> = sockets
            .into_iter()
            // SAFETY: each descriptor is a UDP socket whose ownership moves into the UdpSocket.
            .map(|s| unsafe { UdpSocket::from_raw_fd(s.into_raw_fd()) })
            .collect();
        // Every datagram from a new source port: the flow hash would split them between the
        // sockets; the program must not.
        for round in 0..8 {
            for owner in [0u8, 1] {
                let transport = message(4, 4, owner);
                assert_eq!(
                    receiver_of(&group, port, &transport),
                    Some(owner as usize),
                    "round {round}: transport for worker {owner}"
                );
                let response = message(2, 8, owner);
                assert_eq!(
                    receiver_of(&group, port, &response),
                    Some(owner as usize),
                    "round {round}: response for worker {owner}"
                );
                let cookie = message(3, 4, owner);
                assert_eq!(
                    receiver_of(&group, port, &cookie),
                    Some(owner as usize),
                    "round {round}: cookie reply for worker {owner}"
                );
            }
        }
        // An owner beyond the group and an initiation still arrive (flow hash).
        assert!(receiver_of(&group, port, &message(4, 4, 9)).is_some());
        assert!(receiver_of(&group, port, &message(1, 4, 1)).is_some());
    }

    #[test]
    fn nat_t_datagrams_reach_ike_or_the_worker_their_spi_names() {
        use crate::kernel::udp::join_nat_t;
        // The responder's socket first (it proves the port free), then two workers'.
        let ike = crate::kernel::udp::bind_one(0, true, 0).expect("IKE socket");
        let port = local_port(&ike).expect("port");
        let workers = join_nat_t(port, 2, 0).expect("workers join");
        let group: Vec<UdpSocket> = std::iter::once(ike)
            .chain(workers)
            // SAFETY: each descriptor is a UDP socket whose ownership moves into the UdpSocket.
            .map(|s| unsafe { UdpSocket::from_raw_fd(s.into_raw_fd()) })
            .collect();
        for round in 0..8u8 {
            let ike_message = [0, 0, 0, 0, round, 1, 2, 3, 4, 5, 6, 7];
            assert_eq!(receiver_of(&group, port, &ike_message), Some(0), "IKE");
            assert_eq!(receiver_of(&group, port, &[0xff]), Some(0), "keepalive");
            for worker in [0u8, 1] {
                let esp = [worker, 0x12, round, 0x9a, 0, 0, 0, 1, 0xee, 0xee];
                assert_eq!(
                    receiver_of(&group, port, &esp),
                    Some(worker as usize + 1),
                    "round {round}: ESP for worker {worker}"
                );
            }
        }
    }
}
