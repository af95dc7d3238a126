//! The node's sync clock: the host's monotonic clock, optionally skewed by an artificial offset
//! and drift so that several processes on one host behave like separate machines, and
//! optionally stepped forward once mid-run (a fault injection: a machine whose clock jumps, for
//! the end-to-end fault tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use player::{Clock, SkewedClock, SystemClock};

/// Environment variable: artificial clock offset in milliseconds (may be negative, fractional).
pub const OFFSET_ENV: &str = "MUSIC262_CLOCK_OFFSET_MS";
/// Environment variable: artificial clock drift in parts per million (may be negative).
pub const DRIFT_ENV: &str = "MUSIC262_CLOCK_DRIFT_PPM";
/// Environment variable: seconds after start at which the sync clock steps (with
/// [`STEP_MS_ENV`]).
pub const STEP_AT_ENV: &str = "MUSIC262_CLOCK_STEP_AT_S";
/// Environment variable: size of the one-off forward step of the sync clock, in milliseconds.
pub const STEP_MS_ENV: &str = "MUSIC262_CLOCK_STEP_MS";

/// Why the skew variables could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SkewError {
    /// A variable that does not parse.
    #[error("{var}=`{value}` is not a number")]
    NotANumber {
        /// The variable.
        var: &'static str,
        /// What it holds.
        value: String,
    },
    /// A step that the clock contract forbids or that has no instant.
    #[error("{STEP_MS_ENV}=`{value}`: {why}")]
    BadStep {
        /// What the step variable holds.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
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
                "sync clock stepped forward ({STEP_AT_ENV} / {STEP_MS_ENV})"
            );
        }
        t.saturating_add(self.step_ns)
    }
}

fn read(var: &'static str, get: &dyn Fn(&str) -> Option<String>) -> Result<f64, SkewError> {
    match get(var) {
        None => Ok(0.0),
        Some(v) if v.trim().is_empty() => Ok(0.0),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or(SkewError::NotANumber { var, value: v }),
    }
}

/// The sync clock with the skew read through `get` (the environment in production).
pub fn sync_clock_from(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<SkewedClock>, SkewError> {
    sync_clock_over(Arc::new(SystemClock), get)
}

/// The sync clock over the host clock `host`, skewed and stepped as `get` says.
fn sync_clock_over(
    host: Arc<dyn Clock>,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<SkewedClock>, SkewError> {
    let offset_ms = read(OFFSET_ENV, get)?;
    let drift_ppm = read(DRIFT_ENV, get)?;
    let step_ms = read(STEP_MS_ENV, get)?;
    let base: Arc<dyn Clock> = if step_ms == 0.0 {
        host
    } else {
        let value = get(STEP_MS_ENV).unwrap_or_default();
        if step_ms < 0.0 {
            return Err(SkewError::BadStep {
                value,
                why: "a clock can only step forward",
            });
        }
        if get(STEP_AT_ENV).is_none_or(|v| v.trim().is_empty()) {
            return Err(SkewError::BadStep {
                value,
                why: "needs MUSIC262_CLOCK_STEP_AT_S (when, in seconds after start)",
            });
        }
        let at_s = read(STEP_AT_ENV, get)?.max(0.0);
        let at_ns = host.now_ns().saturating_add((at_s * 1e9).round() as u64);
        Arc::new(SteppedClock::new(
            host,
            at_ns,
            (step_ms * 1e6).round() as u64,
        ))
    };
    Ok(Arc::new(SkewedClock::new(
        base,
        (offset_ms * 1e6).round() as i64,
        drift_ppm,
    )))
}

/// The sync clock skewed as the environment says.
pub fn sync_clock() -> Result<Arc<SkewedClock>, SkewError> {
    sync_clock_from(&|k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_comes_from_the_two_variables_and_bad_values_are_refused() {
        let env = |k: &str| match k {
            OFFSET_ENV => Some("-1500.5".to_string()),
            DRIFT_ENV => Some("200".to_string()),
            _ => None,
        };
        let c = sync_clock_from(&env).unwrap();
        assert_eq!(c.offset_ns(), -1_500_500_000);
        assert_eq!(c.drift_ppm(), 200.0);
        let none = sync_clock_from(&|_| None).unwrap();
        assert_eq!(none.offset_ns(), 0);
        let bad = |k: &str| (k == DRIFT_ENV).then(|| "fast".to_string());
        let e = sync_clock_from(&bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MUSIC262_CLOCK_DRIFT_PPM=`fast` is not a number"
        );
    }

    #[test]
    fn a_configured_step_moves_the_sync_clock_forward_once_at_its_instant() {
        let host = Arc::new(player::ManualClock::new(1_000_000_000));
        let env = |k: &str| match k {
            OFFSET_ENV => Some("250".to_string()),
            STEP_AT_ENV => Some("10".to_string()),
            STEP_MS_ENV => Some("500".to_string()),
            _ => None,
        };
        let c = sync_clock_over(host.clone(), &env).unwrap();
        assert_eq!(c.now_ns(), 1_250_000_000);
        host.advance(9_999_000_000);
        assert_eq!(c.now_ns(), 11_249_000_000, "just before the step");
        host.advance(1_000_000);
        assert_eq!(c.now_ns(), 11_750_000_000, "stepped by 500 ms");
        host.advance(5_000_000_000);
        assert_eq!(c.now_ns(), 16_750_000_000, "stepped once, then runs on");
    }

    #[test]
    fn a_backward_step_or_a_step_without_an_instant_is_refused() {
        let host: Arc<dyn Clock> = Arc::new(player::ManualClock::new(0));
        let back = |k: &str| match k {
            STEP_AT_ENV => Some("1".to_string()),
            STEP_MS_ENV => Some("-5".to_string()),
            _ => None,
        };
        let e = sync_clock_over(host.clone(), &back).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MUSIC262_CLOCK_STEP_MS=`-5`: a clock can only step forward"
        );
        let when = |k: &str| (k == STEP_MS_ENV).then(|| "5".to_string());
        let e = sync_clock_over(host, &when).unwrap_err();
        assert!(
            e.to_string().contains("needs MUSIC262_CLOCK_STEP_AT_S"),
            "{e}"
        );
    }
}
