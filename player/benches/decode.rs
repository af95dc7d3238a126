//! Cost of decoding one second of 44.1 kHz stereo audio, per format: WAV (hound), FLAC, MP3
//! and Ogg Vorbis (symphonia), from the fixtures of `tests/data/formats` (half a second each,
//! made from one source by `make.sh`).
//!
//! `cargo bench -p player --bench decode`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use player::decode_bytes;

const FORMATS: [(&str, &str); 4] = [
    ("WAV 16-bit", "source.wav"),
    ("FLAC", "sweep.flac"),
    ("MP3 192 kbit/s", "sweep.mp3"),
    ("Ogg Vorbis q5", "sweep.ogg"),
];

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/formats")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// CPU time this thread has used (benchmarks here share two cores with builds).
fn thread_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The headline figures: CPU time to decode one second of audio, per format.
fn per_second_of_audio() {
    for (label, name) in FORMATS {
        let bytes = fixture(name);
        let song = decode_bytes(&bytes).unwrap().song;
        let seconds_per_decode = song.frames as f64 / f64::from(song.sample_rate);
        let runs = 200;
        let cpu = thread_cpu();
        for _ in 0..runs {
            black_box(decode_bytes(black_box(&bytes)).unwrap());
        }
        let per_second = (thread_cpu() - cpu).as_secs_f64() / (runs as f64 * seconds_per_decode);
        println!(
            "decode {label}, 44.1 kHz stereo: {:.3} ms CPU per second of audio = {:.3} % of one \
             core",
            per_second * 1e3,
            per_second * 100.0
        );
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode half a second of 44.1 kHz stereo");
    group.throughput(Throughput::Elements(22_050));
    for (label, name) in FORMATS {
        let bytes = fixture(name);
        group.bench_function(label, |b| {
            b.iter(|| decode_bytes(black_box(&bytes)).unwrap())
        });
    }
    group.finish();
}

fn main() {
    per_second_of_audio();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
