//! The device's rate against the clock: a least-squares line through the earliest callback of
//! each block, and the check that the device is paced by a clock at all.

use super::config::TimelineConfig;
use super::ring::Ring;

/// Why a block's callbacks cannot be timed by their line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unpaced;

/// The rate fit of one stream. Callback instants come in as offsets `u` from the nominal line
/// (`instant - origin - frames * ns_per_frame`), so a device at exactly the nominal rate has a
/// constant `u`.
#[derive(Debug, Clone)]
pub(super) struct RateFit {
    ns_per_frame: f64,
    /// Frames handed over before the callback that started the current block, and its instant.
    block_start: f64,
    block_start_ns: f64,
    /// The current block's earliest callback as (frames before it, u).
    block_min: Option<(f64, f64)>,
    /// Earliest callback of each finished block since the line last stepped.
    points: Ring<(f64, f64)>,
    /// How much longer than nominal the device takes per frame, as a fraction of the nominal
    /// frame (2e-4: it runs 200 ppm slow against the clock).
    rate: f64,
}

impl RateFit {
    pub(super) fn new(cfg: &TimelineConfig, ns_per_frame: f64) -> Self {
        RateFit {
            ns_per_frame,
            block_start: 0.0,
            block_start_ns: 0.0,
            block_min: None,
            points: Ring::new(cfg.rate_blocks, (0.0, 0.0)),
            rate: 0.0,
        }
    }

    /// The fitted rate (0 until fitted).
    pub(super) fn rate(&self) -> f64 {
        self.rate
    }

    /// Forgets the rate too (a new stream, perhaps a new device).
    pub(super) fn reset(&mut self, now: f64) {
        self.rate = 0.0;
        self.restart_line(now);
    }

    /// A new line starts at `now` (frames counted from 0 again): the points go, the rate stays.
    pub(super) fn restart_line(&mut self, now: f64) {
        self.block_start = 0.0;
        self.block_start_ns = now;
        self.block_min = None;
        self.points.clear();
    }

    /// A callback with `before` frames handed over before it, at offset `u`.
    pub(super) fn note(&mut self, before: f64, u: f64) {
        if self.block_min.is_none_or(|(_, m)| u < m) {
            self.block_min = Some((before, u));
        }
    }

    /// Whether the frames handed over so far close a block.
    pub(super) fn block_done(&self, cfg: &TimelineConfig, frames: f64) -> bool {
        frames - self.block_start >= cfg.block_s * 1e9 / self.ns_per_frame
    }

    /// Closes the block at this callback (instant `now`, `before` frames handed over before
    /// it): its earliest callback joins the fit. `Err` if the device is not paced by a clock.
    pub(super) fn close_block(
        &mut self,
        cfg: &TimelineConfig,
        now: f64,
        before: f64,
    ) -> Result<(), Unpaced> {
        // From the callback that started the block to this one, the device took the frames
        // handed over in between: as much clock time as audio, if a clock paces it.
        let audio_ns = (before - self.block_start) * self.ns_per_frame;
        let clock_ns = now - self.block_start_ns;
        self.block_start = before;
        self.block_start_ns = now;
        if audio_ns > 0.0 && (clock_ns / audio_ns - 1.0).abs() > cfg.max_pace_error {
            return Err(Unpaced);
        }
        if let Some(point) = self.block_min.take() {
            let last = self.points.newest().next();
            if let Some((f, u)) = last {
                let expected = u + (point.0 - f) * self.ns_per_frame * self.rate;
                if (point.1 - expected).abs() > cfg.rate_step_ns {
                    self.points.clear();
                }
            }
            self.points.push(point);
        }
        if self.points.len() >= cfg.rate_min_blocks {
            self.rate = self.fit(cfg).ok_or(Unpaced)?;
        }
        Ok(())
    }

    /// Least-squares slope of the blocks' earliest callbacks; `None` if no crystal's.
    fn fit(&self, cfg: &TimelineConfig) -> Option<f64> {
        let points = self.points.items();
        let n = points.len() as f64;
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut sxx, mut sxy) = (0.0, 0.0);
        for &(x, y) in points {
            sxx += (x - mean_x) * (x - mean_x);
            sxy += (x - mean_x) * (y - mean_y);
        }
        if sxx <= 0.0 {
            return None;
        }
        // u grows by `rate * ns_per_frame` per frame.
        let rate = sxy / sxx / self.ns_per_frame;
        (rate.abs() <= cfg.max_rate_fraction).then_some(rate)
    }
}
