//! The paced sinks in real time: null paced by a skewed clock, the WAV recorder, and the
//! device-to-null fallback. The pacing test measures against the host's clock (`Instant`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use player::{
    Clock, Player, PlayerConfig, PlayerError, Resampling, SinkKind, SinkSpec, SkewedClock, Song,
    SystemClock, decode_wav_file,
};

fn noise_song(rate: u32, frames: usize) -> Arc<Song> {
    let mut x: u32 = 0x9E37_79B9;
    let samples: Vec<f32> = (0..frames * 2)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) - 0.5
        })
        .collect();
    Arc::new(Song::from_interleaved(rate, 2, samples).unwrap())
}

/// Where two players were at one host instant.
struct Sample {
    host: Instant,
    frames: [f64; 2],
}

/// Reads both players' positions against the host's monotonic clock (`Instant`) every
/// millisecond for `window`.
fn sample(players: [&Player; 2], window: Duration) -> Vec<Sample> {
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < window {
        let frames = players.map(|p| p.position().unwrap().frame);
        samples.push(Sample {
            host: Instant::now(),
            frames,
        });
        std::thread::sleep(Duration::from_millis(1));
    }
    samples
}

/// Frames per host second of player `which` in `samples`. A paced sink never plays a frame before its instant, so a sample lies on its timeline
/// or behind it by how late the sink and this thread were, never ahead: the timeline is the
/// upper convex hull of (host instant, frame), and what a starved machine delayed lies below it
/// and does not count. Nothing but the frames comes from the sink.
fn host_rate(samples: &[Sample], which: usize) -> f64 {
    let point = |s: &Sample| ((s.host - samples[0].host).as_secs_f64(), s.frames[which]);
    // Andrew's monotone chain: the samples are in host order already.
    let mut hull: Vec<(f64, f64)> = Vec::new();
    for p in samples.iter().map(point) {
        // Drop the last vertex while it lies on or below the line from the one before to p.
        while let [.., a, b] = hull[..]
            && (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0) >= 0.0
        {
            hull.pop();
        }
        hull.push(p);
    }
    // The first and last second may hold the start's and the end's transients (a sink catching
    // up after a stall lies on the hull there): the rate is the hull's rise between one second
    // in and one second before the end, read off the hull between its vertices.
    let end = hull[hull.len() - 1].0;
    assert!(end > 2.5, "samples span only {end:.2} s");
    let at = |t: f64| {
        let i = hull.partition_point(|v| v.0 <= t).clamp(1, hull.len() - 1);
        let (a, b) = (hull[i - 1], hull[i]);
        a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0)
    };
    let (from, to) = (1.0, end - 1.0);
    (at(to) - at(from)) / (to - from)
}

/// The window the pacing test samples over (the rate is measured over all but its first and
/// last second).
const PACING_WINDOW: Duration = Duration::from_secs(6);
/// The bound on a paced sink's rate against the host's clock: 400 ppm is 1.6 ms over 4 s, more
/// than the least lateness among thousands of samples on a loaded machine, and far below the
/// +50,000 ppm the skewed clock must show.
const PACING_PPM: f64 = 400.0;

#[test]
fn null_sink_paced_by_a_fast_clock_consumes_frames_faster_in_host_time() {
    let base: Arc<dyn Clock> = Arc::new(SystemClock);
    let fast: Arc<dyn Clock> = Arc::new(SkewedClock::new(base.clone(), 3_000_000_000, 50_000.0));
    let song = noise_song(48_000, 48_000 * 10);
    let open = |clock: &Arc<dyn Clock>| {
        let player = Player::open(PlayerConfig::new(SinkSpec::Null), clock.clone()).unwrap();
        assert_eq!(player.sink_kind(), &SinkKind::Null);
        player.load(song.clone());
        player.start_at(0, clock.now_ns() + 20_000_000);
        player
    };
    let nominal = open(&base);
    let skewed = open(&fast);
    std::thread::sleep(Duration::from_millis(100));
    let samples = sample([&nominal, &skewed], PACING_WINDOW);
    let ppm = |which| (host_rate(&samples, which) / 48_000.0 - 1.0) * 1e6;
    let (nominal_ppm, skewed_ppm) = (ppm(0), ppm(1));
    println!(
        "per host second: nominal clock {nominal_ppm:.1} ppm, clock at +50000 ppm {skewed_ppm:.1} ppm"
    );
    assert!(
        nominal_ppm.abs() < PACING_PPM,
        "nominal sink: {nominal_ppm} ppm"
    );
    assert!(
        (skewed_ppm - 50_000.0).abs() < PACING_PPM,
        "skewed sink: {skewed_ppm} ppm"
    );
}

/// A player recording into `path`, paced by the host clock, with the cubic interpolator.
fn open_wav_player(path: &std::path::Path) -> Player {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut config = PlayerConfig::new(SinkSpec::Wav(path.to_path_buf()));
    config.resampling = Resampling::Cubic;
    Player::open(config, clock).unwrap()
}

#[test]
fn wav_sink_records_the_song_from_the_slot_of_its_start_instant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heard.wav");
    let player = open_wav_player(&path);
    assert_eq!(player.sink_kind(), &SinkKind::Wav(path.clone()));
    let origin = player.paced_origin_ns().unwrap();
    let song = noise_song(48_000, 48_000);
    player.load(song.clone());
    // Slot 4800 is heard at origin + 100 ms.
    player.start_at(0, origin + 100_000_000);
    std::thread::sleep(Duration::from_millis(400));
    player.close();
    let heard = decode_wav_file(&path).unwrap();
    assert_eq!((heard.sample_rate, heard.channels), (48_000, 2));
    assert!(
        heard.frames > 10_000,
        "only {} frames recorded",
        heard.frames
    );
    assert_song_starts_at_slot(&heard, &song, 4800, heard.frames);
}

/// Asserts that the recording is silent before `first` and is the song from there, up to slot
/// `until`.
fn assert_song_starts_at_slot(heard: &Song, song: &Song, first: u64, until: u64) {
    for slot in 0..until {
        let got = heard.frame(slot).unwrap();
        if slot < first {
            assert_eq!(got, &[0.0, 0.0], "slot {slot} before the start");
        } else {
            let want = song.frame(slot - first).unwrap();
            assert!(
                (got[0] - want[0]).abs() < 1e-4 && (got[1] - want[1]).abs() < 1e-4,
                "slot {slot}: {got:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn a_declared_output_latency_starts_the_song_that_much_earlier_and_reports_it_heard_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heard.wav");
    let player = open_wav_player(&path);
    // A receiver that adds 30 ms (1440 slots at 48 kHz) behind the sink.
    player.set_output_latency_ns(30_000_000);
    assert_eq!(player.output_latency_ns(), 30_000_000);
    let origin = player.paced_origin_ns().unwrap();
    let song = noise_song(48_000, 48_000);
    player.load(song.clone());
    player.start_at(0, origin + 100_000_000);
    std::thread::sleep(Duration::from_millis(400));
    // The report says which frame is heard when: 30 ms after the sink's slot.
    let pos = player.position().unwrap();
    let slot_heard = (pos.instant_ns - origin) as f64 * 48_000.0 / 1e9;
    let slot_left_sink = slot_heard - 1440.0;
    assert!(
        (slot_left_sink - (pos.frame + 3360.0)).abs() < 1.0,
        "frame {} reported at slot {slot_heard:.1} of the heard timeline",
        pos.frame
    );
    player.close();
    let heard = decode_wav_file(&path).unwrap();
    let first = 4800 - 1440;
    assert_song_starts_at_slot(&heard, &song, first, first + 2000);
}

#[test]
fn an_unopenable_device_falls_back_to_null_with_a_one_line_note() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut config = PlayerConfig::new(SinkSpec::Device(Some("no-such-device-music262".into())));
    config.fallback_to_null = true;
    let player = Player::open(config.clone(), clock.clone()).unwrap();
    assert_eq!(player.sink_kind(), &SinkKind::Null);
    let note = player.fallback_note().expect("a note saying why");
    assert!(
        note.contains("no-such-device-music262") && note.contains("null") && !note.contains('\n'),
        "{note}"
    );

    config.fallback_to_null = false;
    let err = Player::open(config, clock).unwrap_err();
    assert!(matches!(err, PlayerError::Device(_)), "{err}");
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn player_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Player>();
    shareable::<player::Control>();
    fn sendable<T: Send>() {}
    sendable::<player::Renderer>();
}
