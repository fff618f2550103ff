//! `xgate-bench`: the datapath benchmark behind `make bench`. Measures, in one run on one
//! machine, `ring`'s cipher limit, xgate beside boringtun-cli and wireguard-go with the same
//! client, the decrypt path alone, 1 against 2 workers, and instructions per packet; writes
//! JSON and a Markdown summary to `bench-results/`.

mod callgrind;
mod cipher;
mod generator;
mod handover;
mod kernel;
mod peers;
mod registry;
mod report;
mod rig;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::rig::Server;

/// xgate's datapath benchmark.
#[derive(Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure everything and write bench-results/ (needs root, iperf3, valgrind, perf).
    Run {
        /// Where results go.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// The xgate binary (default: beside this one).
        #[arg(long)]
        xgate: Option<PathBuf>,
        /// Fewer packets and shorter runs: checks the harness, not the machine.
        #[arg(long)]
        quick: bool,
        /// Run only these sections (cipher, callgrind, handover, registry, peers, decrypt, scaling) and only for
        /// xgate where it applies; prints figures, writes nothing. For development.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// One callgrind kernel: seal or open COUNT packets (used by `run`).
    Kernel {
        /// Whose transport path.
        #[arg(long, value_enum)]
        implementation: kernel::Implementation,
        /// Seal or open.
        #[arg(long, value_enum)]
        op: kernel::Op,
        /// Inner packet bytes.
        #[arg(long)]
        size: usize,
        /// Packets.
        #[arg(long)]
        count: usize,
    },
}

fn is_xgate(server: Server) -> bool {
    !matches!(server, Server::Boringtun | Server::WireguardGo)
}

fn scratch() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("xgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn run(out: &Path, xgate: &Path, quick: bool, only: &[String]) -> Result<()> {
    let want = |section: &str| only.is_empty() || only.iter().any(|o| o == section);
    let xgate_only = !only.is_empty();
    let started = Instant::now();
    let dir = scratch()?;
    let bench = std::env::current_exe()?;
    let machine = testbed::machine::Machine::detect();
    eprintln!(
        "machine: {} ({} cores), kernel {}, commit {}",
        machine.cpu, machine.cores, machine.kernel, machine.commit
    );

    eprintln!("the limit: ring on one core");
    let cipher = if want("cipher") {
        rig::on_cpu(1, || {
            cipher::measure(Duration::from_millis(if quick { 100 } else { 500 }))
        })
    } else {
        Vec::new()
    };
    for c in &cipher {
        eprintln!(
            "  {:<18} {} {:>4} B: {:>6.2} GB/s {:>6.2} Mpps",
            c.cipher, c.op, c.payload, c.gbyte_per_s, c.mpps
        );
    }

    eprintln!("instructions per packet (callgrind)");
    let instructions = if want("callgrind") {
        callgrind::measure(&bench, &dir)?
    } else {
        Vec::new()
    };

    eprintln!("cross-worker TUN packets: handover queue against an atomic nonce");
    let (handover, counters, crossing) = if want("handover") {
        let h = handover::measure(if quick { 50_000 } else { 1_000_000 })?;
        let c = rig::on_cpu(1, || handover::counters(100_000_000));
        (h, Some(c), Some(handover::crossing(xgate, &dir)?))
    } else {
        (Vec::new(), None, None)
    };
    for h in &handover {
        eprintln!(
            "  {:<13} {:>4} B: {:>7.0} CPU-ns per packet",
            h.mechanism, h.payload, h.cpu_ns_per_packet
        );
    }
    if let (Some(c), Some(x)) = (&counters, &crossing) {
        eprintln!(
            "  send counter: plain {:.2} ns, atomic {:.2} ns; 2 workers, TCP both ways: {} of {} \
             TUN packets handed over",
            c.plain_ns, c.atomic_ns, x.handed_over, x.tun_reads
        );
    }

    eprintln!("registry: create and load peers as `xgate up` does");
    let registry = if want("registry") {
        let f = registry::measure(&dir, if quick { 10_000 } else { 100_000 }, xgate)?;
        eprintln!(
            "  {} peers: created in {:.2} s, opened and loaded in {:.3} s, {:.1} MB on disk; \
             xgate up answered in {:.3} s with {} peers, {:.0} bytes per peer",
            f.peers,
            f.create_s,
            f.load_s,
            f.file_bytes as f64 / 1e6,
            f.daemon_start_s,
            f.daemon_peers,
            f.daemon_bytes_per_peer
        );
        Some(f)
    } else {
        None
    };

    eprintln!("peers side by side (iperf3 through the tunnel, server on CPU 0)");
    let mut peers = Vec::new();
    for server in [
        Server::Xgate(1),
        Server::XgateAfXdp,
        Server::Boringtun,
        Server::WireguardGo,
    ] {
        if !want("peers") || (xgate_only && !is_xgate(server)) {
            continue;
        }
        peers.extend(peers::measure(server, xgate, &dir)?);
    }

    eprintln!("decrypt path alone");
    let (small, large) = if quick {
        (100_000, 30_000)
    } else {
        (1_000_000, 300_000)
    };
    let mut decrypt = Vec::new();
    let mut profile = String::new();
    for server in [
        Server::Xgate(1),
        Server::XgateAfXdp,
        Server::XgateAfXdpGeneric,
        Server::Boringtun,
    ] {
        if !want("decrypt") || (xgate_only && !is_xgate(server)) {
            continue;
        }
        for (size, count) in [(64, small), (1420, large)] {
            // XGATE_BENCH_PROFILE=<server>:<size> profiles another run (development).
            let want_profile = match std::env::var("XGATE_BENCH_PROFILE") {
                Ok(spec) => spec == format!("{}:{size}", server.label()),
                Err(_) => server == Server::Xgate(1) && size == 1420,
            };
            let (figure, p) =
                generator::measure(server, xgate, &dir, size, 1, count, want_profile)?;
            if let Some(p) = p {
                profile = p;
            }
            decrypt.push(figure);
        }
    }

    if xgate_only && !profile.is_empty() {
        eprintln!("where xgate's time goes (decrypt, 1420 B):\n{profile}");
    }

    eprintln!("scaling: 1 and 2 xgate workers, 8 clients");
    let mut scaling = Vec::new();
    for workers in [1, 2] {
        if !want("scaling") {
            continue;
        }
        let (figure, _) = generator::measure(
            Server::Xgate(workers),
            xgate,
            &dir,
            1420,
            8,
            large / 4,
            false,
        )?;
        scaling.push(figure);
    }

    if !only.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    let results = report::Results {
        machine,
        duration_s: started.elapsed().as_secs_f64(),
        cipher,
        peers,
        decrypt,
        scaling,
        instructions,
        handover,
        counters,
        crossing,
        registry,
        profile,
    };
    let json = results.write(out)?;
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", results.summary_table());
    println!(
        "wrote {} and {}",
        json.display(),
        out.join("datapath.md").display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            out,
            xgate,
            quick,
            only,
        } => {
            let xgate = xgate.unwrap_or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.join("xgate")))
                    .unwrap_or_else(|| PathBuf::from("xgate"))
            });
            run(&out, &xgate, quick, &only)
        }
        Command::Kernel {
            implementation,
            op,
            size,
            count,
        } => {
            kernel::run(implementation, op, size, count).map(|sum| {
                // Printed so the work cannot be optimised away.
                println!("{sum}");
            })
        }
    };
    match result.context("xgate-bench") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
