//! A real worker over the in-memory backend: sessions sealed by an independent `Session`, every
//! drop reason the datapath owns, handover between two workers, and no leaked buffers.

mod common;

use std::net::SocketAddr;

use common::{ipv4, Rig, BUFFERS, CLIENT};
use datapath::inner::checksum;
use datapath::messages::INDEX_WORKER_SHIFT;
use datapath::stats::DropReason;
use datapath::worker::HANDOVER_DEPTH;
use proto::constants::TRANSPORT_HEADER_LEN as INNER_OFFSET;
use testbed::packet::{mss_and_checksum_ok, syn};

#[test]
fn transport_both_ways_and_every_drop_reason() {
    let mut rig = Rig::new(1);
    let ping = ipv4([10, 77, 0, 2], [10, 77, 0, 1], 84, 0x11);

    // Client → TUN: the first packet confirms the responder's session.
    let d = rig.seal(&ping);
    rig.receive_from_client(0, d.clone());
    assert_eq!(rig.written(0), vec![ping.clone()]);

    // TUN → client: routed by destination, sealed, sent to the endpoint, opens at the client.
    let reply = ipv4([10, 77, 0, 1], [10, 77, 0, 2], 84, 0x22);
    rig.receive_from_tun(0, reply.clone());
    let sent = std::mem::take(&mut rig.workers[0].backend_mut().outer_sent);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, CLIENT.parse::<SocketAddr>().expect("addr"));
    let mut datagram = sent[0].0.clone();
    let n = rig.client.open(&mut datagram).expect("client opens");
    assert_eq!(
        &datagram[INNER_OFFSET..INNER_OFFSET + reply.len()],
        &reply[..]
    );
    assert!(n >= reply.len());

    // Replayed counter.
    rig.receive_from_client(0, d);
    assert_eq!(rig.drops(DropReason::Replayed), 1);
    // Forged tag.
    let mut forged = rig.seal(&ping);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    rig.receive_from_client(0, forged);
    assert_eq!(rig.drops(DropReason::BadTag), 1);
    // Inner source outside the peer's allowed IPs.
    let spoofed = rig.seal(&ipv4([10, 99, 0, 5], [10, 77, 0, 1], 60, 0));
    rig.receive_from_client(0, spoofed);
    assert_eq!(rig.drops(DropReason::SourceNotAllowed), 1);
    // Decrypts, but is not an IP packet.
    let junk = rig.seal(&[0x99; 40]);
    rig.receive_from_client(0, junk);
    assert_eq!(rig.drops(DropReason::BadInnerPacket), 1);
    // Unknown receiver index, truncated, unknown type, wrong-size handshake.
    let mut unknown = rig.seal(&ping);
    unknown[4..8].copy_from_slice(&0x0000_0999u32.to_le_bytes());
    rig.receive_from_client(0, unknown);
    assert_eq!(rig.drops(DropReason::UnknownIndex), 1);
    rig.receive_from_client(0, vec![4, 0, 0, 0, 1, 2, 3]);
    rig.receive_from_client(0, vec![1, 0]);
    assert_eq!(rig.drops(DropReason::Truncated), 2);
    rig.receive_from_client(0, vec![7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(rig.drops(DropReason::UnknownType), 1);
    let mut long = vec![0u8; 149];
    long[0] = 1;
    rig.receive_from_client(0, long);
    assert_eq!(rig.drops(DropReason::Oversized), 1);
    // A well-sized initiation goes to the control plane, untouched.
    let mut init = vec![0x5a; 148];
    init[..4].copy_from_slice(&[1, 0, 0, 0]);
    rig.receive_from_client(0, init.clone());
    let got = rig.handshakes.try_recv().expect("forwarded");
    assert_eq!(got.message(), &init[..]);
    // No route for an inner destination.
    rig.receive_from_tun(0, ipv4([10, 77, 0, 1], [10, 88, 0, 1], 40, 0));
    assert_eq!(rig.drops(DropReason::NoRoute), 1);

    // Legitimate traffic still flows after all that.
    let d = rig.seal(&ping);
    rig.receive_from_client(0, d);
    assert_eq!(rig.written(0), vec![ping]);
    assert_eq!(
        rig.workers[0].backend_mut().free_buffers(),
        BUFFERS,
        "a buffer leaked"
    );
}

#[test]
fn handshake_queue_full_is_counted_not_blocking() {
    let mut rig = Rig::new(1);
    let mut init = vec![0u8; 148];
    init[0] = 1;
    for _ in 0..10 {
        rig.receive_from_client(0, init.clone());
    }
    assert_eq!(rig.handshakes.len(), 4);
    assert_eq!(rig.drops(DropReason::HandshakeQueueFull), 6);
}

#[test]
fn packets_reaching_the_wrong_worker_are_handed_to_the_owner() {
    let mut rig = Rig::new(2);
    let ping = ipv4([10, 77, 0, 2], [10, 77, 0, 1], 100, 0x33);
    // The session's index names worker 0; the datagram arrives at worker 1.
    let d = rig.seal(&ping);
    rig.receive_from_client(1, d);
    assert_eq!(
        rig.written(0),
        vec![ping.clone()],
        "owner wrote it to its TUN queue"
    );
    assert!(rig.written(1).is_empty());
    assert_eq!(rig.workers[1].counters().handed_over, 1);

    // An inner packet read on worker 1 for peer 0 (owned by worker 0) is sealed by worker 0.
    let reply = ipv4([10, 77, 0, 1], [10, 77, 0, 2], 64, 0x44);
    rig.receive_from_tun(1, reply.clone());
    let sent = std::mem::take(&mut rig.workers[0].backend_mut().outer_sent);
    assert_eq!(sent.len(), 1);
    let mut datagram = sent[0].0.clone();
    rig.client.open(&mut datagram).expect("opens");
    assert_eq!(
        &datagram[INNER_OFFSET..INNER_OFFSET + reply.len()],
        &reply[..]
    );

    // An index naming a worker that does not exist is unknown, not handed anywhere.
    let mut bogus = rig.seal(&reply);
    bogus[4..8].copy_from_slice(&(9u32 << INDEX_WORKER_SHIFT).to_le_bytes());
    rig.receive_from_client(0, bogus);
    assert_eq!(rig.drops(DropReason::UnknownIndex), 1);

    // Forged packets naming worker 0 with indices that are not live are dropped where they
    // land, before any copy: they cannot fill worker 0's queue.
    for i in 0..2 * HANDOVER_DEPTH as u32 {
        let mut forged = rig.seal(&reply);
        forged[4..8].copy_from_slice(&(0x0000_1000 + i).to_le_bytes());
        rig.receive_from_client(1, forged);
    }
    assert_eq!(
        rig.drops(DropReason::UnknownIndex),
        1 + 2 * HANDOVER_DEPTH as u64
    );
    assert_eq!(
        rig.workers[1].counters().handed_over,
        2,
        "only real packets"
    );
    assert_eq!(rig.drops(DropReason::HandoverFull), 0);
    // And the real session's next packet still crosses.
    let d = rig.seal(&ping);
    rig.receive_from_client(1, d);
    assert_eq!(rig.written(0), vec![ping]);
    for w in &mut rig.workers {
        assert_eq!(w.backend_mut().free_buffers(), BUFFERS);
    }
    drop(rig.events);
    drop(rig.controls);
}

/// Swaps source and destination (the TCP checksum does not change: its sum is commutative).
fn reversed(mut p: Vec<u8>) -> Vec<u8> {
    let (a, b, n) = if p[0] >> 4 == 4 {
        (12, 16, 4)
    } else {
        (8, 24, 16)
    };
    for i in 0..n {
        p.swap(a + i, b + i);
    }
    p
}

#[test]
fn syns_crossing_the_tunnel_have_their_mss_clamped_both_ways() {
    let mut rig = Rig::new(1);
    for (version, limit) in [(4u8, 1420 - 40), (6, 1420 - 60)] {
        // Peer → TUN.
        let syn = syn(version, 1460);
        let d = rig.seal(&syn);
        rig.receive_from_client(0, d);
        let written = rig.written(0);
        assert_eq!(written.len(), 1, "IPv{version} SYN delivered");
        assert_eq!(mss_and_checksum_ok(&written[0]), (limit, true));

        // TUN → peer.
        let out = reversed(syn);
        assert!(mss_and_checksum_ok(&out).1);
        rig.receive_from_tun(0, out.clone());
        let sent = std::mem::take(&mut rig.workers[0].backend_mut().outer_sent);
        assert_eq!(sent.len(), 1, "IPv{version} SYN sent");
        let mut datagram = sent[0].0.clone();
        rig.client.open(&mut datagram).expect("client opens");
        let inner = &datagram[INNER_OFFSET..INNER_OFFSET + out.len()];
        assert_eq!(mss_and_checksum_ok(inner), (limit, true));
    }
    assert_eq!(rig.workers[0].counters().mss_clamped, 4);
}

#[test]
fn oversized_inner_packets_get_packet_too_big_back_into_the_tun() {
    let mut rig = Rig::new(1);
    // A first packet from the client confirms the session, so the server may send.
    let confirm = rig.seal(&ipv4([10, 77, 0, 2], [10, 77, 0, 1], 40, 0));
    rig.receive_from_client(0, confirm);
    assert_eq!(rig.written(0).len(), 1);
    let mut big = ipv4([10, 77, 0, 1], [10, 77, 0, 2], 1500, 0x55);
    big[6] = 0x40; // DF
    rig.receive_from_tun(0, big.clone());
    assert!(rig.workers[0].backend_mut().outer_sent.is_empty());
    let written = rig.written(0);
    assert_eq!(written.len(), 1, "one ICMP error");
    let icmp = &written[0];
    assert_eq!((icmp[9], icmp[20], icmp[21]), (1, 3, 4), "ICMP frag needed");
    assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1420);
    assert_eq!(&icmp[16..20], &[10, 77, 0, 1], "back to the sender");
    assert_eq!(checksum::of(&icmp[20..]), 0);
    assert_eq!(rig.drops(DropReason::TooBig), 1);

    // Without DF the packet may be fragmented on the way: it is sent.
    big[6] = 0;
    rig.receive_from_tun(0, big);
    assert_eq!(rig.workers[0].backend_mut().outer_sent.len(), 1);
    assert_eq!(rig.workers[0].backend_mut().free_buffers(), BUFFERS);
}

#[test]
fn a_session_sprayed_over_both_workers_is_accepted_once_per_packet() {
    let mut rig = Rig::new(2);
    let n = 1000;
    let mut sent = Vec::new();
    for i in 0..n {
        let p = ipv4(
            [10, 77, 0, 2],
            [10, 77, 0, 1],
            60 + i % 700,
            (i % 251) as u8,
        );
        let d = rig.seal(&p);
        // Every packet reaches one worker, and a copy (a replay, or the same packet over two
        // paths) reaches the other.
        let first = i % 2;
        rig.receive_from_client(first, d.clone());
        rig.receive_from_client(1 - first, d);
        sent.push(p);
    }
    assert_eq!(
        rig.written(0),
        sent,
        "owner delivered each packet once, in order"
    );
    assert!(
        rig.written(1).is_empty(),
        "only the owner opens the session"
    );
    assert_eq!(rig.drops(DropReason::Replayed), n as u64);
    assert_eq!(rig.workers[1].counters().handed_over, n as u64);
    assert_eq!(rig.workers[0].counters().handed_over, 0);
    for w in &mut rig.workers {
        assert_eq!(w.backend_mut().free_buffers(), BUFFERS);
    }
}

#[test]
fn a_worker_lingers_only_while_packets_stream_in() {
    use datapath::io::memory::Incoming;
    use std::time::{Duration, Instant};
    let linger = Duration::from_micros(250);
    let mut rig = Rig::new(1);
    let w = rig.workers.remove(0).with_linger(linger);
    rig.workers.insert(0, w);
    let from: SocketAddr = CLIENT.parse().expect("addr");
    let sent = std::cell::Cell::new(0);
    // `packets` datagrams arrive, the worker takes them as of `at`; returns the linger its
    // poll asked for (decided by the batches before).
    let step = |rig: &mut Rig, at: Instant, packets: usize| {
        for _ in 0..packets {
            let d = rig.seal(&ipv4([10, 77, 0, 2], [10, 0, 0, 1], 100, 7));
            let w = rig.workers[0].backend_mut();
            w.incoming.push_back(Incoming::Outer(d, from));
        }
        sent.set(sent.get() + packets);
        let mut tick = at + Duration::from_secs(3600);
        rig.workers[0].step_at(at, &mut tick).expect("step");
        rig.workers[0].backend_mut().last_linger
    };
    let mut t = Instant::now();
    // A packet every 10 ms (a ping): never held.
    for _ in 0..5 {
        t += Duration::from_millis(10);
        assert_eq!(step(&mut rig, t, 1), Duration::ZERO, "idle");
    }
    // 3 every 25 us (120,000 a second): after the first millisecond, each poll may wait
    // for a batch, up to the linger.
    let mut asked = Duration::ZERO;
    for _ in 0..80 {
        t += Duration::from_micros(25);
        asked = step(&mut rig, t, 3);
    }
    assert_eq!(asked, linger, "a stream of small batches");
    // A full batch does not end the stream: the poll after it may still linger (the backend
    // skips the linger while a batch waits).
    t += Duration::from_micros(25);
    step(&mut rig, t, 40);
    t += Duration::from_micros(25);
    assert!(!step(&mut rig, t, 3).is_zero(), "after a batch of 40");
    // A pause: the stream has ended, a lone packet is not held.
    t += Duration::from_millis(50);
    step(&mut rig, t, 1);
    t += Duration::from_millis(10);
    assert_eq!(step(&mut rig, t, 1), Duration::ZERO, "after a pause");
    assert_eq!(
        rig.written(0).len(),
        sent.get(),
        "every packet went through"
    );
}
