//! Music262 player: the audio half of a synchronized peer.
//!
//! It starts a song at an exact instant and frame, follows rate corrections smoothly, and
//! reports which frame is heard at which instant of the node's sync clock. It knows nothing of
//! the protocol: the client's driver maps sync-core's playback actions onto [`Player`].
//!
//! - [`song`]: the decoded song; WAV decoding and encoding (hound).
//! - [`decode`]: any supported format (FLAC, MP3, Ogg Vorbis, AAC/ALAC in MP4, AIFF, WAV)
//!   decoded into a song (symphonia); [`tags`]: a file's tags and cover art.
//! - [`Streamed`]: a song decoded while it downloads, from a [`cache`] file on disk into a
//!   bounded window of frames around the play position.
//! - [`render`]: the render core. A [`Control`] sends timed commands to a [`Renderer`] that
//!   sinks step buffer by buffer; it resamples with rubato and knows the exact song position of
//!   every output slot.
//! - [`sink`]: sound device (cpal), null sink paced by a [`Clock`], WAV recorder.
//! - [`timeline`]: when a sound device really plays each buffer, from its callbacks (no I/O,
//!   no clock: the simulator drives it too).
//! - [`Player`]: the render core plus the configured sink; a sound device's threads run at a
//!   raised priority where permitted ([`AUDIO_NICE`]).
#![forbid(unsafe_code)]

mod alsa_noise;
pub mod cache;
pub mod clock;
pub mod decode;
mod player;
mod priority;
mod probe;
pub mod render;
mod resample;
pub mod sink;
pub mod song;
mod streamed;
pub mod tags;
pub mod timeline;
mod window;

pub use clock::{Clock, ManualClock, SkewedClock, SystemClock};
pub use decode::{Damage, Decoded, Measured, decode_bytes, measure_bytes};
pub use player::{DEFAULT_PACED_RATE, Player, PlayerConfig, PlayerError};
pub use priority::AUDIO_NICE;
pub use render::{
    ChannelMode, Control, PlaybackState, PlayerEvent, PositionReport, RenderConfig, Renderer,
    render_core,
};
pub use resample::{MAX_RATE_PPM, Resampling};
pub use sink::{DeviceTiming, SinkKind, SinkSpec};
pub use song::{
    DecodeError, EncodeError, Song, WavEncoding, WavLayout, decode_wav_bytes, decode_wav_file,
    encode_wav, write_wav_file,
};
pub use streamed::Streamed;
pub use timeline::{CallbackInfo, DeviceTimeline, Placement, TimelineConfig};
