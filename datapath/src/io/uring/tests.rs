//! The backend against the real kernel over loopback: segmented sends and coalesced receives
//! must still deliver every datagram intact, in order, with its sender.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::UringBackend;
use crate::io::{Backend, Rx, OUTER_OFFSET};
use crate::kernel::udp::{bind_sockets, local_port};
use crate::kernel::waker::Waker;

/// A backend on a fresh loopback socket, with a pipe (never written) standing in for the TUN.
fn backend() -> (UringBackend, std::net::SocketAddr, OwnedFd) {
    let (b, addr, tun, _) = backend_with_waker();
    (b, addr, tun)
}

/// As `backend`, with the waker that wakes it.
fn backend_with_waker() -> (UringBackend, std::net::SocketAddr, OwnedFd, Arc<Waker>) {
    // xgate's own (dual-stack) socket; IPv4 peers are reached through mapped addresses.
    let socket = bind_sockets(0, 1, 0)
        .expect("bind")
        .pop()
        .expect("one socket");
    let port = local_port(&socket).expect("local port");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let waker = Arc::new(Waker::new().expect("waker"));
    let b =
        UringBackend::new(Arc::new(socket), Arc::new(read), false, waker.clone()).expect("backend");
    (b, addr, write, waker)
}

/// Datagram `i` of a run: its index in every byte, `len` bytes.
fn datagram(i: usize, len: usize) -> Vec<u8> {
    vec![i as u8; len]
}

#[test]
fn a_run_of_datagrams_is_sent_segmented_and_split_again_on_receipt() {
    let (mut sender, from, _w1) = backend();
    let (mut receiver, to, _w2) = backend();
    // Nine full-size datagrams and a shorter last one: one segmented send, one GRO receive.
    let sizes: Vec<usize> = (0..10).map(|i| if i == 9 { 700 } else { 1200 }).collect();
    for (i, &len) in sizes.iter().enumerate() {
        let buf = sender.alloc().expect("free buffer");
        sender.buf(buf)[OUTER_OFFSET..OUTER_OFFSET + len].copy_from_slice(&datagram(i, len));
        sender.send_outer(buf, OUTER_OFFSET..OUTER_OFFSET + len, to, None);
    }
    let mut got = Vec::new();
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while got.len() < sizes.len() && Instant::now() < until {
        let soon = Instant::now() + Duration::from_millis(20);
        sender.poll(&mut out, soon).expect("sender poll");
        out.clear();
        receiver.poll(&mut out, soon).expect("receiver poll");
        for rx in out.drain(..) {
            if let Rx::Outer {
                buf,
                at,
                len,
                from: source,
                truncated,
                ..
            } = rx
            {
                assert!(!truncated, "datagram {} cut", got.len());
                assert_eq!(source, from, "sender address");
                got.push(receiver.buf(buf)[at..at + len].to_vec());
                receiver.free(buf);
            }
        }
    }
    assert_eq!(got.len(), sizes.len(), "datagrams received");
    for (i, (d, &len)) in got.iter().zip(&sizes).enumerate() {
        assert_eq!(d, &datagram(i, len), "datagram {i}");
    }
    assert_eq!(sender.take_send_failures(), 0);
    let stats = receiver.take_offload_stats();
    assert_eq!(stats.no_buffer, 0);
    assert!(
        stats.coalesced_receives > 0,
        "loopback coalesces a segmented send for a UDP_GRO socket; nothing was coalesced"
    );
}

/// Sends `n` small datagrams from a plain socket to `to`.
fn send_datagrams(to: std::net::SocketAddr, n: usize) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for i in 0..n {
        s.send_to(&datagram(i, 64), to).expect("send");
    }
}

/// Polls once with `linger`, waiting until `wait` from now at most; returns how many
/// datagrams came and how long it took.
fn poll_once(b: &mut UringBackend, linger: Duration, wait: Duration) -> (usize, Duration) {
    let mut out = Vec::new();
    let start = Instant::now();
    b.poll_lingering(&mut out, start + wait, linger)
        .expect("poll");
    let took = start.elapsed();
    let n = out
        .iter()
        .filter(|rx| matches!(rx, Rx::Outer { .. }))
        .count();
    for rx in out {
        if let Rx::Outer { buf, .. } = rx {
            b.free(buf);
        }
    }
    (n, took)
}

#[test]
fn a_lingering_poll_waits_for_a_batch_only_when_a_few_packets_wait() {
    let (mut b, to, _tun, waker) = backend_with_waker();
    // Counting what waits relies on deferred task work being flagged (Linux 6.1+).
    assert!(
        b.defers_task_work(),
        "the ring was built without deferred task work"
    );
    let linger = Duration::from_millis(300);
    let wait = Duration::from_secs(2);
    let soon = Duration::from_millis(10);
    // Arm the receive, then let three datagrams arrive: fewer than a batch, so the poll
    // waits out the linger for more (none come) and then takes the three.
    poll_once(&mut b, Duration::ZERO, soon);
    send_datagrams(to, 3);
    std::thread::sleep(Duration::from_millis(20));
    let (n, took) = poll_once(&mut b, linger, wait);
    assert_eq!(n, 3);
    assert!(
        took >= Duration::from_millis(250),
        "returned after {took:?}"
    );
    // A batch or more waiting: taken at once.
    send_datagrams(to, 40);
    std::thread::sleep(Duration::from_millis(20));
    let (n, took) = poll_once(&mut b, linger, wait);
    assert!(n >= 32, "{n} of 40 in the first poll");
    assert!(took < Duration::from_millis(200), "returned after {took:?}");
    while poll_once(&mut b, Duration::ZERO, soon).0 > 0 {}
    // Nothing waiting but the completion of a reply sent (not a packet): a datagram that
    // comes is handled as it comes, not a linger later.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let buf = b.alloc().expect("free buffer");
    b.buf(buf)[OUTER_OFFSET..OUTER_OFFSET + 64].copy_from_slice(&datagram(9, 64));
    let reply_to = sink.local_addr().expect("sink address");
    b.send_outer(buf, OUTER_OFFSET..OUTER_OFFSET + 64, reply_to, None);
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        send_datagrams(to, 1);
    });
    let (n, took) = poll_once(&mut b, linger, wait);
    sender.join().expect("sender");
    assert_eq!(n, 1);
    assert!(took < Duration::from_millis(250), "returned after {took:?}");
    // A wake-up waiting (a control message, a handover) and no packet: taken at once, not
    // held until the deadline.
    waker.wake();
    std::thread::sleep(Duration::from_millis(20));
    let mut out = Vec::new();
    let start = Instant::now();
    b.poll_lingering(&mut out, start + wait, linger)
        .expect("poll");
    let took = start.elapsed();
    assert!(out.contains(&Rx::Wake), "{out:?}");
    assert!(took < Duration::from_millis(250), "returned after {took:?}");
}

#[test]
fn the_af_xdp_linger_waits_out_an_empty_ring_but_not_a_waiting_wake_up() {
    let (mut b, _to, _tun, waker) = backend_with_waker();
    let linger = Duration::from_millis(100);
    // Arm the receives; nothing comes: the linger is slept out in full (AF_XDP frames wait
    // outside this ring and cannot end it).
    poll_once(&mut b, Duration::ZERO, Duration::from_millis(10));
    let mut out = Vec::new();
    let start = Instant::now();
    b.linger(&mut out, linger).expect("linger");
    let took = start.elapsed();
    assert!(out.is_empty(), "{out:?}");
    assert!(took >= Duration::from_millis(90), "returned after {took:?}");
    // A wake-up already waiting (a control message, a handover) is taken at once.
    waker.wake();
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    b.linger(&mut out, linger).expect("linger");
    let took = start.elapsed();
    assert!(out.contains(&Rx::Wake), "{out:?}");
    assert!(took < Duration::from_millis(50), "returned after {took:?}");
}
