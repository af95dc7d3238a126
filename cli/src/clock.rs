//! The node's sync clock: the host's monotonic clock, optionally skewed by an artificial offset
//! and drift so that several processes on one host behave like separate machines.

use std::sync::Arc;

use player::{Clock, SkewedClock, SystemClock};

/// Environment variable: artificial clock offset in milliseconds (may be negative, fractional).
pub const OFFSET_ENV: &str = "MUSIC262_CLOCK_OFFSET_MS";
/// Environment variable: artificial clock drift in parts per million (may be negative).
pub const DRIFT_ENV: &str = "MUSIC262_CLOCK_DRIFT_PPM";

/// Why the skew variables could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}=`{value}` is not a number")]
pub struct SkewError {
    var: &'static str,
    value: String,
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
            .ok_or(SkewError { var, value: v }),
    }
}

/// The sync clock with the skew read through `get` (the environment in production).
pub fn sync_clock_from(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<SkewedClock>, SkewError> {
    let offset_ms = read(OFFSET_ENV, get)?;
    let drift_ppm = read(DRIFT_ENV, get)?;
    let base: Arc<dyn Clock> = Arc::new(SystemClock);
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
}
