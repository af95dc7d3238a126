//! The queue as the register plays it: a queue command turned into the group's next song, mode
//! and queue, and the transition from one entry to the next when a song ends, derived from the
//! state alone so that every peer makes the same one at the same group instant, without a
//! message.

use super::api::{CommandError, QueueCommand};
use super::register::{Starting, effective_mode};
use crate::clock::ClockMapping;
use crate::queue::{Queue, QueueError};
use crate::state::{GroupState, Mode, NodeId, SongRef};
use crate::time::{GroupTime, LocalTime, Nanos};

/// The song, mode and queue a queue command asks for; `mode` is the state's effective mode (a
/// song that played to its end counts as stopped).
pub(crate) fn decide(
    state: &GroupState,
    mode: Mode,
    command: &QueueCommand,
    starting: &Starting<'_>,
) -> Result<(Option<SongRef>, Mode, Queue), CommandError> {
    let mut queue = state.queue.clone();
    let unchanged = |queue| Ok((state.song.clone(), mode, queue));
    let moving = matches!(mode, Mode::Playing { .. } | Mode::Loading { .. });
    // Playing (or loading) goes on with the entry chosen; paused or stopped, it is cued.
    let go_to = |mut queue: Queue, id: u64| {
        queue.current = Some(id);
        let song = queue.entry(id).map(|e| e.song.clone());
        let mode = match &song {
            Some(s) if moving => starting.mode(s, 0),
            _ => Mode::Stopped {
                at: starting.effective,
            },
        };
        Ok((song, mode, queue))
    };
    match command {
        QueueCommand::Add(songs) => {
            if let Some(bad) = songs.iter().find(|s| s.sample_rate == 0 || s.frames == 0) {
                return Err(CommandError::InvalidSong(bad.name.clone()));
            }
            queue.add(songs)?;
            unchanged(queue)
        }
        QueueCommand::Move { from, to } => {
            queue.move_entry(*from, *to)?;
            unchanged(queue)
        }
        QueueCommand::Clear => {
            queue.clear()?;
            unchanged(queue)
        }
        QueueCommand::Repeat(r) => {
            queue.repeat = *r;
            unchanged(queue)
        }
        QueueCommand::Shuffle(on) => {
            // A new order each time it is turned on; the seed is in the state, so every peer
            // derives the same order.
            queue.shuffle = on.then_some(starting.effective.as_nanos() | 1);
            unchanged(queue)
        }
        QueueCommand::Remove(n) => {
            let removing = queue.entries.get(n.wrapping_sub(1)).map(|e| e.id);
            let was_current = removing.is_some() && removing == queue.current;
            // What `next` would play instead of the current entry, before it goes.
            let instead = queue.next_entry().ok().filter(|&id| Some(id) != removing);
            queue.remove(*n)?;
            match (was_current, instead) {
                (false, _) => unchanged(queue),
                (true, Some(id)) => go_to(queue, id),
                (true, None) => Ok((
                    state.song.clone(),
                    stop_unless_stopped(mode, starting.effective),
                    queue,
                )),
            }
        }
        QueueCommand::Next => {
            let id = queue.next_entry()?;
            go_to(queue, id)
        }
        QueueCommand::Previous => {
            let id = queue.previous_entry()?;
            go_to(queue, id)
        }
        QueueCommand::PlayNow(song) => {
            if song.sample_rate == 0 || song.frames == 0 {
                return Err(CommandError::InvalidSong(song.name.clone()));
            }
            queue.insert_after_current(song.clone())?;
            Ok((Some(song.clone()), starting.mode(song, 0), queue))
        }
        QueueCommand::Start => {
            let id = queue.start_entry()?;
            queue.current = Some(id);
            let song = queue
                .entry(id)
                .map(|e| e.song.clone())
                .ok_or(QueueError::Empty)?;
            let mode = starting.mode(&song, 0);
            Ok((Some(song), mode, queue))
        }
    }
}

fn stop_unless_stopped(mode: Mode, at: GroupTime) -> Mode {
    match mode {
        Mode::Stopped { .. } => mode,
        _ => Mode::Stopped { at },
    }
}

/// The entry a state plays from the queue, when its song is the queue's current entry, with
/// the group instant at which the song ends, when it plays.
fn playing_entry(
    state: &GroupState,
    mapping: &ClockMapping,
    now: LocalTime,
) -> Option<(u64, GroupTime)> {
    let song = state.song.as_ref()?;
    let entry = state.queue.current_entry()?;
    if !entry.song.same_song(song) {
        return None;
    }
    let Mode::Playing { frame, at } = effective_mode(state, mapping, now) else {
        return None;
    };
    // The same expression as the register's song end, so both land on the same instant.
    let end = at
        + song
            .frames_to_nanos((song.frames - frame.min(song.frames)) as f64)
            .round() as Nanos;
    Some((entry.id, end))
}

/// The state that follows `state` when its song, played from the queue, ends: the successor
/// entry plays from its first frame at the group instant the song ends (one frame period after
/// its last frame is heard). The version is the state's own, revised by node 0: every peer
/// derives the same value, which supersedes the state it follows and loses to any command
/// issued after it. `None` at the end of the queue (the group stops) or when the state does
/// not play from the queue.
pub(crate) fn advance(
    state: &GroupState,
    mapping: &ClockMapping,
    now: LocalTime,
) -> Option<GroupState> {
    let (id, end) = playing_entry(state, mapping, now)?;
    let next = state.queue.successor(id)?;
    let mut queue = state.queue.clone();
    queue.current = Some(next);
    let song = queue.entry(next)?.song.clone();
    Some(GroupState {
        version: state.version.revised(NodeId(0)),
        song: Some(song),
        mode: Mode::Playing { frame: 0, at: end },
        timebase: state.timebase,
        queue,
    })
}

/// The song that plays after the current one, while the state plays from the queue and it is
/// another song (for fetching it ahead of the end).
pub(crate) fn upcoming(
    state: &GroupState,
    mapping: &ClockMapping,
    now: LocalTime,
) -> Option<SongRef> {
    let (id, _) = playing_entry(state, mapping, now)?;
    let next = state.queue.entry(state.queue.successor(id)?)?;
    let current = state.song.as_ref()?;
    (!next.song.same_song(current)).then(|| next.song.clone())
}

impl super::Node {
    /// The song played from the queue ended at `now`: the next entry plays, from the state
    /// every peer derives alone. Returns false at the end of the queue (the group stops).
    pub(super) fn advance_queue(&mut self, now: LocalTime) -> bool {
        let Some(next) = advance(&self.register.state, &self.tree.mapping, now) else {
            return false;
        };
        self.accept_state(next, None, 0);
        // Its instant is the song's end, which has passed: it takes effect now.
        let mapping = self.tree.mapping;
        if let Some(version) = self.register.effective_due(&mapping, now) {
            self.event(super::Event::StateEffective { version });
        }
        true
    }

    /// The song that plays after the current one when the state plays from the queue and the
    /// next entry is another song: a driver fetches it ahead of the end, without installing it.
    pub fn upcoming_song(&self) -> Option<SongRef> {
        upcoming(&self.register.state, &self.tree.mapping, self.now)
    }
}
