//! The group-state register: the last-writer-wins state of the group's playback, its Lamport
//! counter, the instants at which it takes effect and ends, and the readiness of peers for a
//! loading state. Accepting a state returns what it means for the player that follows it.

use std::collections::BTreeSet;

use super::api::{Command, CommandError, TimeoutReason};
use super::config::Config;
use super::links::earliest;
use super::queue_play;
use crate::clock::ClockMapping;
use crate::queue::Queue;
use crate::state::{GroupState, Mode, NodeId, SongRef, StateVersion, Timeline};
use crate::time::{GroupTime, LocalTime, MICROSECOND, Nanos};

/// How a newly accepted state relates to the timeline the player already follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Retime {
    /// The new timeline matches what the player plays (within a millisecond): the drift
    /// controller absorbs the difference instead of a re-seek.
    pub(crate) smooth: bool,
    /// A pause decided on the timeline the player follows: it plays on to the pause frame;
    /// otherwise the player is stopped at the pause instant and cued at the frame.
    pub(crate) pause_on_timeline: bool,
}

/// The wait of a loading state this node started: for whom, and how long at most.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadWait {
    /// The loading state's version.
    pub version: StateVersion,
    /// Linked peers that have not loaded the song yet, ascending.
    pub waiting_for: Vec<NodeId>,
    /// Whether this node itself has not loaded it yet.
    pub loading_here: bool,
    /// Linked peers not waited for: they missed an earlier deadline and have not loaded a
    /// song since (they join late, in sync, when they have it).
    pub not_waited: Vec<NodeId>,
    /// When the wait began, on the local clock.
    pub since: LocalTime,
    /// When the group starts at the latest, on the local clock.
    pub deadline: LocalTime,
}

/// The state register of one node.
#[derive(Debug)]
pub(crate) struct Register {
    pub(crate) state: GroupState,
    lamport: u64,
    effective_announced: Option<StateVersion>,
    finished_announced: Option<StateVersion>,
    /// Peers that said they loaded the song of the current (loading) version.
    ready_from: BTreeSet<NodeId>,
    /// Group instant at which the current loading state was accepted (its wait began).
    loading_since: GroupTime,
    /// Peers that missed the deadline of a loading state this node started and have not
    /// loaded a song since: later loading states do not wait for them (they join late, in
    /// sync, when they have the song).
    unready: BTreeSet<NodeId>,
    /// The loading state whose deadline passed, and the peers the group started without.
    started_without: Option<(StateVersion, Vec<NodeId>)>,
    pub(crate) states_accepted: u64,
    pub(crate) states_ignored: u64,
    pub(crate) states_foreign: u64,
}

/// The state's mode with a loading state past its deadline read as playing.
pub(crate) fn effective_mode(state: &GroupState, mapping: &ClockMapping, now: LocalTime) -> Mode {
    match state.mode {
        Mode::Loading {
            start_frame,
            deadline,
        } if mapping.to_local(deadline) <= now => Mode::Playing {
            frame: start_frame,
            at: deadline,
        },
        m => m,
    }
}

/// Fractional frame the timeline of `state` says is heard at local instant `at`, when playing
/// (`playing`: whether the player plays, which keeps a pending pause playing towards it).
pub(crate) fn expected_frame(
    state: &GroupState,
    mapping: &ClockMapping,
    playing: bool,
    at: LocalTime,
) -> Option<f64> {
    let song = state.song.as_ref()?;
    let (frame, anchor) = match state.mode {
        Mode::Playing { frame, at } => (frame, at),
        Mode::Loading {
            start_frame,
            deadline,
        } => (start_frame, deadline),
        // Before a pause or stop takes effect the timeline keeps playing towards it.
        Mode::Paused { frame, at: pa } if mapping.to_group(at) < pa && playing => (frame, pa),
        _ => return None,
    };
    let g = mapping.to_group_since(at, anchor);
    if g < 0.0 && !matches!(state.mode, Mode::Paused { .. }) {
        return None;
    }
    let f = frame as f64 + song.nanos_to_frames(g);
    (f >= 0.0 && f < song.frames as f64).then_some(f)
}

impl Register {
    /// The initial state (stopped, no song) in time base `timebase`.
    pub(crate) fn new(timebase: u64) -> Self {
        Register {
            state: GroupState::initial(timebase),
            lamport: 0,
            effective_announced: None,
            finished_announced: None,
            ready_from: BTreeSet::new(),
            loading_since: GroupTime(0),
            unready: BTreeSet::new(),
            started_without: None,
            states_accepted: 0,
            states_ignored: 0,
            states_foreign: 0,
        }
    }

    /// A version newer than every one seen, issued by `me`.
    pub(crate) fn next_version(&mut self, me: NodeId) -> StateVersion {
        self.lamport = self.lamport.max(self.state.version.counter) + 1;
        StateVersion::new(self.lamport, me)
    }

    /// Why a received state (already in our time base) cannot be valid, if it cannot.
    pub(crate) fn validate(
        &self,
        s: &GroupState,
        mapping: &ClockMapping,
        now: LocalTime,
        config: &Config,
    ) -> Result<(), &'static str> {
        let horizon = mapping.to_group(now) + config.max_future;
        if let Some(song) = &s.song {
            if song.sample_rate == 0 || song.sample_rate > config.max_sample_rate_hz {
                return Err("sample rate");
            }
            if song.frames == 0 {
                return Err("empty song");
            }
            if song.name.is_empty() {
                return Err("song name");
            }
        }
        s.queue.validate()?;
        let frames = s.song.as_ref().map_or(0, |x| x.frames);
        match s.mode {
            Mode::Stopped { at } => {
                if at > horizon {
                    return Err("instant too far ahead");
                }
            }
            Mode::Loading {
                start_frame,
                deadline,
            } => {
                if s.song.is_none() {
                    return Err("loading without a song");
                }
                if start_frame >= frames {
                    return Err("frame beyond the song");
                }
                if deadline > horizon {
                    return Err("instant too far ahead");
                }
            }
            Mode::Paused { frame, at } | Mode::Playing { frame, at } => {
                if s.song.is_none() {
                    return Err("playing without a song");
                }
                if frame > frames {
                    return Err("frame beyond the song");
                }
                if at > horizon {
                    return Err("instant too far ahead");
                }
            }
        }
        Ok(())
    }

    /// A valid received state: whether it is newer than the one held (the Lamport counter
    /// follows it either way).
    pub(crate) fn is_newer(&mut self, s: &GroupState) -> bool {
        self.lamport = self.lamport.max(s.version.counter);
        let newer = crate::state::supersedes(&s.version, &self.state.version);
        if !newer {
            self.states_ignored += 1;
        }
        newer
    }

    /// Installs a newer state and says how it relates to the timeline the player follows
    /// (`playing`: whether the player plays; `tolerance`: how close counts as the same).
    pub(crate) fn accept(
        &mut self,
        s: GroupState,
        mapping: &ClockMapping,
        now: LocalTime,
        playing: bool,
        tolerance: Nanos,
    ) -> Retime {
        self.states_accepted += 1;
        // Readiness is per version: Ready messages name the version they answer.
        self.ready_from.clear();
        self.loading_since = mapping.to_group(now);
        // Compare the two timelines at an instant where both play: now, or the later of their
        // anchors (a state re-stated or re-decided a hair later must not re-seek a player that
        // already started on the earlier one).
        let compare_at = [self.state.effective_at(), s.effective_at()]
            .into_iter()
            .map(|g| mapping.to_local(g))
            .fold(now, LocalTime::max)
            // A microsecond past the later anchor, so that rounding to local time cannot
            // land before it (where the timeline is not defined yet).
            + MICROSECOND;
        let before = playing
            .then(|| expected_frame(&self.state, mapping, playing, compare_at))
            .flatten();
        let old = std::mem::replace(&mut self.state, s);
        // A pause lands exactly on its frame ("play on to the frame") only for a player that
        // follows the timeline the pause was decided on. One that lost a concurrent command,
        // or follows an older timeline, could be far from the frame: it would play on for as
        // long, or go back, while the group is silent.
        let pause_on_timeline = match (self.state.mode, &old.song, &self.state.song) {
            (Mode::Paused { frame, at }, Some(o), Some(n)) if playing && o.same_song(n) => old
                .frame_heard_at(at)
                .is_some_and(|f| n.frames_to_nanos((frame as f64 - f).abs()) < tolerance as f64),
            _ => false,
        };
        let after = expected_frame(&self.state, mapping, playing, compare_at);
        let smooth = match (before, after, &old.song, &self.state.song) {
            (Some(b), Some(a), Some(o), Some(n)) if o.same_song(n) => {
                n.frames_to_nanos((a - b).abs()) < tolerance as f64
            }
            _ => false,
        };
        Retime {
            smooth,
            pause_on_timeline,
        }
    }

    /// The state converted to a new time base, whose instants are `step` ahead.
    pub(crate) fn convert(&mut self, step: Nanos, base: u64) {
        self.state = self.state.converted(step, base);
    }

    /// The earlier of the state's effective instant and the song's end, until handled.
    pub(crate) fn poll_timeout(
        &self,
        mapping: &ClockMapping,
        now: LocalTime,
    ) -> Option<(LocalTime, TimeoutReason)> {
        earliest(
            self.next_state_instant(mapping, now)
                .map(|t| (t, TimeoutReason::StateEffective)),
            self.song_end_instant(mapping, now)
                .map(|t| (t, TimeoutReason::SongEnd)),
        )
    }

    /// Local instant at which the current state takes effect, until that has been handled. The
    /// same expression decides in `effective_due`, so rounding cannot make the two disagree.
    fn next_state_instant(&self, mapping: &ClockMapping, now: LocalTime) -> Option<LocalTime> {
        if self.effective_announced == Some(self.state.version)
            || self.state.version == StateVersion::default()
        {
            return None;
        }
        let at = match self.state.mode {
            Mode::Loading { deadline, .. } => deadline,
            _ => self.state.effective_at(),
        };
        Some(mapping.to_local(at).max(now))
    }

    fn song_end_instant(&self, mapping: &ClockMapping, now: LocalTime) -> Option<LocalTime> {
        if self.finished_announced == Some(self.state.version) {
            return None;
        }
        let song = self.state.song.as_ref()?;
        let Mode::Playing { frame, at } = effective_mode(&self.state, mapping, now) else {
            return None;
        };
        let end = at
            + song
                .frames_to_nanos((song.frames - frame.min(song.frames)) as f64)
                .round() as Nanos;
        Some(mapping.to_local(end).max(now))
    }

    /// The state's effective instant has come (reported once per version): its version.
    pub(crate) fn effective_due(
        &mut self,
        mapping: &ClockMapping,
        now: LocalTime,
    ) -> Option<StateVersion> {
        let t = self.next_state_instant(mapping, now)?;
        (t <= now).then(|| {
            self.effective_announced = Some(self.state.version);
            self.state.version
        })
    }

    /// The song's end has come (reported once per version): the song.
    pub(crate) fn song_end_due(
        &mut self,
        mapping: &ClockMapping,
        now: LocalTime,
    ) -> Option<SongRef> {
        let t = self.song_end_instant(mapping, now)?;
        let song = self.state.song.clone().filter(|_| t <= now)?;
        self.finished_announced = Some(self.state.version);
        Some(song)
    }

    /// A peer said it loaded the song of version `v`; kept when `v` is ours and current.
    pub(crate) fn ready(&mut self, me: NodeId, peer: Option<NodeId>, v: StateVersion) -> bool {
        if let Some(peer) = peer {
            // It loads songs again: later loading states wait for it.
            self.unready.remove(&peer);
        }
        if v != self.state.version || v.origin != me {
            return false;
        }
        if let Some(peer) = peer {
            self.ready_from.insert(peer);
        }
        true
    }

    /// The wait of a loading state this node initiated, while it lasts (`loaded`: whether
    /// this node holds the song).
    pub(crate) fn load_wait(
        &self,
        me: NodeId,
        peers: impl Iterator<Item = NodeId>,
        loaded: bool,
        mapping: &ClockMapping,
        now: LocalTime,
    ) -> Option<LoadWait> {
        let Mode::Loading { deadline, .. } = effective_mode(&self.state, mapping, now) else {
            return None;
        };
        if self.state.version.origin != me {
            return None;
        }
        let (mut waiting_for, mut not_waited) = (Vec::new(), Vec::new());
        for p in peers.filter(|p| !self.ready_from.contains(p)) {
            if self.unready.contains(&p) {
                not_waited.push(p);
            } else {
                waiting_for.push(p);
            }
        }
        waiting_for.sort();
        not_waited.sort();
        Some(LoadWait {
            version: self.state.version,
            waiting_for,
            loading_here: !loaded,
            not_waited,
            since: mapping.to_local(self.loading_since),
            deadline: mapping.to_local(deadline),
        })
    }

    /// The deadline of a loading state this node initiated has passed: the peers not ready
    /// then are remembered (not waited for by later loading states until they load a song),
    /// and named by [`Register::started_without`]. Once per version.
    pub(crate) fn deadline_passed(
        &mut self,
        me: NodeId,
        peers: impl Iterator<Item = NodeId>,
        mapping: &ClockMapping,
        now: LocalTime,
    ) {
        let Mode::Loading { deadline, .. } = self.state.mode else {
            return;
        };
        let version = self.state.version;
        if version.origin != me
            || mapping.to_local(deadline) > now
            || self
                .started_without
                .as_ref()
                .is_some_and(|(v, _)| *v == version)
        {
            return;
        }
        let mut missed: Vec<NodeId> = peers.filter(|p| !self.ready_from.contains(p)).collect();
        missed.sort();
        self.unready.extend(missed.iter().copied());
        self.started_without = Some((version, missed));
    }

    /// The last loading state this node initiated whose deadline passed, and the peers the
    /// group started without (empty when every peer was ready).
    pub(crate) fn started_without(&self) -> Option<(StateVersion, &[NodeId])> {
        self.started_without
            .as_ref()
            .map(|(v, peers)| (*v, peers.as_slice()))
    }

    /// The loading state this node initiated, once it (`loaded`) and every peer are ready:
    /// the playing state that follows it, `lead` from now.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_when_ready(
        &mut self,
        me: NodeId,
        mut peers: impl Iterator<Item = NodeId>,
        loaded: bool,
        mapping: &ClockMapping,
        now: LocalTime,
        lead: Nanos,
    ) -> Option<GroupState> {
        let Mode::Loading { start_frame, .. } = effective_mode(&self.state, mapping, now) else {
            return None;
        };
        if self.state.version.origin != me || !loaded {
            return None;
        }
        if !peers.all(|p| self.ready_from.contains(&p) || self.unready.contains(&p)) {
            return None;
        }
        let at = mapping.to_group(now) + lead;
        Some(GroupState {
            version: self.next_version(me),
            song: self.state.song.clone(),
            mode: Mode::Playing {
                frame: start_frame,
                at,
            },
            timebase: mapping.timebase,
            queue: self.state.queue.clone(),
        })
    }

    /// The song, mode and queue a group command asks for, taking effect at `effective`;
    /// `loaded`: the song the player holds, `alone`: no peer is connected, `delay`: the
    /// caller's extra delay.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide(
        &self,
        command: &Command,
        mapping: &ClockMapping,
        now: LocalTime,
        effective: GroupTime,
        delay: Nanos,
        loaded: Option<&SongRef>,
        alone: bool,
        config: &Config,
    ) -> Result<(Option<SongRef>, Mode, Queue), CommandError> {
        // A song that played to its end counts as stopped.
        let mode = match self.state.timeline_at(mapping.to_group(now)) {
            Timeline::Finished => Mode::Stopped {
                at: mapping.to_group(now),
            },
            _ => effective_mode(&self.state, mapping, now),
        };
        let starting = Starting {
            effective,
            deadline: mapping.to_group(now) + config.ready_timeout.max(delay),
            loaded,
            alone,
        };
        let song = self.state.song.clone();
        let decided: Result<(Option<SongRef>, Mode), CommandError> = match command {
            Command::Queue(q) => return queue_play::decide(&self.state, mode, q, &starting),
            Command::Play {
                song: wanted,
                frame,
            } => {
                let song = wanted.clone().or(song).ok_or(CommandError::NoSong)?;
                if song.sample_rate == 0 || song.frames == 0 {
                    return Err(CommandError::InvalidSong(song.name));
                }
                if *frame >= song.frames {
                    return Err(CommandError::OutOfRange {
                        frame: *frame,
                        frames: song.frames,
                    });
                }
                let mode = starting.mode(&song, *frame);
                Ok((Some(song), mode))
            }
            Command::Pause => {
                let song = song.ok_or(CommandError::NoSong)?;
                match mode {
                    Mode::Playing { .. } => {
                        let f = self
                            .state
                            .frame_at_or_anchor(effective)
                            .ok_or(CommandError::NotPlaying)?;
                        Ok((
                            Some(song),
                            Mode::Paused {
                                frame: f,
                                at: effective,
                            },
                        ))
                    }
                    Mode::Loading { start_frame, .. } => Ok((
                        Some(song),
                        Mode::Paused {
                            frame: start_frame,
                            at: effective,
                        },
                    )),
                    _ => Err(CommandError::NotPlaying),
                }
            }
            Command::Resume => {
                let song = song.ok_or(CommandError::NoSong)?;
                match mode {
                    Mode::Paused { frame, .. } => Ok((
                        Some(song),
                        Mode::Playing {
                            frame,
                            at: effective,
                        },
                    )),
                    _ => Err(CommandError::NotPaused),
                }
            }
            Command::Stop => {
                if matches!(mode, Mode::Stopped { .. }) {
                    return Err(CommandError::AlreadyStopped);
                }
                Ok((song, Mode::Stopped { at: effective }))
            }
            Command::Seek { frame } => {
                let song = song.ok_or(CommandError::NoSong)?;
                if *frame >= song.frames {
                    return Err(CommandError::OutOfRange {
                        frame: *frame,
                        frames: song.frames,
                    });
                }
                match mode {
                    Mode::Playing { .. } => Ok((
                        Some(song),
                        Mode::Playing {
                            frame: *frame,
                            at: effective,
                        },
                    )),
                    Mode::Paused { .. } | Mode::Stopped { .. } => Ok((
                        Some(song),
                        Mode::Paused {
                            frame: *frame,
                            at: effective,
                        },
                    )),
                    Mode::Loading { deadline, .. } => Ok((
                        Some(song),
                        Mode::Loading {
                            start_frame: *frame,
                            deadline,
                        },
                    )),
                }
            }
            Command::Load { song, frame } => {
                if song.sample_rate == 0 || song.frames == 0 {
                    return Err(CommandError::InvalidSong(song.name.clone()));
                }
                match *frame {
                    0 => Ok((Some(song.clone()), Mode::Stopped { at: effective })),
                    f if f >= song.frames => Err(CommandError::OutOfRange {
                        frame: f,
                        frames: song.frames,
                    }),
                    f => Ok((
                        Some(song.clone()),
                        Mode::Paused {
                            frame: f,
                            at: effective,
                        },
                    )),
                }
            }
        };
        let (song, mode) = decided?;
        Ok((song, mode, self.state.queue.clone()))
    }
}

/// How a song starts playing for a command taking effect at `effective`.
pub(crate) struct Starting<'a> {
    /// The command's effective instant.
    pub(crate) effective: GroupTime,
    /// The deadline of a loading state: the group starts then without peers not ready.
    pub(crate) deadline: GroupTime,
    /// The song the player holds.
    pub(crate) loaded: Option<&'a SongRef>,
    /// No peer is connected.
    pub(crate) alone: bool,
}

impl Starting<'_> {
    /// Playing from `frame` at once when this node holds the song and is alone, else loading
    /// (every peer loads it, and the group starts when they are ready or at the deadline).
    pub(crate) fn mode(&self, song: &SongRef, frame: u64) -> Mode {
        if self.alone && self.loaded.is_some_and(|l| l.same_song(song)) {
            Mode::Playing {
                frame,
                at: self.effective,
            }
        } else {
            Mode::Loading {
                start_frame: frame,
                deadline: self.deadline,
            }
        }
    }
}

impl GroupState {
    /// The fractional frame a player following this state emits at group instant `t`, while
    /// the state says it plays then (before a pause's instant, it plays towards the pause).
    fn frame_heard_at(&self, t: GroupTime) -> Option<f64> {
        let song = self.song.as_ref()?;
        let (frame, at) = match self.mode {
            Mode::Playing { frame, at }
            | Mode::Loading {
                start_frame: frame,
                deadline: at,
            } if t >= at => (frame, at),
            Mode::Paused { frame, at } if t < at => (frame, at),
            _ => return None,
        };
        Some(frame as f64 + song.nanos_to_frames(t.since(at) as f64))
    }

    /// The whole frame the timeline reaches at `t` (pause placement): floor of the fractional
    /// frame, so the frame being heard at `t` is the last one played.
    fn frame_at_or_anchor(&self, t: GroupTime) -> Option<u64> {
        match self.mode {
            Mode::Playing { frame, at }
            | Mode::Loading {
                start_frame: frame,
                deadline: at,
            } => {
                let song = self.song.as_ref()?;
                let f = frame as f64 + song.nanos_to_frames(t.since(at) as f64);
                Some((f.floor().max(0.0) as u64).min(song.frames))
            }
            _ => None,
        }
    }
}
