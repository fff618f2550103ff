//! A strongSwan IKEv2 client in a namespace: Debian's `charon` with `kernel-libipsec` (there
//! is no ESP kernel module here), its own configuration files and vici socket in a scratch
//! directory and a private /run (its PID file's path is fixed), driven with `swanctl`.
//! Dropping it stops charon by PID.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::netns::Netns;
use crate::process::{wait_until, Daemon};

/// A certificate's files (PEM), as `xgate pki` writes them, and the CA the peer's is checked
/// against.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The name its files take in swanctl's directories.
    pub name: String,
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA certificate the server's certificate is checked against.
    pub ca: PathBuf,
}

/// Copies `cert`'s files where swanctl loads them from under `dir` (its SWANCTL_DIR):
/// x509/NAME.pem, private/NAME.key, x509ca/NAME-ca.pem.
pub fn place_credentials(dir: &Path, cert: &CertFiles) -> Result<()> {
    for (sub, from, to) in [
        ("x509", &cert.cert, format!("{}.pem", cert.name)),
        ("private", &cert.key, format!("{}.key", cert.name)),
        ("x509ca", &cert.ca, format!("{}-ca.pem", cert.name)),
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        std::fs::copy(from, d.join(&to))
            .with_context(|| format!("copying {} to {}", from.display(), d.display()))?;
    }
    Ok(())
}

/// What the client connects with.
#[derive(Debug, Clone)]
pub struct StrongswanConfig {
    /// The server's address.
    pub server: String,
    /// The server's identity, as it authenticates.
    pub server_id: String,
    /// The user's identity.
    pub identity: String,
    /// The user's pre-shared key (unused with `cert`).
    pub psk: String,
    /// Authenticate by this certificate (RFC 7427 signatures both ways) instead of the PSK.
    pub cert: Option<CertFiles>,
    /// Log in by EAP-MSCHAPv2 with this EAP identity and password instead (the server
    /// checked by its certificate, whose CA is this file).
    pub eap: Option<EapLogin>,
    /// IKE proposals (`aes256gcm16-prfsha256-x25519`).
    pub ike_proposals: String,
    /// ESP proposals (`aes256gcm16`, `chacha20poly1305`).
    pub esp_proposals: String,
    /// What the client routes into the tunnel (`10.77.0.0/16`).
    pub remote_ts: String,
    /// UDP encapsulation even without a NAT (kernel-libipsec needs it).
    pub encap: bool,
    /// Rekey the CHILD_SA this often (strongSwan's default: an hour).
    pub rekey_secs: Option<u32>,
    /// Rekey the IKE SA this often (strongSwan's default: four hours).
    pub ike_rekey_secs: Option<u32>,
    /// Check the server's liveness after this many quiet seconds, give up on it after quick
    /// retransmissions (about 5 s), and connect again, as long as it takes.
    pub dpd_secs: Option<u32>,
    /// Cut IKE messages larger than this into fragments (RFC 7383; strongSwan's default
    /// is 1280).
    pub fragment_size: Option<u32>,
    /// Speak MOBIKE (RFC 4555): move the SA when the client's address changes.
    pub mobike: bool,
}

/// A password login: EAP identity, password, and the CA the server's certificate leads to.
#[derive(Debug, Clone)]
pub struct EapLogin {
    /// The EAP identity (the user's name in xgate's registry).
    pub user: String,
    /// Its password.
    pub password: String,
    /// The server's CA certificate (PEM).
    pub ca: PathBuf,
}

impl StrongswanConfig {
    /// A PSK user `identity` connecting to `server` (`vpn.example.com`) with AES-256-GCM.
    pub fn psk(server: &str, identity: &str, psk: &str) -> Self {
        Self {
            server: server.into(),
            server_id: "vpn.example.com".into(),
            identity: identity.into(),
            psk: psk.into(),
            cert: None,
            eap: None,
            ike_proposals: "aes256gcm16-prfsha256-x25519".into(),
            esp_proposals: "aes256gcm16".into(),
            remote_ts: "10.77.0.0/16".into(),
            encap: true,
            rekey_secs: None,
            ike_rekey_secs: None,
            dpd_secs: None,
            fragment_size: None,
            mobike: false,
        }
    }

    /// A user logging in with a password: IKE identity `identity`, then `login` by EAP.
    pub fn eap(server: &str, identity: &str, login: EapLogin) -> Self {
        Self {
            eap: Some(login),
            ..Self::psk(server, identity, "")
        }
    }

    /// A user `identity` authenticating with the certificate `cert`.
    pub fn certificate(server: &str, identity: &str, cert: CertFiles) -> Self {
        Self {
            cert: Some(cert),
            ..Self::psk(server, identity, "")
        }
    }
}

/// A running charon.
pub struct Strongswan {
    charon: Daemon,
    dir: PathBuf,
    ns_name: String,
}

/// The plugins charon loads: crypto, libipsec, netlink, sockets, vici, `resolve` (which
/// asks for DNS servers and writes them to a file of the scratch directory, never the host's
/// /etc/resolv.conf), and EAP-MSCHAPv2 (MD4 and DES from OpenSSL's legacy provider).
const PLUGINS: &str =
    "random nonce openssl pem pkcs1 pkcs8 x509 pubkey sha1 sha2 hmac kdf gcm aes \
    kernel-libipsec kernel-netlink socket-default vici resolve eap-identity eap-mschapv2";

impl Strongswan {
    /// Writes the configuration into `dir` (made if missing) and starts charon in `ns`.
    pub fn start(ns: &Netns, dir: &Path, c: &StrongswanConfig) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("swanctl.conf"), swanctl_conf(c))?;
        if let Some(cert) = &c.cert {
            place_credentials(dir, cert)?;
        }
        if let Some(login) = &c.eap {
            let cas = dir.join("x509ca");
            std::fs::create_dir_all(&cas)?;
            std::fs::copy(&login.ca, cas.join("ca.pem"))
                .with_context(|| format!("copying {}", login.ca.display()))?;
        }
        let how = Launch {
            quick: c.dpd_secs.is_some(),
            fragment_size: c.fragment_size,
            verbose: true,
        };
        Self::launch(ns, dir, how)
    }

    /// Starts charon in `ns` with a `swanctl.conf` given whole (one xgate exported, say),
    /// whose connection's child is named `xgate` (certificates it names placed beforehand
    /// with `place_credentials`).
    pub fn start_with_swanctl(ns: &Netns, dir: &Path, swanctl: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("swanctl.conf"), swanctl)?;
        Self::launch(ns, dir, Launch::default())
    }

    /// Starts charon as a server, as deployed: logging the basics (level 1), unflushed, so
    /// the log costs what a production one does when its CPU is measured.
    pub(crate) fn start_server(ns: &Netns, dir: &Path, swanctl: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("swanctl.conf"), swanctl)?;
        let how = Launch {
            verbose: false,
            ..Launch::default()
        };
        Self::launch(ns, dir, how)
    }

    /// Starts charon as `how` says.
    fn launch(ns: &Netns, dir: &Path, how: Launch) -> Result<Self> {
        std::fs::write(dir.join("strongswan.conf"), strongswan_conf(dir, &how))?;
        // A socket an earlier charon left in this directory would read as this one ready
        // (a second `make demo` failed so): gone before the start.
        for stale in ["charon.vici", "charon.pid", "charon.log"] {
            match std::fs::remove_file(dir.join(stale)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {stale} in {}", dir.display()))
                }
                _ => {}
            }
        }
        let script = format!(
            "mount -t tmpfs tmpfs /run && STRONGSWAN_CONF={d}/strongswan.conf exec \
             /usr/lib/ipsec/charon",
            d = dir.display()
        );
        let mut cmd = ns.command("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        let charon = Daemon::spawn(cmd, &dir.join("charon.out"))?;
        let me = Self {
            charon,
            dir: dir.to_path_buf(),
            ns_name: ns.name().to_string(),
        };
        if !wait_until(Duration::from_secs(10), || dir.join("charon.vici").exists()) {
            bail!("charon did not start: {}", me.charon.log_text());
        }
        let conf = dir.join("swanctl.conf");
        let loaded = me.swanctl(&["--load-all", "--file", &conf.to_string_lossy()])?;
        if !loaded.status.success() {
            bail!(
                "swanctl --load-all: {}",
                String::from_utf8_lossy(&loaded.stderr)
            );
        }
        Ok(me)
    }

    /// Runs `swanctl` against this charon.
    pub fn swanctl(&self, args: &[&str]) -> Result<Output> {
        let vici = format!("unix://{}/charon.vici", self.dir.display());
        // The namespace is the caller's: its name is enough to run a command in it.
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns_name, "swanctl"])
            // Credentials load from here: x509/, private/, x509ca/.
            .env("SWANCTL_DIR", &self.dir)
            .args(args)
            .args(["--uri", &vici])
            .output()
            .context("running swanctl")
    }

    /// Brings the connection up (at most `timeout_secs`); true when strongSwan says so.
    pub fn initiate(&self, timeout_secs: u32) -> Result<(bool, String)> {
        let t = timeout_secs.to_string();
        let out = self.swanctl(&["--initiate", "--child", "xgate", "--timeout", &t])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ok = out.status.success() && text.contains("initiate completed successfully");
        Ok((ok, text))
    }

    /// charon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.charon.pid()
    }

    /// `swanctl --list-sas`.
    pub fn list_sas(&self) -> Result<String> {
        let out = self.swanctl(&["--list-sas"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The DNS servers charon was given (its `resolve` plugin's file).
    pub fn resolv_conf(&self) -> String {
        std::fs::read_to_string(self.dir.join("resolv.conf")).unwrap_or_default()
    }

    /// charon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }

    /// Kills charon outright (a client that vanishes without a word).
    pub fn kill(&mut self) {
        self.charon.kill_hard();
    }
}

impl Drop for Strongswan {
    fn drop(&mut self) {
        self.charon
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(5));
    }
}

/// How charon is started.
struct Launch {
    /// It gives up on an unanswered request after about 5 s (1 s, 1.5 s, 2.25 s).
    quick: bool,
    /// It cuts larger IKE messages to this size.
    fragment_size: Option<u32>,
    /// Logs IKE and configuration at level 2, each line flushed (tests read the log).
    verbose: bool,
}

impl Default for Launch {
    fn default() -> Self {
        Self {
            quick: false,
            fragment_size: None,
            verbose: true,
        }
    }
}

/// strongswan.conf: the plugins, the vici socket and the log in `dir`, as `how` says.
fn strongswan_conf(dir: &Path, how: &Launch) -> String {
    let d = dir.display();
    let retransmit = if how.quick {
        "retransmit_tries = 2\n  retransmit_timeout = 1\n  retransmit_base = 1.5\n  "
    } else {
        "retransmit_tries = 3\n  retransmit_timeout = 2\n  "
    };
    let fragments = how
        .fragment_size
        .map(|n| format!("fragment_size = {n}\n  "))
        .unwrap_or_default();
    let log = if how.verbose {
        "flush_line = yes\n      default = 1\n      ike = 2\n      cfg = 2"
    } else {
        "default = 1"
    };
    format!(
        "charon {{\n  load_modular = no\n  load = {PLUGINS}\n  install_routes = yes\n  \
         {retransmit}{fragments}\
         plugins {{\n    vici {{\n      socket = unix://{d}/charon.vici\n    }}\n    \
         resolve {{\n      file = {d}/resolv.conf\n      \
         resolvconf {{\n        path = {d}/no-resolvconf\n      }}\n    }}\n  }}\n  \
         filelog {{\n    log {{\n      path = {d}/charon.log\n      {log}\n    }}\n  }}\n}}\n"
    )
}

/// swanctl.conf for `c`.
fn swanctl_conf(c: &StrongswanConfig) -> String {
    let encap = if c.encap { "yes" } else { "no" };
    let mobike = if c.mobike { "yes" } else { "no" };
    let rekey = c
        .rekey_secs
        // The hard lifetime well after the rekey, and no random shortening, so the rekey
        // comes first and on time.
        .map(|n| {
            format!(
                "        rekey_time = {n}s\n        life_time = {}s\n        rand_time = 0s\n",
                n + 10
            )
        })
        .unwrap_or_default();
    let (dpd, dpd_action) = match c.dpd_secs {
        Some(n) => (
            format!("    dpd_delay = {n}s\n    keyingtries = 0\n"),
            "        dpd_action = restart\n",
        ),
        None => (String::new(), ""),
    };
    let ike_rekey = c
        .ike_rekey_secs
        .map(|n| format!("    rekey_time = {n}s\n    over_time = 20s\n    rand_time = 0s\n"))
        .unwrap_or_default();
    let (local_auth, remote_auth, secrets) = match (&c.cert, &c.eap) {
        (None, Some(login)) => (
            format!("eap-mschapv2\n      eap_id = \"{}\"", login.user),
            "pubkey",
            format!(
                "secrets {{\n  eap-user {{\n    id = \"{}\"\n    secret = \"{}\"\n  }}\n}}\n",
                login.user, login.password
            ),
        ),
        (None, None) => (
            "psk".to_string(),
            "psk",
            format!(
                "secrets {{\n  ike-user {{\n    id-1 = {id}\n    id-2 = {server_id}\n    \
                 secret = \"{psk}\"\n  }}\n}}\n",
                id = c.identity,
                server_id = c.server_id,
                psk = c.psk,
            ),
        ),
        (Some(cert), _) => (
            format!("pubkey\n      certs = {}.pem", cert.name),
            "pubkey",
            String::new(),
        ),
    };
    format!(
        "connections {{\n  xgate {{\n    version = 2\n    remote_addrs = {server}\n    \
         vips = 0.0.0.0, ::\n    encap = {encap}\n    mobike = {mobike}\n{ike_rekey}{dpd}    \
         proposals = {ike}\n    \
         local {{\n      auth = {local_auth}\n      id = {id}\n    }}\n    \
         remote {{\n      auth = {remote_auth}\n      id = {server_id}\n    }}\n    \
         children {{\n      xgate {{\n        remote_ts = {ts}\n{rekey}{dpd_action}        \
         esp_proposals = {esp}\n      }}\n    }}\n  }}\n}}\n{secrets}",
        server = c.server,
        ike = c.ike_proposals,
        id = c.identity,
        server_id = c.server_id,
        ts = c.remote_ts,
        esp = c.esp_proposals,
    )
}
