//! The capacity report's cluster section: the failover runs side by side (the survivor
//! taking over and not), and N+1 sizing of the report's example deployment: one box more
//! than the example needs, so that the loss of any one leaves the rest within their measured
//! limits, with what reconnecting the dead box's users costs the survivors.

use std::fmt::Write as _;

use anyhow::Result;

use crate::failover::FailoverFigures;
use crate::report::{fig, EXAMPLE_NEED, NONE};
use crate::results::RunResult;
use crate::sizing::{self, Measured};

/// A time in ms, or "never".
fn ms(v: Option<f64>) -> String {
    v.map_or("never".to_string(), |v| format!("{v:.0}"))
}

/// One row of the failover table.
fn row(r: &RunResult, f: &FailoverFigures) -> String {
    let t = &f.resume_after_move_ms;
    let clients: Vec<String> = f
        .clients
        .iter()
        .map(|c| format!("{} {}", c.client, ms(c.after_move_ms)))
        .collect();
    format!(
        "| {} | {} | {} | {} | {} / {} / {} | {} | {} |",
        r.scenario.name,
        if f.take_over { "on" } else { "off" },
        f.users,
        ms(f.moved_after_ms),
        fig(t.p50, 0),
        fig(t.p99, 0),
        fig(t.max, 0),
        f.never,
        if clients.is_empty() {
            NONE.to_string()
        } else {
            clients.join(", ")
        },
    )
}

/// Writes the section (nothing when no run was a failover and nothing can be sized).
pub(crate) fn cluster(md: &mut String, runs: &[RunResult], m: &Measured) -> Result<()> {
    writeln!(md, "## Cluster: failover and N+1 sizing\n")?;
    let failovers: Vec<(&RunResult, &FailoverFigures)> = runs
        .iter()
        .filter_map(|r| r.failover.as_ref().map(|f| (r, f)))
        .collect();
    if failovers.is_empty() {
        writeln!(
            md,
            "No failover was run (`xgate-loadtest run --scenario failover`).\n"
        )?;
    } else {
        writeln!(
            md,
            "Two xgate nodes on one PostgreSQL registry behind a service address moved by \
             keepalived; node A killed (SIGKILL, links down) while its users send {} echoes a \
             second (the times' resolution). Times are from the address reaching node B to \
             each user's first echo back; \"users\" are those connected before the failure.\n",
            failovers[0].0.scenario.traffic.packets_per_second()
        )?;
        writeln!(
            md,
            "| scenario | take-over | users | address moved after the kill (ms) | \
             traffic again p50 / p99 / max (ms) | never | real clients (ms) |\n\
             |---|---|---|---|---|---|---|"
        )?;
        for (r, f) in &failovers {
            writeln!(md, "{}", row(r, f))?;
        }
        writeln!(
            md,
            "\n![Users passing traffic again after node A died]({})\n",
            crate::failover_plot::FAILOVER_SVG
        )?;
    }
    n_plus_one(md, m)
}

/// N+1 sizing of the example from the measured figures.
fn n_plus_one(md: &mut String, m: &Measured) -> Result<()> {
    let n = &EXAMPLE_NEED;
    writeln!(md, "### N+1 for the example ({} users)\n", n.users)?;
    let s = match sizing::size(n, m) {
        Ok(s) => s,
        Err(e) => {
            writeln!(md, "Cannot be computed: {e:#}\n")?;
            return Ok(());
        }
    };
    let boxes = s.boxes + 1;
    let per_box = n.users.div_ceil(boxes);
    writeln!(
        md,
        "- The example needs {} (sizing above); with one more, {boxes} boxes carry about \
         {per_box} users each, and after any one is lost the {} left carry everyone within the \
         limits measured for one box.",
        if s.boxes == 1 {
            "1 box".to_string()
        } else {
            format!("{} boxes", s.boxes)
        },
        s.boxes
    )?;
    if let Some((h, source)) = &m.handshakes_per_core_s {
        let cpu_s = per_box as f64 / h;
        let cores = (s.boxes * u64::from(n.cores_per_box)) as f64;
        writeln!(
            md,
            "- The lost box's {per_box} users handshake again through the survivors (started \
             by them, with take-over): {cpu_s:.1} CPU-seconds at {h:.0} handshakes per \
             CPU-second ({source}), about {:.0} ms of each of the survivors' {cores:.0} cores.",
            cpu_s / cores * 1e3
        )?;
    }
    writeln!(
        md,
        "\n**N+1: {boxes} boxes of {} cores.**\n",
        n.cores_per_box
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::ClientResume;
    use crate::plots::tests::fake_run;
    use crate::results::Summary;

    #[test]
    fn failovers_are_tabled_side_by_side_and_n_plus_one_is_one_box_more() {
        let mut on = fake_run("xgate", "failover", 5);
        on.failover = Some(FailoverFigures {
            take_over: true,
            moved_after_ms: Some(330.0),
            users: 5000,
            resumed: 5000,
            never: 0,
            resume_after_move_ms: Summary {
                count: 5000,
                p50: 250.0,
                p99: 410.0,
                max: 600.0,
                ..Default::default()
            },
            resumed_ms: vec![250, 410, 600],
            clients: vec![ClientResume {
                client: "wireguard-go".into(),
                after_move_ms: Some(240.0),
            }],
        });
        let mut off = on.clone();
        off.scenario.name = "failover-no-take-over".into();
        if let Some(f) = off.failover.as_mut() {
            f.take_over = false;
            f.clients[0].after_move_ms = None;
        }
        let m = Measured {
            handshakes_per_core_s: Some((6000.0, "surge.json".into())),
            login_rate_per_core_at_p99: vec![(2000.0, 10.0, "surge.json".into())],
            gbps_per_core: Some((2.0, "datapath.json".into())),
            ike_setups_per_core_s: Some((500.0, "eap".into(), "surge-mixed.json".into())),
            ..Measured::default()
        };
        let mut md = String::new();
        cluster(&mut md, &[on, off], &m).expect("written");
        assert!(
            md.contains("| failover | on | 5000 | 330 | 250 / 410 / 600 | 0 | wireguard-go 240 |"),
            "{md}"
        );
        assert!(
            md.contains("| off |") && md.contains("wireguard-go never"),
            "{md}"
        );
        let s = sizing::size(&EXAMPLE_NEED, &m).expect("sized");
        assert!(
            md.contains(&format!("**N+1: {} boxes", s.boxes + 1)),
            "{md}"
        );
    }
}
