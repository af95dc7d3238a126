//! The `queue` scenario's part of the simulator: the queue commands simulated users type, the
//! short songs they queue (so that songs end and the group moves on by itself), and the
//! invariant that peers holding the same state version hold the same song and queue.

use std::collections::BTreeMap;

use sync_core::{Command, NodeId, QueueCommand, Repeat, SongRef, StateVersion, Timeline};

use super::Sim;

/// The songs of the `queue` scenario: a few seconds each, one at another sample rate.
pub(super) fn queue_songs() -> Vec<SongRef> {
    [
        ("q-a.wav", "d4", 48_000, 6),
        ("q-b.wav", "e5", 44_100, 5),
        ("q-c.wav", "f6", 48_000, 8),
    ]
    .into_iter()
    .map(|(name, hash, rate, seconds)| SongRef {
        name: name.into(),
        content_hash: hash.into(),
        sample_rate: rate,
        frames: u64::from(rate) * seconds,
    })
    .collect()
}

/// Whether `version` is a transition to the next queue entry, made by every peer alone.
pub(super) fn is_queue_transition(version: &StateVersion) -> bool {
    version.revision > 0 && version.revised_by == NodeId(0)
}

impl Sim {
    /// The queue command a user at peer `i` would type now: mostly edits and moves through
    /// the queue, `play` to start it, now and then a pause or resume.
    pub(super) fn choose_queue_command(&mut self, i: usize) -> Command {
        let local = self.local(i);
        let node = self.peers[i].node.as_ref().expect("up");
        let len = node.state().queue.entries.len();
        let timeline = node.timeline_at(local);
        let r = self.uniform();
        let pick_song = |sim: &mut Sim| {
            let k = sim.below(sim.songs.len());
            sim.songs[k].clone()
        };
        let q = if len == 0 {
            let songs = (0..3).map(|_| pick_song(self)).collect();
            QueueCommand::Add(songs)
        } else if !matches!(timeline, Timeline::Playing { .. } | Timeline::Paused { .. }) {
            QueueCommand::Start
        } else if r < 0.2 {
            QueueCommand::Add(vec![pick_song(self)])
        } else if r < 0.3 {
            QueueCommand::Remove(self.below(len) + 1)
        } else if r < 0.4 {
            QueueCommand::Move {
                from: self.below(len) + 1,
                to: self.below(len) + 1,
            }
        } else if r < 0.55 {
            QueueCommand::Next
        } else if r < 0.6 {
            QueueCommand::Previous
        } else if r < 0.7 {
            QueueCommand::Repeat([Repeat::Off, Repeat::One, Repeat::All][self.below(3)])
        } else if r < 0.75 {
            QueueCommand::Shuffle(self.uniform() < 0.5)
        } else if r < 0.85 {
            QueueCommand::Start
        } else {
            return match timeline {
                Timeline::Paused { .. } => Command::Resume,
                _ => Command::Pause,
            };
        };
        Command::Queue(q)
    }

    /// Peers holding the same state version hold the same song and queue (a transition to the
    /// next entry, made by each peer alone, must come out the same everywhere). Instants are
    /// not compared: a state read in another time base is converted by each peer's estimate.
    pub(super) fn check_same_queue(&mut self) {
        let mut first: BTreeMap<StateVersion, usize> = BTreeMap::new();
        let mut broken = Vec::new();
        for i in 0..self.cfg.peers {
            let Some(node) = self.peers[i].node.as_ref() else {
                continue;
            };
            let s = node.state();
            match first.get(&s.version) {
                None => {
                    first.insert(s.version, i);
                }
                Some(&j) => {
                    let other = self.peers[j].node.as_ref().expect("listed").state();
                    let same_kind =
                        std::mem::discriminant(&s.mode) == std::mem::discriminant(&other.mode);
                    if s.song != other.song || s.queue != other.queue || !same_kind {
                        broken.push((i, j, s.version));
                    }
                }
            }
        }
        for (i, j, v) in broken {
            let what = format!("peers {j} and {i} hold version {v} with different states");
            self.violation(Some(i), what);
        }
    }
}
