//! The paced sinks in real time: null paced by a skewed clock, the WAV recorder, and the
//! device-to-null fallback. Timing tolerances are generous on purpose.

use std::sync::Arc;
use std::time::Duration;

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

/// Frames per second of host time the player plays, from two of its position reports `window`
/// apart; `to_host` maps a report's instant (in the player's clock) to host time. The reports'
/// own instants are used, not when they were read, so a starved test thread does not matter.
fn measure_rate(player: &Player, to_host: impl Fn(u64) -> u64, window: Duration) -> f64 {
    let p1 = player.position().unwrap();
    std::thread::sleep(window);
    let p2 = player.position().unwrap();
    let host_s = (to_host(p2.instant_ns) as f64 - to_host(p1.instant_ns) as f64) * 1e-9;
    (p2.frame - p1.frame) / host_s
}

#[test]
fn null_sink_paced_by_a_fast_clock_consumes_frames_faster_in_host_time() {
    let base: Arc<dyn Clock> = Arc::new(SystemClock);
    let skewed_clock = Arc::new(SkewedClock::new(base.clone(), 3_000_000_000, 50_000.0));
    let fast: Arc<dyn Clock> = skewed_clock.clone();
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
    let nominal_rate = measure_rate(&nominal, |t| t, Duration::from_millis(600));
    let skewed_rate = measure_rate(
        &skewed,
        |t| skewed_clock.to_base(t),
        Duration::from_millis(600),
    );
    let nominal_ppm = (nominal_rate / 48_000.0 - 1.0) * 1e6;
    let skewed_ppm = (skewed_rate / 48_000.0 - 1.0) * 1e6;
    println!("nominal clock: {nominal_ppm:.1} ppm, clock at +50000 ppm: {skewed_ppm:.1} ppm");
    assert!(nominal_ppm.abs() < 100.0, "nominal sink: {nominal_ppm} ppm");
    assert!(
        (skewed_ppm - 50_000.0).abs() < 100.0,
        "skewed sink: {skewed_ppm} ppm"
    );
    // And it keeps pace with its clock: what it reports heard is what is due now, give or take
    // its buffer and a busy machine, not seconds ahead or behind.
    for (player, clock) in [(&nominal, &base), (&skewed, &fast)] {
        let report = player.position().unwrap();
        let now = clock.now_ns();
        assert!(
            report.instant_ns > now - 500_000_000 && report.instant_ns <= now + 100_000_000,
            "report at {} for now {now}",
            report.instant_ns
        );
    }
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
