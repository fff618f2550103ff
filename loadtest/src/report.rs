//! The capacity report: `capacity.md` beside its three plots, from result files only — the
//! runs, xgate against its peers, the mixed flood, failures, and the sizing figures with an
//! example sizing. Nothing in it depends on when it was generated, so the same runs give the
//! same report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::plots::{self, CONNECTED_SVG, LATENCY_SVG, RESOURCES_SVG};
use crate::results::RunResult;
use crate::scenario::Kind;
use crate::sizing::{self, Need};

/// File name of the report.
pub const REPORT_MD: &str = "capacity.md";
/// File name of the sizing figures beside it (JSON of `capacity::Measured`): what the web
/// console's capacity page sizes from.
pub const FIGURES_JSON: &str = "capacity-figures.json";

/// The deployment the report sizes as an example.
pub const EXAMPLE_NEED: Need = Need {
    users: 100_000,
    gbps: 20.0,
    p99_ms: 200.0,
    surge_seconds: 60.0,
    cores_per_box: 16,
    ike_share: 0.2,
};

/// The mark of a figure that was not measured.
pub(crate) const NONE: &str = "—";

/// Writes `dir/capacity.md` and the plots it embeds; returns the report's path.
pub fn write_report(
    runs: &[RunResult],
    datapath_json: Option<(&Path, &Value)>,
    dir: &Path,
) -> Result<PathBuf> {
    plots::write_plots(runs, dir)?;
    crate::failover_plot::write(runs, dir)?;
    let (md, measured) = report(runs, datapath_json)?;
    let figures = dir.join(FIGURES_JSON);
    let json = serde_json::to_string_pretty(&measured)?;
    std::fs::write(&figures, json).with_context(|| format!("writing {}", figures.display()))?;
    let path = dir.join(REPORT_MD);
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The report's text.
#[cfg(test)]
pub(crate) fn markdown(runs: &[RunResult], datapath: Option<(&Path, &Value)>) -> Result<String> {
    Ok(report(runs, datapath)?.0)
}

/// The report's text and the sizing figures it gives.
fn report(
    runs: &[RunResult],
    datapath: Option<(&Path, &Value)>,
) -> Result<(String, sizing::Measured)> {
    let mut md = String::new();
    writeln!(md, "# xgate capacity report\n")?;
    writeln!(
        md,
        "Every figure below was measured; {NONE} marks one that was not.\n"
    )?;
    header(&mut md, runs, datapath)?;
    runs_table(&mut md, runs)?;
    comparison(&mut md, runs)?;
    scraping(&mut md, runs)?;
    crate::ike_report::mixed(&mut md, runs)?;
    flood(&mut md, runs)?;
    failures(&mut md, runs)?;
    writeln!(md, "## Plots\n")?;
    writeln!(
        md,
        "![Handshake latency per second: p99 solid, p50 dashed]({LATENCY_SVG})\n"
    )?;
    writeln!(md, "![Users connected and arrived]({CONNECTED_SVG})\n")?;
    writeln!(
        md,
        "![Server CPU and RSS by users connected]({RESOURCES_SVG})\n"
    )?;
    let measured = sizing_section(&mut md, runs, datapath)?;
    crate::cluster_report::cluster(&mut md, runs, &measured)?;
    Ok((md, measured))
}

fn header(md: &mut String, runs: &[RunResult], datapath: Option<(&Path, &Value)>) -> Result<()> {
    if runs.is_empty() {
        writeln!(md, "No runs were given.\n")?;
    }
    let machines: BTreeSet<String> = runs
        .iter()
        .map(|r| {
            let m = &r.machine;
            format!("{} ({} CPUs, kernel {})", m.cpu, m.cores, m.kernel)
        })
        .collect();
    let commits: BTreeSet<&str> = runs.iter().map(|r| r.machine.commit.as_str()).collect();
    let dates: BTreeSet<&str> = runs.iter().map(|r| r.machine.date.as_str()).collect();
    let join = |set: Vec<&str>| {
        if set.is_empty() {
            NONE.to_string()
        } else {
            set.join(", ")
        }
    };
    writeln!(
        md,
        "- Machine: {}",
        join(machines.iter().map(String::as_str).collect())
    )?;
    writeln!(
        md,
        "- xgate commit: {}",
        join(commits.into_iter().collect())
    )?;
    writeln!(md, "- Date: {}", join(dates.into_iter().collect()))?;
    if let Some((path, _)) = datapath {
        writeln!(md, "- Datapath benchmark: {}", file_name(path))?;
    }
    for run in runs {
        writeln!(md, "- Result: {}", run.file_name())?;
    }
    writeln!(md)?;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn kind_name(kind: Kind) -> String {
    // The serialised name is the one scenario files use.
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// `n` of `of` as a percentage.
pub(crate) fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        return NONE.to_string();
    }
    format!("{:.1} %", n as f64 * 100.0 / of as f64)
}

/// A measured value, or the "not measured" mark for 0 and non-finite values.
pub(crate) fn fig(v: f64, decimals: usize) -> String {
    if v.is_finite() && v > 0.0 {
        format!("{v:.decimals$}")
    } else {
        NONE.to_string()
    }
}

fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() && b > 0.0 {
        format!("{r:.2}x")
    } else {
        NONE.to_string()
    }
}

fn first_attempt_share(r: &RunResult) -> f64 {
    if r.clients.attempts == 0 {
        return 0.0;
    }
    r.clients.connected_first_attempt as f64 / r.clients.attempts as f64
}

fn runs_table(md: &mut String, runs: &[RunResult]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    writeln!(md, "## Runs\n")?;
    writeln!(
        md,
        "| target | scenario | users | connected | first attempt | retries | cookie replies | \
         handshake p50 / p99 / max (ms) | first byte p99 (ms) | server CPU (s) | \
         handshakes per CPU-s | bytes per session | loadgen CPU (s) |"
    )?;
    writeln!(md, "|{}", "---|".repeat(13))?;
    for r in runs {
        let (c, h) = (&r.clients, &r.latency.handshake_ms);
        writeln!(
            md,
            "| {} | {} ({}) | {} in {} s | {}/{} | {} | {} | {} | {:.1} / {:.1} / {:.1} | {} | {:.1} | {} | {} | {:.1} |",
            r.target,
            r.scenario.name,
            kind_name(r.scenario.kind),
            r.scenario.users,
            r.scenario.seconds,
            c.connected,
            c.attempts,
            pct(c.connected_first_attempt, c.attempts),
            c.retries,
            c.cookie_replies,
            h.p50,
            h.p99,
            h.max,
            fig(r.latency.first_byte_ms.p99, 1),
            r.server.cpu_seconds,
            fig(r.server.handshakes_per_cpu_second, 0),
            fig(r.server.bytes_per_session, 0),
            c.loadgen_cpu_seconds,
        )?;
    }
    writeln!(md)?;
    Ok(())
}

fn comparison(md: &mut String, runs: &[RunResult]) -> Result<()> {
    let mut by_scenario: BTreeMap<&str, Vec<&RunResult>> = BTreeMap::new();
    for r in runs {
        by_scenario
            .entry(r.scenario.name.as_str())
            .or_default()
            .push(r);
    }
    let mut lines = Vec::new();
    for (name, group) in &by_scenario {
        // With several xgate runs of one scenario the last given is the one compared.
        let Some(x) = group.iter().rev().find(|r| r.target == "xgate") else {
            continue;
        };
        for peer in group.iter().filter(|r| r.target != "xgate") {
            let (xs, ps) = (first_attempt_share(x), first_attempt_share(peer));
            let (xp, pp) = (x.latency.handshake_ms.p99, peer.latency.handshake_ms.p99);
            lines.push(format!(
                "- **{name}**: connected on the first initiation {:.1} % (xgate) against {:.1} % \
                 ({}): {}; handshake p99 {xp:.1} ms against {pp:.1} ms: {} (lower is better).",
                xs * 100.0,
                ps * 100.0,
                peer.target,
                ratio(xs, ps),
                ratio(xp, pp),
            ));
        }
    }
    writeln!(md, "## xgate against its peers\n")?;
    if lines.is_empty() {
        writeln!(md, "No scenario was run against both xgate and a peer.\n")?;
    } else {
        writeln!(md, "Ratios are xgate's figure over the peer's.\n")?;
        writeln!(md, "{}\n", lines.join("\n"))?;
    }
    Ok(())
}

/// The most a /metrics scraper may cost the handshake path: the scraped surge's handshakes
/// per CPU-second at least this share of the unscraped surge's.
const SCRAPING_TARGET: f64 = 0.95;

/// What scraping `/metrics` costs the handshake path: each xgate run that scraped against
/// the latest xgate run of the same arrivals (users, window, kind) that did not.
fn scraping(md: &mut String, runs: &[RunResult]) -> Result<()> {
    let xgate: Vec<&RunResult> = runs.iter().filter(|r| r.target == "xgate").collect();
    let mut lines = Vec::new();
    for scraped in xgate.iter().filter(|r| r.scenario.scrapes_per_second > 0) {
        let same = |r: &&&RunResult| {
            r.scenario.scrapes_per_second == 0
                && r.scenario.kind == scraped.scenario.kind
                && r.scenario.users == scraped.scenario.users
                && r.scenario.seconds == scraped.scenario.seconds
        };
        let Some(plain) = xgate.iter().rev().find(same) else {
            continue;
        };
        let (a, b) = (
            scraped.server.handshakes_per_cpu_second,
            plain.server.handshakes_per_cpu_second,
        );
        let r = a / b;
        let verdict = if r.is_finite() && r >= SCRAPING_TARGET {
            "met"
        } else {
            "MISSED"
        };
        let answered = scraped.scrapes.map_or(0, |s| s.answered);
        let failed = scraped.scrapes.map_or(0, |s| s.failed);
        lines.push(format!(
            "- **{}** ({} scrapes/s; {answered} answered, {failed} failed): {} handshakes per \
             CPU-s against {} in {} without scraping: {} (target ≥ {SCRAPING_TARGET:.2}x: \
             {verdict}).",
            scraped.scenario.name,
            scraped.scenario.scrapes_per_second,
            fig(a, 0),
            fig(b, 0),
            plain.scenario.name,
            ratio(a, b),
        ));
    }
    if !lines.is_empty() {
        writeln!(md, "## What scraping /metrics costs\n")?;
        writeln!(md, "{}\n", lines.join("\n"))?;
    }
    Ok(())
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".to_string();
    }
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.join(", ")
}

fn flood(md: &mut String, runs: &[RunResult]) -> Result<()> {
    let flooded: Vec<(&RunResult, _)> = runs
        .iter()
        .filter_map(|r| r.flood.as_ref().map(|f| (r, f)))
        .collect();
    if flooded.is_empty() {
        return Ok(());
    }
    writeln!(md, "## Mixed flood\n")?;
    writeln!(
        md,
        "| target | scenario | forged sent | replayed sent | refused by kernel | server refused | \
         server rejected | cookie replies sent | users connected |"
    )?;
    writeln!(md, "|{}", "---|".repeat(9))?;
    for (r, f) in flooded {
        // The peers have no metrics endpoint, so their side of the flood is unknown.
        let (refused, rejected, cookies) = match &r.server.counters {
            Some(c) => (
                counts(&c.refused),
                counts(&c.rejected),
                c.cookie_replies_sent.to_string(),
            ),
            None => (NONE.to_string(), NONE.to_string(), NONE.to_string()),
        };
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {refused} | {rejected} | {cookies} | {}/{} |",
            r.target,
            r.scenario.name,
            f.forged_sent,
            f.replayed_sent,
            f.refused_by_kernel,
            r.clients.connected,
            r.clients.attempts,
        )?;
    }
    writeln!(md)?;
    Ok(())
}

fn failures(md: &mut String, runs: &[RunResult]) -> Result<()> {
    writeln!(md, "## Failures\n")?;
    let mut any = false;
    for r in runs {
        let c = &r.clients;
        if c.failures.is_empty() && c.dropped.is_empty() {
            continue;
        }
        any = true;
        writeln!(
            md,
            "- {} {}: attempts failed: {}; datagrams dropped: {}",
            r.target,
            r.scenario.name,
            counts(&c.failures),
            counts(&c.dropped)
        )?;
    }
    if !any {
        writeln!(md, "No attempt failed and no datagram was dropped.")?;
    }
    writeln!(md)?;
    Ok(())
}

fn sourced(figure: &Option<(f64, String)>, value: impl Fn(f64) -> String) -> (String, String) {
    match figure {
        Some((v, source)) => (value(*v), source.clone()),
        None => (NONE.to_string(), "not measured".to_string()),
    }
}

/// Writes the sizing figures and the example; returns the figures.
fn sizing_section(
    md: &mut String,
    runs: &[RunResult],
    datapath: Option<(&Path, &Value)>,
) -> Result<sizing::Measured> {
    let mut m = sizing::measured(runs, datapath.map(|(_, v)| v));
    // The file name on disk is the better source than the one rebuilt from its contents.
    if let (Some((path, _)), Some(g)) = (datapath, m.gbps_per_core.as_mut()) {
        g.1 = file_name(path);
    }
    writeln!(md, "## Sizing figures\n")?;
    writeln!(md, "| figure | measured | source |\n|---|---|---|")?;
    let mut rows = vec![(
        "handshakes per CPU-second".to_string(),
        sourced(&m.handshakes_per_core_s, |v| format!("{v:.0}")),
    )];
    if m.login_rate_per_core_at_p99.is_empty() {
        rows.push((
            "login rate per core at p99".to_string(),
            (
                NONE.to_string(),
                "no xgate run in which every user connected".to_string(),
            ),
        ));
    }
    for (rate, p99, source) in &m.login_rate_per_core_at_p99 {
        rows.push((
            "login rate per core at p99".to_string(),
            (
                format!("{rate:.0} users/s at p99 {p99:.1} ms"),
                source.clone(),
            ),
        ));
    }
    let bytes = |v: f64| format!("{v:.0} ({})", sizing::human_bytes(v));
    rows.push((
        "Gbit/s per core (xgate, tcp-1)".to_string(),
        sourced(&m.gbps_per_core, |v| format!("{v:.2}")),
    ));
    rows.push((
        "bytes per idle session".to_string(),
        sourced(&m.bytes_per_session, bytes),
    ));
    rows.push((
        "bytes per registered user".to_string(),
        sourced(&m.bytes_per_registered_user, bytes),
    ));
    let ike_rate = m
        .ike_setups_per_core_s
        .as_ref()
        .map(|(v, method, src)| (*v, format!("{src} ({method}, the costliest method)")));
    rows.push((
        "IKEv2 logins per CPU-second".to_string(),
        sourced(&ike_rate, |v| format!("{v:.0}")),
    ));
    rows.push((
        "bytes per IKEv2 user (IKE SA + CHILD SA)".to_string(),
        sourced(&m.bytes_per_ike_sa, bytes),
    ));
    for (figure, (value, source)) in rows {
        writeln!(md, "| {figure} | {value} | {source} |")?;
    }
    let n = &EXAMPLE_NEED;
    writeln!(
        md,
        "\n### Example: {} users ({:.0} % on IKEv2), {} Gbit/s, p99 {} ms, {} s surge, {} cores \
         per box\n",
        n.users,
        n.ike_share * 100.0,
        n.gbps,
        n.p99_ms,
        n.surge_seconds,
        n.cores_per_box
    )?;
    match sizing::size(n, &m) {
        Ok(s) => {
            let (answer, working) = s.lines.split_last().unzip();
            for line in working.unwrap_or_default() {
                writeln!(md, "- {line}")?;
            }
            if let Some(answer) = answer {
                writeln!(md, "\n**{answer}**")?;
            }
        }
        Err(e) => writeln!(md, "Cannot be computed: {e:#}")?,
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::tests::{fake_run, temp_dir};
    use crate::results::Summary;

    fn run(target: &str, first_attempt: u64, p99: f64) -> RunResult {
        let mut r = fake_run(target, "surge", 4);
        r.scenario.users = 400;
        r.scenario.seconds = 4.0;
        r.clients.users = 400;
        r.clients.attempts = 400;
        r.clients.connected = 400;
        r.clients.connected_first_attempt = first_attempt;
        r.latency.handshake_ms = Summary {
            count: 400,
            p50: 1.5,
            p99,
            max: 12.0,
            ..Default::default()
        };
        r
    }

    #[test]
    fn report_has_the_row_the_plots_and_the_sizing() {
        let dir = temp_dir("report");
        let path = write_report(&[run("xgate", 390, 8.0)], None, &dir).expect("report written");
        let md = std::fs::read_to_string(&path).expect("report readable");
        let row =
            "| xgate | surge (ramp) | 400 in 4 s | 400/400 | 97.5 % | 0 | 0 | 1.5 / 8.0 / 12.0 |";
        assert!(md.contains(row), "{md}");
        for svg in [LATENCY_SVG, CONNECTED_SVG, RESOURCES_SVG] {
            assert!(md.contains(&format!("]({svg})")), "{svg} not linked:\n{md}");
            assert!(dir.join(svg).is_file(), "{svg} not written");
        }
        let failover_svg = dir.join(crate::failover_plot::FAILOVER_SVG);
        assert!(failover_svg.is_file(), "written, saying no failover ran");
        // The example's IKEv2 users cannot be sized without a side-by-side run.
        assert!(
            md.contains("Cannot be computed") && md.contains("run surge-mixed"),
            "{md}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn report_compares_targets_of_one_scenario() {
        let dir = temp_dir("report-compare");
        let runs = [run("xgate", 390, 8.0), run("wireguard-go", 195, 16.0)];
        let path = write_report(&runs, None, &dir).expect("report written");
        let md = std::fs::read_to_string(&path).expect("report readable");
        assert!(
            md.contains("(wireguard-go): 2.00x") && md.contains("16.0 ms: 0.50x"),
            "{md}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
