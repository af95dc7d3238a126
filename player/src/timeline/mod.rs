//! When a sound device really plays each buffer, estimated from its callbacks rather than taken
//! from the latency the audio stack reports.
//!
//! A [`DeviceTimeline`] is fed one [`CallbackInfo`] per device callback (the clock read in the
//! callback, the reported latency, the frames handed over, whether the stack reported an
//! underrun) and answers with a [`Placement`]: the instant the buffer's first frame is heard,
//! and whether the output broke or the sound moved. It does no I/O, reads no clock and
//! allocates nothing after [`DeviceTimeline::new`], so the audio callback, the tests and the
//! simulator (`tests/src/device.rs`) drive the same code.
//!
//! Each buffer is timed as the earliest of the last few callbacks, carried forward at the
//! device's fitted rate and filtered ([`envelope`], [`rate`]), plus a delay learnt from the
//! reported latencies ([`delay`]). The reports wander by hundreds of µs and glitch by
//! milliseconds; the callbacks keep the device's time. The [`phase`] says which line is
//! followed, and a [`Check`] what a disagreement between the two is taken for. Why each rule
//! and number ([`TimelineConfig`]) is what it is: `docs/device-timing.md`.

mod breaks;
mod config;
mod delay;
mod envelope;
mod phase;
mod rate;
mod ring;
#[cfg(test)]
mod tests;

pub use config::TimelineConfig;

use breaks::BreakDetector;
use delay::DelayLearner;
use envelope::Envelope;
use phase::{Check, Phase};
use rate::RateFit;
use ring::Ring;

/// What the timeline is told at one device callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackInfo {
    /// The clock read in the callback, ns (the player's sync clock).
    pub now_ns: u64,
    /// The latency the stack reports for this buffer (`playback - callback`), ns.
    pub latency_ns: u64,
    /// Frames handed over in this callback.
    pub frames: usize,
    /// The stack reported an underrun (an xrun) since the last callback.
    pub xrun: bool,
}

/// The timeline's answer for one callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The instant the buffer's first frame is heard, ns on the callback's clock.
    pub first_frame_ns: u64,
    /// The output broke just before this callback: the stack said the device ran dry, or the
    /// callbacks stopped for longer than a buffer lasts.
    pub broke: bool,
    /// The sound moved with no break: the instant given is off the last one's line by more
    /// than `step_ns` while the timeline went by a learnt delay, outside a break's aftermath (a
    /// stream that ran dry inside the sound server, or a change only the reports showed). The
    /// player's position jumped with it; the node should treat it as a break.
    pub moved: bool,
    /// The delay from the callbacks' envelope to the sound that the timeline went by; `None`
    /// where it used the reported latency as it is.
    pub learnt_delay_ns: Option<f64>,
}

/// The device timeline of one output stream.
#[derive(Debug, Clone)]
pub struct DeviceTimeline {
    cfg: TimelineConfig,
    /// Nominal nanoseconds per frame.
    ns_per_frame: f64,
    phase: Phase,
    check: Check,
    breaks: BreakDetector,
    rate: RateFit,
    envelope: Envelope,
    delay: DelayLearner,
    /// Clock instant (ns) of the first callback of the line. Instants are kept as offsets
    /// `u = instant - origin - frames * ns_per_frame`, small numbers.
    origin_ns: f64,
    /// Clock instant of the last callback.
    last_ns: f64,
    /// Frames handed over since the line started.
    frames: f64,
    /// Audio seconds played since the stream (not the line) started.
    age_s: f64,
    /// Reported minus timeline instants of the latest disagreeing callbacks.
    disagreements: Ring<f64>,
    /// Reported minus timeline instants of the latest agreeing callbacks: the reports' own
    /// error against the timeline, which a change of buffering does not change.
    agreeing: Ring<f64>,
    /// What the reports were off by against the timeline just before the last output break:
    /// their slow wander, which carries across a short break.
    break_baseline_ns: f64,
    /// Reported instants less the line's position (`origin + frames * ns_per_frame * (1 +
    /// rate)`) of the callbacks disagreeing since a break: the restarted stream's buffering as
    /// its reports measure it, independent of the envelope, which is still filling.
    break_intercepts: Ring<f64>,
    /// Their median once taken as a new buffering: until the break is verified the timeline
    /// keeps the sound there, moving the delay as the restarted envelope comes down.
    rebase_ns: Option<f64>,
    /// The last callback's reported and timeline instants and its buffer's length, while the
    /// timeline goes by a learnt delay: what tells a step of the line from one of the reports.
    last_instants: Option<(f64, f64, f64)>,
    /// The instant the last callback got and its buffer's length.
    last_slot: Option<(f64, f64)>,
}

impl DeviceTimeline {
    /// A timeline for a stream of `sample_rate` frames per second, tuned as the client is.
    pub fn new(sample_rate: u32) -> Self {
        Self::with_config(sample_rate, TimelineConfig::default())
    }

    /// A timeline tuned by `cfg`. All its storage is reserved here.
    pub fn with_config(sample_rate: u32, cfg: TimelineConfig) -> Self {
        let ns_per_frame = 1e9 / f64::from(sample_rate.max(1));
        DeviceTimeline {
            ns_per_frame,
            phase: Phase::Stopped,
            check: Check::Agreeing,
            breaks: BreakDetector::default(),
            rate: RateFit::new(&cfg, ns_per_frame),
            envelope: Envelope::new(&cfg),
            delay: DelayLearner::new(&cfg),
            origin_ns: 0.0,
            last_ns: 0.0,
            frames: 0.0,
            age_s: 0.0,
            disagreements: Ring::new(cfg.envelope_callbacks, 0.0),
            agreeing: Ring::new(2 * cfg.envelope_callbacks, 0.0),
            break_baseline_ns: 0.0,
            break_intercepts: Ring::new(cfg.envelope_callbacks, 0.0),
            rebase_ns: None,
            last_instants: None,
            last_slot: None,
            cfg,
        }
    }

    /// The tuning in force.
    pub fn config(&self) -> &TimelineConfig {
        &self.cfg
    }

    /// The delay from a callback's envelope to its buffer being heard that the timeline goes
    /// by; `None` while it uses the reported latency as it is (before the delay is learnt, or
    /// after starting over).
    pub fn learnt_delay_ns(&self) -> Option<f64> {
        self.delay.learnt().filter(|_| self.phase.has_line())
    }

    /// How much longer than nominal the device takes per frame against the clock, as fitted
    /// (2e-4: 200 ppm slow; 0 until fitted).
    pub fn rate(&self) -> f64 {
        self.rate.rate()
    }

    /// One device callback: where its buffer's first frame is heard, and whether the output
    /// broke or the sound moved before it.
    pub fn on_callback(&mut self, cb: CallbackInfo) -> Placement {
        let broke =
            self.breaks
                .on_callback(&self.cfg, cb.now_ns, cb.frames, self.ns_per_frame, cb.xrun);
        let reported = cb.now_ns.saturating_add(cb.latency_ns);
        if self.cfg.reports_only {
            return Placement {
                first_frame_ns: reported,
                broke,
                moved: false,
                learnt_delay_ns: None,
            };
        }
        if broke {
            if let Some(baseline) = self.agreeing.median_before(0) {
                self.break_baseline_ns = baseline;
            }
            // A young stream has learnt little, and perhaps of another buffering: the
            // restarted one is learnt afresh.
            if self.delay.learnt().is_none() {
                self.delay.reset();
            }
            self.phase = Phase::Refill {
                left: self.cfg.burst_callbacks,
                line: self.phase.has_line(),
            };
        }
        let timed = self.learnt_delay_ns().is_some();
        let first = self.place(cb.now_ns as f64, reported, cb.frames);
        let slot = first.max(0.0).round() as u64;
        let buffer_ns = cb.frames as f64 * self.ns_per_frame;
        // A break's own aftermath is the break's, already told.
        let quiet = matches!(self.phase, Phase::Refill { .. }) || self.verifying_break();
        let advance = 1.0 + self.rate.rate();
        let moved = match self.last_slot {
            Some((last, last_buffer_ns)) if timed && !quiet => {
                (slot as f64 - last - last_buffer_ns * advance).abs() > self.cfg.step_ns
            }
            _ => false,
        };
        self.last_slot = Some((slot as f64, buffer_ns));
        Placement {
            first_frame_ns: slot,
            broke,
            moved,
            learnt_delay_ns: self.learnt_delay_ns(),
        }
    }

    /// The instant this callback's first frame is heard (`reported`: the stack's own figure).
    fn place(&mut self, now: f64, reported: u64, frames: usize) -> f64 {
        let buffer_ns = frames as f64 * self.ns_per_frame;
        if let Some(burst) = self.refill(now, reported as f64, buffer_ns) {
            return burst;
        }
        if self.phase == Phase::Stopped || now < self.last_ns {
            self.restart_stream(now);
        }
        let p = self.ns_per_frame;
        let before = self.frames;
        let u = now - self.origin_ns - before * p;
        self.last_ns = now;
        self.frames += frames as f64;
        self.age_s += buffer_ns * 1e-9;

        let rate = self.rate.rate();
        let earliest = self.envelope.earliest(before, u, p, rate);
        let follow = !self.verifying_break() && self.check.lets_filter_follow();
        let raw = self.origin_ns + before * p + earliest;
        let envelope = self
            .envelope
            .filter(&self.cfg, raw, buffer_ns, rate, follow);
        self.rate.note(before, u);
        self.delay.note(reported as f64 - envelope);
        if self.rate.block_done(&self.cfg, self.frames) {
            match self.rate.close_block(&self.cfg, now, before) {
                Ok(()) => self.delay.close_block(&self.cfg, self.age_s),
                // Not paced by a clock: start over, timing by the reports meanwhile.
                Err(_) => self.phase = Phase::Stopped,
            }
        }
        let Some(learnt) = self.learnt_delay_ns() else {
            self.last_instants = None;
            return self.before_learnt(envelope, reported as f64);
        };
        let line_ns = self.origin_ns + before * p * (1.0 + rate);
        self.follow_line(reported as f64, envelope + learnt, line_ns, buffer_ns)
    }

    /// In the refill burst after a break: the instant of this callback's buffer, timed by the
    /// delay learnt before (nothing else times a queued buffer); `None` once the burst is over
    /// (the phase moves on: the line restarts, or everything does).
    fn refill(&mut self, now: f64, reported: f64, buffer_ns: f64) -> Option<f64> {
        let Phase::Refill { left, line } = self.phase else {
            return None;
        };
        // The first callback after the break, and any that follow it closer than half a
        // buffer.
        let burst = left == self.cfg.burst_callbacks || now - self.last_ns < buffer_ns / 2.0;
        if burst && left > 1 && now >= self.last_ns {
            self.phase = Phase::Refill {
                left: left - 1,
                line,
            };
            self.last_ns = now;
            return Some(self.learnt_delay_ns().map_or(reported, |delay| now + delay));
        }
        if line && now >= self.last_ns {
            self.restart_line(now);
            self.phase = Phase::Line { after_break: true };
        } else {
            self.phase = Phase::Stopped;
        }
        None
    }

    /// Before the delay is learnt: the `envelope` plus the reports' average so far, which
    /// smooths their noise; the `reported` instant until there is one, or where the two part
    /// by more than `reanchor_ns` (that short history is of another buffering: it starts over).
    fn before_learnt(&mut self, envelope: f64, reported: f64) -> f64 {
        let provisional = match self.phase {
            Phase::Line { .. } => self.delay.provisional(self.cfg.envelope_callbacks),
            _ => None,
        };
        match provisional.map(|delay| envelope + delay) {
            Some(heard) if (heard - reported).abs() <= self.cfg.reanchor_ns => heard,
            Some(_) => {
                self.delay.reset();
                reported
            }
            None => reported,
        }
    }

    /// On the line (at `line_ns` by the frames handed over): the timeline's instant `heard`
    /// against the `reported` one, a disagreement judged (see [`Check`]). Returns the instant
    /// given.
    fn follow_line(&mut self, reported: f64, mut heard: f64, line_ns: f64, buffer_ns: f64) -> f64 {
        if let Some(intercept) = self.rebase_ns {
            if self.verifying_break() {
                // The restarted envelope holds few callbacks and comes down as it fills: the
                // delay takes up what it moves, so the sound stays where the reports put it.
                let needed = intercept - (heard - line_ns) - self.break_baseline_ns;
                self.delay.refine(needed);
                heard += needed;
            } else {
                self.rebase_ns = None;
            }
        }
        // How far each instant moved from where the last callback's put this one.
        let steps = self
            .last_instants
            .map(|(last_reported, last_heard, last_buffer)| {
                let advance = last_buffer * (1.0 + self.rate.rate());
                (
                    reported - last_reported - advance,
                    heard - last_heard - advance,
                )
            });
        self.last_instants = Some((reported, heard, buffer_ns));
        let line_stepped = steps.is_some_and(|(reports, timeline)| {
            reports.abs() < self.cfg.report_step_ns && timeline.abs() > self.cfg.step_ns
        });
        // A restarted line's envelope steps as it fills: only the reports tell a new buffering.
        if line_stepped && !self.verifying_break() {
            self.line_stepped();
        }
        let for_s = buffer_ns * 1e-9;
        if let Check::LineStepped {
            for_s: so_far,
            callbacks,
            baseline_ns,
        } = self.check
        {
            let (for_s, callbacks) = (so_far + for_s, callbacks + 1);
            self.check = Check::LineStepped {
                for_s,
                callbacks,
                baseline_ns,
            };
            return self.measure_step(reported, heard, buffer_ns, for_s, callbacks, baseline_ns);
        }
        if (heard - reported).abs() <= self.cfg.reanchor_ns {
            self.agreeing.push(reported - heard);
            self.agree();
            return heard;
        }
        self.check = match self.check {
            Check::AfterBreak { for_s: s } => Check::AfterBreak { for_s: s + for_s },
            Check::ReportsOff { for_s: s } => Check::ReportsOff { for_s: s + for_s },
            _ if self.verifying_break() => Check::AfterBreak { for_s },
            _ => Check::ReportsOff { for_s },
        };
        self.disagreements.push(reported - heard);
        self.break_intercepts.push(reported - line_ns);
        match self.check {
            Check::AfterBreak { for_s } if for_s >= self.cfg.reanchor_after_break_s => {
                // The restarted stream holds a different amount of buffering (a period less,
                // in every rig run so far), and its reports, the only measure of it, have said
                // so for a while (its first ones can be anything). What they were off by before
                // the break is their wander, not the buffering's change.
                let intercept = self.break_intercepts.median_before(0).unwrap_or(0.0);
                let shift = intercept - (heard - line_ns) - self.break_baseline_ns;
                let placed = self.move_delay(shift, reported, heard, buffer_ns);
                self.rebase_ns = Some(intercept);
                placed
            }
            Check::AfterBreak { for_s } | Check::ReportsOff { for_s }
                if for_s >= self.cfg.reanchor_after_s =>
            {
                // Reports far off for seconds are a change the callbacks cannot show.
                self.phase = Phase::Stopped;
                reported
            }
            _ => heard,
        }
    }

    /// The line stepped at this callback while the reports carried on.
    fn line_stepped(&mut self) {
        if let Check::LineStepped {
            for_s, baseline_ns, ..
        } = self.check
        {
            // Stepped again before the last step was taken: measure from this one.
            self.check = Check::LineStepped {
                for_s,
                callbacks: 0,
                baseline_ns,
            };
            self.disagreements.clear();
            return;
        }
        self.agree();
        // What the reports were off by before the change, from callbacks older than the
        // envelope's window: the envelope shows a change up to a window late, and whatever
        // else moved in that while belongs to it.
        let window = self.cfg.envelope_callbacks;
        let skip = if self.agreeing.len() > window {
            window
        } else {
            0
        };
        self.check = Check::LineStepped {
            for_s: 0.0,
            callbacks: 0,
            baseline_ns: self.agreeing.median_before(skip).unwrap_or(0.0),
        };
    }

    /// After a step of the line: the reports, less what they were off by before it, time the
    /// buffers until the callback the line stepped at has left the envelope's window and the
    /// differences since agree (or `steady_wait_s` passed); then the delay moves by the step.
    fn measure_step(
        &mut self,
        reported: f64,
        heard: f64,
        buffer_ns: f64,
        for_s: f64,
        callbacks: usize,
        baseline_ns: f64,
    ) -> f64 {
        let window = self.cfg.envelope_callbacks;
        if callbacks > window {
            self.disagreements.push(reported - heard);
        }
        let seen = self.disagreements.items();
        let (low, high) = seen
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &d| {
                (lo.min(d), hi.max(d))
            });
        let steady = seen.len() == window && high - low <= self.cfg.steady_span_ns;
        if !steady && (for_s < self.cfg.steady_wait_s || seen.is_empty()) {
            return (reported - baseline_ns).max(0.0);
        }
        let shift = self.disagreements.median_before(0).unwrap_or(0.0) - baseline_ns;
        self.move_delay(shift, reported, heard, buffer_ns)
    }

    /// The buffering between callback and sound changed by `shift`: the delay and its history
    /// move by that much and the line is kept. (Starting over instead left the sound on the
    /// raw reports for the seconds it took to learn the delay again.) Returns this callback's
    /// instant.
    fn move_delay(&mut self, shift: f64, reported: f64, heard: f64, buffer_ns: f64) -> f64 {
        self.delay.shift(shift);
        self.last_instants = Some((reported, heard + shift, buffer_ns));
        self.agree();
        heard + shift
    }

    /// The timeline and the reports agree (again).
    fn agree(&mut self) {
        self.check = Check::Agreeing;
        self.disagreements.clear();
        self.break_intercepts.clear();
    }

    /// Whether the line restarted at a break less than `break_verify_s` of audio ago.
    fn verifying_break(&self) -> bool {
        self.phase == (Phase::Line { after_break: true })
            && self.frames * self.ns_per_frame < self.cfg.break_verify_s * 1e9
    }

    /// Forgets everything learnt and starts a new line at this callback.
    fn restart_stream(&mut self, now: f64) {
        self.restart_line(now);
        self.phase = Phase::Line { after_break: false };
        self.age_s = 0.0;
        self.rate.reset(now);
        self.delay.reset();
        self.envelope.reset();
    }

    /// Starts the callbacks' line over at this callback, keeping the delay from callback to
    /// sound and the device's rate: a stream that underran and restarted usually still has the
    /// same buffers and the same crystal, while its first reports can be milliseconds off.
    fn restart_line(&mut self, now: f64) {
        self.origin_ns = now;
        self.last_ns = now;
        self.frames = 0.0;
        self.envelope.restart_line();
        self.rate.restart_line(now);
        self.delay.drop_block();
        self.last_instants = None;
        self.agreeing.clear();
        self.rebase_ns = None;
        self.agree();
    }
}
