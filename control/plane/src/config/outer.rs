//! How the outer (UDP) side and the LAN side are reached: the `backend`,
//! `outer_interfaces`, `xdp_mode`, `inner` and `lan_interfaces` fields of `[interface]`.

use super::{err, ConfigError};

/// Which backend carries outer datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// AF_XDP where it can be set up, else io_uring (saying why in one log line).
    Auto,
    /// AF_XDP or nothing: a start that cannot set it up fails.
    AfXdp,
    /// io_uring UDP sockets only.
    IoUring,
}

impl Backend {
    /// The name the config file and status use.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::AfXdp => "af-xdp",
            Backend::IoUring => "io-uring",
        }
    }
}

/// Which XDP attach mode to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpModeSetting {
    /// Native (in the driver) where the driver has it, else generic.
    Auto,
    /// Generic only (for comparison; every driver has it).
    Generic,
}

/// How decrypted packets reach the LAN, and the LAN's packets the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner {
    /// Through the TUN: the kernel forwards between it and the LAN.
    Tun,
    /// AF_XDP sockets on the LAN interfaces, the TUN for what the kernel must handle; a
    /// start that cannot set them up fails.
    AfXdp,
    /// AF_XDP on the LAN interfaces where it can be set up, else the TUN (one log line).
    Auto,
}

impl Inner {
    /// The name the config file and status use.
    pub fn name(self) -> &'static str {
        match self {
            Inner::Tun => "tun",
            Inner::AfXdp => "af-xdp",
            Inner::Auto => "auto",
        }
    }
}

/// The outer and LAN sides' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuterSettings {
    /// The backend asked for.
    pub backend: Backend,
    /// Interfaces AF_XDP serves (empty: every up, non-loopback interface with an address).
    pub interfaces: Vec<String>,
    /// The XDP attach mode.
    pub xdp_mode: XdpModeSetting,
    /// The LAN side asked for.
    pub inner: Inner,
    /// The LAN interfaces (`inner` other than "tun" only).
    pub lan_interfaces: Vec<String>,
}

impl Default for OuterSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            interfaces: Vec::new(),
            xdp_mode: XdpModeSetting::Auto,
            inner: Inner::Tun,
            lan_interfaces: Vec::new(),
        }
    }
}

impl OuterSettings {
    /// The LAN side is to run on AF_XDP, if it can ("af-xdp" or "auto" with interfaces).
    pub fn lan_wanted(&self) -> bool {
        self.inner != Inner::Tun && !self.lan_interfaces.is_empty()
    }
}

/// Validates the three fields.
pub(super) fn outer_settings(
    backend: Option<String>,
    interfaces: Option<Vec<String>>,
    xdp_mode: Option<String>,
) -> Result<OuterSettings, ConfigError> {
    let backend =
        match backend.as_deref() {
            None | Some("auto") => Backend::Auto,
            Some("af-xdp") => Backend::AfXdp,
            Some("io-uring") => Backend::IoUring,
            Some(other) => return Err(err(
                "interface.backend",
                format!("{other:?} is not a backend"),
                "use \"auto\" (AF_XDP where possible, else io_uring), \"af-xdp\" or \"io-uring\"",
            )),
        };
    let xdp_mode = match xdp_mode.as_deref() {
        None | Some("auto") => XdpModeSetting::Auto,
        Some("generic") => XdpModeSetting::Generic,
        Some(other) => {
            return Err(err(
                "interface.xdp_mode",
                format!("{other:?} is not an XDP mode"),
                "use \"auto\" (native where the driver has it, else generic) or \"generic\"",
            ))
        }
    };
    let interfaces = interfaces.unwrap_or_default();
    for name in &interfaces {
        datapath::kernel::tun::validate_name(name).map_err(|e| {
            err(
                "interface.outer_interfaces",
                format!("{name:?}: {e}"),
                "list interface names as `ip link` shows them, e.g. [\"eth0\"]",
            )
        })?;
    }
    if !interfaces.is_empty() && backend == Backend::IoUring {
        return Err(err(
            "interface.outer_interfaces",
            "set while backend = \"io-uring\", which uses no interface of its own",
            "remove outer_interfaces, or set backend = \"auto\" or \"af-xdp\"",
        ));
    }
    Ok(OuterSettings {
        backend,
        interfaces,
        xdp_mode,
        ..OuterSettings::default()
    })
}

/// Adds the LAN side (`inner`, `lan_interfaces`) to `outer`. Without `inner`, LAN
/// interfaces mean "auto" and none mean "tun".
pub(super) fn with_lan(
    mut outer: OuterSettings,
    inner: Option<String>,
    lan: Option<Vec<String>>,
) -> Result<OuterSettings, ConfigError> {
    let lan = lan.unwrap_or_default();
    let inner = match inner.as_deref() {
        None if lan.is_empty() => Inner::Tun,
        None | Some("auto") => Inner::Auto,
        Some("tun") => Inner::Tun,
        Some("af-xdp") => Inner::AfXdp,
        Some(other) => {
            return Err(err(
                "interface.inner",
                format!("{other:?} is not a way to the LAN"),
                "use \"tun\" (the kernel forwards), \"af-xdp\" (AF_XDP sockets on                  lan_interfaces) or \"auto\" (AF_XDP where possible, else the TUN)",
            ))
        }
    };
    for name in &lan {
        datapath::kernel::tun::validate_name(name).map_err(|e| {
            err(
                "interface.lan_interfaces",
                format!("{name:?}: {e}"),
                "list interface names as `ip link` shows them, e.g. [\"eth1\"]",
            )
        })?;
        if outer.interfaces.contains(name) {
            return Err(err(
                "interface.lan_interfaces",
                format!("{name:?} is in outer_interfaces too"),
                "an interface is either the outer side or the LAN: name it in one list only",
            ));
        }
    }
    if inner == Inner::AfXdp && lan.is_empty() {
        return Err(err(
            "interface.lan_interfaces",
            "missing while inner = \"af-xdp\"",
            "name the interfaces towards the LAN, e.g. lan_interfaces = [\"eth1\"], or set              inner = \"tun\"",
        ));
    }
    if inner == Inner::Tun && !lan.is_empty() {
        return Err(err(
            "interface.lan_interfaces",
            "set while inner = \"tun\", which uses no LAN interface of its own",
            "remove lan_interfaces, or set inner = \"af-xdp\" or \"auto\"",
        ));
    }
    if !lan.is_empty() && outer.backend == Backend::IoUring {
        return Err(err(
            "interface.lan_interfaces",
            "set while backend = \"io-uring\": the LAN side runs on AF_XDP",
            "set backend = \"auto\" or \"af-xdp\", or remove lan_interfaces",
        ));
    }
    outer.inner = inner;
    outer.lan_interfaces = lan;
    Ok(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_names() {
        let s = outer_settings(None, None, None).expect("defaults");
        assert_eq!(s, OuterSettings::default());
        let s =
            outer_settings(Some("af-xdp".into()), Some(vec!["eth0".into()]), None).expect("af-xdp");
        assert_eq!(s.backend, Backend::AfXdp);
        assert_eq!(s.interfaces, vec!["eth0".to_string()]);
        let s = outer_settings(Some("io-uring".into()), None, Some("generic".into()))
            .expect("io-uring");
        assert_eq!(
            (s.backend, s.xdp_mode),
            (Backend::IoUring, XdpModeSetting::Generic)
        );
    }

    #[test]
    fn bad_values_name_the_field_and_the_fix() {
        let e = outer_settings(Some("dpdk".into()), None, None).expect_err("bad backend");
        assert_eq!(e.field, "interface.backend");
        assert!(e.fix.contains("af-xdp"), "{e}");
        let e = outer_settings(None, None, Some("hw".into())).expect_err("bad mode");
        assert_eq!(e.field, "interface.xdp_mode");
        let e = outer_settings(None, Some(vec!["a very long interface name".into()]), None)
            .expect_err("bad name");
        assert_eq!(e.field, "interface.outer_interfaces");
        let e = outer_settings(Some("io-uring".into()), Some(vec!["eth0".into()]), None)
            .expect_err("contradiction");
        assert!(e.problem.contains("io-uring"), "{e}");
    }

    fn lan(
        outer: Option<Vec<String>>,
        inner: Option<&str>,
        lan: &[&str],
    ) -> Result<OuterSettings, ConfigError> {
        let names = (!lan.is_empty()).then(|| lan.iter().map(|s| s.to_string()).collect());
        with_lan(
            outer_settings(None, outer, None).expect("outer"),
            inner.map(str::to_string),
            names,
        )
    }

    #[test]
    fn the_lan_side_defaults_to_the_tun_and_to_auto_with_interfaces() {
        let s = lan(None, None, &[]).expect("no LAN");
        assert_eq!((s.inner, s.lan_wanted()), (Inner::Tun, false));
        let s = lan(None, None, &["eth1"]).expect("LAN named");
        assert_eq!((s.inner, s.lan_wanted()), (Inner::Auto, true));
        let s = lan(Some(vec!["eth0".into()]), Some("af-xdp"), &["eth1"]).expect("af-xdp");
        assert_eq!(s.inner, Inner::AfXdp);
        assert_eq!(s.lan_interfaces, vec!["eth1".to_string()]);
        assert!(!lan(None, Some("auto"), &[]).expect("auto").lan_wanted());
    }

    #[test]
    fn lan_contradictions_name_the_field_and_the_fix() {
        let e = lan(None, Some("dpdk"), &["eth1"]).expect_err("bad inner");
        assert_eq!(e.field, "interface.inner");
        let e = lan(None, Some("af-xdp"), &[]).expect_err("no LAN interface");
        assert_eq!(e.field, "interface.lan_interfaces");
        assert!(e.fix.contains("lan_interfaces = ["), "{e}");
        let e = lan(None, Some("tun"), &["eth1"]).expect_err("tun with a LAN");
        assert!(e.problem.contains("tun"), "{e}");
        let e = lan(Some(vec!["eth0".into()]), None, &["eth0"]).expect_err("both sides");
        assert!(e.problem.contains("outer_interfaces"), "{e}");
        let uring = outer_settings(Some("io-uring".into()), None, None).expect("io-uring");
        let e = with_lan(uring, None, Some(vec!["eth1".into()])).expect_err("io-uring");
        assert!(e.problem.contains("io-uring"), "{e}");
    }
}
