//! The commented default configuration `xgate init` writes.

use proto::PrivateKey;

use manage::config::{DEFAULT_API_LISTEN, DEFAULT_HOLD_SECS};
use plane::config::{
    DEFAULT_ADDRESSES, DEFAULT_INTERFACE, DEFAULT_LISTEN_PORT, DEFAULT_MTU, STATE_DIR,
};

/// A commented default configuration with a fresh private key (what `xgate init` writes).
pub fn default_config_text(key: &PrivateKey) -> String {
    format!(
        r#"# xgate configuration. Every field is optional except the private key;
# omitted fields take the defaults shown here. Reference: README.md.

[interface]
# Interface name (1-15 characters). `wg show {DEFAULT_INTERFACE}` and `xgate show` use it.
name = "{DEFAULT_INTERFACE}"
# This server's private key (from `xgate genkey`). Keep this file mode 600.
# Alternatively: private_key_file = "/etc/xgate/{DEFAULT_INTERFACE}.key"
private_key = "{key}"
# UDP port clients connect to.
listen_port = {DEFAULT_LISTEN_PORT}
# The concentrator's own tunnel addresses; clients get addresses inside these prefixes.
address = ["{a4}", "{a6}"]
# Inner MTU. 1420 fits a 1500-byte underlay over IPv4 or IPv6.
mtu = {DEFAULT_MTU}
# Datapath workers: "auto" (one per core) or a number.
workers = "auto"
# CPUs to pin workers to (default: worker i on CPU i).
# cpus = [0, 1]
# Threads that answer handshakes (default: one per core). They use idle CPU in a login surge.
# handshake_threads = 2
# Firewall mark on outgoing tunnel packets (0 = none), as `wg set fwmark`.
fwmark = 0
# How tunnel datagrams reach the workers: "auto" (AF_XDP where it can be set up, else
# io_uring UDP sockets), "af-xdp" or "io-uring".
backend = "auto"
# Interfaces AF_XDP serves (default: every up, non-loopback interface with an address).
# outer_interfaces = ["eth0"]
# XDP attach mode: "auto" (native where the driver has it, else generic) or "generic".
# xdp_mode = "auto"
# The LAN side: "tun" (the kernel forwards between the TUN and the LAN), "af-xdp" (AF_XDP
# sockets on lan_interfaces carry it, the TUN only what the kernel must handle) or "auto"
# (AF_XDP where it can be set up, else the TUN). Default: "auto" if lan_interfaces is set,
# else "tun". The LAN router must route the pools to this host's LAN address.
# inner = "af-xdp"
# lan_interfaces = ["eth1"]

# One [[peer]] per client. Add more at run time with `wg set {DEFAULT_INTERFACE} peer ...`.
# [[peer]]
# name = "alice-laptop"                 # label for logs only
# public_key = "<client's wg pubkey>"
# allowed_ips = ["10.77.0.2/32", "fd77::2/128"]
# preshared_key = "<xgate genpsk>"     # optional
# endpoint = "192.0.2.10:51820"        # optional: xgate initiates to it
# persistent_keepalive = 25            # optional, seconds

# The peer registry (SQLite): peers kept here survive restarts. Without [[pool]], clients
# get addresses from the interface's own prefixes.
[registry]
path = "{STATE_DIR}/{DEFAULT_INTERFACE}.db"
# [[pool]]
# name = "default"                     # groups use the pool of their name, else "default"
# ipv4 = "10.77.0.0/16"
# ipv6 = "fd77::/64"
# hold_secs = {DEFAULT_HOLD_SECS}                     # a released address rests this long

# The HTTP API (on with the registry) and what the client configurations it hands out hold.
# [api]
# listen = "{DEFAULT_API_LISTEN}"
# endpoint = "vpn.example.com:{DEFAULT_LISTEN_PORT}"     # what clients connect to
# dns = ["10.77.0.1"]
# persistent_keepalive = 25
# client_allowed_ips = ["10.77.0.0/16"]  # split tunnel (default: the pools' prefixes)

# A group's own client policy (peers are created with a group); unset fields take [api]'s.
# [[group]]
# name = "staff"
# tunnel = "full"                      # everything into the tunnel; or "split" with:
# client_allowed_ips = ["10.0.0.0/8"]
# dns = ["10.77.0.53"]
# mtu = 1380
# persistent_keepalive = 25
"#,
        key = key.to_base64(),
        a4 = DEFAULT_ADDRESSES[0],
        a6 = DEFAULT_ADDRESSES[1],
    )
}
