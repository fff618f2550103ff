//! The steering's LAN side against the kernel, in namespaces this test creates: a concentrator
//! with an outer veth and a LAN veth. The LAN interface gets the LAN program, never the outer
//! one, even where the automatic choice would take it; a LAN interface that does not exist
//! is refused at start; the served prefixes follow what the plane sets; and with no socket
//! bound on the LAN queues yet, traffic from the LAN host still reaches the concentrator's
//! kernel.

use datapath::io::af_xdp::steering::{Role, Steering, SteeringError, PROGRAM_NAME};
use datapath::kernel::netlink::Netlink;
use testbed::netns::{veth_queues, Netns};

const PORT: u16 = 51998;

#[test]
fn lan_interfaces_get_the_lan_program_and_the_prefixes_the_plane_sets() {
    let concentrator = Netns::create("xls-c").expect("netns");
    let outer = Netns::create("xls-o").expect("netns");
    let lan = Netns::create("xls-l").expect("netns");
    veth_queues(
        &concentrator,
        "xlso",
        "10.186.0.1/24",
        &outer,
        "xlsop",
        "10.186.0.2/24",
        2,
    )
    .expect("outer veth");
    veth_queues(
        &concentrator,
        "xlsl",
        "10.187.0.1/24",
        &lan,
        "xlslp",
        "10.187.0.2/24",
        2,
    )
    .expect("LAN veth");
    let checked = concentrator
        .enter(|| -> Result<(), String> {
            let mut netlink = Netlink::open().map_err(|e| e.to_string())?;
            let missing = Steering::attach_with_lan(
                &mut netlink,
                (&[], &["xls-none".to_string()], 0),
                PORT,
                false,
            );
            match missing {
                Err(SteeringError::NoSuchLanInterface(name)) if name == "xls-none" => {}
                other => return Err(format!("a missing LAN interface: {other:?}")),
            }
            let steering =
                Steering::attach_with_lan(&mut netlink, (&[], &["xlsl".into()], 0), PORT, false)
                    .map_err(|e| e.to_string())?;
            // Both veths are up with an address: only the outer one is chosen as outer.
            let roles: Vec<(String, Role)> = steering
                .interfaces()
                .iter()
                .map(|i| (i.name.clone(), i.role))
                .collect();
            let expected = vec![
                ("xlso".to_string(), Role::Outer),
                ("xlsl".into(), Role::Lan),
            ];
            if roles != expected {
                return Err(format!("roles {roles:?}"));
            }
            let described = steering.describe();
            if !described.contains("xlsl (LAN)") {
                return Err(described);
            }
            let attached = netlink
                .interface("xlsl")
                .map_err(|e| e.to_string())?
                .and_then(|i| i.xdp)
                .ok_or("no XDP program on the LAN veth")?;
            let name =
                datapath::io::af_xdp::bpf::program_name(attached.0).map_err(|e| e.to_string())?;
            if name != PROGRAM_NAME {
                return Err(format!("the LAN veth runs {name:?}"));
            }
            // The prefixes follow the plane: a pool and a peer's allowed IP, then the pool only.
            let pool: ipnet::IpNet = "10.77.0.0/16".parse().map_err(|_| "net")?;
            let peer: ipnet::IpNet = "192.168.50.7/32".parse().map_err(|_| "net")?;
            steering
                .set_lan_prefixes(&[pool, peer])
                .map_err(|e| e.to_string())?;
            let serves = |s: &str| steering.lan_serves(s.parse().expect("ip"));
            if !(serves("10.77.3.4") && serves("192.168.50.7") && !serves("10.78.0.1")) {
                return Err("prefixes not served as set".into());
            }
            steering
                .set_lan_prefixes(&[pool])
                .map_err(|e| e.to_string())?;
            if serves("192.168.50.7") || !serves("10.77.3.4") {
                return Err("a removed prefix is still served".into());
            }
            if steering.lan_passes().map(|p| p.len()) != Some(4) {
                return Err("no pass counters".into());
            }
            // No socket on the LAN queues yet: the LAN host still reaches this namespace.
            for (ns, to) in [("xls-l", "10.187.0.1"), ("xls-o", "10.186.0.1")] {
                let ping = std::process::Command::new("ip")
                    .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "2", to])
                    .output()
                    .map_err(|e| e.to_string())?;
                if !ping.status.success() {
                    return Err(format!("ping from {ns}: {ping:?}"));
                }
            }
            Ok(())
        })
        .expect("enter");
    checked.unwrap_or_else(|e| panic!("{e}"));
    drop((lan, outer));
}
