//! When each user arrives (and leaves) in a scenario: a pure function of the scenario, so
//! the same scenario gives the same schedule on every run and for every target.

use std::time::Duration;

use crate::scenario::{Kind, Scenario};

/// Why a user connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its first log-in.
    Login,
    /// Coming back after everyone dropped (reconnect storm).
    Reconnect,
}

/// One connection attempt by one user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Offset from the start of the run.
    pub at: Duration,
    /// The user (index into the run's users).
    pub user: u32,
    /// Login or reconnection.
    pub phase: Phase,
    /// When the user drops this connection (None: stays to the end).
    pub leave_at: Option<Duration>,
}

/// A small deterministic generator (splitmix64): schedules only need to be reproducible.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` arrival offsets (seconds) evenly spread over `window`.
fn even(n: u32, window: f64) -> Vec<f64> {
    (0..n)
        .map(|i| window * f64::from(i) / f64::from(n))
        .collect()
}

/// `n` offsets of a Poisson process over `window`, given that it had `n` events: sorted
/// uniform points (the order statistics of a conditioned Poisson process).
fn poisson(n: u32, window: f64, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix(seed);
    let mut t: Vec<f64> = (0..n).map(|_| rng.next_f64() * window).collect();
    t.sort_by(f64::total_cmp);
    t
}

/// Every arrival of the scenario, in time order.
pub fn arrivals(s: &Scenario) -> Vec<Arrival> {
    let secs = Duration::from_secs_f64;
    let n = s.users;
    let login = |offsets: Vec<f64>, leave: &dyn Fn(u32, f64) -> Option<f64>| -> Vec<Arrival> {
        offsets
            .into_iter()
            .enumerate()
            .map(|(i, t)| Arrival {
                at: secs(t),
                user: i as u32,
                phase: Phase::Login,
                leave_at: leave(i as u32, t).map(secs),
            })
            .collect()
    };
    let mut all = match s.kind {
        // The rate rises linearly, so the count grows with t²: user i arrives at T·√(i/N).
        Kind::Ramp => login(
            (0..n)
                .map(|i| s.seconds * (f64::from(i) / f64::from(n)).sqrt())
                .collect(),
            &|_, _| None,
        ),
        Kind::Step | Kind::MixedFlood => login(even(n, s.seconds), &|_, _| None),
        Kind::Poisson => login(poisson(n, s.seconds, s.seed), &|_, _| None),
        Kind::Churn => login(poisson(n, s.seconds, s.seed), &|_, t| {
            Some(t + s.hold_seconds)
        }),
        Kind::Reconnect => {
            let storm_start = s.seconds + s.hold_seconds;
            let back = even(n, s.storm_seconds);
            let mut a = login(even(n, s.seconds), &|i, _| {
                Some(storm_start + back[i as usize])
            });
            a.extend(back.iter().enumerate().map(|(i, t)| Arrival {
                at: secs(storm_start + t),
                user: i as u32,
                phase: Phase::Reconnect,
                leave_at: None,
            }));
            a
        }
    };
    all.sort_by_key(|a| a.at);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(kind: Kind, users: u32, seconds: f64) -> Scenario {
        Scenario {
            kind,
            users,
            seconds,
            ..Scenario::default()
        }
    }

    #[test]
    fn a_ramp_arrives_slowly_then_fast_within_its_window() {
        let a = arrivals(&scenario(Kind::Ramp, 1000, 10.0));
        assert_eq!(a.len(), 1000);
        assert!(a.last().is_some_and(|l| l.at <= Duration::from_secs(10)));
        let first_half = a.iter().filter(|x| x.at < Duration::from_secs(5)).count();
        // A linear rate puts a quarter of the users in the first half of the window.
        assert_eq!(first_half, 250);
    }

    #[test]
    fn a_step_is_even_and_poisson_is_reproducible_and_bounded() {
        let a = arrivals(&scenario(Kind::Step, 100, 1.0));
        assert_eq!(a[50].at, Duration::from_millis(500));
        let mut p = scenario(Kind::Poisson, 500, 5.0);
        let (x, y) = (arrivals(&p), arrivals(&p));
        assert_eq!(x, y);
        assert!(x.iter().all(|a| a.at <= Duration::from_secs(5)));
        p.seed += 1;
        assert_ne!(arrivals(&p), x, "another seed, another schedule");
        let mut users: Vec<u32> = x.iter().map(|a| a.user).collect();
        users.sort();
        users.dedup();
        assert_eq!(users.len(), 500, "every user arrives once");
    }

    #[test]
    fn a_reconnect_storm_brings_everyone_back_after_they_drop() {
        let mut s = scenario(Kind::Reconnect, 10, 1.0);
        s.hold_seconds = 4.0;
        s.storm_seconds = 1.0;
        let a = arrivals(&s);
        assert_eq!(a.len(), 20);
        for u in 0..10 {
            let login = a.iter().find(|x| x.user == u && x.phase == Phase::Login);
            let back = a
                .iter()
                .find(|x| x.user == u && x.phase == Phase::Reconnect);
            let (Some(login), Some(back)) = (login, back) else {
                panic!("user {u} must log in and come back")
            };
            assert_eq!(login.leave_at, Some(back.at), "drops as it comes back");
            assert!(back.at >= Duration::from_secs(5));
        }
    }

    #[test]
    fn churn_users_leave_after_their_hold() {
        let mut s = scenario(Kind::Churn, 50, 10.0);
        s.hold_seconds = 3.0;
        for a in arrivals(&s) {
            assert_eq!(a.leave_at, Some(a.at + Duration::from_secs(3)));
        }
    }
}
