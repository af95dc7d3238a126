//! The group playback state: one versioned value per group, merged as a last-writer-wins
//! register, and the timeline arithmetic that turns it into frames at instants.

use std::cmp::Ordering;
use std::fmt;

use crate::queue::Queue;
use crate::time::{GroupTime, Nanos, SECOND};

/// Identifies a node. Lower ids win the reference role (see [`crate::node`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Version of a [`GroupState`]: a Lamport counter, ties broken by the originating node, then
/// a revision for re-expressions of the same command.
///
/// Ordering is lexicographic on `(counter, origin, revision, revised_by)`, so any two versions
/// are totally ordered and every node picks the same winner. A revision re-states a command in
/// another time base (groups merging): it supersedes the command it revises, but never a
/// command issued after it (a greater counter), so converting a state cannot undo a command.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct StateVersion {
    /// Lamport counter: greater than every counter the origin had seen when it issued this.
    pub counter: u64,
    /// The node on which the command was issued.
    pub origin: NodeId,
    /// How many times the command was re-stated (0: as issued).
    pub revision: u32,
    /// The node that made the last revision (zero for revision 0).
    pub revised_by: NodeId,
}

impl StateVersion {
    /// A command's version as issued.
    pub fn new(counter: u64, origin: NodeId) -> Self {
        StateVersion {
            counter,
            origin,
            revision: 0,
            revised_by: NodeId(0),
        }
    }

    /// The next revision of the same command, made by `by`.
    pub fn revised(&self, by: NodeId) -> Self {
        StateVersion {
            revision: self.revision.saturating_add(1),
            revised_by: by,
            ..*self
        }
    }
}

impl fmt::Display for StateVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.counter, self.origin)?;
        if self.revision > 0 {
            write!(f, "/r{}@{}", self.revision, self.revised_by)?;
        }
        Ok(())
    }
}

/// A song as the group refers to it: its name on the server plus enough metadata to place
/// frames on the timeline without having loaded it.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SongRef {
    /// File name as listed by the server's playlist.
    pub name: String,
    /// Hex content hash of the WAV file (empty when unknown); two songs are the same song only
    /// when name and hash match.
    pub content_hash: String,
    /// The song's own sample rate in frames per second.
    pub sample_rate: u32,
    /// Length of the song in frames.
    pub frames: u64,
}

impl SongRef {
    /// Whether `other` designates the same content.
    pub fn same_song(&self, other: &SongRef) -> bool {
        self.name == other.name && self.content_hash == other.content_hash
    }

    /// Duration of `frames` frames of this song in nanoseconds.
    pub fn frames_to_nanos(&self, frames: f64) -> f64 {
        frames * SECOND as f64 / self.sample_rate as f64
    }

    /// Number of frames (fractional) played in `ns` nanoseconds of group time.
    pub fn nanos_to_frames(&self, ns: f64) -> f64 {
        ns * self.sample_rate as f64 / SECOND as f64
    }
}

/// What the group is doing with its song.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Nothing plays from `at` on.
    Stopped {
        /// Group instant at which playback stops.
        at: GroupTime,
    },
    /// Everyone loads the song; playback starts at `start_frame` once the initiator sees its
    /// peers ready, and at the latest at `deadline` (every node computes that fallback alone, so
    /// a vanished initiator cannot hold the group).
    Loading {
        /// First frame to play.
        start_frame: u64,
        /// Group instant at which playback starts if no newer state arrives.
        deadline: GroupTime,
    },
    /// Playback holds at `frame` from `at` on: the timeline before `at` was playing and reaches
    /// `frame` exactly at `at`, so every peer stops on the same frame.
    Paused {
        /// Frame at which playback holds.
        frame: u64,
        /// Group instant at which the pause takes effect.
        at: GroupTime,
    },
    /// Frame `frame` is heard at group instant `at`; the timeline advances at the song's rate.
    Playing {
        /// Anchor frame.
        frame: u64,
        /// Group instant at which `frame` is heard.
        at: GroupTime,
    },
}

/// The group's playback state, a last-writer-wins register.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GroupState {
    /// Version of this value; greater wins.
    pub version: StateVersion,
    /// The song, if one has been chosen.
    pub song: Option<SongRef>,
    /// What the group does with it.
    pub mode: Mode,
    /// The time base (see [`crate::ClockMapping::timebase`]) its instants are expressed in.
    pub timebase: u64,
    /// The group's queue; its current entry, when the state plays from the queue, is `song`.
    pub queue: Queue,
}

/// Playback as it stands at one instant, derived from a [`GroupState`].
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Timeline {
    /// No song or stopped.
    Stopped,
    /// Waiting for peers to load.
    Loading,
    /// Holding at a frame.
    Paused {
        /// The frame held.
        frame: u64,
    },
    /// Playing; `frame` is the (fractional) frame heard at that instant.
    Playing {
        /// Fractional frame heard at the instant asked about.
        frame: f64,
    },
    /// The song played to its end.
    Finished,
}

impl Timeline {
    /// Short lower-case name used in traces and tables (`stopped`, `loading`, `paused`, `playing`).
    pub fn name(&self) -> &'static str {
        match self {
            Timeline::Stopped | Timeline::Finished => "stopped",
            Timeline::Loading => "loading",
            Timeline::Paused { .. } => "paused",
            Timeline::Playing { .. } => "playing",
        }
    }
}

impl GroupState {
    /// The state every node starts with: stopped, no song, version zero.
    pub fn initial(timebase: u64) -> Self {
        GroupState {
            version: StateVersion::default(),
            song: None,
            mode: Mode::Stopped { at: GroupTime(0) },
            timebase,
            queue: Queue::default(),
        }
    }

    /// The same state with every instant shifted by `by` and expressed in time base `timebase`
    /// (a node that moved to another group's time converts what it holds).
    pub fn converted(&self, by: Nanos, timebase: u64) -> GroupState {
        let shift = |g: GroupTime| g + by;
        let mode = match self.mode {
            Mode::Stopped { at } => Mode::Stopped { at: shift(at) },
            Mode::Loading {
                start_frame,
                deadline,
            } => Mode::Loading {
                start_frame,
                deadline: shift(deadline),
            },
            Mode::Paused { frame, at } => Mode::Paused {
                frame,
                at: shift(at),
            },
            Mode::Playing { frame, at } => Mode::Playing {
                frame,
                at: shift(at),
            },
        };
        GroupState {
            version: self.version,
            song: self.song.clone(),
            mode,
            timebase,
            queue: self.queue.clone(),
        }
    }

    /// The group instant at which this state takes effect.
    pub fn effective_at(&self) -> GroupTime {
        match self.mode {
            Mode::Stopped { at } | Mode::Paused { at, .. } | Mode::Playing { at, .. } => at,
            Mode::Loading { .. } => GroupTime(0),
        }
    }

    /// Where the timeline stands at group instant `t`.
    ///
    /// Only the state's own anchors are used: a `Paused` state reached from playback is
    /// reported as paused from its effective instant on (before it, the previous state
    /// still governs, which the caller keeps track of).
    pub fn timeline_at(&self, t: GroupTime) -> Timeline {
        let Some(song) = &self.song else {
            return Timeline::Stopped;
        };
        match self.mode {
            Mode::Stopped { .. } => Timeline::Stopped,
            Mode::Paused { frame, .. } => Timeline::Paused { frame },
            Mode::Loading {
                start_frame,
                deadline,
            } => {
                if t < deadline {
                    Timeline::Loading
                } else {
                    playing_at(song, start_frame, deadline, t)
                }
            }
            Mode::Playing { frame, at } => playing_at(song, frame, at, t),
        }
    }

    /// The frame (fractional) the timeline reaches at `t` if it plays from this state's anchor,
    /// used to place pauses and seeks. `None` unless the state is playing (or a loading state
    /// past its deadline).
    pub fn frame_at(&self, t: GroupTime) -> Option<f64> {
        match self.timeline_at(t) {
            Timeline::Playing { frame } => Some(frame),
            _ => None,
        }
    }
}

fn playing_at(song: &SongRef, frame: u64, at: GroupTime, t: GroupTime) -> Timeline {
    let elapsed: Nanos = t.since(at);
    let f = frame as f64 + song.nanos_to_frames(elapsed as f64);
    if f >= song.frames as f64 {
        Timeline::Finished
    } else {
        // Before the anchor the timeline is still "playing" with a negative offset: callers
        // schedule the start at `at` and the frame is clamped by the player.
        Timeline::Playing { frame: f }
    }
}

/// Last-writer-wins merge: whether `incoming` should replace `current`.
pub fn supersedes(incoming: &StateVersion, current: &StateVersion) -> bool {
    incoming.cmp(current) == Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song() -> SongRef {
        SongRef {
            name: "a.wav".into(),
            content_hash: "00".into(),
            sample_rate: 48_000,
            frames: 48_000 * 10,
        }
    }

    #[test]
    fn playing_state_advances_at_the_song_rate() {
        let s = GroupState {
            version: StateVersion::default(),
            timebase: 1,
            queue: Queue::default(),
            song: Some(song()),
            mode: Mode::Playing {
                frame: 100,
                at: GroupTime(SECOND as u64),
            },
        };
        assert_eq!(
            s.timeline_at(GroupTime(2 * SECOND as u64)),
            Timeline::Playing { frame: 48_100.0 }
        );
        assert_eq!(
            s.timeline_at(GroupTime(20 * SECOND as u64)),
            Timeline::Finished
        );
    }

    #[test]
    fn loading_state_starts_by_itself_at_its_deadline() {
        let s = GroupState {
            version: StateVersion::default(),
            timebase: 1,
            queue: Queue::default(),
            song: Some(song()),
            mode: Mode::Loading {
                start_frame: 0,
                deadline: GroupTime(SECOND as u64),
            },
        };
        assert_eq!(
            s.timeline_at(GroupTime(SECOND as u64 / 2)),
            Timeline::Loading
        );
        assert_eq!(
            s.timeline_at(GroupTime(SECOND as u64 + SECOND as u64 / 2)),
            Timeline::Playing { frame: 24_000.0 }
        );
    }

    #[test]
    fn versions_order_by_counter_then_origin() {
        let a = StateVersion::new(3, NodeId(9));
        let b = StateVersion::new(4, NodeId(1));
        let c = StateVersion::new(4, NodeId(2));
        assert!(supersedes(&b, &a));
        assert!(supersedes(&c, &b));
        assert!(!supersedes(&a, &c));
        assert!(!supersedes(&c, &c));
        // A revision beats what it revises, and loses to any later command.
        let r = b.revised(NodeId(7));
        assert!(supersedes(&r, &b));
        assert!(supersedes(&c, &r));
        assert!(supersedes(&b.revised(NodeId(8)), &r));
        assert_eq!(r.to_string(), "4@0000000000000001/r1@0000000000000007");
    }
}
