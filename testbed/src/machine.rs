//! What the figures were measured on: CPU, cores, kernel, commit, peer versions.

use std::process::Command;

use serde::{Deserialize, Serialize};

/// The machine and the code a run measured.
/// Fields a result file lacks (older runs) read as empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// xgate commit (`-dirty` when the tree had changes).
    pub commit: String,
    /// UTC date of the run.
    pub date: String,
    /// `boringtun-cli --version`.
    pub boringtun_cli: String,
    /// `wireguard-go --version`.
    pub wireguard_go: String,
    /// `iperf3 --version`, first line.
    pub iperf3: String,
}

fn output(program: &str, args: &[&str]) -> String {
    let found = crate::process::find_program(program).unwrap_or_else(|| program.into());
    Command::new(found)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

impl Machine {
    /// Reads it all now.
    pub fn detect() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        // Results written by earlier runs (bench-results/) do not make the code dirty.
        let dirty = !output(
            "git",
            &[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":/",
                ":(top,exclude)bench-results",
            ],
        )
        .is_empty();
        let mut commit = output("git", &["rev-parse", "--short=10", "HEAD"]);
        if dirty {
            commit.push_str("-dirty");
        }
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: output("uname", &["-r"]),
            commit,
            date: output("date", &["-u", "+%Y-%m-%d"]),
            boringtun_cli: output("boringtun-cli", &["--version"]),
            wireguard_go: output("wireguard-go", &["--version"]),
            iperf3: output("iperf3", &["--version"]),
        }
    }
}
