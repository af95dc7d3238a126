//! The group's queue: the songs to play in turn, which one is current, repeat and shuffle. It is
//! part of the [`GroupState`](crate::GroupState), so it is replicated and merged with it (the
//! whole state is one last-writer-wins register; see `docs/queue.md`). Every edit here is pure:
//! it checks first and changes nothing when it returns an error.

use crate::state::SongRef;

/// Most entries a queue holds.
pub const MAX_ENTRIES: usize = 256;

/// Most bytes of song names and hashes a queue holds: with the rest of the state it must fit
/// in one peer frame (64 KiB).
pub const MAX_SONG_BYTES: usize = 48 * 1024;

/// What happens when the current entry ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Repeat {
    /// Play on to the end of the queue, then stop.
    #[default]
    Off,
    /// Play the current entry again and again.
    One,
    /// After the last entry, start again from the first.
    All,
}

impl Repeat {
    /// Lower-case name, as typed (`off`, `one`, `all`).
    pub fn name(self) -> &'static str {
        match self {
            Repeat::Off => "off",
            Repeat::One => "one",
            Repeat::All => "all",
        }
    }
}

/// One song in the queue.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QueueEntry {
    /// Unique within the queue, never reused (the same song may be queued twice).
    pub id: u64,
    /// The song.
    pub song: SongRef,
}

/// The group's queue.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Queue {
    /// Entries in list order (the order `queue` shows and `move` changes).
    pub entries: Vec<QueueEntry>,
    /// Id of the current entry: the one playing, or the one `play` starts.
    pub current: Option<u64>,
    /// What happens at the end of an entry.
    pub repeat: Repeat,
    /// The shuffle seed while shuffle is on: the play order is a function of it and the ids,
    /// so every peer derives the same order from the state alone.
    pub shuffle: Option<u64>,
    /// The id the next added entry gets.
    pub next_id: u64,
}

/// Why a queue edit was refused. Nothing changes when one is returned.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue has no entry.
    #[error("the queue is empty; add songs with `add <song>`")]
    Empty,
    /// A position outside the queue.
    #[error("there is no entry {0}: the queue has {1} entries")]
    NoEntry(usize, usize),
    /// The queue would hold too many entries, or too long names.
    #[error("the queue is full ({MAX_ENTRIES} entries or {MAX_SONG_BYTES} bytes of names at most)")]
    Full,
    /// `next` on the last entry with repeat off.
    #[error("the queue ends here (repeat is off)")]
    AtEnd,
    /// `previous` on the first entry with repeat off.
    #[error("this is the first entry of the queue (repeat is off)")]
    AtStart,
    /// `add` with no song.
    #[error("`add` needs at least one song")]
    NothingToAdd,
}

/// A 64-bit mix (splitmix64's finaliser): the shuffle key of an entry.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn song_bytes(song: &SongRef) -> usize {
    song.name.len() + song.content_hash.len()
}

impl Queue {
    /// The 1-based list position of entry `id`.
    pub fn position(&self, id: u64) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id).map(|i| i + 1)
    }

    /// The entry with id `id`.
    pub fn entry(&self, id: u64) -> Option<&QueueEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The current entry.
    pub fn current_entry(&self) -> Option<&QueueEntry> {
        self.current.and_then(|id| self.entry(id))
    }

    /// Ids in play order: list order, or while shuffled, ordered by a hash of the seed and
    /// the id (an added entry lands at its own place without reshuffling the others).
    pub fn play_order(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.entries.iter().map(|e| e.id).collect();
        if let Some(seed) = self.shuffle {
            ids.sort_by_key(|&id| (mix(seed ^ mix(id)), id));
        }
        ids
    }

    /// The entry after `id` in play order; `wrap`: after the last comes the first.
    fn after(&self, id: u64, wrap: bool) -> Option<u64> {
        let order = self.play_order();
        let i = order.iter().position(|&x| x == id)?;
        match order.get(i + 1) {
            Some(&next) => Some(next),
            None if wrap => order.first().copied(),
            None => None,
        }
    }

    /// The entry that plays when entry `id` ends by itself (repeat one: itself again).
    pub fn successor(&self, id: u64) -> Option<u64> {
        match self.repeat {
            Repeat::One => self.entry(id).map(|e| e.id),
            Repeat::All => self.after(id, true),
            Repeat::Off => self.after(id, false),
        }
    }

    /// The entry `next` moves to (repeat one counts as off, repeat all wraps).
    pub fn next_entry(&self) -> Result<u64, QueueError> {
        let Some(current) = self.current_entry().map(|e| e.id) else {
            return self.first();
        };
        self.after(current, self.repeat == Repeat::All)
            .ok_or(QueueError::AtEnd)
    }

    /// The entry `previous` moves to (repeat all wraps to the last).
    pub fn previous_entry(&self) -> Result<u64, QueueError> {
        let order = self.play_order();
        let Some(current) = self.current_entry().map(|e| e.id) else {
            return self.first();
        };
        let i = order.iter().position(|&x| x == current).unwrap_or(0);
        match i.checked_sub(1) {
            Some(j) => Ok(order[j]),
            None if self.repeat == Repeat::All => order.last().copied().ok_or(QueueError::Empty),
            None => Err(QueueError::AtStart),
        }
    }

    /// The entry `play` alone starts: the current one, else the first in play order.
    pub fn start_entry(&self) -> Result<u64, QueueError> {
        match self.current_entry() {
            Some(e) => Ok(e.id),
            None => self.first(),
        }
    }

    fn first(&self) -> Result<u64, QueueError> {
        self.play_order().first().copied().ok_or(QueueError::Empty)
    }

    /// Appends `songs` in order; returns their 1-based positions.
    pub fn add(
        &mut self,
        songs: &[SongRef],
    ) -> Result<std::ops::RangeInclusive<usize>, QueueError> {
        if songs.is_empty() {
            return Err(QueueError::NothingToAdd);
        }
        if self.entries.len() + songs.len() > MAX_ENTRIES
            || self.song_bytes() + songs.iter().map(song_bytes).sum::<usize>() > MAX_SONG_BYTES
        {
            return Err(QueueError::Full);
        }
        let first = self.entries.len() + 1;
        for song in songs {
            let id = self.take_id();
            self.entries.push(QueueEntry {
                id,
                song: song.clone(),
            });
        }
        Ok(first..=self.entries.len())
    }

    /// Inserts `song` right after the current entry (at the end when none is current), makes
    /// it current and returns its id (`play <song>`). A full queue makes room by dropping its
    /// first entries other than the current one, so that `play` always plays.
    pub fn insert_after_current(&mut self, song: SongRef) -> Result<u64, QueueError> {
        if song_bytes(&song) > MAX_SONG_BYTES {
            return Err(QueueError::Full);
        }
        while self.entries.len() >= MAX_ENTRIES
            || self.song_bytes() + song_bytes(&song) > MAX_SONG_BYTES
        {
            let Some(i) = self.entries.iter().position(|e| Some(e.id) != self.current) else {
                // Only the current entry is left, and the two do not fit together.
                return Err(QueueError::Full);
            };
            self.entries.remove(i);
        }
        let at = self
            .current
            .and_then(|id| self.position(id))
            .unwrap_or(self.entries.len());
        let id = self.take_id();
        self.entries.insert(at, QueueEntry { id, song });
        self.current = Some(id);
        Ok(id)
    }

    fn song_bytes(&self) -> usize {
        self.entries.iter().map(|e| song_bytes(&e.song)).sum()
    }

    fn take_id(&mut self) -> u64 {
        // Ids stay unique even in a queue received from a peer whose `next_id` lags.
        let max = self.entries.iter().map(|e| e.id + 1).max().unwrap_or(0);
        let id = self.next_id.max(max);
        self.next_id = id + 1;
        id
    }

    fn check(&self, n: usize) -> Result<usize, QueueError> {
        if n == 0 || n > self.entries.len() {
            return Err(if self.entries.is_empty() {
                QueueError::Empty
            } else {
                QueueError::NoEntry(n, self.entries.len())
            });
        }
        Ok(n - 1)
    }

    /// Removes the entry at 1-based position `n` and returns it. The current entry may be
    /// removed: the caller decides what plays instead (see [`Queue::next_entry`]).
    pub fn remove(&mut self, n: usize) -> Result<QueueEntry, QueueError> {
        let i = self.check(n)?;
        let removed = self.entries.remove(i);
        if self.current == Some(removed.id) {
            self.current = None;
        }
        Ok(removed)
    }

    /// Moves the entry at position `from` to position `to` (both 1-based, in list order).
    pub fn move_entry(&mut self, from: usize, to: usize) -> Result<(), QueueError> {
        let i = self.check(from)?;
        let j = self.check(to)?;
        let e = self.entries.remove(i);
        self.entries.insert(j, e);
        Ok(())
    }

    /// Empties the queue (repeat and shuffle stay as they are).
    pub fn clear(&mut self) -> Result<usize, QueueError> {
        if self.entries.is_empty() {
            return Err(QueueError::Empty);
        }
        let n = self.entries.len();
        self.entries.clear();
        self.current = None;
        Ok(n)
    }

    /// Why a queue received from a peer cannot be valid, if it cannot.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.entries.len() > MAX_ENTRIES || self.song_bytes() > MAX_SONG_BYTES {
            return Err("queue too long");
        }
        let mut ids: Vec<u64> = self.entries.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("queue entry ids repeat");
        }
        if self.current.is_some() && self.current_entry().is_none() {
            return Err("current entry not in the queue");
        }
        if self
            .entries
            .iter()
            .any(|e| e.song.name.is_empty() || e.song.sample_rate == 0 || e.song.frames == 0)
        {
            return Err("queue entry song");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song(name: &str) -> SongRef {
        SongRef {
            name: name.into(),
            content_hash: "ab".into(),
            sample_rate: 48_000,
            frames: 48_000,
        }
    }

    fn queue(n: usize) -> Queue {
        let mut q = Queue::default();
        let songs: Vec<SongRef> = (0..n).map(|i| song(&format!("{i}.wav"))).collect();
        q.add(&songs).unwrap();
        q
    }

    #[test]
    fn add_numbers_entries_after_the_existing_ones() {
        let mut q = queue(2);
        assert_eq!(q.add(&[song("x"), song("y")]), Ok(3..=4));
        assert_eq!(q.entries[3].song.name, "y");
        assert_eq!(q.add(&[]), Err(QueueError::NothingToAdd));
    }

    #[test]
    fn successor_follows_repeat() {
        let mut q = queue(3);
        let ids = q.play_order();
        assert_eq!(q.successor(ids[0]), Some(ids[1]));
        assert_eq!(q.successor(ids[2]), None);
        q.repeat = Repeat::All;
        assert_eq!(q.successor(ids[2]), Some(ids[0]));
        q.repeat = Repeat::One;
        assert_eq!(q.successor(ids[1]), Some(ids[1]));
    }

    #[test]
    fn next_and_previous_stop_at_the_ends_unless_repeat_all() {
        let mut q = queue(2);
        let ids = q.play_order();
        q.current = Some(ids[1]);
        assert_eq!(q.next_entry(), Err(QueueError::AtEnd));
        assert_eq!(q.previous_entry(), Ok(ids[0]));
        q.current = Some(ids[0]);
        assert_eq!(q.previous_entry(), Err(QueueError::AtStart));
        q.repeat = Repeat::All;
        assert_eq!(q.previous_entry(), Ok(ids[1]));
        // Repeat one does not hold `next` on the same entry.
        q.repeat = Repeat::One;
        assert_eq!(q.next_entry(), Ok(ids[1]));
    }

    #[test]
    fn shuffled_order_is_a_permutation_fixed_by_the_seed() {
        let mut q = queue(20);
        q.shuffle = Some(7);
        let a = q.play_order();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<u64>>());
        assert_ne!(a, sorted, "twenty entries shuffled stay in list order");
        assert_eq!(a, q.clone().play_order());
        q.shuffle = Some(8);
        assert_ne!(q.play_order(), a);
    }

    #[test]
    fn insert_after_current_plays_next_to_it() {
        let mut q = queue(3);
        q.current = Some(q.entries[0].id);
        let id = q.insert_after_current(song("now")).unwrap();
        assert_eq!(q.position(id), Some(2));
        assert_eq!(q.current, Some(id));
    }

    #[test]
    fn bad_positions_change_nothing() {
        let mut q = queue(2);
        let before = q.clone();
        assert_eq!(q.remove(3), Err(QueueError::NoEntry(3, 2)));
        assert_eq!(q.remove(0), Err(QueueError::NoEntry(0, 2)));
        assert_eq!(q.move_entry(1, 5), Err(QueueError::NoEntry(5, 2)));
        assert_eq!(q, before);
        assert_eq!(Queue::default().clear(), Err(QueueError::Empty));
    }

    #[test]
    fn play_now_makes_room_in_a_full_queue_and_keeps_the_current_entry() {
        let mut q = queue(MAX_ENTRIES);
        q.current = Some(q.entries[0].id);
        assert_eq!(q.add(&[song("x")]), Err(QueueError::Full));
        let id = q.insert_after_current(song("now")).unwrap();
        assert_eq!(q.entries.len(), MAX_ENTRIES);
        assert_eq!(q.entries[0].song.name, "0.wav");
        assert_eq!(q.position(id), Some(2));
        assert_eq!(q.entries[2].song.name, "2.wav", "1.wav gave its place");
    }

    #[test]
    fn move_reorders_the_list() {
        let mut q = queue(3);
        q.move_entry(3, 1).unwrap();
        let names: Vec<&str> = q.entries.iter().map(|e| e.song.name.as_str()).collect();
        assert_eq!(names, ["2.wav", "0.wav", "1.wav"]);
    }

    #[test]
    fn ids_stay_unique_after_removal_and_a_lagging_counter() {
        let mut q = queue(3);
        q.remove(3).unwrap();
        q.next_id = 0;
        q.add(&[song("z")]).unwrap();
        assert_eq!(q.validate(), Ok(()));
    }
}
