//! Scenarios: who arrives when, what each user sends once connected, and the bounds every
//! run keeps (users, rate, duration). Read from TOML (a file, or one of the built-in ones).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most users one run may simulate (one source address each from a /14, and memory: each
/// prepared attempt holds a tunnel).
pub const MAX_USERS: u32 = 150_000;
/// Longest arrival window.
pub const MAX_SECONDS: f64 = 600.0;
/// Most inner packets per second all users together may send.
pub const MAX_TOTAL_PPS: f64 = 100_000.0;
/// Most forged plus replayed initiations per second a mixed flood may send.
pub const MAX_FLOOD_RATE: u32 = 50_000;

/// How users arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The arrival rate rises linearly from zero over `seconds` (a morning log-in).
    #[default]
    Ramp,
    /// Arrivals at a constant rate from the first second (the rate steps from 0 to full).
    Step,
    /// Random (Poisson) arrivals at a mean rate of users / seconds.
    Poisson,
    /// A step, then after `hold_seconds` every user drops and comes back within
    /// `storm_seconds` (a concentrator restart).
    Reconnect,
    /// Poisson arrivals; each user leaves `hold_seconds` after it arrived.
    Churn,
    /// A step of users while forged and replayed initiations flood the server.
    MixedFlood,
}

/// What a connected user sends (ICMP echo requests to the server's tunnel address; the
/// replies come back through the tunnel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// One echo to prove the tunnel, then persistent keepalives only.
    #[default]
    Keepalive,
    /// Small packets, a few per second (a terminal, a chat).
    Interactive,
    /// Full-size packets at a steady rate (a download).
    Bulk,
}

/// Traffic once connected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traffic {
    /// The profile.
    pub profile: Profile,
    /// Seconds each user sends for after connecting (then stays connected, idle).
    pub seconds: f64,
    /// Inner packet size, bytes (IPv4 + ICMP + payload); 0 = the profile's default.
    pub packet_bytes: usize,
    /// Packets per second per user; 0 = the profile's default.
    pub packets_per_second: f64,
    /// Persistent keepalive interval, seconds (0 = off).
    pub persistent_keepalive: u16,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            profile: Profile::Keepalive,
            seconds: 5.0,
            packet_bytes: 0,
            packets_per_second: 0.0,
            persistent_keepalive: 25,
        }
    }
}

impl Traffic {
    /// Inner packet size in effect.
    pub fn packet_bytes(&self) -> usize {
        match (self.packet_bytes, self.profile) {
            (0, Profile::Bulk) => 1400,
            (0, _) => 128,
            (n, _) => n,
        }
    }

    /// Packets per second per user in effect (after the first echo).
    pub fn packets_per_second(&self) -> f64 {
        match (self.packets_per_second, self.profile) {
            (_, Profile::Keepalive) => 0.0,
            (r, _) if r > 0.0 => r,
            (_, Profile::Interactive) => 2.0,
            (_, Profile::Bulk) => 50.0,
        }
    }
}

/// Invalid initiations sent beside the users (mixed-flood).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Flood {
    /// Forged initiations per second (valid MAC1, random ephemeral and ciphertext).
    pub forged_per_second: u32,
    /// Replays of captured real initiations per second.
    pub replayed_per_second: u32,
    /// Source addresses the flood comes from.
    pub sources: u32,
}

impl Default for Flood {
    fn default() -> Self {
        Self {
            forged_per_second: 8_000,
            replayed_per_second: 2_000,
            sources: 64,
        }
    }
}

/// Two xgate nodes on one PostgreSQL registry behind a service address that keepalived
/// moves; node A dies mid-run and every user's time to pass traffic again is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Failover {
    /// Seconds after the load starts (offset zero of the arrivals) at which node A dies
    /// (SIGKILL, its links down).
    pub at_seconds: f64,
    /// The survivor starts handshakes with A's users (xgate's default); false shows what a
    /// standard client does on its own.
    pub take_over: bool,
    /// Real clients connected beside the simulated users ("wireguard-go", "boringtun-cli").
    pub clients: Vec<String>,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            at_seconds: 5.0,
            take_over: true,
            clients: Vec::new(),
        }
    }
}

/// The real clients a failover scenario can connect beside the simulated users.
pub const FAILOVER_CLIENTS: [&str; 2] = ["wireguard-go", "boringtun-cli"];

/// The most IKEv2 users one run simulates (each holds a socket and a source address after
/// the WireGuard users' in 10.176.0.0/14).
pub const MAX_IKE_USERS: u32 = 5_000;

/// One scenario, bounded in users, rate and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Name (used in file names).
    pub name: String,
    /// How users arrive.
    pub kind: Kind,
    /// Users, each with its own key pair and source address.
    pub users: u32,
    /// Arrival window, seconds.
    pub seconds: f64,
    /// Reconnect: seconds connected before everyone drops; churn: seconds each user stays.
    pub hold_seconds: f64,
    /// Reconnect: window in which everyone comes back, seconds.
    pub storm_seconds: f64,
    /// How long after the last arrival a user may still be connecting (retries included).
    pub patience_seconds: f64,
    /// After the run, how long everyone stays connected and silent before the server's
    /// memory per idle session is read (xgate compacts sessions idle for 10 s).
    pub idle_seconds: f64,
    /// Traffic once connected.
    pub traffic: Traffic,
    /// Mixed-flood only.
    pub flood: Option<Flood>,
    /// `/metrics` scrapes per second during the run (xgate only; 0 = none).
    pub scrapes_per_second: u32,
    /// Seed for Poisson arrivals (the same seed gives the same schedule).
    pub seed: u64,
    /// IKEv2 users arriving beside the WireGuard ones over the same window (xgate only).
    pub ike_users: u32,
    /// How they log in: "eap" (EAP-MSCHAPv2, the OS clients' way), "cert" (ECDSA P-256
    /// certificates, RFC 7427 signatures) or "psk"; several, comma-separated, share the users
    /// out in turn ("eap,cert").
    pub ike_auth: String,
    /// Servers that get the same IKEv2 users after the run, one method after another, beside
    /// a fresh xgate given them the same way ("strongswan": charon with kernel-libipsec).
    pub ike_peers: Vec<String>,
    /// Two nodes and a failover (xgate only; see [`Failover`]).
    pub failover: Option<Failover>,
}

/// The ways an IKEv2 user can log in, as `ike_auth` names them.
pub const IKE_METHODS: [&str; 3] = ["eap", "cert", "psk"];
/// The servers `ike_peers` can name.
pub const IKE_PEERS: [&str; 1] = ["strongswan"];

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "surge".into(),
            kind: Kind::Ramp,
            users: 10_000,
            seconds: 20.0,
            hold_seconds: 10.0,
            storm_seconds: 5.0,
            patience_seconds: 12.0,
            idle_seconds: 15.0,
            traffic: Traffic::default(),
            flood: None,
            scrapes_per_second: 0,
            seed: 1,
            ike_users: 0,
            ike_auth: "eap".into(),
            ike_peers: Vec::new(),
            failover: None,
        }
    }
}

/// A scenario that cannot run, with what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("scenario {name:?}: {field}: {problem}")]
pub struct ScenarioError {
    /// Scenario name.
    pub name: String,
    /// The offending field.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

fn has_repeats(items: &[&str]) -> bool {
    items
        .iter()
        .enumerate()
        .any(|(i, a)| items[..i].contains(a))
}

/// The most `/metrics` scrapes per second a scenario may ask for.
pub const MAX_SCRAPE_RATE: u32 = 1000;

/// The built-in scenarios, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("surge", include_str!("../scenarios/surge.toml")),
    (
        "surge-scraped",
        include_str!("../scenarios/surge-scraped.toml"),
    ),
    ("ramp-50k", include_str!("../scenarios/ramp-50k.toml")),
    ("ramp-100k", include_str!("../scenarios/ramp-100k.toml")),
    ("step-10k", include_str!("../scenarios/step-10k.toml")),
    ("poisson", include_str!("../scenarios/poisson.toml")),
    ("reconnect", include_str!("../scenarios/reconnect.toml")),
    (
        "reconnect-100k",
        include_str!("../scenarios/reconnect-100k.toml"),
    ),
    ("churn", include_str!("../scenarios/churn.toml")),
    ("mixed-flood", include_str!("../scenarios/mixed-flood.toml")),
    ("small", include_str!("../scenarios/small.toml")),
    ("small-mixed", include_str!("../scenarios/small-mixed.toml")),
    ("surge-mixed", include_str!("../scenarios/surge-mixed.toml")),
    ("demo", include_str!("../scenarios/demo.toml")),
    ("failover", include_str!("../scenarios/failover.toml")),
    (
        "failover-no-take-over",
        include_str!("../scenarios/failover-no-take-over.toml"),
    ),
    (
        "small-failover",
        include_str!("../scenarios/small-failover.toml"),
    ),
];

impl Scenario {
    /// Parses and checks a scenario.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let s: Scenario = toml::from_str(text)?;
        s.check()?;
        Ok(s)
    }

    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> anyhow::Result<Self> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_toml(text);
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|e| {
            let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            anyhow::anyhow!(
                "{name_or_path:?} is neither a built-in scenario ({}) nor a readable file: {e}",
                names.join(", ")
            )
        })?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("{name_or_path}: {e}"))
    }

    fn err(&self, field: &'static str, problem: String) -> ScenarioError {
        ScenarioError {
            name: self.name.clone(),
            field,
            problem,
        }
    }

    /// The IKEv2 login methods, in the order users are given them (the known ones).
    pub fn ike_methods(&self) -> Vec<&'static str> {
        self.ike_method_names()
            .iter()
            .filter_map(|n| IKE_METHODS.iter().find(|m| *m == n).copied())
            .collect()
    }

    fn ike_method_names(&self) -> Vec<&str> {
        self.ike_auth
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect()
    }

    /// Checks every bound; the error says which field and what range it must be in.
    pub fn check(&self) -> Result<(), ScenarioError> {
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 40
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return Err(self.err(
                "name",
                "use 1-40 letters, digits, '-' or '_' (it names the result file)".into(),
            ));
        }
        if !(1..=MAX_USERS).contains(&self.users) {
            return Err(self.err("users", format!("{} is not in 1..={MAX_USERS}", self.users)));
        }
        self.check_ike()?;
        let seconds_ok = |v: f64| v.is_finite() && (0.0..=MAX_SECONDS).contains(&v);
        for (field, v) in [
            ("seconds", self.seconds),
            ("hold_seconds", self.hold_seconds),
            ("storm_seconds", self.storm_seconds),
            ("patience_seconds", self.patience_seconds),
            ("idle_seconds", self.idle_seconds),
            ("traffic.seconds", self.traffic.seconds),
        ] {
            if !seconds_ok(v) {
                return Err(self.err(field, format!("{v} is not in 0..={MAX_SECONDS} s")));
            }
        }
        if matches!(self.kind, Kind::Poisson | Kind::Churn | Kind::Ramp) && self.seconds <= 0.0 {
            return Err(self.err(
                "seconds",
                "this kind spreads arrivals over a window: give it more than 0 s".into(),
            ));
        }
        let pps = self.traffic.packets_per_second();
        if !pps.is_finite() || pps < 0.0 {
            return Err(self.err("traffic.packets_per_second", format!("{pps} is not a rate")));
        }
        let total = pps * f64::from(self.users);
        if total > MAX_TOTAL_PPS {
            return Err(self.err(
                "traffic.packets_per_second",
                format!(
                    "{} users x {pps}/s = {total:.0} packets/s, above the harness bound of \
                     {MAX_TOTAL_PPS}: lower the rate or the users",
                    self.users
                ),
            ));
        }
        if !(28..=1420).contains(&self.traffic.packet_bytes()) {
            return Err(self.err(
                "traffic.packet_bytes",
                format!("{} is not in 28..=1420", self.traffic.packet_bytes()),
            ));
        }
        match (self.kind, &self.flood) {
            (Kind::MixedFlood, None) => {
                return Err(self.err("flood", "mixed-flood needs a [flood] table".into()))
            }
            (Kind::MixedFlood, Some(f)) => {
                let rate = f.forged_per_second.saturating_add(f.replayed_per_second);
                if rate > MAX_FLOOD_RATE {
                    return Err(self.err(
                        "flood",
                        format!("{rate} initiations/s is above the bound of {MAX_FLOOD_RATE}"),
                    ));
                }
                if !(1..=4096).contains(&f.sources) {
                    return Err(
                        self.err("flood.sources", format!("{} is not in 1..=4096", f.sources))
                    );
                }
            }
            (_, Some(_)) => {
                return Err(self.err("flood", "only kind = \"mixed-flood\" floods".into()))
            }
            _ => {}
        }
        if let Some(f) = &self.failover {
            self.check_failover(f)?;
        }
        if self.scrapes_per_second > MAX_SCRAPE_RATE {
            return Err(self.err(
                "scrapes_per_second",
                format!(
                    "{} is above the bound of {MAX_SCRAPE_RATE}",
                    self.scrapes_per_second
                ),
            ));
        }
        Ok(())
    }

    fn check_ike(&self) -> Result<(), ScenarioError> {
        if self.ike_users > MAX_IKE_USERS {
            return Err(self.err(
                "ike_users",
                format!("{} is above {MAX_IKE_USERS}", self.ike_users),
            ));
        }
        let methods = self.ike_method_names();
        let known = |m: &&str| IKE_METHODS.contains(m);
        if methods.is_empty() || !methods.iter().all(known) || has_repeats(&methods) {
            return Err(self.err(
                "ike_auth",
                format!(
                    "{:?}: use \"eap\", \"cert\" or \"psk\", or several of them once each, \
                     comma-separated",
                    self.ike_auth
                ),
            ));
        }
        if let Some(p) = self
            .ike_peers
            .iter()
            .find(|p| !IKE_PEERS.contains(&p.as_str()))
        {
            return Err(self.err(
                "ike_peers",
                format!("{p:?} is not a server the loadtest starts: use \"strongswan\""),
            ));
        }
        if !self.ike_peers.is_empty() && self.ike_users == 0 {
            return Err(self.err(
                "ike_peers",
                "the peers get the run's IKEv2 users: give ike_users too".into(),
            ));
        }
        Ok(())
    }

    fn check_failover(&self, f: &Failover) -> Result<(), ScenarioError> {
        if !(f.at_seconds.is_finite() && f.at_seconds > 0.0 && f.at_seconds <= MAX_SECONDS) {
            return Err(self.err(
                "failover.at_seconds",
                format!("{} is not in (0, {MAX_SECONDS}] s", f.at_seconds),
            ));
        }
        if let Some(c) = f
            .clients
            .iter()
            .find(|c| !FAILOVER_CLIENTS.contains(&c.as_str()))
        {
            return Err(self.err(
                "failover.clients",
                format!("{c:?} is not a client the loadtest starts: use \"wireguard-go\" or \"boringtun-cli\""),
            ));
        }
        // Time to resume is when a user's echoes come back again: they must still be sent.
        if self.traffic.packets_per_second() <= 0.0 {
            return Err(self.err(
                "traffic.profile",
                "a failover is measured by the users' echoes: use \"interactive\" or \"bulk\""
                    .into(),
            ));
        }
        if self.traffic.seconds < f.at_seconds + 20.0 {
            return Err(self.err(
                "traffic.seconds",
                format!(
                    "users must keep sending for 20 s after the failure (a standard client \
                     needs about 15 s alone): give at least {} s",
                    f.at_seconds + 20.0
                ),
            ));
        }
        if matches!(self.kind, Kind::Reconnect | Kind::Churn | Kind::MixedFlood) {
            return Err(self.err(
                "failover",
                "a failover runs with ramp, step or poisson arrivals".into(),
            ));
        }
        // What these measure is node A's, and node A is dead by then.
        for (field, set) in [
            ("idle_seconds", self.idle_seconds > 0.0),
            ("scrapes_per_second", self.scrapes_per_second > 0),
            ("ike_users", self.ike_users > 0),
        ] {
            if set {
                return Err(self.err(field, "a failover scenario takes none: set it to 0".into()));
            }
        }
        if has_repeats(&f.clients.iter().map(String::as_str).collect::<Vec<_>>()) {
            return Err(self.err(
                "failover.clients",
                "name each client once (one of each runs)".into(),
            ));
        }
        Ok(())
    }

    /// The longest a run of this scenario can last (arrivals, traffic, patience).
    pub fn bound(&self) -> Duration {
        let arrivals = match self.kind {
            Kind::Reconnect => self.seconds + self.hold_seconds + self.storm_seconds,
            Kind::Churn => self.seconds + self.hold_seconds,
            _ => self.seconds,
        };
        Duration::from_secs_f64(arrivals + self.traffic.seconds + self.patience_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_parses_and_keeps_its_bounds() {
        for (name, _) in BUILT_IN {
            let s = Scenario::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.name, *name, "a built-in is named as it is called");
            assert!(s.bound() <= Duration::from_secs_f64(3.0 * MAX_SECONDS));
        }
    }

    #[test]
    fn bad_scenarios_say_which_field_and_what_to_do() {
        let err = |text: &str| Scenario::from_toml(text).expect_err("refused").to_string();
        assert!(err("users = 0").contains("users: 0 is not in 1..=150000"));
        assert!(
            err("users = 10\nbogus = 1").contains("bogus"),
            "unknown fields are named"
        );
        assert!(err("kind = \"mixed-flood\"").contains("needs a [flood] table"));
        assert!(
            err("kind = \"step\"\n[flood]\nsources = 3").contains("only kind = \"mixed-flood\"")
        );
        let e = err("users = 60000\n[traffic]\nprofile = \"bulk\"\npackets_per_second = 10");
        assert!(e.contains("above the harness bound"), "{e}");
        assert!(err("seconds = -1").contains("seconds: -1 is not in 0..=600"));
        assert!(err("name = \"a b\"").contains("name"));
        let e = err("ike_users = 10\nike_auth = \"eap,eap\"");
        assert!(e.contains("ike_auth") && e.contains("once each"), "{e}");
        assert!(err("ike_users = 10\nike_auth = \"radius\"").contains("ike_auth"));
        let e = err("ike_users = 10\nike_peers = [\"libreswan\"]");
        assert!(e.contains("ike_peers") && e.contains("strongswan"), "{e}");
        assert!(err("ike_peers = [\"strongswan\"]").contains("give ike_users too"));
        let e = err("[failover]\nat_seconds = 5");
        assert!(e.contains("traffic.profile"), "{e}");
        let e =
            err("[traffic]\nprofile = \"interactive\"\nseconds = 10\n[failover]\nat_seconds = 5");
        assert!(e.contains("at least 25 s"), "{e}");
        let talk = "idle_seconds = 0\n[traffic]\nprofile = \"interactive\"\nseconds = 30\n";
        let e = err(&format!(
            "{talk}[failover]\nclients = [\"wireguard-go\", \"wireguard-go\"]"
        ));
        assert!(e.contains("once"), "{e}");
        let e = err("[traffic]\nprofile = \"interactive\"\nseconds = 30\n[failover]");
        assert!(e.contains("idle_seconds"), "{e}");
        let e = err(&format!("{talk}[failover]\nclients = [\"tunsafe\"]"));
        assert!(
            e.contains("failover.clients") && e.contains("boringtun-cli"),
            "{e}"
        );
        let mixed = Scenario::from_toml("ike_users = 4\nike_auth = \" eap, cert \"");
        assert_eq!(mixed.expect("parses").ike_methods(), ["eap", "cert"]);
        assert!(Scenario::load("no-such-scenario")
            .expect_err("unknown")
            .to_string()
            .contains("neither a built-in scenario"));
    }
}
