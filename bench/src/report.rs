//! The run's results as JSON (every figure) and as the Markdown summary with ratios and the
//! issue's targets, both under `bench-results/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::callgrind::InstructionFigure;
use crate::cipher::CipherFigure;
use crate::generator::DecryptFigure;
use crate::handover::{CounterFigure, CrossingFigure, HandoverFigure};
use crate::peers::{PeerFigure, TESTS};
use crate::registry::RegistryFigure;
use testbed::machine::Machine;

/// Everything one `make bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Where and what.
    pub machine: Machine,
    /// Wall-clock seconds the whole run took.
    pub duration_s: f64,
    /// `ring` on one core.
    pub cipher: Vec<CipherFigure>,
    /// iperf3 through each server.
    pub peers: Vec<PeerFigure>,
    /// Decrypt path alone, xgate and boringtun-cli.
    pub decrypt: Vec<DecryptFigure>,
    /// Decrypt path with 1 and 2 xgate workers.
    pub scaling: Vec<DecryptFigure>,
    /// Instructions per packet under callgrind.
    pub instructions: Vec<InstructionFigure>,
    /// Cross-worker TUN packets: handover queue against an atomic nonce.
    pub handover: Vec<HandoverFigure>,
    /// The send counter's cost on every packet, plain and atomic.
    pub counters: Option<CounterFigure>,
    /// How many TUN packets crossed workers in a 2-worker TCP run.
    pub crossing: Option<CrossingFigure>,
    /// The registry at start-up.
    pub registry: Option<RegistryFigure>,
    /// `perf report` of xgate during the 1420-byte decrypt run (top symbols).
    pub profile: String,
    /// The LAN lab: client, concentrator, LAN host.
    pub lan_lab: Vec<crate::lan_lab::LabFigure>,
    /// The decrypt generator through the LAN lab.
    pub lan_decrypt: Vec<DecryptFigure>,
    /// The LAN lab's server profiles: (run, `perf report` top entries).
    pub lan_profiles: Vec<(String, String)>,
}

/// `a / b`, NaN when `b` is not positive.
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// How a target reads in the reports: "met" or "**missed**".
pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

impl Results {
    fn peer(&self, server: &str, test: &str) -> Option<&PeerFigure> {
        self.peers
            .iter()
            .find(|p| p.server == server && p.test == test)
    }

    fn decrypt(&self, server: &str, size: usize) -> Option<&DecryptFigure> {
        self.decrypt
            .iter()
            .find(|d| d.server == server && d.size == size)
    }

    fn cipher(&self, cipher: &str, op: &str, payload: usize) -> Option<&CipherFigure> {
        self.cipher
            .iter()
            .find(|c| c.cipher == cipher && c.op == op && c.payload == payload)
    }

    fn instructions(&self, implementation: &str, op: &str, size: usize) -> f64 {
        self.instructions
            .iter()
            .find(|i| i.implementation == implementation && i.op == op && i.size == size)
            .map_or(f64::NAN, |i| i.instructions)
    }

    /// Writes `datapath-<date>-<commit>.json` and `datapath.md` into `dir`; returns the JSON's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let json = dir.join(format!(
            "datapath-{}-{}.json",
            self.machine.date, self.machine.commit
        ));
        let raw = serde_json::to_string_pretty(self)?;
        let md = self.markdown(&json);
        testbed::interrupt::write_results(&[
            (&json, raw.as_bytes()),
            (&dir.join("datapath.md"), md.as_bytes()),
        ])?;
        Ok(json)
    }

    /// xgate's two backends through the same tunnel: CPU per GB and throughput.
    pub fn backend_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n| test | xgate io_uring CPU-s/GB | xgate AF_XDP CPU-s/GB | AF_XDP/io_uring | io_uring Gbit/s | AF_XDP Gbit/s |\n|---|---|---|---|---|---|"
        );
        for test in TESTS {
            let (Some(u), Some(x)) = (self.peer("xgate", test), self.peer("xgate-af-xdp", test))
            else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {test} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                u.cpu_s_per_gb,
                x.cpu_s_per_gb,
                ratio(x.cpu_s_per_gb, u.cpu_s_per_gb),
                u.gbit_per_s,
                x.gbit_per_s
            );
        }
        s
    }

    /// The headline table the README shows (also at the top of `datapath.md`).
    pub fn summary_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| test | xgate CPU-s/GB | boringtun-cli CPU-s/GB | wireguard-go CPU-s/GB | xgate/boringtun | xgate/wireguard-go | xgate Gbit/s | boringtun Gbit/s | wireguard-go Gbit/s |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for test in TESTS {
            let (Some(x), Some(b), Some(g)) = (
                self.peer("xgate", test),
                self.peer("boringtun-cli", test),
                self.peer("wireguard-go", test),
            ) else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {test} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                x.cpu_s_per_gb,
                b.cpu_s_per_gb,
                g.cpu_s_per_gb,
                ratio(x.cpu_s_per_gb, b.cpu_s_per_gb),
                ratio(x.cpu_s_per_gb, g.cpu_s_per_gb),
                x.gbit_per_s,
                b.gbit_per_s,
                g.gbit_per_s
            );
        }
        s
    }

    fn markdown(&self, json: &Path) -> String {
        let mut s = String::new();
        self.header(&mut s, json);
        self.targets(&mut s);
        for n in self.notes() {
            let _ = writeln!(s, "\n{n}");
        }
        self.peers_section(&mut s);
        s.push_str(&crate::lan_lab::section(
            &self.lan_lab,
            &self.lan_decrypt,
            &self.lan_profiles,
        ));
        self.decrypt_section(&mut s);
        self.limits_section(&mut s);
        self.handover_section(&mut s);
        self.registry_section(&mut s);
        self.profile_section(&mut s);
        s
    }

    /// The title and the machine, commit and peers the run measured.
    fn header(&self, s: &mut String, json: &Path) {
        let m = &self.machine;
        let _ = writeln!(s, "# Datapath benchmark\n");
        let _ = writeln!(
            s,
            "Machine: {} ({} cores), kernel {}. Commit `{}`, {} UTC; the run took {:.0} s. \
             Peers: boringtun-cli `{}`, wireguard-go `{}`, {}. All figures: `{}`. \
             Reproduce with `make bench`.\n",
            m.cpu,
            m.cores,
            m.kernel,
            m.commit,
            m.date,
            self.duration_s,
            m.boringtun_cli,
            m.wireguard_go,
            m.iperf3,
            json.file_name().and_then(|n| n.to_str()).unwrap_or("")
        );
    }

    /// The targets table: each target, the measured figure, the verdict.
    fn targets(&self, s: &mut String) {
        let _ = writeln!(s, "## Targets\n");
        let _ = writeln!(s, "| target | measured | verdict |\n|---|---|---|");
        if let (Some(x), Some(b), Some(g)) = (
            self.peer("xgate", "tcp-1"),
            self.peer("boringtun-cli", "tcp-1"),
            self.peer("wireguard-go", "tcp-1"),
        ) {
            let rb = ratio(x.cpu_s_per_gb, b.cpu_s_per_gb);
            let rg = ratio(x.cpu_s_per_gb, g.cpu_s_per_gb);
            let _ = writeln!(
                s,
                "| server CPU per GB ≤ 1/3 of boringtun-cli's (TCP, 1 stream) | {rb:.2}× | {} |",
                verdict(rb <= 1.0 / 3.0)
            );
            let _ = writeln!(
                s,
                "| server CPU per GB ≤ 1/2 of wireguard-go's (TCP, 1 stream) | {rg:.2}× | {} |",
                verdict(rg <= 0.5)
            );
        }
        if let (Some(d), Some(c)) = (
            self.decrypt("xgate", 1420),
            self.cipher("chacha20-poly1305", "open", 1420),
        ) {
            let share = d.pps_per_core * 1420.0 / 1e9 / c.gbyte_per_s;
            let _ = writeln!(
                s,
                "| decrypt path at 1420 B ≥ 60% of ring's ChaCha20-Poly1305 open | {:.0}% ({:.2} of {:.2} GB/s per core) | {} |",
                share * 100.0,
                d.pps_per_core * 1420.0 / 1e9,
                c.gbyte_per_s,
                verdict(share >= 0.6)
            );
        }
        if let (Some(x), Some(u)) = (self.decrypt("xgate-af-xdp", 64), self.decrypt("xgate", 64)) {
            let r = ratio(x.pps_per_core, u.pps_per_core);
            let _ = writeln!(
                s,
                "| AF_XDP decrypt path ≥ 2× the io_uring backend's packets per core at 64 B (native XDP on veth) | {r:.2}× per server core, {:.2}× per busy machine CPU | {} |",
                ratio(x.pps_per_machine_cpu, u.pps_per_machine_cpu),
                verdict(r >= 2.0)
            );
        }
        if let [one, two, ..] = &self.scaling[..] {
            let r = ratio(two.pps, one.pps);
            let _ = writeln!(
                s,
                "| 2 workers ≥ 1.8× one worker (decrypt path, {} clients) | {r:.2}× | {} |",
                one.clients,
                verdict(r >= 1.8)
            );
        }
    }

    /// What the targets table needs explained, from the same figures.
    fn notes(&self) -> Vec<String> {
        let m = &self.machine;
        let mut notes = Vec::new();
        if let (Some(x), Some(u)) = (
            self.decrypt("xgate-af-xdp", 1420),
            self.decrypt("xgate", 1420),
        ) {
            notes.push(format!(
                "AF_XDP against io_uring at 1420 B: {:.2}× the packets per server core, {:.2}× \
                 per busy machine CPU. AF_XDP removes the socket receive (the copy out of the \
                 socket and the UDP stack), which weighs more on a 1420-byte packet than on a \
                 64-byte one; what both backends still pay per packet (the cipher call, the \
                 worker's ring and header handling, and one TUN write with the kernel's inner \
                 receive behind it) is why the 64-byte ratio stays near 1.",
                ratio(x.pps_per_core, u.pps_per_core),
                ratio(x.pps_per_machine_cpu, u.pps_per_machine_cpu),
            ));
        }
        if let (Some(n), Some(g)) = (
            self.decrypt("xgate-af-xdp", 64),
            self.decrypt("xgate-af-xdp-generic", 64),
        ) {
            notes.push(format!(
                "AF_XDP modes: veth offers copy mode only (the sockets report no zero-copy), so \
                 zero-copy is not measured on this machine. Native against generic XDP at 64 B: \
                 {:.2}× the packets per server core, {:.2}× per busy machine CPU ({} against {}). \
                 With XDP on a veth the program and the copy into the UMEM run in the sending \
                 core's softirq, outside the server's process: the per-machine-CPU figure counts \
                 that work wherever it ran, so compare backends by both.",
                ratio(n.pps_per_core, g.pps_per_core),
                ratio(n.pps_per_machine_cpu, g.pps_per_machine_cpu),
                n.server,
                g.server
            ));
        }
        if let [one, two, ..] = &self.scaling[..] {
            notes.push(format!(
                "Scaling: per second of server CPU, 2 workers decrypt {:.2}× what one worker \
                 does, so the cost per packet holds as workers are added; the total is bounded \
                 by the machine, whose {} cores also run the generator and the kernel's receive \
                 work. The 1.8× target needs cores to spare for a second worker.",
                ratio(two.pps_per_core, one.pps_per_core),
                m.cores
            ));
        }
        if self.decrypt("xgate", 1420).is_some() && !self.profile.is_empty() {
            let share = |needle: &str| -> f64 {
                self.profile
                    .lines()
                    .filter(|l| l.contains(needle))
                    .filter_map(|l| {
                        l.split_whitespace()
                            .next()?
                            .trim_end_matches('%')
                            .parse::<f64>()
                            .ok()
                    })
                    .sum()
            };
            notes.push(format!(
                "Decrypt path: in the profile at the end the cipher takes {:.0}% of the worker's \
                 samples and the kernel's copies out of the socket and into the TUN \
                 (`_copy_to_iter`, `_copy_from_iter`) {:.0}%; the rest is spread over the UDP, \
                 TUN and io_uring paths (io_uring backend).",
                share("chacha20_poly1305_open"),
                share("_copy_to_iter") + share("_copy_from_iter"),
            ));
        }
        notes
    }

    /// Server CPU per GB and throughput against the peers.
    fn peers_section(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## Server CPU per GB and throughput, same client, server on one core\n"
        );
        let _ = writeln!(
            s,
            "The `wireguard-go` client sends through the tunnel to each server for {} s per test. \
             The server process is pinned to CPU 0; client, iperf3 and everything else share CPU 1, \
             so throughput is mostly the client's limit and CPU seconds per GB (the server's own \
             user+system time over inner bytes it delivered) is the figure that compares servers. \
             UDP sizes are inner IP packet sizes. For xgate the last table also gives the \
             coalescing its counters show: packets per TUN write (runs of TCP segments written \
             as one super-packet) and datagrams per send on the kernel's outer socket \
             (UDP_SEGMENT batches; AF_XDP sends none there).\n",
            crate::peers::SECONDS
        );
        s.push_str(&self.summary_table());
        s.push_str(&self.backend_table());
        let _ = writeln!(
            s,
            "\n| server | test | Gbit/s | datagrams/s in | server CPU-s | packets per TUN write | \
             datagrams per outer send |\n|---|---|---|---|---|---|---|"
        );
        let per = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.1}"));
        for p in &self.peers {
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {:.0} | {:.2} | {} | {} |",
                p.server,
                p.test,
                p.gbit_per_s,
                p.pps,
                p.server_cpu_s,
                per(p.packets_per_tun_write),
                per(p.datagrams_per_send)
            );
        }
    }

    /// The decrypt path alone, per backend and size.
    fn decrypt_section(&self, s: &mut String) {
        let _ = writeln!(s, "\n## Decrypt path alone\n");
        let _ = writeln!(
            s,
            "Simulated clients handshake for real, then send pre-encrypted packets (distinct \
             counters) from CPU 1 as fast as it can; the server (CPU 0) decrypts and writes into \
             its TUN. pps is per wall second; pps/core is per second of the server's own CPU; \
             pps/machine-CPU is per second any core of the machine was busy (generator and \
             kernel included), which counts receive work the kernel does outside the server's \
             process. `xgate` is the io_uring backend, `xgate-af-xdp` the AF_XDP backend \
             (native XDP, copy mode: veth has no zero-copy), `-generic` the same in generic \
             XDP mode.\n"
        );
        let _ = writeln!(s, "| server | size | clients | sent | delivered | pps | Gbit/s | pps/core | pps/machine-CPU |\n|---|---|---|---|---|---|---|---|---|");
        for d in self.decrypt.iter().chain(self.scaling.iter()) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.0} | {:.0} |",
                d.server,
                d.size,
                d.clients,
                d.sent,
                d.delivered,
                d.pps,
                d.gbit_per_s,
                d.pps_per_core,
                d.pps_per_machine_cpu
            );
        }
        for size in [64usize, 1420] {
            if let (Some(x), Some(b)) = (
                self.decrypt("xgate", size),
                self.decrypt("boringtun-cli", size),
            ) {
                let _ = writeln!(
                    s,
                    "\nAt {size} B xgate decrypts {:.2}× boringtun-cli's packets per core ({:.2}× per wall second).",
                    ratio(x.pps_per_core, b.pps_per_core),
                    ratio(x.pps, b.pps)
                );
            }
        }
    }

    /// The cipher's ceiling on one core and callgrind's instructions per packet.
    fn limits_section(&self, s: &mut String) {
        let _ = writeln!(s, "\n## The limit: ring on one core\n");
        let _ = writeln!(
            s,
            "| cipher | op | payload | GB/s | Mpps |\n|---|---|---|---|---|"
        );
        for c in &self.cipher {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.2} |",
                c.cipher, c.op, c.payload, c.gbyte_per_s, c.mpps
            );
        }
        let _ = writeln!(
            s,
            "\n## Instructions per packet (callgrind, {} packets)\n",
            crate::callgrind::PACKETS
        );
        let _ = writeln!(
            s,
            "| op | size | xgate | boringtun | xgate/boringtun |\n|---|---|---|---|---|"
        );
        for op in ["seal", "open"] {
            for size in [64usize, 1420] {
                let x = self.instructions("xgate", op, size);
                let b = self.instructions("boringtun", op, size);
                let _ = writeln!(
                    s,
                    "| {op} | {size} | {x:.0} | {b:.0} | {:.2} |",
                    ratio(x, b)
                );
            }
        }
    }

    /// A TUN packet for another worker's peer: handover queue or atomic nonce.
    fn handover_section(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## A TUN packet for another worker's peer: handover queue or atomic nonce\n\n\
             Two cores; each packet sealed once with ChaCha20-Poly1305. `queue`: copied into the \
             owner's handover queue (a wake-up per {} packets), copied out and sealed by the \
             owner. `atomic nonce`: sealed on the core that read it, the nonce taken from a \
             send counter both cores increment. CPU nanoseconds per packet, both cores \
             together.\n\n| payload | queue | atomic nonce | queue/atomic |\n|---|---|---|---|",
            crate::handover::WAKE_EVERY
        );
        for size in [64usize, 1420] {
            let get = |m: &str| {
                self.handover
                    .iter()
                    .find(|h| h.mechanism == m && h.payload == size)
                    .map_or(f64::NAN, |h| h.cpu_ns_per_packet)
            };
            let (q, a) = (get("queue"), get("atomic nonce"));
            let _ = writeln!(s, "| {size} | {q:.0} | {a:.0} | {:.2} |", ratio(q, a));
        }
        if let Some(v) = self.handover_verdict() {
            let _ = writeln!(s, "\n{v}");
        }
    }

    /// The registry at start-up.
    fn registry_section(&self, s: &mut String) {
        if let Some(r) = &self.registry {
            let _ = writeln!(
                s,
                "\n## The registry at start-up\n\n{} peers (each with an IPv4 and an IPv6 address): \
                 created through the registry in {:.2} s (batches of 10,000, one transaction \
                 each); opened and every peer loaded with its addresses in {:.3} s; {:.1} MB on \
                 disk. `xgate up` on that registry, from launch until its socket answered with \
                 every peer configured (registry, control plane, workers): **{:.3} s** (target \
                 under 1 s; `wg show` then listed {} peers). Resident memory per peer: {:.0} \
                 bytes (boringtun-cli 18.6 KB, wireguard-go 10.1 KB per peer set by `wg \
                 setconf`, ../shared/DESIGN.md).",
                r.peers,
                r.create_s,
                r.load_s,
                r.file_bytes as f64 / 1e6,
                r.daemon_start_s,
                r.daemon_peers,
                r.daemon_bytes_per_peer
            );
        }
    }

    /// Where xgate's time goes, from perf.
    fn profile_section(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## Where xgate's time goes (decrypt path, 1420 B; `perf record -e cpu-clock`)\n\n```\n{}\n```",
            self.profile.trim()
        );
    }

    /// Which way of sending a TUN packet for another worker's peer costs less overall, from
    /// the measured figures: the queue's extra cost falls only on packets that cross workers,
    /// the atomic counter's on every packet a worker seals.
    fn handover_verdict(&self) -> Option<String> {
        let (c, x) = (self.counters.as_ref()?, self.crossing.as_ref()?);
        let get = |m: &str| {
            self.handover
                .iter()
                .find(|h| h.mechanism == m && h.payload == 1420)
                .map(|h| h.cpu_ns_per_packet)
        };
        let extra_queue = get("queue")? - get("atomic nonce")?;
        let share = ratio(x.handed_over as f64, x.tun_reads as f64);
        let queue_avg = share * extra_queue;
        let atomic_avg = c.atomic_ns - c.plain_ns;
        let kept = if queue_avg <= atomic_avg {
            "the queue costs less overall and is what xgate uses"
        } else {
            "**the atomic nonce would cost less overall**"
        };
        Some(format!(
            "Per crossing packet the queue costs {extra_queue:.0} ns more at 1420 B. But with 2 \
             workers and TCP both ways, {} of {} TUN packets crossed workers ({:.4}%: the TUN \
             sends a flow's packets to the queue that last wrote that flow, which is its \
             owner's), so the queue adds {queue_avg:.2} ns per TUN packet on average, while an \
             atomic send counter would add {atomic_avg:.2} ns ({:.2} against {:.2} ns per \
             increment) to every packet, and let two cores send one flow's packets out of \
             order. Verdict: {kept}.",
            x.handed_over,
            x.tun_reads,
            share * 100.0,
            c.atomic_ns,
            c.plain_ns,
        ))
    }
}
