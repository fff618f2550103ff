//! Instructions per packet, which do not move with the machine's noise: callgrind counts the
//! kernel loops (`kernel.rs`) at N packets and at 0, and the difference over N is the cost of
//! one packet, for xgate and for the `boringtun` crate.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Packets per counted run.
pub const PACKETS: usize = 10_000;

/// One implementation, operation and size.
#[derive(Debug, Clone, Serialize)]
pub struct InstructionFigure {
    /// "xgate" or "boringtun".
    pub implementation: &'static str,
    /// "seal" or "open".
    pub op: &'static str,
    /// Inner packet bytes.
    pub size: usize,
    /// Instructions per packet.
    pub instructions: f64,
}

fn total_instructions(bench: &Path, dir: &Path, args: &[String]) -> Result<u64> {
    let out = dir.join("callgrind.out");
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bench)
        .args(args)
        .output()
        .context("running valgrind (apt install valgrind)")?;
    if !status.status.success() {
        bail!(
            "valgrind {args:?} failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let text = std::fs::read_to_string(&out)?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no instruction total in callgrind's output")
}

/// Counts every combination.
pub fn measure(bench: &Path, dir: &Path) -> Result<Vec<InstructionFigure>> {
    let mut out = Vec::new();
    for iname in ["xgate", "boringtun"] {
        for oname in ["seal", "open"] {
            for size in [64usize, 1420] {
                let args = |count: usize| {
                    vec![
                        "kernel".to_string(),
                        "--implementation".into(),
                        iname.into(),
                        "--op".into(),
                        oname.into(),
                        "--size".into(),
                        size.to_string(),
                        "--count".into(),
                        count.to_string(),
                    ]
                };
                let base = total_instructions(bench, dir, &args(0))?;
                let full = total_instructions(bench, dir, &args(PACKETS))?;
                let figure = InstructionFigure {
                    implementation: iname,
                    op: oname,
                    size,
                    instructions: full.saturating_sub(base) as f64 / PACKETS as f64,
                };
                eprintln!(
                    "  {:<10} {} {:>4} B: {:>8.0} instructions/packet",
                    iname, oname, size, figure.instructions
                );
                out.push(figure);
            }
        }
    }
    Ok(out)
}
