//! How the outer (UDP) side is reached: the `backend`, `outer_interfaces` and `xdp_mode`
//! fields of `[interface]`.

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

/// The outer side's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuterSettings {
    /// The backend asked for.
    pub backend: Backend,
    /// Interfaces AF_XDP serves (empty: every up, non-loopback interface with an address).
    pub interfaces: Vec<String>,
    /// The XDP attach mode.
    pub xdp_mode: XdpModeSetting,
}

impl Default for OuterSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            interfaces: Vec::new(),
            xdp_mode: XdpModeSetting::Auto,
        }
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
    })
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
}
