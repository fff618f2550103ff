//! `xgate-bench`: the datapath benchmark behind `make bench`. Measures, in one run on one
//! machine, `ring`'s cipher limit, xgate beside boringtun-cli and wireguard-go with the same
//! client, the decrypt path alone, 1 against 2 workers, instructions per packet, and IPsec
//! (xgate beside strongSwan as the server, the same strongSwan client); writes JSON and
//! Markdown summaries to `bench-results/`.

mod callgrind;
mod cipher;
mod esp_generator;
mod generator;
mod handover;
mod ike_pki;
mod ike_setups;
mod ipsec;
mod kernel;
mod lan_decrypt;
mod lan_lab;
mod peers;
mod registry;
mod report;
mod rig;
mod syscalls;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::rig::ServerKind;

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
        /// Run only these sections (cipher, callgrind, handover, registry, peers, lan, decrypt, scaling, ipsec) and only for
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

fn is_xgate(server: ServerKind) -> bool {
    !matches!(server, ServerKind::Boringtun | ServerKind::WireguardGo)
}

fn scratch() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("xgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// One `xgate-bench run`: which sections to measure, and where.
struct Plan<'a> {
    xgate: &'a Path,
    dir: PathBuf,
    quick: bool,
    only: &'a [String],
}

/// The LAN lab's figures, and the server's profile (label, `perf report` top) per profiled run.
type LabFigures = (Vec<lan_lab::LabFigure>, Vec<(String, String)>);

/// Handover mechanism figures, the send counters' cost, and how many TUN packets cross.
type HandoverFigures = (
    Vec<handover::HandoverFigure>,
    Option<handover::CounterFigure>,
    Option<handover::CrossingFigure>,
);

impl Plan<'_> {
    /// The section is asked for (all are, unless `--only` names some).
    fn want(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == section)
    }

    /// `--only` limits the run to xgate's own figures (no peers) as well.
    fn skip_server(&self, section: &str, server: ServerKind) -> bool {
        !self.want(section) || (!self.only.is_empty() && !is_xgate(server))
    }

    fn cipher(&self) -> Vec<cipher::CipherFigure> {
        eprintln!("the limit: ring on one core");
        if !self.want("cipher") {
            return Vec::new();
        }
        let spend = Duration::from_millis(if self.quick { 100 } else { 500 });
        let cipher = rig::on_cpu(1, || cipher::measure(spend));
        for c in &cipher {
            eprintln!(
                "  {:<18} {} {:>4} B: {:>6.2} GB/s {:>6.2} Mpps",
                c.cipher, c.op, c.payload, c.gbyte_per_s, c.mpps
            );
        }
        cipher
    }

    fn handover(&self) -> Result<HandoverFigures> {
        eprintln!("cross-worker TUN packets: handover queue against an atomic nonce");
        if !self.want("handover") {
            return Ok((Vec::new(), None, None));
        }
        let handover = handover::measure(if self.quick { 50_000 } else { 1_000_000 })?;
        let c = rig::on_cpu(1, || handover::counters(100_000_000));
        let x = handover::crossing(self.xgate, &self.dir)?;
        for h in &handover {
            eprintln!(
                "  {:<13} {:>4} B: {:>7.0} CPU-ns per packet",
                h.mechanism, h.payload, h.cpu_ns_per_packet
            );
        }
        eprintln!(
            "  send counter: plain {:.2} ns, atomic {:.2} ns; 2 workers, TCP both ways: {} of {} \
             TUN packets handed over",
            c.plain_ns, c.atomic_ns, x.handed_over, x.tun_reads
        );
        Ok((handover, Some(c), Some(x)))
    }

    fn registry(&self) -> Result<Option<registry::RegistryFigure>> {
        eprintln!("registry: create and load peers as `xgate up` does");
        if !self.want("registry") {
            return Ok(None);
        }
        let peers = if self.quick { 10_000 } else { 100_000 };
        let f = registry::measure(&self.dir, peers, self.xgate)?;
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
        Ok(Some(f))
    }

    fn peers(&self) -> Result<Vec<peers::PeerFigure>> {
        eprintln!("peers side by side (iperf3 through the tunnel, server on CPU 0)");
        let mut peers = Vec::new();
        for server in [
            ServerKind::Xgate(1),
            ServerKind::XgateAfXdp,
            ServerKind::Boringtun,
            ServerKind::WireguardGo,
        ] {
            if !self.skip_server("peers", server) {
                peers.extend(peers::measure(server, self.xgate, &self.dir)?);
            }
        }
        Ok(peers)
    }

    /// The decrypt generator through the LAN lab, at 64 and 1420 bytes: WireGuard for every
    /// server, then ESP for xgate's two LAN sides.
    fn lan_decrypt(&self) -> Result<Vec<generator::DecryptFigure>> {
        let mut figures = Vec::new();
        if !self.want("lan") {
            return Ok(figures);
        }
        eprintln!("decrypt generator through the LAN lab");
        let (small, large) = self.counts();
        use lan_decrypt::Sealing;
        let wireguard = lan_lab::LabServer::ALL
            .into_iter()
            .filter(|s| s.is_xgate() || self.only.is_empty())
            .map(|s| (s, Sealing::WireGuard));
        // ESP's decrypt path through both LAN sides (issue 20's 10 Gbit/s per core target).
        let esp =
            [lan_lab::LabServer::XgateTun, lan_lab::LabServer::XgateLan].map(|s| (s, Sealing::Esp));
        for run in wireguard.chain(esp) {
            for (size, count) in [(64, small), (1420, large)] {
                figures.push(lan_decrypt::measure(
                    run, self.xgate, &self.dir, size, count,
                )?);
            }
        }
        Ok(figures)
    }

    /// The LAN lab: xgate with the TUN and with AF_XDP on the LAN, and the peers (the
    /// wireguard-go client); xgate's two LAN sides again with xgate as the client, profiled.
    fn lan_lab(&self) -> Result<LabFigures> {
        let (mut figures, mut profiles) = (Vec::new(), Vec::new());
        if !self.want("lan") {
            return Ok((figures, profiles));
        }
        eprintln!("LAN lab (client -> concentrator -> LAN host, iperf3 on the LAN host)");
        let xgate_client = [lan_lab::LabServer::XgateTun, lan_lab::LabServer::XgateLan]
            .map(|s| (s, lan_lab::LabClient::Xgate));
        let runs = lan_lab::LabServer::ALL
            .map(|s| (s, lan_lab::LabClient::WireguardGo))
            .into_iter()
            .chain(xgate_client);
        for (server, client) in runs {
            if server.is_xgate() || self.only.is_empty() {
                let run = lan_lab::measure(server, client, self.xgate, &self.dir)?;
                figures.extend(run.figures);
                profiles.extend(run.profile);
            }
        }
        if !self.only.is_empty() {
            for (label, text) in &profiles {
                eprintln!("{label}:\n{text}");
            }
        }
        Ok((figures, profiles))
    }

    /// Packets per decrypt test: (64 B, 1420 B).
    fn counts(&self) -> (usize, usize) {
        if self.quick {
            (100_000, 30_000)
        } else {
            (1_000_000, 300_000)
        }
    }

    /// The decrypt path alone, and the profile of one of its runs.
    fn decrypt(&self) -> Result<(Vec<generator::DecryptFigure>, String)> {
        eprintln!("decrypt path alone");
        let (small, large) = self.counts();
        let mut decrypt = Vec::new();
        let mut profile = String::new();
        for server in [
            ServerKind::Xgate(1),
            ServerKind::XgateAfXdp,
            ServerKind::XgateAfXdpGeneric,
            ServerKind::Boringtun,
        ] {
            if self.skip_server("decrypt", server) {
                continue;
            }
            for (size, count) in [(64, small), (1420, large)] {
                // XGATE_BENCH_PROFILE=<server>:<size> profiles another run (development).
                let want_profile = match std::env::var("XGATE_BENCH_PROFILE") {
                    Ok(spec) => spec == format!("{}:{size}", server.label()),
                    Err(_) => server == ServerKind::Xgate(1) && size == 1420,
                };
                let (figure, p) = generator::measure(
                    server,
                    self.xgate,
                    &self.dir,
                    size,
                    1,
                    count,
                    want_profile,
                )?;
                if let Some(p) = p {
                    profile = p;
                }
                decrypt.push(figure);
            }
        }
        if !self.only.is_empty() && !profile.is_empty() {
            eprintln!("where xgate's time goes (decrypt, 1420 B):\n{profile}");
        }
        Ok((decrypt, profile))
    }

    fn scaling(&self) -> Result<Vec<generator::DecryptFigure>> {
        eprintln!("scaling: 1 and 2 xgate workers, 8 clients");
        if !self.want("scaling") {
            return Ok(Vec::new());
        }
        let count = self.counts().1 / 4;
        [1, 2]
            .into_iter()
            .map(|workers| {
                let server = ServerKind::Xgate(workers);
                generator::measure(server, self.xgate, &self.dir, 1420, 8, count, false)
                    .map(|(figure, _)| figure)
            })
            .collect()
    }
}

fn run(out: &Path, xgate: &Path, quick: bool, only: &[String]) -> Result<()> {
    // Cut short (timeout, Ctrl-C), the run still removes its namespaces and daemons.
    testbed::interrupt::clean_up_on_signals()?;
    let started = Instant::now();
    let plan = Plan {
        xgate,
        dir: scratch()?,
        quick,
        only,
    };
    let bench = std::env::current_exe()?;
    let machine = testbed::machine::Machine::detect();
    eprintln!(
        "machine: {} ({} cores), kernel {}, commit {}",
        machine.cpu, machine.cores, machine.kernel, machine.commit
    );
    let cipher = plan.cipher();
    eprintln!("instructions per packet (callgrind)");
    let instructions = if plan.want("callgrind") {
        callgrind::measure(&bench, &plan.dir)?
    } else {
        Vec::new()
    };
    let (handover, counters, crossing) = plan.handover()?;
    let registry = plan.registry()?;
    let peers = plan.peers()?;
    let (lan_lab, lan_profiles) = plan.lan_lab()?;
    let lan_decrypt = plan.lan_decrypt()?;
    let (decrypt, profile) = plan.decrypt()?;
    let scaling = plan.scaling()?;
    let ipsec = if plan.want("ipsec") {
        let context = (machine.clone(), cipher.clone());
        Some(ipsec::measure(xgate, &plan.dir, plan.counts(), context)?)
    } else {
        None
    };
    if !only.is_empty() {
        let _ = std::fs::remove_dir_all(&plan.dir);
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
        lan_lab,
        lan_decrypt,
        lan_profiles,
    };
    let json = results.write(out)?;
    let ipsec_json = ipsec.as_ref().map(|i| i.write(out)).transpose()?;
    let _ = std::fs::remove_dir_all(&plan.dir);
    println!("{}", results.summary_table());
    if let (Some(i), Some(path)) = (&ipsec, ipsec_json) {
        println!("{}", i.table());
        println!("wrote {}", path.display());
    }
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
