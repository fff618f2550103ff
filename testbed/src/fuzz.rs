//! Property campaigns over the daemon's own code (cargo-fuzz needs a nightly toolchain; these
//! run on stable through proptest): each drives one input path with generated inputs and
//! checks it never panics and keeps its invariants. `make test` runs each at its default
//! size; `make fuzz` multiplies every size by `XGATE_FUZZ_SCALE`. Each campaign prints one
//! line, `fuzz <name>: <cases> cases, 0 failures (<seconds> s)`, that `make fuzz` totals.

use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// The variable that scales every campaign (a number; 1 when unset).
pub const SCALE_VAR: &str = "XGATE_FUZZ_SCALE";

/// `cases` scaled by `XGATE_FUZZ_SCALE`.
pub fn scaled(cases: u32) -> u32 {
    let scale = std::env::var(SCALE_VAR)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0);
    (f64::from(cases) * scale).clamp(1.0, f64::from(u32::MAX)) as u32
}

/// Runs `check` over `cases` (scaled) inputs from `strategy`; panics with the smallest failing
/// input proptest finds, else prints the campaign's line and returns the cases run.
pub fn campaign<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u32
where
    S::Value: std::fmt::Debug,
{
    let cases = scaled(cases);
    let config = Config {
        cases,
        // Failures are reported in the test's output, not saved beside the sources.
        failure_persistence: None,
        max_shrink_iters: 10_000,
        ..Config::default()
    };
    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    match runner.run(&strategy, check) {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            panic!("fuzz {name}: {why}; smallest failing input: {input:?}")
        }
        Err(TestError::Abort(why)) => panic!("fuzz {name}: aborted: {why}"),
    }
    eprintln!(
        "fuzz {name}: {cases} cases, 0 failures ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    cases
}
