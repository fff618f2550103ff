//! `xgate-loadtest`: run a login-surge scenario against xgate (and the peers), write the
//! results to bench-results/, turn them into the capacity report, and size a deployment.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use loadtest::results::RunResult;
use loadtest::run::{run, RunOptions};
use loadtest::scenario::{Scenario, BUILT_IN};
use loadtest::sizing::{self, Need};
use loadtest::target::TargetKind;

#[derive(Parser)]
#[command(
    name = "xgate-loadtest",
    about = "Login-surge loadtest and capacity report for xgate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario against one or more servers and writes the results.
    Run {
        /// A built-in scenario name or a TOML file (see `scenarios`).
        #[arg(long, default_value = "surge")]
        scenario: String,
        /// Servers to run it against, in order (repeat or comma-separate).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "xgate")]
        target: Vec<TargetKind>,
        /// Overrides the scenario's number of users.
        #[arg(long)]
        users: Option<u32>,
        /// Overrides the scenario's arrival window, seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// The xgate binary.
        #[arg(long, default_value = "target/release/xgate")]
        xgate: PathBuf,
        /// Where results go.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// Also write the capacity report from every latest result in --out.
        #[arg(long)]
        report: bool,
        /// No live progress bar.
        #[arg(long)]
        quiet: bool,
        /// Threads the simulated users are spread over (default: one per CPU the server
        /// does not use).
        #[arg(long)]
        load_threads: Option<usize>,
    },
    /// Writes capacity.md and its plots from result files (default: the latest run of each
    /// scenario and target in --out).
    Report {
        /// Result files.
        files: Vec<PathBuf>,
        /// Where results are read from and the report is written.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// How many cores and boxes a deployment needs, from measured figures only.
    Size {
        /// Users who may log in within the surge window.
        #[arg(long)]
        users: u64,
        /// Aggregate tunnel throughput, Gbit/s.
        #[arg(long, default_value_t = 0.0)]
        gbps: f64,
        /// Target p99 handshake latency during the surge, ms.
        #[arg(long, default_value_t = 200.0)]
        p99_ms: f64,
        /// Seconds in which all users log in.
        #[arg(long, default_value_t = 60.0)]
        surge_seconds: f64,
        /// Cores per box.
        #[arg(long, default_value_t = 16)]
        cores_per_box: u32,
        /// The share of the users on IKEv2 (0 to 1; the rest on WireGuard).
        #[arg(long, default_value_t = 0.0)]
        ike_share: f64,
        /// Where measured results are read from.
        #[arg(long, default_value = "bench-results")]
        results: PathBuf,
    },
    /// Lists the built-in scenarios.
    Scenarios,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xgate-loadtest: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Run {
            scenario,
            target,
            users,
            seconds,
            xgate,
            out,
            report,
            quiet,
            load_threads,
        } => {
            // Cut short (timeout, Ctrl-C), the run still removes its namespaces and daemons.
            testbed::interrupt::clean_up_on_signals()?;
            let mut s = Scenario::load(&scenario)?;
            if let Some(u) = users {
                s.users = u;
            }
            if let Some(secs) = seconds {
                s.seconds = secs;
            }
            s.check()?;
            anyhow::ensure!(
                xgate.is_file() || !target.contains(&TargetKind::Xgate),
                "{} not found: build it first (cargo build --release) or pass --xgate",
                xgate.display()
            );
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut done = Vec::new();
            for t in target {
                let r = run(&RunOptions {
                    scenario: s.clone(),
                    target: t,
                    xgate: xgate.clone(),
                    server_cpus: vec![0],
                    load_cpus: (1..cores).collect(),
                    load_threads: load_threads.unwrap_or(cores.saturating_sub(1)).max(1),
                    progress: !quiet,
                    tag: format!("{}", std::process::id()),
                })?;
                let path = r.write(&out)?;
                println!("{}", summary_line(&r));
                for f in r.ike.iter().chain(&r.ike_side_by_side) {
                    println!("  {}", ike_line(f));
                }
                if let Some(f) = &r.failover {
                    println!("  {}", loadtest::failover::line(f));
                }
                println!("wrote {}", path.display());
                done.push(r);
            }
            // What these runs alone say about the report's example deployment.
            let datapath = loadtest::results::latest_datapath(&out)?.or(
                loadtest::results::latest_datapath(Path::new("bench-results"))?,
            );
            let m = sizing::measured(&done, datapath.as_ref().map(|(_, v)| v));
            // A run without IKEv2 users side by side sizes the example all on WireGuard.
            let mut need = loadtest::report::EXAMPLE_NEED;
            if m.ike_setups_per_core_s.is_none() {
                need.ike_share = 0.0;
            }
            match sizing::size(&need, &m) {
                Ok(s) => println!("sizing: {}", sizing::sizing_line(&s)),
                Err(e) => println!("sizing: not computable from this run: {e:#}"),
            }
            if report {
                let runs = loadtest::results::latest_results(&out)?;
                let path = write_report(&runs, &out)?;
                println!("wrote {}", path.display());
            }
        }
        Command::Report { files, out } => {
            let runs = if files.is_empty() {
                loadtest::results::latest_results(&out)?
            } else {
                files
                    .iter()
                    .map(|f| RunResult::read(f))
                    .collect::<Result<_>>()?
            };
            let path = write_report(&runs, &out)?;
            println!("wrote {}", path.display());
        }
        Command::Size {
            users,
            gbps,
            p99_ms,
            surge_seconds,
            cores_per_box,
            ike_share,
            results,
        } => {
            anyhow::ensure!(users > 0, "--users: give the number of users to size for");
            anyhow::ensure!(
                gbps >= 0.0 && p99_ms > 0.0 && surge_seconds > 0.0 && cores_per_box > 0,
                "--gbps must be >= 0; --p99-ms, --surge-seconds and --cores-per-box above 0"
            );
            let runs = loadtest::results::latest_results(&results)?;
            let datapath = loadtest::results::latest_datapath(&results)?;
            let m = sizing::measured(&runs, datapath.as_ref().map(|(_, v)| v));
            let s = sizing::size(
                &Need {
                    users,
                    gbps,
                    p99_ms,
                    surge_seconds,
                    cores_per_box,
                    ike_share,
                },
                &m,
            )?;
            for l in &s.lines {
                println!("{l}");
            }
        }
        Command::Scenarios => {
            for (name, text) in BUILT_IN {
                let first = text.lines().next().unwrap_or("").trim_start_matches("# ");
                println!("{name:12} {first}");
            }
        }
    }
    Ok(())
}

/// One line for the console.
fn summary_line(r: &RunResult) -> String {
    let c = &r.clients;
    format!(
        "{} {}: {}/{} connected ({} on first attempt), handshake p50 {:.1} ms p99 {:.1} ms, \
         first byte p99 {:.1} ms, {} cookie replies, server {:.1} CPU-s, {:.0} handshakes per CPU-s",
        r.target,
        r.scenario.name,
        c.connected,
        c.attempts,
        c.connected_first_attempt,
        r.latency.handshake_ms.p50,
        r.latency.handshake_ms.p99,
        r.latency.first_byte_ms.p99,
        c.cookie_replies,
        r.server.cpu_seconds,
        r.server.handshakes_per_cpu_second,
    )
}

/// One line for the console per IKEv2 row.
fn ike_line(f: &loadtest::ike_load::IkeFigures) -> String {
    let cpu = if f.server_cpu_s > 0.0 {
        format!(
            ", server {:.2} CPU-s ({:.2} of it idle) = {:.0} logins per CPU-s, {:.0} B per SA",
            f.server_cpu_s,
            f.idle_cpu_s,
            f.setups_per_cpu_s(),
            f.bytes_per_sa
        )
    } else {
        String::new()
    };
    format!(
        "IKEv2 {} {}: {}/{} logged in, {} pinged back, setup p50 {:.1} ms p99 {:.1} ms{cpu}",
        f.server, f.auth, f.connected, f.users, f.first_byte, f.setup_ms.p50, f.setup_ms.p99
    )
}

fn write_report(runs: &[RunResult], out: &Path) -> Result<PathBuf> {
    let datapath = loadtest::results::latest_datapath(out)?;
    loadtest::report::write_report(runs, datapath.as_ref().map(|(p, v)| (p.as_path(), v)), out)
}
