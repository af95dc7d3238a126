//! The callbacks' line: the earliest of the last few callbacks carried forward at the device's
//! rate (a callback is never early, only late by its thread's wake-up), followed through a
//! first-order filter so that its steps as callbacks enter and leave the window do not reach
//! the sound.

use super::config::TimelineConfig;
use super::ring::Ring;

/// The envelope of one line of callbacks, and its filter.
#[derive(Debug, Clone)]
pub(super) struct Envelope {
    /// Last callbacks as (frames before it, u).
    recent: Ring<(f64, f64)>,
    /// The filtered and the raw envelope at the last callback and how far they advance to the
    /// next one.
    last: Option<(f64, f64, f64)>,
    /// The filtered minus the raw envelope, averaged over the filter's time constant: how far
    /// the filtered line usually lies behind the earliest callbacks. The raw envelope moved by
    /// this still fits the delay learnt on the filtered line.
    offset: f64,
}

impl Envelope {
    pub(super) fn new(cfg: &TimelineConfig) -> Self {
        Envelope {
            recent: Ring::new(cfg.envelope_callbacks, (0.0, 0.0)),
            last: None,
            offset: 0.0,
        }
    }

    /// A new line: the callbacks go, the filter's usual offset stays.
    pub(super) fn restart_line(&mut self) {
        self.recent.clear();
        self.last = None;
    }

    /// Forgets the offset too (a new stream).
    pub(super) fn reset(&mut self) {
        self.restart_line();
        self.offset = 0.0;
    }

    /// The earliest recent callback (as u), this one included, carried forward to it (`before`
    /// frames handed over before it, offset `u`) at `rate` (see [`super::rate::RateFit`]).
    pub(super) fn earliest(&mut self, before: f64, u: f64, ns_per_frame: f64, rate: f64) -> f64 {
        self.recent.push((before, u));
        self.recent
            .items()
            .iter()
            .map(|&(f, uj)| uj + (before - f) * ns_per_frame * rate)
            .fold(f64::INFINITY, f64::min)
    }

    /// The envelope `raw` (an instant) at this callback of `buffer_ns`, filtered. When not
    /// `follow`ing (a rule is measuring a step or a break), the raw envelope moved by the
    /// filter's usual offset. Steps beyond `step_ns` pass whole.
    pub(super) fn filter(
        &mut self,
        cfg: &TimelineConfig,
        raw: f64,
        buffer_ns: f64,
        rate: f64,
        follow: bool,
    ) -> f64 {
        let k = (buffer_ns / (cfg.smooth_s * 1e9)).min(1.0);
        let value = match self.last {
            Some((last, last_raw, advance)) if follow => {
                let predicted = last + advance;
                let step = raw - (last_raw + advance);
                if step.abs() > cfg.step_ns {
                    predicted + step
                } else {
                    predicted + k * (raw - predicted)
                }
            }
            _ => raw + self.offset,
        };
        if follow {
            self.offset += k * (value - raw - self.offset);
        }
        self.last = Some((value, raw, buffer_ns * (1.0 + rate)));
        value
    }
}
