//! Decoding any supported audio file held in memory into a [`Song`]: WAV through hound (exact,
//! and it keeps the data chunk's layout for the legacy byte positions), everything else through
//! symphonia (FLAC, MP3, Ogg Vorbis, AAC and ALAC in MP4/M4A, AIFF, WAV encodings hound lacks).
//!
//! Every peer must hear the same frame for the same frame number, so decoding is a pure
//! function of the bytes: symphonia trims encoder delay and padding from the packets' own
//! gapless information (LAME/Xing headers, Ogg granule positions), the same way everywhere.
//! Broken packets are skipped (the song plays what decodes) and counted in [`Damage`]; a file
//! that yields no audio at all is an error.

use std::io::Cursor;

use symphonia::core::audio::{Channels, GenericAudioBufferRef};
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, ReadOnlySource};
use symphonia::core::meta::MetadataOptions;

use crate::song::{DecodeError, Song, WavLayout, decode_wav_bytes, wav_header};

/// Packets of a file that did not decode: the song plays without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Packets skipped because they did not decode.
    pub skipped_packets: u64,
    /// Frames the container announced that did not decode.
    pub missing_frames: u64,
    /// Whether the file ended in the middle of its data (a cut-off file).
    pub truncated: bool,
    /// The first decoder error, for the one log line.
    pub first_error: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.truncated {
            parts.push("the file is cut off".to_string());
        }
        if self.skipped_packets > 0 {
            parts.push(format!(
                "{} damaged packet(s) skipped (first: {})",
                self.skipped_packets, self.first_error
            ));
        }
        if self.missing_frames > 0 {
            parts.push(format!("{} frames missing", self.missing_frames));
        }
        write!(f, "{}; playing what decodes", parts.join(", "))
    }
}

/// A song decoded from a file, with what was wrong with the file if anything.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The song.
    pub song: Song,
    /// The container's short name (`wav`, `flac`, `mp3`, `ogg`, `isomp4`, `aiff`, ...).
    pub container: String,
    /// Damage skipped while decoding; `None` for a clean file.
    pub damage: Option<Damage>,
}

/// Whether `bytes` start like a RIFF/WAVE (or RF64) file.
fn looks_like_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && matches!(&bytes[..4], b"RIFF" | b"RF64") && &bytes[8..12] == b"WAVE"
}

/// Decodes an audio file held in memory, whatever its format. Songs with more than two
/// channels are mixed down to stereo (see [`downmix_to_stereo`]); samples are clamped to
/// [-1, 1] and non-finite ones zeroed.
pub fn decode_bytes(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if looks_like_wav(bytes) {
        match decode_wav_bytes(bytes) {
            Ok(song) if song.channels <= 2 => {
                return Ok(Decoded {
                    song,
                    container: "wav".into(),
                    damage: None,
                });
            }
            // More channels than stereo: symphonia knows the speaker positions.
            Ok(_) => {}
            Err(e @ DecodeError::Truncated { .. }) => return Err(e),
            // An encoding hound lacks (64-bit float, A-law, ...): symphonia may read it; if
            // not, hound's reason is the clearer one.
            Err(e) => return decode_with_symphonia(bytes).map_err(|_| e),
        }
    }
    decode_with_symphonia(bytes)
}

/// The container `bytes` look like by their first bytes, for a clear error when the file is
/// one of the formats this player knows but cannot be read (cut off, damaged).
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"fLaC") {
        Some("FLAC")
    } else if at(0, b"OggS") {
        Some("Ogg")
    } else if at(4, b"ftyp") {
        Some("MP4")
    } else if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        Some("AIFF")
    } else if looks_like_wav(bytes) {
        Some("WAV")
    } else if at(0, b"ID3") || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0) {
        Some("MP3")
    } else {
        None
    }
}

fn probe<'a>(source: Box<dyn MediaSource + 'a>) -> Result<Box<dyn FormatReader + 'a>, SymError> {
    let mss = MediaSourceStream::new(source, Default::default());
    symphonia::default::get_probe().probe(
        &Hint::new(),
        mss,
        FormatOptions::default(),
        MetadataOptions::default(),
    )
}

/// Opens `bytes` with symphonia's probe: the format reader of the file's container. Some
/// readers look at the end of a seekable file first (an Ogg file's last page, for its length)
/// and fail on a cut-off one; such a file is opened again as a stream, which plays what it
/// holds.
pub(crate) fn open_format(bytes: &[u8]) -> Result<Box<dyn FormatReader + '_>, DecodeError> {
    let error = match probe(Box::new(Cursor::new(bytes))) {
        Ok(format) => return Ok(format),
        Err(e) => e,
    };
    if let Ok(format) = probe(Box::new(ReadOnlySource::new(Cursor::new(bytes)))) {
        return Ok(format);
    }
    Err(match (sniff(bytes), error) {
        (Some(kind), e) => DecodeError::Malformed(format!(
            "{kind} file that cannot be read, cut off or damaged ({e})"
        )),
        (None, SymError::Unsupported(_)) => {
            DecodeError::Unsupported("not an audio format this player knows".into())
        }
        (None, other) => DecodeError::Malformed(other.to_string()),
    })
}

/// The audio track of an open file: what it is, and a decoder for it.
pub(crate) struct AudioTrack {
    /// The container's short name.
    pub(crate) container: String,
    pub(crate) track_id: u32,
    /// Frames the container announces, if it does.
    pub(crate) frames: Option<u64>,
    pub(crate) params: AudioCodecParameters,
    pub(crate) decoder: Box<dyn AudioDecoder>,
}

/// The default audio track of `format` and a decoder for it; a file without one, or of a codec
/// this player lacks, is named unsupported.
pub(crate) fn audio_track(format: &dyn FormatReader) -> Result<AudioTrack, DecodeError> {
    let container = format.format_info().short_name.to_string();
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| DecodeError::Unsupported(format!("{container} file without audio")))?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| DecodeError::Unsupported(format!("{container} track without audio")))?
        .clone();
    let decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|_| DecodeError::Unsupported(format!("codec {} in {container}", params.codec)))?;
    Ok(AudioTrack {
        track_id: track.id,
        frames: track.num_frames,
        container,
        params,
        decoder,
    })
}

/// What walking a file's packets found: its shape and the damage skipped on the way.
struct Walked {
    container: String,
    rate: u32,
    channels: Channels,
    /// Frames decoded (in the file's own channel layout).
    frames: u64,
    /// Frames the container announces, if it does.
    expected_frames: Option<u64>,
    skipped: u64,
    truncated: bool,
    first_error: String,
}

impl Walked {
    /// The damage found, if any; `frames` is what the song holds after decoding.
    fn damage(&self, frames: u64) -> Option<Damage> {
        // Some demuxers resynchronise past a damaged stretch without an error: the frames the
        // container announced and did not deliver tell.
        let missing_frames = self.expected_frames.map_or(0, |n| n.saturating_sub(frames));
        (self.skipped > 0 || self.truncated || missing_frames > 0).then(|| Damage {
            skipped_packets: self.skipped,
            missing_frames,
            truncated: self.truncated,
            first_error: self.first_error.clone(),
        })
    }
}

/// Decodes every packet of the file's audio track with symphonia, handing each buffer of the
/// first buffer's shape to `each`; damaged packets are skipped and counted.
fn walk(
    bytes: &[u8],
    each: &mut dyn FnMut(&GenericAudioBufferRef<'_>),
) -> Result<Walked, DecodeError> {
    let mut format = open_format(bytes)?;
    let AudioTrack {
        container,
        track_id,
        frames: expected_frames,
        mut decoder,
        ..
    } = audio_track(format.as_ref())?;

    // Rate and channels of the first decoded buffer; a packet that disagrees is damage.
    let mut shape: Option<(u32, Channels)> = None;
    let mut frames = 0u64;
    let mut skipped = 0u64;
    let mut truncated = false;
    let mut first_error = String::new();
    let mut note = |e: &dyn std::fmt::Display, skipped: &mut u64| {
        if first_error.is_empty() {
            first_error = e.to_string();
        }
        *skipped += 1;
    };
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                truncated = true;
                break;
            }
            Err(SymError::DecodeError(e)) => {
                // The demuxer lost its way in a corrupt stretch; it resynchronises itself.
                note(&e, &mut skipped);
                if skipped > 10_000 {
                    break;
                }
                continue;
            }
            Err(e) if shape.is_some() => {
                // Audio was decoded before the container broke: play that much.
                note(&e, &mut skipped);
                truncated = true;
                break;
            }
            Err(e) => return Err(DecodeError::Malformed(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let this = (buf.spec().rate(), buf.spec().channels().clone());
                match &shape {
                    None => shape = Some(this),
                    Some(s) if *s != this => {
                        note(&"the sample rate or channels changed", &mut skipped);
                        continue;
                    }
                    Some(_) => {}
                }
                frames += buf.frames() as u64;
                each(&buf);
            }
            Err(SymError::DecodeError(e)) => note(&e, &mut skipped),
            Err(SymError::IoError(e)) => note(&e, &mut skipped),
            Err(e) => return Err(DecodeError::Malformed(e.to_string())),
        }
    }
    let Some((rate, channels)) = shape else {
        return Err(DecodeError::Malformed(if first_error.is_empty() {
            format!("{container} file holds no audio")
        } else {
            format!("no packet of the {container} file decodes ({first_error})")
        }));
    };
    Ok(Walked {
        container,
        rate,
        channels,
        frames,
        expected_frames,
        skipped,
        truncated,
        first_error,
    })
}

fn decode_with_symphonia(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut samples: Vec<f32> = Vec::new();
    let mut scratch: Vec<f32> = Vec::new();
    let walked = walk(bytes, &mut |buf| {
        append_interleaved(buf, &mut scratch, &mut samples)
    })?;
    for s in &mut samples {
        *s = if s.is_finite() {
            s.clamp(-1.0, 1.0)
        } else {
            0.0
        };
    }
    let count = walked.channels.count();
    let (samples, out_channels) = if count > 2 {
        (downmix_to_stereo(&samples, &walked.channels), 2)
    } else {
        (samples, count as u16)
    };
    let song = Song::from_interleaved(walked.rate, out_channels, samples)?;
    let damage = walked.damage(song.frames);
    Ok(Decoded {
        song,
        container: walked.container,
        damage,
    })
}

/// A file's length and shape, as a whole decode would give them, without keeping its audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// Frames a decode yields: the song's frame numbers run from 0 to this.
    pub frames: u64,
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels of the decoded song (more than two are mixed down to two).
    pub channels: u16,
    /// The container's short name.
    pub container: String,
    /// Where the audio data sits, for a WAV file.
    pub wav_layout: Option<WavLayout>,
    /// Damage skipped while decoding; `None` for a clean file.
    pub damage: Option<Damage>,
}

impl Measured {
    /// Duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        (u128::from(self.frames) * 1_000_000_000 / u128::from(self.sample_rate.max(1))) as u64
    }
}

/// Measures an audio file held in memory: the same frame count and shape as
/// [`decode_bytes`], in memory that does not grow with the song's length (a WAV file's header
/// is read; other formats are decoded packet by packet and the audio dropped).
pub fn measure_bytes(bytes: &[u8]) -> Result<Measured, DecodeError> {
    if looks_like_wav(bytes) {
        match wav_header(bytes) {
            Ok(header) if header.channels <= 2 => {
                return Ok(Measured {
                    frames: header.frames,
                    sample_rate: header.sample_rate,
                    channels: header.channels,
                    container: "wav".into(),
                    wav_layout: Some(header.layout),
                    damage: None,
                });
            }
            Ok(_) => {}
            Err(e @ DecodeError::Truncated { .. }) => return Err(e),
            Err(e) => return measure_with_symphonia(bytes).map_err(|_| e),
        }
    }
    measure_with_symphonia(bytes)
}

fn measure_with_symphonia(bytes: &[u8]) -> Result<Measured, DecodeError> {
    let walked = walk(bytes, &mut |_| {})?;
    Ok(Measured {
        frames: walked.frames,
        sample_rate: walked.rate,
        channels: walked.channels.count().min(2) as u16,
        damage: walked.damage(walked.frames),
        container: walked.container,
        wav_layout: None,
    })
}

/// Appends one decoded buffer to `out`, interleaved as `f32`.
fn append_interleaved(buf: &GenericAudioBufferRef<'_>, scratch: &mut Vec<f32>, out: &mut Vec<f32>) {
    interleave(buf, scratch);
    out.extend_from_slice(scratch);
}

/// One decoded buffer as interleaved `f32` in `out` (replacing what it held).
pub(crate) fn interleave(buf: &GenericAudioBufferRef<'_>, out: &mut Vec<f32>) {
    out.clear();
    out.resize(buf.samples_interleaved(), 0.0);
    buf.copy_to_slice_interleaved(&mut out[..]);
}

/// Which side of a stereo pair a speaker feeds: (left weight, right weight).
fn stereo_weights(name: &str) -> (f32, f32) {
    const HALF_POWER: f32 = std::f32::consts::FRAC_1_SQRT_2;
    if name.starts_with("LFE") {
        // The sub-bass channel is left out, as ITU-R BS.775 downmixes do.
        (0.0, 0.0)
    } else if name.contains("LEFT") {
        (1.0, 0.0)
    } else if name.contains("RIGHT") {
        (0.0, 1.0)
    } else {
        (HALF_POWER, HALF_POWER)
    }
}

/// Mixes interleaved audio of more than two channels down to stereo: left speakers to the
/// left, right ones to the right, centre ones to both at half power, the LFE channel left out;
/// each side is scaled by its total weight so that nothing clips. Channels without positions
/// alternate left and right.
pub fn downmix_to_stereo(samples: &[f32], channels: &Channels) -> Vec<f32> {
    let count = channels.count().max(1);
    let weights: Vec<(f32, f32)> = match channels {
        Channels::Positioned(positions) => positions
            .iter_names()
            .map(|(name, _)| stereo_weights(name))
            .collect(),
        _ => (0..count)
            .map(|i| if i % 2 == 0 { (1.0, 0.0) } else { (0.0, 1.0) })
            .collect(),
    };
    let (sum_l, sum_r) = weights
        .iter()
        .fold((0.0, 0.0), |(l, r), w| (l + w.0, r + w.1));
    let (gain_l, gain_r) = (1.0 / sum_l.max(1.0), 1.0 / sum_r.max(1.0));
    samples
        .chunks_exact(count)
        .flat_map(|frame| {
            let (l, r) = frame
                .iter()
                .zip(&weights)
                .fold((0.0, 0.0), |(l, r), (s, w)| (l + s * w.0, r + s * w.1));
            [l * gain_l, r * gain_r]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphonia::core::audio::Position;

    #[test]
    fn five_one_mixes_down_to_stereo_without_lfe_and_without_clipping() {
        let layout = Channels::Positioned(
            Position::FRONT_LEFT
                | Position::FRONT_RIGHT
                | Position::FRONT_CENTER
                | Position::LFE1
                | Position::REAR_LEFT
                | Position::REAR_RIGHT,
        );
        // Left speakers only, then the LFE only, then everything at full scale.
        let frames = [
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        ];
        let samples: Vec<f32> = frames.iter().flatten().copied().collect();
        let out = downmix_to_stereo(&samples, &layout);
        assert_eq!(out.len(), 6);
        assert!(out[0] > 0.5 && out[1] == 0.0, "left stays left: {out:?}");
        assert_eq!(&out[2..4], &[0.0, 0.0], "the LFE is left out");
        assert!(
            (out[4] - 1.0).abs() < 1e-6 && (out[5] - 1.0).abs() < 1e-6,
            "{out:?}"
        );
    }

    #[test]
    fn bytes_of_no_known_format_are_named_unsupported() {
        let err = decode_bytes(b"this is a text file, not music at all").unwrap_err();
        assert!(matches!(err, DecodeError::Unsupported(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "unsupported audio: not an audio format this player knows"
        );
    }
}
