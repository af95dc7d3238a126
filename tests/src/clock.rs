//! A simulated node's monotonic clock: an offset, a linear drift and an optional forward step,
//! as functions of true (simulation) time, with exact inverses for scheduling.

use sync_core::LocalTime;

/// Local clocks start this far from zero so that negative offsets stay representable.
pub const CLOCK_BASE: f64 = 10_000.0 * 1e9;

/// `local(t) = BASE + offset + t * (1 + drift) [+ step.by once t >= step.at]`, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimClock {
    /// Offset from true time, ns.
    pub offset_ns: i64,
    /// Frequency error, ppm (positive: runs fast).
    pub drift_ppm: f64,
    /// A forward step of the clock: at true instant `.0` it jumps ahead by `.1` ns (a monotonic
    /// clock never goes back; a suspended and resumed machine jumps ahead).
    pub step: Option<(u64, u64)>,
}

impl SimClock {
    /// A clock with an offset and a drift and no step.
    pub fn new(offset_ns: i64, drift_ppm: f64) -> Self {
        SimClock {
            offset_ns,
            drift_ppm,
            step: None,
        }
    }

    fn rate(&self) -> f64 {
        1.0 + self.drift_ppm * 1e-6
    }

    fn step_at(&self, t: f64) -> f64 {
        match self.step {
            Some((at, by)) if t >= at as f64 => by as f64,
            _ => 0.0,
        }
    }

    /// Local instant at true instant `t`, fractional.
    pub fn local_f64(&self, t: f64) -> f64 {
        CLOCK_BASE + self.offset_ns as f64 + t * self.rate() + self.step_at(t)
    }

    /// Local instant at true instant `t`, rounded to the nanosecond.
    pub fn local(&self, t: u64) -> LocalTime {
        LocalTime(self.local_f64(t as f64).round() as u64)
    }

    /// True instant (fractional) at which the clock reads `l` (the step's instant for a reading
    /// the step skipped over).
    pub fn true_f64(&self, l: f64) -> f64 {
        let unstepped = (l - CLOCK_BASE - self.offset_ns as f64) / self.rate();
        match self.step {
            Some((at, by)) if unstepped >= at as f64 => {
                let stepped = (l - CLOCK_BASE - self.offset_ns as f64 - by as f64) / self.rate();
                stepped.max(at as f64)
            }
            _ => unstepped,
        }
        .max(0.0)
    }

    /// The first true nanosecond at which the clock reads `l` or later (for waking a node no
    /// earlier than its timeout).
    pub fn true_ceil(&self, l: LocalTime) -> u64 {
        let mut t = self.true_f64(l.0 as f64).ceil().max(0.0) as u64;
        while self.local(t) < l {
            t += 1;
        }
        while t > 0 && self.local(t - 1) >= l {
            t -= 1;
        }
        t
    }

    /// How many local nanoseconds the oscillator advances per true nanosecond (the step aside).
    pub fn oscillator_rate(&self) -> f64 {
        self.rate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_ceil_is_the_first_instant_reaching_a_reading() {
        let clocks = [
            SimClock::new(-4_000_000_000, 87.5),
            SimClock::new(3_000_000_000, -99.0),
            SimClock {
                step: Some((5_000_000_000, 700_000_000)),
                ..SimClock::new(1_000, 12.0)
            },
        ];
        for c in clocks {
            for t in [
                0u64,
                1,
                999_999_937,
                4_999_999_999,
                5_000_000_000,
                9_876_543_210,
            ] {
                let l = c.local(t);
                let back = c.true_ceil(l);
                assert!(back <= t, "{c:?} {t} -> {back}");
                assert!(c.local(back) >= l);
                assert!(back == 0 || c.local(back - 1) < l);
            }
        }
    }

    #[test]
    fn a_step_jumps_the_reading_forward_once() {
        let c = SimClock {
            step: Some((2_000, 1_000_000)),
            ..SimClock::new(0, 0.0)
        };
        assert_eq!(c.local(1_999).0 as f64, CLOCK_BASE + 1_999.0);
        assert_eq!(c.local(2_000).0 as f64, CLOCK_BASE + 1_002_000.0);
        // A reading inside the skipped range is reached at the step's instant.
        assert_eq!(
            c.true_ceil(LocalTime((CLOCK_BASE + 500_000.0) as u64)),
            2_000
        );
    }
}
