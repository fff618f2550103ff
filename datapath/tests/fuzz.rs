//! Property campaigns over the datapath's input paths (see `testbed::fuzz`): the AF_XDP frame
//! parser on arbitrary and on built-then-mangled frames, and the workers' receive path on the
//! memory backend with arbitrary datagrams, forged ones and real ones with bytes flipped.

mod common;

use std::net::SocketAddr;
use std::sync::Mutex;

use common::{ipv4, Rig, BUFFERS};
use datapath::io::af_xdp::frame::{headers_len, parse, write_headers, Path};
use proptest::prelude::*;
use testbed::fuzz::campaign;

fn address() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
    ]
}

#[test]
fn fuzz_af_xdp_frames() {
    // Arbitrary bytes: refused or read, never a panic, the payload inside the frame.
    campaign(
        "af_xdp_frame_bytes",
        300_000,
        proptest::collection::vec(any::<u8>(), 0..200),
        |frame| {
            if let Ok(r) = parse(&frame) {
                prop_assert!(r.payload.start <= r.payload.end && r.payload.end <= frame.len());
            }
            Ok(())
        },
    );
    // Frames we build read back exactly; with bytes flipped they are refused or read inside
    // their bounds.
    let built = (
        address(),
        address(),
        proptest::collection::vec(any::<u8>(), 0..120),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    );
    campaign(
        "af_xdp_frame_mangled",
        300_000,
        built,
        |(from, to, payload, flips)| {
            // Both ends of one family, as the sender guarantees.
            let to = match (from, to) {
                (SocketAddr::V4(_), SocketAddr::V6(t)) => {
                    SocketAddr::from(([10, 0, 0, 1], t.port()))
                }
                (SocketAddr::V6(_), SocketAddr::V4(t)) => SocketAddr::from(([0xfd; 16], t.port())),
                _ => to,
            };
            // Raw ESP (no UDP header, no ports) for odd first bytes.
            let raw_esp = payload.first().is_some_and(|b| b & 1 == 1);
            let (from, to) = match raw_esp {
                true => (SocketAddr::new(from.ip(), 0), SocketAddr::new(to.ip(), 0)),
                false => (from, to),
            };
            let path = Path {
                from,
                to,
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
                raw_esp,
            };
            let start = headers_len(&to, raw_esp);
            let mut buf = vec![0u8; start + payload.len()];
            buf[start..].copy_from_slice(&payload);
            let frame_range = write_headers(&mut buf, start..start + payload.len(), &path);
            let mut frame = buf[frame_range].to_vec();
            let read = parse(&frame).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!((read.from, read.to, read.raw_esp), (from, to, raw_esp));
            prop_assert_eq!(&frame[read.payload.clone()], &payload[..]);
            for (at, byte) in flips {
                let n = frame.len();
                frame[at % n] ^= byte | 1;
            }
            if let Ok(r) = parse(&frame) {
                prop_assert!(r.payload.end <= frame.len());
            }
            Ok(())
        },
    );
}

/// What a generated datagram is.
#[derive(Debug, Clone)]
enum Datagram {
    /// Arbitrary bytes.
    Bytes(Vec<u8>),
    /// A transport header with a chosen receiver index and random rest.
    Forged(u32, Vec<u8>),
    /// A real sealed packet with bytes flipped (none: delivered).
    Real(Vec<(usize, u8)>),
}

fn datagram() -> impl Strategy<Value = Datagram> {
    let flips = proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3);
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..160).prop_map(Datagram::Bytes),
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..120))
            .prop_map(|(i, rest)| Datagram::Forged(i, rest)),
        flips.prop_map(Datagram::Real),
    ]
}

#[test]
fn fuzz_worker_receive_path() {
    let rig = Mutex::new(Rig::new(2));
    let delivered = std::sync::atomic::AtomicU64::new(0);
    let inner = ipv4([10, 77, 0, 2], [10, 77, 0, 1], 60, 0x5a);
    let batch = proptest::collection::vec((datagram(), 0usize..2), 1..8);
    let cases = campaign("worker_receive", 200_000, batch, |batch| {
        let mut rig = rig
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut delivered_at_most = 0;
        for (d, worker) in batch {
            let bytes = match d {
                Datagram::Bytes(b) => b,
                Datagram::Forged(index, rest) => {
                    let mut b = vec![4, 0, 0, 0];
                    b.extend_from_slice(&index.to_le_bytes());
                    b.extend_from_slice(&rest);
                    b
                }
                Datagram::Real(flips) => {
                    let sealed = rig.seal(&inner);
                    let mut b = sealed.clone();
                    for (at, byte) in flips {
                        let n = b.len();
                        b[at % n] ^= byte | 1;
                    }
                    // (Two flips of one byte may cancel out.)
                    if b == sealed {
                        delivered_at_most += 1;
                    }
                    b
                }
            };
            rig.receive_from_client(worker, bytes);
        }
        // Only untouched real packets reach the TUN, each as sent; no buffer is kept.
        let written: Vec<Vec<u8>> = (0..2).flat_map(|w| rig.written(w)).collect();
        prop_assert!(written.len() <= delivered_at_most);
        prop_assert!(written.iter().all(|p| *p == inner));
        delivered.fetch_add(written.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for w in &mut rig.workers {
            prop_assert_eq!(w.backend_mut().free_buffers(), BUFFERS);
            w.backend_mut().outer_sent.clear();
        }
        Ok(())
    });
    // The campaign reached the end of the path, not only its refusals.
    let delivered = delivered.into_inner();
    assert!(
        delivered * 100 > u64::from(cases),
        "only {delivered} real packets delivered in {cases} cases"
    );
}
