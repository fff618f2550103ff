//! The IKE engine's own rules, driven with the ike crate's initiator: a cookie once too many
//! SAs are half-open (and the cookie then taken), a hard cap past that, IKE_SA_INIT
//! retransmissions answered without a new SA, half-open SAs expiring on time; and the fair
//! admission in front of its key exchanges.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::{DhGroup, Endpoints, InitReply, InitiatorInit, Policy, Timing};
use ring::rand::SystemRandom;

use super::{IkeEngine, IkeSettings};
use crate::events::{EventSink, TunnelEvent};

struct Quiet;

impl EventSink for Quiet {
    fn publish(&self, _event: TunnelEvent) {}
}

const SERVER: &str = "192.0.2.1:500";

fn engine(cookie_threshold: usize) -> IkeEngine {
    engine_with(cookie_threshold, false)
}

fn engine_with(cookie_threshold: usize, raw_esp: bool) -> IkeEngine {
    IkeEngine::new(settings(cookie_threshold, raw_esp), Arc::new(Quiet)).expect("engine")
}

/// The responder's settings in these tests.
fn settings(cookie_threshold: usize, raw_esp: bool) -> IkeSettings {
    IkeSettings {
        port: 500,
        nat_port: 4500,
        local_id: ike::Identity::from_text("vpn.example.com"),
        ike: Policy::modern(),
        esp: Policy::modern(),
        timing: Timing::default(),
        cookie_threshold,
        workers: 1,
        certs: None,
        crl_source: None,
        raw_esp,
        lockout_after: 5,
        lockout_for: std::time::Duration::from_secs(300),
        client_ca: None,
    }
}

/// A client at 192.0.2.`n`'s IKE_SA_INIT.
fn client(n: u8) -> (InitiatorInit, SocketAddr) {
    client_claiming_nat(n, false)
}

/// A client at 192.0.2.`n`'s IKE_SA_INIT, claiming a NAT in front of it if `claim_nat` (as
/// strongSwan's kernel-libipsec does, to have ESP in UDP).
fn client_claiming_nat(n: u8, claim_nat: bool) -> (InitiatorInit, SocketAddr) {
    let from: SocketAddr = format!("192.0.2.{n}:500").parse().expect("addr");
    let offer = Policy::modern().ike_offer(&[]);
    let ends = Endpoints {
        local: from,
        remote: SERVER.parse().expect("addr"),
        force_nat_t: claim_nat,
    };
    let init = InitiatorInit::start(
        offer,
        Policy::modern(),
        DhGroup::Curve25519,
        ends,
        &SystemRandom::new(),
    )
    .expect("init");
    (init, from)
}

fn server() -> SocketAddr {
    SERVER.parse().expect("addr")
}

/// The COOKIE notify's data in an IKE_SA_INIT response, if it asks for one.
fn cookie_of(response: &[u8]) -> Option<Vec<u8>> {
    let m = ike::Message::parse(response).ok()?;
    m.payloads
        .iter()
        .filter(|p| p.kind == ike::PayloadType::NOTIFY)
        .filter_map(|p| ike::Notify::read(p.body).ok())
        .find(|n| n.kind == ike::NotifyType::COOKIE)
        .map(|n| n.data.to_vec())
}

/// Client `n` asks, is asked for a cookie, asks again with it: whether it got a half-open SA
/// (`None` when the first request went unanswered).
fn with_cookie(e: &mut IkeEngine, n: u8, now: Instant) -> Option<bool> {
    let (init, from) = client(n);
    let out = e.on_message(&init.request, from, server(), now);
    let cookie = cookie_of(&out.first()?.bytes).expect("a cookie asked for");
    let init = init.retry_with_cookie(&cookie).expect("retry");
    let out = e.on_message(&init.request, from, server(), now);
    let Some(answer) = out.first() else {
        return Some(false);
    };
    Some(matches!(
        init.on_response(&answer.bytes),
        Ok(InitReply::Established(_))
    ))
}

#[test]
fn past_the_threshold_a_cookie_is_asked_for_and_past_the_cap_nothing_is_answered() {
    let mut e = engine(2);
    let now = Instant::now();
    for n in 10..12 {
        let (init, from) = client(n);
        let out = e.on_message(&init.request, from, server(), now);
        assert!(matches!(
            init.on_response(&out[0].bytes),
            Ok(InitReply::Established(_))
        ));
    }
    // From the third on, a request proves its address with a cookie first, then gets its SA.
    for n in 12..17 {
        assert_eq!(with_cookie(&mut e, n, now), Some(true), "client {n}");
    }
    assert_eq!(e.half_open(), 7);
    // A cookie made for one request does not hold for another.
    let (first, from) = client(18);
    let out = e.on_message(&first.request, from, server(), now);
    let cookie = cookie_of(&out[0].bytes).expect("cookie");
    let (other, _) = client(18);
    let other = other.retry_with_cookie(&cookie).expect("retry");
    let out = e.on_message(&other.request, from, server(), now);
    assert!(cookie_of(&out[0].bytes).is_some(), "asked again");
    assert_eq!(e.half_open(), 7);
    assert_eq!(with_cookie(&mut e, 17, now), Some(true));
    assert_eq!(e.counters().cookies_sent, 8);
    // At four times the threshold (8 here), requests go unanswered: no cookie, no SA.
    let (init, from) = client(19);
    assert!(e.on_message(&init.request, from, server(), now).is_empty());
    assert_eq!(e.counters().dropped.get("too many half-open SAs"), Some(&1));
}

#[test]
fn a_retransmitted_sa_init_gets_the_same_answer_and_no_second_sa() {
    let mut e = engine(1024);
    let now = Instant::now();
    let (init, from) = client(30);
    let first = e.on_message(&init.request, from, server(), now);
    let again = e.on_message(&init.request, from, server(), now + Duration::from_secs(1));
    assert_eq!(first, again);
    assert_eq!(e.half_open(), 1);
    assert_eq!(e.counters().init_retransmissions, 1);
    // Thirty seconds without IKE_AUTH: the half-open SA is gone, and counted.
    e.on_tick(now + Duration::from_secs(31));
    assert_eq!(e.half_open(), 0);
    assert_eq!(e.counters().half_open_expired, 1);
}

#[test]
fn oversized_and_unknown_messages_are_dropped_by_reason() {
    let mut e = engine(1024);
    let now = Instant::now();
    let (init, from) = client(40);
    let mut big = init.request.clone();
    big.resize(9000, 0);
    assert!(e.on_message(&big, from, server(), now).is_empty());
    let mut stray = init.request.clone();
    stray[8..16].copy_from_slice(&[7; 8]); // a responder SPI no SA has
    stray[18] = 35; // IKE_AUTH
    assert!(e.on_message(&stray, from, server(), now).is_empty());
    // IKEv3: answered with INVALID_MAJOR_VERSION, nothing kept.
    let mut newer = init.request.clone();
    newer[17] = 0x30;
    let out = e.on_message(&newer, from, server(), now);
    assert_eq!(out.len(), 1, "told which version is spoken");
    assert_eq!((out[0].to, out[0].bytes[17]), (from, 0x20));
    assert_eq!(e.half_open(), 0);
    let dropped = &e.counters().dropped;
    assert_eq!(dropped.get("oversized IKE_SA_INIT"), Some(&1));
    assert_eq!(dropped.get("unknown SPI"), Some(&1));
    assert_eq!(dropped.get("unsupported major version"), Some(&1));
}

/// Events, kept.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<TunnelEvent>>);

impl EventSink for Recorder {
    fn publish(&self, event: TunnelEvent) {
        self.0.lock().expect("lock").push(event);
    }
}

#[test]
fn an_ike_sa_rekey_keeps_one_user_up_and_the_old_sa_ends_without_a_word() {
    use ike::{AuthInitiator, Delete, ExchangeType, Payload, PayloadType, Protected};
    let events = Arc::new(Recorder::default());
    let mut e = IkeEngine::new(settings(1024, false), events.clone()).expect("engine");
    let (alice, psk, user) = alice();
    let now = Instant::now();
    e.set_users(vec![user], true, now);
    let (init, from) = client(50);
    let out = e.on_message(&init.request, from, server(), now);
    let Ok(InitReply::Established(sa)) = init.on_response(&out[0].bytes) else {
        panic!("no SA");
    };
    let esp = Policy::modern().esp_offer([0xc1, 0, 0, 1], false);
    let rng = SystemRandom::new();
    let auth = AuthInitiator::start(*sa, &alice, psk, esp, Policy::modern(), &rng).expect("auth");
    e.on_message(&auth.request, from, server(), now);
    assert_eq!(e.sas_up(), 1);
    // The client rekeys the IKE SA.
    let ke = ike::KeyExchange::start(DhGroup::Curve25519, &rng).expect("ke");
    let offer = Policy::modern().ike_offer(&[0x66; 8]);
    let (sa_body, ke_body) = (
        ike::write_sa(&offer),
        ike::ke_body(DhGroup::Curve25519, ke.public()),
    );
    let seal = |id, payloads: &[Payload<'_>]| {
        let what = Protected {
            exchange: if payloads.len() == 3 {
                ExchangeType::CREATE_CHILD_SA
            } else {
                ExchangeType::INFORMATIONAL
            },
            message_id: id,
            by_initiator: true,
            response: false,
        };
        ike::protected_seal(auth.sa(), what, payloads, &rng).expect("seal")
    };
    let rekey = seal(
        2,
        &[
            Payload::plain(PayloadType::SA, &sa_body),
            Payload::plain(PayloadType::NONCE, &[0x3e; 32]),
            Payload::plain(PayloadType::KE, &ke_body),
        ],
    );
    assert_eq!(e.on_message(&rekey, from, server(), now).len(), 1);
    assert_eq!(e.counters().ike_rekeyed, 1);
    assert_eq!((e.sas_up(), e.sas().len()), (1, 1), "one user, once");
    // The client deletes the old SA: no user went down.
    let delete = Delete::ike().body();
    let gone = seal(3, &[Payload::plain(PayloadType::DELETE, &delete)]);
    e.on_message(&gone, from, server(), now);
    assert_eq!(e.sas_up(), 1);
    let downs = |ev: &Recorder| {
        ev.0.lock()
            .expect("lock")
            .iter()
            .filter(|x| matches!(x, TunnelEvent::IkeDown { .. }))
            .count()
    };
    assert_eq!(downs(&events), 0);
    // Closing everything ends the successor: one user down.
    e.close_all(now);
    assert_eq!((e.sas_up(), downs(&events)), (0, 1));
}

#[test]
fn a_flooding_source_fills_its_own_queue_and_a_newcomer_is_served_in_the_first_round() {
    use super::intake::{Datagram, InitIntake};
    let mut e = engine(1024);
    let t0 = Instant::now();
    let mut intake = InitIntake::new(t0);
    let mut turned_away = 0;
    for _ in 0..2000 {
        let (init, from) = client(7);
        let d = Datagram {
            bytes: init.request.clone(),
            from,
            to: server(),
        };
        // Queued (nothing sent yet), or over the source's share: a cookie, no key exchange.
        let out = intake.arrive(&mut e, d, (t0, t0));
        turned_away += out.iter().filter(|o| cookie_of(&o.bytes).is_some()).count();
    }
    assert!(turned_away > 0, "one source got the whole backlog");
    assert_eq!(
        e.counters().inits_accepted,
        0,
        "no key exchange before its turn"
    );
    let (newcomer, from) = client(8);
    let d = Datagram {
        bytes: newcomer.request.clone(),
        from,
        to: server(),
    };
    assert!(intake.arrive(&mut e, d, (t0, t0)).is_empty(), "queued");
    // The same bytes again within the second, from anywhere: a replay, dropped.
    let copy = Datagram {
        bytes: newcomer.request.clone(),
        from: SocketAddr::from(([192, 0, 2, 9], 500)),
        to: server(),
    };
    assert!(intake.arrive(&mut e, copy, (t0, t0)).is_empty());
    assert_eq!(e.counters().dropped.get("IKE_SA_INIT replayed"), Some(&1));
    // Round robin over the sources waiting: the newcomer is in the first two answered.
    let out = intake.work(&mut e, 2);
    assert_eq!(out.len(), 2);
    assert!(
        out.iter().any(|o| o.to == from),
        "the newcomer waited behind the flood"
    );
    assert!(matches!(
        newcomer.on_response(&out.iter().find(|o| o.to == from).expect("answer").bytes),
        Ok(InitReply::Established(_))
    ));
}

/// The user alice (a PSK), reaching 10.77.0.0/16.
fn alice() -> (ike::Identity, &'static [u8], super::IkeUser) {
    let alice = ike::Identity {
        kind: ike::IdType::RFC822_ADDR,
        data: b"alice@example.com".to_vec(),
    };
    let psk: &[u8] = b"alice's key of thirty-two bytes!";
    let grant = ike::Grant {
        auth: ike::UserAuth::Psk(zeroize::Zeroizing::new(psk.to_vec())),
        assignment: ike::Assignment {
            v4: Some("10.77.0.2".parse().expect("v4")),
            ..ike::Assignment::default()
        },
        reach: vec![ike::TrafficSelector::prefix(
            "10.77.0.0".parse().expect("net"),
            16,
        )],
    };
    let user = super::IkeUser {
        identity: alice.clone(),
        name: "alice".into(),
        grant,
    };
    (alice, psk, user)
}

/// How the first CHILD_SA's ESP travels when the datapath takes raw ESP (or not) and the
/// client claims a NAT (or not).
fn encap_when(raw_esp: bool, claim_nat: bool) -> datapath::io::EspEncap {
    let mut e = engine_with(1024, raw_esp);
    let (id, psk, user) = alice();
    let now = Instant::now();
    e.set_users(vec![user], true, now);
    let (init, from) = client_claiming_nat(60, claim_nat);
    let out = e.on_message(&init.request, from, server(), now);
    let Ok(InitReply::Established(sa)) = init.on_response(&out[0].bytes) else {
        panic!("no SA");
    };
    let nat = sa.nat;
    // Without raw ESP the server claims a NAT in front of itself: the client sees one.
    assert_eq!(nat.peer_behind_nat, !raw_esp, "the client's view");
    let esp = Policy::modern().esp_offer([0xc1, 0, 0, 1], false);
    let rng = SystemRandom::new();
    let auth = ike::AuthInitiator::start(*sa, &id, psk, esp, Policy::modern(), &rng).expect("auth");
    e.on_message(&auth.request, from, server(), now);
    let changes = e.take_esp();
    match changes.as_slice() {
        [crate::engine::EspChange::Up { encap, .. }] => *encap,
        _ => panic!("one tunnel up, got {} changes", changes.len()),
    }
}

#[test]
fn esp_goes_raw_only_where_the_datapath_takes_it_and_no_nat_is_found() {
    use datapath::io::EspEncap::{Raw, Udp};
    assert_eq!(encap_when(true, false), Raw);
    assert_eq!(
        encap_when(true, true),
        Udp,
        "a NAT (claimed) in front of the client"
    );
    assert_eq!(
        encap_when(false, false),
        Udp,
        "the io_uring backend takes no raw ESP"
    );
}
