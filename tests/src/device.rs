//! A simulated sound device as real ones behave: callbacks one period apart that wake late by a
//! seeded amount, an output latency reported with noise and a slow wander, buffering that changes
//! now and then, and underruns (the callbacks stall, the device runs dry and restarts with
//! perhaps another buffering). Everything is seeded.
//!
//! The device plays its buffers at their true instants; the player only knows what a driver
//! knows (callback instants and reported latencies) and times each buffer with an estimator.
//! The sound is then late or early by the estimator's error: what a listener hears at true
//! instant `t` is what the player meant for `t + error`. The estimator is the client's own
//! device timeline (`player::DeviceTimeline`, `player/src/timeline/`), fed each callback's
//! instant, reported latency and frames, and the underrun at a restart, as the cpal callback
//! feeds it. See `tests/README.md`, "The device model".

use std::collections::VecDeque;

use player::{CallbackInfo, DeviceTimeline};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::scenario::{MS, SEC, US};

/// How one simulated sound device behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceProfile {
    /// Preset name (`sim --device NAME`).
    pub name: &'static str,
    /// Frames per callback.
    pub period_frames: u32,
    /// Device frames per second.
    pub sample_rate: u32,
    /// From a callback's hand-over to its buffer's first frame heard, when the callback runs on
    /// time, ns.
    pub latency: u64,
    /// Mean of the exponential delay with which a callback wakes after its due instant, ns.
    pub wake_mean: u64,
    /// Probability that a callback wakes much later (a moment of late wake-ups).
    pub late_wake_p: f64,
    /// Mean of such a late wake-up, ns.
    pub late_wake_mean: u64,
    /// Standard deviation of each report's own noise, ns (reports are then whole frames).
    pub report_noise: u64,
    /// Standard deviation of the reports' slow wander, ns.
    pub wander: u64,
    /// Time constant of the wander, ns.
    pub wander_tau: u64,
    /// Mean time between changes of buffering without a break (a period more or less), ns
    /// (0: never).
    pub buffering_every: u64,
    /// Mean time between stalls of the callbacks, ns, each drawn in [0.5, 1.5] times this
    /// (0: never). A stall longer than what is buffered is an underrun.
    pub underrun_every: u64,
    /// How long the callbacks stall at an underrun, drawn in [min, max], ns.
    pub stall: (u64, u64),
}

impl DeviceProfile {
    /// An idle device on the as-heard rig, fitted from its recorded callbacks
    /// (`player/tests/data/callbacks-buffer-more.csv`, 1,735 callbacks; [`DeviceProfile::fit`]
    /// gives these values from it): 512-frame periods at 48 kHz, 21.1 ms reported latency,
    /// wake-up delays of 60 µs median above the earliest recent callback (exponential mean 87
    /// µs), 0.9 % later than a millisecond (1.9 ms on average), reports with 36 µs of noise of
    /// their own and block medians wandering by 48 µs (sd). The wander's time constant (5 s)
    /// is not fitted (the trace's 10 s before its step are too short); no buffering change and
    /// no underrun.
    pub fn rig() -> Self {
        DeviceProfile {
            name: "rig",
            period_frames: 512,
            sample_rate: 48_000,
            latency: 21_083 * US,
            wake_mean: 87 * US,
            late_wake_p: 0.0087,
            late_wake_mean: 1_870 * US,
            report_noise: 36 * US,
            wander: 48 * US,
            wander_tau: 5 * SEC,
            buffering_every: 0,
            underrun_every: 0,
            stall: (0, 0),
        }
    }

    /// The rig's device on a busy machine (issue 25): its callbacks stall for 30–150 ms every
    /// 2–6 s (an underrun, unless the stall is shorter than what is buffered), and a change of
    /// buffering every 20 s on average.
    pub fn busy() -> Self {
        DeviceProfile {
            name: "busy",
            buffering_every: 20 * SEC,
            underrun_every: 4 * SEC,
            stall: (30 * MS, 150 * MS),
            ..DeviceProfile::rig()
        }
    }

    /// Parses a preset name: `rig` or `busy`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "rig" => Ok(DeviceProfile::rig()),
            "busy" => Ok(DeviceProfile::busy()),
            other => Err(format!(
                "unknown device model {other:?} (expected rig or busy)"
            )),
        }
    }

    /// Nanoseconds of one period at the nominal rate.
    pub fn period_ns(&self) -> f64 {
        self.period_frames as f64 * 1e9 / self.sample_rate as f64
    }

    /// Fits the callback figures of a recorded callback trace (`host_ns,latency_ns,frames,
    /// broke` lines as `bench/as-heard` keeps them): the period, the median latency, and the
    /// wake-up delays above the earliest of the last eight callbacks carried forward. Report
    /// noise, wander, buffering changes and underruns are not fitted (they are kept from
    /// [`DeviceProfile::rig`]).
    pub fn fit(trace: &str, sample_rate: u32) -> Result<Self, String> {
        let mut rows = Vec::new();
        for (n, line) in trace.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let parse = |k: usize| -> Result<f64, String> {
                f.get(k)
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .ok_or_else(|| {
                        format!("line {}: expected host_ns,latency_ns,frames,broke", n + 1)
                    })
            };
            rows.push((parse(0)?, parse(1)?, parse(2)?));
        }
        if rows.len() < 100 {
            return Err(format!(
                "{} callbacks: too few to fit (at least 100)",
                rows.len()
            ));
        }
        let ns_per_frame = 1e9 / sample_rate as f64;
        let mut frames = 0.0;
        let mut u = Vec::with_capacity(rows.len());
        for &(host, _, n) in &rows {
            u.push(host - rows[0].0 - frames * ns_per_frame);
            frames += n;
        }
        let mut wake: Vec<f64> = (8..u.len())
            .map(|i| u[i] - u[i - 7..=i].iter().copied().fold(f64::INFINITY, f64::min))
            .collect();
        wake.sort_by(f64::total_cmp);
        let median = wake[wake.len() / 2];
        let late = wake.iter().filter(|&&w| w > 1e6).count() as f64 / wake.len() as f64;
        let late_mean = {
            let l: Vec<f64> = wake.iter().copied().filter(|&w| w > 1e6).collect();
            if l.is_empty() {
                0.0
            } else {
                l.iter().sum::<f64>() / l.len() as f64
            }
        };
        // The reports against the envelope, per 47-callback (0.5 s) block: the spread inside a
        // block is the reports' own noise, the blocks' medians wander (up to the first step of
        // the buffering, beyond 1 ms, after which the line differs).
        let against: Vec<f64> = (8..u.len())
            .map(|i| u[i] + rows[i].1 - u[i - 7..=i].iter().copied().fold(f64::INFINITY, f64::min))
            .collect();
        let mut medians = Vec::new();
        let mut inside = Vec::new();
        for block in against.chunks_exact(47) {
            let mut b = block.to_vec();
            b.sort_by(f64::total_cmp);
            let m = b[b.len() / 2];
            if medians.last().is_some_and(|&l: &f64| (m - l).abs() > 1e6) {
                break;
            }
            medians.push(m);
            inside.extend(block.iter().map(|v| v - m));
        }
        let sd = |v: &[f64]| {
            let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
        };
        let mut latency: Vec<f64> = rows.iter().map(|r| r.1).collect();
        latency.sort_by(f64::total_cmp);
        let mut frames_per: Vec<f64> = rows.iter().map(|r| r.2).collect();
        frames_per.sort_by(f64::total_cmp);
        Ok(DeviceProfile {
            name: "fitted",
            period_frames: frames_per[frames_per.len() / 2] as u32,
            sample_rate,
            latency: latency[latency.len() / 2] as u64,
            // An exponential's median is its mean times ln 2.
            wake_mean: (median / std::f64::consts::LN_2) as u64,
            late_wake_p: late,
            late_wake_mean: late_mean as u64,
            report_noise: sd(&inside) as u64,
            wander: sd(&medians) as u64,
            ..DeviceProfile::rig()
        })
    }
}

/// Buffers kept for the sound's lookup (about 0.7 s).
const HISTORY: usize = 64;

/// One buffer as the device played it: true instant of its first frame, the estimator's error
/// for it (estimated minus true instant), ns.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Buffer {
    plays_at: f64,
    error: f64,
}

/// What the device did at an underrun: the player's frames are late by `slip` ns from the
/// restart on (the renderer resumes with the frame it stopped at), and the first output after
/// the break is at true instant `restart`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Underrun {
    /// True instant the device ran dry (the sound stopped), ns.
    pub dry_at: f64,
    /// True instant the callbacks stopped, ns.
    pub stalled_at: f64,
    /// True instant of the first callback after the break, ns.
    pub restart: f64,
    /// How much later the sound is from then on, ns.
    pub slip: f64,
}

/// One simulated device and the player's estimator of it. Callbacks are generated lazily, in
/// order, as instants are asked for.
#[derive(Clone, Debug)]
pub struct SimDevice {
    profile: DeviceProfile,
    rng: ChaCha8Rng,
    /// True ns per device frame (the device's crystal).
    ns_per_frame: f64,
    /// Latency in force, ns.
    latency: f64,
    /// True instant the next buffer's first frame plays.
    next_plays: f64,
    /// Report wander now, ns.
    wander: f64,
    /// Stalled since this true instant (no callbacks).
    stalled_since: Option<f64>,
    /// The callbacks ran again at this true instant: none runs earlier.
    resumed_at: f64,
    /// True instant of the last callback: one thread runs them in turn, so a callback that
    /// wakes late delays the next.
    last_callback: f64,
    next_buffering_change: f64,
    next_underrun: f64,
    history: VecDeque<Buffer>,
    /// The client's own device timeline, fed each callback as the cpal callback feeds it.
    timeline: DeviceTimeline,
    /// The stream restarted after running dry: the next callback reports the underrun.
    xrun: bool,
    /// Callbacks at which the timeline found that the sound moved with no break.
    moves: u64,
    underruns: u64,
    buffering_changes: u64,
}

impl SimDevice {
    /// A device whose stream starts at true instant `start` (its first buffer plays one
    /// latency later), running `ppm` fast against true time, seeded by `seed`.
    pub fn new(profile: DeviceProfile, ppm: f64, start: f64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let next_buffering_change = start + exponential(&mut rng, profile.buffering_every);
        let next_underrun = start + spaced(&mut rng, profile.underrun_every);
        SimDevice {
            profile,
            rng,
            ns_per_frame: 1e9 / profile.sample_rate as f64 / (1.0 + ppm * 1e-6),
            latency: profile.latency as f64,
            next_plays: start + profile.latency as f64,
            wander: 0.0,
            stalled_since: None,
            resumed_at: start,
            last_callback: start,
            next_buffering_change,
            next_underrun,
            history: VecDeque::new(),
            timeline: DeviceTimeline::new(profile.sample_rate),
            xrun: false,
            moves: 0,
            underruns: 0,
            buffering_changes: 0,
        }
    }

    /// Underruns so far.
    pub fn underruns(&self) -> u64 {
        self.underruns
    }

    /// Callbacks so far at which the player's device timeline found that the sound moved with
    /// no break (the client counts each as an output break).
    pub fn moves(&self) -> u64 {
        self.moves
    }

    /// Changes of buffering so far.
    pub fn buffering_changes(&self) -> u64 {
        self.buffering_changes
    }

    /// True instant of the next underrun (`f64::INFINITY`: none).
    pub fn next_underrun(&self) -> f64 {
        self.next_underrun
    }

    fn period(&self) -> f64 {
        self.profile.period_frames as f64 * self.ns_per_frame
    }

    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Runs every callback due by true instant `t` (each runs one latency before its buffer
    /// plays, plus its wake-up delay).
    fn run_to(&mut self, t: f64) {
        if self.stalled_since.is_some() {
            return;
        }
        let p = self.profile;
        while self.next_plays - self.latency <= t {
            let period = self.period();
            if self.profile.buffering_every > 0 && self.next_plays >= self.next_buffering_change {
                // A period more or less between callbacks and sound; the sound carries on.
                let sign = if self.uniform() < 0.5 { -1.0 } else { 1.0 };
                self.latency = (self.latency + sign * period).max(period);
                self.buffering_changes += 1;
                self.next_buffering_change += exponential(&mut self.rng, p.buffering_every);
            }
            let mut wake = exponential(&mut self.rng, p.wake_mean);
            if self.uniform() < p.late_wake_p {
                wake += exponential(&mut self.rng, p.late_wake_mean);
            }
            let cb = (self.next_plays - self.latency + wake.min(self.latency * 0.9))
                .max(self.resumed_at)
                .max(self.last_callback);
            self.last_callback = cb;
            let decay = (-period / p.wander_tau.max(1) as f64).exp();
            let kick = (1.0 - decay * decay).sqrt() * p.wander as f64 * self.normal();
            self.wander = self.wander * decay + kick;
            let noise = p.report_noise as f64 * self.normal();
            // Reported latency in whole frames, as the stack reports it.
            let reported = ((self.next_plays - cb + self.wander + noise) / self.ns_per_frame)
                .round()
                * self.ns_per_frame;
            let placed = self.timeline.on_callback(CallbackInfo {
                now_ns: cb.max(0.0).round() as u64,
                latency_ns: reported.max(0.0).round() as u64,
                frames: p.period_frames as usize,
                xrun: std::mem::take(&mut self.xrun),
            });
            self.moves += u64::from(placed.moved);
            let est = placed.first_frame_ns as f64;
            self.history.push_back(Buffer {
                plays_at: self.next_plays,
                error: est - self.next_plays,
            });
            if self.history.len() > HISTORY {
                self.history.pop_front();
            }
            self.next_plays += period;
        }
    }

    /// The estimator's error for the buffer heard at true instant `t`, ns: the instant the
    /// player believes it plays minus the instant it does. The listener hears at `t` what the
    /// player meant for `t + error`. `None` while the device is silent (before its first
    /// buffer, or run dry).
    pub fn error_at(&mut self, t: f64) -> Option<f64> {
        self.run_to(t);
        let b = self.history.iter().rev().find(|b| b.plays_at <= t)?;
        // Past the end of the buffer found: run dry (before a restart's first buffer, or the
        // last one handed over before a stall).
        if t >= b.plays_at + self.period() {
            return None;
        }
        Some(b.error)
    }

    /// The callbacks stall at true instant `t`: nothing more is handed over until
    /// [`SimDevice::resume`].
    pub fn stall(&mut self, t: f64) {
        self.run_to(t);
        self.stalled_since = Some(t);
    }

    /// Draws how long the next stall lasts, ns.
    pub fn draw_stall(&mut self) -> u64 {
        let (lo, hi) = self.profile.stall;
        lo + (self.uniform() * hi.saturating_sub(lo) as f64) as u64
    }

    /// The callbacks run again at true instant `t`. If the device ran dry meanwhile (the stall
    /// outlasted what was buffered) the stream restarts, perhaps with a period more or less of
    /// buffering, and the underrun is returned.
    pub fn resume(&mut self, t: f64) -> Option<Underrun> {
        let stalled_at = self.stalled_since.take()?;
        self.resumed_at = t;
        self.next_underrun = t + spaced(&mut self.rng, self.profile.underrun_every);
        // Buffered audio lasts until the slot after the last one handed over.
        let dry_at = self.next_plays;
        if t + self.latency * 0.5 < dry_at {
            return None;
        }
        self.underruns += 1;
        let period = self.period();
        let r = self.uniform();
        if r < 0.25 {
            self.latency = (self.latency - period).max(period);
        } else if r < 0.5 {
            self.latency += period;
        }
        let plays = t + self.latency;
        let slip = plays - dry_at;
        self.next_plays = plays;
        self.xrun = true;
        Some(Underrun {
            dry_at,
            stalled_at,
            restart: t,
            slip,
        })
    }
}

/// A draw in [0.5, 1.5] times `mean` ns (`f64::INFINITY` for a mean of 0: never): stalls come
/// every few seconds, never two at once.
fn spaced(rng: &mut ChaCha8Rng, mean: u64) -> f64 {
    if mean == 0 {
        return f64::INFINITY;
    }
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (0.5 + u) * mean as f64
}

/// An exponential draw of mean `mean` ns (`f64::INFINITY` for a mean of 0: never).
fn exponential(rng: &mut ChaCha8Rng, mean: u64) -> f64 {
    if mean == 0 {
        return f64::INFINITY;
    }
    let u = 1.0 - (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    -u.ln() * mean as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = include_str!("../../player/tests/data/callbacks-buffer-more.csv");

    #[test]
    fn fitting_the_rig_trace_gives_the_rig_profile() {
        let fit = DeviceProfile::fit(TRACE, 48_000).unwrap();
        eprintln!("{fit:?}");
        let rig = DeviceProfile::rig();
        assert_eq!(fit.period_frames, rig.period_frames);
        let near = |a: u64, b: u64, tol: f64| (a as f64 - b as f64).abs() <= tol * b as f64;
        assert!(near(fit.latency, rig.latency, 0.01), "{fit:?}");
        assert!(near(fit.wake_mean, rig.wake_mean, 0.1), "{fit:?}");
        assert!(near(fit.report_noise, rig.report_noise, 0.1), "{fit:?}");
        assert!(near(fit.wander, rig.wander, 0.2), "{fit:?}");
        assert!((fit.late_wake_p - rig.late_wake_p).abs() < 0.01, "{fit:?}");
    }

    #[test]
    fn a_trace_too_short_or_malformed_is_refused() {
        assert!(
            DeviceProfile::fit("host_ns,latency_ns,frames,broke\n1,2,512,0\n", 48_000).is_err()
        );
        let bad = format!("{}\nx,y\n", &TRACE[..2_000]);
        assert!(
            DeviceProfile::fit(&bad, 48_000)
                .unwrap_err()
                .contains("line")
        );
    }

    #[test]
    fn an_underrun_slips_the_sound_by_the_stall_less_what_was_buffered() {
        let mut d = SimDevice::new(DeviceProfile::rig(), 0.0, 0.0, 1);
        assert!(d.error_at(1e9).is_some());
        d.stall(1e9);
        assert!(d.error_at(1.05e9).is_none(), "ran dry: silent");
        let u = d
            .resume(1.1e9)
            .expect("a 100 ms stall runs a 21 ms buffer dry");
        // What was handed over by the stall plays out: one latency and at most a period.
        assert!(u.dry_at > 1.021e9 && u.dry_at < 1.033e9, "{u:?}");
        // The stall, plus the new buffering, less what was buffered.
        assert!(u.slip > 50e6 && u.slip < 110e6, "{u:?}");
        assert!(d.error_at(1.1e9 + 10e6).is_none(), "not yet refilled");
        assert!(d.error_at(1.2e9).is_some());
    }

    #[test]
    fn a_short_stall_does_not_underrun() {
        let mut d = SimDevice::new(DeviceProfile::rig(), 0.0, 0.0, 2);
        d.error_at(1e9);
        d.stall(1e9);
        assert_eq!(d.resume(1e9 + 5e6), None);
        assert!(d.error_at(1.1e9).is_some());
    }

    #[test]
    fn the_same_seed_gives_the_same_device() {
        let run = |seed| {
            let mut d = SimDevice::new(DeviceProfile::busy(), 10.0, 0.0, seed);
            (1..200)
                .map(|k| d.error_at(k as f64 * 50e6))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    /// The client's timeline across each underrun of a busy device (seeds 1–12, 60 s each):
    /// how far its error moved from just before the stall to 0.2 s and to 1 s after the
    /// restart (µs). An underrun should cost the timeline nothing it knew (`docs/device-timing.md`,
    /// "After an output break").
    fn moves_across_underruns() -> Vec<(f64, f64)> {
        let mut moves = Vec::new();
        for seed in 1..=12u64 {
            let mut d = SimDevice::new(DeviceProfile::busy(), 12.0, 0.0, seed);
            let mut t = 0.0;
            let mut before = None;
            while t < 60e9 {
                let next = d.next_underrun();
                while t + 10e6 < next {
                    t += 10e6;
                    before = d.error_at(t).or(before);
                }
                d.stall(t);
                t += d.draw_stall() as f64;
                let Some(u) = d.resume(t) else { continue };
                let start = u.restart + d.latency;
                let at = |off: f64| start + off;
                if at(1e9) >= d.next_underrun() || t < 6e9 {
                    continue;
                }
                let (Some(e0), Some(e02), Some(e1)) =
                    (before, d.error_at(at(0.2e9)), d.error_at(at(1e9)))
                else {
                    continue;
                };
                moves.push(((e02 - e0) / 1e3, (e1 - e0) / 1e3));
                t = at(1e9);
                before = Some(e1);
            }
        }
        moves
    }

    #[test]
    fn an_underrun_moves_the_client_timeline_by_tens_of_microseconds_at_most() {
        let moves = moves_across_underruns();
        let mut worst: Vec<f64> = moves.iter().map(|m| m.0.abs().max(m.1.abs())).collect();
        worst.sort_by(f64::total_cmp);
        let median = worst[worst.len() / 2];
        let max = worst[worst.len() - 1];
        eprintln!(
            "{} underruns: median {median:.1} us, max {max:.1} us",
            worst.len()
        );
        assert!(worst.len() >= 60, "{} underruns", worst.len());
        // The reports' noise (36 µs) over the few callbacks that measure a new buffering, and
        // the restarted envelope's first callbacks: tens of µs, never a period's worth.
        assert!(
            median < 30.0 && max < 100.0,
            "median {median:.1} us, max {max:.1} us"
        );
    }
}
