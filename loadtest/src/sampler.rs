//! The server seen from outside, once a second: CPU time and resident memory from `/proc`
//! (the same for every implementation), on a thread of its own so the load loop never waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One reading.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t: f64,
    /// Server CPU seconds so far (all threads).
    pub cpu_s: f64,
    /// Server resident memory, bytes.
    pub rss: u64,
}

/// A running sampler; `stop` returns its readings.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Sample>>>,
}

impl Sampler {
    /// Starts reading `pids` (their sum: a cluster's nodes) every `every`, the first reading
    /// at once. A process that has died keeps the CPU time it had; its memory is gone.
    pub fn start(pids: &[u32], every: Duration) -> Self {
        let pids = pids.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("lt-sampler".into())
            .spawn(move || {
                let start = Instant::now();
                let mut out = Vec::new();
                let mut next = start;
                let mut last = vec![Sample::default(); pids.len()];
                let mut read = |start: Instant| {
                    for (pid, l) in pids.iter().zip(last.iter_mut()) {
                        match testbed::procstat::cpu_seconds(*pid) {
                            Some(cpu_s) => {
                                l.cpu_s = cpu_s;
                                l.rss = testbed::procstat::rss_bytes(*pid);
                            }
                            None => l.rss = 0,
                        }
                    }
                    Sample {
                        t: start.elapsed().as_secs_f64(),
                        cpu_s: last.iter().map(|l| l.cpu_s).sum(),
                        rss: last.iter().map(|l| l.rss).sum(),
                    }
                };
                while !flag.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        out.push(read(start));
                        next += every;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                // One more at the stop, closing the run's last partial second.
                out.push(read(start));
                out
            })
            .expect("spawning the sampler thread");
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and returns every reading.
    pub fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    /// A run that fails midway still stops its sampler.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
