//! Clock synchronisation arithmetic: the linear mapping from a local clock to group time, and
//! the per-link estimator that turns four-timestamp probes into an offset and a frequency error.
//!
//! The estimator follows NTP's clock filter: the lowest-delay samples are trusted most (a
//! sample's asymmetry error is bounded by half its delay, so excess delay means possible
//! error), and a weighted straight line through the window gives the frequency error as well as
//! the offset, so that the estimate stays good between probes.

use std::collections::VecDeque;

use crate::time::{GroupTime, LocalTime, Nanos};

/// Linear map from a node's local clock to group time:
/// `group(t) = self.group + (t - self.local) * (1 + rate_ppm / 1e6)`.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct ClockMapping {
    /// Local anchor instant.
    pub local: LocalTime,
    /// Group instant corresponding to `local`.
    pub group: GroupTime,
    /// How much faster group time runs than the local clock, in parts per million.
    pub rate_ppm: f64,
    /// Which group time this is: an id chosen by the node that started it, inherited by every
    /// node that follows it and kept by a reference's successor. Two groups that meet have
    /// different time bases, so instants from one are never read in the other.
    pub timebase: u64,
}

impl ClockMapping {
    /// The identity mapping anchored at `now`, starting time base `timebase`: group time
    /// equals local time.
    pub fn identity(now: LocalTime, timebase: u64) -> Self {
        ClockMapping {
            local: now,
            group: GroupTime(now.0),
            rate_ppm: 0.0,
            timebase,
        }
    }

    /// Group time at local instant `t`.
    pub fn to_group(&self, t: LocalTime) -> GroupTime {
        self.group.offset(self.group_offset_f64(t).round() as Nanos)
    }

    /// Group time at local instant `t` as a float of nanoseconds relative to the anchor's
    /// group instant, for sub-nanosecond arithmetic.
    fn group_offset_f64(&self, t: LocalTime) -> f64 {
        t.since(self.local) as f64 * (1.0 + self.rate_ppm * 1e-6)
    }

    /// Group time at `t`, as fractional nanoseconds since `base` (keeps precision where an
    /// integer would round).
    pub fn to_group_since(&self, t: LocalTime, base: GroupTime) -> f64 {
        self.group.since(base) as f64 + self.group_offset_f64(t)
    }

    /// Local instant at which group time reaches `g`.
    pub fn to_local(&self, g: GroupTime) -> LocalTime {
        let d = g.since(self.group) as f64 / (1.0 + self.rate_ppm * 1e-6);
        self.local.offset(d.round() as Nanos)
    }

    /// The same mapping re-anchored at local instant `t` (identical line, nearer anchor, so
    /// that its numbers stay small when sent to peers).
    pub fn reanchored(&self, t: LocalTime) -> Self {
        ClockMapping {
            local: t,
            group: self.to_group(t),
            rate_ppm: self.rate_ppm,
            timebase: self.timebase,
        }
    }

    /// Composes `self` (a peer's local clock → group time) with a link estimate giving the
    /// peer's clock from ours, yielding our local clock → group time, anchored at `at`.
    pub fn compose(&self, link: &LinkEstimate, at: LocalTime) -> ClockMapping {
        // Peer's local instant corresponding to our `at`, kept fractional.
        let peer_at_offset = at.since(link.at) as f64 * link.rate + link.offset;
        let peer_at_ns = at.0 as f64 + peer_at_offset;
        let group_f =
            self.group.0 as f64 + (peer_at_ns - self.local.0 as f64) * (1.0 + self.rate_ppm * 1e-6);
        let rate = (1.0 + link.rate) * (1.0 + self.rate_ppm * 1e-6) - 1.0;
        ClockMapping {
            local: at,
            group: GroupTime(group_f.round().max(0.0) as u64),
            rate_ppm: rate * 1e6,
            timebase: self.timebase,
        }
    }
}

/// One completed four-timestamp exchange, reduced to what the filter needs.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct ClockSample {
    /// Midpoint of the exchange on our clock, `(t0 + t3) / 2`.
    pub at: LocalTime,
    /// Peer clock minus our clock at `at`: `((t1 - t0) + (t2 - t3)) / 2`, nanoseconds.
    pub offset: f64,
    /// Round-trip delay excluding the peer's processing: `(t3 - t0) - (t2 - t1)`, nanoseconds.
    pub delay: Nanos,
}

impl ClockSample {
    /// Builds a sample from the four timestamps (`t0`, `t3` ours; `t1`, `t2` the peer's).
    /// Returns `None` for impossible timestamps (negative delay or processing time).
    pub fn from_timestamps(
        t0: LocalTime,
        t1: LocalTime,
        t2: LocalTime,
        t3: LocalTime,
    ) -> Option<Self> {
        let rtt = t3.since(t0);
        let processing = t2.since(t1);
        if rtt < 0 || processing < 0 || processing > rtt.saturating_add(crate::time::SECOND) {
            return None;
        }
        let delay = rtt - processing;
        if delay < 0 {
            return None;
        }
        let offset = (t1.since(t0) as f64 + t2.since(t3) as f64) / 2.0;
        Some(ClockSample {
            at: t0.offset(rtt / 2),
            offset,
            delay,
        })
    }
}

/// The estimator's current belief about a peer's clock relative to ours.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct LinkEstimate {
    /// Local instant the estimate is anchored at.
    pub at: LocalTime,
    /// Peer clock minus ours at `at`, nanoseconds.
    pub offset: f64,
    /// Frequency error: peer clock nanoseconds gained per local nanosecond (e.g. 1e-4 = 100 ppm).
    pub rate: f64,
    /// Lowest round-trip delay in the window, nanoseconds.
    pub min_delay: Nanos,
    /// Root-mean-square residual of the trusted samples around the fitted line, nanoseconds.
    pub jitter: f64,
    /// Number of samples the estimate rests on.
    pub samples: usize,
}

impl LinkEstimate {
    /// Peer clock minus ours at local instant `t`, extrapolated along the fitted line.
    pub fn offset_at(&self, t: LocalTime) -> f64 {
        self.offset + t.since(self.at) as f64 * self.rate
    }
}

/// Tuning of the per-link clock filter.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct FilterConfig {
    /// Samples kept.
    pub window: usize,
    /// Typical size of a crystal's frequency error, in ppm: the prior of the frequency
    /// estimate. The fitted slope is shrunk towards zero by its own standard error against
    /// this (a ridge estimate), so a slope fitted over a short or noisy span counts for little
    /// and a well-determined one counts fully, without a threshold that could leave a real
    /// drift of 100 ppm uncorrected for many seconds.
    pub rate_prior_ppm: f64,
    /// Largest frequency error believed, in ppm; beyond it the fit is clamped.
    pub max_rate_ppm: f64,
    /// Scale of the delay weighting, ns: a sample whose delay exceeds the window's minimum by
    /// this much counts a quarter as much as the best one.
    pub delay_tolerance: Nanos,
    /// Samples leaving the window are kept in blocks of this many: the lowest-delay sample of
    /// each block stays in a longer history (0: no history).
    pub history_block: usize,
    /// Blocks kept in the history. The frequency error is measured over the window and the
    /// history together: its precision grows with the span to the power 1.5, so a few minutes
    /// of block minima make it good to a fraction of a ppm even on a jittery Wi-Fi link, and
    /// the offset no longer depends on a slope fitted over half a minute.
    pub history_len: usize,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            window: 64,
            rate_prior_ppm: 100.0,
            max_rate_ppm: 2_000.0,
            delay_tolerance: 10 * crate::time::MICROSECOND,
            history_block: 8,
            history_len: 64,
        }
    }
}

/// NTP-style clock filter over one link.
#[derive(Clone, Debug)]
pub struct ClockFilter {
    config: FilterConfig,
    samples: VecDeque<ClockSample>,
    /// Lowest-delay sample of each block of samples that left the window, oldest first.
    history: VecDeque<ClockSample>,
    /// The block being gathered: its best sample and how many it has seen.
    block: Option<(ClockSample, usize)>,
    estimate: Option<LinkEstimate>,
}

impl ClockFilter {
    /// An empty filter.
    pub fn new(config: FilterConfig) -> Self {
        ClockFilter {
            config,
            samples: VecDeque::with_capacity(config.window + 1),
            history: VecDeque::with_capacity(config.history_len + 1),
            block: None,
            estimate: None,
        }
    }

    /// The current estimate, once at least one sample arrived.
    pub fn estimate(&self) -> Option<&LinkEstimate> {
        self.estimate.as_ref()
    }

    /// Samples currently held, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &ClockSample> {
        self.samples.iter()
    }

    /// Forgets every sample (for instance when the peer's clock is known to have changed).
    pub fn reset(&mut self) {
        self.samples.clear();
        self.history.clear();
        self.block = None;
        self.estimate = None;
    }

    /// Adds a sample and refits. Samples must arrive in order of `at`; an out-of-order one is
    /// inserted where it belongs.
    pub fn add(&mut self, sample: ClockSample) -> &LinkEstimate {
        let pos = self
            .samples
            .iter()
            .rposition(|s| s.at <= sample.at)
            .map_or(0, |p| p + 1);
        self.samples.insert(pos, sample);
        while self.samples.len() > self.config.window.max(1) {
            let Some(old) = self.samples.pop_front() else {
                break;
            };
            self.retire(old);
        }
        let est = self.fit();
        self.estimate = Some(est);
        self.estimate.as_ref().expect("just set")
    }

    /// Keeps the best sample of every block of retired samples in the history.
    fn retire(&mut self, old: ClockSample) {
        if self.config.history_block == 0 || self.config.history_len == 0 {
            return;
        }
        let (best, seen) = match self.block.take() {
            Some((b, k)) if b.delay <= old.delay => (b, k + 1),
            Some((_, k)) => (old, k + 1),
            None => (old, 1),
        };
        if seen >= self.config.history_block {
            self.history.push_back(best);
            while self.history.len() > self.config.history_len {
                self.history.pop_front();
            }
        } else {
            self.block = Some((best, seen));
        }
    }

    /// The window and the history, oldest first.
    fn all_samples(&self) -> impl Iterator<Item = &ClockSample> + Clone {
        self.history.iter().chain(self.samples.iter())
    }

    fn fit(&self) -> LinkEstimate {
        let n = self.samples.len();
        debug_assert!(n > 0);
        let best = self
            .all_samples()
            .min_by_key(|s| s.delay)
            .expect("at least one sample");
        let anchor = self.samples[n - 1].at;
        // Weight each sample by how close its delay is to the best one: the excess delay bounds
        // its asymmetry error, so a sample 10x further from the minimum counts 100x less.
        // The scale is at least the configured tolerance, and at least the spread of the best
        // eighth of the delays: the best sample is itself late by about that much (its error is
        // not zero), so on a jittery link a handful of good samples share the weight instead
        // of one old sample anchoring the line and the slope having to carry it to now.
        let sigma = {
            let mut d: Vec<Nanos> = self.samples.iter().map(|s| s.delay).collect();
            let k = (n / 8).max(2).min(n - 1);
            let spread = if n >= 3 {
                d.select_nth_unstable(k);
                (d[k] - d.iter().copied().min().unwrap_or(d[k])) as f64
            } else {
                0.0
            };
            // Against the best of the window (the history's minima are selected low).
            let window_best = self
                .samples
                .iter()
                .map(|s| s.delay)
                .min()
                .unwrap_or(best.delay);
            (self.config.delay_tolerance as f64).max(spread + (window_best - best.delay) as f64)
        };
        let weight = |s: &ClockSample| {
            let excess = (s.delay - best.delay) as f64 + sigma;
            (sigma / excess).powi(2)
        };
        let (mut sw, mut swx, mut swy) = (0.0, 0.0, 0.0);
        for s in self.all_samples() {
            let w = weight(s);
            sw += w;
            swx += w * s.at.since(anchor) as f64;
            swy += w * s.offset;
        }
        let mean_x = swx / sw;
        let mean_y = swy / sw;
        let max_rate = self.config.max_rate_ppm * 1e-6;
        let (mut sxx, mut sxy, mut sww) = (0.0, 0.0, 0.0);
        for s in self.all_samples() {
            let w = weight(s);
            let dx = s.at.since(anchor) as f64 - mean_x;
            sxx += w * dx * dx;
            sxy += w * dx * (s.offset - mean_y);
            sww += w * w;
        }
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        // Standard error of the slope. A sample's offset error is at most half its excess
        // delay (uniform within it for symmetric jitter), so a sample of weight w has a
        // variance of about tolerance^2 / (12 w); the residuals, when there are enough
        // effective samples (a few heavy samples are a few samples, however many light ones
        // surround them), can only raise that.
        let n_eff = sw * sw / sww;
        let unit_var_model = sigma * sigma / 12.0;
        let unit_var = if n_eff > 3.0 {
            let rss: f64 = self
                .all_samples()
                .map(|s| {
                    let r = s.offset - (mean_y + slope * (s.at.since(anchor) as f64 - mean_x));
                    weight(s) * r * r
                })
                .sum();
            unit_var_model.max(rss / (n_eff - 2.0))
        } else {
            unit_var_model
        };
        let slope_var = if n + self.history.len() >= 2 && sxx > 0.0 {
            unit_var / sxx
        } else {
            f64::INFINITY
        };
        let prior = (self.config.rate_prior_ppm * 1e-6).powi(2);
        let rate = if slope_var.is_finite() {
            slope * prior / (prior + slope_var)
        } else {
            self.estimate.map_or(0.0, |e| e.rate)
        }
        .clamp(-max_rate, max_rate);

        // Line through the weighted centroid with that slope, evaluated at the anchor (x = 0).
        let mut offset = mean_y - rate * mean_x;

        // The true offset at the lowest-delay sample lies within half its delay of what it
        // measured, whatever the asymmetry: keep the line inside that interval.
        let at_best = offset + rate * best.at.since(anchor) as f64;
        let half = best.delay as f64 / 2.0;
        let clamped = at_best.clamp(best.offset - half, best.offset + half);
        offset += clamped - at_best;

        let (mut sr, mut swr) = (0.0, 0.0);
        for s in self.all_samples() {
            let w = weight(s);
            let r = s.offset - (offset + rate * s.at.since(anchor) as f64);
            sr += w * r * r;
            swr += w;
        }

        LinkEstimate {
            at: anchor,
            offset,
            rate,
            min_delay: best.delay,
            jitter: (sr / swr).sqrt(),
            samples: n + self.history.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MILLISECOND, SECOND};
    use proptest::prelude::*;

    /// Timestamps of an exchange between our clock (true time) and a peer clock
    /// `peer(t) = t + offset + t * drift`, with the given one-way delays.
    fn exchange(t: u64, offset: f64, drift: f64, up: u64, down: u64) -> ClockSample {
        let peer = |true_t: u64| -> LocalTime {
            LocalTime((true_t as f64 + offset + true_t as f64 * drift).round() as u64)
        };
        let t0 = LocalTime(t);
        let t1 = peer(t + up);
        let t2 = peer(t + up + 20_000);
        let t3 = LocalTime(t + up + 20_000 + down);
        ClockSample::from_timestamps(t0, t1, t2, t3).expect("valid")
    }

    #[test]
    fn symmetric_delays_give_exact_offset_and_drift() {
        let mut f = ClockFilter::new(FilterConfig::default());
        let drift = 100e-6;
        let base = 1_000 * SECOND as u64;
        for i in 0..20u64 {
            f.add(exchange(
                base + i * SECOND as u64 / 2,
                5e9,
                drift,
                MILLISECOND as u64,
                MILLISECOND as u64,
            ));
        }
        let e = f.estimate().unwrap();
        let t = LocalTime(base + 10 * SECOND as u64);
        let truth = 5e9 + t.0 as f64 * drift;
        assert!(
            (e.offset_at(t) - truth).abs() < 100.0,
            "offset error {}",
            e.offset_at(t) - truth
        );
        assert!((e.rate - drift).abs() < 1e-8, "rate {}", e.rate);
        // The peer's 20 us of processing is timed by its drifting clock.
        assert!(
            (e.min_delay - 2 * MILLISECOND).abs() < 10,
            "min delay {}",
            e.min_delay
        );
    }

    #[test]
    fn impossible_timestamps_are_rejected() {
        assert!(
            ClockSample::from_timestamps(LocalTime(100), LocalTime(0), LocalTime(1), LocalTime(50))
                .is_none()
        );
        assert!(
            ClockSample::from_timestamps(
                LocalTime(100),
                LocalTime(10),
                LocalTime(5),
                LocalTime(200)
            )
            .is_none()
        );
    }

    #[test]
    fn mapping_round_trips_and_composes() {
        let m = ClockMapping {
            timebase: 1,
            local: LocalTime(1_000),
            group: GroupTime(5_000_000),
            rate_ppm: 200.0,
        };
        let t = LocalTime(1_000 + SECOND as u64);
        let g = m.to_group(t);
        assert_eq!(g, GroupTime(5_000_000 + 1_000_200_000));
        assert!(m.to_local(g).since(t).abs() <= 1);
        // Peer clock = ours + 1 s exactly, no drift: composing shifts by one second.
        let link = LinkEstimate {
            at: LocalTime(0),
            offset: SECOND as f64,
            rate: 0.0,
            min_delay: 0,
            jitter: 0.0,
            samples: 1,
        };
        let ours = m.compose(&link, LocalTime(1_000));
        assert_eq!(
            ours.to_group(LocalTime(1_000)),
            m.to_group(LocalTime(1_000 + SECOND as u64))
        );
        assert!((ours.rate_ppm - 200.0).abs() < 1e-9);
    }

    proptest! {
        /// Whatever the asymmetry of the delays, the estimate at the lowest-delay sample lies
        /// in the interval that sample proves to contain the truth (its measured offset plus or
        /// minus half its delay), so it is never further from the truth than that delay.
        #[test]
        fn estimate_is_within_the_bound_of_the_lowest_delay_sample(
            offset in -10e9f64..10e9,
            delays in proptest::collection::vec((10_000u64..5_000_000, 10_000u64..5_000_000), 1..40),
        ) {
            let mut f = ClockFilter::new(FilterConfig::default());
            let base = 100 * SECOND as u64;
            let mut samples = Vec::new();
            for (i, (up, down)) in delays.iter().enumerate() {
                let s = exchange(base + i as u64 * 500 * MILLISECOND as u64, offset, 0.0, *up, *down);
                samples.push(s);
                f.add(s);
            }
            // The filter breaks ties in delay by age, oldest first, as min_by_key does.
            let window = &samples[samples.len().saturating_sub(FilterConfig::default().window)..];
            let best = window.iter().min_by_key(|s| s.delay).unwrap();
            let e = f.estimate().unwrap();
            let est = e.offset_at(best.at);
            let half = best.delay as f64 / 2.0;
            prop_assert!((est - best.offset).abs() <= half + 1e-3, "estimate {} outside {} +- {}", est, best.offset, half);
            let err = (est - offset).abs();
            prop_assert!(err <= best.delay as f64 + 2.0, "error {} > bound {}", err, best.delay);
        }
    }
}
