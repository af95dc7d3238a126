//! The render core: a [`Control`] that takes timed playback commands and a [`Renderer`] that
//! turns them into output frames, slot by slot, for whichever sink drives it.
//!
//! The renderer is a plain value stepped with "fill this buffer; its first slot is heard at
//! instant T", so tests drive it deterministically and every sink (device callback, null and
//! WAV threads) just calls it. It never allocates, never frees, and never blocks: commands
//! arrive through a lock-free queue (rtrb), the position goes out through a seqlock of atomics,
//! and anything it must let go of (a replaced resampler) travels back to the control side to be
//! freed there.

use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::resample::{FineResampler, MAX_CHUNK, Resampling, clamp_ppm};
use crate::song::Song;

const COMMAND_CAPACITY: usize = 256;
/// Every load produces at most one item of garbage and `load` drains the queue first, so the
/// renderer can never find it full (see `Renderer::drain_commands`).
const GARBAGE_CAPACITY: usize = 2 * COMMAND_CAPACITY + 2;
const EVENT_CAPACITY: usize = 256;
const PENDING_CAPACITY: usize = 64;

/// Which of the song's channels this peer plays (a pair of peers can act as a stereo pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelMode {
    /// The song's left channel on every output channel.
    Left,
    /// The song's right channel on every output channel (left for a mono song).
    Right,
    /// Normal playback: left to output 0, right to output 1 (a mono output gets their mean).
    #[default]
    Both,
}

impl std::str::FromStr for ChannelMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "left" | "l" => Ok(Self::Left),
            "right" | "r" => Ok(Self::Right),
            "both" | "stereo" => Ok(Self::Both),
            other => Err(format!(
                "unknown channel mode {other:?} (expected left, right or both)"
            )),
        }
    }
}

/// What the renderer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaybackState {
    /// Silent; the loaded song (if any) is cued at frame 0.
    #[default]
    Stopped,
    /// Silent, holding at `frame` (the first frame not yet heard).
    Paused {
        /// The frame playback resumes from.
        frame: u64,
    },
    /// Playing.
    Playing,
}

impl std::fmt::Display for PlaybackState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stopped => f.write_str("stopped"),
            Self::Paused { frame } => write!(f, "paused at frame {frame}"),
            Self::Playing => f.write_str("playing"),
        }
    }
}

/// One (instant, frame) pair: the song frame heard at a local instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositionReport {
    /// Local (sync clock) instant in nanoseconds of the output slot this report describes.
    pub instant_ns: u64,
    /// Song position heard at that instant, in frames of the song (fractional: the resampler's
    /// exact read position, filter delay included). Paused: the held frame; stopped: 0.
    pub frame: f64,
    /// State at that slot.
    pub state: PlaybackState,
    /// Which load this refers to (increments with every [`Control::load`]; 0: none yet).
    pub song_generation: u64,
}

/// Something the caller should know about; never a reason to stop.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayerEvent {
    /// The song played to its last frame; the state is now stopped.
    EndOfSong {
        /// Instant of the first slot after the last frame.
        instant_ns: u64,
        /// Which load.
        song_generation: u64,
    },
    /// A command arrived after its instant; it was applied at the first slot the renderer still
    /// had, with the position the timeline reaches there.
    LateCommand {
        /// The instant the command asked for.
        scheduled_ns: u64,
        /// The instant of the slot it was applied at.
        applied_ns: u64,
    },
    /// start/pause without a loaded song: ignored.
    NoSongLoaded,
    /// A command could not be queued (the renderer is not consuming: sink stalled).
    CommandDropped,
    /// The sink reported an error (stream keeps running if it can).
    SinkError(String),
    /// The sink stopped for good (device unplugged, server gone); output is lost until the
    /// player is reopened.
    SinkLost(String),
}

/// What the render side is told; built on the control side (including any allocation).
enum Command {
    Load {
        song: Arc<Song>,
        resampler: Box<FineResampler>,
        generation: u64,
    },
    Schedule {
        at_ns: u64,
        action: Scheduled,
    },
    SetRate(f64),
    SetChannel(ChannelMode),
    SetVolume(f32),
}

#[derive(Debug, Clone, Copy)]
enum Scheduled {
    Start(u64),
    Pause(u64),
    Stop,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    at_ns: u64,
    seq: u64,
    action: Scheduled,
}

/// Things the renderer let go of, freed on the control side.
struct Garbage {
    _song: Option<Arc<Song>>,
    _resampler: Option<Box<FineResampler>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Stopped,
    Paused(u64),
    Playing { pause_at: Option<u64> },
}

/// Seqlock of atomics: the renderer writes without waiting, readers retry on a torn read.
#[derive(Default)]
struct Shared {
    seq: AtomicU64,
    instant_ns: AtomicU64,
    frame_bits: AtomicU64,
    state: AtomicU64,
    paused_frame: AtomicU64,
    generation: AtomicU64,
    /// Output delay the sink does not know about (see [`Control::set_output_latency_ns`]);
    /// outside the seqlock: it is one word, read once per buffer.
    extra_latency_ns: AtomicU64,
    /// How many times the sink's output broke (see [`Renderer::note_output_break`]).
    output_breaks: AtomicU64,
}

const STATE_NONE: u64 = 0;
const STATE_STOPPED: u64 = 1;
const STATE_PAUSED: u64 = 2;
const STATE_PLAYING: u64 = 3;

impl Shared {
    fn publish(&self, r: &PositionReport) {
        let (state, paused) = match r.state {
            PlaybackState::Stopped => (STATE_STOPPED, 0),
            PlaybackState::Paused { frame } => (STATE_PAUSED, frame),
            PlaybackState::Playing => (STATE_PLAYING, 0),
        };
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.instant_ns.store(r.instant_ns, Ordering::Relaxed);
        self.frame_bits.store(r.frame.to_bits(), Ordering::Relaxed);
        self.state.store(state, Ordering::Relaxed);
        self.paused_frame.store(paused, Ordering::Relaxed);
        self.generation.store(r.song_generation, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    fn read(&self) -> Option<PositionReport> {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let instant_ns = self.instant_ns.load(Ordering::Relaxed);
            let frame = f64::from_bits(self.frame_bits.load(Ordering::Relaxed));
            let state = self.state.load(Ordering::Relaxed);
            let paused = self.paused_frame.load(Ordering::Relaxed);
            let song_generation = self.generation.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            let state = match state {
                STATE_NONE => return None,
                STATE_PAUSED => PlaybackState::Paused { frame: paused },
                STATE_PLAYING => PlaybackState::Playing,
                _ => PlaybackState::Stopped,
            };
            return Some(PositionReport {
                instant_ns,
                frame,
                state,
                song_generation,
            });
        }
    }
}

/// Output format and interpolator of a render core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderConfig {
    /// Output frames per second.
    pub sink_rate: u32,
    /// Output channels (interleaved).
    pub channels: u16,
    /// Interpolator.
    pub resampling: Resampling,
}

/// Creates a connected control/renderer pair.
pub fn render_core(config: RenderConfig) -> (Control, Renderer) {
    assert!(
        config.sink_rate > 0 && config.channels > 0,
        "sink rate and channels must be > 0"
    );
    let (cmd_tx, cmd_rx) = RingBuffer::new(COMMAND_CAPACITY);
    let (garbage_tx, garbage_rx) = RingBuffer::new(GARBAGE_CAPACITY);
    let (event_tx, event_rx) = RingBuffer::new(EVENT_CAPACITY);
    let shared = Arc::new(Shared::default());
    let control = Control {
        config,
        inner: Mutex::new(ControlInner {
            commands: cmd_tx,
            garbage: garbage_rx,
            events: event_rx,
            retained: Vec::new(),
            generation: 0,
        }),
        shared: shared.clone(),
        side_events: Arc::new(Mutex::new(Vec::new())),
    };
    let renderer = Renderer {
        sink_rate: config.sink_rate,
        channels: usize::from(config.channels),
        ns_per_slot: 1e9 / f64::from(config.sink_rate),
        commands: cmd_rx,
        garbage: garbage_tx,
        events: event_tx,
        shared,
        song: None,
        generation: 0,
        resampler: None,
        mode: Mode::Stopped,
        pending: Vec::with_capacity(PENDING_CAPACITY),
        seq: 0,
        ppm: 0.0,
        channel: ChannelMode::Both,
        volume: 1.0,
        gain: 1.0,
        // Volume changes glide over 10 ms at most, so they never click.
        gain_step: 100.0 / config.sink_rate as f32,
    };
    (control, renderer)
}

struct ControlInner {
    commands: Producer<Command>,
    garbage: Consumer<Garbage>,
    events: Consumer<PlayerEvent>,
    /// Every song sent to the renderer, kept until only this list holds it, so the renderer's
    /// reference is never the last one (freeing a song on the audio thread would be slow).
    retained: Vec<(u64, Arc<Song>)>,
    generation: u64,
}

/// The control half: thread-safe, callable from anywhere. Commands take effect when the
/// renderer next runs; the state and position reflect what has been rendered.
pub struct Control {
    config: RenderConfig,
    inner: Mutex<ControlInner>,
    shared: Arc<Shared>,
    side_events: Arc<Mutex<Vec<PlayerEvent>>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, ControlInner> {
        // A panic while holding this lock cannot leave the queues inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, inner: &mut ControlInner, command: Command) {
        if inner.commands.push(command).is_err() {
            self.push_side_event(PlayerEvent::CommandDropped);
        }
    }

    fn collect(inner: &mut ControlInner) {
        while inner.garbage.pop().is_ok() {}
        inner
            .retained
            .retain(|(_, song)| Arc::strong_count(song) > 1);
    }

    pub(crate) fn push_side_event(&self, event: PlayerEvent) {
        self.side_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    pub(crate) fn side_events(&self) -> Arc<Mutex<Vec<PlayerEvent>>> {
        self.side_events.clone()
    }

    /// The output format this core renders.
    pub fn config(&self) -> RenderConfig {
        self.config
    }

    /// Cues `song`, stopped at frame 0, replacing any current song and cancelling scheduled
    /// commands. Builds the song's resampler here, off the audio thread.
    pub fn load(&self, song: Arc<Song>) {
        let resampler = Box::new(FineResampler::new(
            song.sample_rate,
            song.channels,
            self.config.sink_rate,
            self.config.resampling,
        ));
        let mut inner = self.lock();
        Self::collect(&mut inner);
        inner.generation += 1;
        let generation = inner.generation;
        inner.retained.push((generation, song.clone()));
        self.send(
            &mut inner,
            Command::Load {
                song,
                resampler,
                generation,
            },
        );
    }

    /// Plays song frame `frame` at local instant `at_ns` (sample-accurate: the slot nearest
    /// `at_ns` plays position `frame + (slot instant - at_ns) * song rate`, so sub-slot timing
    /// is kept as a fractional position). Also seeks and jumps while playing. If `at_ns` has
    /// already passed when the renderer sees the command, playback starts at its next slot at
    /// the frame the timeline has reached, `frame + elapsed * song rate` (nominal rate), and a
    /// [`PlayerEvent::LateCommand`] is reported.
    ///
    /// A scheduled command (start, pause, stop) cancels pending scheduled commands at or after
    /// its own instant: the newest command owns the timeline from its instant on.
    pub fn start_at(&self, frame: u64, at_ns: u64) {
        self.schedule(at_ns, Scheduled::Start(frame));
    }

    /// Pauses so that `frame` is the first frame not heard. From the slot of `at_ns` on: if
    /// playing and the position has not reached `frame`, playback continues until it does,
    /// then holds; if it is already at or past `frame`, output stops at once and the position
    /// goes back to `frame`. If not playing, the song is cued (paused) at `frame`.
    pub fn pause_at(&self, frame: u64, at_ns: u64) {
        self.schedule(at_ns, Scheduled::Pause(frame));
    }

    /// Stops at the slot of `at_ns`; the song stays loaded, cued at frame 0.
    pub fn stop_at(&self, at_ns: u64) {
        self.schedule(at_ns, Scheduled::Stop);
    }

    fn schedule(&self, at_ns: u64, action: Scheduled) {
        let mut inner = self.lock();
        self.send(&mut inner, Command::Schedule { at_ns, action });
    }

    /// Fine rate: consume `1 + ppm/1e6` source frames per nominal output frame (clamped to
    /// ±[`MAX_RATE_PPM`](crate::MAX_RATE_PPM)). Applied from the next chunk, ramped linearly
    /// over it, so the waveform stays continuous.
    pub fn set_rate_ppm(&self, ppm: f64) {
        let mut inner = self.lock();
        self.send(&mut inner, Command::SetRate(ppm));
    }

    /// Declares how much later than the sink believes the sound is really heard (a Bluetooth
    /// or HDMI receiver's own buffer, which no audio API reports). Every slot is then taken to
    /// be heard `ns` later: commands land that much earlier in the output, so the sound leaves
    /// the far end on time, and positions are reported at the instant they are heard. Applied
    /// from the next buffer; while playing, a change makes the output jump by the difference
    /// (the caller's sync loop sees it as an error and re-cues).
    pub fn set_output_latency_ns(&self, ns: u64) {
        self.shared.extra_latency_ns.store(ns, Ordering::Relaxed);
    }

    /// The latency set by [`Control::set_output_latency_ns`].
    pub fn output_latency_ns(&self) -> u64 {
        self.shared.extra_latency_ns.load(Ordering::Relaxed)
    }

    /// Selects which of the song's channels are played.
    pub fn set_channel(&self, mode: ChannelMode) {
        let mut inner = self.lock();
        self.send(&mut inner, Command::SetChannel(mode));
    }

    /// Linear gain, clamped to [0, 4]; changes glide over at most 10 ms.
    pub fn set_volume(&self, volume: f32) {
        let volume = if volume.is_finite() {
            volume.clamp(0.0, 4.0)
        } else {
            1.0
        };
        let mut inner = self.lock();
        self.send(&mut inner, Command::SetVolume(volume));
    }

    /// The latest (instant, frame heard) pair the renderer published, or `None` before the
    /// first buffer was rendered.
    pub fn position(&self) -> Option<PositionReport> {
        self.shared.read()
    }

    /// How many times the output broke since the player opened (a sound device that ran dry
    /// and was restarted, or timing of the sound that jumped): a change means the sound has glitched and the position may have
    /// stepped by milliseconds.
    pub fn output_breaks(&self) -> u64 {
        self.shared.output_breaks.load(Ordering::Relaxed)
    }

    /// The state at the latest rendered slot.
    pub fn state(&self) -> PlaybackState {
        self.position().map(|r| r.state).unwrap_or_default()
    }

    /// The song the renderer is on, if any.
    pub fn song(&self) -> Option<Arc<Song>> {
        let generation = self.position()?.song_generation;
        let inner = self.lock();
        inner
            .retained
            .iter()
            .find(|(g, _)| *g == generation)
            .map(|(_, s)| s.clone())
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&self) -> Vec<PlayerEvent> {
        let mut out = Vec::new();
        {
            let mut inner = self.lock();
            Self::collect(&mut inner);
            while let Ok(e) = inner.events.pop() {
                out.push(e);
            }
        }
        out.append(&mut self.side_events.lock().unwrap_or_else(|e| e.into_inner()));
        out
    }
}

/// The render half, owned by whatever consumes audio. See the module comment.
pub struct Renderer {
    sink_rate: u32,
    channels: usize,
    ns_per_slot: f64,
    commands: Consumer<Command>,
    garbage: Producer<Garbage>,
    events: Producer<PlayerEvent>,
    shared: Arc<Shared>,
    song: Option<Arc<Song>>,
    generation: u64,
    resampler: Option<Box<FineResampler>>,
    mode: Mode,
    pending: Vec<Pending>,
    seq: u64,
    ppm: f64,
    channel: ChannelMode,
    volume: f32,
    gain: f32,
    gain_step: f32,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("sink_rate", &self.sink_rate)
            .field("channels", &self.channels)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// Output frames per second.
    pub fn sink_rate(&self) -> u32 {
        self.sink_rate
    }

    /// Output channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Records that the sink's output broke before the next buffer (the device ran dry and
    /// was restarted, or the sink's timing of it jumped: the sound moved), for
    /// [`Control::output_breaks`]. The renderer itself carries on from
    /// where it was: putting it back on the timeline is the caller's sync loop's decision.
    pub fn note_output_break(&mut self) {
        self.shared.output_breaks.fetch_add(1, Ordering::Relaxed);
    }

    /// Fills `out` (interleaved, `channels()` per frame; a trailing partial frame is zeroed)
    /// with the audio of consecutive output slots, the first heard at local instant
    /// `first_slot_ns` and each next one `1e9 / sink_rate` ns later. Applies every command
    /// whose slot falls in the buffer at that exact slot, then publishes the position.
    pub fn render(&mut self, out: &mut [f32], first_slot_ns: u64) {
        // The sink's instant is when the slot leaves it; a declared external latency moves
        // the instant it is heard, which is what the timeline is about.
        let first_slot_ns =
            first_slot_ns.saturating_add(self.shared.extra_latency_ns.load(Ordering::Relaxed));
        self.drain_commands();
        let ch = self.channels;
        let frames = out.len() / ch;
        out[frames * ch..].fill(0.0);
        let mut k = 0;
        let mut report = self.report_at(first_slot_ns, 0, None);
        while k < frames {
            let mut next_due = frames;
            while let Some(i) = self.earliest_pending() {
                let slot = self.slot_of(first_slot_ns, self.pending[i].at_ns);
                if slot <= k as i64 {
                    let p = self.pending.remove(i);
                    self.apply(p, first_slot_ns, k, slot < k as i64 - 1);
                } else {
                    next_due = next_due.min(slot as usize);
                    break;
                }
            }
            let end = frames.min(next_due).min(k + MAX_CHUNK);
            let first_pos = self.render_span(&mut out[k * ch..end * ch], first_slot_ns, k);
            report = self.report_at(first_slot_ns, k, first_pos);
            k = end;
        }
        self.shared.publish(&report);
    }

    fn instant_of(&self, first_slot_ns: u64, slot: usize) -> u64 {
        first_slot_ns + (slot as f64 * self.ns_per_slot).round() as u64
    }

    fn report_at(&self, first_slot_ns: u64, slot: usize, played: Option<f64>) -> PositionReport {
        let (frame, state) = match (self.mode, played) {
            (_, Some(p)) => (p, PlaybackState::Playing),
            (Mode::Playing { .. }, None) => (
                self.resampler.as_ref().map_or(0.0, |r| r.next_position()),
                PlaybackState::Playing,
            ),
            (Mode::Paused(f), None) => (f as f64, PlaybackState::Paused { frame: f }),
            (Mode::Stopped, None) => (0.0, PlaybackState::Stopped),
        };
        PositionReport {
            instant_ns: self.instant_of(first_slot_ns, slot),
            frame,
            state,
            song_generation: self.generation,
        }
    }

    /// The output slot (relative to the buffer's first) nearest to `at_ns`.
    fn slot_of(&self, first_slot_ns: u64, at_ns: u64) -> i64 {
        let dt = at_ns as i128 - first_slot_ns as i128;
        (dt as f64 / self.ns_per_slot).round() as i64
    }

    fn earliest_pending(&self) -> Option<usize> {
        (0..self.pending.len()).min_by_key(|&i| (self.pending[i].at_ns, self.pending[i].seq))
    }

    fn emit(&mut self, event: PlayerEvent) {
        // A full event queue means nobody is listening; dropping the event is harmless.
        let _ = self.events.push(event);
    }

    fn drain_commands(&mut self) {
        while let Ok(command) = self.commands.pop() {
            match command {
                Command::Load {
                    song,
                    resampler,
                    generation,
                } => {
                    let old_song = self.song.replace(song);
                    let old_resampler = self.resampler.replace(resampler);
                    if let Some(r) = self.resampler.as_mut() {
                        r.set_rate_ppm(self.ppm);
                    }
                    self.generation = generation;
                    self.mode = Mode::Stopped;
                    self.pending.clear();
                    let garbage = Garbage {
                        _song: old_song,
                        _resampler: old_resampler,
                    };
                    if let Err(rtrb::PushError::Full(garbage)) = self.garbage.push(garbage) {
                        // Cannot happen (see GARBAGE_CAPACITY); if it did, leaking one
                        // resampler beats freeing it on the audio thread.
                        std::mem::forget(garbage);
                    }
                }
                Command::Schedule { at_ns, action } => {
                    self.pending.retain(|p| p.at_ns < at_ns);
                    if self.pending.len() == PENDING_CAPACITY {
                        self.emit(PlayerEvent::CommandDropped);
                        continue;
                    }
                    self.seq += 1;
                    let seq = self.seq;
                    self.pending.push(Pending { at_ns, seq, action });
                }
                Command::SetRate(ppm) => {
                    self.ppm = clamp_ppm(ppm);
                    if let Some(r) = self.resampler.as_mut() {
                        r.set_rate_ppm(self.ppm);
                    }
                }
                Command::SetChannel(mode) => self.channel = mode,
                Command::SetVolume(v) => self.volume = v,
            }
        }
    }

    fn apply(&mut self, pending: Pending, first_slot_ns: u64, slot: usize, late: bool) {
        let slot_ns = first_slot_ns as f64 + slot as f64 * self.ns_per_slot;
        if late {
            self.emit(PlayerEvent::LateCommand {
                scheduled_ns: pending.at_ns,
                applied_ns: slot_ns.round() as u64,
            });
        }
        let Some(song) = self.song.as_ref() else {
            if !matches!(pending.action, Scheduled::Stop) {
                self.emit(PlayerEvent::NoSongLoaded);
            }
            return;
        };
        let frames = song.frames;
        match pending.action {
            Scheduled::Start(frame) => {
                let since = slot_ns - pending.at_ns as f64;
                let position = frame as f64 + since * f64::from(song.sample_rate) * 1e-9;
                if position >= frames as f64 - 0.5 {
                    self.mode = Mode::Stopped;
                    let generation = self.generation;
                    self.emit(PlayerEvent::EndOfSong {
                        instant_ns: slot_ns.round() as u64,
                        song_generation: generation,
                    });
                } else if let Some(r) = self.resampler.as_mut() {
                    r.prime(song, position, self.ppm);
                    self.mode = Mode::Playing { pause_at: None };
                }
            }
            Scheduled::Pause(frame) => {
                let frame = frame.min(frames);
                self.mode = match (self.mode, self.resampler.as_ref()) {
                    (Mode::Playing { .. }, Some(r)) if r.next_position() < frame as f64 - 0.5 => {
                        Mode::Playing {
                            pause_at: Some(frame),
                        }
                    }
                    _ => Mode::Paused(frame),
                };
            }
            Scheduled::Stop => self.mode = Mode::Stopped,
        }
    }

    /// Renders consecutive slots starting at buffer slot `k0`; returns the song position of
    /// the first slot if it was played.
    fn render_span(&mut self, out: &mut [f32], first_slot_ns: u64, k0: usize) -> Option<f64> {
        let ch = self.channels;
        let frames = out.len() / ch;
        let Mode::Playing { pause_at } = self.mode else {
            out.fill(0.0);
            return None;
        };
        let (Some(song), Some(r)) = (self.song.as_ref(), self.resampler.as_mut()) else {
            out.fill(0.0);
            return None;
        };
        if !r.process(song, frames) {
            out.fill(0.0);
            return None;
        }
        // A slot plays the frame nearest its position; it is past the limit once that frame
        // is the pause frame or beyond the song.
        let limit = pause_at.map_or(song.frames, |f| f.min(song.frames)) as f64 - 0.5;
        let rc = r.channels();
        let src = r.output();
        let positions = r.positions();
        let first = positions[0];
        let mut stopped_at = None;
        for (i, frame_out) in out.chunks_exact_mut(ch).enumerate() {
            if positions[i] >= limit {
                stopped_at = Some(i);
                break;
            }
            let left = src[i * rc];
            let right = src[i * rc + rc - 1];
            let g = {
                let diff = self.volume - self.gain;
                self.gain += diff.clamp(-self.gain_step, self.gain_step);
                self.gain
            };
            match (self.channel, ch) {
                (ChannelMode::Both, 1) => frame_out[0] = 0.5 * (left + right) * g,
                (ChannelMode::Both, _) => {
                    frame_out[0] = left * g;
                    frame_out[1] = right * g;
                    frame_out[2..].fill(0.0);
                }
                (ChannelMode::Left, _) => frame_out.fill(left * g),
                (ChannelMode::Right, _) => frame_out.fill(right * g),
            }
        }
        if let Some(i) = stopped_at {
            out[i * ch..].fill(0.0);
            match pause_at {
                Some(f) => self.mode = Mode::Paused(f),
                None => {
                    self.mode = Mode::Stopped;
                    let instant_ns = self.instant_of(first_slot_ns, k0 + i);
                    let song_generation = self.generation;
                    self.emit(PlayerEvent::EndOfSong {
                        instant_ns,
                        song_generation,
                    });
                }
            }
            if i == 0 {
                return None;
            }
        }
        Some(first)
    }
}
