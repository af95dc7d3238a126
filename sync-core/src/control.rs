//! Drift correction: keeps the local player on the group timeline.
//!
//! The player reports which frame it emitted at which local instant; the error against the
//! timeline drives the playback rate. The rate has three parts:
//!
//! * feed-forward: the frequency of group time relative to the local clock, known from clock
//!   sync, so a player whose sound card follows the local clock needs no correction at all;
//! * a disturbance estimate: what clock sync cannot see, the sound card's own crystal. It is
//!   measured directly as the error's drift beyond what the commanded rate explains, smoothed
//!   over several seconds;
//! * a proportional term that removes the remaining error exponentially.
//!
//! There is no integrator: a PI loop must overshoot after an initial error (its integral has
//! to unwind), while a proportional loop on what is, for the error, a pure integrator is
//! first-order and converges without overshoot, hence without oscillation.

use crate::time::{LocalTime, Nanos, SECOND};

/// Tuning of the drift controller.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct ControllerConfig {
    /// Largest rate correction sent to the player, in ppm (inaudible below about 500).
    pub max_rate_ppm: f64,
    /// Errors beyond this are corrected by a jump (a re-seek), not by a rate change.
    pub jump_threshold: Nanos,
    /// The same, shortly after the player's output broke: the sound has glitched already, so
    /// a re-seek costs nothing more, while a 10 ms error slewed at the rate limit would be
    /// heard as an echo for twenty seconds.
    pub break_jump_threshold: Nanos,
    /// Proportional gain, per second: a 1 ms error asks for `kp * 1000` ppm.
    pub kp: f64,
    /// Time constant over which the player's own rate error is averaged.
    pub observer_time_constant: Nanos,
    /// A new rate is only output when it differs from the last one by at least this (ppm).
    pub min_rate_step_ppm: f64,
    /// An observed rate further than this many times `max_rate_ppm` from the estimate is a
    /// step of the measurement, not the player's rate (at the 500 ppm limit and 50 ms between
    /// reports: a step of 250 µs), and is left out of the estimate.
    pub outlier_rate_limits: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            max_rate_ppm: 500.0,
            jump_threshold: 20 * crate::time::MILLISECOND,
            break_jump_threshold: 500 * crate::time::MICROSECOND,
            kp: 0.5,
            observer_time_constant: 4 * SECOND,
            min_rate_step_ppm: 0.05,
            outlier_rate_limits: 10.0,
        }
    }
}

/// What the controller asks of the player after a report.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum ControlDecision {
    /// Keep the current rate.
    Hold,
    /// Play at this rate (ppm relative to the local clock).
    Rate(f64),
    /// The error is too large for a rate change: re-seek.
    Jump,
}

/// Controller state.
#[derive(Clone, Debug)]
pub struct DriftController {
    config: ControllerConfig,
    /// Estimated rate error of the player beyond what it is told (fraction, e.g. 1e-4).
    disturbance: f64,
    /// Rate in force since the last report, and feed-forward then (fractions).
    applied: f64,
    last_rate_ppm: f64,
    last_error: Option<Nanos>,
}

impl DriftController {
    /// A controller at rest.
    pub fn new(config: ControllerConfig) -> Self {
        DriftController {
            config,
            disturbance: 0.0,
            applied: 0.0,
            last_rate_ppm: 0.0,
            last_error: None,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The last rate requested, ppm.
    pub fn rate_ppm(&self) -> f64 {
        self.last_rate_ppm
    }

    /// The player's own rate error as estimated, ppm.
    pub fn disturbance_ppm(&self) -> f64 {
        self.disturbance * 1e6
    }

    /// The last error measured (player ahead of the timeline when positive), nanoseconds.
    pub fn last_error(&self) -> Option<Nanos> {
        self.last_error
    }

    /// Forgets the last error (after a jump or a start) but keeps the estimate of the player's
    /// own rate error, which outlives a re-seek.
    pub fn restart(&mut self) {
        self.last_error = None;
    }

    /// Feeds one measurement: the player was `error` ns ahead of the timeline (negative: behind)
    /// at local instant `at`; `previous` is the previous report's instant and error, evaluated
    /// against the *same* timeline estimate as `error` (so that an update of the group-time
    /// estimate between the two reports is not mistaken for the player's own drift);
    /// `feed_forward_ppm` is the rate of group time relative to the local clock;
    /// `after_break` says the player's output broke a moment ago, which lowers the jump
    /// threshold to [`ControllerConfig::break_jump_threshold`].
    pub fn update(
        &mut self,
        at: LocalTime,
        error: Nanos,
        previous: Option<(LocalTime, Nanos)>,
        feed_forward_ppm: f64,
        after_break: bool,
    ) -> ControlDecision {
        self.last_error = Some(error);
        let threshold = if after_break {
            self.config.break_jump_threshold
        } else {
            self.config.jump_threshold
        };
        if error.unsigned_abs() > threshold.unsigned_abs() {
            return ControlDecision::Jump;
        }
        let ff = feed_forward_ppm * 1e-6;
        if let Some((t0, e0)) = previous
            && at > t0
        {
            let dt = at.since(t0) as f64;
            // The error drifted by (applied rate + disturbance - group rate) over dt.
            let max = self.config.max_rate_ppm * 1e-6;
            let observed = (error - e0) as f64 / dt - (self.applied - ff);
            // A step of the measured error (the player's timing re-learnt after its output
            // broke, say: a millisecond between two reports 50 ms apart) reads as a rate of
            // thousands of ppm and would drag the estimate to its limit for seconds. No crystal
            // is that far off, so such an observation is left out, not clipped: clipping near
            // the reports' own noise (±20 µs in 50 ms is ±800 ppm) would bias the estimate.
            if (observed - self.disturbance).abs() <= self.config.outlier_rate_limits * max {
                let alpha = (dt / self.config.observer_time_constant as f64).min(1.0);
                self.disturbance =
                    (self.disturbance + alpha * (observed - self.disturbance)).clamp(-max, max);
            }
        }
        let err_s = error as f64 / SECOND as f64;
        let wanted = (ff - self.disturbance - self.config.kp * err_s) * 1e6;
        let max = self.config.max_rate_ppm;
        let rate = wanted.clamp(-max, max);
        let changed = (rate - self.last_rate_ppm).abs() >= self.config.min_rate_step_ppm;
        if changed {
            self.last_rate_ppm = rate;
        }
        self.applied = self.last_rate_ppm * 1e-6;
        if changed {
            ControlDecision::Rate(rate)
        } else {
            ControlDecision::Hold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MILLISECOND;

    /// Simulates a player whose clock runs `device_ppm` fast relative to the local clock, starting
    /// `initial_error` ahead, reporting every 50 ms; returns the error trace in ns.
    fn run(device_ppm: f64, feed_forward: f64, initial_error: f64, seconds: f64) -> Vec<f64> {
        let mut c = DriftController::new(ControllerConfig::default());
        let mut err = initial_error;
        let mut rate = 0.0;
        let step = 50 * MILLISECOND;
        let mut trace = Vec::new();
        let mut t = LocalTime(SECOND as u64);
        let mut prev: Option<(LocalTime, Nanos)> = None;
        for _ in 0..(seconds * 20.0) as usize {
            // The player advances (1 + rate + device) per local ns; the timeline (1 + ff).
            err += step as f64 * ((rate + device_ppm - feed_forward) * 1e-6);
            t = t + step;
            let e = err.round() as Nanos;
            let decision = c.update(t, e, prev, feed_forward, false);
            prev = Some((t, e));
            match decision {
                ControlDecision::Rate(r) => rate = r,
                ControlDecision::Hold => {}
                ControlDecision::Jump => panic!("unexpected jump at error {err}"),
            }
            trace.push(err);
        }
        trace
    }

    #[test]
    fn controller_removes_an_offset_without_overshoot() {
        let trace = run(0.0, 0.0, 200_000.0, 20.0);
        // First order: the error decreases monotonically.
        assert!(trace.windows(2).all(|w| w[1] <= w[0] + 1.0));
        assert!(
            trace.last().unwrap().abs() < 1_000.0,
            "final error {}",
            trace.last().unwrap()
        );
        // Critically damped: the error never changes sign by more than noise.
        assert!(
            trace.iter().all(|e| *e > -2_000.0),
            "overshoot: min {}",
            trace.iter().cloned().fold(f64::MAX, f64::min)
        );
    }

    #[test]
    fn integral_absorbs_a_device_clock_offset() {
        // The sound card runs 80 ppm fast and clock sync cannot see it.
        let trace = run(80.0, 0.0, 0.0, 60.0);
        let tail = &trace[trace.len() - 100..];
        assert!(
            tail.iter().all(|e| e.abs() < 2_000.0),
            "steady error {:?}",
            &tail[..3]
        );
    }

    #[test]
    fn feed_forward_tracks_group_frequency_with_no_error() {
        // Only the first 50 ms step, before the controller's first output, sees any error.
        let trace = run(0.0, 150.0, 0.0, 10.0);
        let max = trace.iter().cloned().fold(0.0, |a: f64, b| a.max(b.abs()));
        assert!(max <= 7_501.0, "max {max}");
        assert!(trace.last().unwrap().abs() < 100.0);
    }

    #[test]
    fn large_errors_ask_for_a_jump_and_rates_stay_bounded() {
        let mut c = DriftController::new(ControllerConfig::default());
        assert_eq!(
            c.update(LocalTime(0), 25 * MILLISECOND, None, 0.0, false),
            ControlDecision::Jump
        );
        match c.update(LocalTime(SECOND as u64), 15 * MILLISECOND, None, 0.0, false) {
            ControlDecision::Rate(r) => assert_eq!(r, -500.0),
            other => panic!("expected a bounded rate, got {other:?}"),
        }
    }

    #[test]
    fn noisy_reports_leave_no_steady_error_behind() {
        // A player 78 ppm fast whose reports are each up to ±40 µs off, 50 ms apart.
        let mut c = DriftController::new(ControllerConfig::default());
        let (mut err, mut rate) = (0.0f64, 0.0);
        let step = 50 * MILLISECOND;
        let mut t = LocalTime(SECOND as u64);
        let mut prev = None;
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let (mut sum, mut n) = (0.0, 0.0);
        for k in 0..4000 {
            err += step as f64 * ((rate + 78.0) * 1e-6);
            t = t + step;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 80_000.0;
            let e = (err + noise).round() as Nanos;
            if let ControlDecision::Rate(r) = c.update(t, e, prev, 0.0, false) {
                rate = r;
            }
            prev = Some((t, e));
            if k >= 1000 {
                sum += err;
                n += 1.0;
            }
        }
        let mean_us = sum / n / 1e3;
        assert!(mean_us.abs() < 3.0, "steady error {mean_us:.1} us");
    }

    #[test]
    fn a_step_of_the_measured_error_barely_moves_the_rate_estimate() {
        let mut c = DriftController::new(ControllerConfig::default());
        let step = 50 * MILLISECOND;
        let mut t = LocalTime(SECOND as u64);
        let mut prev = None;
        // The player keeps the timeline; then its measured error steps by 2 ms once.
        for k in 0..200 {
            t = t + step;
            let e = if k < 100 { 0 } else { 2 * MILLISECOND };
            let _ = c.update(t, e, prev, 0.0, false);
            prev = Some((t, e));
            if k == 100 {
                assert!(
                    c.disturbance_ppm().abs() < 20.0,
                    "estimate moved to {} ppm",
                    c.disturbance_ppm()
                );
            }
        }
    }

    #[test]
    fn after_an_output_break_a_millisecond_error_asks_for_a_jump() {
        let mut c = DriftController::new(ControllerConfig::default());
        let (t, e) = (LocalTime(0), MILLISECOND);
        assert!(matches!(
            c.update(t, e, None, 0.0, false),
            ControlDecision::Rate(_)
        ));
        assert_eq!(c.update(t, e, None, 0.0, true), ControlDecision::Jump);
        // Below the break threshold the error is still slewed.
        assert!(matches!(
            c.update(t, 300 * crate::time::MICROSECOND, None, 0.0, true),
            ControlDecision::Rate(_)
        ));
    }
}
