//! The delay from a callback's envelope to its buffer being heard, learnt from the reported
//! latencies: per block their median against the envelope, and over the later half of the
//! stream's life a trimmed mean of those medians, with a glitch of the reports held out.

use super::config::TimelineConfig;
use super::ring::{Ring, median};

/// The learnt delay of one stream.
#[derive(Debug, Clone)]
pub(super) struct DelayLearner {
    /// Reported minus envelope instants of this block's callbacks.
    block: Vec<f64>,
    /// Median of each finished block kept.
    medians: Ring<f64>,
    /// Blocks held out of `medians` in a row.
    held: usize,
    /// The delay in force; `None` until learnt.
    learnt: Option<f64>,
}

impl DelayLearner {
    pub(super) fn new(cfg: &TimelineConfig) -> Self {
        DelayLearner {
            block: Vec::with_capacity(cfg.block_reports.max(1)),
            medians: Ring::new(cfg.delay_blocks, 0.0),
            held: 0,
            learnt: None,
        }
    }

    /// The delay in force, once learnt.
    pub(super) fn learnt(&self) -> Option<f64> {
        self.learnt
    }

    /// Until the delay is learnt: the mean of the block medians so far and of this block's
    /// median once it holds `min_reports`. Over the stream's first seconds this is still far
    /// steadier than each report alone (their own noise averages out), though not yet their
    /// wander; `None` before a first block was kept (the device proved paced by a clock).
    pub(super) fn provisional(&mut self, min_reports: usize) -> Option<f64> {
        if self.medians.len() == 0 {
            return None;
        }
        let (mut sum, mut n) = (0.0, 0usize);
        for m in self.medians.items() {
            sum += m;
            n += 1;
        }
        if self.block.len() >= min_reports.max(1) {
            sum += median(&mut self.block);
            n += 1;
        }
        (n > 0).then(|| sum / n as f64)
    }

    /// Forgets everything (a new stream).
    pub(super) fn reset(&mut self) {
        self.block.clear();
        self.medians.clear();
        self.held = 0;
        self.learnt = None;
    }

    /// Drops the block under way (it mixes two bufferings, or a line that restarted).
    pub(super) fn drop_block(&mut self) {
        self.block.clear();
    }

    /// One callback's reported minus envelope instant.
    pub(super) fn note(&mut self, delay_ns: f64) {
        if self.block.len() < self.block.capacity() {
            self.block.push(delay_ns);
        }
    }

    /// Closes the block: its median joins the history unless it stepped from the last one
    /// kept (held out for at most `block_hold` blocks), and once the stream is `age_s` old
    /// enough the delay is learnt again.
    pub(super) fn close_block(&mut self, cfg: &TimelineConfig, age_s: f64) {
        if !self.block.is_empty() {
            let m = median(&mut self.block);
            self.block.clear();
            let last = self.medians.newest().next();
            if last.is_some_and(|last| (m - last).abs() > cfg.block_step_ns)
                && self.held < cfg.block_hold
            {
                self.held += 1;
            } else {
                self.held = 0;
                self.medians.push(m);
            }
        }
        if age_s >= cfg.delay_min_age_s && self.medians.len() > 0 {
            self.learnt = Some(self.trimmed_mean(cfg));
        }
    }

    /// The buffering between callback and sound changed by `shift_ns`: the delay and the
    /// history it is learnt from move with it.
    pub(super) fn shift(&mut self, shift_ns: f64) {
        if let Some(delay) = self.learnt.as_mut() {
            *delay += shift_ns;
        }
        self.medians.update(|d| d + shift_ns);
        self.held = 0;
        self.block.clear();
    }

    /// Moves the delay and its history by `ns` within a step already taken (its measure
    /// refined as the restarted envelope fills), keeping the block under way.
    pub(super) fn refine(&mut self, ns: f64) {
        if let Some(delay) = self.learnt.as_mut() {
            *delay += ns;
        }
        self.medians.update(|d| d + ns);
    }

    /// Trimmed mean of the block medians over the later half of the history.
    fn trimmed_mean(&mut self, cfg: &TimelineConfig) -> f64 {
        let n = (self.medians.len() / 2).max(1);
        let kept = self.medians.sorted(0, n);
        let trim = (n as f64 * cfg.delay_trim) as usize;
        let kept = &kept[trim..n - trim];
        kept.iter().sum::<f64>() / kept.len() as f64
    }
}
