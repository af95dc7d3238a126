//! The real cpal path on this machine: ALSA's `null` PCM, which needs no sound card. It is not
//! paced (it accepts frames as fast as they come), so this proves that the stream opens,
//! callbacks fire and the renderer's frames are consumed, not timing.

use std::sync::Arc;
use std::time::Duration;

use player::{Clock, PlaybackState, Player, PlayerConfig, SinkKind, SinkSpec, Song, SystemClock};

#[test]
fn alsa_null_device_runs_callbacks_and_consumes_frames() {
    if !std::path::Path::new("/usr/share/alsa/alsa.conf").exists() {
        // Without ALSA's configuration there is no `null` PCM to open; nothing to test here.
        println!("SKIPPED: /usr/share/alsa/alsa.conf is missing (install libasound2-data)");
        return;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = PlayerConfig::new(SinkSpec::Device(Some("null".into())));
    let player = Player::open(config, clock.clone())
        .unwrap_or_else(|e| panic!("ALSA's null device must open on this machine: {e}"));
    assert!(
        matches!(player.sink_kind(), SinkKind::Device { name, .. } if name == "null"),
        "{:?}",
        player.sink_kind()
    );
    assert!(player.fallback_note().is_none());
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
