//! The real cpal path on this machine's sound devices.

use std::sync::Arc;
use std::time::Duration;

use player::{Player, PlayerConfig, SinkKind, SinkSpec, Song, SystemClock};

#[test]
fn alsa_null_device_runs_callbacks_and_consumes_frames() {
    let clock = Arc::new(SystemClock);
    let config = PlayerConfig::new(SinkSpec::Device(Some("null".into())));
    let player = match Player::open(config, clock.clone()) {
        Ok(p) => p,
        Err(e) => panic!("ALSA null device must open here (install libasound2): {e}"),
    };
    assert!(matches!(player.sink_kind(), SinkKind::Device { name, .. } if name == "null"));
    let rate = player.sink_rate();
    let song = Song::from_interleaved(rate, 2, vec![0.1f32; rate as usize * 2 * 10]).unwrap();
    player.load(Arc::new(song));
    player.start_at(0, clock.now_ns_for_test());
    std::thread::sleep(Duration::from_millis(300));
    let a = player.position().expect("callbacks must have run");
    std::thread::sleep(Duration::from_millis(200));
    let b = player.position().expect("callbacks keep running");
    println!("{a:?} {b:?} events {:?}", player.take_events());
    assert!(b.instant_ns > a.instant_ns);
    assert!(b.frame > a.frame);
}

trait NowForTest {
    fn now_ns_for_test(&self) -> u64;
}
impl NowForTest for Arc<SystemClock> {
    fn now_ns_for_test(&self) -> u64 {
        player::Clock::now_ns(&**self)
    }
}
