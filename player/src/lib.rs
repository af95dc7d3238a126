//! Music262 player: the audio half of a synchronized peer.
#![forbid(unsafe_code)]

pub mod clock;
mod resample;
pub mod song;

pub use clock::{Clock, ManualClock, SkewedClock, SystemClock};
pub use resample::{MAX_RATE_PPM, Resampling};
pub use song::{
    DecodeError, EncodeError, Song, WavEncoding, WavLayout, decode_wav_bytes, decode_wav_file,
    encode_wav, write_wav_file,
};
