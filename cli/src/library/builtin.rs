//! The built-in library: four generated songs, so that a first run works with no files at all.

use std::sync::Arc;

use player::{Song, WavEncoding, encode_wav};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::{LibrarySong, SongSource, song_info};

const RATE: u32 = 48_000;

fn to_library(name: &str, song: Song) -> LibrarySong {
    let bytes = encode_wav(&song, WavEncoding::Pcm16).expect("generated songs encode");
    let info = song_info(name, &bytes).expect("generated songs decode");
    LibrarySong {
        info,
        source: SongSource::Memory(Arc::from(bytes)),
    }
}

/// Bell-like tones on a pentatonic scale, one every half second, 30 s, stereo.
fn chimes() -> Song {
    let frames = 30 * RATE as usize;
    let notes = [523.25, 587.33, 659.25, 783.99, 880.0, 1046.5];
    let mut samples = vec![0f32; frames * 2];
    for n in 0..60 {
        let f = notes[(n * 7 + n / 3) % notes.len()];
        let start = n * RATE as usize / 2;
        let pan = (n % 5) as f32 / 4.0;
        for i in 0..(2 * RATE as usize).min(frames - start) {
            let t = i as f32 / RATE as f32;
            let env = (-3.0 * t).exp() * 0.18;
            let v = env
                * ((2.0 * std::f32::consts::PI * f * t).sin()
                    + 0.4 * (2.0 * std::f32::consts::PI * 2.76 * f * t).sin());
            samples[(start + i) * 2] += v * (1.0 - pan);
            samples[(start + i) * 2 + 1] += v * pan;
        }
    }
    Song::from_interleaved(RATE, 2, samples).expect("valid song")
}

/// A drum groove of noise bursts and a low kick, 30 s, stereo: noise-like material whose
/// cross-correlation has a sharp peak, which is what sync measurements on the sound need.
fn noise_groove() -> Song {
    let frames = 30 * RATE as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(262);
    let mut samples = vec![0f32; frames * 2];
    let beat = RATE as usize / 4; // 240 bpm sixteenth-ish grid
    for i in 0..frames {
        let in_beat = i % beat;
        let step = i / beat;
        let t = in_beat as f32 / RATE as f32;
        let noise = (rng.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0;
        let hat = noise * (-40.0 * t).exp() * if step.is_multiple_of(2) { 0.25 } else { 0.5 };
        let kick = if step.is_multiple_of(4) {
            (2.0 * std::f32::consts::PI * (50.0 + 60.0 * (-20.0 * t).exp()) * t).sin()
                * (-8.0 * t).exp()
                * 0.6
        } else {
            0.0
        };
        // A quiet noise bed keeps every window correlatable.
        let bed = noise * 0.05;
        samples[i * 2] = hat + kick + bed;
        samples[i * 2 + 1] = hat * 0.8 + kick + bed;
    }
    Song::from_interleaved(RATE, 2, samples).expect("valid song")
}

/// A slow logarithmic sine sweep, 20 s, mono at 44.1 kHz (exercises resampling).
pub(crate) fn sweep() -> Song {
    let rate = 44_100u32;
    let frames = 20 * rate as usize;
    let (f0, f1) = (110f64, 3520f64);
    let k = (f1 / f0).ln() / frames as f64;
    let samples: Vec<f32> = (0..frames)
        .map(|i| {
            let phase =
                2.0 * std::f64::consts::PI * f0 * ((k * i as f64).exp() - 1.0) / (k * rate as f64);
            (phase.sin() * 0.3) as f32
        })
        .collect();
    Song::from_interleaved(rate, 1, samples).expect("valid song")
}

/// The song the peer-to-peer guide's example plays (`play sample_song.wav`): a short tune
/// (a melody over a bass line at 120 beats a minute), 45 s, stereo, so the guide works as
/// written on a server started without any files.
fn sample_song() -> Song {
    let frames = 45 * RATE as usize;
    let eighth = RATE as usize / 4;
    // A minor pentatonic phrase, eight bars of eight eighth notes, repeated; 0 is a rest.
    let melody = [
        440.0, 523.25, 587.33, 659.25, 587.33, 523.25, 440.0, 0.0, //
        392.0, 440.0, 523.25, 440.0, 392.0, 329.63, 392.0, 0.0, //
        440.0, 523.25, 659.25, 783.99, 659.25, 587.33, 523.25, 587.33, //
        659.25, 587.33, 523.25, 440.0, 392.0, 440.0, 440.0, 0.0,
    ];
    let bass = [110.0, 98.0, 87.31, 98.0];
    let mut samples = vec![0f32; frames * 2];
    let mut add = |start: usize, len: usize, f: f32, gain: f32, pan: f32, bright: f32| {
        for i in 0..len.min(frames.saturating_sub(start)) {
            let t = i as f32 / RATE as f32;
            // A fast attack avoids a click at the onset; the decay makes it a plucked note.
            let env = (1.0 - (-400.0 * t).exp()) * (-4.0 * t).exp() * gain;
            let w = 2.0 * std::f32::consts::PI * f * t;
            let v = env * (w.sin() + bright * (2.0 * w).sin() + bright * 0.5 * (3.0 * w).sin());
            samples[(start + i) * 2] += v * (1.0 - pan);
            samples[(start + i) * 2 + 1] += v * pan;
        }
    };
    for step in 0..frames / eighth {
        let f = melody[step % melody.len()];
        if f > 0.0 {
            add(step * eighth, 2 * eighth, f, 0.16, 0.6, 0.3);
        }
        if step % 2 == 0 {
            let root = bass[(step / 16) % bass.len()];
            add(step * eighth, 2 * eighth, root, 0.22, 0.4, 0.5);
        }
    }
    Song::from_interleaved(RATE, 2, samples).expect("valid song")
}

/// The built-in library: four generated songs.
pub fn builtin() -> Vec<LibrarySong> {
    vec![
        to_library("chimes.wav", chimes()),
        to_library("noise-groove.wav", noise_groove()),
        to_library("sweep-44k-mono.wav", sweep()),
        to_library("sample_song.wav", sample_song()),
    ]
}
