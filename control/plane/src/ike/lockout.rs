//! Password users locked after repeated failures: an online guesser gets `after` tries, then
//! the user is refused without its password being checked until `lasts` has passed. Other
//! users log in as before. Only wrong passwords count (EAP); a success clears the count.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures by identity (as displayed), and who is locked until when.
#[derive(Debug, Clone)]
pub struct Lockout {
    after: u32,
    lasts: Duration,
    failures: HashMap<String, u32>,
    locked: HashMap<String, Instant>,
}

impl Lockout {
    /// Locks a user after `after` wrong passwords in a row, for `lasts`.
    pub fn new(after: u32, lasts: Duration) -> Self {
        Self {
            after,
            lasts,
            failures: HashMap::new(),
            locked: HashMap::new(),
        }
    }

    /// A wrong password for `identity` at `now`; true if that locked it.
    pub fn failed(&mut self, identity: &str, now: Instant) -> bool {
        let n = self.failures.entry(identity.to_string()).or_default();
        *n += 1;
        if *n < self.after {
            return false;
        }
        self.failures.remove(identity);
        self.locked.insert(identity.to_string(), now + self.lasts);
        true
    }

    /// `identity` logged in: its count starts again.
    pub fn succeeded(&mut self, identity: &str) {
        self.failures.remove(identity);
    }

    /// Whether `identity` is locked at `now`.
    pub fn is_locked(&self, identity: &str, now: Instant) -> bool {
        self.locked.get(identity).is_some_and(|until| now < *until)
    }

    /// Forgets locks that have run out.
    pub fn expire(&mut self, now: Instant) {
        self.locked.retain(|_, until| now < *until);
    }

    /// Users locked now.
    pub fn locked_now(&self, now: Instant) -> usize {
        self.locked.values().filter(|until| now < **until).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_locked_after_its_failures_and_unlocked_in_time_others_unaffected() {
        let t0 = Instant::now();
        let mut l = Lockout::new(3, Duration::from_secs(60));
        assert!(!l.failed("bob", t0));
        assert!(!l.failed("bob", t0));
        l.succeeded("bob");
        assert!(
            !l.failed("bob", t0) && !l.failed("bob", t0),
            "counted from the success"
        );
        assert!(l.failed("bob", t0), "the third in a row locks");
        assert!(l.is_locked("bob", t0 + Duration::from_secs(59)));
        assert!(!l.is_locked("alice", t0));
        assert_eq!(l.locked_now(t0), 1);
        assert!(
            !l.is_locked("bob", t0 + Duration::from_secs(60)),
            "unlocked in time"
        );
        l.expire(t0 + Duration::from_secs(61));
        assert_eq!(l.locked_now(t0), 0);
    }
}
