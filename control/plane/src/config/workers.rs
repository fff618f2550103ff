//! How the datapath workers run: how many, on which CPUs, the handshake threads beside them
//! (`workers`, `cpus`, `handshake_threads`) and how long they linger for a batch
//! (`batch_linger_us`).

use std::time::Duration;

use datapath::messages::MAX_WORKERS;

use super::{err, ConfigError, WorkersSetting};

/// Default time a worker waits for a batch to gather under load, in microseconds.
pub const DEFAULT_BATCH_LINGER_US: u64 = 250;
/// The longest batch linger accepted: beyond it the added latency is felt in interactive use.
pub const MAX_BATCH_LINGER_US: u64 = 5_000;

/// CPUs this process may run on.
pub(super) fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One worker per CPU (or per listed CPU), at most `MAX_WORKERS`: a receiver index names
/// its worker in 8 bits, so a machine with more cores runs 256 workers.
pub(super) fn auto_workers(cpus: &Option<Vec<usize>>) -> usize {
    cpus.as_ref()
        .map_or_else(cpu_count, |c| c.len().max(1))
        .min(MAX_WORKERS)
}

/// Workers, the CPU each is pinned to, and responder threads, from `[interface]`.
pub(super) fn thread_layout(
    workers: Option<WorkersSetting>,
    cpus: Option<Vec<usize>>,
    handshake_threads: Option<usize>,
) -> Result<(usize, Vec<Option<usize>>, usize), ConfigError> {
    let workers = match workers {
        None => auto_workers(&cpus),
        Some(WorkersSetting::Word(w)) if w == "auto" => auto_workers(&cpus),
        Some(WorkersSetting::Count(n)) if (1..=MAX_WORKERS).contains(&n) => n,
        Some(WorkersSetting::Count(n)) if n > MAX_WORKERS => {
            return Err(err(
                "interface.workers",
                format!(
                    "{n} workers is more than a receiver index can name (its top 8 bits name \
                     the worker)"
                ),
                format!("use \"auto\" or a number from 1 to {MAX_WORKERS}"),
            ))
        }
        Some(other) => {
            // As written, not as Rust debug text: `0`, or the quoted word.
            let written = match other {
                WorkersSetting::Count(n) => n.to_string(),
                WorkersSetting::Word(w) => format!("{w:?}"),
            };
            return Err(err(
                "interface.workers",
                format!("{written} is not a worker count"),
                format!("use \"auto\" (one per core) or a number from 1 to {MAX_WORKERS}"),
            ));
        }
    };
    let handshake_threads = match handshake_threads {
        None => cpu_count(),
        Some(n) if (1..=256).contains(&n) => n,
        Some(n) => {
            return Err(err(
                "interface.handshake_threads",
                format!("{n} is not a thread count"),
                "use a number from 1 to 256 (default: one per core)",
            ))
        }
    };
    let available = cpu_count();
    let pinned: Vec<Option<usize>> = match &cpus {
        Some(list) => {
            if let Some(bad) = list.iter().find(|c| **c >= available) {
                return Err(err(
                    "interface.cpus",
                    format!("CPU {bad} does not exist (this machine has {available})"),
                    format!("list CPUs from 0 to {}", available - 1),
                ));
            }
            (0..workers)
                .map(|i| list.get(i % list.len().max(1)).copied())
                .collect()
        }
        None => (0..workers).map(|i| Some(i % available)).collect(),
    };
    Ok((workers, pinned, handshake_threads))
}

/// `batch_linger_us`, checked: the default when unset, at most `MAX_BATCH_LINGER_US`.
pub(super) fn batch_linger(value: Option<u64>) -> Result<Duration, ConfigError> {
    let linger = value.unwrap_or(DEFAULT_BATCH_LINGER_US);
    if linger > MAX_BATCH_LINGER_US {
        return Err(err(
            "interface.batch_linger_us",
            format!("{linger} is more than {MAX_BATCH_LINGER_US}"),
            format!(
                "use 0..={MAX_BATCH_LINGER_US} microseconds: 0 takes every packet at \
                 once; the default {DEFAULT_BATCH_LINGER_US} lets a worker that packets \
                 stream into wait up to that long for a batch"
            ),
        ));
    }
    Ok(Duration::from_micros(linger))
}
