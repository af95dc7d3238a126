//! What is news for this console: a change of the group's state it has not shown yet, once. A
//! state re-stated by a peer, a revision after the clock reference changed, or a stop heard
//! again after a rejoin means what was already shown and is not said again; a song's end is
//! said once; a group's wait for rooms that load is said once per wait, and so is a start
//! without the rooms that did not load in time.

use sync_core::{GroupState, LocalTime, Mode, Nanos, Node, SongRef, StateVersion};

use super::format;

/// How far apart two timelines of one song may start and still be the same playback (a
/// re-stated state's anchors move by the clock estimate's error, far less than this).
const SAME_TIMELINE: Nanos = 50_000_000;

/// How long a group waits for rooms before the wait is worth a line.
const WAIT_WORTH_SAYING: Nanos = 500_000_000;

/// What a state means for the listener, as last shown on this console.
#[derive(Clone, Debug, PartialEq)]
enum Shown {
    /// Stopped (with the song it holds, if any).
    Stopped(Option<SongRef>),
    /// Loading, to start at a frame.
    Loading(SongRef, u64),
    /// Paused at a frame.
    Paused(SongRef, u64),
    /// Playing: the local instant, in nanoseconds (negative before the clock's zero), at
    /// which the timeline's frame 0 plays or would have played.
    Playing(SongRef, i128),
    /// The song played to its end.
    Finished(SongRef),
}

impl Shown {
    /// What `state` means at `now`: a loading state past its deadline plays.
    fn of(state: &GroupState, node: &Node, now: LocalTime) -> Shown {
        let Some(song) = state.song.clone() else {
            return Shown::Stopped(None);
        };
        let origin = |frame: u64, at| {
            let into = song.frames_to_nanos(frame as f64).round() as i128;
            i128::from(node.local_time(at).0) - into
        };
        match state.mode {
            Mode::Stopped { .. } => Shown::Stopped(Some(song)),
            Mode::Loading {
                start_frame,
                deadline,
            } if node.local_time(deadline) <= now => {
                Shown::Playing(song.clone(), origin(start_frame, deadline))
            }
            Mode::Loading { start_frame, .. } => Shown::Loading(song, start_frame),
            Mode::Paused { frame, .. } => Shown::Paused(song, frame),
            Mode::Playing { frame, at } => Shown::Playing(song.clone(), origin(frame, at)),
        }
    }

    /// Whether the listener hears the same thing under both.
    fn same(&self, other: &Shown) -> bool {
        match (self, other) {
            (Shown::Playing(a, x), Shown::Playing(b, y)) => {
                a.same_song(b) && (x - y).abs() < i128::from(SAME_TIMELINE)
            }
            // Silence is silence, whichever song the stopped group holds.
            (Shown::Stopped(_), Shown::Stopped(_)) => true,
            (Shown::Finished(a), Shown::Finished(b)) => a.same_song(b),
            (Shown::Loading(a, f), Shown::Loading(b, g))
            | (Shown::Paused(a, f), Shown::Paused(b, g)) => a.same_song(b) && f == g,
            (a, b) => a == b,
        }
    }
}

/// What this console has shown of the group, to say only what is new: at first, silence.
pub struct News {
    shown: Shown,
    /// The loading state whose wait was said.
    wait_said: Option<StateVersion>,
    /// The loading state whose start without some rooms was said.
    without_said: Option<StateVersion>,
}

impl Default for News {
    fn default() -> Self {
        News {
            shown: Shown::Stopped(None),
            wait_said: None,
            without_said: None,
        }
    }
}

impl News {
    /// The group's state is now `state` (accepted at `now`): whether that is news for this
    /// console. Either way it counts as shown from now on (a command typed here was answered
    /// with its own line).
    pub fn state(&mut self, state: &GroupState, node: &Node, now: LocalTime) -> bool {
        self.record(Shown::of(state, node, now))
    }

    /// `song` played to its end: whether that is news (once per playback).
    pub fn finished(&mut self, song: &SongRef) -> bool {
        self.record(Shown::Finished(song.clone()))
    }

    fn record(&mut self, now: Shown) -> bool {
        let news = !self.shown.same(&now);
        self.shown = now;
        news
    }

    /// The line saying for whom a loading state started here waits, once per state, when
    /// the wait has lasted long enough to be noticed and is for other rooms.
    pub fn wait(&mut self, node: &Node, now: LocalTime) -> Option<String> {
        let w = node.load_wait(now)?;
        if w.waiting_for.is_empty()
            || now.since(w.since) < WAIT_WORTH_SAYING
            || self.wait_said == Some(w.version)
        {
            return None;
        }
        self.wait_said = Some(w.version);
        Some(format::load_wait(node, &w, now))
    }

    /// The line naming the rooms a group started here began without, once per state.
    pub fn started_without(&mut self, node: &Node) -> Option<String> {
        let (version, ids) = node.started_without()?;
        if ids.is_empty() || self.without_said == Some(version) {
            return None;
        }
        self.without_said = Some(version);
        Some(format::started_without(node, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::{Config, GroupTime, NodeId};

    fn song(name: &str) -> SongRef {
        SongRef {
            name: name.into(),
            content_hash: "00".into(),
            sample_rate: 48_000,
            frames: 48_000 * 60,
        }
    }

    fn state(counter: u64, song: &SongRef, mode: Mode) -> GroupState {
        GroupState {
            version: StateVersion {
                counter,
                origin: NodeId(1),
                ..StateVersion::default()
            },
            song: Some(song.clone()),
            mode,
            timebase: 0,
            queue: Default::default(),
        }
    }

    #[test]
    fn a_restated_or_revised_state_is_not_news_but_a_change_is() {
        let node = Node::new(Config::new(NodeId(1)), 1, LocalTime(0));
        let mut news = News::default();
        let a = song("a.wav");
        let now = LocalTime(1_000_000_000);
        // A group found stopped (an old stop heard after a rejoin) changes nothing heard.
        let stop = Mode::Stopped { at: GroupTime(0) };
        assert!(!news.state(&state(1, &a, stop), &node, now));
        let playing = |frame, at| Mode::Playing {
            frame,
            at: GroupTime(at),
        };
        assert!(news.state(&state(1, &a, playing(0, 0)), &node, now));
        // The same timeline, re-anchored 13 s later with a microsecond's error.
        let later = 13 * 1_000_000_000;
        assert!(!news.state(
            &state(2, &a, playing(48_000 * 13, later + 1_000)),
            &node,
            now
        ));
        // A seek is news; stopping twice is said once; the end once.
        assert!(news.state(&state(3, &a, playing(48_000 * 20, later)), &node, now));
        assert!(news.state(&state(4, &a, stop), &node, now));
        assert!(!news.state(&state(5, &a, stop), &node, now));
        assert!(news.state(&state(6, &a, playing(0, later)), &node, now));
        assert!(news.finished(&a));
        assert!(!news.finished(&a));
        assert!(news.state(&state(7, &song("b.wav"), stop), &node, now));
        assert!(!news.state(&state(8, &a, stop), &node, now));
    }
}
