//! AF_XDP against the kernel on a two-queue veth pair in namespaces this test creates: the
//! steering program attached in native mode hands datagrams for the port (and raw ESP) to the
//! sockets, a reply built in userspace reaches the peer's ordinary UDP socket (and its raw ESP
//! socket), and the host's other traffic (ping, TCP, another UDP port) still works.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datapath::io::af_xdp::bpf::{AddressMap, XdpLink, XdpMode, XdpProgram, XskMap};
use datapath::io::af_xdp::frame::{self, Path};
use datapath::io::af_xdp::program::{steering, Steered, XDP_PASS};
use datapath::io::af_xdp::socket::{RingSizes, XskSocket};
use datapath::io::af_xdp::umem;
use datapath::io::frames::Frames;
use testbed::netns::{veth_queues, Netns};

const PORT: u16 = 51999;
const QUEUES: u32 = 2;
const FRAMES: u32 = 512;
const SIZES: RingSizes = RingSizes {
    fill: 128,
    completion: 128,
    rx: 128,
    tx: 128,
};
const SERVER: &str = "10.183.0.1";

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).expect("name");
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(index, 0, "no interface {name}");
    index
}

/// What the AF_XDP side saw.
#[derive(Debug, Default)]
struct Served {
    echoed: u64,
    dropped: u64,
    per_queue: Vec<u64>,
    zero_copy: bool,
}

/// Answers every datagram for PORT with "echo:" + its payload, from userspace, until `stop`.
fn serve(stop: Arc<AtomicBool>, ready: std::sync::mpsc::Sender<()>) -> Served {
    let index = ifindex("xdpa");
    let map = XskMap::new(QUEUES).expect("xskmap");
    let local = AddressMap::new().expect("address map");
    local.insert(SERVER.parse().expect("ip")).expect("insert");
    let program = XdpProgram::load(
        "xgate_steer",
        &steering(
            Steered {
                port: PORT,
                nat_port: 0,
                raw_esp: true,
            },
            map.fd(),
            local.fd(),
            XDP_PASS,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _link = XdpLink::attach(&program, index, XdpMode::Native).expect("attach native");
    let mut frames = Frames::new(FRAMES as usize).expect("frames");
    let mut sockets: Vec<XskSocket> = Vec::new();
    for queue in 0..QUEUES {
        let socket = XskSocket::bind(&frames, sockets.first(), index, queue, SIZES)
            .unwrap_or_else(|e| panic!("{e}"));
        sockets.push(socket);
    }
    // Frames are owned by whoever holds them: this free list, or a ring.
    let mut free: Vec<u32> = (0..FRAMES).collect();
    for socket in &mut sockets {
        let n = socket.fill.free(SIZES.fill);
        for i in 0..n {
            let frame = free.pop().expect("enough frames");
            socket.fill.write(i, umem::addr(frame));
        }
        socket.fill.publish(n);
        map.insert(socket.queue(), socket.fd()).expect("map insert");
    }
    let mut served = Served {
        per_queue: vec![0; QUEUES as usize],
        zero_copy: sockets.iter().any(|s| s.zero_copy()),
        ..Default::default()
    };
    ready.send(()).expect("test waits");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut fds: Vec<libc::pollfd> = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a live array of pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10) };
        for (q, socket) in sockets.iter_mut().enumerate() {
            // Sent frames come back to the free list.
            let done = socket.completion.ready();
            for i in 0..done {
                free.push(umem::locate(socket.completion.read(i)).0);
            }
            socket.completion.release(done);
            let ready = socket.rx.ready();
            let room = socket.tx.free(ready);
            let mut queued = 0;
            for i in 0..ready {
                let desc = socket.rx.read(i);
                let (frame, offset) = umem::locate(desc.addr);
                let bytes = &mut frames[frame as usize];
                let end = offset + desc.len as usize;
                let Ok(got) = frame::parse(&bytes[offset..end]) else {
                    free.push(frame);
                    continue;
                };
                if queued == room {
                    free.push(frame);
                    continue;
                }
                // The reply is built in the same frame: payload moved behind new headers.
                let payload = offset + got.payload.start..offset + got.payload.end;
                let body: Vec<u8> = bytes[payload].to_vec();
                let start = frame::MAX_HEADERS;
                bytes[start..start + 5].copy_from_slice(b"echo:");
                bytes[start + 5..start + 5 + body.len()].copy_from_slice(&body);
                let path = Path {
                    from: got.to,
                    to: got.from,
                    src_mac: got.dst_mac,
                    dst_mac: got.src_mac,
                    raw_esp: got.raw_esp,
                };
                let range = frame::write_headers(bytes, start..start + 5 + body.len(), &path);
                socket.tx.write(
                    queued,
                    libc::xdp_desc {
                        addr: umem::addr(frame) + range.start as u64,
                        len: range.len() as u32,
                        options: 0,
                    },
                );
                queued += 1;
                served.per_queue[q] += 1;
            }
            socket.rx.release(ready);
            if queued > 0 {
                socket.tx.publish(queued);
                socket.kick_tx().expect("tx kick");
                served.echoed += u64::from(queued);
            }
            // Received frames go back to the kernel for the next ones.
            let n = socket.fill.free(1).min(free.len() as u32);
            for i in 0..n {
                let frame = free.pop().expect("counted");
                socket.fill.write(i, umem::addr(frame));
            }
            socket.fill.publish(n);
            if socket.fill.needs_wakeup() {
                socket.kick_rx();
            }
        }
    }
    for socket in &sockets {
        let stats = socket.statistics().expect("statistics");
        served.dropped += stats.rx_dropped + stats.rx_ring_full + stats.rx_invalid_descs;
    }
    served
}

/// Sends a raw ESP packet (IP protocol 50) to the server from a raw socket and reads the echo
/// the AF_XDP side built (no UDP header: "echo:" right behind the IPv4 header).
fn raw_esp_echo() -> Result<(), String> {
    // SAFETY: plain socket call; the result is checked and owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ESP) };
    if fd < 0 {
        return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let packet = [0x01u8, 0, 0, 7, 0, 0, 0, 1, b'e', b's', b'p'];
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    to.sin_family = libc::AF_INET as libc::sa_family_t;
    to.sin_addr.s_addr = u32::from(SERVER.parse::<std::net::Ipv4Addr>().expect("ip")).to_be();
    // SAFETY: the buffer and address are live for the call, with their own lengths.
    let sent = unsafe {
        libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(format!("raw send: {}", std::io::Error::last_os_error()));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        // SAFETY: the buffer is live and its length is its own.
        let n = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        // Our own packet is not seen here (it left by the veth); only the echo comes in.
        if n > 20 && buf[20..n as usize].starts_with(b"echo:") {
            return match buf[25..n as usize] == packet[..] {
                true => Ok(()),
                false => Err(format!("raw ESP echo {:?}", &buf[20..n as usize])),
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("no raw ESP echo".into())
}

#[test]
fn af_xdp_echoes_our_port_and_leaves_other_traffic_to_the_kernel() {
    let a = Netns::create("xdp-veth-a").expect("netns");
    let b = Netns::create("xdp-veth-b").expect("netns");
    veth_queues(
        &a,
        "xdpa",
        "10.183.0.1/24",
        &b,
        "xdpb",
        "10.183.0.2/24",
        QUEUES,
    )
    .expect("veth");
    // A TCP listener and a UDP socket on another port, in the AF_XDP side's namespace.
    let (tcp, other_udp) = a
        .enter(|| {
            let tcp = TcpListener::bind((SERVER, 8022)).expect("tcp listen");
            let udp = UdpSocket::bind((SERVER, 5353)).expect("udp bind");
            (tcp, udp)
        })
        .expect("enter a");
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_stop = stop.clone();
    let a_name = a.name().to_string();
    let server = std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/var/run/netns/{a_name}")).expect("netns file");
        // SAFETY: setns on a descriptor we hold; affects only this thread.
        let ret = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
        assert_eq!(ret, 0, "setns");
        serve(server_stop, ready_tx)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("AF_XDP side ready");

    let other_udp_thread = std::thread::spawn(move || {
        other_udp
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let (n, from) = other_udp
            .recv_from(&mut buf)
            .expect("other UDP port gets its datagram");
        other_udp.send_to(&buf[..n], from).expect("reply");
        let (mut conn, _) = tcp.accept().expect("tcp accept");
        conn.write_all(b"tcp ok").expect("tcp write");
    });

    let result = b
        .enter(|| -> Result<u64, String> {
            let sock = UdpSocket::bind("10.183.0.2:0").map_err(|e| e.to_string())?;
            sock.set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(|e| e.to_string())?;
            let mut echoed = 0;
            let mut buf = [0u8; 256];
            // Several source ports, so the flow hash spreads them over both queues.
            for i in 0..64u32 {
                let s = UdpSocket::bind("10.183.0.2:0").map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(2)))
                    .map_err(|e| e.to_string())?;
                let msg = format!("datagram {i}");
                s.send_to(msg.as_bytes(), (SERVER, PORT))
                    .map_err(|e| e.to_string())?;
                let (n, from) = s
                    .recv_from(&mut buf)
                    .map_err(|e| format!("echo {i}: {e}"))?;
                if &buf[..n] != format!("echo:{msg}").as_bytes() || from.port() != PORT {
                    return Err(format!("bad echo {:?} from {from}", &buf[..n]));
                }
                echoed += 1;
            }
            // Another UDP port on the same address: the kernel's socket answers.
            sock.send_to(b"dns?", (SERVER, 5353))
                .map_err(|e| e.to_string())?;
            let (n, _) = sock
                .recv_from(&mut buf)
                .map_err(|e| format!("other udp: {e}"))?;
            if &buf[..n] != b"dns?" {
                return Err("other UDP port answered wrongly".into());
            }
            let mut conn = TcpStream::connect_timeout(
                &format!("{SERVER}:8022").parse().expect("addr"),
                Duration::from_secs(2),
            )
            .map_err(|e| format!("tcp: {e}"))?;
            let mut text = String::new();
            conn.read_to_string(&mut text).map_err(|e| e.to_string())?;
            if text != "tcp ok" {
                return Err(format!("tcp said {text:?}"));
            }
            raw_esp_echo()?;
            Ok(echoed)
        })
        .expect("enter b");
    let ping = b.run("ping", &["-c", "2", "-i", "0.2", "-W", "1", SERVER]);
    stop.store(true, Ordering::Relaxed);
    let served = server.join().expect("AF_XDP side");
    let echoed = result.unwrap_or_else(|e| panic!("{e} (AF_XDP side: {served:?})"));
    other_udp_thread.join().expect("kernel side");
    assert_eq!(echoed, 64);
    assert_eq!(
        served.echoed, 65,
        "64 datagrams and a raw ESP packet: {served:?}"
    );
    assert_eq!(served.dropped, 0, "{served:?}");
    assert!(ping.is_ok(), "ping with XDP attached: {ping:?}");
    // veth offers no zero-copy: copy mode is what we must have got.
    assert!(!served.zero_copy);
    eprintln!("AF_XDP echo per queue: {:?}", served.per_queue);
}
