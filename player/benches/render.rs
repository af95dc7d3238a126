//! Cost of playing one second of audio: decoding it from WAV bytes, resampling it and rendering
//! it into an output buffer, as a share of one core.
//!
//! `cargo bench -p player --bench render`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use player::{
    Control, RenderConfig, Renderer, Resampling, Song, WavEncoding, decode_wav_bytes, encode_wav,
    render_core,
};

const SINK_RATE: u32 = 48_000;
const BLOCK: usize = 480;

fn music_like(rate: u32, seconds: usize) -> Song {
    // A chord with some noise: every interpolator tap does real work.
    let mut x: u32 = 1;
    let samples: Vec<f32> = (0..rate as usize * seconds)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let noise = (x as f32 / u32::MAX as f32 - 0.5) * 0.05;
            let l = 0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin() + noise;
            let r = 0.3 * (2.0 * std::f32::consts::PI * 331.0 * t).sin() - noise;
            [l, r]
        })
        .collect();
    Song::from_interleaved(rate, 2, samples).unwrap()
}

/// A renderer playing a long song, with its own slot clock.
struct Playing {
    control: Control,
    renderer: Renderer,
    slot: u64,
    buffer: Vec<f32>,
}

impl Playing {
    fn new(song_rate: u32, resampling: Resampling, ppm: f64) -> Self {
        let (control, renderer) = render_core(RenderConfig {
            sink_rate: SINK_RATE,
            channels: 2,
            resampling,
        });
        control.load(Arc::new(music_like(song_rate, 30)));
        control.set_rate_ppm(ppm);
        control.start_at(0, 0);
        Self {
            control,
            renderer,
            slot: 0,
            buffer: vec![0.0; BLOCK * 2],
        }
    }

    /// Renders one second of output, restarting the song when it ends.
    fn second(&mut self) {
        for _ in 0..SINK_RATE as usize / BLOCK {
            let at = self.slot * 1_000_000_000 / u64::from(SINK_RATE);
            self.renderer.render(&mut self.buffer, at);
            black_box(&self.buffer);
            self.slot += BLOCK as u64;
        }
        if self.control.state() == player::PlaybackState::Stopped {
            let at = self.slot * 1_000_000_000 / u64::from(SINK_RATE);
            self.control.start_at(0, at);
        }
    }
}

fn one_second_wav(rate: u32) -> Vec<u8> {
    encode_wav(&music_like(rate, 1), WavEncoding::Pcm16).unwrap()
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("one second of 48 kHz stereo output");
    group.throughput(Throughput::Elements(u64::from(SINK_RATE)));
    let wav_44k1 = one_second_wav(44_100);
    group.bench_function("decode 44.1 kHz 16-bit WAV", |b| {
        b.iter(|| decode_wav_bytes(black_box(&wav_44k1)).unwrap())
    });
    for (name, song_rate, resampling, ppm) in [
        ("render 44.1 kHz song, sinc", 44_100, Resampling::Sinc, 0.0),
        (
            "render 48 kHz song at +500 ppm, sinc",
            48_000,
            Resampling::Sinc,
            500.0,
        ),
        (
            "render 44.1 kHz song, cubic",
            44_100,
            Resampling::Cubic,
            0.0,
        ),
    ] {
        let mut playing = Playing::new(song_rate, resampling, ppm);
        group.bench_function(name, |b| b.iter(|| playing.second()));
    }
    group.finish();
}

/// CPU time this thread has used: unlike wall time it does not grow when other processes
/// compete for the cores (benchmarks here share two cores with builds).
fn thread_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The headline figure: decode + resample + render, CPU time per second of audio.
fn share_of_one_core() {
    let wav = one_second_wav(44_100);
    let mut playing = Playing::new(44_100, Resampling::Sinc, 0.0);
    playing.second(); // warm up
    let seconds = 60;
    let (wall, cpu) = (Instant::now(), thread_cpu());
    for _ in 0..seconds {
        black_box(decode_wav_bytes(&wav).unwrap());
        playing.second();
    }
    let cpu = (thread_cpu() - cpu) / seconds;
    let wall = wall.elapsed() / seconds;
    println!(
        "decode + resample (44.1 -> 48 kHz, sinc) + render, stereo, per second of audio: \
         {:.2} ms CPU = {:.2} % of one core ({:.2} ms wall)",
        cpu.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 100.0,
        wall.as_secs_f64() * 1e3,
    );
}

fn main() {
    share_of_one_core();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
