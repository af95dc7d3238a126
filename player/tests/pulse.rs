//! A paced sound device: cpal → ALSA's pulse plugin → a private PulseAudio null sink.
//!
//! Ignored by default because it needs a PulseAudio server. Run it with
//! `player/scripts/pulse-test.sh`, which starts a private server (its own runtime directory, a
//! null sink, no D-Bus), points `PULSE_SERVER` at it, runs this test and stops the server.

use std::sync::Arc;
use std::time::Duration;

use player::{Clock, Player, PlayerConfig, SinkKind, SinkSpec, Song, SystemClock};

#[test]
#[ignore = "needs a PulseAudio server: run player/scripts/pulse-test.sh"]
fn pulse_null_sink_position_advances_at_the_device_rate() {
    assert!(
        std::env::var_os("PULSE_SERVER").is_some(),
        "PULSE_SERVER is not set: run player/scripts/pulse-test.sh"
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut config = PlayerConfig::new(SinkSpec::Device(Some("pulse".into())));
    config.sink_rate = Some(48_000);
    let player = Player::open(config, clock.clone()).expect("the pulse device opens");
    assert!(matches!(player.sink_kind(), SinkKind::Device { name, .. } if name == "pulse"));
    let rate = player.sink_rate();
    let samples: Vec<f32> = (0..rate as usize * 20)
        .flat_map(|i| {
            let s = (i as f32 * 0.05).sin() * 0.5;
            [s, s]
        })
        .collect();
    player.load(Arc::new(Song::from_interleaved(rate, 2, samples).unwrap()));
    player.start_at(0, clock.now_ns() + 50_000_000);
    // ALSA's pulse plugin queues a long buffer of silence when the stream opens, before any
    // command exists; wait until the start has come through.
    let deadline = clock.now_ns() + 10_000_000_000;
    while player.state() != player::PlaybackState::Playing {
        assert!(
            clock.now_ns() < deadline,
            "never started playing: {:?}",
            player.take_events()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));

    let h1 = clock.now_ns();
    let r1 = player.position().expect("callbacks are running");
    std::thread::sleep(Duration::from_millis(1500));
    let h2 = clock.now_ns();
    let r2 = player.position().unwrap();
    let per_host_second = (r2.frame - r1.frame) / ((h2 - h1) as f64 * 1e-9);
    let per_report_second = (r2.frame - r1.frame) / ((r2.instant_ns - r1.instant_ns) as f64 * 1e-9);
    println!(
        "rate {rate}: {per_host_second:.0} frames per host second, {per_report_second:.1} per reported second, \
         latency ahead of the clock {:.1} ms, events {:?}",
        (r2.instant_ns as f64 - h2 as f64) / 1e6,
        player.take_events()
    );
    // Paced: the song advances at the device rate in real time (the server's clock is the host's).
    assert!(
        (per_host_second / f64::from(rate) - 1.0).abs() < 0.03,
        "{per_host_second}"
    );
    assert!(
        (per_report_second / f64::from(rate) - 1.0).abs() < 0.01,
        "{per_report_second}"
    );
    // The reported instant is when the frame is heard: now plus a latency below a second.
    assert!(r2.instant_ns + 100_000_000 > h2 && r2.instant_ns < h2 + 1_000_000_000);
}
