//! The hot path allocates nothing: 100,000 transport packets from a client and 100,000 inner
//! packets to it go through two workers (half of them handed over to the owner) while a
//! counting allocator watches the workers' calls; and the same for ESP, with AES-GCM and with
//! AES-CBC and HMAC-SHA1-96.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::esp::{rig_with_tunnel, seal, USER};
use common::{ipv4, Rig};
use datapath::io::memory::Incoming;
use datapath::stats::DropReason;
use ike::Encr;

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn note() {
    if WATCHING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to the system allocator unchanged; counting has no effect on it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's guarantees, passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's guarantees, passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's guarantees, passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PACKETS: usize = 100_000;
const BATCH: usize = 100;

/// Steps every worker with the allocator watching; returns the allocations made.
fn watched_step(rig: &mut Rig) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    WATCHING.with(|w| w.set(true));
    rig.step_all();
    WATCHING.with(|w| w.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// (packets written to the TUN, datagrams sent) over both workers.
fn totals(rig: &mut Rig) -> (u64, u64) {
    rig.workers.iter_mut().fold((0u64, 0u64), |(i, o), w| {
        let b = w.backend_mut();
        (i + b.inner_written_count, o + b.outer_sent_count)
    })
}

fn feed(rig: &mut Rig, round: usize, sizes: &[usize]) {
    let from = common::CLIENT.parse().expect("addr");
    for i in 0..BATCH {
        let size = sizes[(round * BATCH + i) % sizes.len()];
        let up = ipv4([10, 77, 0, 2], [10, 77, 0, 1], size, i as u8);
        let datagram = rig.seal(&up);
        let down = ipv4([10, 77, 0, 1], [10, 77, 0, 2], size, i as u8);
        // Alternate the worker each arrives at: half of them take the handover path.
        let w = (round + i) % 2;
        let backend = rig.workers[w].backend_mut();
        backend.incoming.push_back(Incoming::Outer(datagram, from));
        backend.incoming.push_back(Incoming::Inner(down));
    }
}

#[test]
fn a_hundred_thousand_packets_each_way_allocate_nothing() {
    let mut rig = Rig::new(2);
    let sizes = [40, 64, 512, 1280, 1420];
    for w in &mut rig.workers {
        let backend = w.backend_mut();
        backend.record = false;
        backend.incoming.reserve(4 * BATCH);
    }
    // Warm-up: confirms the session, reports the endpoint once, grows queues to size, and
    // takes the session past the counter at which its replay window grows to full size (one
    // allocation per session that carries traffic, made here).
    let warm_up = proto::replay::GROW_AT as usize / BATCH + 2;
    for round in 0..warm_up {
        feed(&mut rig, round, &sizes);
        rig.step_all();
    }
    let (warm_in, warm_out) = totals(&mut rig);

    let mut allocations = 0;
    for round in 0..PACKETS / BATCH {
        feed(&mut rig, round, &sizes);
        allocations += watched_step(&mut rig);
    }

    let (all_in, all_out) = totals(&mut rig);
    let (delivered, sealed) = (all_in - warm_in, all_out - warm_out);
    assert_eq!(
        delivered, PACKETS as u64,
        "every client packet reached the TUN"
    );
    assert_eq!(
        sealed, PACKETS as u64,
        "every inner packet was sealed and sent"
    );
    for reason in DropReason::ALL {
        assert_eq!(rig.drops(reason), 0, "{}", reason.name());
    }
    assert!(rig.workers[0].counters().handed_over + rig.workers[1].counters().handed_over > 0);
    assert_eq!(allocations, 0, "the hot path allocated");
}

/// ESP packets: sealed by the user beforehand (that allocates, outside the watch), then each
/// round a batch from the user (on either worker; tunnel 1's is worker 1) and a batch to it.
#[test]
fn esp_packets_each_way_allocate_nothing_with_gcm_and_with_cbc() {
    const ESP_PACKETS: usize = 20_000;
    for encr in [
        Encr::AesGcm16 { key_bits: 256 },
        Encr::AesCbc { key_bits: 256 },
    ] {
        let (mut rig, mut client_out, _) = rig_with_tunnel(encr);
        let from = USER.parse().expect("addr");
        let sizes = [40, 64, 512, 1280, 1420];
        let up: Vec<Vec<u8>> = (0..ESP_PACKETS + 10 * BATCH)
            .map(|i| {
                seal(
                    &mut client_out,
                    &ipv4([10, 77, 0, 9], [10, 77, 0, 1], sizes[i % 5], 1),
                )
            })
            .collect();
        for w in &mut rig.workers {
            let backend = w.backend_mut();
            backend.record = false;
            backend.incoming.reserve(4 * BATCH);
        }
        let mut up = up.into_iter();
        let mut feed = |rig: &mut Rig, round: usize| {
            for i in 0..BATCH {
                let w = (round + i) % 2;
                let datagram = up.next().expect("sealed beforehand");
                let down = ipv4([10, 77, 0, 1], [10, 77, 0, 9], sizes[i % 5], 2);
                let backend = rig.workers[w].backend_mut();
                backend.incoming.push_back(Incoming::NatT(datagram, from));
                backend.incoming.push_back(Incoming::Inner(down));
            }
        };
        for round in 0..10 {
            feed(&mut rig, round);
            rig.step_all();
        }
        let (warm_in, warm_out) = totals(&mut rig);
        let mut allocations = 0;
        for round in 0..ESP_PACKETS / BATCH {
            feed(&mut rig, round);
            allocations += watched_step(&mut rig);
        }
        let (all_in, all_out) = totals(&mut rig);
        assert_eq!(
            all_in - warm_in,
            ESP_PACKETS as u64,
            "{encr}: every ESP packet reached the TUN"
        );
        assert_eq!(
            all_out - warm_out,
            ESP_PACKETS as u64,
            "{encr}: every inner packet was sealed"
        );
        for reason in DropReason::ALL {
            assert_eq!(rig.drops(reason), 0, "{encr}: {}", reason.name());
        }
        assert_eq!(allocations, 0, "{encr}: the ESP path allocated");
    }
}
