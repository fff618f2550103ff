//! Under an IKE_SA_INIT flood, strongSwan users still get in at the cost of one cookie round
//! trip at most. For 10 s a generator sends 20,000 IKE_SA_INIT requests per second from 64
//! source addresses (a fresh initiator SPI each, so every one would cost the responder a
//! Diffie-Hellman and a half-open SA unless it defends itself); meanwhile three strongSwan
//! users connect. Each must connect without a single retransmission (a lost or unanswered
//! request would cost it one), and the responder must have asked for cookies.
//!
//! A retransmission that is charon's own doing is let pass: when the answer to the
//! cookie'd request comes back while the charon thread that sent that request still holds
//! the IKE_SA, charon drops the answer ("ignoring request with ID 0, already processing")
//! and retransmits. Then the responder must have recognised the retransmission as a copy of
//! a request it had answered (its `init_retransmissions` up by one), which a lost request
//! would not show (one more answer for each copy charon sent).

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use common::ike::{add_user, connect_and_check_user, direct, ike_rig_with, sas, scratch};
use common::load::senders;
use ike::{DhGroup, Endpoints, InitiatorInit, Policy};
use ring::rand::{SecureRandom, SystemRandom};
use testbed::{Strongswan, StrongswanConfig};

const SOURCES: u8 = 64;
const PER_SECOND: u64 = 20_000;
const FLOOD_TIME: Duration = Duration::from_secs(10);
const USERS: u8 = 3;

/// A few real IKE_SA_INIT requests (AES-256-GCM, SHA2-256, X25519) to vary.
fn requests(server: SocketAddr) -> Vec<Vec<u8>> {
    let rng = SystemRandom::new();
    (0..16)
        .map(|i| {
            let offer = Policy::modern().ike_offer(&[]);
            let ends = Endpoints {
                local: SocketAddr::from(([10, 203, 2, 1 + i], 500)),
                remote: server,
                force_nat_t: false,
            };
            InitiatorInit::start(offer, Policy::modern(), DhGroup::Curve25519, ends, &rng)
                .expect("a request")
                .request
        })
        .collect()
}

/// Sends `PER_SECOND` requests a second for `FLOOD_TIME` from `sources`, each with a fresh
/// initiator SPI; returns how many went out.
fn flood(server: SocketAddr, sources: &[Ipv4Addr], mut requests: Vec<Vec<u8>>) -> u64 {
    let sockets: Vec<UdpSocket> = sources
        .iter()
        .map(|a| {
            let s = UdpSocket::bind(SocketAddrV4::new(*a, 0)).expect("flood socket");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    let rng = SystemRandom::new();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < FLOOD_TIME {
        let due = (start.elapsed().as_secs_f64() * PER_SECOND as f64) as u64;
        while sent < due {
            let i = sent as usize;
            let request = &mut requests[i % 16];
            // A new initiator SPI: a new SA to the responder.
            rng.fill(&mut request[..8]).expect("randomness");
            let _ = sockets[i % sockets.len()].send_to(request, server);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

/// How many retransmitted IKE_SA_INIT requests the responder has answered again.
fn init_retransmissions(rig: &common::Rig, token: &str) -> u64 {
    sas(rig, token)["counters"]["init_retransmissions"]
        .as_u64()
        .expect("the responder's init_retransmissions")
}

/// How many times charon retransmitted its IKE_SA_INIT (message ID 0) after dropping an
/// answer that came back while it still held the IKE_SA; `None` if it retransmitted
/// anything else, or without having dropped an answer first.
fn retransmitted_after_dropping_the_answer(log: &str) -> Option<usize> {
    let dropped = log.find("ignoring request with ID 0, already processing")?;
    let first = log.find("retransmit 1 of request with message ID 0")?;
    let all = log.matches("] retransmit ").count();
    let of_init = log.matches(" of request with message ID 0\n").count();
    (dropped < first && all == of_init).then_some(of_init)
}

#[test]
fn strongswan_users_get_in_through_an_ike_sa_init_flood_with_one_cookie_round_trip_at_most() {
    let (rig, token) = ike_rig_with("ikef", |_| {});
    let sources: Vec<Ipv4Addr> = (1..=SOURCES)
        .map(|n| Ipv4Addr::new(10, 203, 2, n))
        .collect();
    let flooder = senders(&rig, "fi", 203, &sources);
    let server: SocketAddr = "10.203.0.1:500".parse().expect("addr");
    let mut users = Vec::new();
    for n in 0..USERS {
        let name = format!("u{n}");
        let identity = format!("u{n}@example.com");
        let (psk, v4) = add_user(&rig, &token, &name, &identity);
        let ns = direct(&rig, 2 + n);
        users.push((identity, psk, v4, ns));
    }
    let messages = requests(server);
    let flooding = flooder.spawn(move || flood(server, &sources, messages));
    // Let the flood fill the half-open SAs past the cookie threshold first.
    std::thread::sleep(Duration::from_secs(2));
    let mut charons = Vec::new();
    for (n, (identity, psk, v4, ns)) in users.iter().enumerate() {
        let config = StrongswanConfig::psk(&format!("10.201.{}.1", 2 + n), identity, psk);
        let c = Strongswan::start(ns, &scratch(&rig, &format!("sw{n}")), &config).expect("charon");
        let answered_again = init_retransmissions(&rig, &token);
        let began = Instant::now();
        connect_and_check_user(&rig, &token, (ns, &c), identity, v4);
        let took = began.elapsed();
        let log = c.log();
        let answered_again = init_retransmissions(&rig, &token) - answered_again;
        // Charon may run two retransmission timers for message ID 0 (one from before the
        // cookie): each copy must have been answered again.
        let excused = retransmitted_after_dropping_the_answer(&log)
            .is_some_and(|copies| copies as u64 == answered_again);
        if log.contains("retransmit") && !excused {
            let counters = &sas(&rig, &token)["counters"];
            panic!(
                "{identity} needed a retransmission under the flood ({took:?}); responder: \
                 {counters}\n{log}"
            );
        }
        eprintln!(
            "{identity} connected in {:.0} ms under the flood{}{}",
            took.as_secs_f64() * 1e3,
            if log.contains("COOKIE") {
                ", after a cookie"
            } else {
                ""
            },
            if excused {
                " (charon dropped the answer it was still busy with, and retransmitted)"
            } else {
                ""
            }
        );
        charons.push(c);
    }
    let sent = flooding.join().expect("flooder").expect("namespace");
    let counters = &sas(&rig, &token)["counters"];
    eprintln!("flood: {sent} IKE_SA_INIT sent; responder: {counters}");
    assert!(sent >= PER_SECOND * 9, "the flood ran short: {sent}");
    assert!(
        counters["cookies_sent"].as_u64() > Some(0),
        "the flood never made the responder ask for cookies: {counters}"
    );
    assert_eq!(counters["auth_succeeded"], u64::from(USERS));
}

#[test]
fn charon_s_own_retransmission_is_told_apart_from_a_lost_answer() {
    let raced = "14[NET] sending packet: from a to b (257 bytes)\n\
                 13[MGR] ignoring request with ID 0, already processing\n\
                 10[IKE] retransmit 1 of request with message ID 0\n\
                 13[IKE] retransmit 2 of request with message ID 0\n";
    assert_eq!(retransmitted_after_dropping_the_answer(raced), Some(2));
    let lost = "10[IKE] retransmit 1 of request with message ID 0\n";
    assert_eq!(retransmitted_after_dropping_the_answer(lost), None);
    let later = "13[MGR] ignoring request with ID 0, already processing\n\
                 10[IKE] retransmit 1 of request with message ID 0\n\
                 11[IKE] retransmit 1 of request with message ID 1\n";
    assert_eq!(retransmitted_after_dropping_the_answer(later), None);
}
