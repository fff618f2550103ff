//! The IKEv2 core (`ike`) against strongSwan, the reference implementation, before any of it
//! is in the daemon: a responder made of nothing but the crate's rules on two UDP sockets
//! (500, and 4500 with the non-ESP marker) answers a real `charon` initiator with a PSK user,
//! over NAT-T as kernel-libipsec needs it. strongSwan must report the IKE and the CHILD SA
//! established with the virtual address the responder gave, and the responder must hold the
//! same user and selectors.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use ike::{
    respond_auth, respond_init, AuthAnswer, CookieJar, Endpoints, Established, Grant, HalfOpen,
    IdType, Identity, InitAnswer, Message, Policy, TrafficSelector, Users,
};
use testbed::{veth, Netns};
use zeroize::Zeroizing;

const PSK: &str = "an interop test's pre-shared key";
/// The outer addresses: the server's, the client's, their prefix length.
#[derive(Clone, Copy)]
struct Underlay {
    server: &'static str,
    client: &'static str,
    prefix: u8,
}

const V4: Underlay = Underlay {
    server: "10.88.0.1",
    client: "10.88.0.2",
    prefix: 24,
};

const V6: Underlay = Underlay {
    server: "fd88::1",
    client: "fd88::2",
    prefix: 64,
};

struct OneUser(HashMap<Identity, Grant>);

impl Users for OneUser {
    fn find(&self, id: &Identity) -> Option<Grant> {
        self.0.get(id).cloned()
    }
}

fn alice() -> Identity {
    Identity {
        kind: IdType::RFC822_ADDR,
        data: b"alice@example.com".to_vec(),
    }
}

fn users() -> OneUser {
    let grant = Grant {
        psk: Zeroizing::new(PSK.as_bytes().to_vec()),
        assignment: ike::Assignment {
            v4: Some("10.77.0.2".parse().expect("v4")),
            v6: Some(("fd77::2".parse().expect("v6"), 64)),
            dns: vec!["10.77.0.53".parse().expect("dns")],
            subnets: Vec::new(),
        },
        reach: vec![TrafficSelector::prefix(
            "10.77.0.0".parse().expect("net"),
            16,
        )],
    };
    OneUser(HashMap::from([(alice(), grant)]))
}

/// The responder: IKE_SA_INIT and IKE_AUTH by the crate's rules, until an IKE_AUTH is
/// answered or `deadline`. Retransmitted requests get the same answer again.
fn respond(
    sockets: (UdpSocket, UdpSocket),
    server_addr: std::net::IpAddr,
    deadline: Instant,
) -> Option<Established> {
    let rng = ring::rand::SystemRandom::new();
    let jar = CookieJar::new(&rng)?;
    let server = Identity {
        kind: IdType::FQDN,
        data: b"vpn.example.com".to_vec(),
    };
    let users = users();
    let mut half: Option<HalfOpen> = None;
    let mut answered: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut buf = [0u8; 65_536];
    while Instant::now() < deadline {
        for (sock, natt) in [(&sockets.0, false), (&sockets.1, true)] {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let local = SocketAddr::new(server_addr, if natt { 4500 } else { 500 });
            // On 4500, IKE follows four zero bytes (RFC 3948); a keepalive is one 0xff.
            let bytes = match (natt, buf.get(..n)) {
                (true, Some(b)) if b.len() > 4 && b[..4] == [0; 4] => &b[4..],
                (false, Some(b)) => b,
                _ => continue,
            };
            let send = |reply: &[u8]| {
                let framed = if natt {
                    [&[0u8; 4][..], reply].concat()
                } else {
                    reply.to_vec()
                };
                let _ = sock.send_to(&framed, from);
            };
            if let Some(again) = answered.get(bytes) {
                send(again);
                continue;
            }
            let ends = Endpoints {
                local,
                remote: from,
            };
            let Ok(m) = Message::parse(bytes) else {
                continue;
            };
            if m.header.exchange == ike::ExchangeType::IKE_SA_INIT {
                match respond_init(bytes, ends, &Policy::modern(), (&jar, false), &rng) {
                    InitAnswer::Accepted(sa) => {
                        send(&sa.response);
                        answered.insert(bytes.to_vec(), sa.response.clone());
                        half = Some(*sa);
                    }
                    InitAnswer::Refused { reply, why } => {
                        eprintln!("IKE_SA_INIT refused: {why}");
                        if let Some(r) = reply {
                            send(&r);
                        }
                    }
                }
            } else if let Some(sa) = &half {
                match respond_auth(
                    sa,
                    bytes,
                    &users,
                    (&server, &Policy::modern(), [0xc0, 0, 0, 1]),
                    &rng,
                ) {
                    AuthAnswer::Accepted {
                        established,
                        response,
                    } => {
                        send(&response);
                        return Some(*established);
                    }
                    AuthAnswer::Refused { response, why } => {
                        eprintln!("IKE_AUTH refused: {why}");
                        if let Some(r) = response {
                            send(&r);
                        }
                    }
                }
            }
        }
    }
    None
}

/// strongswan.conf and swanctl.conf for the client, in `dir`.
fn client_files(dir: &Path, esp: &str, server: &str) -> std::io::Result<()> {
    let d = dir.display();
    std::fs::write(
        dir.join("strongswan.conf"),
        format!(
            "charon {{\n  load_modular = no\n  load = random nonce openssl pem pkcs1 x509 pubkey \
             sha1 sha2 hmac kdf gcm aes kernel-libipsec kernel-netlink socket-default vici\n  \
             install_routes = no\n  retransmit_tries = 3\n  \
             plugins {{\n    vici {{\n      socket = unix://{d}/charon.vici\n    }}\n  }}\n  \
             filelog {{\n    log {{\n      path = {d}/charon.log\n      default = 1\n      \
             ike = 2\n      cfg = 2\n    }}\n  }}\n}}\n"
        ),
    )?;
    std::fs::write(
        dir.join("swanctl.conf"),
        format!(
            "connections {{\n  xgate {{\n    version = 2\n    remote_addrs = {server}\n    \
             vips = 0.0.0.0, ::\n    encap = yes\n    mobike = no\n    \
             proposals = aes256gcm16-prfsha256-x25519\n    \
             local {{\n      auth = psk\n      id = alice@example.com\n    }}\n    \
             remote {{\n      auth = psk\n      id = vpn.example.com\n    }}\n    \
             children {{\n      xgate {{\n        remote_ts = 10.77.0.0/16\n        \
             esp_proposals = {esp}\n      }}\n    }}\n  }}\n}}\n\
             secrets {{\n  ike-alice {{\n    id-1 = alice@example.com\n    \
             id-2 = vpn.example.com\n    secret = \"{PSK}\"\n  }}\n}}\n"
        ),
    )
}

/// Runs charon in `ns` with a private /run (its PID file's path is fixed), returns it.
fn start_charon(ns: &Netns, dir: &Path) -> testbed::Daemon {
    let script = format!(
        "mount -t tmpfs tmpfs /run && STRONGSWAN_CONF={d}/strongswan.conf exec /usr/lib/ipsec/charon",
        d = dir.display()
    );
    let mut cmd = ns.command("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    testbed::Daemon::spawn(cmd, &dir.join("charon.out")).expect("charon starts")
}

fn interop(tag: &str, esp: &str, net: Underlay) {
    let dir = std::env::temp_dir().join(format!("xgate-ike-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let server = Netns::create(&format!("xt-{tag}-s")).expect("server namespace");
    let client = Netns::create(&format!("xt-{tag}-c")).expect("client namespace");
    let (s_if, c_if) = (format!("xt{tag}s"), format!("xt{tag}c"));
    veth(
        &server,
        &s_if,
        &format!("{}/{}", net.server, net.prefix),
        &client,
        &c_if,
        &format!("{}/{}", net.client, net.prefix),
    )
    .expect("veth");
    // IPv6 addresses are used once duplicate address detection is done (before, charon would
    // send from the link-local address).
    for ns in [&server, &client] {
        let settled = testbed::wait_until(Duration::from_secs(10), || {
            ns.ip(&["-6", "addr", "show", "tentative"])
                .is_ok_and(|out| out.trim().is_empty())
        });
        assert!(settled, "IPv6 addresses still tentative in {}", ns.name());
    }
    let server_addr: std::net::IpAddr = net.server.parse().expect("address");
    let sockets = server
        .enter(move || {
            let (a, b) = (
                UdpSocket::bind((server_addr, 500))?,
                UdpSocket::bind((server_addr, 4500))?,
            );
            for s in [&a, &b] {
                s.set_read_timeout(Some(Duration::from_millis(50)))?;
            }
            Ok::<_, std::io::Error>((a, b))
        })
        .expect("enter")
        .expect("UDP 500 and 4500");
    let deadline = Instant::now() + Duration::from_secs(30);
    let responder = std::thread::spawn(move || respond(sockets, server_addr, deadline));
    client_files(&dir, esp, net.server).expect("client config");
    let mut charon = start_charon(&client, &dir);
    let vici = format!("unix://{}/charon.vici", dir.display());
    let up = testbed::wait_until(Duration::from_secs(10), || dir.join("charon.vici").exists());
    assert!(up, "charon did not start: {}", charon.log_text());
    let swanctl = |args: &[&str]| {
        client
            .command("swanctl")
            .args(args)
            .args(["--uri", &vici])
            .output()
            .expect("swanctl runs")
    };
    let conf = dir.join("swanctl.conf");
    let loaded = swanctl(&["--load-all", "--file", conf.to_str().expect("path")]);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let initiated = swanctl(&["--initiate", "--child", "xgate", "--timeout", "20"]);
    let log = std::fs::read_to_string(dir.join("charon.log")).unwrap_or_default();
    let established = responder.join().expect("responder thread");
    let out = String::from_utf8_lossy(&initiated.stdout);
    assert!(
        initiated.status.success() && out.contains("initiate completed successfully"),
        "strongSwan: {out}\n{}\ncharon log:\n{log}",
        String::from_utf8_lossy(&initiated.stderr)
    );
    let established = established.expect("the responder established nothing");
    assert_eq!(established.peer, alice());
    let sas = String::from_utf8_lossy(&swanctl(&["--list-sas"]).stdout).into_owned();
    assert!(
        sas.contains("ESTABLISHED") && sas.contains("INSTALLED"),
        "{sas}"
    );
    assert!(
        sas.contains("10.77.0.2"),
        "the virtual address given: {sas}"
    );
    // charon put the address on an interface of the client's namespace.
    let addrs = client.ip(&["-o", "addr"]).unwrap_or_default();
    assert!(addrs.contains("10.77.0.2/32"), "{addrs}");
    charon.signal_and_wait(libc::SIGTERM, Duration::from_secs(5));
    drop((client, server));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn strongswan_connects_with_a_psk_and_aes_256_gcm() {
    testbed::process::find_program("swanctl").expect("swanctl (strongswan-swanctl) is installed");
    interop("ikeg", "aes256gcm16", V4);
}

#[test]
fn strongswan_connects_with_a_psk_and_chacha20_poly1305() {
    testbed::process::find_program("swanctl").expect("swanctl (strongswan-swanctl) is installed");
    interop("ikec", "chacha20poly1305", V4);
}

#[test]
fn strongswan_connects_over_an_ipv6_underlay() {
    testbed::process::find_program("swanctl").expect("swanctl (strongswan-swanctl) is installed");
    interop("ike6", "aes256gcm16", V6);
}
