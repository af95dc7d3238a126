//! The player follower: what the local player was told (song requested and loaded, started or
//! not), and the drift controller that keeps it on the group's timeline. It turns the group
//! state into playback actions and position reports into corrections.

use super::Outbox;
use super::api::{Correction, Output, PlaybackAction};
use super::config::Config;
use super::register::{Retime, effective_mode, expected_frame};
use crate::clock::ClockMapping;
use crate::control::{ControlDecision, DriftController};
use crate::state::{GroupState, Mode, SongRef, StateVersion};
use crate::time::{LocalTime, Nanos};

/// What the node last told the player, so that re-applying the same state is silent.
#[derive(Clone, PartialEq, Debug)]
struct PlanKey {
    version: StateVersion,
    loaded: bool,
    started: bool,
}

/// The local player as the node knows it.
#[derive(Debug)]
pub(crate) struct Follower {
    loaded: Option<SongRef>,
    requested: Option<SongRef>,
    /// The song whose load failed, and the state version that asked for it: not asked for
    /// again until a newer state asks (the driver has already retried it).
    failed: Option<(SongRef, StateVersion)>,
    plan: Option<PlanKey>,
    pub(crate) playing: bool,
    jump_until: Option<LocalTime>,
    /// Until this instant, after the player's output broke, small errors are re-seeked.
    break_until: Option<LocalTime>,
    /// When the player was last started from silence, the instant that start lands: until
    /// then nothing of the timeline has been heard.
    sound_from: Option<LocalTime>,
    controller: DriftController,
    /// The player's last position report (instant, frame), for the controller's observer.
    last_report: Option<(LocalTime, f64)>,
    pub(crate) jumps: u64,
}

/// Where to (re)start the player on `state`'s timeline: at the anchor if it is still ahead,
/// else at the whole frame the timeline reaches a moment from now, and the instant it is due.
fn start_point(
    state: &GroupState,
    mapping: &ClockMapping,
    now: LocalTime,
    config: &Config,
) -> Option<(u64, LocalTime)> {
    let song = state.song.as_ref()?;
    let Mode::Playing { frame, at } = effective_mode(state, mapping, now) else {
        return None;
    };
    let earliest = now + config.start_latency;
    let anchor_local = mapping.to_local(at);
    if anchor_local >= earliest {
        return Some((frame, anchor_local));
    }
    // Frame reached at `earliest`, rounded up to a whole frame, and the instant it is due.
    let elapsed = mapping.to_group_since(earliest, at);
    let f = (frame as f64 + song.nanos_to_frames(elapsed)).ceil();
    if f >= song.frames as f64 {
        return None;
    }
    let due_group = at + song.frames_to_nanos(f - frame as f64).round() as Nanos;
    Some((f as u64, mapping.to_local(due_group)))
}

impl Follower {
    pub(crate) fn new(config: &Config) -> Self {
        Follower {
            loaded: None,
            requested: None,
            failed: None,
            plan: None,
            playing: false,
            jump_until: None,
            break_until: None,
            sound_from: None,
            controller: DriftController::new(config.controller),
            last_report: None,
            jumps: 0,
        }
    }

    /// The song the player holds decoded.
    pub(crate) fn loaded(&self) -> Option<&SongRef> {
        self.loaded.as_ref()
    }

    /// Whether the player holds the state's song.
    pub(crate) fn has_song_of(&self, state: &GroupState) -> bool {
        match (&state.song, &self.loaded) {
            (Some(s), Some(l)) => s.same_song(l),
            _ => false,
        }
    }

    /// The drift controller's last rate (ppm) and error (ns).
    pub(crate) fn correction_status(&self) -> (f64, Option<Nanos>) {
        (self.controller.rate_ppm(), self.controller.last_error())
    }

    /// The player loaded `song`.
    pub(crate) fn song_loaded(&mut self, song: SongRef) {
        self.load_answered(&song);
        self.loaded = Some(song);
    }

    /// The player answered the load of `song` (loaded or failed).
    pub(crate) fn load_answered(&mut self, song: &SongRef) {
        if self.requested.as_ref().is_some_and(|r| r.same_song(song)) {
            self.requested = None;
        }
    }

    /// The player could not load `song`: it is not asked for again while `state` holds.
    /// Returns whether the failure is news for the user: the group wants the song played
    /// (not when a stop made the driver give it up).
    pub(crate) fn load_failed(&mut self, song: &SongRef, state: &GroupState) -> bool {
        self.load_answered(song);
        // A song streamed into the player may fail after it was reported loaded (its bytes
        // did not match their hash): the player no longer holds it.
        if self.loaded.as_ref().is_some_and(|l| l.same_song(song)) {
            self.loaded = None;
        }
        self.failed = Some((song.clone(), state.version));
        state.song.as_ref().is_some_and(|s| s.same_song(song))
            && !matches!(state.mode, Mode::Stopped { .. })
    }

    /// The player's output broke at `at`: its first reports after the restart describe buffers
    /// queued in a burst before the stream ran again and are not worth a decision; until the
    /// break window ends, errors above the break threshold are re-seeked.
    pub(crate) fn output_broke(&mut self, at: LocalTime, config: &Config) {
        let settled = at + config.output_break_settle;
        self.jump_until = Some(self.jump_until.map_or(settled, |t| t.max(settled)));
        self.break_until = Some(at + config.output_break_window);
        // Errors from before the break say nothing of the player's rate.
        self.last_report = None;
        self.controller.restart();
    }

    /// A state stopped playback (its instant passed, or the song ended).
    pub(crate) fn stopped(&mut self) {
        self.playing = false;
    }

    /// Tells the player what `state` means for it, once per (version, loaded, phase). `retime`
    /// is what accepting the state said of it (default when applying it again). Returns
    /// whether the node should tell its peers it is ready (a loading state, song loaded).
    pub(crate) fn apply(
        &mut self,
        state: &GroupState,
        mapping: &ClockMapping,
        now: LocalTime,
        config: &Config,
        retime: Retime,
        out: &mut Outbox,
    ) -> bool {
        let failed_here = self.failed.as_ref().is_some_and(|(s, v)| {
            *v == state.version && state.song.as_ref().is_some_and(|x| x.same_song(s))
        });
        if let Some(song) = state.song.clone()
            && !self.has_song_of(state)
            && !failed_here
            && self.requested.as_ref().is_none_or(|r| !r.same_song(&song))
        {
            self.requested = Some(song.clone());
            out.push(Output::Playback(PlaybackAction::Load { song }));
        }
        let mode = effective_mode(state, mapping, now);
        let loaded = self.has_song_of(state);
        let key = PlanKey {
            version: state.version,
            loaded,
            started: matches!(mode, Mode::Playing { .. }),
        };
        if self.plan.as_ref() == Some(&key) {
            return false;
        }
        self.plan = Some(key);
        let play = |a| Output::Playback(a);
        match mode {
            Mode::Stopped { at } => {
                if self.playing || loaded {
                    let at = mapping.to_local(at).max(now);
                    out.push(play(PlaybackAction::Stop { at }));
                }
                self.playing = false;
            }
            Mode::Loading { .. } => {
                if self.playing {
                    out.push(play(PlaybackAction::Stop { at: now }));
                    self.playing = false;
                }
                return loaded;
            }
            Mode::Paused { frame, at } => {
                if loaded {
                    let at = mapping.to_local(at).max(now);
                    if retime.pause_on_timeline {
                        out.push(play(PlaybackAction::PauseAt { frame, at }));
                    } else {
                        // Stop wherever the player is at the pause instant, then cue the frame.
                        out.push(play(PlaybackAction::Stop { at }));
                        out.push(play(PlaybackAction::PauseAt { frame, at: at + 1 }));
                    }
                }
                // The player keeps playing until the pause instant; drift control goes on.
            }
            Mode::Playing { .. } => {
                // A start from silence that has not landed yet: nothing was heard, so a newer
                // timeline replaces it outright, however close.
                let unheard = self.sound_from.is_some_and(|t| t > now);
                if loaded && self.playing && retime.smooth && !unheard {
                    // Same timeline within a millisecond (a re-anchored or repeated state):
                    // the drift controller takes care of it without an audible re-seek.
                } else if loaded {
                    if unheard {
                        // Cancel the pending start (the player keeps a start due before the
                        // new one otherwise).
                        out.push(play(PlaybackAction::Stop { at: now }));
                    }
                    self.start(state, mapping, now, config, out);
                } else if self.playing {
                    out.push(play(PlaybackAction::Stop { at: now }));
                    self.playing = false;
                }
            }
        }
        false
    }

    /// Starts the player on the timeline: at the anchor if it is still ahead, else at the
    /// frame the timeline will have reached a moment from now (a late arrival joins in sync).
    fn start(
        &mut self,
        state: &GroupState,
        mapping: &ClockMapping,
        now: LocalTime,
        config: &Config,
        out: &mut Outbox,
    ) {
        let Some((frame, at)) = start_point(state, mapping, now, config) else {
            return;
        };
        let from_silence = !self.playing || self.sound_from.is_some_and(|t| t > now);
        self.sound_from = from_silence.then_some(at);
        self.playing = true;
        self.jump_until = Some(at);
        self.last_report = None;
        self.controller.restart();
        out.push(Output::Playback(PlaybackAction::Start { frame, at }));
    }

    /// The player heard `frame` at `at`: the drift controller decides on a rate, a jump back
    /// onto the timeline, or nothing.
    pub(crate) fn position(
        &mut self,
        state: &GroupState,
        mapping: &ClockMapping,
        now: LocalTime,
        config: &Config,
        (at, frame): (LocalTime, f64),
        out: &mut Outbox,
    ) {
        // A frame the song cannot have is a broken report, not an error to correct.
        if !self.playing || !frame.is_finite() || frame < 0.0 {
            return;
        }
        if self.jump_until.is_some_and(|t| at < t) {
            return;
        }
        let Some(song) = state.song.as_ref() else {
            return;
        };
        let expected_at = |t| expected_frame(state, mapping, self.playing, t);
        let Some(expected) = expected_at(at) else {
            return;
        };
        let error = song.frames_to_nanos(frame - expected).round() as Nanos;
        // The previous report, judged against the current timeline estimate.
        let previous = self.last_report.and_then(|(pat, pframe)| {
            let e = expected_at(pat)?;
            Some((pat, song.frames_to_nanos(pframe - e).round() as Nanos))
        });
        self.last_report = Some((at, frame));
        let ff = mapping.rate_ppm;
        let after_break = self.break_until.is_some_and(|t| at < t);
        match self.controller.update(at, error, previous, ff, after_break) {
            ControlDecision::Hold => {}
            ControlDecision::Rate(ppm) => out.push(Output::Correction(Correction::Rate { ppm })),
            ControlDecision::Jump => {
                // Re-seek a moment from now, onto the timeline.
                if let Some((frame, at)) = start_point(state, mapping, now, config) {
                    self.jumps += 1;
                    self.jump_until = Some(at);
                    self.last_report = None;
                    self.controller.restart();
                    out.push(Output::Correction(Correction::Jump { frame, at, error }));
                }
            }
        }
    }
}
