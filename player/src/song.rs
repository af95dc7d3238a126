//! Songs in memory: WAV decoding (hound) into normalised `f32` frames, and WAV encoding. Other
//! formats are decoded by [`crate::decode`], into the same [`Song`].
//!
//! Songs arrive over the network as the bytes of their file, so decoding works on bytes first; a file is read whole and decoded the same way. Every malformed or truncated input is
//! an error value, never a panic, and the header's claimed size never decides an allocation on
//! its own (a corrupt header could otherwise ask for gigabytes).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::window::Window;

/// Why an audio file could not be decoded. Display is one line.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The bytes are not a well-formed file of their format (for WAV: bad RIFF/WAVE header,
    /// chunk sizes, fmt chunk), or no audio in them decodes.
    #[error("not a valid audio file: {0}")]
    Malformed(String),
    /// A format or an encoding this player does not decode.
    #[error("unsupported audio: {0}")]
    Unsupported(String),
    /// The data chunk is shorter than its header claims (for example a cut-off download).
    #[error(
        "truncated WAV data: header claims {claimed_frames} frames, only {available_frames} present"
    )]
    Truncated {
        /// Frames the header announces.
        claimed_frames: u64,
        /// Whole frames actually present.
        available_frames: u64,
    },
}

/// Why a song could not be written as WAV. Display is one line.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The WAV writer refused the song (for example more than 4 GiB of data).
    #[error("cannot encode WAV: {0}")]
    Wav(String),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
}

/// Where the audio data sits in the WAV file a song was decoded from; needed to translate the
/// legacy protocol's byte offsets into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavLayout {
    /// Byte offset of the first audio frame from the start of the file.
    pub data_offset: u64,
    /// Bytes per frame (block align).
    pub bytes_per_frame: u32,
}

impl WavLayout {
    /// The frame at byte offset `byte` of the file; offsets inside the header give frame 0.
    pub fn frame_at_byte(&self, byte: u64) -> u64 {
        byte.saturating_sub(self.data_offset) / u64::from(self.bytes_per_frame.max(1))
    }

    /// The byte offset in the file where frame `frame` starts.
    pub fn byte_of_frame(&self, frame: u64) -> u64 {
        self.data_offset + frame * u64::from(self.bytes_per_frame)
    }
}

/// A song's frames: interleaved samples normalised to [-1, 1], either all of them in memory or
/// a window of a song decoded while it plays ([`crate::Streamed`]).
#[derive(Clone)]
pub struct Song {
    /// Frames per second.
    pub sample_rate: u32,
    /// Samples per frame.
    pub channels: u16,
    /// Number of frames.
    pub frames: u64,
    samples: Samples,
    layout: Option<WavLayout>,
}

/// Where a song's samples are.
#[derive(Clone)]
enum Samples {
    /// All of them, decoded.
    Whole(Arc<[f32]>),
    /// Those around the play position, decoded while the song plays.
    Streamed(Arc<Window>),
}

impl std::fmt::Debug for Song {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Song")
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .field("frames", &self.frames)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl Song {
    /// A song from interleaved samples. Fails if the rate or the channel count is zero or the
    /// sample count is not a whole number of frames.
    pub fn from_interleaved(
        sample_rate: u32,
        channels: u16,
        samples: impl Into<Arc<[f32]>>,
    ) -> Result<Self, DecodeError> {
        let samples = samples.into();
        if sample_rate == 0 {
            return Err(DecodeError::Unsupported("sample rate 0".into()));
        }
        if channels == 0 {
            return Err(DecodeError::Unsupported("0 channels".into()));
        }
        if samples.len() % usize::from(channels) != 0 {
            return Err(DecodeError::Malformed(format!(
                "{} samples is not a whole number of {channels}-channel frames",
                samples.len()
            )));
        }
        let frames = (samples.len() / usize::from(channels)) as u64;
        Ok(Self {
            sample_rate,
            channels,
            frames,
            samples: Samples::Whole(samples),
            layout: None,
        })
    }

    /// A song of `frames` frames whose samples a decoder thread writes into `window`.
    pub(crate) fn streamed(
        sample_rate: u32,
        channels: u16,
        frames: u64,
        window: Arc<Window>,
    ) -> Result<Self, DecodeError> {
        if sample_rate == 0 || channels == 0 {
            return Err(DecodeError::Unsupported(format!(
                "{sample_rate} Hz, {channels} channels"
            )));
        }
        Ok(Self {
            sample_rate,
            channels,
            frames,
            samples: Samples::Streamed(window),
            layout: None,
        })
    }

    /// All samples, interleaved; empty for a song decoded while it plays (whose frames are
    /// never all in memory).
    pub fn samples(&self) -> &[f32] {
        match &self.samples {
            Samples::Whole(s) => s,
            Samples::Streamed(_) => &[],
        }
    }

    /// Whether the song is decoded while it plays.
    pub fn is_streamed(&self) -> bool {
        matches!(self.samples, Samples::Streamed(_))
    }

    /// The samples of frame `index` (one per channel), or `None` past the end or for a song
    /// decoded while it plays.
    pub fn frame(&self, index: u64) -> Option<&[f32]> {
        let ch = usize::from(self.channels);
        let start = usize::try_from(index).ok()?.checked_mul(ch)?;
        self.samples().get(start..start + ch)
    }

    /// Copies frames `[first, first + frames)` into `dst` (interleaved, `dst_ch` channels: the
    /// first `dst_ch` of the song's), zeros outside the song and, for a streamed song, where
    /// the frames are not decoded yet (counted as underflow). Never waits; allocates nothing.
    pub(crate) fn read_frames(&self, first: i64, frames: usize, dst: &mut [f32], dst_ch: usize) {
        let dst = &mut dst[..frames * dst_ch];
        dst.fill(0.0);
        match &self.samples {
            Samples::Streamed(window) => window.read(first, frames, self.frames, dst, dst_ch),
            Samples::Whole(samples) => {
                let song_ch = usize::from(self.channels);
                let lo = first.max(0);
                let hi = (first + frames as i64).min(self.frames as i64);
                if lo >= hi {
                    return;
                }
                let skip = (lo - first) as usize;
                let src = &samples[lo as usize * song_ch..hi as usize * song_ch];
                for (d, s) in dst[skip * dst_ch..]
                    .chunks_exact_mut(dst_ch)
                    .zip(src.chunks_exact(song_ch))
                {
                    d.copy_from_slice(&s[..dst_ch]);
                }
            }
        }
    }

    /// Duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        (u128::from(self.frames) * 1_000_000_000 / u128::from(self.sample_rate)) as u64
    }

    /// The WAV layout this song was decoded from, if it came from a WAV file.
    pub fn wav_layout(&self) -> Option<WavLayout> {
        self.layout
    }
}

/// What a WAV file's header says, checked against the bytes present.
pub(crate) struct WavHeader {
    pub(crate) spec: hound::WavSpec,
    pub(crate) sample_rate: u32,
    pub(crate) channels: u16,
    /// Whole frames in the data chunk.
    pub(crate) frames: u64,
    pub(crate) layout: WavLayout,
}

/// Reads a WAV file's header: the encodings [`decode_wav_bytes`] decodes, and a data chunk
/// that holds the frames the header claims (a cut-off file is [`DecodeError::Truncated`]).
pub(crate) fn wav_header(bytes: &[u8]) -> Result<WavHeader, DecodeError> {
    let header = hound::WavReader::new(Cursor::new(bytes)).map_err(hound_error)?;
    let spec = header.spec();
    let claimed_samples = u64::from(header.len());
    let data_offset = header.into_inner().position();

    let channels = spec.channels;
    if channels == 0 {
        return Err(DecodeError::Malformed("0 channels".into()));
    }
    if spec.sample_rate == 0 {
        return Err(DecodeError::Unsupported("sample rate 0".into()));
    }
    match spec.sample_format {
        hound::SampleFormat::Float if spec.bits_per_sample != 32 => {
            return Err(DecodeError::Unsupported(format!(
                "{}-bit float samples",
                spec.bits_per_sample
            )));
        }
        hound::SampleFormat::Int if !(1..=32).contains(&spec.bits_per_sample) => {
            return Err(DecodeError::Unsupported(format!(
                "{}-bit integer samples",
                spec.bits_per_sample
            )));
        }
        _ => {}
    }
    let bytes_per_sample = u64::from(spec.bits_per_sample).div_ceil(8).max(1);
    let claimed_frames = claimed_samples / u64::from(channels);
    let present_samples = (bytes.len() as u64).saturating_sub(data_offset) / bytes_per_sample;
    let available_frames = present_samples.min(claimed_samples) / u64::from(channels);
    if available_frames < claimed_frames {
        return Err(DecodeError::Truncated {
            claimed_frames,
            available_frames,
        });
    }
    Ok(WavHeader {
        spec,
        sample_rate: spec.sample_rate,
        channels,
        frames: available_frames,
        layout: WavLayout {
            data_offset,
            bytes_per_frame: (bytes_per_sample * u64::from(channels)) as u32,
        },
    })
}

/// Decodes a WAV file held in memory: 8, 16, 24 and 32-bit integer PCM and 32-bit float, any
/// channel count and sample rate.
pub fn decode_wav_bytes(bytes: &[u8]) -> Result<Song, DecodeError> {
    let header = wav_header(bytes)?;
    let (spec, channels, available_frames) = (header.spec, header.channels, header.frames);

    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(hound_error)?;
    // Bounded by the bytes actually present, never by the header alone.
    let mut samples = Vec::with_capacity((available_frames * u64::from(channels)) as usize);
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in reader.samples::<f32>() {
                // Keep the [-1, 1] promise: a corrupt or hot file must not feed NaN or
                // out-of-range values into the resampler and the device.
                let s = s.map_err(hound_error)?;
                samples.push(if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                });
            }
        }
        hound::SampleFormat::Int => {
            // Full scale of a `bits`-bit signed sample; hound has already re-centred unsigned
            // 8-bit data.
            let scale = (1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64) as f32;
            for s in reader.samples::<i32>() {
                samples.push(s.map_err(hound_error)? as f32 * scale);
            }
        }
    }
    let mut song = Song::from_interleaved(spec.sample_rate, channels, samples)?;
    song.layout = Some(header.layout);
    Ok(song)
}

/// Reads and decodes a WAV file.
pub fn decode_wav_file(path: &Path) -> Result<Song, DecodeError> {
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Io {
        path: path.to_owned(),
        source,
    })?;
    decode_wav_bytes(&bytes)
}

fn hound_error(e: hound::Error) -> DecodeError {
    match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Malformed("file ends inside the header or a sample".into())
        }
        hound::Error::IoError(io) => DecodeError::Malformed(io.to_string()),
        hound::Error::FormatError(reason) => DecodeError::Malformed(reason.to_string()),
        hound::Error::Unsupported => {
            DecodeError::Unsupported("format not supported by hound".into())
        }
        other => DecodeError::Malformed(other.to_string()),
    }
}

/// Sample encoding for [`encode_wav`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavEncoding {
    /// 16-bit signed integer PCM (what the server's generated songs use).
    Pcm16,
    /// 32-bit IEEE float (lossless for the player's samples; what the recorder writes).
    Float32,
}

/// Encodes a song as the bytes of a WAV file. Samples outside [-1, 1] are clipped for `Pcm16`.
pub fn encode_wav(song: &Song, encoding: WavEncoding) -> Result<Vec<u8>, EncodeError> {
    let mut cursor = Cursor::new(Vec::with_capacity(song.samples().len() * 4 + 64));
    write_wav(&mut cursor, song, encoding)?;
    Ok(cursor.into_inner())
}

/// Writes a song to a WAV file.
pub fn write_wav_file(path: &Path, song: &Song, encoding: WavEncoding) -> Result<(), EncodeError> {
    let bytes = encode_wav(song, encoding)?;
    std::fs::write(path, bytes).map_err(|source| EncodeError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_wav<W: std::io::Write + std::io::Seek>(
    out: W,
    song: &Song,
    encoding: WavEncoding,
) -> Result<(), EncodeError> {
    let wav_err = |e: hound::Error| EncodeError::Wav(e.to_string());
    let spec = wav_spec(song.sample_rate, song.channels, encoding);
    let mut writer = hound::WavWriter::new(out, spec).map_err(wav_err)?;
    match encoding {
        WavEncoding::Pcm16 => {
            let mut w = writer.get_i16_writer(song.samples().len() as u32);
            for &s in song.samples() {
                w.write_sample(f32_to_i16(s));
            }
            w.flush().map_err(wav_err)?;
        }
        WavEncoding::Float32 => {
            for &s in song.samples() {
                writer.write_sample(s).map_err(wav_err)?;
            }
        }
    }
    writer.finalize().map_err(wav_err)
}

pub(crate) fn wav_spec(sample_rate: u32, channels: u16, encoding: WavEncoding) -> hound::WavSpec {
    match encoding {
        WavEncoding::Pcm16 => hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
        WavEncoding::Float32 => hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        },
    }
}

/// Rounds a normalised sample to 16 bits, clipping at full scale.
pub fn f32_to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}
