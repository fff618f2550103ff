//! ESP tunnels on real workers over the in-memory backend: a client's SAs built independently
//! from the same keys (`ike::esp`), packets both ways, every ESP drop reason, the SPI's worker
//! taking packets another worker received, a rekey that loses nothing, and raw ESP (IP
//! protocol 50) beside UDP-encapsulated, each answered the way the user last sent.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::esp::{
    child, esp_sent, from_user, install, install_as, nat_t_sent, remove_sa, rig_with_tunnel, seal,
    TUNNEL, USER,
};
use common::{ipv4, Rig, BUFFERS};
use datapath::io::memory::Incoming;
use datapath::io::EspEncap;
use datapath::messages::ToWorker;
use datapath::route::AllowedIps;
use datapath::stats::DropReason;
use ike::esp::{ESP_HEADROOM, ESP_TAILROOM};
use ike::Encr;

#[test]
fn esp_both_ways_with_every_cipher_kind_and_every_drop_reason() {
    for encr in [
        Encr::AesGcm16 { key_bits: 256 },
        Encr::ChaCha20Poly1305,
        Encr::AesCbc { key_bits: 256 },
    ] {
        let (mut rig, mut client_out, mut client_in) = rig_with_tunnel(encr);
        let ping = ipv4([10, 77, 0, 9], [10, 77, 0, 1], 84, 0x11);

        // User → TUN, arriving at the worker its SPI names.
        let d = seal(&mut client_out, &ping);
        from_user(&mut rig, 1, d.clone());
        assert_eq!(rig.written(1), vec![ping.clone()], "{encr}");

        // TUN → user, read on worker 0: handed to worker 1, sealed, sent from the NAT-T port.
        let reply = ipv4([10, 77, 0, 1], [10, 77, 0, 9], 1200, 0x22);
        rig.receive_from_tun(0, reply.clone());
        let sent = nat_t_sent(&mut rig, 1);
        assert_eq!(sent.len(), 1, "{encr}");
        assert_eq!(sent[0].1, USER.parse::<SocketAddr>().expect("addr"));
        let mut esp = sent[0].0.clone();
        let opened = client_in.open(&mut esp).expect("the client opens it");
        assert_eq!(&esp[opened.inner], &reply[..]);

        // Received on the other worker: handed over to the SPI's.
        let d2 = seal(&mut client_out, &ping);
        from_user(&mut rig, 0, d2);
        assert_eq!(rig.written(1).len(), 1, "{encr}: handed over");

        // Replayed, forged, unknown SPI, short, a source the tunnel does not own, dummy,
        // IKE on a worker, and a keepalive (counted, not a drop).
        from_user(&mut rig, 1, d);
        assert_eq!(rig.drops(DropReason::EspReplayed), 1);
        let mut forged = seal(&mut client_out, &ping);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        from_user(&mut rig, 1, forged);
        assert_eq!(rig.drops(DropReason::EspBadIcv), 1);
        let mut unknown = seal(&mut client_out, &ping);
        unknown[..4].copy_from_slice(&0x0100_9999u32.to_be_bytes());
        from_user(&mut rig, 1, unknown);
        let mut nobodys = seal(&mut client_out, &ping);
        nobodys[..4].copy_from_slice(&0x0700_9999u32.to_be_bytes());
        from_user(&mut rig, 1, nobodys);
        assert_eq!(rig.drops(DropReason::EspUnknownSpi), 2);
        from_user(&mut rig, 1, vec![1, 0, 0x12, 0x34, 0, 0]);
        let truncated = seal(&mut client_out, &ping)[..30].to_vec();
        from_user(&mut rig, 1, truncated);
        assert_eq!(rig.drops(DropReason::EspMalformed), 2);
        let spoofed = seal(
            &mut client_out,
            &ipv4([10, 77, 0, 2], [10, 77, 0, 1], 60, 0),
        );
        from_user(&mut rig, 1, spoofed);
        assert_eq!(rig.drops(DropReason::SourceNotAllowed), 1);
        let mut buf = vec![0u8; ESP_HEADROOM + 8 + ESP_TAILROOM];
        let range = client_out
            .seal(&mut buf, ESP_HEADROOM..ESP_HEADROOM + 8, 59)
            .expect("dummy");
        from_user(&mut rig, 1, buf[range].to_vec());
        assert_eq!(rig.drops(DropReason::EspDummy), 1);
        from_user(&mut rig, 1, vec![0, 0, 0, 0, 0x2b, 1, 2, 3, 4, 5]);
        assert_eq!(rig.drops(DropReason::IkeOnWorker), 1);
        from_user(&mut rig, 1, vec![0xff]);
        assert_eq!(rig.workers[1].counters().nat_keepalives, 1);
        assert_eq!(rig.written(1).len(), 0, "nothing refused reached the TUN");
        assert_eq!(
            rig.workers[1].counters().esp_rx_packets,
            3,
            "the spoofed one too"
        );

        // Removed: its packets are unknown, its routes' packets have no tunnel.
        rig.controls[1]
            .send(ToWorker::RemoveEsp { tunnel: TUNNEL })
            .expect("send");
        rig.step_all();
        from_user(&mut rig, 1, seal(&mut client_out, &ping));
        assert_eq!(rig.drops(DropReason::EspUnknownSpi), 3);
        for w in 0..2 {
            assert_eq!(
                rig.workers[w].backend_mut().free_buffers(),
                BUFFERS,
                "worker {w} leaked a buffer"
            );
        }
    }
}

#[test]
fn a_rekey_loses_no_packet_and_switches_sending_once_the_user_does() {
    let encr = Encr::AesGcm16 { key_bits: 256 };
    let (mut rig, mut old_out, mut old_in) = rig_with_tunnel(encr);
    let ping = ipv4([10, 77, 0, 9], [10, 77, 0, 1], 84, 0x11);
    let reply = ipv4([10, 77, 0, 1], [10, 77, 0, 9], 84, 0x22);
    let (sa, mut new_out, mut new_in) = child(0x0100_5678, 0xc0de_0002, 0x51, encr);
    install(&mut rig, sa);

    // Until the user sends on the new SA, we still send on the old (it may not have the new
    // one installed yet); both inbound SAs are open.
    rig.receive_from_tun(1, reply.clone());
    let mut esp = nat_t_sent(&mut rig, 1).remove(0).0;
    assert!(old_in.open(&mut esp).is_ok(), "still the old SA");
    from_user(&mut rig, 1, seal(&mut old_out, &ping));
    from_user(&mut rig, 1, seal(&mut new_out, &ping));
    assert_eq!(rig.written(1).len(), 2, "both SAs open");
    rig.receive_from_tun(1, reply.clone());
    let mut esp = nat_t_sent(&mut rig, 1).remove(0).0;
    assert!(
        new_in.open(&mut esp).is_ok(),
        "the new SA, once the user used it"
    );

    // A late packet on the old SA still opens, and after its Delete too for a while (ESP
    // sent before the Delete may arrive after it); then it is unknown.
    from_user(&mut rig, 1, seal(&mut old_out, &ping));
    assert_eq!(rig.written(1).len(), 1);
    remove_sa(&mut rig, 0x0100_1234);
    from_user(&mut rig, 1, seal(&mut old_out, &ping));
    assert_eq!(rig.written(1).len(), 1, "in flight before the Delete");
    let later = std::time::Instant::now() + std::time::Duration::from_secs(3);
    rig.step_all_at(later);
    from_user(&mut rig, 1, seal(&mut old_out, &ping));
    assert_eq!(rig.drops(DropReason::EspUnknownSpi), 1);
    from_user(&mut rig, 1, seal(&mut new_out, &ping));
    assert_eq!(rig.written(1).len(), 1);
}

#[test]
fn deleting_the_old_sa_switches_sending_even_if_the_user_sent_nothing_new() {
    let encr = Encr::ChaCha20Poly1305;
    let (mut rig, _old_out, _old_in) = rig_with_tunnel(encr);
    let (sa, _new_out, mut new_in) = child(0x0100_5678, 0xc0de_0002, 0x51, encr);
    install(&mut rig, sa);
    remove_sa(&mut rig, 0x0100_1234);
    rig.receive_from_tun(1, ipv4([10, 77, 0, 1], [10, 77, 0, 9], 84, 0x22));
    let mut esp = nat_t_sent(&mut rig, 1).remove(0).0;
    assert!(new_in.open(&mut esp).is_ok());
}

#[test]
fn a_child_sa_made_again_after_the_last_was_deleted_sends_at_once() {
    let encr = Encr::AesGcm16 { key_bits: 256 };
    let (mut rig, _old_out, _old_in) = rig_with_tunnel(encr);
    // The client deletes its only CHILD_SA, then makes one again (no REKEY_SA).
    remove_sa(&mut rig, 0x0100_1234);
    let (sa, _new_out, mut new_in) = child(0x0100_5678, 0xc0de_0002, 0x51, encr);
    install(&mut rig, sa);
    rig.receive_from_tun(1, ipv4([10, 77, 0, 1], [10, 77, 0, 9], 84, 0x22));
    let mut esp = nat_t_sent(&mut rig, 1).remove(0).0;
    assert!(
        new_in.open(&mut esp).is_ok(),
        "sent on the new SA before the client used it: the old one is gone"
    );
}

#[test]
fn a_rekeyed_sa_deleted_before_use_is_never_sent_on() {
    let encr = Encr::ChaCha20Poly1305;
    let (mut rig, _old_out, mut old_in) = rig_with_tunnel(encr);
    let (sa, _new_out, _new_in) = child(0x0100_5678, 0xc0de_0002, 0x51, encr);
    install(&mut rig, sa);
    remove_sa(&mut rig, 0x0100_5678);
    rig.receive_from_tun(1, ipv4([10, 77, 0, 1], [10, 77, 0, 9], 84, 0x22));
    let mut esp = nat_t_sent(&mut rig, 1).remove(0).0;
    assert!(old_in.open(&mut esp).is_ok(), "still the old SA");
}

/// A user with no NAT between sends raw ESP (AF_XDP hands it over with port 0): opened on the
/// SPI's worker wherever it arrived, answered raw; once it sends in UDP instead (a NAT came,
/// or it chose to), answers follow it there. A raw packet with SPI 0 is an unknown SPI.
#[test]
fn raw_esp_is_answered_raw_until_the_user_encapsulates() {
    let mut rig = Rig::new(2);
    let (sa, mut client_out, mut client_in) = child(
        0x0100_1234,
        0xc0de_0001,
        0x41,
        Encr::AesGcm16 { key_bits: 256 },
    );
    let mut routes = AllowedIps::default();
    routes.insert("10.77.0.9/32".parse().expect("net"), TUNNEL);
    let routes = Arc::new(routes);
    for c in &rig.controls {
        c.send(ToWorker::Routes(routes.clone())).expect("send");
    }
    let raw_user: SocketAddr = "203.0.113.9:0".parse().expect("addr");
    install_as(&mut rig, sa, (raw_user, EspEncap::Raw));
    let ping = ipv4([10, 77, 0, 9], [10, 77, 0, 1], 84, 0x11);
    for worker in [1, 0] {
        let d = seal(&mut client_out, &ping);
        rig.workers[worker]
            .backend_mut()
            .incoming
            .push_back(Incoming::RawEsp(d, raw_user));
        rig.step_all();
        assert_eq!(rig.written(1), vec![ping.clone()], "arrived at {worker}");
    }
    let reply = ipv4([10, 77, 0, 1], [10, 77, 0, 9], 600, 0x22);
    rig.receive_from_tun(1, reply.clone());
    let sent = esp_sent(&mut rig, 1);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].1, sent[0].2), (raw_user, EspEncap::Raw));
    let mut esp = sent[0].0.clone();
    let opened = client_in.open(&mut esp).expect("the user opens it");
    assert_eq!(&esp[opened.inner], &reply[..]);

    from_user(&mut rig, 1, seal(&mut client_out, &ping));
    rig.receive_from_tun(1, reply.clone());
    let sent = nat_t_sent(&mut rig, 1);
    assert_eq!(sent[0].1, USER.parse::<SocketAddr>().expect("addr"));

    let before = rig.drops(DropReason::EspUnknownSpi);
    rig.workers[1]
        .backend_mut()
        .incoming
        .push_back(Incoming::RawEsp(vec![0u8; 40], raw_user));
    rig.step_all();
    assert_eq!(rig.drops(DropReason::EspUnknownSpi), before + 1);
}
