//! The real cpal path on this machine: ALSA's `null` PCM, which needs no sound card. It is not
//! paced (it accepts frames as fast as they come), so this proves that the stream opens,
//! callbacks fire and the renderer's frames are consumed, not timing.
//!
//! A test whose precondition this machine lacks (ALSA's configuration, `CAP_SYS_NICE`) is
//! ignored with its reason, as `build.rs` finds; under CI (`CI=true`) none is ignored and a
//! missing precondition fails the test.

use std::sync::Arc;
use std::time::Duration;

use player::{Clock, PlaybackState, Player, PlayerConfig, SinkKind, SinkSpec, Song, SystemClock};

/// Why a test on ALSA's `null` device is ignored on this machine.
const NEEDS_ALSA: &str = "needs /usr/share/alsa/alsa.conf (install libasound2-data)";

/// A player on ALSA's `null` device with `config` applied, playing a minute of a constant
/// signal.
fn playing_on_alsa_null(config: impl FnOnce(&mut PlayerConfig)) -> (Player, Arc<dyn Clock>) {
    assert!(
        std::path::Path::new("/usr/share/alsa/alsa.conf").exists(),
        "{NEEDS_ALSA}: without ALSA's configuration there is no `null` PCM to open"
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut c = PlayerConfig::new(SinkSpec::Device(Some("null".into())));
    config(&mut c);
    let player = Player::open(c, clock.clone())
        .unwrap_or_else(|e| panic!("ALSA's null device must open on this machine: {e}"));
    let rate = player.sink_rate();
    assert!(rate >= 8000, "device rate {rate}");
    let song = Song::from_interleaved(rate, 2, vec![0.1f32; rate as usize * 2 * 60]).unwrap();
    player.load(Arc::new(song));
    player.start_at(0, clock.now_ns());
    let deadline = clock.now_ns() + 5_000_000_000;
    while player.state() != PlaybackState::Playing {
        assert!(
            clock.now_ns() < deadline,
            "callbacks never started the song: {:?}",
            player.take_events()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (player, clock)
}

#[test]
#[cfg_attr(
    no_alsa_conf,
    ignore = "needs /usr/share/alsa/alsa.conf (install libasound2-data)"
)]
fn alsa_null_device_runs_callbacks_and_consumes_frames() {
    let (player, _clock) = playing_on_alsa_null(|_| {});
    assert!(
        matches!(player.sink_kind(), SinkKind::Device { name, .. } if name == "null"),
        "{:?}",
        player.sink_kind()
    );
    assert!(player.fallback_note().is_none());
    let first = player.position().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let later = player.position().unwrap();
    assert!(
        later.instant_ns > first.instant_ns,
        "{first:?} -> {later:?}"
    );
    assert!(
        later.frame > first.frame + 1000.0,
        "frames consumed: {first:?} -> {later:?}"
    );
    let errors: Vec<_> = player
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, player::PlayerEvent::SinkLost(_)))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
#[cfg_attr(
    no_alsa_conf,
    ignore = "needs /usr/share/alsa/alsa.conf (install libasound2-data)"
)]
fn the_device_probe_records_every_callback_when_the_stream_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callbacks.csv");
    let (player, _clock) = playing_on_alsa_null(|c| c.device_probe = Some(path.clone()));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !path.exists(),
        "the record is written when the stream closes"
    );
    drop(player);

    let text = std::fs::read_to_string(&path).expect("the probe file is written");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("host_ns,first_slot_ns,latency_ns,frames,broke,moved,learnt_delay_ns")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.len() > 10, "{} callbacks recorded", rows.len());
    let mut last = 0u64;
    for r in &rows {
        assert_eq!(r.len(), 7, "{r:?}");
        let host: u64 = r[0].parse().unwrap();
        assert!(host >= last, "callbacks out of order: {r:?}");
        last = host;
        let first_slot: u64 = r[1].parse().unwrap();
        assert!(
            first_slot >= host,
            "a buffer heard before its callback: {r:?}"
        );
        assert!(r[3].parse::<u32>().unwrap() > 0, "{r:?}");
        assert!(r[4] == "0" || r[4] == "1", "{r:?}");
        assert!(r[5] == "0" || r[5] == "1", "{r:?}");
    }
}

#[test]
#[cfg_attr(
    no_alsa_conf,
    ignore = "needs /usr/share/alsa/alsa.conf (install libasound2-data)"
)]
fn a_requested_device_buffer_sets_the_period_the_callbacks_fill() {
    // ALSA's null PCM takes any period, so what is asked is what it runs: two periods of
    // 40 ms at the device's rate, and half of that for a 40 ms buffer.
    let mut periods = Vec::new();
    for ms in [80.0, 40.0] {
        let (player, _clock) = playing_on_alsa_null(|c| c.device_buffer_ms = Some(ms));
        let rate = player.sink_rate();
        let want = (ms * f64::from(rate) / 2000.0).round() as u32;
        assert_eq!(
            player.device_period_frames(),
            Some(want),
            "{ms} ms at {rate} Hz"
        );
        periods.push(want);
    }
    assert_eq!(periods[0], 2 * periods[1]);
}

/// The name and nice value in a thread's `stat` file (the nice value is the 19th field,
/// counted after the parenthesised name, which may hold spaces).
fn name_and_nice(stat_path: &std::path::Path) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    // After the name: the state is field 3.
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    Some((
        stat[open + 1..close].to_owned(),
        fields[19 - 3].parse().ok()?,
    ))
}

/// The nice values of this process's threads named `name`.
fn nice_of_threads(name: &str) -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|task| name_and_nice(&task.path().join("stat")))
        .filter(|(n, _)| n == name)
        .map(|(_, nice)| nice)
        .collect()
}

#[test]
#[cfg_attr(
    any(no_alsa_conf, no_cap_sys_nice),
    ignore = "needs /usr/share/alsa/alsa.conf and CAP_SYS_NICE (run as root)"
)]
fn the_device_threads_run_at_the_raised_priority_and_the_opener_does_not() {
    let me = std::path::Path::new("/proc/thread-self/stat");
    let (_, before) = name_and_nice(me).expect("this thread's stat");
    let (player, _clock) = playing_on_alsa_null(|_| {});
    let cpal_threads = nice_of_threads("cpal_alsa_out");
    assert!(!cpal_threads.is_empty(), "no cpal thread found");
    match player.audio_nice() {
        Some(Ok(nice)) => {
            assert_eq!(nice, player::AUDIO_NICE);
            assert!(cpal_threads.iter().all(|&n| n == nice), "{cpal_threads:?}");
        }
        Some(Err(why)) => panic!("raising the priority needs CAP_SYS_NICE: {why}"),
        None => panic!("the default configuration asks for a raised priority"),
    }
    assert_eq!(
        name_and_nice(me).unwrap().1,
        before,
        "the opener kept the priority"
    );
    drop(player);

    let (player, _clock) = playing_on_alsa_null(|c| c.audio_nice = None);
    assert_eq!(player.audio_nice(), None);
}
