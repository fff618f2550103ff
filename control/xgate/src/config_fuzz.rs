//! A property campaign over the config parser (see `testbed::fuzz`): documents built from the
//! file's sections and keys, with values of every TOML type drawn from valid and mangled
//! forms (and raw text besides), must parse or be refused with a message, never a panic, and
//! a refused secret is never quoted back.

use std::path::Path;

use proptest::prelude::*;
use testbed::fuzz::campaign;
use toml::{Table, Value};

use crate::settings::Settings;

const SECTIONS: [(&str, &[&str]); 5] = [
    (
        "interface",
        &[
            "name",
            "private_key",
            "listen_port",
            "address",
            "mtu",
            "workers",
            "backend",
            "fwmark",
            "cpus",
            "handshake_threads",
            "outer_interfaces",
            "inner",
            "lan_interfaces",
            "bogus",
        ],
    ),
    ("registry", &["path", "bogus"]),
    (
        "api",
        &[
            "listen",
            "token_file",
            "endpoint",
            "dns",
            "persistent_keepalive",
            "client_allowed_ips",
            "metrics_need_token",
            "tls_cert",
            "tls_key",
            "insecure_plaintext",
            "bogus",
        ],
    ),
    ("pool", &["name", "ipv4", "ipv6", "hold_secs", "bogus"]),
    (
        "peer",
        &[
            "public_key",
            "preshared_key",
            "allowed_ips",
            "endpoint",
            "bogus",
        ],
    ),
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9+/]{43}=",
        "[0-9]{1,6}",
        "(10|192|fd77|::1|0\\.0\\.0\\.0)[0-9a-f.:]{0,12}(/[0-9]{1,3})?(:[0-9]{1,5})?",
        "(io-uring|af-xdp|auto|xgate0|full|split)",
        ".{0,20}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text().prop_map(Value::String),
        2 => any::<i64>().prop_map(|n| Value::Integer(n % 100_000)),
        1 => any::<bool>().prop_map(Value::Boolean),
        2 => proptest::collection::vec(text().prop_map(Value::String), 0..3).prop_map(Value::Array),
    ]
}

fn document() -> impl Strategy<Value = String> {
    let section = (
        0..SECTIONS.len(),
        proptest::collection::vec((0usize..16, value()), 0..6),
    );
    prop_oneof![
        9 => proptest::collection::vec(section, 0..5).prop_map(|sections| {
            let mut doc = Table::new();
            for (s, entries) in sections {
                let (name, keys) = SECTIONS[s];
                let mut table = Table::new();
                for (k, v) in entries {
                    table.insert(keys[k % keys.len()].to_string(), v);
                }
                if name == "pool" || name == "peer" {
                    doc.insert(name.into(), Value::Array(vec![Value::Table(table)]));
                } else {
                    doc.insert(name.into(), Value::Table(table));
                }
            }
            toml::to_string(&doc).unwrap_or_default()
        }),
        1 => ".{0,200}",
    ]
}

#[test]
fn fuzz_config_parser() {
    campaign("config", 60_000, document(), |doc| {
        if let Err(e) = Settings::parse(&doc, Path::new("/nonexistent/xgate")) {
            let message = e.to_string();
            prop_assert!(!message.is_empty());
            for line in doc.lines() {
                for secret in ["private_key = \"", "preshared_key = \""] {
                    let quoted = line.strip_prefix(secret).and_then(|v| v.strip_suffix('"'));
                    // (A value that appears elsewhere in the file may be quoted for that place.)
                    let unique = |v: &&str| v.len() >= 8 && doc.matches(*v).count() == 1;
                    if let Some(v) = quoted.filter(unique) {
                        prop_assert!(!message.contains(v), "{message} quotes {v}");
                    }
                }
            }
        }
        Ok(())
    });
}
