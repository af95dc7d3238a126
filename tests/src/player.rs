//! A virtual player that follows [`PlaybackAction`]s and [`Correction`]s like the real render
//! core (`player::render`): scheduled start, pause and stop at local instants, the newest command
//! cancelling pending ones at or after its instant, late commands applied at once at the frame
//! the timeline has reached, a pause that plays on to its frame or goes back to it.
//!
//! It runs on true time (fractional nanoseconds) and is sample-exact: the frame heard at any
//! instant is a fraction computed from the segment's anchor, advancing at the song's rate times
//! the node's oscillator (clock drift), the sound card's own error and the commanded rate.
//! Through a simulated sound device ([`crate::device`]) the simulator slips it at an underrun
//! and hears it shifted by the device timing's error; it records where pauses stopped it.

use sync_core::{Correction, LocalTime, PlaybackAction, SongRef};

use crate::clock::SimClock;

/// Largest rate correction the real player accepts, ppm (`player::MAX_RATE_PPM`).
pub const PLAYER_MAX_RATE_PPM: f64 = 50_000.0;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Stopped,
    Paused {
        frame: f64,
    },
    Playing {
        t0: f64,
        f0: f64,
        pause_at: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scheduled {
    Start(u64),
    Pause(u64),
    Stop,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    at: f64,
    seq: u64,
    action: Scheduled,
    /// The start may move the position backwards (a seek, a jump): not a violation.
    may_go_back: bool,
}

/// A backwards move of the heard position that no seek, jump or pause explains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackwardMove {
    /// True instant of the move, ns.
    pub at: f64,
    /// Frame the player would have reached.
    pub from: f64,
    /// Frame it moved to.
    pub to: f64,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct VirtualPlayer {
    clock: SimClock,
    /// The sound card's frequency error relative to the node's clock, ppm (invisible to sync).
    pub device_ppm: f64,
    song: Option<SongRef>,
    mode: Mode,
    rate_ppm: f64,
    pending: Vec<Pending>,
    seq: u64,
    /// Incremented at every discontinuity of the heard position (start, stop, pause going back).
    epoch: u64,
    /// Unexplained backwards moves, drained by the simulator.
    backward_moves: Vec<BackwardMove>,
    /// Starts applied while silent (playback began), for warm-up bookkeeping.
    starts_from_silence: u64,
    last_start_from_silence: Option<f64>,
    jumps: u64,
    /// Pauses that stopped the sound, as (true instant, frame): where it played on to the frame,
    /// or where it was past it and went back. Drained by the simulator.
    holds: Vec<(f64, u64)>,
    /// Pauses applied more than a millisecond past their frame (the position went back).
    late_pauses: u64,
}

impl VirtualPlayer {
    /// A stopped player with nothing loaded.
    pub fn new(clock: SimClock, device_ppm: f64) -> Self {
        VirtualPlayer {
            clock,
            device_ppm,
            song: None,
            mode: Mode::Stopped,
            rate_ppm: 0.0,
            pending: Vec::new(),
            seq: 0,
            epoch: 0,
            backward_moves: Vec::new(),
            starts_from_silence: 0,
            last_start_from_silence: None,
            jumps: 0,
            holds: Vec::new(),
            late_pauses: 0,
        }
    }

    /// The song loaded.
    pub fn song(&self) -> Option<&SongRef> {
        self.song.as_ref()
    }

    /// Discontinuity counter of the heard position.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Jump corrections received.
    pub fn jumps(&self) -> u64 {
        self.jumps
    }

    /// Rate correction in force, ppm.
    pub fn rate_ppm(&self) -> f64 {
        self.rate_ppm
    }

    /// True instant of the last start from silence.
    pub fn last_start_from_silence(&self) -> Option<f64> {
        self.last_start_from_silence
    }

    /// Takes the pauses that stopped the sound since the last call: (true instant, frame).
    pub fn take_holds(&mut self) -> Vec<(f64, u64)> {
        std::mem::take(&mut self.holds)
    }

    /// Pauses applied more than a millisecond past their frame so far.
    pub fn late_pauses(&self) -> u64 {
        self.late_pauses
    }

    /// Song frames per true nanosecond while playing (`None`: not playing).
    pub fn frames_per_ns(&self) -> Option<f64> {
        matches!(self.mode, Mode::Playing { .. }).then(|| self.speed())
    }

    /// The sound device ran dry and restarted at true instant `now`: the frames handed over
    /// from now on are `slip` ns later than the player meant (the renderer carries on from the
    /// frame it stopped at).
    pub fn slip(&mut self, now: f64, slip: f64) {
        self.settle(now);
        let speed = self.speed();
        if let Mode::Playing { t0, f0, .. } = &mut self.mode
            && now >= *t0
        {
            // Re-anchored at now, `slip` of frames behind; a discontinuity of the position.
            *f0 += (now - *t0 - slip) * speed;
            *t0 = now;
            self.epoch += 1;
        }
    }

    /// Takes the unexplained backwards moves recorded so far.
    pub fn take_backward_moves(&mut self) -> Vec<BackwardMove> {
        std::mem::take(&mut self.backward_moves)
    }

    fn sample_rate(&self) -> f64 {
        self.song
            .as_ref()
            .map_or(48_000.0, |s| s.sample_rate as f64)
    }

    /// Song frames per true nanosecond.
    fn speed(&self) -> f64 {
        self.sample_rate()
            * 1e-9
            * self.clock.oscillator_rate()
            * (1.0 + self.device_ppm * 1e-6)
            * (1.0 + self.rate_ppm * 1e-6)
    }

    /// The song finished loading: it replaces whatever was loaded, cued and silent.
    pub fn loaded(&mut self, song: SongRef) {
        if self.song.as_ref() != Some(&song) || !matches!(self.mode, Mode::Stopped) {
            self.epoch += 1;
        }
        self.song = Some(song);
        self.mode = Mode::Stopped;
        self.pending.clear();
    }

    /// Forgets everything (the process restarted).
    pub fn reset(&mut self) {
        *self = VirtualPlayer::new(self.clock, self.device_ppm);
    }

    /// Plays the current segment on to true instant `to`, holding at a pause frame or stopping
    /// at the song's end if reached on the way.
    fn advance_segment(&mut self, to: f64) {
        if let Mode::Playing { t0, f0, pause_at } = self.mode {
            let f = f0 + (to - t0) * self.speed();
            if let Some(pf) = pause_at
                && f >= pf as f64
            {
                let reached = t0 + (pf as f64 - f0) / self.speed();
                self.holds.push((reached, pf));
                self.mode = Mode::Paused { frame: pf as f64 };
                return;
            }
            if let Some(song) = &self.song
                && f >= song.frames as f64
            {
                self.mode = Mode::Stopped;
                self.epoch += 1;
            }
        }
    }

    fn frame_at(&self, t: f64) -> Option<f64> {
        match self.mode {
            Mode::Playing { t0, f0, .. } if t >= t0 => Some(f0 + (t - t0) * self.speed()),
            _ => None,
        }
    }

    /// Applies every pending command due by true instant `t`, in order.
    fn settle(&mut self, t: f64) {
        loop {
            let next = self
                .pending
                .iter()
                .enumerate()
                .filter(|(_, p)| p.at <= t)
                .min_by(|(_, a), (_, b)| a.at.total_cmp(&b.at).then(a.seq.cmp(&b.seq)))
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let p = self.pending.swap_remove(i);
            self.advance_segment(p.at);
            self.apply_scheduled(p);
        }
        self.advance_segment(t);
    }

    fn apply_scheduled(&mut self, p: Pending) {
        match p.action {
            Scheduled::Start(frame) => {
                match self.frame_at(p.at) {
                    Some(continuing) => {
                        if (frame as f64) < continuing - 1e-3 && !p.may_go_back {
                            self.backward_moves.push(BackwardMove {
                                at: p.at,
                                from: continuing,
                                to: frame as f64,
                            });
                        }
                    }
                    None => {
                        self.starts_from_silence += 1;
                        self.last_start_from_silence = Some(p.at);
                    }
                }
                self.epoch += 1;
                self.mode = Mode::Playing {
                    t0: p.at,
                    f0: frame as f64,
                    pause_at: None,
                };
            }
            Scheduled::Pause(frame) => match self.frame_at(p.at) {
                Some(f) if f < frame as f64 => {
                    if let Mode::Playing { pause_at, .. } = &mut self.mode {
                        *pause_at = Some(frame);
                    }
                }
                other => {
                    // Past the frame: output stops and the position goes back to it (allowed);
                    // not playing: cue there.
                    if let Some(f) = other {
                        self.holds.push((p.at, frame));
                        if f - frame as f64 > self.sample_rate() * 1e-3 {
                            self.late_pauses += 1;
                        }
                    }
                    self.epoch += 1;
                    self.mode = Mode::Paused {
                        frame: frame as f64,
                    };
                }
            },
            Scheduled::Stop => {
                self.epoch += 1;
                self.mode = Mode::Stopped;
            }
        }
    }

    fn schedule(
        &mut self,
        now: f64,
        now_local: LocalTime,
        at: LocalTime,
        action: Scheduled,
        may_go_back: bool,
    ) {
        self.settle(now);
        let mut at_true = self.clock.true_f64(at.0 as f64);
        let mut action = action;
        if at_true < now {
            // Late: applied at once, at the frame the timeline has reached (nominal rate).
            if let Scheduled::Start(frame) = action {
                let elapsed = now_local.since(at) as f64;
                let f = frame as f64 + elapsed * self.sample_rate() * 1e-9;
                action = Scheduled::Start(f.round() as u64);
            }
            at_true = now;
        }
        // The newest command owns the timeline from its instant on.
        self.pending.retain(|p| p.at < at_true);
        self.seq += 1;
        self.pending.push(Pending {
            at: at_true,
            seq: self.seq,
            action,
            may_go_back,
        });
        self.settle(now);
    }

    /// Carries out a playback action handed over at true instant `now` (local `now_local`).
    /// `may_go_back` says that a start belongs to a state that moved the timeline (a seek).
    /// Loading is the simulator's business (it calls [`VirtualPlayer::loaded`] later).
    pub fn apply(
        &mut self,
        now: f64,
        now_local: LocalTime,
        action: &PlaybackAction,
        may_go_back: bool,
    ) {
        match *action {
            PlaybackAction::Load { .. } => {}
            PlaybackAction::Start { frame, at } => {
                if self.song.is_some() {
                    self.schedule(now, now_local, at, Scheduled::Start(frame), may_go_back);
                }
            }
            PlaybackAction::PauseAt { frame, at } => {
                if self.song.is_some() {
                    self.schedule(now, now_local, at, Scheduled::Pause(frame), true);
                }
            }
            PlaybackAction::Stop { at } => self.schedule(now, now_local, at, Scheduled::Stop, true),
        }
    }

    /// Carries out a correction handed over at true instant `now`.
    pub fn correct(&mut self, now: f64, now_local: LocalTime, c: &Correction) {
        match *c {
            Correction::Rate { ppm } => {
                self.settle(now);
                let speed = self.speed();
                if let Mode::Playing { t0, f0, .. } = &mut self.mode
                    && now >= *t0
                {
                    // Re-anchor so the new rate applies from now on.
                    *f0 += (now - *t0) * speed;
                    *t0 = now;
                }
                self.rate_ppm = ppm.clamp(-PLAYER_MAX_RATE_PPM, PLAYER_MAX_RATE_PPM);
            }
            Correction::Jump { frame, at, .. } => {
                self.jumps += 1;
                if self.song.is_some() {
                    self.schedule(now, now_local, at, Scheduled::Start(frame), true);
                }
            }
        }
    }

    /// The frame heard at true instant `now` (`None`: silent). Instants must not decrease.
    pub fn heard(&mut self, now: f64) -> Option<f64> {
        self.settle(now);
        self.frame_at(now)
    }

    /// Whether the player is playing or has a command pending (it needs position ticks).
    pub fn active(&self) -> bool {
        matches!(self.mode, Mode::Playing { .. }) || !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song() -> SongRef {
        SongRef {
            name: "s.wav".into(),
            content_hash: "h".into(),
            sample_rate: 48_000,
            frames: 48_000 * 100,
        }
    }

    fn local(c: &SimClock, t: f64) -> LocalTime {
        LocalTime(c.local_f64(t).round() as u64)
    }

    #[test]
    fn frames_advance_with_the_node_oscillator_and_the_commanded_rate() {
        let clock = SimClock::new(0, 100.0);
        let mut p = VirtualPlayer::new(clock, 0.0);
        p.loaded(song());
        let at = local(&clock, 1e9);
        p.apply(
            0.0,
            local(&clock, 0.0),
            &PlaybackAction::Start { frame: 0, at },
            false,
        );
        assert_eq!(p.heard(0.5e9), None);
        let f = p.heard(2e9).unwrap();
        // One true second at 48 kHz on a clock 100 ppm fast.
        assert!((f - 48_000.0 * 1.0001).abs() < 1e-3, "{f}");
        p.correct(2e9, local(&clock, 2e9), &Correction::Rate { ppm: -100.0 });
        let g = p.heard(3e9).unwrap();
        let want = f + 48_000.0 * 1.0001 * (1.0 - 100e-6);
        assert!((g - want).abs() < 1e-3, "{g} vs {want}");
    }

    #[test]
    fn pause_plays_on_to_its_frame_or_goes_back_to_it() {
        let clock = SimClock::new(0, 0.0);
        let mut p = VirtualPlayer::new(clock, 0.0);
        p.loaded(song());
        let l = |t: f64| local(&clock, t);
        p.apply(
            0.0,
            l(0.0),
            &PlaybackAction::Start {
                frame: 0,
                at: l(0.0),
            },
            false,
        );
        // Ask to hold at frame 48_000 from 0.9 s: plays on until 1 s, then holds.
        p.apply(
            0.5e9,
            l(0.5e9),
            &PlaybackAction::PauseAt {
                frame: 48_000,
                at: l(0.9e9),
            },
            false,
        );
        assert!(p.heard(0.95e9).is_some());
        assert_eq!(p.heard(1.01e9), None);
        // Resume, then a pause whose frame is already behind: it goes back, no violation.
        p.apply(
            2e9,
            l(2e9),
            &PlaybackAction::Start {
                frame: 48_000,
                at: l(2e9),
            },
            false,
        );
        p.apply(
            3e9,
            l(3e9),
            &PlaybackAction::PauseAt {
                frame: 60_000,
                at: l(3e9),
            },
            false,
        );
        assert_eq!(p.heard(3.1e9), None);
        assert!(p.take_backward_moves().is_empty());
    }

    #[test]
    fn an_unexplained_backward_start_is_recorded_and_a_late_start_joins_the_timeline() {
        let clock = SimClock::new(0, 0.0);
        let mut p = VirtualPlayer::new(clock, 0.0);
        p.loaded(song());
        let l = |t: f64| local(&clock, t);
        // Late by 100 ms: starts at once, 4 800 frames further.
        p.apply(
            1e9,
            l(1e9),
            &PlaybackAction::Start {
                frame: 0,
                at: l(0.9e9),
            },
            false,
        );
        assert!((p.heard(1e9).unwrap() - 4_800.0).abs() < 1e-6);
        p.apply(
            2e9,
            l(2e9),
            &PlaybackAction::Start {
                frame: 10,
                at: l(2e9),
            },
            false,
        );
        p.heard(2e9);
        assert_eq!(p.take_backward_moves().len(), 1);
        p.apply(
            3e9,
            l(3e9),
            &PlaybackAction::Start {
                frame: 10,
                at: l(3e9),
            },
            true,
        );
        p.heard(3e9);
        assert!(p.take_backward_moves().is_empty());
    }

    #[test]
    fn a_slip_puts_the_frames_behind_and_a_pause_records_when_its_frame_was_reached() {
        let clock = SimClock::new(0, 0.0);
        let mut p = VirtualPlayer::new(clock, 0.0);
        p.loaded(song());
        let l = |t: f64| local(&clock, t);
        let start = PlaybackAction::Start {
            frame: 0,
            at: l(0.0),
        };
        p.apply(0.0, l(0.0), &start, false);
        // The device ran dry: from 1 s on the frames are 50 ms (2 400 frames) late.
        p.slip(1e9, 50e6);
        assert!((p.heard(2e9).unwrap() - (96_000.0 - 2_400.0)).abs() < 1e-6);
        let pause = PlaybackAction::PauseAt {
            frame: 96_000,
            at: l(2e9),
        };
        p.apply(2e9, l(2e9), &pause, false);
        assert_eq!(p.heard(3e9), None);
        let holds = p.take_holds();
        assert_eq!(holds.len(), 1);
        assert!((holds[0].0 - 2.05e9).abs() < 1.0, "{holds:?}");
        assert_eq!(holds[0].1, 96_000);
        assert_eq!(p.late_pauses(), 0);
    }
}
