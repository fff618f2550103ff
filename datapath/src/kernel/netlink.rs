//! The few rtnetlink questions the AF_XDP side asks the kernel: which interfaces there are
//! (state, link address, XDP program), which addresses they carry, the route and neighbour
//! entry towards a peer, and removing an XDP program attached the old way. One request at a
//! time on a socket of our own; messages are built and parsed by `netlink-packet-route`.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, LinkXdp, XdpAttached};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// An interface as rtnetlink describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Administratively up.
    pub up: bool,
    /// The loopback interface.
    pub loopback: bool,
    /// Link-layer address (empty for interfaces without one).
    pub mac: Vec<u8>,
    /// The XDP program attached, if any: its id and whether it runs in generic mode.
    pub xdp: Option<(u32, XdpAttached)>,
    /// The largest IP packet it carries (0 when the kernel did not say).
    pub mtu: u32,
}

/// Where the kernel would send a datagram to some address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Outgoing interface.
    pub ifindex: u32,
    /// The next hop, when it is a router.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would choose.
    pub source: Option<IpAddr>,
}

/// A route netlink socket.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
    buf: Vec<u8>,
    /// The kernel answers a neighbour question about one address (Linux 5.0 on); false
    /// once it refused one, so later lookups go straight to the dump.
    neighbour_get: bool,
}

impl Netlink {
    /// Opens a socket (in the calling thread's network namespace).
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            sequence: 0,
            buf: vec![0; 1 << 16],
            neighbour_get: true,
        })
    }

    /// Sends `message` and collects the answers until the dump ends or the kernel acks.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut at = 0;
            while at < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[at..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                at += len;
                if msg.header.sequence_number != self.sequence {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(_) => Err(e.to_io()),
                        }
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        answers.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every interface.
    pub fn interfaces(&mut self) -> io::Result<Vec<Interface>> {
        let answers = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(interface_of(link)),
                _ => None,
            })
            .collect())
    }

    /// The interface named `name`, if there is one.
    pub fn interface(&mut self, name: &str) -> io::Result<Option<Interface>> {
        Ok(self.interfaces()?.into_iter().find(|i| i.name == name))
    }

    /// Every (interface index, address) pair.
    pub fn addresses(&mut self) -> io::Result<Vec<(u32, IpAddr)>> {
        let answers = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for m in answers {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            // IFA_LOCAL is our address on point-to-point links, IFA_ADDRESS the peer's.
            let local = a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(address) {
                out.push((a.header.index, ip));
            }
        }
        Ok(out)
    }

    /// The route the kernel would use to reach `to`.
    pub fn route_to(&mut self, to: IpAddr) -> io::Result<Option<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(to);
        msg.header.destination_prefix_length = if to.is_ipv4() { 32 } else { 128 };
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(to)));
        let answers = match self.request(RouteNetlinkMessage::GetRoute(msg), 0) {
            Ok(a) => a,
            // No route (unreachable, prohibited): not an error of ours.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        for m in answers {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            let mut route = Route {
                ifindex: 0,
                gateway: None,
                source: None,
            };
            for at in r.attributes {
                match at {
                    RouteAttribute::Oif(i) => route.ifindex = i,
                    RouteAttribute::Gateway(a) => route.gateway = ip_of_route(a),
                    RouteAttribute::PrefSource(a) => route.source = ip_of_route(a),
                    _ => {}
                }
            }
            if route.ifindex != 0 {
                return Ok(Some(route));
            }
        }
        Ok(None)
    }

    /// The link address of neighbour `ip` on interface `ifindex`, if the kernel has a usable
    /// entry (reachable, stale, delayed, probing, permanent or no-ARP). Asks for that entry
    /// alone (RTM_GETNEIGH with NDA_DST, Linux 5.0 on); a kernel that cannot answer so is
    /// asked for its whole table.
    pub fn neighbour(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<[u8; 6]>> {
        let mut question = NeighbourMessage::default();
        question.header.family = family(ip);
        question.header.ifindex = ifindex;
        question
            .attributes
            .push(NeighbourAttribute::Destination(match ip {
                IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
                IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
            }));
        let dump = RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default());
        let answers = if self.neighbour_get {
            match self.request(RouteNetlinkMessage::GetNeighbour(question), 0) {
                Ok(answers) => answers,
                // No entry, or no such interface (any more).
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {
                    return Ok(None)
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                    self.neighbour_get = false;
                    self.request(dump, NLM_F_DUMP)?
                }
                Err(e) => return Err(e),
            }
        } else {
            self.request(dump, NLM_F_DUMP)?
        };
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => usable_entry(n, ifindex, ip),
                _ => None,
            })
            .next())
    }

    /// Removes the XDP program attached to `ifindex` the old way (not through a link), in
    /// the mode `flags` names.
    pub fn detach_xdp(&mut self, ifindex: u32, flags: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes.push(LinkAttribute::Xdp(vec![
            LinkXdp::Fd(-1),
            LinkXdp::Flags(flags),
        ]));
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Attaches `program_fd` to `ifindex` the old way (tests use it to leave a stale program).
    pub fn attach_xdp_legacy(
        &mut self,
        ifindex: u32,
        program_fd: i32,
        flags: u32,
    ) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes.push(LinkAttribute::Xdp(vec![
            LinkXdp::Fd(program_fd),
            LinkXdp::Flags(flags),
        ]));
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }
}

/// The link address `n` gives for `ip` on `ifindex`, when it is an entry that can be used.
fn usable_entry(n: &NeighbourMessage, ifindex: u32, ip: IpAddr) -> Option<[u8; 6]> {
    let usable = matches!(
        n.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    );
    if n.header.ifindex != ifindex || !usable {
        return None;
    }
    let mut dst = None;
    let mut lladdr = None;
    for at in &n.attributes {
        match at {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                dst = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                dst = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(l);
                lladdr = Some(mac);
            }
            _ => {}
        }
    }
    lladdr.filter(|_| dst == Some(ip))
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn ip_of_route(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

fn interface_of(link: LinkMessage) -> Interface {
    let mut out = Interface {
        index: link.header.index,
        name: String::new(),
        up: link.header.flags.contains(LinkFlags::Up),
        loopback: link.header.flags.contains(LinkFlags::Loopback),
        mac: Vec::new(),
        xdp: None,
        mtu: 0,
    };
    for at in link.attributes {
        match at {
            LinkAttribute::IfName(n) => out.name = n,
            LinkAttribute::Address(a) => out.mac = a,
            LinkAttribute::Mtu(m) => out.mtu = m,
            LinkAttribute::Xdp(xdp) => {
                let mut id = None;
                let mut mode = XdpAttached::None;
                for x in xdp {
                    match x {
                        LinkXdp::ProgId(i) => id = Some(i),
                        LinkXdp::Attached(m) => mode = m,
                        _ => {}
                    }
                }
                if let (Some(id), false) = (id, mode == XdpAttached::None) {
                    out.xdp = Some((id, mode));
                }
            }
            _ => {}
        }
    }
    out
}
