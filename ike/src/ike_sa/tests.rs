//! The responder's IKE SA against this crate's initiator: up through IKE_AUTH, retransmissions
//! answered from the kept response, liveness checks answered or not, deletes from the peer,
//! forged and out-of-window requests dropped, and the timers that end an SA.

use ring::rand::SystemRandom;

use super::*;
use crate::ike_auth::{AuthInitiator, AuthOutcome};
use crate::proposals::ProtocolId;
use crate::suite::Policy;
use crate::test_support::{alice, esp_offer, half_open, registry, server, t};

const PSK: &[u8] = b"alice's own key, 32 bytes long!!";

struct Rig {
    sa: IkeSa,
    client: HalfOpen,
    /// The client's inbound ESP SPI and the server's.
    spis: ([u8; 4], [u8; 4]),
    auth_request: Vec<u8>,
    t0: Instant,
}

fn ctx<'a>(
    users: &'a crate::test_support::Registry,
    local: &'a Identity,
    esp: &'a Policy,
) -> AuthContext<'a> {
    crate::test_support::auth_ctx(users, local, esp, [0x5e, 0, 0, 7])
}

fn timing() -> Timing {
    Timing {
        auth_within: Duration::from_secs(10),
        dpd_after: Duration::from_secs(5),
        retransmit: Duration::from_secs(1),
        tries: 3,
    }
}

/// An SA up through IKE_AUTH with alice's key (or `psk`), and the events that made it.
fn rig_with(psk: &[u8]) -> (Rig, Vec<SaEvent>) {
    let rng = SystemRandom::new();
    let (client_sa, server_sa) = half_open();
    let t0 = Instant::now();
    let mut sa = IkeSa::new(server_sa, timing(), t0);
    let offer = esp_offer([0xc1, 0, 0, 1], t(1, 20, Some(256)));
    let auth = AuthInitiator::start(client_sa, &alice(), psk, offer, Policy::modern(), &rng)
        .expect("request");
    let (users, local, esp) = (registry(), server(), Policy::modern());
    let events = sa.on_message(&auth.request, t0, &ctx(&users, &local, &esp), &rng);
    if let Some(SaEvent::Send(response)) = events.iter().find(|e| matches!(e, SaEvent::Send(_))) {
        if psk == PSK {
            assert!(matches!(
                auth.on_response(response),
                Ok(AuthOutcome::Established(_))
            ));
        }
    }
    let rig = Rig {
        sa,
        auth_request: auth.request.clone(),
        client: auth.into_sa(),
        spis: ([0xc1, 0, 0, 1], [0x5e, 0, 0, 7]),
        t0,
    };
    (rig, events)
}

fn rig() -> Rig {
    let (rig, events) = rig_with(PSK);
    assert!(
        matches!(
            events[..],
            [SaEvent::Authentic, SaEvent::Send(_), SaEvent::Up(_)]
        ),
        "{events:?}"
    );
    assert!(rig.sa.is_up());
    rig
}

impl Rig {
    /// A request of the client with message ID `id`.
    fn request(&self, exchange: ExchangeType, id: u32, payloads: &[Payload<'_>]) -> Vec<u8> {
        let what = Protected {
            exchange,
            message_id: id,
            by_initiator: true,
            response: false,
        };
        protected::seal(&self.client, what, payloads, &SystemRandom::new()).expect("seal")
    }

    fn deliver(&mut self, bytes: &[u8], at: Instant) -> Vec<SaEvent> {
        self.deliver_with(bytes, at, [0x5e, 0, 0, 7])
    }

    /// Delivers with `spare` as the SPI a new CHILD_SA would get.
    fn deliver_with(&mut self, bytes: &[u8], at: Instant, spare: [u8; 4]) -> Vec<SaEvent> {
        let (users, local, esp) = (registry(), server(), Policy::modern());
        let rng = SystemRandom::new();
        let mut c = ctx(&users, &local, &esp);
        c.child_spi = spare;
        self.sa.on_message(bytes, at, &c, &rng)
    }

    fn poll(&mut self, at: Instant) -> Vec<SaEvent> {
        self.sa.poll(at, &SystemRandom::new())
    }

    /// The client deletes the CHILD_SA it receives on `theirs`, as request `id`.
    fn delete_child(&mut self, theirs: [u8; 4], id: u32) -> Vec<SaEvent> {
        let delete = Delete {
            protocol: ProtocolId::ESP,
            spis: vec![theirs],
        }
        .body();
        let request = self.request(
            ExchangeType::INFORMATIONAL,
            id,
            &[Payload::plain(PayloadType::DELETE, &delete)],
        );
        self.deliver(&request, self.t0)
    }

    /// The client opens what the server sent.
    fn open(&self, bytes: &[u8]) -> Opened {
        protected::open(&self.client, bytes, false).expect("the client opens it")
    }
}

fn sent(events: &[SaEvent]) -> Vec<u8> {
    match events.iter().find(|e| matches!(e, SaEvent::Send(_))) {
        Some(SaEvent::Send(b)) => b.clone(),
        _ => panic!("expected a message to send, got {events:?}"),
    }
}

#[test]
fn a_retransmitted_request_gets_the_same_response_without_new_work() {
    let (mut rig, events) = rig_with(PSK);
    let first = sent(&events);
    let request = rig.auth_request.clone();
    let again = rig.deliver(&request, rig.t0 + Duration::from_secs(1));
    assert!(matches!(
        again[..],
        [SaEvent::Send(_), SaEvent::Retransmission]
    ));
    assert_eq!(sent(&again), first, "the kept response, byte for byte");
}

#[test]
fn a_quiet_peer_is_checked_retried_and_declared_dead_on_time() {
    let mut rig = rig();
    let t0 = rig.t0;
    assert_eq!(rig.sa.deadline(), Some(t0 + Duration::from_secs(5)));
    assert!(rig.poll(t0 + Duration::from_secs(4)).is_empty());
    let check = sent(&rig.poll(t0 + Duration::from_secs(5)));
    let opened = rig.open(&check);
    assert_eq!(opened.what.exchange, ExchangeType::INFORMATIONAL);
    assert!(!opened.what.response);
    assert_eq!(opened.what.message_id, 0, "the responder's first request");
    assert!(opened.payloads().expect("payloads").is_empty());
    // Retransmitted after 1 s, then 2 s; declared dead 4 s after the third sending.
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(sent(&rig.poll(at(6))), check);
    assert!(rig.poll(at(7)).is_empty());
    assert_eq!(sent(&rig.poll(at(8))), check);
    assert!(rig.poll(at(11)).is_empty());
    assert!(matches!(
        rig.poll(at(12))[..],
        [SaEvent::Down(DownReason::Dead)]
    ));
    assert!(!rig.sa.is_up());
    assert_eq!(rig.sa.deadline(), None);
}

#[test]
fn an_answered_check_keeps_the_sa_up_and_restarts_the_quiet_timer() {
    let mut rig = rig();
    let t0 = rig.t0;
    let check = sent(&rig.poll(t0 + Duration::from_secs(5)));
    let id = rig.open(&check).what.message_id;
    let what = Protected {
        exchange: ExchangeType::INFORMATIONAL,
        message_id: id,
        by_initiator: true,
        response: true,
    };
    let answer = protected::seal(&rig.client, what, &[], &SystemRandom::new()).expect("seal");
    let later = t0 + Duration::from_millis(5500);
    assert!(matches!(
        rig.deliver(&answer, later)[..],
        [SaEvent::Authentic]
    ));
    assert!(rig.sa.is_up());
    assert_eq!(rig.sa.deadline(), Some(later + Duration::from_secs(5)));
    // The same answer again is a response to no request.
    assert!(matches!(
        rig.deliver(&answer, later)[..],
        [SaEvent::Dropped(_)]
    ));
}

#[test]
fn the_peers_liveness_check_is_answered_empty() {
    let mut rig = rig();
    let request = rig.request(ExchangeType::INFORMATIONAL, 2, &[]);
    let events = rig.deliver(&request, rig.t0 + Duration::from_secs(1));
    let opened = rig.open(&sent(&events));
    assert!(opened.what.response);
    assert_eq!(opened.what.message_id, 2);
    assert!(opened.payloads().expect("payloads").is_empty());
    assert!(rig.sa.is_up());
}

/// RFC 4555: UPDATE_SA_ADDRESSES moves a MOBIKE SA (the caller moves it on `Authentic`)
/// and its COOKIE2 is echoed; without MOBIKE agreed, nothing moves but it is answered.
#[test]
fn an_address_update_moves_a_mobike_sa_and_echoes_its_cookie2() {
    let notifies = |kinds: &[(NotifyType, &[u8])]| -> Vec<Vec<u8>> {
        kinds
            .iter()
            .map(|(k, d)| Notify::new(*k, d).body())
            .collect()
    };
    let bodies = notifies(&[
        (NotifyType::UPDATE_SA_ADDRESSES, &[]),
        (NotifyType::COOKIE2, &[7; 12]),
    ]);
    let payloads: Vec<Payload<'_>> = bodies
        .iter()
        .map(|b| Payload::plain(PayloadType::NOTIFY, b))
        .collect();
    for (mobike, id) in [(false, 2), (true, 3)] {
        let mut rig = rig();
        rig.sa.mobike = mobike;
        let request = rig.request(ExchangeType::INFORMATIONAL, 2, &payloads);
        let events = rig.deliver(&request, rig.t0 + Duration::from_secs(1));
        assert!(events.iter().any(|e| matches!(e, SaEvent::Authentic)));
        assert_eq!(
            events
                .iter()
                .any(|e| matches!(e, SaEvent::AddressesUpdated)),
            mobike,
            "{events:?}"
        );
        let opened = rig.open(&sent(&events));
        let answer = opened.payloads().expect("payloads");
        let cookie = answer
            .iter()
            .filter_map(|p| Notify::read(p.body).ok())
            .find(|n| n.kind == NotifyType::COOKIE2)
            .map(|n| n.data.to_vec());
        assert_eq!(cookie, Some(vec![7; 12]), "request {id}");
    }
}

#[test]
fn a_delete_of_the_ike_sa_is_answered_and_ends_it() {
    let mut rig = rig();
    let delete = Delete::ike().body();
    let request = rig.request(
        ExchangeType::INFORMATIONAL,
        2,
        &[Payload::plain(PayloadType::DELETE, &delete)],
    );
    let events = rig.deliver(&request, rig.t0);
    assert!(matches!(
        events[..],
        [
            SaEvent::Authentic,
            SaEvent::Send(_),
            SaEvent::Down(DownReason::Deleted)
        ]
    ));
    assert!(rig.open(&sent(&events)).payloads().expect("p").is_empty());
    assert!(!rig.sa.is_up());
}

#[test]
fn a_delete_of_the_child_sa_is_answered_with_ours() {
    let mut rig = rig();
    let (theirs, ours) = rig.spis;
    let events = rig.delete_child(theirs, 2);
    assert!(matches!(events[2], SaEvent::ChildDeleted(s) if s == ours));
    let opened = rig.open(&sent(&events));
    let payloads = opened.payloads().expect("payloads");
    assert_eq!(payloads.len(), 1);
    assert_eq!(
        Delete::read(payloads[0].body).expect("delete").spis,
        vec![ours]
    );
    assert!(rig.sa.is_up(), "the IKE SA outlives its CHILD_SA");
}

#[test]
fn forged_out_of_window_and_wrong_side_messages_are_dropped() {
    let mut rig = rig();
    let mut forged = rig.request(ExchangeType::INFORMATIONAL, 2, &[]);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(matches!(
        rig.deliver(&forged, rig.t0)[..],
        [SaEvent::Dropped("bad ICV")]
    ));
    let ahead = rig.request(ExchangeType::INFORMATIONAL, 5, &[]);
    assert!(matches!(
        rig.deliver(&ahead, rig.t0)[..],
        [SaEvent::Dropped("message ID outside the window")]
    ));
    // The window did not move: the right ID is still answered.
    let right = rig.request(ExchangeType::INFORMATIONAL, 2, &[]);
    assert!(matches!(
        rig.deliver(&right, rig.t0)[..],
        [SaEvent::Authentic, SaEvent::Send(_)]
    ));
    let mut mirrored = rig.request(ExchangeType::INFORMATIONAL, 3, &[]);
    mirrored[19] &= !crate::header::Flags::INITIATOR;
    assert!(matches!(
        rig.deliver(&mirrored, rig.t0)[..],
        [SaEvent::Dropped("sent as the responder")]
    ));
    assert!(rig.sa.is_up());
}

#[test]
fn a_create_child_sa_that_rekeys_nothing_is_answered_no_additional_sas() {
    let mut rig = rig();
    let request = rig.request(ExchangeType::CREATE_CHILD_SA, 2, &[]);
    let events = rig.deliver(&request, rig.t0);
    let opened = rig.open(&sent(&events));
    let payloads = opened.payloads().expect("payloads");
    let n = Notify::read(payloads[0].body).expect("notify");
    assert_eq!(n.kind, NotifyType::NO_ADDITIONAL_SAS);
    assert!(rig.sa.is_up());
}

#[test]
fn a_wrong_key_is_answered_again_if_asked_again_then_the_sa_ends() {
    let (mut rig, events) = rig_with(b"not alice's key at all, really!!");
    assert!(
        matches!(
            events[..],
            [
                SaEvent::Authentic,
                SaEvent::Send(_),
                SaEvent::AuthRefused(AuthRefusal::AuthenticationFailed { .. }),
            ]
        ),
        "{events:?}"
    );
    assert!(!rig.sa.is_up());
    // The refusal was lost: the retransmission gets it again.
    let request = rig.auth_request.clone();
    let again = rig.deliver(&request, rig.t0 + Duration::from_secs(2));
    assert_eq!(sent(&again), sent(&events));
    assert!(rig.poll(rig.t0 + Duration::from_secs(9)).is_empty());
    assert!(matches!(
        rig.poll(rig.t0 + Duration::from_secs(10))[..],
        [SaEvent::Down(DownReason::AuthFailed)]
    ));
}

#[test]
fn an_exchange_not_taken_is_answered_invalid_syntax() {
    let mut rig = rig();
    let request = rig.request(ExchangeType::IKE_AUTH, 2, &[]);
    let events = rig.deliver(&request, rig.t0);
    let opened = rig.open(&sent(&events));
    let payloads = opened.payloads().expect("payloads");
    let n = Notify::read(payloads[0].body).expect("notify");
    assert_eq!(n.kind, NotifyType::INVALID_SYNTAX);
    // The window moved on.
    let next = rig.request(ExchangeType::INFORMATIONAL, 3, &[]);
    assert!(matches!(
        rig.deliver(&next, rig.t0)[..],
        [SaEvent::Authentic, SaEvent::Send(_)]
    ));
}

#[test]
fn a_half_open_sa_without_auth_ends_on_time() {
    let (client, server_sa) = half_open();
    drop(client);
    let t0 = Instant::now();
    let mut sa = IkeSa::new(server_sa, timing(), t0);
    let rng = SystemRandom::new();
    assert!(sa.poll(t0 + Duration::from_secs(9), &rng).is_empty());
    assert!(matches!(
        sa.poll(t0 + Duration::from_secs(10), &rng)[..],
        [SaEvent::Down(DownReason::AuthTimeout)]
    ));
}

#[test]
fn closing_sends_a_delete_the_peer_can_read() {
    let mut rig = rig();
    let events = rig.sa.close(rig.t0, &SystemRandom::new());
    assert!(matches!(
        events[..],
        [SaEvent::Send(_), SaEvent::Down(DownReason::Closed)]
    ));
    let opened = rig.open(&sent(&events));
    let payloads = opened.payloads().expect("payloads");
    assert_eq!(
        Delete::read(payloads[0].body).expect("delete"),
        Delete::ike()
    );
}

mod rekey;

#[test]
fn a_fragmented_ikeauth_is_put_together_and_a_large_answer_cut() {
    let rng = SystemRandom::new();
    let (mut client_sa, mut server_sa) = half_open();
    client_sa.fragmentation = true;
    server_sa.fragmentation = true;
    let t0 = Instant::now();
    let mut sa = IkeSa::new(server_sa, timing(), t0);
    let offer = esp_offer([0xc1, 0, 0, 1], t(1, 20, Some(256)));
    let auth = AuthInitiator::start(client_sa, &alice(), PSK, offer, Policy::modern(), &rng)
        .expect("request");
    let fragments =
        crate::fragments::split(auth.sa(), &auth.request, 150, &rng).expect("fragments");
    assert!(fragments.len() > 2, "{}", fragments.len());
    let (users, local, esp) = (registry(), server(), Policy::modern());
    let c = ctx(&users, &local, &esp);
    let (last, rest) = fragments.split_last().expect("fragments");
    for f in rest {
        let events = sa.on_message(f, t0, &c, &rng);
        assert!(matches!(events[..], [SaEvent::FragmentKept]), "{events:?}");
    }
    let events = sa.on_message(last, t0, &c, &rng);
    assert!(
        matches!(
            events[..],
            [SaEvent::Authentic, SaEvent::Send(_), SaEvent::Up(_)]
        ),
        "{events:?}"
    );
    // The first fragment again is the request's retransmission; later ones are dropped.
    let again = sa.on_message(&fragments[0], t0, &c, &rng);
    assert!(
        matches!(again.last(), Some(SaEvent::Retransmission)),
        "{again:?}"
    );
    let later = sa.on_message(&fragments[1], t0, &c, &rng);
    assert!(
        matches!(
            later[..],
            [SaEvent::Dropped("a fragment of an answered request")]
        ),
        "{later:?}"
    );
    // A response over FRAGMENT_SIZE leaves in fragments, each one the client can open.
    let big = vec![0x11u8; 3000];
    let response = {
        let what = Protected {
            exchange: ExchangeType::INFORMATIONAL,
            message_id: 0,
            by_initiator: false,
            response: false,
        };
        let p = [Payload::plain(PayloadType::VENDOR_ID, &big)];
        protected::seal(sa.keys(), what, &p, &rng).expect("sealed")
    };
    let cut = sa.datagrams(response, &rng);
    assert_eq!(cut.len(), 3);
    let mut whole = crate::fragments::Reassembly::default();
    let opened: Vec<_> = cut
        .iter()
        .map(|f| whole.take(auth.sa(), f, false).expect("opens"))
        .collect();
    assert!(matches!(
        opened.last(),
        Some(crate::fragments::Taken::Whole(_))
    ));
}

#[test]
fn fragments_where_none_was_agreed_are_dropped() {
    let rng = SystemRandom::new();
    let (client_sa, server_sa) = half_open();
    let mut sa = IkeSa::new(server_sa, timing(), Instant::now());
    let auth = AuthInitiator::start(
        client_sa,
        &alice(),
        PSK,
        esp_offer([0xc1, 0, 0, 1], t(1, 20, Some(256))),
        Policy::modern(),
        &rng,
    )
    .expect("request");
    let fragments =
        crate::fragments::split(auth.sa(), &auth.request, 200, &rng).expect("fragments");
    let (users, local, esp) = (registry(), server(), Policy::modern());
    let events = sa.on_message(
        &fragments[0],
        Instant::now(),
        &ctx(&users, &local, &esp),
        &rng,
    );
    assert!(
        matches!(
            events[..],
            [SaEvent::Dropped("a fragment where none was agreed")]
        ),
        "{events:?}"
    );
}
