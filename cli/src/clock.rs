//! The node's sync clock: the host's monotonic clock, optionally skewed by an artificial offset
//! and drift so that several processes on one host behave like separate machines, and
//! optionally stepped forward once mid-run (a fault injection: a machine whose clock jumps, for
//! the end-to-end fault tests). The skew comes from the environment (`env.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use player::{Clock, SkewedClock, SystemClock};

use crate::env::{CLOCK_STEP_AT_S, CLOCK_STEP_MS};

/// How far the sync clock is off the host's, to emulate a separate machine.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClockSkew {
    /// Offset in milliseconds (may be negative, fractional).
    pub offset_ms: f64,
    /// Drift in parts per million (may be negative).
    pub drift_ppm: f64,
    /// One forward step mid-run, if any.
    pub step: Option<ClockStep>,
}

/// One forward step of the sync clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockStep {
    /// When, in seconds after the clock is made (at least 0).
    pub at_s: f64,
    /// By how much, in milliseconds (more than 0).
    pub ms: f64,
}

/// The host clock with one forward step of `step_ns` at instant `at_ns` of `inner`: every
/// reading from then on is `step_ns` later. Only forward, because a [`Clock`] never decreases
/// (the player and sync-core rely on it); a forward jump is what a real machine shows after
/// a suspend or a hard reset of its clock.
pub struct SteppedClock {
    inner: Arc<dyn Clock>,
    at_ns: u64,
    step_ns: u64,
    announced: AtomicBool,
}

impl SteppedClock {
    /// `inner`, stepped forward by `step_ns` once it reaches `at_ns`.
    pub fn new(inner: Arc<dyn Clock>, at_ns: u64, step_ns: u64) -> Self {
        SteppedClock {
            inner,
            at_ns,
            step_ns,
            announced: AtomicBool::new(false),
        }
    }
}

impl Clock for SteppedClock {
    fn now_ns(&self) -> u64 {
        let t = self.inner.now_ns();
        if t < self.at_ns {
            return t;
        }
        // Logged once, at the first reading after the step, so that a log shows when the
        // fault was injected; the load first keeps later readings free of a write.
        if !self.announced.load(Ordering::Relaxed) && !self.announced.swap(true, Ordering::Relaxed)
        {
            // The host instant lets a test put the trace back on the host clock (the trace
            // is dated through this clock too).
            tracing::warn!(
                step_ms = self.step_ns as f64 / 1e6,
                host_ns = self.at_ns,
                "sync clock stepped forward ({CLOCK_STEP_AT_S} / {CLOCK_STEP_MS})"
            );
        }
        t.saturating_add(self.step_ns)
    }
}

/// The sync clock over the host clock, skewed and stepped as `skew` says.
pub fn sync_clock(skew: &ClockSkew) -> Arc<SkewedClock> {
    sync_clock_over(Arc::new(SystemClock), skew)
}

/// The sync clock over the host clock `host`, skewed and stepped as `skew` says.
fn sync_clock_over(host: Arc<dyn Clock>, skew: &ClockSkew) -> Arc<SkewedClock> {
    let base: Arc<dyn Clock> = match skew.step {
        None => host,
        Some(step) => {
            let at_ns = host
                .now_ns()
                .saturating_add((step.at_s * 1e9).round() as u64);
            Arc::new(SteppedClock::new(
                host,
                at_ns,
                (step.ms * 1e6).round() as u64,
            ))
        }
    };
    Arc::new(SkewedClock::new(
        base,
        (skew.offset_ms * 1e6).round() as i64,
        skew.drift_ppm,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_clock_takes_the_skew_offset_and_drift() {
        let skew = ClockSkew {
            offset_ms: -1500.5,
            drift_ppm: 200.0,
            step: None,
        };
        let c = sync_clock(&skew);
        assert_eq!(c.offset_ns(), -1_500_500_000);
        assert_eq!(c.drift_ppm(), 200.0);
        let none = sync_clock(&ClockSkew::default());
        assert_eq!(none.offset_ns(), 0);
        assert_eq!(none.drift_ppm(), 0.0);
    }

    #[test]
    fn a_configured_step_moves_the_sync_clock_forward_once_at_its_instant() {
        let host = Arc::new(player::ManualClock::new(1_000_000_000));
        let skew = ClockSkew {
            offset_ms: 250.0,
            drift_ppm: 0.0,
            step: Some(ClockStep {
                at_s: 10.0,
                ms: 500.0,
            }),
        };
        let c = sync_clock_over(host.clone(), &skew);
        assert_eq!(c.now_ns(), 1_250_000_000);
        host.advance(9_999_000_000);
        assert_eq!(c.now_ns(), 11_249_000_000, "just before the step");
        host.advance(1_000_000);
        assert_eq!(c.now_ns(), 11_750_000_000, "stepped by 500 ms");
        host.advance(5_000_000_000);
        assert_eq!(c.now_ns(), 16_750_000_000, "stepped once, then runs on");
    }
}
