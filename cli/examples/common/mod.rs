//! What the benchmark examples share: a long test song.

use std::path::Path;

/// Writes a 16-bit stereo WAV of `seconds` of band-limited noise with a beat at `rate` Hz
/// (the built-in songs last 30 s; a benchmark wants minutes). Deterministic: the same call
/// writes the same bytes.
pub fn write_song(path: &Path, seconds: u32, rate: u32) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let err = |e: hound::Error| format!("cannot write {}: {e}", path.display());
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    // xorshift noise through a one-pole low-pass, gated by a beat twice a second: easy to
    // line up by ear or by cross-correlation, and never silent for long.
    let mut x: u32 = 0x9e37_79b9;
    let mut y = 0.0f32;
    for n in 0..u64::from(seconds) * u64::from(rate) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let white = (x as f32 / u32::MAX as f32) * 2.0 - 1.0;
        y += 0.2 * (white - y);
        let beat = if (n % u64::from(rate / 2)) < u64::from(rate / 20) {
            1.0
        } else {
            0.4
        };
        let s = (y * beat * 0.8 * f32::from(i16::MAX)) as i16;
        w.write_sample(s).map_err(err)?;
        w.write_sample(s).map_err(err)?;
    }
    w.finalize().map_err(err)
}
