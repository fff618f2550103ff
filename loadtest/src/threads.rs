//! The load spread over threads: user `u` and its socket go to thread `u mod n` (every
//! attempt of a user, its reconnection too, stays on one thread, so no state is shared),
//! each thread runs the engine over its share, and their tallies add up to the run's.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::client::{Attempt, Shared};
use crate::engine::{self, Progress, User};
use crate::tally::Tally;

/// How the load is spread.
#[derive(Debug, Clone)]
pub struct Spread {
    /// Load threads.
    pub threads: usize,
    /// CPUs they are pinned to, round robin (empty: not pinned).
    pub cpus: Vec<usize>,
}

impl Spread {
    /// `threads` threads (at least one, at most one per user) pinned to `cpus`.
    pub fn new(threads: usize, cpus: Vec<usize>, users: usize) -> Self {
        Self {
            threads: threads.clamp(1, users.max(1)),
            cpus,
        }
    }
}

/// How many sockets `users` users get from `may_hold` (the most the process may open) when
/// `threads` threads drive them: one each if it may, else a multiple of `threads`, so that
/// the users sharing a socket are all on the socket's thread.
pub fn endpoints_for(users: usize, may_hold: usize, threads: usize) -> usize {
    if may_hold >= users {
        return users;
    }
    let threads = threads.max(1);
    (may_hold / threads * threads).max(threads).min(users)
}

/// One thread's users, sockets and attempts, indexed from zero.
struct Share {
    sockets: Vec<UdpSocket>,
    users: Vec<User>,
    attempts: Vec<Attempt>,
}

/// Deals users, sockets and attempts (sorted by arrival; they stay so) to `threads` shares.
/// User `u` sends from socket `u mod sockets.len()`.
fn deal(
    sockets: Vec<UdpSocket>,
    tunnel_ips: &[Ipv4Addr],
    attempts: Vec<Attempt>,
    threads: usize,
) -> Vec<Share> {
    let endpoints = sockets.len().max(1);
    let mut shares: Vec<Share> = (0..threads)
        .map(|_| Share {
            sockets: Vec::new(),
            users: Vec::new(),
            attempts: Vec::new(),
        })
        .collect();
    for (e, s) in sockets.into_iter().enumerate() {
        shares[e % threads].sockets.push(s);
    }
    for (u, ip) in tunnel_ips.iter().enumerate() {
        let endpoint = u % endpoints;
        debug_assert_eq!(endpoint % threads, u % threads, "see endpoints_for");
        shares[u % threads]
            .users
            .push(User::new((endpoint / threads) as u32, *ip));
    }
    for mut a in attempts {
        let u = a.arrival.user as usize;
        a.arrival.user = (u / threads) as u32;
        shares[u % threads].attempts.push(a);
    }
    shares
}

/// Runs every attempt on `spread.threads` threads (all in the calling thread's network
/// namespace) until each has settled or `bound` passed, and adds up what they measured.
/// `progress` hears the sum of the threads' progress about four times a second.
pub fn run(
    sockets: Vec<UdpSocket>,
    tunnel_ips: &[Ipv4Addr],
    attempts: Vec<Attempt>,
    shared: &Shared,
    bound: Duration,
    spread: &Spread,
    progress: impl Fn(Progress) + Sync,
) -> Result<Tally> {
    let threads = spread.threads.max(1);
    let shares = deal(sockets, tunnel_ips, attempts, threads);
    let latest = Mutex::new(vec![Progress::default(); threads]);
    let report = |k: usize, p: Progress| {
        let Ok(mut all) = latest.lock() else { return };
        all[k] = p;
        progress(all.iter().fold(Progress::default(), |s, p| Progress {
            arrived: s.arrived + p.arrived,
            connected: s.connected + p.connected,
            failed: s.failed + p.failed,
            cookies: s.cookies + p.cookies,
            elapsed: s.elapsed.max(p.elapsed),
        }));
    };
    let tallies: Vec<Result<Tally>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(k, mut share)| {
                let report = &report;
                let cpu = (!spread.cpus.is_empty()).then(|| spread.cpus[k % spread.cpus.len()]);
                std::thread::Builder::new()
                    .name(format!("load-{k}"))
                    .spawn_scoped(scope, move || -> Result<Tally> {
                        if let Some(c) = cpu {
                            testbed::process::pin_thread(&[c]);
                        }
                        let cpu0 = thread_cpu_seconds();
                        let mut t = engine::run(
                            &share.sockets,
                            &mut share.users,
                            &mut share.attempts,
                            shared,
                            bound,
                            |p| report(k, p),
                        )?;
                        t.figures.loadgen_cpu_seconds = thread_cpu_seconds() - cpu0;
                        Ok(t)
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("a load thread panicked"))),
                Err(e) => Err(anyhow!("starting a load thread: {e}")),
            })
            .collect()
    });
    let mut total: Option<Tally> = None;
    for t in tallies {
        let t = t?;
        total = Some(match total {
            Some(sum) => sum.merge(t),
            None => t,
        });
    }
    total.ok_or_else(|| anyhow!("no load thread ran"))
}

/// CPU seconds the calling thread has used.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: all-zero is a valid rusage.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes only the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_sockets_stay_on_their_users_thread() {
        assert_eq!(endpoints_for(1000, 5000, 3), 1000, "one socket per user");
        for (users, may, threads) in [(1000, 100, 3), (1000, 7, 2), (10, 1, 4), (5, 2, 3)] {
            let e = endpoints_for(users, may, threads);
            assert!(e >= 1 && e <= users);
            if e < users {
                assert_eq!(e % threads, 0, "{users} {may} {threads}: {e}");
            }
            for u in 0..users {
                assert_eq!(
                    (u % e) % threads,
                    u % threads,
                    "user {u} of {users}, {e} sockets"
                );
            }
        }
    }
}
