//! The server seen from outside, once a second: CPU time and resident memory from `/proc`
//! (the same for every implementation), on a thread of its own so the load loop never waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One reading.
#[derive(Debug, Clone, Copy)]
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
    /// Starts reading `pid` every `every`, the first reading at once.
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("lt-sampler".into())
            .spawn(move || {
                let start = Instant::now();
                let mut out = Vec::new();
                let mut next = start;
                let read = |start: Instant| Sample {
                    t: start.elapsed().as_secs_f64(),
                    cpu_s: testbed::procstat::cpu_seconds(pid).unwrap_or(0.0),
                    rss: testbed::procstat::rss_bytes(pid),
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
