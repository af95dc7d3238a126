//! Resampling from the song's rate to the sink's, with a fine ratio for drift correction, and
//! the exact source position of every output slot.
//!
//! rubato's `Async` resampler (fixed output size) does the interpolation. It keeps its read
//! position private, so this module keeps a *mirror* of it: rubato advances an index by
//! `t_ratio` per output frame (incrementing `t_ratio` first when a ratio change is ramped over
//! a chunk) and subtracts the frames it consumed after each chunk; the mirror performs the same
//! floating-point operations on the same values, so it holds the same index. Adding the
//! interpolator's fixed delay (where the kernel's centre sits relative to that index) and the
//! source frame fed first gives the song position heard at each slot. Tests feed a linear ramp
//! and check that every output sample equals the mirrored position.
//!
//! rubato cannot be told to start at a given fractional phase (its index restarts at a fixed
//! value on reset), so a start is *primed*: after `reset`, one discarded chunk is rendered from
//! source frames just before the target, at a ratio adjusted by at most half a frame over the
//! chunk so that the next slot lands exactly on the requested fractional position. The primed
//! chunk also fills the filter's history with the real preceding audio, so a seek into the
//! middle of a song starts without a transient.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Adjustable, Async, FixedAsync, PolynomialDegree, Resampler, Resizable,
    SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

use crate::song::Song;

/// Largest chunk handed to rubato at once, in output frames; also the priming length.
pub(crate) const MAX_CHUNK: usize = 1024;

/// How far the ratio may move from nominal. The fine rate is clamped to ±`MAX_RATE_PPM`; the
/// rest is headroom for priming, which bends the ratio by up to `0.5 / (MAX_CHUNK * t)`.
const MAX_RELATIVE_RATIO: f64 = 1.1;

/// The fine rate is clamped to this many ppm either way.
pub const MAX_RATE_PPM: f64 = 50_000.0;

const SINC_LEN: usize = 64;
const SINC_OVERSAMPLING: usize = 256;

/// Which interpolator converts the song's rate to the sink's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resampling {
    /// Band-limited sinc interpolation (64 taps, Blackman-Harris², linear between 256
    /// oversampled phases): anti-aliased, for listening.
    #[default]
    Sinc,
    /// Cubic polynomial interpolation: no anti-aliasing filter, but it passes a song through
    /// unchanged at integer positions, which makes frame-exact comparisons possible in tests.
    Cubic,
}

/// The song's frames at the sink's rate, with the exact position of every output slot.
pub(crate) struct FineResampler {
    inner: Async<f32>,
    /// Channels resampled: 1 for a mono song, 2 otherwise (the first two of the song).
    channels: usize,
    /// sink rate / song rate: rubato's ratio at 0 ppm.
    base_ratio: f64,
    /// rubato's index after `reset`.
    init_last_index: f64,
    /// Song position of rubato's index 0, relative to the first new input frame.
    delay: f64,
    // Mirror of rubato's private state (same names as in rubato).
    resample_ratio: f64,
    target_ratio: f64,
    last_index: f64,
    /// Source frame fed next (the first frame of the next chunk's new input).
    feed_next: i64,
    input: Vec<f32>,
    output: Vec<f32>,
    positions: Vec<f64>,
}

impl FineResampler {
    /// Builds a resampler for `song_rate` → `sink_rate` (allocates; call off the audio thread).
    pub(crate) fn new(
        song_rate: u32,
        song_channels: u16,
        sink_rate: u32,
        kind: Resampling,
    ) -> Self {
        let channels = if song_channels >= 2 { 2 } else { 1 };
        let base_ratio = f64::from(sink_rate) / f64::from(song_rate);
        let (inner, init_last_index, delay) = match kind {
            Resampling::Sinc => {
                let params = SincInterpolationParameters {
                    sinc_len: SINC_LEN,
                    f_cutoff: None,
                    interpolation: SincInterpolationType::Linear,
                    oversampling_factor: SINC_OVERSAMPLING,
                    window: WindowFunction::BlackmanHarris2,
                };
                let inner = Async::new_sinc(
                    base_ratio,
                    MAX_RELATIVE_RATIO,
                    &params,
                    MAX_CHUNK,
                    channels,
                    FixedAsync::Output,
                )
                .expect("valid sinc resampler parameters");
                // The sub-table for phase s peaks `L/2 - 1 + (s + 1) / factor` frames after
                // the integer index, i.e. the kernel's centre is the index plus
                // `L/2 - 1 + 1/factor`. After reset the index is `-(L - 1)`.
                let delay = (SINC_LEN / 2) as f64 - 1.0 + 1.0 / SINC_OVERSAMPLING as f64;
                (inner, -(SINC_LEN as f64 - 1.0), delay)
            }
            Resampling::Cubic => {
                let inner = Async::new_poly(
                    base_ratio,
                    MAX_RELATIVE_RATIO,
                    PolynomialDegree::Cubic,
                    MAX_CHUNK,
                    channels,
                    FixedAsync::Output,
                )
                .expect("valid polynomial resampler parameters");
                // The polynomial is evaluated at the index itself; reset puts it at -points/2.
                (inner, -2.0, 0.0)
            }
        };
        let max_in = inner.input_frames_max();
        Self {
            inner,
            channels,
            base_ratio,
            init_last_index,
            delay,
            resample_ratio: base_ratio,
            target_ratio: base_ratio,
            last_index: init_last_index,
            feed_next: 0,
            input: vec![0.0; max_in * channels],
            output: vec![0.0; MAX_CHUNK * channels],
            positions: vec![0.0; MAX_CHUNK],
        }
    }

    /// Channels in `output()`: 1 or 2.
    pub(crate) fn channels(&self) -> usize {
        self.channels
    }

    fn ratio_for(&self, ppm: f64) -> f64 {
        self.base_ratio / (1.0 + clamp_ppm(ppm) * 1e-6)
    }

    fn bounded(&self, ratio: f64) -> f64 {
        // Stay a hair inside rubato's bounds so rounding never makes it refuse.
        let lo = self.base_ratio / MAX_RELATIVE_RATIO * (1.0 + 1e-9);
        let hi = self.base_ratio * MAX_RELATIVE_RATIO * (1.0 - 1e-9);
        ratio.clamp(lo, hi)
    }

    fn set_ratio(&mut self, ratio: f64, ramp: bool) {
        let ratio = self.bounded(ratio);
        if self.inner.set_resample_ratio(ratio, ramp).is_ok() {
            if !ramp {
                self.resample_ratio = ratio;
            }
            self.target_ratio = ratio;
        }
    }

    /// Changes the fine rate; the change is ramped linearly over the next chunk.
    pub(crate) fn set_rate_ppm(&mut self, ppm: f64) {
        let ratio = self.ratio_for(ppm);
        self.set_ratio(ratio, true);
    }

    /// Restarts so that the next output slot plays song position `position` (fractional
    /// frames), continuing at `ppm`. Renders one discarded chunk (see the module comment).
    pub(crate) fn prime(&mut self, song: &Song, position: f64, ppm: f64) {
        self.inner.reset();
        self.resample_ratio = self.base_ratio;
        self.target_ratio = self.base_ratio;
        self.last_index = self.init_last_index;

        let ratio = self.bounded(self.ratio_for(ppm));
        let step = 1.0 / ratio;
        // Position of the first kept slot = feed_origin + init + n * step_pre + step + delay.
        let n = MAX_CHUNK as f64;
        let x = position - self.init_last_index - step - self.delay;
        let feed_origin = (x - n * step).round();
        let step_pre = (x - feed_origin) / n;
        self.set_ratio(1.0 / step_pre, false);
        self.feed_next = feed_origin as i64;
        self.process(song, MAX_CHUNK);
        self.set_ratio(ratio, false);
    }

    /// Song position the next output slot will play if the ratio does not change.
    pub(crate) fn next_position(&self) -> f64 {
        self.feed_next as f64 + self.last_index + 1.0 / self.resample_ratio + self.delay
    }

    /// Renders `frames` (≤ `MAX_CHUNK`) output frames. Afterwards `output()` holds them
    /// interleaved and `positions()` the song position of each. Returns false if rubato
    /// refused (it cannot with the buffers sized here; the caller then plays silence).
    pub(crate) fn process(&mut self, song: &Song, frames: usize) -> bool {
        let frames = frames.clamp(1, MAX_CHUNK);
        if self.inner.set_chunk_size(frames).is_err() {
            return false;
        }
        let need = self.inner.input_frames_next();
        let ch = self.channels;
        if need * ch > self.input.len() {
            return false;
        }
        self.feed(song, need);
        let result = {
            let input = InterleavedSlice::new(&self.input[..need * ch], ch, need);
            let output = InterleavedSlice::new_mut(&mut self.output[..frames * ch], ch, frames);
            match (input, output) {
                (Ok(input), Ok(mut output)) => self
                    .inner
                    .process_into_buffer(&input, &mut output, None)
                    .ok(),
                _ => None,
            }
        };
        let Some((consumed, produced)) = result else {
            return false;
        };
        // The mirror: rubato's inner loop is `t_ratio += increment; index += t_ratio`.
        let mut t_ratio = 1.0 / self.resample_ratio;
        let increment = (1.0 / self.target_ratio - 1.0 / self.resample_ratio) / produced as f64;
        let mut index = self.last_index;
        let origin = self.feed_next as f64 + self.delay;
        for p in &mut self.positions[..produced] {
            t_ratio += increment;
            index += t_ratio;
            *p = origin + index;
        }
        self.last_index = index - consumed as f64;
        self.resample_ratio = self.target_ratio;
        self.feed_next += consumed as i64;
        produced == frames
    }

    /// Copies `frames` source frames from `feed_next` into the input buffer: the first one or
    /// two channels, zeros outside the song.
    fn feed(&mut self, song: &Song, frames: usize) {
        let ch = self.channels;
        song.read_frames(self.feed_next, frames, &mut self.input, ch);
    }

    /// The last rendered frames, interleaved with `channels()` channels.
    pub(crate) fn output(&self) -> &[f32] {
        &self.output
    }

    /// Song position of each of the last rendered frames.
    pub(crate) fn positions(&self) -> &[f64] {
        &self.positions
    }
}

/// Clamps a fine rate to the supported range; NaN means 0.
pub(crate) fn clamp_ppm(ppm: f64) -> f64 {
    if ppm.is_nan() {
        0.0
    } else {
        ppm.clamp(-MAX_RATE_PPM, MAX_RATE_PPM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stereo ramp: left is `frame - CENTER`, right its negation, so any channel mix-up shows.
    /// Centring keeps the values small where they are checked: the sinc kernel's DC gain is
    /// 1 + 3e-6, which would otherwise show as a position error proportional to the value.
    fn ramp_song(rate: u32, frames: usize) -> Song {
        let mut s = Vec::with_capacity(frames * 2);
        for i in 0..frames {
            s.push((i as f64 - CENTER) as f32);
            s.push(-(i as f64 - CENTER) as f32);
        }
        Song::from_interleaved(rate, 2, s).unwrap()
    }

    const CENTER: f64 = 10_000.0;

    /// Renders `chunks` chunks of `chunk` frames and checks every output sample equals the
    /// mirrored position to within `tol` frames (a ramp interpolates to its own position).
    fn check_ramp(r: &mut FineResampler, song: &Song, chunks: usize, chunk: usize, tol: f64) {
        for _ in 0..chunks {
            assert!(r.process(song, chunk));
            for i in 0..chunk {
                let p = r.positions()[i];
                let left = f64::from(r.output()[2 * i]) + CENTER;
                let right = f64::from(r.output()[2 * i + 1]) - CENTER;
                // Allow for the kernel's DC gain (value-proportional), not for an offset.
                let tol = tol + 4e-6 * (p - CENTER).abs();
                assert!((left - p).abs() < tol, "left {left} at position {p}");
                assert!((right + p).abs() < tol, "right {right} at position {p}");
            }
        }
    }

    #[test]
    fn cubic_positions_match_rubato_output_across_rate_ramps() {
        let song = ramp_song(44_100, 200_000);
        let mut r = FineResampler::new(44_100, 2, 48_000, Resampling::Cubic);
        r.prime(&song, 1000.25, 0.0);
        assert!(
            (r.next_position() - 1000.25).abs() < 1e-9,
            "{}",
            r.next_position()
        );
        check_ramp(&mut r, &song, 10, 512, 2e-3);
        r.set_rate_ppm(1000.0);
        check_ramp(&mut r, &song, 10, 300, 2e-3);
        r.set_rate_ppm(-1000.0);
        check_ramp(&mut r, &song, 10, 37, 2e-3);
    }

    #[test]
    fn sinc_positions_match_rubato_output_including_filter_delay() {
        let song = ramp_song(48_000, 200_000);
        let mut r = FineResampler::new(48_000, 2, 48_000, Resampling::Sinc);
        r.prime(&song, 8000.6, 250.0);
        assert!((r.next_position() - 8000.6).abs() < 1e-9);
        // The ramp is not band-limited only at its start, far behind the filter here.
        check_ramp(&mut r, &song, 10, 1000, 2e-3);
        r.set_rate_ppm(-800.0);
        check_ramp(&mut r, &song, 20, 128, 2e-3);
    }

    #[test]
    fn primed_start_lands_on_the_requested_position_for_many_phases() {
        let song = ramp_song(22_050, 100_000);
        let mut r = FineResampler::new(22_050, 2, 48_000, Resampling::Cubic);
        for k in 0..50 {
            let target = 100.0 + k as f64 * 97.37;
            r.prime(&song, target, (k as f64 - 25.0) * 40.0);
            assert!(r.process(&song, 64));
            assert!(
                (r.positions()[0] - target).abs() < 1e-6,
                "{} vs {target}",
                r.positions()[0]
            );
            assert!((f64::from(r.output()[0]) + CENTER - target).abs() < 2e-3);
        }
    }
}
