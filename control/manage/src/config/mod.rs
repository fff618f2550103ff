//! The management service's sections of the config file, validated: `[registry]` and
//! `[[pool]]` (where peers are kept, which addresses they get), `[api]` (where the HTTP API
//! listens, what client configurations contain) and `[[group]]` (per-group client policy).
//! The `xgate` binary parses the file once and hands these sections here.

mod api;
mod groups;
mod registry;

use std::path::Path;

use ipnet::IpNet;
use plane::config::ConfigError;

pub use api::{default_token_file, ApiSection, ApiSettings, TlsFiles, DEFAULT_API_LISTEN};
pub use groups::{GroupPolicy, GroupSection};
pub use registry::{PoolSection, RegistrySection, RegistrySettings, DEFAULT_HOLD_SECS};

/// The management sections as the file holds them.
#[derive(Debug, Default)]
pub struct ManageSections {
    /// `[registry]`.
    pub registry: Option<RegistrySection>,
    /// `[api]`.
    pub api: Option<ApiSection>,
    /// `[[pool]]`.
    pub pools: Vec<PoolSection>,
    /// `[[group]]`.
    pub groups: Vec<GroupSection>,
}

/// What the interface's settings tell the management sections.
pub struct InterfaceFacts<'a> {
    /// Interface name (default file names derive from it).
    pub name: &'a str,
    /// Its addresses (the default pool is their network).
    pub addresses: &'a [IpNet],
    /// Where relative paths are taken from.
    pub base: &'a Path,
    /// These are the embedded defaults (the registry is on without a section).
    pub defaults: bool,
}

/// The management service's settings, validated.
#[derive(Debug, Default)]
pub struct ManageSettings {
    /// The peer registry, if peers are kept in one.
    pub registry: Option<RegistrySettings>,
    /// The HTTP API (on with the registry).
    pub api: Option<ApiSettings>,
}

impl ManageSettings {
    /// Validates the sections; every error names its field and the fix.
    pub fn from_sections(
        sections: ManageSections,
        facts: &InterfaceFacts<'_>,
    ) -> Result<Self, ConfigError> {
        let ManageSections {
            registry,
            api,
            pools,
            groups,
        } = sections;
        let registry = registry::registry_settings(
            registry,
            pools,
            facts.addresses,
            facts.base,
            facts.name,
            facts.defaults,
        )?;
        let mut api = api::api_settings(api, registry.is_some(), facts.base, facts.name)?;
        let groups = groups::group_policies(groups, api.is_some())?;
        if let Some(api) = api.as_mut() {
            api.groups = groups;
        }
        Ok(Self { registry, api })
    }
}

#[cfg(test)]
mod testing {
    use std::path::Path;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        registry: Option<RegistrySection>,
        api: Option<ApiSection>,
        #[serde(default, rename = "pool")]
        pools: Vec<PoolSection>,
        #[serde(default, rename = "group")]
        groups: Vec<GroupSection>,
    }

    /// `text` as the management sections of /etc/xgate's config, beside a dual-stack
    /// interface named xgate0.
    pub(super) fn parse(text: &str) -> Result<ManageSettings, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let addresses: Vec<IpNet> = ["10.77.0.1/16", "fd77::1/64"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let facts = InterfaceFacts {
            name: "xgate0",
            addresses: &addresses,
            base: Path::new("/etc/xgate"),
            defaults: false,
        };
        let sections = ManageSections {
            registry: file.registry,
            api: file.api,
            pools: file.pools,
            groups: file.groups,
        };
        ManageSettings::from_sections(sections, &facts).map_err(|e| e.to_string())
    }
}
