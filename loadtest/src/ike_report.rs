//! The capacity report's IKEv2 sections: the users who logged in beside the WireGuard ones
//! (by method), and the same users side by side against a fresh xgate and strongSwan (per
//! method: setups per server CPU-second, their ratio, memory per IKE SA with its CHILD_SA).

use std::fmt::Write as _;

use anyhow::Result;

use crate::ike_load::IkeFigures;
use crate::report::{fig, pct, NONE};
use crate::results::RunResult;
use crate::sizing::human_bytes;

/// The target: xgate's setups per server CPU-second with ECDSA P-256 certificates at least
/// this many times strongSwan's.
pub const CERT_TARGET: f64 = 2.0;

/// The IKEv2 users of runs that had them: logins, setup times, and the responder thread's
/// CPU per login (all methods together).
pub fn mixed(md: &mut String, runs: &[RunResult]) -> Result<()> {
    let mut rows = Vec::new();
    for r in runs.iter().filter(|r| !r.ike.is_empty()) {
        let cpu = r.server.cpu_seconds_by_thread.get("xgate-ike").copied();
        let logins: u64 = r.ike.iter().map(|i| i.connected).sum();
        let per_cpu_s = cpu.filter(|c| *c > 0.0).map(|c| logins as f64 / c);
        for i in &r.ike {
            rows.push(format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.scenario.name,
                r.target,
                method_label(&i.auth),
                pct(i.connected, i.users),
                pct(i.first_byte, i.users),
                fig(i.setup_ms.p50, 1),
                fig(i.setup_ms.p99, 1),
                fig(i.first_byte_ms.p99, 1),
                i.retransmissions,
                per_cpu_s.map_or_else(|| NONE.to_string(), |v| fig(v, 0)),
            ));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(md, "## IKEv2 users\n")?;
    writeln!(
        md,
        "Beside the WireGuard users: IKE_SA_INIT and IKE_AUTH by the `ike` crate's `Login`, \
         then a ping through ESP (first byte: from the first IKE_SA_INIT to the echo back). \
         Logins per CPU-second count the responder thread (`xgate-ike`) only, all methods of \
         the run together.\n"
    )?;
    writeln!(
        md,
        "| scenario | target | auth | logged in | ping back | setup p50 ms | setup p99 ms | \
         first byte p99 ms | retransmissions | logins per IKE-thread CPU-s |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|")?;
    writeln!(md, "{}\n", rows.join("\n"))?;
    side_by_side(md, runs)
}

/// What a method is called in the tables.
fn method_label(auth: &str) -> &str {
    match auth {
        "eap" => "EAP-MSCHAPv2",
        "cert" => "ECDSA P-256 certificate",
        "psk" => "pre-shared key",
        other => other,
    }
}

/// The runs' side-by-side rows: each server's figures per method, and xgate's ratio.
fn side_by_side(md: &mut String, runs: &[RunResult]) -> Result<()> {
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for r in runs.iter().filter(|r| !r.ike_side_by_side.is_empty()) {
        let rows_of = &r.ike_side_by_side;
        for f in rows_of {
            let xgate = rows_of
                .iter()
                .find(|x| x.server == "xgate" && x.auth == f.auth);
            let ratio = match xgate {
                Some(x) if f.server != "xgate" => ratio_of(x, f),
                _ => None,
            };
            rows.push(format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.scenario.name,
                method_label(&f.auth),
                f.server,
                pct(f.connected, f.users),
                fig(f.setup_ms.p50, 1),
                fig(f.setup_ms.p99, 1),
                fig(f.server_cpu_s, 2),
                fig(f.idle_cpu_s, 2),
                fig(f.setups_per_cpu_s(), 0),
                ratio.map_or_else(|| NONE.to_string(), |v| format!("{v:.2}")),
                if f.bytes_per_sa > 0.0 {
                    human_bytes(f.bytes_per_sa)
                } else {
                    NONE.to_string()
                },
            ));
            if f.auth == "cert" && f.server != "xgate" {
                verdicts.push(match ratio {
                    Some(v) => format!(
                        "- {}: xgate made {v:.2}x {}'s setups per server CPU-second with ECDSA \
                         P-256 certificates (target >= {CERT_TARGET}x): **{}**.",
                        r.scenario.name,
                        f.server,
                        if v >= CERT_TARGET { "met" } else { "missed" }
                    ),
                    None => format!(
                        "- {}: no ratio with {} (a server logged nobody in, or used no CPU).",
                        r.scenario.name, f.server
                    ),
                });
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(md, "## IKEv2 side by side\n")?;
    writeln!(
        md,
        "After the run, the same IKEv2 users (identities, credentials, addresses, arrivals \
         per second) log in again to a fresh xgate and to strongSwan's charon as responder \
         (kernel-libipsec, logging at level 1 as deployed), each alone on the server CPU, one \
         method after another. Server CPU: every thread of the server process (scheduler run \
         time) from a method's first login to a second after its last; of it, idle: the \
         server's spending over two idle seconds just before, scaled to that span. Setups per \
         server CPU-second are net of idle. Memory: resident growth over the span per user \
         logged in, that is per IKE SA with its one CHILD_SA.\n"
    )?;
    writeln!(
        md,
        "| scenario | auth | server | logged in | setup p50 ms | setup p99 ms | server CPU-s | \
         of it idle | setups per server CPU-s | xgate / this | memory per IKE SA + CHILD SA |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    writeln!(md, "{}\n", rows.join("\n"))?;
    if !verdicts.is_empty() {
        writeln!(md, "{}\n", verdicts.join("\n"))?;
    }
    Ok(())
}

/// xgate's setups per CPU-second over `peer`'s, when both measured some.
fn ratio_of(xgate: &IkeFigures, peer: &IkeFigures) -> Option<f64> {
    let (x, p) = (xgate.setups_per_cpu_s(), peer.setups_per_cpu_s());
    (x > 0.0 && p > 0.0).then(|| x / p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::tests::fake_run;
    use crate::results::Summary;

    fn figures(server: &str, auth: &str, connected: u64, cpu: f64) -> IkeFigures {
        IkeFigures {
            users: 50,
            auth: auth.into(),
            server: server.into(),
            connected,
            first_byte: connected.saturating_sub(1),
            setup_ms: Summary {
                count: connected,
                p50: 1.9,
                p99: 5.9,
                ..Default::default()
            },
            server_cpu_s: cpu,
            bytes_per_sa: 3072.0,
            ..Default::default()
        }
    }

    #[test]
    fn runs_with_ikev2_users_get_a_row_per_method_and_others_none() {
        let mut r = fake_run("xgate", "small-mixed", 2);
        let md = crate::report::markdown(std::slice::from_ref(&r), None).expect("report");
        assert!(!md.contains("## IKEv2 users"));
        r.ike = vec![
            figures("xgate", "eap", 50, 0.0),
            figures("xgate", "cert", 50, 0.0),
        ];
        r.server
            .cpu_seconds_by_thread
            .insert("xgate-ike".into(), 0.25);
        let md = crate::report::markdown(&[r], None).expect("report");
        let row = |start: &str| {
            md.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("{start}: {md}"))
                .to_string()
        };
        let eap = row("| small-mixed | xgate | EAP-MSCHAPv2 |");
        assert!(eap.contains("| 1.9 | 5.9 |"), "{eap}");
        assert!(eap.ends_with("| 400 |"), "100 logins in 0.25 CPU-s: {eap}");
        row("| small-mixed | xgate | ECDSA P-256 certificate |");
        assert!(
            !md.contains("## IKEv2 side by side"),
            "no side-by-side rows: {md}"
        );
    }

    #[test]
    fn side_by_side_rows_give_the_ratio_and_say_whether_the_target_held() {
        let mut r = fake_run("xgate", "surge-mixed", 2);
        r.ike = vec![figures("xgate", "cert", 50, 0.0)];
        r.ike_side_by_side = vec![
            figures("xgate", "cert", 50, 0.05),
            figures("strongswan", "cert", 50, 0.2),
            figures("xgate", "eap", 50, 0.1),
            figures("strongswan", "eap", 40, 0.1),
        ];
        let md = crate::report::markdown(&[r], None).expect("report");
        assert!(md.contains("## IKEv2 side by side"), "{md}");
        let line = md
            .lines()
            .find(|l| l.contains("| ECDSA P-256 certificate | strongswan |"))
            .unwrap_or_else(|| panic!("{md}"));
        // 1000 against 250 setups per CPU-s.
        assert!(
            line.contains("| 0.20 | — | 250 | 4.00 | 3.0 KiB |"),
            "{line}"
        );
        assert!(
            md.contains("4.00x strongswan's") && md.contains("**met**"),
            "{md}"
        );
        let eap = md
            .lines()
            .find(|l| l.contains("| EAP-MSCHAPv2 | strongswan |"))
            .unwrap_or_else(|| panic!("{md}"));
        assert!(
            eap.contains("| 80.0 % |") && eap.contains("| 1.25 |"),
            "{eap}"
        );
    }
}
