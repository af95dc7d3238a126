//! A song played while it downloads: a decoder thread reads the compressed bytes from a cache
//! file ([`crate::cache`]) as they arrive and keeps a bounded [`Window`] of decoded frames
//! around the play position, a few seconds ahead and a little behind. Memory does not grow with
//! the song's length.
//!
//! Frame numbers are the same as a whole decode's ([`crate::decode_bytes`]): frames are counted
//! from the first decoded one, after symphonia trimmed encoder delay and padding. A jump outside
//! the window re-positions the decoder with symphonia's accurate seek (to a point at or before
//! the target) and discards the frames before it, so the same frame number is the same sample
//! on every peer, whatever path its decoder took. The audio thread never waits for the decoder:
//! frames not decoded in time play as silence and are counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use symphonia::core::audio::Channels;
use symphonia::core::codecs::audio::AudioDecoder;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::Timestamp;

use crate::cache::{CacheReader, Closer};
use crate::decode::{AudioTrack, Damage, audio_track, downmix_to_stereo, interleave};
use crate::song::{DecodeError, Song};
use crate::window::Window;

/// Seconds of audio decoded ahead of the play position.
const AHEAD_S: u64 = 4;
/// Seconds kept behind it (a resampler's history, a small step back).
const BEHIND_S: u64 = 1;
/// A song can start from a frame once this much from it is decoded.
const READY_MS: u64 = 500;
/// How long the idle decoder sleeps before it looks at the play position again.
const IDLE: Duration = Duration::from_millis(3);
/// Longest gap in a file's timestamps filled with silence (a damaged file's wild timestamp
/// does not allocate).
const MAX_GAP_FRAMES: usize = 1 << 20;

/// What the decoder thread tells its owner.
#[derive(Debug, Default)]
struct Status {
    /// The decoder reached the end of the file.
    at_end: AtomicBool,
    /// The song was dropped: the thread ends.
    closed: AtomicBool,
    /// Why decoding stopped for good, if it did.
    error: Mutex<Option<String>>,
    /// Damage skipped so far.
    damage: Mutex<Option<Damage>>,
}

/// A song being decoded from a growing cache file. Dropping it stops its decoder thread; a
/// player still holding [`Streamed::song`] then plays the frames left in the window and
/// silence after them.
#[derive(Debug)]
pub struct Streamed {
    song: Arc<Song>,
    window: Arc<Window>,
    status: Arc<Status>,
    closer: Closer,
}

impl Streamed {
    /// Reads the file's header from `source` (waiting for its first bytes) and starts the
    /// decoder thread. `frames` is the song's length as listed (a whole decode's count); 0
    /// takes the container's count. Fails if the bytes are not audio this player decodes, or
    /// their rate is not `sample_rate` (when given).
    pub fn open(
        source: CacheReader,
        frames: u64,
        sample_rate: Option<u32>,
    ) -> Result<Streamed, DecodeError> {
        let closer = source.closer();
        let mut decoding = Decoding::open(source)?;
        let rate = decoding.rate;
        if sample_rate.is_some_and(|r| r != rate) {
            return Err(DecodeError::Malformed(format!(
                "the file's rate is {rate} Hz, the listing says {} Hz",
                sample_rate.unwrap_or(0)
            )));
        }
        let frames = match (frames, decoding.container_frames) {
            (0, Some(n)) => n,
            (0, None) => u64::MAX,
            (n, _) => n,
        };
        let channels = decoding.out_channels;
        let capacity = (AHEAD_S + BEHIND_S + 1) * u64::from(rate);
        let window = Arc::new(Window::new(usize::from(channels), capacity));
        let song = Arc::new(Song::streamed(rate, channels, frames, window.clone())?);
        let status = Arc::new(Status::default());
        let (w, s) = (window.clone(), status.clone());
        std::thread::Builder::new()
            .name("music262-decode".into())
            .spawn(move || {
                let error = decoding.run(&w, &s, frames).err();
                if let Some(e) = error {
                    *s.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            })
            .map_err(|e| DecodeError::Malformed(format!("cannot start a decoder thread: {e}")))?;
        Ok(Streamed {
            song,
            window,
            status,
            closer,
        })
    }

    /// The song, for the player: its frames are read from the window.
    pub fn song(&self) -> Arc<Song> {
        self.song.clone()
    }

    /// Whether the song can play from `frame` now: the window holds it and half a second after
    /// it (or the song's end). Asks the decoder for `frame` if the player is not reading yet.
    pub fn can_play_from(&self, frame: u64) -> bool {
        let (start, end) = self.window.held();
        let rate = u64::from(self.song.sample_rate);
        let ready = start <= frame
            && (end >= frame + READY_MS * rate / 1000
                || end >= self.song.frames
                || (end > frame && self.status.at_end.load(Ordering::Acquire)));
        if !ready && (frame < start || frame > end) {
            self.window.cue(frame);
        }
        ready
    }

    /// Frames the player asked for that were not decoded in time (played as silence).
    pub fn underflow_frames(&self) -> u64 {
        self.window.underflow_frames()
    }

    /// Why decoding stopped before the song's end, if it did.
    pub fn error(&self) -> Option<String> {
        self.status
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Damage skipped so far (broken packets, a cut-off file).
    pub fn damage(&self) -> Option<Damage> {
        self.status
            .damage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        self.status.closed.store(true, Ordering::Release);
        self.closer.close();
    }
}

/// The decoder thread's state: the format reader and the codec.
struct Decoding {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    rate: u32,
    channels: Channels,
    out_channels: u16,
    container_frames: Option<u64>,
    /// Frame number of the next decoded frame; `None` until a packet after a seek tells.
    next: Option<u64>,
    /// Frames before this one are discarded (after a seek).
    discard_below: u64,
    scratch: Vec<f32>,
    interleaved: Vec<f32>,
    damage: Option<Damage>,
}

impl Decoding {
    fn open(source: CacheReader) -> Result<Decoding, DecodeError> {
        let show_len = source.length_switch();
        let mss = MediaSourceStream::new(Box::new(source), Default::default());
        let format = symphonia::default::get_probe()
            .probe(
                &Hint::new(),
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| match e {
                SymError::Unsupported(_) => {
                    DecodeError::Unsupported("not an audio format this player knows".into())
                }
                other => DecodeError::Malformed(other.to_string()),
            })?;
        // Open: seeks may now measure from the end (it waits for the download if need be).
        show_len.store(true, Ordering::Relaxed);
        let AudioTrack {
            container,
            track_id,
            frames: container_frames,
            params,
            decoder,
        } = audio_track(format.as_ref())?;
        let (Some(rate), Some(channels)) = (params.sample_rate, params.channels.clone()) else {
            return Err(DecodeError::Unsupported(format!(
                "{container} track without a rate or channels"
            )));
        };
        let out_channels = channels.count().min(2) as u16;
        if rate == 0 || out_channels == 0 {
            return Err(DecodeError::Unsupported(format!(
                "{container} track of {rate} Hz, {out_channels} channels"
            )));
        }
        Ok(Decoding {
            format,
            decoder,
            track_id,
            rate,
            channels,
            out_channels,
            container_frames,
            next: Some(0),
            discard_below: 0,
            scratch: Vec::new(),
            interleaved: Vec::new(),
            damage: None,
        })
    }

    /// Decodes into `window` around the frame it wants until the song is dropped; an error
    /// that ends decoding for good is returned.
    fn run(&mut self, window: &Window, status: &Status, frames: u64) -> Result<(), String> {
        let rate = u64::from(self.rate);
        let (ahead, behind) = (AHEAD_S * rate, BEHIND_S * rate);
        let mut at_end = false;
        while !status.closed.load(Ordering::Acquire) {
            let wanted = window.wanted().min(frames);
            let (start, end) = window.held();
            // Further ahead than what decoding through would take about as long as a seek.
            if wanted < start || wanted > end + ahead {
                let target = wanted.saturating_sub(behind);
                self.seek(target)?;
                window.restart_at(target);
                at_end = false;
                status.at_end.store(false, Ordering::Release);
                continue;
            }
            if at_end || end >= wanted + ahead || end >= frames {
                std::thread::park_timeout(IDLE);
                continue;
            }
            match self.next_frames(end)? {
                Some(samples) => window.push(samples),
                None => {
                    at_end = true;
                    status.at_end.store(true, Ordering::Release);
                }
            }
            if self.damage.is_some() {
                *status.damage.lock().unwrap_or_else(|p| p.into_inner()) = self.damage.clone();
            }
        }
        Ok(())
    }

    /// Moves the decoder to just before `target`: the next frames come from `target` on.
    fn seek(&mut self, target: u64) -> Result<(), String> {
        self.format
            .seek(
                SeekMode::Accurate,
                SeekTo::Timestamp {
                    ts: Timestamp::new(target as i64),
                    track_id: self.track_id,
                },
            )
            .map_err(|e| format!("cannot seek to frame {target}: {e}"))?;
        self.decoder.reset();
        self.discard_below = target;
        // The file's start counts from 0, exactly as a whole decode does; elsewhere the first
        // packet's timestamp tells.
        self.next = (target == 0).then_some(0);
        Ok(())
    }

    /// The next decoded frames, from frame `end` of the window on (interleaved, clamped, mixed
    /// down to stereo); `None` at the end of the file. Frames before `end` are discarded.
    fn next_frames(&mut self, end: u64) -> Result<Option<&[f32]>, String> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(None),
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.note(&"the file is cut off", true);
                    return Ok(None);
                }
                Err(SymError::IoError(e)) => return Err(e.to_string()),
                Err(SymError::DecodeError(e)) => {
                    self.note(&e, false);
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let first = *self.next.get_or_insert(packet.pts.get().max(0) as u64);
            let buf = match self.decoder.decode(&packet) {
                Ok(buf) => buf,
                Err(SymError::DecodeError(e)) => {
                    self.note(&e, false);
                    continue;
                }
                Err(SymError::IoError(e)) => {
                    self.note(&e, false);
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            if buf.spec().rate() != self.rate || *buf.spec().channels() != self.channels {
                self.note(&"the sample rate or channels changed", false);
                continue;
            }
            interleave(&buf, &mut self.scratch);
            let count = (self.scratch.len() / self.channels.count()) as u64;
            self.next = Some(first + count);
            // Frames before the window's end or a seek's target are not wanted.
            let skip = end.max(self.discard_below).saturating_sub(first).min(count);
            if skip == count {
                continue;
            }
            for s in &mut self.scratch {
                *s = if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                };
            }
            let ch = self.channels.count();
            let kept = &self.scratch[skip as usize * ch..];
            // A packet that starts after the window's end (a gap in the file's timestamps)
            // keeps its frame numbers: the gap is silence.
            let gap = first.saturating_sub(end.max(self.discard_below)) as usize;
            self.interleaved.clear();
            self.interleaved.resize(
                gap.min(MAX_GAP_FRAMES) * usize::from(self.out_channels),
                0.0,
            );
            if ch > 2 {
                self.interleaved
                    .extend(downmix_to_stereo(kept, &self.channels));
            } else {
                self.interleaved.extend_from_slice(kept);
            }
            return Ok(Some(&self.interleaved));
        }
    }

    fn note(&mut self, e: &dyn std::fmt::Display, truncated: bool) {
        let d = self.damage.get_or_insert_with(|| Damage {
            skipped_packets: 0,
            missing_frames: 0,
            truncated: false,
            first_error: e.to_string(),
        });
        if truncated {
            d.truncated = true;
        } else {
            d.skipped_packets += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::cache_file;
    use crate::decode_bytes;
    use std::process::Command;

    /// A 20-second stereo song of two tones and noise, encoded by the Debian tools into `ext`.
    fn encoded(ext: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("song.wav");
        let synth = Command::new("sox")
            .args(["-n", "-r", "44100", "-c", "2", "-b", "16"])
            .arg(&wav)
            .args(["synth", "20", "sine", "440", "sine", "660", "gain", "-6"])
            .status()
            .expect("sox is installed");
        assert!(synth.success());
        let out = dir.path().join(format!("song.{ext}"));
        let status = match ext {
            "flac" => Command::new("flac")
                .args(["-s", "-f", "-o"])
                .arg(&out)
                .arg(&wav)
                .status(),
            "mp3" => Command::new("lame")
                .args(["--quiet", "-b", "192"])
                .arg(&wav)
                .arg(&out)
                .status(),
            other => panic!("no encoder for {other}"),
        };
        assert!(status.expect("the encoder is installed").success());
        std::fs::read(out).unwrap()
    }

    /// `bytes` streamed in chunks into a cache file while the decoder reads them.
    fn stream(bytes: &[u8], frames: u64) -> Streamed {
        let (mut writer, reader) =
            cache_file(tempfile::tempfile().unwrap(), Some(bytes.len() as u64)).unwrap();
        let owned = bytes.to_vec();
        std::thread::spawn(move || {
            for chunk in owned.chunks(64 * 1024) {
                writer.append(chunk).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            writer.finish();
        });
        Streamed::open(reader, frames, Some(44_100)).unwrap()
    }

    /// Frames `[first, first + count)` of a streamed song once it can play from `first`.
    fn frames_at(s: &Streamed, first: u64, count: usize) -> Vec<f32> {
        let started = std::time::Instant::now();
        while !s.can_play_from(first) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never ready at {first}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut out = vec![0.0; count * 2];
        s.song().read_frames(first as i64, count, &mut out, 2);
        out
    }

    fn same_frames_as_a_whole_decode(ext: &str) {
        let bytes = encoded(ext);
        let whole = decode_bytes(&bytes).unwrap().song;
        let s = stream(&bytes, whole.frames);
        // In order, then a jump far ahead (a seek), then back (another seek), then the end.
        let last = whole.frames - 1000;
        for first in [0, 20_000, 600_000, 1000, 300_001, last] {
            let got = frames_at(&s, first, 1000);
            let want = &whole.samples()[first as usize * 2..(first as usize + 1000) * 2];
            assert_eq!(got, want, "{ext}: frames from {first}");
        }
        assert_eq!(s.error(), None);
    }

    #[test]
    fn a_streamed_flac_has_the_frames_of_a_whole_decode_after_seeks() {
        same_frames_as_a_whole_decode("flac");
    }

    #[test]
    fn a_streamed_mp3_has_the_frames_of_a_whole_decode_after_seeks() {
        same_frames_as_a_whole_decode("mp3");
    }

    #[test]
    fn frames_not_decoded_yet_play_as_silence_and_are_counted() {
        let bytes = encoded("flac");
        let (_writer, reader) =
            cache_file(tempfile::tempfile().unwrap(), Some(bytes.len() as u64)).unwrap();
        let mut writer = _writer;
        // Only the header and a little audio arrive.
        writer.append(&bytes[..bytes.len() / 20]).unwrap();
        let s = Streamed::open(reader, 882_000, Some(44_100)).unwrap();
        let mut out = vec![1.0; 200];
        s.song().read_frames(800_000, 100, &mut out, 2);
        assert!(out.iter().all(|&x| x == 0.0));
        assert_eq!(s.underflow_frames(), 100);
        assert!(!s.can_play_from(800_000));
    }
}
