//! Sinks: what consumes the renderer's frames and says when each is heard.
//!
//! - `device`: a cpal output stream. Each callback's buffer is timed on the sync clock by the
//!   device timeline (`timeline/`): the rhythm of the callbacks themselves, plus the long-run
//!   average of the latency the stream reports (`playback - callback`), because the reported
//!   latency alone wanders by hundreds of microseconds through ALSA's pulse plugin.
//!   [`DeviceTiming::Reported`] uses the clock read at callback time plus the reported latency
//!   as they are, for comparison. `PlayerConfig::device_probe` records every callback
//!   (`probe.rs`).
//! - `null`: a thread that consumes frames in real time as a DAC would, paced by the injected
//!   clock (a skewed clock makes it run fast or slow, like a crystal). Slot `k` is heard at
//!   `origin + k * 1e9 / rate`.
//! - `wav:PATH`: the null sink plus a recorder of exactly what was rendered (32-bit float).

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use crate::clock::Clock;
use crate::probe::{CallbackProbe, CallbackRow};
use crate::render::{PlayerEvent, Renderer};
use crate::song::{WavEncoding, wav_spec};
use crate::timeline::{CallbackInfo, DeviceTimeline, TimelineConfig};

/// Where the audio goes, as given on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// A sound device through cpal: the default output device, or the one whose id or
    /// description matches the name (`device:NAME`, e.g. `device:null` for ALSA's null PCM).
    Device(Option<String>),
    /// Discards frames in real time, paced by the player's clock.
    Null,
    /// Records what would be heard to a 32-bit float WAV file, paced like `Null`.
    Wav(PathBuf),
}

impl FromStr for SinkSpec {
    type Err = String;
    /// Parses `device`, `device:NAME`, `null` or `wav:PATH`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "device" => return Ok(Self::Device(None)),
            "null" => return Ok(Self::Null),
            _ => {}
        }
        if let Some(name) = s.strip_prefix("device:") {
            return if name.is_empty() {
                Err("empty device name in \"device:\" (use \"device\" for the default)".into())
            } else {
                Ok(Self::Device(Some(name.to_owned())))
            };
        }
        if let Some(path) = s.strip_prefix("wav:") {
            return if path.is_empty() {
                Err("missing file name in \"wav:PATH\"".into())
            } else {
                Ok(Self::Wav(PathBuf::from(path)))
            };
        }
        Err(format!(
            "unknown sink {s:?}: expected \"device\", \"device:NAME\", \"null\" or \"wav:PATH\""
        ))
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device(None) => f.write_str("device"),
            Self::Device(Some(name)) => write!(f, "device:{name}"),
            Self::Null => f.write_str("null"),
            Self::Wav(path) => write!(f, "wav:{}", path.display()),
        }
    }
}

/// How a sound device's buffers are timed (`PlayerConfig::device_timing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceTiming {
    /// The device timeline: the rhythm of the callbacks plus the long-run average of the
    /// latency the stream reports.
    #[default]
    Callbacks,
    /// The clock read at callback time plus the latency the stream reports, as they are (for
    /// comparing the two, as BENCHMARKS.md does).
    Reported,
}

impl FromStr for DeviceTiming {
    type Err = String;
    /// Parses `callbacks` or `reported`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "callbacks" => Ok(Self::Callbacks),
            "reported" => Ok(Self::Reported),
            other => Err(format!(
                "unknown device timing {other:?}: expected \"callbacks\" or \"reported\""
            )),
        }
    }
}

impl std::fmt::Display for DeviceTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Callbacks => "callbacks",
            Self::Reported => "reported",
        })
    }
}

/// The sink that actually opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// A sound device.
    Device {
        /// cpal host (e.g. "ALSA").
        host: String,
        /// Device id within the host (e.g. "default", "null").
        name: String,
    },
    /// The null sink.
    Null,
    /// The WAV recorder.
    Wav(PathBuf),
}

impl std::fmt::Display for SinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device { host, name } => write!(f, "sound device {name} ({host})"),
            Self::Null => f.write_str("null sink"),
            Self::Wav(path) => write!(f, "WAV recorder {}", path.display()),
        }
    }
}

/// A running null or WAV sink thread.
pub(crate) struct PacedSink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub(crate) origin_ns: u64,
}

/// Frames rendered per wake-up of a paced sink: 5 ms, so a command is rarely later than that.
fn paced_period(rate: u32) -> usize {
    (rate as usize / 200).max(1)
}

pub(crate) fn spawn_paced(
    mut renderer: Renderer,
    clock: Arc<dyn Clock>,
    recorder: Option<(PathBuf, hound::WavWriter<BufWriter<File>>)>,
    events: Arc<Mutex<Vec<PlayerEvent>>>,
) -> std::io::Result<PacedSink> {
    let stop = Arc::new(AtomicBool::new(false));
    let rate = renderer.sink_rate();
    let origin_ns = clock.now_ns();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("player-paced-sink".into())
        .spawn(move || {
            let channels = renderer.channels();
            let period = paced_period(rate);
            let mut buffer = vec![0.0f32; period * channels];
            let mut recorder = recorder;
            let mut slot: u64 = 0;
            while !thread_stop.load(Ordering::Acquire) {
                let due = origin_ns + (u128::from(slot) * 1_000_000_000 / u128::from(rate)) as u64;
                // A DAC consumes slot k at its instant; sleep until the clock says so.
                loop {
                    let now = clock.now_ns();
                    if now >= due || thread_stop.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(Duration::from_nanos((due - now).min(20_000_000)));
                }
                if thread_stop.load(Ordering::Acquire) {
                    break;
                }
                renderer.render(&mut buffer, due);
                if let Some((path, writer)) = recorder.as_mut() {
                    let result = buffer.iter().try_for_each(|&s| writer.write_sample(s));
                    if let Err(e) = result {
                        let msg = format!("recording to {} failed: {e}", path.display());
                        push_coalesced(&events, PlayerEvent::SinkLost(msg));
                        recorder = None;
                    }
                }
                slot += period as u64;
            }
            if let Some((path, writer)) = recorder
                && let Err(e) = writer.finalize()
            {
                let msg = format!("finalising {} failed: {e}", path.display());
                push_coalesced(&events, PlayerEvent::SinkLost(msg));
            }
        })?;
    Ok(PacedSink {
        stop,
        thread: Some(thread),
        origin_ns,
    })
}

impl PacedSink {
    /// Stops the thread and waits for it (the recording is finalised by then).
    pub(crate) fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PacedSink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub(crate) fn create_recorder(
    path: &std::path::Path,
    rate: u32,
    channels: u16,
) -> Result<hound::WavWriter<BufWriter<File>>, String> {
    hound::WavWriter::create(path, wav_spec(rate, channels, WavEncoding::Float32))
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// A chosen device and stream configuration, before the stream is built.
pub(crate) struct DeviceChoice {
    device: cpal::Device,
    config: cpal::StreamConfig,
    format: cpal::SampleFormat,
    pub(crate) kind: SinkKind,
}

impl DeviceChoice {
    pub(crate) fn rate(&self) -> u32 {
        self.config.sample_rate
    }

    pub(crate) fn channels(&self) -> u16 {
        self.config.channels
    }
}

/// Picks the device and a configuration: the requested channel count and rate when the device
/// supports them, otherwise its default; `f32` samples when offered, else 16 or 32-bit ints;
/// and, if `buffer_ms` is given, periods of half that (cpal keeps two in the device's buffer),
/// within what the device accepts.
pub(crate) fn choose_device(
    name: Option<&str>,
    want_rate: Option<u32>,
    want_channels: u16,
    buffer_ms: Option<f64>,
) -> Result<DeviceChoice, String> {
    crate::alsa_noise::folded(|| choose(name, want_rate, want_channels, buffer_ms))
}

fn choose(
    name: Option<&str>,
    want_rate: Option<u32>,
    want_channels: u16,
    buffer_ms: Option<f64>,
) -> Result<DeviceChoice, String> {
    let host = cpal::default_host();
    let host_name = host.id().name().to_owned();
    let device = match name {
        None => host
            .default_output_device()
            .ok_or_else(|| format!("{host_name} has no default output device"))?,
        Some(wanted) => host
            .output_devices()
            .map_err(|e| format!("cannot list {host_name} output devices: {e}"))?
            .find(|d| {
                d.id().is_ok_and(|id| id.id() == wanted)
                    || d.description().is_ok_and(|desc| desc.name() == wanted)
            })
            .ok_or_else(|| format!("no {host_name} output device named {wanted:?}"))?,
    };
    let device_name = device
        .id()
        .map(|id| id.id().to_owned())
        .unwrap_or_else(|_| "?".into());
    let default = device
        .default_output_config()
        .map_err(|e| format!("{host_name} device {device_name:?}: {e}"))?;
    let rate_wanted = want_rate.unwrap_or(default.sample_rate());
    let usable = |f: cpal::SampleFormat| {
        matches!(
            f,
            cpal::SampleFormat::F32 | cpal::SampleFormat::I16 | cpal::SampleFormat::I32
        )
    };
    let format_rank = |f: cpal::SampleFormat| match f {
        cpal::SampleFormat::F32 => 0,
        cpal::SampleFormat::I32 => 1,
        _ => 2,
    };
    let ranges: Vec<_> = device
        .supported_output_configs()
        .map(|it| it.filter(|r| usable(r.sample_format())).collect())
        .unwrap_or_default();
    let best = ranges
        .iter()
        .min_by_key(|r| {
            (
                r.channels() != want_channels,
                !r.contains_rate(rate_wanted),
                format_rank(r.sample_format()),
            )
        })
        .cloned();
    let (mut config, format, periods) = match best {
        Some(range) => {
            let rate = if range.contains_rate(rate_wanted) {
                rate_wanted
            } else {
                rate_wanted.clamp(range.min_sample_rate(), range.max_sample_rate())
            };
            let supported = range.with_sample_rate(rate);
            (
                supported.config(),
                supported.sample_format(),
                *supported.buffer_size(),
            )
        }
        None if usable(default.sample_format()) => (
            default.config(),
            default.sample_format(),
            *default.buffer_size(),
        ),
        None => {
            return Err(format!(
                "{host_name} device {device_name:?} offers no f32/i16/i32 output format"
            ));
        }
    };
    // Otherwise the device's default buffering. (Periods much shorter than the default made
    // ALSA's pulse plugin fail with I/O errors on every callback.)
    if let Some(ms) = buffer_ms {
        config.buffer_size =
            cpal::BufferSize::Fixed(period_frames(ms, config.sample_rate, periods));
    }
    Ok(DeviceChoice {
        device,
        config,
        format,
        kind: SinkKind::Device {
            host: host_name,
            name: device_name,
        },
    })
}

/// Frames per period for a device buffer of `buffer_ms` (two periods), within the periods the
/// device supports when it says.
fn period_frames(buffer_ms: f64, rate: u32, supported: cpal::SupportedBufferSize) -> u32 {
    let wanted = (buffer_ms * f64::from(rate) / 2000.0).round().max(1.0) as u32;
    match supported {
        cpal::SupportedBufferSize::Range { min, max } if min <= max => wanted.clamp(min, max),
        _ => wanted,
    }
}

/// Most events kept for the caller; a device in trouble can report on every callback.
const MAX_SIDE_EVENTS: usize = 64;

/// Records an event unless it repeats the last one or too many are waiting: the caller needs to
/// know that the device is failing, not every callback's copy of it.
pub(crate) fn push_coalesced(events: &Mutex<Vec<PlayerEvent>>, event: PlayerEvent) {
    let mut events = events.lock().unwrap_or_else(|e| e.into_inner());
    if events.len() < MAX_SIDE_EVENTS && events.last() != Some(&event) {
        events.push(event);
    }
}

/// Largest block rendered at once inside a callback; bigger callbacks are split.
const CALLBACK_BLOCK_FRAMES: usize = 4096;

/// Builds and starts the stream, its buffers timed as `timing` says; the renderer moves into
/// the data callback, and so does a record of its callbacks if `probe` names a file for it.
pub(crate) fn start_device(
    choice: &DeviceChoice,
    renderer: Renderer,
    clock: Arc<dyn Clock>,
    events: Arc<Mutex<Vec<PlayerEvent>>>,
    timing: DeviceTiming,
    probe: Option<PathBuf>,
) -> Result<cpal::Stream, String> {
    let probe = probe.map(CallbackProbe::new);
    let stream = match choice.format {
        cpal::SampleFormat::F32 => build::<f32>(choice, renderer, clock, events, timing, probe),
        cpal::SampleFormat::I32 => build::<i32>(choice, renderer, clock, events, timing, probe),
        _ => build::<i16>(choice, renderer, clock, events, timing, probe),
    }?;
    stream
        .play()
        .map_err(|e| format!("cannot start the output stream: {e}"))?;
    Ok(stream)
}

fn build<T>(
    choice: &DeviceChoice,
    mut renderer: Renderer,
    clock: Arc<dyn Clock>,
    events: Arc<Mutex<Vec<PlayerEvent>>>,
    timing: DeviceTiming,
    mut probe: Option<CallbackProbe>,
) -> Result<cpal::Stream, String>
where
    T: cpal::SizedSample + cpal::FromSample<f32>,
{
    let channels = usize::from(choice.config.channels);
    let sample_rate = choice.config.sample_rate;
    let ns_per_frame = 1e9 / f64::from(sample_rate);
    let mut scratch = vec![0.0f32; CALLBACK_BLOCK_FRAMES * channels];
    // The timeline alone decides when the output broke, in either timing.
    let mut timeline = DeviceTimeline::with_config(
        sample_rate,
        TimelineConfig {
            reports_only: timing == DeviceTiming::Reported,
            ..TimelineConfig::default()
        },
    );
    // Set by the error callback when the device ran dry; cpal calls both callbacks from the
    // stream's one thread, the error before the refill that follows it.
    let xrun = Arc::new(AtomicBool::new(false));
    let xrun_seen = xrun.clone();
    let data_callback = move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
        let now = clock.now_ns();
        let frames = data.len() / channels.max(1);
        let ts = info.timestamp();
        // How long until the first frame of this buffer reaches the DAC.
        let latency = ts
            .playback
            .saturating_duration_since(ts.callback)
            .as_nanos() as u64;
        let placed = timeline.on_callback(CallbackInfo {
            now_ns: now,
            latency_ns: latency,
            frames,
            xrun: xrun_seen.swap(false, Ordering::Relaxed),
        });
        let first_slot_ns = placed.first_frame_ns;
        // A jump of the timing with no break seen is a glitch all the same (the stream ran
        // dry inside the sound server): the sync loop should put the sound back at once.
        if placed.broke || placed.moved {
            renderer.note_output_break();
        }
        if let Some(probe) = probe.as_mut() {
            probe.record(CallbackRow {
                host_ns: now,
                first_slot_ns,
                latency_ns: latency,
                frames: frames as u32,
                broke: placed.broke,
                moved: placed.moved,
                learnt_delay_ns: placed.learnt_delay_ns,
            });
        }
        let mut offset_frames = 0usize;
        for block in data.chunks_mut(scratch.len()) {
            let scratch = &mut scratch[..block.len()];
            let at = first_slot_ns + (offset_frames as f64 * ns_per_frame).round() as u64;
            renderer.render(scratch, at);
            for (out, &s) in block.iter_mut().zip(scratch.iter()) {
                *out = T::from_sample(s);
            }
            offset_frames += block.len() / channels;
        }
    };
    let error_callback = move |err: cpal::Error| {
        if err.kind() == cpal::ErrorKind::Xrun {
            xrun.store(true, Ordering::Relaxed);
        }
        let lost = matches!(
            err.kind(),
            cpal::ErrorKind::DeviceNotAvailable
                | cpal::ErrorKind::StreamInvalidated
                | cpal::ErrorKind::DeviceChanged
        );
        let message = format!("sound device: {err}");
        let event = if lost {
            PlayerEvent::SinkLost(message)
        } else {
            PlayerEvent::SinkError(message)
        };
        push_coalesced(&events, event);
    };
    choice
        .device
        .build_output_stream::<T, _, _>(
            choice.config,
            data_callback,
            error_callback,
            Some(Duration::from_secs(5)),
        )
        .map_err(|e| format!("cannot open the output stream: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_specs_parse_and_print_back() {
        for (text, spec) in [
            ("device", SinkSpec::Device(None)),
            ("device:null", SinkSpec::Device(Some("null".into()))),
            ("null", SinkSpec::Null),
            (
                "wav:/tmp/out.wav",
                SinkSpec::Wav(PathBuf::from("/tmp/out.wav")),
            ),
        ] {
            assert_eq!(text.parse::<SinkSpec>().unwrap(), spec);
            assert_eq!(spec.to_string(), text);
        }
    }

    #[test]
    fn bad_sink_specs_are_one_line_errors() {
        for text in ["", "speaker", "wav:", "device:", "WAV:x"] {
            let err = text.parse::<SinkSpec>().unwrap_err();
            assert!(!err.is_empty() && !err.contains('\n'), "{text:?}: {err}");
        }
    }

    #[test]
    fn device_timings_parse_print_back_and_refuse_others_in_one_line() {
        for (text, timing) in [
            ("callbacks", DeviceTiming::Callbacks),
            ("reported", DeviceTiming::Reported),
        ] {
            assert_eq!(text.parse::<DeviceTiming>().unwrap(), timing);
            assert_eq!(timing.to_string(), text);
        }
        assert_eq!(DeviceTiming::default(), DeviceTiming::Callbacks);
        for text in ["", "Reported", "timeline", "report"] {
            let err = text.parse::<DeviceTiming>().unwrap_err();
            assert!(
                err.contains("expected \"callbacks\" or \"reported\"") && !err.contains('\n'),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn a_device_buffer_is_two_periods_within_what_the_device_supports() {
        use cpal::SupportedBufferSize::{Range, Unknown};
        assert_eq!(period_frames(40.0, 48_000, Unknown), 960);
        assert_eq!(period_frames(21.3, 44_100, Unknown), 470);
        let range = Range { min: 64, max: 800 };
        assert_eq!(period_frames(40.0, 48_000, range), 800);
        assert_eq!(period_frames(1.0, 48_000, range), 64);
        assert_eq!(period_frames(10.0, 48_000, range), 240);
        // A range that makes no sense is not applied.
        assert_eq!(period_frames(10.0, 48_000, Range { min: 9, max: 3 }), 240);
        assert_eq!(period_frames(0.001, 8_000, Unknown), 1);
    }

    #[test]
    fn repeated_device_errors_are_coalesced_and_bounded() {
        let events = Mutex::new(Vec::new());
        for _ in 0..10 {
            push_coalesced(&events, PlayerEvent::SinkError("xrun".into()));
        }
        push_coalesced(&events, PlayerEvent::SinkLost("gone".into()));
        assert_eq!(
            *events.lock().unwrap(),
            vec![
                PlayerEvent::SinkError("xrun".into()),
                PlayerEvent::SinkLost("gone".into())
            ]
        );
        for i in 0..1000 {
            push_coalesced(&events, PlayerEvent::SinkError(format!("error {i}")));
        }
        assert_eq!(events.lock().unwrap().len(), MAX_SIDE_EVENTS);
    }
}
