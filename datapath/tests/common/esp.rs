//! ESP helpers for the worker tests: both sides of a CHILD_SA built from the same keys
//! (`ike::esp`), a tunnel installed on worker 1, ESP from and to the user.

use std::net::SocketAddr;
use std::sync::Arc;

use datapath::io::memory::Incoming;
use datapath::io::EspEncap;
use datapath::messages::{EspSa, ToWorker, ESP_TUNNEL};
use datapath::route::AllowedIps;
use ike::esp::{Inbound, Outbound, ESP_HEADROOM, ESP_TAILROOM, NEXT_IPV4};
use ike::{Encr, EspKeys, Integ, Suite};
use zeroize::Zeroizing;

use super::Rig;

pub const USER: &str = "203.0.113.9:4500";
/// Tunnel 1 of two workers: worker 1 owns it.
pub const TUNNEL: u32 = ESP_TUNNEL | 1;

/// AES-CBC goes with HMAC-SHA1-96, as Windows proposes it.
pub fn suite(encr: Encr) -> Suite {
    Suite {
        encr,
        prf: None,
        integ: (!encr.is_aead()).then_some(Integ::HmacSha1_96),
        dh: None,
        esn: Some(true),
    }
}

pub fn keys(fill: u8, encr: Encr) -> EspKeys {
    let lengths = suite(encr).key_lengths();
    EspKeys {
        encr: Zeroizing::new(vec![fill; lengths.encr]),
        integ: Zeroizing::new(vec![!fill; lengths.integ]),
    }
}

/// Both sides of one CHILD_SA: ours (receives on `ours`) and the client's.
pub fn child(ours: u32, theirs: u32, fill: u8, encr: Encr) -> (EspSa, Outbound, Inbound) {
    let s = suite(encr);
    let (i_to_r, r_to_i) = (keys(fill, encr), keys(fill + 1, encr));
    let server = EspSa {
        inbound: Inbound::new(ours.to_be_bytes(), &s, &i_to_r).expect("inbound"),
        outbound: Outbound::new(theirs.to_be_bytes(), &s, &r_to_i).expect("outbound"),
    };
    let client_out = Outbound::new(ours.to_be_bytes(), &s, &i_to_r).expect("client out");
    let client_in = Inbound::new(theirs.to_be_bytes(), &s, &r_to_i).expect("client in");
    (server, client_out, client_in)
}

pub fn seal(client: &mut Outbound, inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; ESP_HEADROOM + inner.len() + ESP_TAILROOM];
    buf[ESP_HEADROOM..ESP_HEADROOM + inner.len()].copy_from_slice(inner);
    let range = client
        .seal(
            &mut buf,
            ESP_HEADROOM..ESP_HEADROOM + inner.len(),
            NEXT_IPV4,
        )
        .expect("seal");
    buf[range].to_vec()
}

pub fn from_user(rig: &mut Rig, worker: usize, datagram: Vec<u8>) {
    let from: SocketAddr = USER.parse().expect("addr");
    rig.workers[worker]
        .backend_mut()
        .incoming
        .push_back(Incoming::NatT(datagram, from));
    rig.step_all();
}

/// ESP the worker sent, and how.
pub fn esp_sent(rig: &mut Rig, worker: usize) -> Vec<(Vec<u8>, SocketAddr, EspEncap)> {
    std::mem::take(&mut rig.workers[worker].backend_mut().esp_sent)
}

/// ESP the worker sent, all of it from the NAT-T port.
pub fn nat_t_sent(rig: &mut Rig, worker: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let sent = esp_sent(rig, worker);
    assert!(sent.iter().all(|s| s.2 == EspEncap::Udp), "all in UDP");
    sent.into_iter().map(|(b, to, _)| (b, to)).collect()
}

/// Installs `sa` on tunnel 1 (worker 1) and lets the workers take it.
pub fn install(rig: &mut Rig, sa: EspSa) {
    install_as(rig, sa, (USER.parse().expect("addr"), EspEncap::Udp));
}

/// Installs `sa` on tunnel 1 with the user at `endpoint`, reached as `encap` says.
pub fn install_as(rig: &mut Rig, sa: EspSa, (endpoint, encap): (SocketAddr, EspEncap)) {
    rig.controls[1]
        .send(ToWorker::InstallEsp {
            tunnel: TUNNEL,
            sa: Box::new(sa),
            endpoint,
            encap,
        })
        .expect("send");
    rig.step_all();
}

/// Removes tunnel 1's SA received on `spi`.
pub fn remove_sa(rig: &mut Rig, spi: u32) {
    rig.controls[1]
        .send(ToWorker::RemoveEspSa {
            tunnel: TUNNEL,
            spi,
        })
        .expect("send");
    rig.step_all();
}

/// A rig whose worker 1 owns tunnel 1 with 10.77.0.9 and a first SA.
pub fn rig_with_tunnel(encr: Encr) -> (Rig, Outbound, Inbound) {
    let mut rig = Rig::new(2);
    let (sa, client_out, client_in) = child(0x0100_1234, 0xc0de_0001, 0x41, encr);
    let mut routes = AllowedIps::default();
    routes.insert("10.77.0.2/32".parse().expect("net"), 0);
    routes.insert("10.77.0.9/32".parse().expect("net"), TUNNEL);
    let routes = Arc::new(routes);
    for c in &rig.controls {
        c.send(ToWorker::Routes(routes.clone())).expect("send");
    }
    install(&mut rig, sa);
    (rig, client_out, client_in)
}
