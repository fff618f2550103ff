//! keepalived (VRRP, from Debian) in a test's namespace: one instance per node, moving a
//! service address between nodes. Each instance has its own configuration and PID files in
//! the test's directory, runs in the foreground and is stopped by PID when dropped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::process::{find_program, Daemon};

/// One node's VRRP instance.
pub struct VrrpNode<'a> {
    /// The node's name (files and the router id).
    pub name: &'a str,
    /// Interface the adverts go over (it needs an address of its own).
    pub interface: &'a str,
    /// The service address with its prefix, e.g. "10.99.0.100/24".
    pub address: &'a str,
    /// Interface the service address is put on.
    pub address_dev: &'a str,
    /// Higher wins the address.
    pub priority: u8,
    /// Run when this node becomes master (a script path), if any.
    pub notify_master: Option<&'a Path>,
}

/// A running keepalived.
pub struct Keepalived {
    daemon: Daemon,
    vrrp_pid: PathBuf,
    /// Its configuration file.
    pub config: PathBuf,
}

impl Keepalived {
    /// Starts keepalived for `node` in `ns`, its files in `dir`. Adverts every 100 ms
    /// (VRRPv3), so a dead master is replaced within about half a second. (With 500 ms the
    /// clients passed traffic only 5 s after the move, when keepalived's second burst of
    /// gratuitous ARPs came: not understood yet.)
    pub fn start(ns: &Netns, dir: &Path, node: &VrrpNode<'_>) -> Result<Self> {
        let program = find_program("keepalived")
            .context("keepalived is not installed: apt-get install keepalived")?;
        let file = |ext: &str| dir.join(format!("keepalived-{}.{ext}", node.name));
        let notify = node
            .notify_master
            .map(|p| format!("    notify_master \"{}\"\n", p.display()))
            .unwrap_or_default();
        let text = format!(
            "global_defs {{\n    router_id {name}\n    vrrp_version 3\n    \
             script_user root\n}}\n\
             vrrp_instance xgate {{\n    state BACKUP\n    interface {interface}\n    \
             virtual_router_id 51\n    priority {priority}\n    advert_int 0.1\n    \
             virtual_ipaddress {{\n        {address} dev {dev}\n    }}\n{notify}}}\n",
            name = node.name,
            interface = node.interface,
            priority = node.priority,
            address = node.address,
            dev = node.address_dev,
        );
        let config = file("conf");
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut cmd = ns.command(program.to_str().context("keepalived's path")?);
        cmd.args([
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "--vrrp",
            "-f",
        ])
        .arg(&config)
        .arg("-p")
        .arg(file("pid"))
        .arg("-r")
        .arg(file("vrrp.pid"))
        .arg("-c")
        .arg(file("checkers.pid"));
        let daemon = Daemon::spawn(cmd, &file("log"))?;
        Ok(Self {
            daemon,
            config,
            vrrp_pid: file("vrrp.pid"),
        })
    }

    /// Kills it at once (SIGKILL), as the node's death would; the address stays where it
    /// was on this node's interface until the node's namespace goes.
    pub fn kill(&mut self) {
        // The VRRP process is a child of the one we started: it goes too.
        let child = std::fs::read_to_string(&self.vrrp_pid)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if let Some(pid) = child {
            // SAFETY: signals a process keepalived (our child) named in its PID file.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.daemon.kill_hard();
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.daemon.log_text()
    }
}
