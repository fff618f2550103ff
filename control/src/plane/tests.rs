//! The control plane driven directly, with its clock in the test's hands: a handshake
//! answered by the responder threads brings a tunnel up, and the tunnel is reported down once
//! its session is older than REJECT_AFTER_TIME (180 s), without waiting 180 s.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, unbounded};
use datapath::messages::HandshakeDatagram;
use proto::constants::REJECT_AFTER_TIME;
use proto::cookie::CookieJar;
use proto::handshake::{create_initiation, LocalIdentity, RemotePeer};
use proto::tai64n::Tai64N;
use proto::PrivateKey;
use rand_core::OsRng;

use super::{ControlPlane, PlaneLinks};
use crate::events::{Event, EventHub};
use crate::update::{DeviceUpdate, PeerUpdate};

#[test]
fn a_tunnel_is_reported_down_when_its_session_passes_reject_after_time() {
    let (_hs_tx, hs_rx) = bounded(16);
    let (_ev_tx, ev_rx) = unbounded();
    let (_req_tx, req_rx) = unbounded();
    let (stop_tx, _stop_rx) = unbounded();
    let events = EventHub::default();
    let mut seen = events.subscribe();
    let mut plane = ControlPlane::new(
        "xt0",
        0,
        0,
        1,
        PlaneLinks {
            handshakes: hs_rx,
            events: ev_rx,
            requests: req_rx,
            stop: stop_tx,
            workers: Vec::new(),
            sockets: Vec::new(),
            events_out: events.clone(),
        },
    )
    .expect("plane");
    let server = PrivateKey::generate(&mut OsRng);
    let server_key = server.public_key();
    let client = PrivateKey::generate(&mut OsRng);
    plane
        .apply(DeviceUpdate {
            private_key: Some(Some(server)),
            peers: vec![PeerUpdate::new(client.public_key())],
            ..DeviceUpdate::default()
        })
        .expect("configured");

    let local = LocalIdentity::new(&client);
    let remote = RemotePeer::new(&local, server_key, None);
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let (_, mut bytes) =
        create_initiation(&local, &remote, 7, Tai64N::from_unix(unix), &mut OsRng).expect("init");
    CookieJar::for_recipient(&server_key).stamp(&mut bytes, Instant::now());
    plane.on_handshakes(HandshakeDatagram {
        worker: 0,
        from: "192.0.2.1:5000".parse().expect("addr"),
        at: Instant::now(),
        len: bytes.len(),
        bytes,
    });
    let outcomes = plane
        .responders
        .outcomes
        .recv_timeout(Duration::from_secs(5))
        .expect("a responder thread answered");
    plane.on_outcomes(outcomes);
    let up = Instant::now();
    let event = seen.try_recv().expect("an event").event;
    assert!(matches!(event, Event::TunnelUp { .. }), "{event:?}");

    plane.on_tick(up + REJECT_AFTER_TIME - Duration::from_secs(1));
    assert!(seen.try_recv().is_err(), "still up a second before");
    plane.on_tick(up + REJECT_AFTER_TIME + Duration::from_secs(1));
    let event = seen.try_recv().expect("an event").event;
    assert!(
        matches!(
            event,
            Event::TunnelDown {
                reason: "expired",
                ..
            }
        ),
        "{event:?}"
    );
    assert_eq!(plane.counters.responses_sent, 1);
}
