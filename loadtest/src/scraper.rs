//! A Prometheus scraper beside a run: `GET /metrics` at a fixed rate from inside the server's
//! namespace, accepting gzip (as a Prometheus server on the box would), so the run's handshakes per CPU-second show
//! what scraping costs the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use testbed::Netns;

/// What the scraper did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ScrapeFigures {
    /// Scrapes per second asked for.
    pub per_second: u32,
    /// Scrapes answered with 200.
    pub answered: u64,
    /// Scrapes that failed (an error status, or no answer within 5 s).
    pub failed: u64,
    /// Slowest answer, ms.
    pub max_ms: f64,
}

/// A running scraper; `finish` stops it and says what it did.
pub struct Scraper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<ScrapeFigures>>,
}

impl Scraper {
    /// Scrapes `url` `per_second` times a second from `ns` until finished, or `bound` at most.
    pub fn start(ns: &Netns, url: String, per_second: u32, bound: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = ns.spawn(move || scrape(&url, per_second, bound, &stopping));
        Self { stop, thread }
    }

    /// Stops scraping.
    pub fn finish(self) -> Result<ScrapeFigures> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the scraper panicked"))?
    }
}

fn scrape(url: &str, per_second: u32, bound: Duration, stop: &AtomicBool) -> ScrapeFigures {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let every = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
    let started = Instant::now();
    let mut figures = ScrapeFigures {
        per_second,
        ..ScrapeFigures::default()
    };
    let mut next = started;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < bound {
        let sent = Instant::now();
        // As Prometheus asks: gzip accepted (the body is only counted, not read).
        let answer = agent.get(url).set("Accept-Encoding", "gzip").call();
        let read = answer.map(|r| {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut body).map(|_| body.len())
        });
        match read {
            Ok(Ok(n)) if n > 0 => figures.answered += 1,
            _ => figures.failed += 1,
        }
        figures.max_ms = figures.max_ms.max(sent.elapsed().as_secs_f64() * 1e3);
        // A fixed schedule: a slow answer is followed by the scrapes that were due.
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    figures
}
