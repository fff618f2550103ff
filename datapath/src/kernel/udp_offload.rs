//! UDP segmentation offloads on the outer socket. With UDP_GRO the kernel hands over runs of
//! same-sized datagrams from one sender as one buffer plus a control message naming the
//! segment size; with UDP_SEGMENT one send carries many datagrams to one destination. Either
//! way one system call and one socket-buffer round trip serve a whole run.

use std::os::fd::RawFd;

/// `UDP_SEGMENT` socket option / control message (linux/udp.h).
pub const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` socket option / control message (linux/udp.h).
pub const UDP_GRO: libc::c_int = 104;
/// Most datagrams one UDP_SEGMENT send may carry (UDP_MAX_SEGMENTS on older kernels).
pub const MAX_SEGMENTS: usize = 64;
/// Most payload bytes one UDP_SEGMENT send may carry (an IP packet's 64 KiB, less headers).
pub const MAX_GSO_BYTES: usize = 65_000;
/// Room for one control message carrying an `int` (CMSG_SPACE(4) on 64-bit Linux).
pub const CONTROL_LEN: usize = 24;

const CMSG_HEADER: usize = std::mem::size_of::<libc::cmsghdr>();
const _: () = assert!(CMSG_HEADER + 8 == CONTROL_LEN);

/// Asks the kernel to coalesce received datagrams on `fd`; false where it cannot (then every
/// datagram arrives on its own, which is still correct).
pub fn enable_gro(fd: RawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: passes a pointer to a live int of the size given.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            UDP_GRO,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ret == 0
}

/// The segment size of a coalesced receive, from its control messages (None: one datagram).
pub fn gro_segment_size(control: &[u8]) -> Option<usize> {
    let mut rest = control;
    while rest.len() >= CMSG_HEADER {
        // SAFETY: at least a header's worth of bytes; read unaligned from the byte slice.
        let header = unsafe { rest.as_ptr().cast::<libc::cmsghdr>().read_unaligned() };
        let len = header.cmsg_len;
        if len < CMSG_HEADER || len > rest.len() {
            return None;
        }
        if header.cmsg_level == libc::SOL_UDP && header.cmsg_type == UDP_GRO {
            let data = &rest[CMSG_HEADER..len];
            let size = match data.len() {
                2..=3 => u16::from_ne_bytes([data[0], data[1]]) as usize,
                4.. => u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize,
                _ => return None,
            };
            return (size > 0).then_some(size);
        }
        // Next message: lengths are padded to the platform's alignment (8 bytes).
        let step = len.next_multiple_of(std::mem::size_of::<usize>());
        rest = rest.get(step..)?;
    }
    None
}

/// Control message asking for `segment`-byte datagrams, written into `out`; returns its length.
pub fn segment_control(out: &mut [u64; CONTROL_LEN / 8], segment: u16) -> usize {
    let header = libc::cmsghdr {
        cmsg_len: CMSG_HEADER + std::mem::size_of::<u16>(),
        cmsg_level: libc::SOL_UDP,
        cmsg_type: UDP_SEGMENT,
    };
    *out = [0; CONTROL_LEN / 8];
    // SAFETY: `out` is 8-byte aligned and CONTROL_LEN bytes long: room for the header and a u16.
    unsafe {
        let base = out.as_mut_ptr().cast::<u8>();
        base.cast::<libc::cmsghdr>().write(header);
        base.add(CMSG_HEADER).cast::<u16>().write(segment);
    }
    CONTROL_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// Sends `count` datagrams of `seg` bytes (the last `last` bytes) in one UDP_SEGMENT call.
    fn send_segmented(from: &UdpSocket, to: &UdpSocket, seg: u16, payload: &[u8]) -> isize {
        let dest = to.local_addr().expect("addr");
        let std::net::SocketAddr::V4(dest) = dest else {
            panic!("v4 expected")
        };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: dest.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*dest.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        let mut control = [0u64; CONTROL_LEN / 8];
        let clen = segment_control(&mut control, seg);
        // SAFETY: all-zero is a valid msghdr; every pointer set below outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&sin as *const libc::sockaddr_in) as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = clen;
        // SAFETY: `msg` points at `sin`, `iov` and `control`, all alive across the call.
        unsafe { libc::sendmsg(from.as_raw_fd(), &msg, 0) }
    }

    #[test]
    fn a_segmented_send_arrives_coalesced_with_its_segment_size() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(enable_gro(rx.as_raw_fd()), "UDP_GRO on loopback");
        let payload: Vec<u8> = (0..(3 * 1000 + 400)).map(|i| i as u8).collect();
        assert_eq!(
            send_segmented(&tx, &rx, 1000, &payload),
            payload.len() as isize
        );

        let mut buf = vec![0u8; 65536];
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, alive across the call.
        let n = unsafe { libc::recvmsg(rx.as_raw_fd(), &mut msg, 0) };
        assert_eq!(n, payload.len() as isize, "one receive, all four datagrams");
        assert_eq!(&buf[..n as usize], &payload[..]);
        // SAFETY: the kernel set `msg_controllen` within `control`'s size.
        let bytes = unsafe {
            std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), msg.msg_controllen)
        };
        assert_eq!(gro_segment_size(bytes), Some(1000));
    }

    #[test]
    fn without_gro_each_datagram_arrives_alone() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let payload = vec![7u8; 2 * 500];
        assert_eq!(send_segmented(&tx, &rx, 500, &payload), 1000);
        let mut buf = [0u8; 4096];
        for _ in 0..2 {
            assert_eq!(rx.recv(&mut buf).expect("recv"), 500);
        }
    }

    #[test]
    fn malformed_control_messages_name_no_segment_size() {
        assert_eq!(gro_segment_size(&[]), None);
        assert_eq!(gro_segment_size(&[0xff; 7]), None);
        // A header claiming more bytes than there are.
        let mut bogus = [0u64; 3];
        segment_control(&mut bogus, 100);
        // SAFETY: 24 bytes are exactly `bogus`'s three u64s.
        let bytes = unsafe { std::slice::from_raw_parts_mut(bogus.as_mut_ptr().cast::<u8>(), 24) };
        bytes[0] = 200;
        assert_eq!(gro_segment_size(bytes), None);
        // A well-formed message of another type.
        let mut other = [0u64; 3];
        segment_control(&mut other, 100);
        // SAFETY: 24 bytes are exactly `other`'s three u64s.
        let bytes = unsafe { std::slice::from_raw_parts(other.as_ptr().cast::<u8>(), 24) };
        assert_eq!(gro_segment_size(bytes), None, "UDP_SEGMENT is not UDP_GRO");
    }
}
