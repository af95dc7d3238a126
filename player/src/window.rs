//! A bounded window of a streamed song's decoded frames, shared by the decoder thread (the one
//! writer) and the audio thread (the reader), without locks.
//!
//! The window holds frames `[start, end)` of the song in a ring of `capacity` frames. The
//! reader never waits: a frame it asks for that the window does not hold plays as silence and
//! is counted ([`Window::underflow_frames`]). It publishes where it reads ([`Window::wanted`]),
//! which tells the decoder what to decode next and when to re-position. Samples are atomics,
//! so a frame overwritten while being read is a stale value, never undefined behaviour; the
//! reader checks afterwards (seqlock style) whether the frames it copied were still the ones it
//! asked for, and silences those that were not.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Decoded frames of one song around the play position.
#[derive(Debug)]
pub(crate) struct Window {
    channels: usize,
    capacity: u64,
    samples: Box<[AtomicU32]>,
    /// First frame held.
    start: AtomicU64,
    /// One past the last frame held.
    end: AtomicU64,
    /// Bumped (twice) around each re-positioning: a reader that sees it change or odd drops
    /// what it copied.
    epoch: AtomicU64,
    /// The first frame the reader last asked for (or the frame a load is cued at).
    wanted: AtomicU64,
    /// Frames asked for that the window did not hold.
    underflow: AtomicU64,
}

impl Window {
    /// An empty window of `capacity` frames of `channels` channels, starting at frame 0.
    pub(crate) fn new(channels: usize, capacity: u64) -> Self {
        let samples = (0..capacity as usize * channels)
            .map(|_| AtomicU32::new(0))
            .collect();
        Window {
            channels,
            capacity,
            samples,
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            wanted: AtomicU64::new(0),
            underflow: AtomicU64::new(0),
        }
    }

    /// Frames held: `[start, end)`.
    pub(crate) fn held(&self) -> (u64, u64) {
        loop {
            let e1 = self.epoch.load(Ordering::Acquire);
            let start = self.start.load(Ordering::Acquire);
            let end = self.end.load(Ordering::Acquire);
            if e1.is_multiple_of(2) && self.epoch.load(Ordering::Acquire) == e1 {
                return (start, end);
            }
            std::hint::spin_loop();
        }
    }

    /// The frame the reader wants next.
    pub(crate) fn wanted(&self) -> u64 {
        self.wanted.load(Ordering::Acquire)
    }

    /// Asks for `frame` next (a load cued there, before the reader reads).
    pub(crate) fn cue(&self, frame: u64) {
        self.wanted.store(frame, Ordering::Release);
    }

    /// Frames played as silence because they were not decoded in time.
    pub(crate) fn underflow_frames(&self) -> u64 {
        self.underflow.load(Ordering::Relaxed)
    }

    /// Reader: copies frames `[first, first + frames)` (clipped to `[0, total)`) into `dst`
    /// (interleaved, `dst_ch` channels, the first `dst_ch` of the song's), which the caller
    /// has zeroed; frames the window does not hold stay zero and are counted. Never waits.
    pub(crate) fn read(
        &self,
        first: i64,
        frames: usize,
        total: u64,
        dst: &mut [f32],
        dst_ch: usize,
    ) {
        let lo = first.max(0) as u64;
        let hi = (first + frames as i64).clamp(0, total as i64) as u64;
        if lo >= hi {
            return;
        }
        self.wanted.store(lo, Ordering::Release);
        let epoch = self.epoch.load(Ordering::Acquire);
        let start = self.start.load(Ordering::Acquire);
        let end = self.end.load(Ordering::Acquire);
        let (from, to) = (lo.max(start), hi.min(end));
        if epoch % 2 == 1 || from >= to {
            self.underflow.fetch_add(hi - lo, Ordering::Relaxed);
            return;
        }
        let ch = self.channels;
        for f in from..to {
            let slot = (f % self.capacity) as usize * ch;
            let d = (f as i64 - first) as usize * dst_ch;
            for c in 0..dst_ch {
                dst[d + c] = f32::from_bits(self.samples[slot + c].load(Ordering::Relaxed));
            }
        }
        fence(Ordering::Acquire);
        // The writer moves `start` forward before it overwrites a slot: frames below the new
        // start may have been overwritten while copied.
        let valid_from = if self.epoch.load(Ordering::Relaxed) != epoch {
            to
        } else {
            self.start.load(Ordering::Relaxed).clamp(from, to)
        };
        for f in from..valid_from {
            let d = (f as i64 - first) as usize * dst_ch;
            dst[d..d + dst_ch].fill(0.0);
        }
        self.underflow
            .fetch_add((hi - lo) - (to - valid_from), Ordering::Relaxed);
    }

    /// Writer: the window is emptied and starts at `frame` (a re-positioning).
    pub(crate) fn restart_at(&self, frame: u64) {
        let e = self.epoch.load(Ordering::Relaxed);
        self.epoch.store(e + 1, Ordering::Release);
        fence(Ordering::Release);
        self.start.store(frame, Ordering::Release);
        self.end.store(frame, Ordering::Release);
        self.epoch.store(e + 2, Ordering::Release);
    }

    /// Writer: appends interleaved `samples` (whole frames of the window's channels) at `end`.
    /// The oldest frames make room when the ring is full.
    pub(crate) fn push(&self, samples: &[f32]) {
        let ch = self.channels;
        let end = self.end.load(Ordering::Relaxed);
        let count = (samples.len() / ch) as u64;
        let new_end = end + count;
        let start = self.start.load(Ordering::Relaxed);
        if new_end > start + self.capacity {
            self.start
                .store(new_end.saturating_sub(self.capacity), Ordering::Release);
            fence(Ordering::Release);
        }
        // A push longer than the ring keeps only its last `capacity` frames.
        let skip = count.saturating_sub(self.capacity);
        for (i, frame) in samples.chunks_exact(ch).enumerate().skip(skip as usize) {
            let slot = ((end + i as u64) % self.capacity) as usize * ch;
            for (c, s) in frame.iter().enumerate() {
                self.samples[slot + c].store(s.to_bits(), Ordering::Relaxed);
            }
        }
        self.end.store(new_end, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(from: u64, frames: u64) -> Vec<f32> {
        (from..from + frames)
            .flat_map(|f| [f as f32, -(f as f32)])
            .collect()
    }

    #[test]
    fn held_frames_read_back_and_missing_ones_are_silence_counted() {
        let w = Window::new(2, 100);
        w.push(&ramp(0, 50));
        let mut dst = vec![0.0; 20 * 2];
        w.read(40, 20, 1000, &mut dst, 2);
        assert_eq!(&dst[..4], &[40.0, -40.0, 41.0, -41.0]);
        assert_eq!(&dst[18..20], &[49.0, -49.0]);
        assert!(dst[20..].iter().all(|&s| s == 0.0));
        assert_eq!(w.underflow_frames(), 10);
        assert_eq!(w.wanted(), 40);
    }

    #[test]
    fn the_ring_keeps_the_last_capacity_frames() {
        let w = Window::new(2, 100);
        for k in 0..5 {
            w.push(&ramp(k * 60, 60));
        }
        assert_eq!(w.held(), (200, 300));
        let mut dst = vec![0.0; 2];
        w.read(250, 1, 1000, &mut dst, 2);
        assert_eq!(dst, [250.0, -250.0]);
        let mut dst = vec![0.0; 2];
        w.read(150, 1, 1000, &mut dst, 2);
        assert_eq!(dst, [0.0, 0.0], "frames that left the ring are silence");
    }

    #[test]
    fn a_restart_drops_what_was_held() {
        let w = Window::new(1, 100);
        w.push(&[1.0; 50]);
        w.restart_at(1000);
        assert_eq!(w.held(), (1000, 1000));
        w.push(&[2.0; 10]);
        let mut dst = vec![0.0; 12];
        w.read(998, 12, 5000, &mut dst, 1);
        assert_eq!(&dst[..2], &[0.0, 0.0]);
        assert!(dst[2..].iter().all(|&s| s == 2.0));
    }

    #[test]
    fn reads_stop_at_the_songs_end_without_counting_past_it() {
        let w = Window::new(1, 100);
        w.push(&[0.5; 10]);
        let mut dst = vec![0.0; 20];
        w.read(5, 20, 10, &mut dst, 1);
        assert_eq!(w.underflow_frames(), 0);
    }
}
