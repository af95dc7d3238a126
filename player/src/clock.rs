//! The clocks the player is paced by and reports in.
//!
//! Every instant the player takes or gives is nanoseconds of the node's *sync* clock, a
//! monotonic clock that tests and the client may skew (offset and drift) to make several
//! processes on one host behave like separate machines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic clock in nanoseconds. Implementations must be cheap and lock-free: the audio
/// callback reads it once per buffer.
pub trait Clock: Send + Sync + 'static {
    /// Current instant in nanoseconds. Never decreases.
    fn now_ns(&self) -> u64;
}

/// The host's `CLOCK_MONOTONIC`, in nanoseconds since the kernel's epoch (boot, on Linux).
///
/// It is read with `clock_gettime(CLOCK_MONOTONIC)` rather than through `std::time::Instant`
/// (which reads the same clock on Linux but hides its value), so that instants written by
/// several processes on one host, for example in trace files, are directly comparable. On a
/// platform without `clock_gettime` it falls back to an `Instant` anchored at first use.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// The raw `CLOCK_MONOTONIC` value in nanoseconds (the same value `now_ns` returns).
    pub fn monotonic_ns() -> u64 {
        #[cfg(unix)]
        {
            let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
        }
        #[cfg(not(unix))]
        {
            use std::sync::OnceLock;
            use std::time::Instant;
            static EPOCH: OnceLock<Instant> = OnceLock::new();
            EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
        }
    }
}

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        Self::monotonic_ns()
    }
}

/// A clock derived from another by a fixed offset and a constant drift, like a crystal that
/// runs fast or slow: `local = base + offset + (base - anchor) * drift_ppm / 1e6`.
///
/// `anchor` is the base instant at which the two clocks differ by exactly `offset`. The map is
/// invertible ([`SkewedClock::to_base`]), so a driver can turn instants reported in the skewed
/// clock back into unskewed host time, e.g. for a trace file compared across processes.
#[derive(Clone)]
pub struct SkewedClock {
    base: Arc<dyn Clock>,
    offset_ns: i64,
    drift_ppm: f64,
    anchor_ns: u64,
}

impl std::fmt::Debug for SkewedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkewedClock")
            .field("offset_ns", &self.offset_ns)
            .field("drift_ppm", &self.drift_ppm)
            .field("anchor_ns", &self.anchor_ns)
            .finish_non_exhaustive()
    }
}

impl SkewedClock {
    /// Skews `base`, anchored at its current instant. `drift_ppm` must be greater than -1e6
    /// (a clock cannot stop or run backwards); it is clamped to stay above that.
    pub fn new(base: Arc<dyn Clock>, offset_ns: i64, drift_ppm: f64) -> Self {
        let anchor_ns = base.now_ns();
        Self::with_anchor(base, offset_ns, drift_ppm, anchor_ns)
    }

    /// Skews `base` with an explicit anchor (deterministic, for tests and simulation).
    pub fn with_anchor(
        base: Arc<dyn Clock>,
        offset_ns: i64,
        drift_ppm: f64,
        anchor_ns: u64,
    ) -> Self {
        let drift_ppm = if drift_ppm.is_finite() {
            drift_ppm.max(-999_999.0)
        } else {
            0.0
        };
        Self {
            base,
            offset_ns,
            drift_ppm,
            anchor_ns,
        }
    }

    /// The offset at the anchor, in nanoseconds.
    pub fn offset_ns(&self) -> i64 {
        self.offset_ns
    }

    /// The drift in parts per million (positive: this clock runs fast).
    pub fn drift_ppm(&self) -> f64 {
        self.drift_ppm
    }

    /// Maps a base instant to this clock.
    pub fn to_local(&self, base_ns: u64) -> u64 {
        let since_anchor = base_ns as i128 - self.anchor_ns as i128;
        let drift = (since_anchor as f64 * self.drift_ppm * 1e-6).round() as i128;
        clamp_u64(base_ns as i128 + self.offset_ns as i128 + drift)
    }

    /// Maps an instant of this clock back to the base clock (the inverse of `to_local`, to
    /// within a nanosecond).
    pub fn to_base(&self, local_ns: u64) -> u64 {
        // local - offset - anchor = (base - anchor) * (1 + drift)
        let scaled = local_ns as i128 - self.offset_ns as i128 - self.anchor_ns as i128;
        let since_anchor = (scaled as f64 / (1.0 + self.drift_ppm * 1e-6)).round() as i128;
        clamp_u64(self.anchor_ns as i128 + since_anchor)
    }
}

fn clamp_u64(v: i128) -> u64 {
    v.clamp(0, u64::MAX as i128) as u64
}

impl Clock for SkewedClock {
    fn now_ns(&self) -> u64 {
        self.to_local(self.base.now_ns())
    }
}

/// A clock that only moves when told to: for tests and simulation.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A manual clock showing `now_ns`.
    pub fn new(now_ns: u64) -> Self {
        Self {
            now: AtomicU64::new(now_ns),
        }
    }

    /// Sets the instant (it should not go backwards; that is the caller's promise).
    pub fn set(&self, now_ns: u64) {
        self.now.store(now_ns, Ordering::Release);
    }

    /// Moves the clock forward by `delta_ns`.
    pub fn advance(&self, delta_ns: u64) {
        self.now.fetch_add(delta_ns, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skewed_clock_applies_offset_and_drift_and_inverts() {
        let base = Arc::new(ManualClock::new(1_000_000_000));
        let skewed = SkewedClock::with_anchor(base.clone(), -250_000_000, 100.0, 1_000_000_000);
        assert_eq!(skewed.now_ns(), 750_000_000);
        base.advance(10_000_000_000);
        // 10 s at +100 ppm gains 1 ms.
        assert_eq!(skewed.now_ns(), 750_000_000 + 10_000_000_000 + 1_000_000);
        let local = skewed.now_ns();
        assert_eq!(skewed.to_base(local), base.now_ns());
    }

    #[test]
    fn system_clock_is_monotonic_and_advances() {
        let a = SystemClock.now_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = SystemClock.now_ns();
        assert!(b >= a + 1_000_000, "{a} -> {b}");
    }
}
