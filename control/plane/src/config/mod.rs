//! The plane's sections of the configuration file, `[interface]`, `[[peer]]` and `[ike]`, their
//! embedded defaults and their validation; the errors every section's validation shares.
//!
//! Every error names the field at fault and says how to fix it, in one line: an operator reads
//! it in a terminal or a journal, not in a debugger. Parsing writes nothing: a key the
//! defaults need is created by `InterfaceSettings::create_pending_key`, once the daemon runs.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use proto::{PrivateKey, PublicKey};
use serde::Deserialize;

use crate::update::PeerUpdate;

mod ike;
mod outer;
mod peers;
mod workers;

/// Largest inner MTU the datapath's buffers allow.
pub use datapath::io::MAX_MTU;
pub use ike::{IkeConfig, IkeSection, LEGACY_WARNING};
use outer::{outer_settings, with_lan};
pub use outer::{Backend, Inner, OuterSettings, XdpModeSetting};
use peers::peer_update;
pub use peers::{resolve_endpoint, same_route};
use workers::{auto_workers, cpu_count, thread_layout};
pub use workers::{DEFAULT_BATCH_LINGER_US, MAX_BATCH_LINGER_US};

/// Default interface name.
pub const DEFAULT_INTERFACE: &str = "xgate0";
/// Default UDP listen port (WireGuard's customary port).
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
/// Default tunnel addresses of the concentrator itself.
pub const DEFAULT_ADDRESSES: [&str; 2] = ["10.77.0.1/16", "fd77::1/64"];
/// Default inner MTU (WireGuard's default: 1500 minus IPv6 and WireGuard overhead).
pub const DEFAULT_MTU: usize = 1420;
/// Where xgate keeps its state: a generated private key when the config names none, the
/// registry and the API's tokens by default.
pub const STATE_DIR: &str = "/var/lib/xgate";

/// A configuration problem: which field, what is wrong, how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem} ({fix})")]
pub struct ConfigError {
    /// The field, as written in the file (`interface.mtu`, `peer[2].allowed_ips`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

/// A `ConfigError` from its three parts.
pub fn err(
    field: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Parses every item of list `field`; the first that does not parse is reported with its
/// index, as "`<item>` is not `<what>`" and the fix.
pub fn parse_list<T: std::str::FromStr>(
    field: &str,
    items: &[String],
    what: &str,
    fix: &str,
) -> Result<Vec<T>, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse().map_err(|_| {
                err(
                    format!("{field}[{i}]"),
                    format!("{text:?} is not {what}"),
                    fix,
                )
            })
        })
        .collect()
}

/// `[interface]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSection {
    name: Option<String>,
    private_key: Option<String>,
    private_key_file: Option<PathBuf>,
    listen_port: Option<u16>,
    address: Option<Vec<String>>,
    mtu: Option<usize>,
    workers: Option<WorkersSetting>,
    cpus: Option<Vec<usize>>,
    fwmark: Option<u32>,
    handshake_threads: Option<usize>,
    backend: Option<String>,
    outer_interfaces: Option<Vec<String>>,
    xdp_mode: Option<String>,
    inner: Option<String>,
    lan_interfaces: Option<Vec<String>>,
    batch_linger_us: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WorkersSetting {
    Count(usize),
    Word(String),
}

/// One `[[peer]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    name: Option<String>,
    public_key: Option<String>,
    preshared_key: Option<String>,
    preshared_key_file: Option<PathBuf>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    endpoint: Option<String>,
    persistent_keepalive: Option<u16>,
}

/// The interface and its configured peers, validated.
#[derive(Debug)]
pub struct InterfaceSettings {
    /// Interface name.
    pub name: String,
    /// Our private key (`None` for a bare interface configured later through the socket, or
    /// until `create_pending_key` makes the one `key_to_create` names).
    pub private_key: Option<PrivateKey>,
    /// Where the embedded defaults keep a key that does not exist yet.
    pub key_to_create: Option<PathBuf>,
    /// UDP listen port (0 = any free port).
    pub listen_port: u16,
    /// Addresses to put on the interface.
    pub addresses: Vec<IpNet>,
    /// Inner MTU.
    pub mtu: usize,
    /// Number of datapath workers.
    pub workers: usize,
    /// CPU per worker (`None` = unpinned).
    pub cpus: Vec<Option<usize>>,
    /// Firewall mark on outer packets (0 = none).
    pub fwmark: u32,
    /// Threads that answer handshake initiations.
    pub handshake_threads: usize,
    /// Peers, with labels for logs.
    pub peers: Vec<(Option<String>, PeerUpdate)>,
    /// How outer datagrams are carried (AF_XDP or io_uring).
    pub outer: OuterSettings,
    /// How long a worker waits for a batch to gather under load (0: never waits).
    pub batch_linger: Duration,
}

/// Checks an interface name the way the kernel will (1-15 characters, no '/' or spaces).
pub fn validate_interface_name(name: &str) -> Result<(), String> {
    datapath::kernel::tun::validate_name(name).map_err(|e| e.to_string())
}

impl InterfaceSettings {
    /// A bare interface, as `wireguard-go NAME` starts: no key, no address, any port; it is
    /// configured through the UAPI socket (by `wg`, `wg-quick`).
    pub fn bare(name: &str) -> Result<Self, ConfigError> {
        validate_interface_name(name)
            .map_err(|e| err("--interface", e, "pick a name such as xgate0"))?;
        Ok(Self {
            name: name.to_string(),
            private_key: None,
            key_to_create: None,
            listen_port: 0,
            addresses: Vec::new(),
            mtu: DEFAULT_MTU,
            workers: auto_workers(&None),
            cpus: (0..auto_workers(&None)).map(Some).collect(),
            fwmark: 0,
            handshake_threads: cpu_count(),
            peers: Vec::new(),
            outer: OuterSettings::default(),
            batch_linger: workers::batch_linger(None)?,
        })
    }

    /// Makes the private key the embedded defaults named (`key_to_create`), if there is one
    /// to make; says where it was written.
    pub fn create_pending_key(&mut self) -> Result<Option<PathBuf>, ConfigError> {
        let Some(path) = self.key_to_create.take() else {
            return Ok(None);
        };
        self.private_key = Some(create_state_key(&path)?);
        Ok(Some(path))
    }

    /// Validates `[interface]` and the `[[peer]]`s; relative key files are taken from `base`;
    /// `defaults` lets the key come from the state directory.
    pub fn from_sections(
        iface: InterfaceSection,
        peers: Vec<PeerSection>,
        base: &Path,
        defaults: bool,
    ) -> Result<Self, ConfigError> {
        let name = iface.name.unwrap_or_else(|| DEFAULT_INTERFACE.to_string());
        validate_interface_name(&name)
            .map_err(|e| err("interface.name", e, "use 1-15 letters, digits, '-' or '_'"))?;
        let (private_key, key_to_create) = interface_key(
            iface.private_key,
            iface.private_key_file,
            base,
            defaults.then_some(name.as_str()),
        )?;

        let addresses = match iface.address {
            Some(list) => parse_list::<IpNet>(
                "interface.address",
                &list,
                "an address with a prefix length",
                "write it like \"10.77.0.1/16\" or \"fd77::1/64\"",
            )?,
            None => DEFAULT_ADDRESSES
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
        };

        let mtu = iface.mtu.unwrap_or(DEFAULT_MTU);
        let min_mtu = if addresses.iter().any(|a| matches!(a, IpNet::V6(_))) {
            1280
        } else {
            576
        };
        if !(min_mtu..=MAX_MTU).contains(&mtu) {
            return Err(err(
                "interface.mtu",
                format!("{mtu} is out of range"),
                format!(
                    "use {min_mtu}..={MAX_MTU} (IPv6 needs at least 1280); 1420 suits most links"
                ),
            ));
        }

        let (workers, cpus, handshake_threads) =
            thread_layout(iface.workers, iface.cpus, iface.handshake_threads)?;

        let own_public = private_key.as_ref().map(PrivateKey::public_key);
        let mut seen_keys: HashMap<PublicKey, usize> = HashMap::new();
        let mut seen_prefixes: HashMap<IpNet, usize> = HashMap::new();
        let mut out = Vec::with_capacity(peers.len());
        for (i, p) in peers.into_iter().enumerate() {
            out.push(peer_update(
                i,
                p,
                base,
                own_public.as_ref(),
                &mut seen_keys,
                &mut seen_prefixes,
            )?);
        }

        let outer = outer_settings(iface.backend, iface.outer_interfaces, iface.xdp_mode)?;
        let outer = with_lan(outer, iface.inner, iface.lan_interfaces)?;
        let batch_linger = workers::batch_linger(iface.batch_linger_us)?;

        Ok(Self {
            name,
            private_key,
            key_to_create,
            listen_port: iface.listen_port.unwrap_or(DEFAULT_LISTEN_PORT),
            addresses,
            mtu,
            workers,
            cpus,
            fwmark: iface.fwmark.unwrap_or(0),
            handshake_threads,
            peers: out,
            outer,
            batch_linger,
        })
    }
}

/// The interface's key: given inline or in a file, or (for the embedded defaults of
/// interface `defaults_for`) the state directory's, read if it exists and otherwise named
/// for `create_pending_key` to make.
fn interface_key(
    private_key: Option<String>,
    private_key_file: Option<PathBuf>,
    base: &Path,
    defaults_for: Option<&str>,
) -> Result<(Option<PrivateKey>, Option<PathBuf>), ConfigError> {
    let mut key_to_create = None;
    let private_key = match (private_key, private_key_file) {
        (Some(_), Some(_)) => {
            return Err(err(
                "interface.private_key",
                "both private_key and private_key_file are set",
                "keep only one of them",
            ))
        }
        (Some(text), None) => Some(PrivateKey::from_base64(&text).map_err(|e| {
            err(
                "interface.private_key",
                format!("not a WireGuard key: {e}"),
                "generate one with `xgate genkey`",
            )
        })?),
        (None, Some(file)) => Some(read_private_key(
            &base.join(file),
            "interface.private_key_file",
        )?),
        (None, None) => match defaults_for {
            Some(name) => {
                let path = Path::new(STATE_DIR).join(format!("{name}.key"));
                if path.exists() {
                    Some(read_private_key(&path, "default private key")?)
                } else {
                    key_to_create = Some(path);
                    None
                }
            }
            None => {
                return Err(err(
                    "interface.private_key",
                    "no private key configured",
                    "set private_key = \"...\" (from `xgate genkey`) or private_key_file",
                ))
            }
        },
    };
    Ok((private_key, key_to_create))
}

/// Reads a private key file written by `xgate genkey` or `wg genkey`.
pub fn read_private_key(path: &Path, field: &str) -> Result<PrivateKey, ConfigError> {
    let text = fs::read_to_string(path).map_err(|e| {
        err(
            field,
            format!("cannot read {}: {e}", path.display()),
            format!(
                "create it with `xgate genkey > {0}; chmod 600 {0}`",
                path.display()
            ),
        )
    })?;
    PrivateKey::from_base64(&text).map_err(|e| {
        err(
            field,
            format!(
                "{} does not hold a WireGuard private key: {e}",
                path.display()
            ),
            format!(
                "replace it with the output of `xgate genkey > {}`",
                path.display()
            ),
        )
    })
}

/// Writes a fresh private key to `path` (mode 0600), creating the state directory (0700).
fn create_state_key(path: &Path) -> Result<PrivateKey, ConfigError> {
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        writeln!(f, "{}", key.to_base64())
    };
    write().map_err(|e| {
        err(
            "default private key",
            format!("cannot create {}: {e}", path.display()),
            "run as root, or give a config file with private_key",
        )
    })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::messages::MAX_WORKERS;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        interface: InterfaceSection,
        #[serde(default, rename = "peer")]
        peers: Vec<PeerSection>,
    }

    fn parse(text: &str) -> Result<InterfaceSettings, ConfigError> {
        let f: File = toml::from_str(text).map_err(|e| err("config", e.message(), "-"))?;
        InterfaceSettings::from_sections(f.interface, f.peers, Path::new("."), false)
    }

    fn key() -> String {
        PrivateKey::from_bytes([1; 32]).to_base64()
    }

    fn peer_key(n: u8) -> String {
        PrivateKey::from_bytes([n; 32]).public_key().to_base64()
    }

    #[test]
    fn workers_stop_where_a_receiver_index_runs_out_of_worker_bits() {
        let cpus = vec!["0"; MAX_WORKERS + 44].join(", ");
        let text = format!("[interface]\nprivate_key = \"{}\"\ncpus = [{cpus}]", key());
        let s = parse(&text).expect("a long CPU list is fine");
        assert_eq!(
            s.workers, MAX_WORKERS,
            "one worker per listed CPU, up to the cap"
        );
        let text = format!("[interface]\nprivate_key = \"{}\"\nworkers = 257", key());
        let e = parse(&text).expect_err("257 workers");
        assert!(e.problem.contains("receiver index"), "{e}");
        assert!(e.fix.contains("1 to 256"), "{e}");
        // What was written, not Rust's debug text (`Count(0)`).
        let text = format!("[interface]\nprivate_key = \"{}\"\nworkers = 0", key());
        let e = parse(&text).expect_err("0 workers");
        assert_eq!(e.problem, "0 is not a worker count", "{e}");
        let text = format!(
            "[interface]\nprivate_key = \"{}\"\nworkers = \"many\"",
            key()
        );
        let e = parse(&text).expect_err("many workers");
        assert_eq!(e.problem, "\"many\" is not a worker count", "{e}");
    }

    #[test]
    fn batch_linger_has_a_default_and_a_bound() {
        let text = format!("[interface]\nprivate_key = \"{}\"", key());
        let s = parse(&text).expect("valid");
        assert_eq!(
            s.batch_linger,
            Duration::from_micros(DEFAULT_BATCH_LINGER_US)
        );
        let text = format!(
            "[interface]\nprivate_key = \"{}\"\nbatch_linger_us = 0",
            key()
        );
        assert_eq!(parse(&text).expect("valid").batch_linger, Duration::ZERO);
        let text = format!(
            "[interface]\nprivate_key = \"{}\"\nbatch_linger_us = 5001",
            key()
        );
        let e = parse(&text).expect_err("too long");
        assert!(e.fix.contains("0..=5000"), "{e}");
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases = [
            ("[interface]\nprivate_key = \"abc\"", "interface.private_key"),
            ("[interface]\nprivate_key_file = \"/nonexistent/key\"", "interface.private_key_file"),
            ("[interface]\n", "interface.private_key"),
            (&format!("[interface]\nprivate_key = \"{}\"\nmtu = 100", key()), "interface.mtu"),
            (&format!("[interface]\nprivate_key = \"{}\"\naddress = [\"10.0.0.1\"]", key()), "interface.address[0]"),
            (&format!("[interface]\nprivate_key = \"{}\"\nworkers = \"many\"", key()), "interface.workers"),
            (&format!("[interface]\nprivate_key = \"{}\"\nworkers = 257", key()), "interface.workers"),
            (&format!("[interface]\nprivate_key = \"{}\"\ncpus = [4096]", key()), "interface.cpus"),
            (&format!("[interface]\nprivate_key = \"{}\"\nbatch_linger_us = 60000", key()), "interface.batch_linger_us"),
            (&format!("[interface]\nprivate_key = \"{}\"\n[[peer]]\nallowed_ips = []", key()), "peer[0].public_key"),
            (
                &format!(
                    "[interface]\nprivate_key = \"{}\"\n[[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.2/32\"]\n[[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.2/32\"]",
                    key(),
                    peer_key(2),
                    peer_key(3)
                ),
                "peer[1].allowed_ips[0]",
            ),
            (&format!("[interface]\nprivate_key = \"{}\"\nbogus = 1", key()), "config"),
        ];
        for (text, field) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.field, field, "for {text:?}: {e}");
            assert!(!e.fix.is_empty());
        }
    }

    #[test]
    fn peers_and_host_bits() {
        let text = format!(
            "[interface]\nprivate_key = \"{}\"\n[[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.9/24\"]\nendpoint = \"192.0.2.1:51820\"\npersistent_keepalive = 25",
            key(),
            peer_key(2)
        );
        let s = parse(&text).expect("valid");
        let (_, p) = &s.peers[0];
        assert_eq!(
            p.allowed_ips,
            vec!["10.77.0.0/24".parse::<IpNet>().expect("net")]
        );
        assert_eq!(p.endpoint, Some("192.0.2.1:51820".parse().expect("addr")));
        assert_eq!(p.persistent_keepalive, Some(25));
    }
}
