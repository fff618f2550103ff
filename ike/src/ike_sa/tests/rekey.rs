//! Rekeys through the responder's IKE SA: a CHILD_SA with and without PFS (the client
//! derives the same keys), the old one deleted after, and the IKE SA itself, whose successor
//! keeps the CHILD_SAs.

use super::*;

/// The client's CREATE_CHILD_SA rekeying the CHILD_SA it receives on `old`, offering `new`
/// (with a KE of `pfs` when given), as message `id`; returns it and its nonce.
fn rekey_request(
    rig: &Rig,
    id: u32,
    (old, new): ([u8; 4], [u8; 4]),
    pfs: Option<&crate::dh::KeyExchange>,
) -> (Vec<u8>, Vec<u8>) {
    let mut offer = esp_offer(new, t(1, 20, Some(256)));
    if pfs.is_some() {
        offer[0].transforms.push(t(4, 31, None));
    }
    let sa = crate::proposals::write_sa(&offer);
    let ni = vec![0x4e; 32];
    let rekey = Notify {
        protocol: ProtocolId::ESP.0,
        spi: &old,
        kind: NotifyType::REKEY_SA,
        data: &[],
    }
    .body();
    let ts = crate::selectors::ts_body(&[crate::selectors::TrafficSelector::prefix(
        "0.0.0.0".parse().expect("any"),
        0,
    )]);
    let ke = pfs.map(|k| crate::dh::ke_body(crate::suite::DhGroup::Curve25519, k.public()));
    let mut payloads = vec![
        Payload::plain(PayloadType::NOTIFY, &rekey),
        Payload::plain(PayloadType::SA, &sa),
        Payload::plain(PayloadType::NONCE, &ni),
    ];
    if let Some(ke) = &ke {
        payloads.push(Payload::plain(PayloadType::KE, ke));
    }
    payloads.push(Payload::plain(PayloadType::TSI, &ts));
    payloads.push(Payload::plain(PayloadType::TSR, &ts));
    (
        rig.request(ExchangeType::CREATE_CHILD_SA, id, &payloads),
        ni,
    )
}

/// The keys both sides must hold after a rekey with nonces `ni`, `nr` (and `shared`).
fn rekeyed_keys(rig: &Rig, ni: &[u8], nr: &[u8], shared: Option<&[u8]>) -> Vec<u8> {
    let prf = rig.client.suite.prf.expect("prf");
    crate::keys::child_keymat(prf, &rig.client.keys.sk_d, shared, (ni, nr), 72)
        .expect("keymat")
        .to_vec()
}

#[test]
fn a_child_sa_rekey_is_answered_with_new_keys_and_the_old_sa_deleted_after() {
    let mut rig = rig();
    let (theirs, ours) = rig.spis;
    let (request, ni) = rekey_request(&rig, 2, (theirs, [0xc1, 0, 0, 2]), None);
    let events = rig.deliver_with(&request, rig.t0, [0x5e, 0, 0, 8]);
    let Some(SaEvent::ChildRekeyed { replaces, child }) = events.get(2) else {
        panic!("{events:?}");
    };
    assert_eq!(*replaces, Some(ours));
    assert_eq!(
        (child.spi_i, child.spi_r),
        ([0xc1, 0, 0, 2], [0x5e, 0, 0, 8])
    );
    let opened = rig.open(&sent(&events));
    let payloads = opened.payloads().expect("payloads");
    let find = |k| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
    let nr = find(PayloadType::NONCE).expect("Nr");
    let answer = crate::proposals::read_sa_answer(find(PayloadType::SA).expect("SA")).expect("sa");
    assert_eq!(answer.spi, [0x5e, 0, 0, 8], "our new SPI");
    let keys = rekeyed_keys(&rig, &ni, nr, None);
    assert_eq!(child.i_to_r.encr[..], keys[..36]);
    assert_eq!(child.r_to_i.encr[..], keys[36..]);
    assert_eq!(
        child.ts_i[0].start.to_string(),
        "10.77.0.2",
        "the old selectors"
    );
    // The client deletes the old SA by its own SPI; the answer names ours.
    let events = rig.delete_child(theirs, 3);
    assert!(matches!(events[2], SaEvent::ChildDeleted(s) if s == ours));
    let opened = rig.open(&sent(&events));
    let payloads = opened.payloads().expect("payloads");
    assert_eq!(
        Delete::read(payloads[0].body).expect("delete").spis,
        vec![ours]
    );
    // The new SA can be rekeyed in turn; the old one no more.
    let (again, _) = rekey_request(&rig, 4, (theirs, [0xc1, 0, 0, 3]), None);
    let events = rig.deliver_with(&again, rig.t0, [0x5e, 0, 0, 9]);
    let payloads = rig.open(&sent(&events)).payloads().expect("p").len();
    assert_eq!(payloads, 1, "a notify: the old SA is gone");
    let (next, _) = rekey_request(&rig, 5, ([0xc1, 0, 0, 2], [0xc1, 0, 0, 3]), None);
    let events = rig.deliver_with(&next, rig.t0, [0x5e, 0, 0, 9]);
    assert!(matches!(events.get(2), Some(SaEvent::ChildRekeyed { .. })));
}

#[test]
fn a_rekey_with_pfs_mixes_in_a_new_key_exchange() {
    let mut rig = rig();
    let (theirs, _) = rig.spis;
    let rng = SystemRandom::new();
    let ke = crate::dh::KeyExchange::start(crate::suite::DhGroup::Curve25519, &rng).expect("ke");
    let (request, ni) = rekey_request(&rig, 2, (theirs, [0xc1, 0, 0, 2]), Some(&ke));
    let events = rig.deliver_with(&request, rig.t0, [0x5e, 0, 0, 8]);
    let Some(SaEvent::ChildRekeyed { child, .. }) = events.get(2) else {
        panic!("{events:?}");
    };
    let opened = rig.open(&sent(&events));
    let payloads = opened.payloads().expect("payloads");
    let find = |k| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
    let nr = find(PayloadType::NONCE).expect("Nr");
    let (group, theirs_ke) = crate::dh::read_ke(find(PayloadType::KE).expect("KEr")).expect("ke");
    assert_eq!(group, 31);
    let shared = ke.finish(theirs_ke).expect("shared");
    let keys = rekeyed_keys(&rig, &ni, nr, Some(&shared));
    assert_eq!(child.i_to_r.encr[..], keys[..36]);
    assert_eq!(child.suite.dh, Some(crate::suite::DhGroup::Curve25519));
}

#[test]
fn an_ike_sa_rekey_makes_a_successor_that_keeps_the_child_sas() {
    let mut rig = rig();
    let (theirs, ours) = rig.spis;
    let rng = SystemRandom::new();
    let ke = crate::dh::KeyExchange::start(crate::suite::DhGroup::Curve25519, &rng).expect("ke");
    let new_spi_i = [0x77; 8];
    let offer = vec![crate::proposals::Proposal {
        number: 1,
        protocol: ProtocolId::IKE,
        spi: new_spi_i.to_vec(),
        transforms: vec![t(1, 20, Some(256)), t(2, 5, None), t(4, 31, None)],
    }];
    let sa = crate::proposals::write_sa(&offer);
    let ni = vec![0x1e; 32];
    let ke_body = crate::dh::ke_body(crate::suite::DhGroup::Curve25519, ke.public());
    let request = rig.request(
        ExchangeType::CREATE_CHILD_SA,
        2,
        &[
            Payload::plain(PayloadType::SA, &sa),
            Payload::plain(PayloadType::NONCE, &ni),
            Payload::plain(PayloadType::KE, &ke_body),
        ],
    );
    let mut events = rig.deliver(&request, rig.t0);
    let Some(SaEvent::IkeRekeyed(next)) = events.pop() else {
        panic!("{events:?}");
    };
    let opened = rig.open(&sent(&events));
    let payloads = opened.payloads().expect("payloads");
    let find = |k| payloads.iter().find(|p| p.kind == k).map(|p| p.body);
    let answer = crate::proposals::read_sa_answer(find(PayloadType::SA).expect("SA")).expect("sa");
    let nr = find(PayloadType::NONCE).expect("Nr");
    let (_, ker) = crate::dh::read_ke(find(PayloadType::KE).expect("KEr")).expect("ke");
    let spi_r: [u8; 8] = answer.spi.as_slice().try_into().expect("8-byte SPI");
    assert_eq!(next.spis(), (new_spi_i, spi_r));
    // The client derives the same keys: SKEYSEED = prf(SK_d (old), g^ir | Ni | Nr).
    let shared = ke.finish(ker).expect("shared");
    let prf = rig.client.suite.prf.expect("prf");
    let keys = crate::keys::derive_rekeyed_ike_keys(
        (prf, prf),
        &rig.client.keys.sk_d,
        &shared,
        (&ni, nr),
        (&new_spi_i, &spi_r),
        rig.client.suite.key_lengths(),
    )
    .expect("keys");
    assert!(
        keys == next.keys().keys,
        "both sides hold the same new keys"
    );
    // The successor is up, numbers from 0, and holds the CHILD_SA: the client deletes it there.
    let mut next = *next;
    assert!(next.is_up());
    let client_next = HalfOpen {
        spi_i: new_spi_i,
        spi_r,
        keys,
        ni,
        nr: nr.to_vec(),
        request: Vec::new(),
        response: Vec::new(),
        ..rig.client
    };
    let delete = Delete {
        protocol: ProtocolId::ESP,
        spis: vec![theirs],
    }
    .body();
    let what = Protected {
        exchange: ExchangeType::INFORMATIONAL,
        message_id: 0,
        by_initiator: true,
        response: false,
    };
    let on_next = protected::seal(
        &client_next,
        what,
        &[Payload::plain(PayloadType::DELETE, &delete)],
        &rng,
    )
    .expect("seal");
    let (users, local, esp) = (registry(), server(), Policy::modern());
    let events = next.on_message(&on_next, rig.t0, &ctx(&users, &local, &esp), &rng);
    assert!(
        matches!(events[2], SaEvent::ChildDeleted(s) if s == ours),
        "{events:?}"
    );
    // The old SA makes nothing more: another rekey there is refused for now.
    let again = rig.request(
        ExchangeType::CREATE_CHILD_SA,
        3,
        &[
            Payload::plain(PayloadType::SA, &sa),
            Payload::plain(PayloadType::NONCE, &[0x2e; 32]),
            Payload::plain(PayloadType::KE, &ke_body),
        ],
    );
    let events = rig.deliver(&again, rig.t0);
    let opened = rig.open(&sent(&events));
    let payloads = opened.payloads().expect("payloads");
    let n = Notify::read(payloads[0].body).expect("notify");
    assert_eq!(n.kind, NotifyType::TEMPORARY_FAILURE);
    assert!(!events.iter().any(|e| matches!(e, SaEvent::IkeRekeyed(_))));
    // And the old SA, deleted by the client, ends.
    let old_delete = Delete::ike().body();
    let request = rig.request(
        ExchangeType::INFORMATIONAL,
        4,
        &[Payload::plain(PayloadType::DELETE, &old_delete)],
    );
    assert!(matches!(
        rig.deliver(&request, rig.t0)[..],
        [
            SaEvent::Authentic,
            SaEvent::Send(_),
            SaEvent::Down(DownReason::Deleted)
        ]
    ));
}
