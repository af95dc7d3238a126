//! The device probe (`PlayerConfig::device_probe`) on the real cpal path: ALSA's `null` PCM.

use std::sync::Arc;
use std::time::Duration;

use player::{Clock, PlaybackState, Player, PlayerConfig, SinkSpec, Song, SystemClock};

#[test]
fn the_device_probe_records_every_callback_when_the_stream_closes() {
    if !std::path::Path::new("/usr/share/alsa/alsa.conf").exists() {
        println!("SKIPPED: /usr/share/alsa/alsa.conf is missing (install libasound2-data)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callbacks.csv");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut config = PlayerConfig::new(SinkSpec::Device(Some("null".into())));
    config.device_probe = Some(path.clone());
    let player = Player::open(config, clock.clone())
        .unwrap_or_else(|e| panic!("ALSA's null device must open on this machine: {e}"));
    let rate = player.sink_rate();
    let song = Song::from_interleaved(rate, 2, vec![0.1f32; rate as usize * 2 * 60]).unwrap();
    player.load(Arc::new(song));
    player.start_at(0, clock.now_ns());
    let deadline = clock.now_ns() + 5_000_000_000;
    while player.state() != PlaybackState::Playing {
        assert!(
            clock.now_ns() < deadline,
            "callbacks never started the song"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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
        Some("host_ns,first_slot_ns,latency_ns,frames,broke,learnt_delay_ns")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.len() > 10, "{} callbacks recorded", rows.len());
    let mut last = 0u64;
    for r in &rows {
        assert_eq!(r.len(), 6, "{r:?}");
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
    }
}
