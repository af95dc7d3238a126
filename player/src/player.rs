//! The player: a render core wired to the sink named in the configuration.

use std::path::PathBuf;
use std::sync::Arc;

use cpal::traits::StreamTrait;

use crate::clock::Clock;
use crate::render::{
    ChannelMode, Control, PlaybackState, PlayerEvent, PositionReport, RenderConfig, render_core,
};
use crate::resample::Resampling;
use crate::sink::{self, DeviceTiming, PacedSink, SinkKind, SinkSpec};
use crate::song::Song;

/// Sink rate of `null` and `wav` when none is configured.
pub const DEFAULT_PACED_RATE: u32 = 48_000;

/// How to open a [`Player`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerConfig {
    /// Where the audio goes.
    pub sink: SinkSpec,
    /// Output rate. `null`/`wav`: default 48000. Device: used if the device supports it,
    /// otherwise the device's default rate.
    pub sink_rate: Option<u32>,
    /// Output channels (default 2). A device that cannot do this count gets its own.
    pub channels: u16,
    /// If no sound device can be opened, open the null sink instead (and say so).
    pub fallback_to_null: bool,
    /// Interpolator for rate conversion and drift correction.
    pub resampling: Resampling,
    /// Device only: write a record of every callback of the output stream to this file, as
    /// CSV, when the stream closes (what the device reported and how the player timed each
    /// buffer; for explaining a run afterwards).
    pub device_probe: Option<std::path::PathBuf>,
    /// Device only: how each buffer is timed (default [`DeviceTiming::Callbacks`], the device
    /// timeline; `Reported` takes the stack's reported latency as it is, for comparison).
    pub device_timing: DeviceTiming,
    /// Device only: how much audio the sound device is handed ahead, in milliseconds (`None`:
    /// what the device chooses). cpal keeps two periods in the device's buffer, so each
    /// callback fills half of this. A deeper buffer rides out longer stalls of a busy machine
    /// before the device runs dry, and every command needs that much lead to land on time.
    pub device_buffer_ms: Option<f64>,
    /// Device only: the nice value for the threads that feed the device (default
    /// [`AUDIO_NICE`](crate::AUDIO_NICE), where permitted; `None` leaves them at the opening
    /// thread's). A lower value keeps a busy machine from waking them late, which runs the
    /// device dry.
    pub audio_nice: Option<i32>,
}

impl PlayerConfig {
    /// Defaults for `sink`: rate chosen by the sink, stereo, no fallback, sinc interpolation.
    pub fn new(sink: SinkSpec) -> Self {
        Self {
            sink,
            sink_rate: None,
            channels: 2,
            fallback_to_null: false,
            resampling: Resampling::Sinc,
            device_probe: None,
            device_timing: DeviceTiming::Callbacks,
            device_buffer_ms: None,
            audio_nice: Some(crate::AUDIO_NICE),
        }
    }
}

impl Default for PlayerConfig {
    /// The default sound device, falling back to the null sink.
    fn default() -> Self {
        Self {
            fallback_to_null: true,
            ..Self::new(SinkSpec::Device(None))
        }
    }
}

/// Why a player could not be opened. Display is one line.
#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    /// No sound device could be opened (and fallback was off).
    #[error("no sound device could be opened: {0}")]
    Device(String),
    /// The WAV recording could not be created.
    #[error("cannot record: {0}")]
    Recorder(String),
    /// The sink thread could not be started.
    #[error("cannot start the sink thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The configuration is unusable.
    #[error("invalid player configuration: {0}")]
    Config(String),
}

enum SinkHandle {
    Paced(PacedSink),
    Device {
        /// Held to keep the stream running (dropping it stops the device).
        stream: cpal::Stream,
        /// The nice value its threads got, or why they did not; `None` if none was asked.
        audio_nice: Option<Result<i32, String>>,
    },
}

/// Plays songs on a sink, following timed commands. All methods take `&self` and may be called
/// from any thread; commands take effect when the sink next renders (within one buffer).
pub struct Player {
    control: Control,
    sink: SinkHandle,
    kind: SinkKind,
    fallback_note: Option<String>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("kind", &self.kind)
            .field("config", &self.control.config())
            .finish_non_exhaustive()
    }
}

impl Player {
    /// Opens the configured sink, paced by and reporting in `clock`. With a device sink and
    /// `fallback_to_null`, a device that cannot be opened gives the null sink and a one-line
    /// [`fallback_note`](Player::fallback_note).
    pub fn open(config: PlayerConfig, clock: Arc<dyn Clock>) -> Result<Player, PlayerError> {
        if config.channels == 0 {
            return Err(PlayerError::Config("0 channels".into()));
        }
        if config.sink_rate == Some(0) {
            return Err(PlayerError::Config("sink rate 0".into()));
        }
        match &config.sink {
            SinkSpec::Device(name) => {
                match Self::open_device(&config, name.as_deref(), clock.clone()) {
                    Ok(player) => Ok(player),
                    Err(reason) if config.fallback_to_null => {
                        let mut player = Self::open_paced(&config, None, clock)?;
                        player.fallback_note = Some(format!(
                            "no sound device ({reason}); playing to the null sink instead"
                        ));
                        Ok(player)
                    }
                    Err(reason) => Err(PlayerError::Device(reason)),
                }
            }
            SinkSpec::Null => Self::open_paced(&config, None, clock),
            SinkSpec::Wav(path) => Self::open_paced(&config, Some(path.clone()), clock),
        }
    }

    fn open_device(
        config: &PlayerConfig,
        name: Option<&str>,
        clock: Arc<dyn Clock>,
    ) -> Result<Player, String> {
        let choice = sink::choose_device(
            name,
            config.sink_rate,
            config.channels,
            config.device_buffer_ms,
        )?;
        let (control, renderer) = render_core(RenderConfig {
            sink_rate: choice.rate(),
            channels: choice.channels(),
            resampling: config.resampling,
        });
        let events = control.side_events();
        let (timing, probe) = (config.device_timing, config.device_probe.clone());
        let start = || sink::start_device(&choice, renderer, clock, events, timing, probe);
        let (stream, audio_nice) = match config.audio_nice {
            Some(nice) => {
                let (stream, got) = crate::priority::with_nice(nice, start);
                (stream?, Some(got))
            }
            None => (start()?, None),
        };
        Ok(Player {
            control,
            sink: SinkHandle::Device { stream, audio_nice },
            kind: choice.kind,
            fallback_note: None,
        })
    }

    fn open_paced(
        config: &PlayerConfig,
        wav: Option<PathBuf>,
        clock: Arc<dyn Clock>,
    ) -> Result<Player, PlayerError> {
        let sink_rate = config.sink_rate.unwrap_or(DEFAULT_PACED_RATE);
        let (control, renderer) = render_core(RenderConfig {
            sink_rate,
            channels: config.channels,
            resampling: config.resampling,
        });
        let (kind, recorder) = match wav {
            Some(path) => {
                let writer = sink::create_recorder(&path, sink_rate, config.channels)
                    .map_err(PlayerError::Recorder)?;
                (SinkKind::Wav(path.clone()), Some((path, writer)))
            }
            None => (SinkKind::Null, None),
        };
        let paced = sink::spawn_paced(renderer, clock, recorder, control.side_events())?;
        Ok(Player {
            control,
            sink: SinkHandle::Paced(paced),
            kind,
            fallback_note: None,
        })
    }

    /// The sink that actually opened.
    pub fn sink_kind(&self) -> &SinkKind {
        &self.kind
    }

    /// Why the configured device was replaced by the null sink, in one line (if it was).
    pub fn fallback_note(&self) -> Option<&str> {
        self.fallback_note.as_deref()
    }

    /// Output frames per second.
    pub fn sink_rate(&self) -> u32 {
        self.control.config().sink_rate
    }

    /// Output channels.
    pub fn channels(&self) -> u16 {
        self.control.config().channels
    }

    /// For `null` and `wav`: the local instant of output slot 0 (slot `k` is heard at
    /// `origin + k * 1e9 / sink_rate`; for `wav`, slot `k` is the file's frame `k`).
    pub fn paced_origin_ns(&self) -> Option<u64> {
        match &self.sink {
            SinkHandle::Paced(p) => Some(p.origin_ns),
            SinkHandle::Device { .. } => None,
        }
    }

    /// For a sound device: the frames each callback fills, if the stack says (the device holds
    /// two such periods).
    pub fn device_period_frames(&self) -> Option<u32> {
        match &self.sink {
            SinkHandle::Device { stream, .. } => stream.buffer_size().ok(),
            SinkHandle::Paced(_) => None,
        }
    }

    /// For a sound device opened with [`PlayerConfig::audio_nice`]: the nice value its threads
    /// run at, or why they could not be given it (they then run at the opening thread's).
    pub fn audio_nice(&self) -> Option<Result<i32, &str>> {
        match &self.sink {
            SinkHandle::Device { audio_nice, .. } => audio_nice
                .as_ref()
                .map(|r| r.as_ref().copied().map_err(String::as_str)),
            SinkHandle::Paced(_) => None,
        }
    }

    /// See [`Control::load`].
    pub fn load(&self, song: Arc<Song>) {
        self.control.load(song);
    }

    /// See [`Control::start_at`].
    pub fn start_at(&self, frame: u64, at_ns: u64) {
        self.control.start_at(frame, at_ns);
    }

    /// See [`Control::pause_at`].
    pub fn pause_at(&self, frame: u64, at_ns: u64) {
        self.control.pause_at(frame, at_ns);
    }

    /// See [`Control::stop_at`].
    pub fn stop_at(&self, at_ns: u64) {
        self.control.stop_at(at_ns);
    }

    /// See [`Control::set_rate_ppm`].
    pub fn set_rate_ppm(&self, ppm: f64) {
        self.control.set_rate_ppm(ppm);
    }

    /// See [`Control::set_output_latency_ns`].
    pub fn set_output_latency_ns(&self, ns: u64) {
        self.control.set_output_latency_ns(ns);
    }

    /// See [`Control::output_latency_ns`].
    pub fn output_latency_ns(&self) -> u64 {
        self.control.output_latency_ns()
    }

    /// See [`Control::set_channel`].
    pub fn set_channel(&self, mode: ChannelMode) {
        self.control.set_channel(mode);
    }

    /// See [`Control::set_volume`].
    pub fn set_volume(&self, volume: f32) {
        self.control.set_volume(volume);
    }

    /// See [`Control::position`].
    pub fn position(&self) -> Option<PositionReport> {
        self.control.position()
    }

    /// See [`Control::state`].
    pub fn state(&self) -> PlaybackState {
        self.control.state()
    }

    /// See [`Control::song`].
    pub fn song(&self) -> Option<Arc<Song>> {
        self.control.song()
    }

    /// See [`Control::output_breaks`].
    pub fn output_breaks(&self) -> u64 {
        self.control.output_breaks()
    }

    /// See [`Control::take_events`].
    pub fn take_events(&self) -> Vec<PlayerEvent> {
        self.control.take_events()
    }

    /// Stops the sink (a WAV recording is finalised when this returns). Dropping the player
    /// does the same.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let SinkHandle::Paced(p) = &mut self.sink {
            p.shutdown();
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.shutdown();
    }
}
