//! Clock synchronisation arithmetic: the linear mapping from a local clock to group time, and
//! the per-link estimator that turns four-timestamp probes into an offset and a frequency error.
//!
//! The estimator treats the two directions of a probe separately. Each exchange measures
//! `t1 - t0` (the peer's clock offset plus the outbound delay) and `t3 - t2` (the return delay
//! minus the offset); queueing only ever adds to a delay, so each series lies above a straight
//! line (the clock offset drifting at the frequency error, plus the link's fixed delay), and its
//! lowest points are the least delayed. The filter fits both lower envelopes with one slope and
//! takes the offset from their difference. Unlike a filter that trusts the exchanges of lowest
//! round trip, it needs only a lucky packet in each direction, not both in the same exchange:
//! with exponential jitter of mean `m` and `n` exchanges, its error shrinks like `m / n` instead
//! of `m / sqrt(n)`. Like every two-way method, it cannot see a difference between the fixed
//! delays of the two directions (half of it shows up as offset).

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
    /// Returns `None` for impossible timestamps: a reply before its probe, negative processing,
    /// or processing longer than the round trip by more than a second.
    ///
    /// A `delay` a little below zero is possible between healthy peers: a receive stamp is the
    /// kernel's arrival instant moved onto the sync clock by its age, and a thread preempted
    /// between the two clock reads of that move makes the stamp early by the pause, which on
    /// loopback is more than the link's delay. Such a sample is kept here and left out by
    /// [`ClockFilter::add`], not taken for a peer's bad message.
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
    /// Lowest round-trip delay in the span, nanoseconds.
    pub min_delay: Nanos,
    /// Mean one-way delay above the link's floor (queueing jitter), from recent samples,
    /// nanoseconds.
    pub jitter: f64,
    /// Number of samples the estimate rests on.
    pub samples: usize,
    /// Estimated error of `offset` (about one standard deviation), nanoseconds: the envelopes'
    /// own noise (jitter over samples) and the frequency's uncertainty carried from the lowest
    /// points to the anchor. It falls as samples accumulate; the node probes faster while it is
    /// high.
    pub uncertainty: f64,
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
    /// Recent samples that describe the link's current delays (median delay, jitter).
    pub window: usize,
    /// How long a sample counts, ns. The frequency is measured over the whole span, so its
    /// precision grows with it; the span assumes the frequency constant over it.
    pub span: Nanos,
    /// Most samples kept, whatever the probe rate (bounds memory and work).
    pub max_samples: usize,
    /// Typical size of a crystal's frequency error, in ppm: the prior of the frequency
    /// estimate. The fitted slope is shrunk towards zero by its own uncertainty against this
    /// (a ridge estimate), so a slope fitted over a short or noisy span counts for little and a
    /// well-determined one counts fully.
    pub rate_prior_ppm: f64,
    /// Largest frequency error believed, in ppm; beyond it the fit is clamped.
    pub max_rate_ppm: f64,
    /// Consecutive samples off the fitted line that mean a clock stepped (one alone may be a
    /// corrupted timestamp; it is dropped).
    pub step_samples: usize,
    /// A sample whose offset is further than its half round trip plus this (ns), plus
    /// `step_uncertainty_factor` times the estimate's uncertainty, from the fitted line cannot
    /// be explained by queueing.
    pub step_margin_ns: f64,
    /// How many times the estimate's uncertainty a sample may be off the line (unitless).
    pub step_uncertainty_factor: f64,
    /// Frequency error allowed to the fitted line when judging a sample, as a fraction
    /// (100e-6: 100 ppm).
    pub step_rate_slack: f64,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            window: 64,
            span: 300 * crate::time::SECOND,
            max_samples: 2048,
            rate_prior_ppm: 100.0,
            max_rate_ppm: 2_000.0,
            step_samples: 3,
            step_margin_ns: 2_000_000.0,
            step_uncertainty_factor: 4.0,
            step_rate_slack: 100e-6,
        }
    }
}

/// The lower convex hull of a series of points `(instant, value)`, oldest first: the only
/// points that can be lowest under some slope, so the envelopes are fitted over a handful of
/// them whatever the number of samples.
#[derive(Clone, Debug, Default)]
struct LowerHull {
    points: VecDeque<(LocalTime, f64)>,
}

impl LowerHull {
    /// Adds a point at or after the last one.
    fn push(&mut self, t: LocalTime, y: f64) {
        if let Some(&(lt, ly)) = self.points.back()
            && lt == t
        {
            if y >= ly {
                return;
            }
            self.points.pop_back();
        }
        while self.points.len() >= 2 {
            let n = self.points.len();
            let (a, b) = (self.points[n - 2], self.points[n - 1]);
            // b stays only if it lies strictly below the segment from a to the new point.
            let bx = b.0.since(a.0) as f64;
            let cx = t.since(a.0) as f64;
            if bx * (y - a.1) - (b.1 - a.1) * cx <= 0.0 {
                self.points.pop_back();
            } else {
                break;
            }
        }
        self.points.push_back((t, y));
    }

    /// Points as `(x, y)` with `x` in nanoseconds relative to `anchor`.
    fn relative(&self, anchor: LocalTime) -> Vec<(f64, f64)> {
        self.points
            .iter()
            .map(|&(t, y)| (t.since(anchor) as f64, y))
            .collect()
    }
}

/// `min_i(up_i - r x_i) + min_j(down_j + r x_j)`: the sum of the two envelopes' heights at the
/// anchor under slope `r`, with the instants of the points that attain each minimum.
fn envelopes(up: &[(f64, f64)], down: &[(f64, f64)], r: f64) -> (f64, f64, f64, f64, f64) {
    let lowest = |pts: &[(f64, f64)], sign: f64| {
        pts.iter()
            .map(|&(x, y)| (y - sign * r * x, x))
            .fold(
                (f64::INFINITY, 0.0),
                |best, p| if p.0 < best.0 { p } else { best },
            )
    };
    let (a, xa) = lowest(up, 1.0);
    let (c, xc) = lowest(down, -1.0);
    (a + c, a, c, xa, xc)
}

/// The slopes that maximise [`envelopes`] (the lines highest under both series: the maximum
/// likelihood fit for exponential queueing delays), found by walking both hulls: an interval,
/// one point unless the maximum is flat; `None` when every point is at one instant.
fn best_rate(up: &[(f64, f64)], down: &[(f64, f64)]) -> Option<(f64, f64)> {
    let slope = |p: &[(f64, f64)], k: usize| (p[k + 1].1 - p[k].1) / (p[k + 1].0 - p[k].0);
    // Just above rate `lo`, the up envelope rests on up[i] and the down envelope on down[j];
    // the sum's derivative is x(down[j]) - x(up[i]), which only falls as the rate rises.
    let (mut i, mut j) = (0, down.len().checked_sub(1)?);
    if up.is_empty() {
        return None;
    }
    let mut lo = f64::NEG_INFINITY;
    loop {
        let dx = down[j].0 - up[i].0;
        let next_up = if i + 1 < up.len() {
            slope(up, i)
        } else {
            f64::INFINITY
        };
        let next_down = if j > 0 {
            -slope(down, j - 1)
        } else {
            f64::INFINITY
        };
        let next = next_up.min(next_down);
        if dx < 0.0 {
            return lo.is_finite().then_some((lo, lo));
        }
        if dx == 0.0 {
            return (lo.is_finite() || next.is_finite()).then_some((lo, next));
        }
        if !next.is_finite() {
            return None;
        }
        if next_up <= next {
            i += 1;
        }
        if next_down <= next {
            j -= 1;
        }
        lo = next;
    }
}

/// Per-link clock filter: the lower envelopes of both directions over a span of samples.
#[derive(Clone, Debug)]
pub struct ClockFilter {
    config: FilterConfig,
    /// Samples of the span, oldest first.
    samples: VecDeque<ClockSample>,
    /// Lower hull of `t1 - t0` (offset plus outbound delay) over the span.
    up: LowerHull,
    /// Lower hull of `t3 - t2` (return delay minus offset) over the span.
    down: LowerHull,
    estimate: Option<LinkEstimate>,
    /// Consecutive samples that the fitted line cannot explain, held back: when there are
    /// [`FilterConfig::step_samples`] of them, one of the two clocks has stepped.
    unexplained: Vec<ClockSample>,
    /// How many steps were detected (each restarted the fit).
    steps: u64,
    /// Samples left out for a round trip shorter than the peer's processing.
    outliers: u64,
}

impl ClockFilter {
    /// An empty filter.
    pub fn new(config: FilterConfig) -> Self {
        ClockFilter {
            config,
            samples: VecDeque::new(),
            up: LowerHull::default(),
            down: LowerHull::default(),
            estimate: None,
            unexplained: Vec::new(),
            steps: 0,
            outliers: 0,
        }
    }

    /// How many clock steps the filter detected: [`FilterConfig::step_samples`] samples in a row that the
    /// fitted line could not explain, after which it kept only those and fitted afresh.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// How many samples were left out for a negative delay (a round trip shorter than the peer's
    /// processing: a receive stamp early by more than the link's delay).
    pub fn outliers(&self) -> u64 {
        self.outliers
    }

    /// The current estimate, once at least one sample arrived.
    pub fn estimate(&self) -> Option<&LinkEstimate> {
        self.estimate.as_ref()
    }

    /// The most recent samples (at most the configured window), oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &ClockSample> {
        let skip = self.samples.len().saturating_sub(self.config.window.max(1));
        self.samples.iter().skip(skip)
    }

    /// Forgets every sample (for instance when the peer's clock is known to have changed).
    pub fn reset(&mut self) {
        self.unexplained.clear();
        self.samples.clear();
        self.up = LowerHull::default();
        self.down = LowerHull::default();
        self.estimate = None;
    }

    fn up_of(s: &ClockSample) -> f64 {
        s.offset + s.delay as f64 / 2.0
    }

    fn down_of(s: &ClockSample) -> f64 {
        s.delay as f64 / 2.0 - s.offset
    }

    fn rebuild_hulls(&mut self) {
        self.up = LowerHull::default();
        self.down = LowerHull::default();
        for s in &self.samples {
            self.up.push(s.at, Self::up_of(s));
            self.down.push(s.at, Self::down_of(s));
        }
    }

    /// Adds a sample and refits. Samples should arrive in order of `at`; an out-of-order one is
    /// inserted where it belongs.
    ///
    /// A sample the fitted line cannot explain (its offset off the line by more than its half
    /// round trip, the estimate's uncertainty and a margin) is held back; a few in a row mean
    /// that one of the clocks stepped, and the filter then forgets the samples from before the
    /// step (they would pin the envelopes, and the frequency, to the old clock for minutes).
    ///
    /// A sample with a negative delay is left out (and counted, [`ClockFilter::outliers`]):
    /// one of its one-way figures is too low by more than the delay, and as the lowest point
    /// of its envelope it would pin the fit. Returns the estimate, `None` before the first
    /// sample kept.
    pub fn add(&mut self, sample: ClockSample) -> Option<&LinkEstimate> {
        if sample.delay < 0 {
            self.outliers += 1;
            return self.estimate.as_ref();
        }
        if let Some(est) = self.estimate {
            let off = (sample.offset - est.offset_at(sample.at)).abs();
            // The line's slope may be off by tens of ppm early on: allow for that over the
            // time since the estimate's anchor.
            let drift = sample.at.since(est.at).unsigned_abs() as f64 * self.config.step_rate_slack;
            let allowed = sample.delay as f64 / 2.0
                + self.config.step_uncertainty_factor * est.uncertainty
                + drift
                + self.config.step_margin_ns;
            if off > allowed && !self.consistent_with_samples(&sample) {
                // A step moves every later sample the same way: held samples that disagree
                // with this one were something else, and are dropped.
                if self.unexplained.last().is_some_and(|last| {
                    (last.offset - sample.offset).abs()
                        > (last.delay + sample.delay) as f64 / 2.0 + self.config.step_margin_ns
                }) {
                    self.unexplained.clear();
                }
                self.unexplained.push(sample);
                if self.unexplained.len() < self.config.step_samples {
                    return self.estimate.as_ref();
                }
                let after = std::mem::take(&mut self.unexplained);
                self.reset();
                self.steps += 1;
                for s in after {
                    self.insert(s);
                }
                return self.estimate.as_ref();
            }
        }
        self.unexplained.clear();
        Some(self.insert(sample))
    }

    /// Whether `sample` could be true together with every sample held, if no clock stepped:
    /// each sample proves the offset at its instant to within half its round trip, and the
    /// offset cannot move faster than the largest frequency error allowed. A line fitted to
    /// noisy samples may extrapolate far off (a slope from jitter); a precise sample that
    /// contradicts the line but not the samples is news, not a step.
    fn consistent_with_samples(&self, sample: &ClockSample) -> bool {
        let max_rate = self.config.max_rate_ppm * 1e-6;
        let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
        for s in &self.samples {
            let reach =
                s.delay as f64 / 2.0 + sample.at.since(s.at).unsigned_abs() as f64 * max_rate;
            lo = lo.max(s.offset - reach);
            hi = hi.min(s.offset + reach);
        }
        // Held samples that contradict each other already (a step among them, or a frequency
        // beyond the bound) prove nothing about the new one.
        if lo > hi {
            return false;
        }
        let half = sample.delay as f64 / 2.0;
        sample.offset + half >= lo - 1.0 && sample.offset - half <= hi + 1.0
    }

    fn insert(&mut self, sample: ClockSample) -> &LinkEstimate {
        let in_order = self.samples.back().is_none_or(|b| b.at <= sample.at);
        let pos = self
            .samples
            .iter()
            .rposition(|s| s.at <= sample.at)
            .map_or(0, |p| p + 1);
        self.samples.insert(pos, sample);
        let newest = self.samples.back().map_or(sample.at, |s| s.at);
        let mut expired = false;
        while self.samples.len() > self.config.max_samples.max(1)
            || self
                .samples
                .front()
                .is_some_and(|f| newest.since(f.at) > self.config.span && self.samples.len() > 1)
        {
            self.samples.pop_front();
            expired = true;
        }
        let first = self.samples.front().map_or(sample.at, |s| s.at);
        let hull_stale = |h: &LowerHull| h.points.front().is_some_and(|p| p.0 < first);
        if !in_order || (expired && (hull_stale(&self.up) || hull_stale(&self.down))) {
            // Points that an expired hull vertex hid may be on the hull now.
            self.rebuild_hulls();
        } else {
            self.up.push(sample.at, Self::up_of(&sample));
            self.down.push(sample.at, Self::down_of(&sample));
        }
        let est = self.fit();
        self.estimate = Some(est);
        self.estimate.as_ref().expect("just set")
    }

    fn fit(&self) -> LinkEstimate {
        let n = self.samples.len();
        debug_assert!(n > 0);
        let anchor = self.samples[n - 1].at;
        let up = self.up.relative(anchor);
        let down = self.down.relative(anchor);
        let max_rate = self.config.max_rate_ppm * 1e-6;
        let previous = self.estimate.map_or(0.0, |e| e.rate);

        let best = best_rate(&up, &down).map(|(lo, hi)| match (lo.is_finite(), hi.is_finite()) {
            (true, true) => (lo + hi) / 2.0,
            (true, false) => lo,
            _ => hi,
        });
        let r0 = best.unwrap_or(previous).clamp(-max_rate, max_rate);

        // Queueing above the envelopes in recent samples: its mean is the jitter, and the
        // lowest of n samples lies about jitter / n above the floor. The mean is read from
        // the lower quartile (an exponential's is its mean times ln 4/3), which describes the
        // low delays the envelopes rest on and ignores a heavy tail of late packets.
        let (_, a0, c0, _, _) = envelopes(&up, &down, r0);
        let recent: Vec<&ClockSample> = self.samples().collect();
        let quartile_excess = |f: &dyn Fn(&ClockSample) -> f64| {
            let mut v: Vec<f64> = recent.iter().map(|s| f(s)).collect();
            let k = v.len() / 4;
            v.select_nth_unstable_by(k, f64::total_cmp);
            v[k].max(0.0)
        };
        let excess_up = quartile_excess(&|s: &ClockSample| {
            Self::up_of(s) - r0 * s.at.since(anchor) as f64 - a0
        });
        let excess_down = quartile_excess(&|s: &ClockSample| {
            Self::down_of(s) + r0 * s.at.since(anchor) as f64 - c0
        });
        let jitter = (excess_up + excess_down) / 2.0 / (4.0f64 / 3.0).ln();
        let floor_noise = jitter / n as f64;

        // Uncertainty of the slope: the rates under which the envelopes' sum stays within the
        // noise of its maximum (a likelihood interval).
        let rate_sigma = if best.is_some() {
            let (top, ..) = envelopes(&up, &down, r0);
            let width = |dir: f64| {
                let (mut lo, mut hi) = (0.0, 2.0 * max_rate);
                if top - envelopes(&up, &down, r0 + dir * hi).0 <= floor_noise {
                    return hi;
                }
                for _ in 0..40 {
                    let mid = (lo + hi) / 2.0;
                    if top - envelopes(&up, &down, r0 + dir * mid).0 <= floor_noise {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                hi
            };
            (width(1.0) + width(-1.0)) / 2.0
        } else {
            2.0 * max_rate
        };
        let prior = (self.config.rate_prior_ppm * 1e-6).powi(2);
        let rate = if best.is_some() {
            (r0 * prior / (prior + rate_sigma * rate_sigma)).clamp(-max_rate, max_rate)
        } else {
            r0
        };

        let (_, a, c, xa, xc) = envelopes(&up, &down, rate);
        let mut offset = (a - c) / 2.0;

        // The true offset at the lowest-delay sample lies within half its delay of what it
        // measured, whatever the asymmetry: keep the line inside that interval.
        let best_sample = self
            .samples
            .iter()
            .min_by_key(|s| s.delay)
            .expect("at least one sample");
        let at_best = offset + rate * best_sample.at.since(anchor) as f64;
        let half = best_sample.delay as f64 / 2.0;
        let clamped = at_best.clamp(best_sample.offset - half, best_sample.offset + half);
        offset += clamped - at_best;

        // The envelopes rest on points some way back; the slope's uncertainty grows with that
        // distance. The two minima each err by about floor_noise, independently.
        let reach = (xa.abs() + xc.abs()) / 2.0;
        let uncertainty = ((0.5 * floor_noise * floor_noise) + (rate_sigma * reach).powi(2)).sqrt();

        LinkEstimate {
            at: anchor,
            offset,
            rate,
            min_delay: best_sample.delay,
            jitter,
            samples: n,
            uncertainty,
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
    fn a_round_trip_shorter_than_the_peers_processing_is_left_out_not_called_impossible() {
        // Recorded between two idle clients on loopback (the peer 2 s behind, -200 ppm): the
        // peer held the probe 616 us, our round trip measured 196 us, so one receive stamp
        // was early by at least 420 us.
        let (t0, t1, t2, t3) = (
            23_787_893_281_664,
            23_785_871_656_944,
            23_785_872_272_670,
            23_787_893_477_321,
        );
        let odd = ClockSample::from_timestamps(
            LocalTime(t0),
            LocalTime(t1),
            LocalTime(t2),
            LocalTime(t3),
        )
        .expect("possible timestamps");
        assert_eq!(odd.delay, -420_069);

        let mut f = ClockFilter::new(FilterConfig::default());
        assert!(f.add(odd).is_none(), "no estimate rests on it");
        let base = t0 - 60 * SECOND as u64;
        for i in 0..60u64 {
            f.add(exchange(
                base + i * SECOND as u64,
                -2.0216e9,
                -200e-6,
                8_000,
                8_000,
            ));
        }
        let before = *f.estimate().expect("estimate");
        let after = *f.add(odd).expect("estimate");
        assert_eq!(after, before, "the odd sample moved the fit");
        assert_eq!(f.outliers(), 2);
        assert_eq!(f.samples().count(), 60.min(FilterConfig::default().window));

        // A reply before its probe, or negative processing, is still impossible.
        let at = LocalTime;
        assert!(ClockSample::from_timestamps(at(10), at(5), at(6), at(9)).is_none());
        assert!(ClockSample::from_timestamps(at(10), at(6), at(5), at(20)).is_none());
    }

    #[test]
    fn a_clock_step_restarts_the_fit_after_a_few_samples_and_a_lone_outlier_is_dropped() {
        let mut f = ClockFilter::new(FilterConfig::default());
        let drift = 150e-6;
        let base = 1_000 * SECOND as u64;
        let half = SECOND as u64 / 2;
        let ms = MILLISECOND as u64;
        for i in 0..240u64 {
            f.add(exchange(base + i * half, 5e9, drift, ms, ms));
        }
        // One wild sample (a corrupted timestamp): dropped, the estimate does not move.
        let t = base + 240 * half;
        let before = f.estimate().unwrap().offset_at(LocalTime(t));
        f.add(exchange(t, 5e9 + 3e9, drift, ms, ms));
        assert_eq!(f.steps(), 0);
        assert!((f.estimate().unwrap().offset_at(LocalTime(t)) - before).abs() < 1.0);
        // The peer's clock steps by 500 ms for good: after `step_samples` samples the filter
        // follows, and fits the drift afresh from the new samples only.
        for i in 241..300u64 {
            f.add(exchange(base + i * half, 5.5e9, drift, ms, ms));
        }
        assert_eq!(f.steps(), 1);
        let e = f.estimate().unwrap();
        let t = LocalTime(base + 299 * half);
        let truth = 5.5e9 + t.0 as f64 * drift;
        assert!(
            (e.offset_at(t) - truth).abs() < 1_000.0,
            "offset error {}",
            e.offset_at(t) - truth
        );
        assert!((e.rate - drift).abs() < 1e-6, "rate {}", e.rate);
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
            uncertainty: 0.0,
        };
        let ours = m.compose(&link, LocalTime(1_000));
        assert_eq!(
            ours.to_group(LocalTime(1_000)),
            m.to_group(LocalTime(1_000 + SECOND as u64))
        );
        assert!((ours.rate_ppm - 200.0).abs() < 1e-9);
    }

    /// Exponential delays of mean `mean` ns from a seeded xorshift generator.
    fn exponential(mean: f64, seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            (-u.ln() * mean) as u64
        }
    }

    #[test]
    fn one_lucky_packet_each_way_is_enough() {
        // Every exchange has one direction queued 5 ms: no round trip is ever short, so a
        // filter trusting the shortest round trips errs by up to 2.5 ms. The outbound packet
        // is quick in one exchange, the return packet in the next: the envelopes see both.
        let mut f = ClockFilter::new(FilterConfig::default());
        let (offset, drift) = (-3e9, -40e-6);
        let base = 500 * SECOND as u64;
        let (fast, queued) = (MILLISECOND as u64, 6 * MILLISECOND as u64);
        for i in 0..40u64 {
            let (up, down) = if i % 2 == 0 {
                (fast, queued)
            } else {
                (queued, fast)
            };
            f.add(exchange(
                base + i * SECOND as u64 / 2,
                offset,
                drift,
                up,
                down,
            ));
        }
        let e = f.estimate().unwrap();
        let t = LocalTime(base + 20 * SECOND as u64);
        let truth = offset + t.0 as f64 * drift;
        assert!(
            (e.offset_at(t) - truth).abs() < 100.0,
            "offset error {} ns",
            e.offset_at(t) - truth
        );
        assert!((e.rate - drift).abs() < 1e-8, "rate {}", e.rate);
        // Every round trip is 7 ms: the filter knows none was short.
        assert!(
            (e.min_delay - 7 * MILLISECOND).abs() < 10,
            "{}",
            e.min_delay
        );
    }

    #[test]
    fn error_and_uncertainty_fall_as_samples_accumulate_on_a_jittery_link() {
        // Wi-Fi-like: 2.5 ms each way plus exponential jitter of mean 2 ms, 20 probes a second.
        let mut f = ClockFilter::new(FilterConfig::default());
        let (offset, drift) = (2e9, 150e-6);
        let base = 500 * SECOND as u64;
        let mut jitter = exponential(2e6, 3);
        let mut at = |f: &mut ClockFilter, i: u64| {
            let t = base + i * 50 * MILLISECOND as u64;
            let base_delay = 2_500_000;
            f.add(exchange(
                t,
                offset,
                drift,
                base_delay + jitter(),
                base_delay + jitter(),
            ));
            let e = *f.estimate().unwrap();
            let now = LocalTime(t);
            (
                e.offset_at(now) - (offset + now.0 as f64 * drift),
                e.uncertainty,
            )
        };
        let mut early = (0.0, 0.0);
        let mut late = (0.0, 0.0);
        for i in 0..600 {
            let r = at(&mut f, i);
            if i == 19 {
                early = r;
            }
            late = r;
        }
        // One second in: a few hundred microseconds; thirty seconds in: a few microseconds.
        assert!(early.1 > 50_000.0, "uncertainty after 1 s: {} ns", early.1);
        assert!(late.1 < 15_000.0, "uncertainty after 30 s: {} ns", late.1);
        assert!(late.0.abs() < 30_000.0, "error after 30 s: {} ns", late.0);
    }

    #[test]
    fn samples_older_than_the_span_are_forgotten() {
        // The peer's clock steps by 10 ms (a suspended machine); a minute later the estimate
        // rests on samples after the step only.
        let config = FilterConfig {
            span: 60 * SECOND,
            ..FilterConfig::default()
        };
        let mut f = ClockFilter::new(config);
        let base = 500 * SECOND as u64;
        let mut jitter = exponential(200_000.0, 5);
        for i in 0..400u64 {
            let t = base + i * SECOND as u64 / 2;
            let offset = if i < 100 { 1e9 } else { 1e9 + 1e7 };
            f.add(exchange(
                t,
                offset,
                0.0,
                300_000 + jitter(),
                300_000 + jitter(),
            ));
        }
        let e = f.estimate().unwrap();
        assert!(e.samples <= 121, "{} samples", e.samples);
        let t = LocalTime(base + 200 * SECOND as u64);
        assert!(
            (e.offset_at(t) - (1e9 + 1e7)).abs() < 5_000.0,
            "offset error {} ns",
            e.offset_at(t) - (1e9 + 1e7)
        );
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
