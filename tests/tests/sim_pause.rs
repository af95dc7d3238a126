//! Pause measured on the sound (issue 31): where peers hold the same frame, the instants their
//! sound stopped, with skewed clocks (offsets ±5 s, drifts ±100 ppm), with the ideal player and
//! through the simulated device.

use music262_tests::device::DeviceProfile;
use music262_tests::scenario::SEC;
use music262_tests::{SimConfig, assert_clean, run};

/// With the ideal player the sound stops within 100 µs everywhere (the clocks' error only).
/// Through the simulated devices it stops as far apart as the sound plays (each device's
/// timing error adds): asserted no wider than the widest spread heard while playing. The
/// 100 µs target is missed there (108 µs at worst over these seeds, the devices' own spread
/// reaching 117 µs): that is the device timing's error, issue 25's work.
#[test]
fn paused_peers_stop_sounding_within_100us_and_no_wider_than_they_play() {
    let mut pauses = 0;
    let mut worst = 0.0f64;
    for seed in 1..=3 {
        let mut c = SimConfig::scenario("lan", None, seed, Some(120.0)).expect("preset");
        c.commands.mean_interval = 4 * SEC;
        c.device = Some(DeviceProfile::rig());
        let (_, r) = run(c);
        assert_clean(&r);
        let d = r.device.as_ref().expect("device figures");
        eprintln!(
            "seed {seed}: {} pauses, stop spread ideal max {:.1} us, through devices max {:.1} us, {} late",
            r.pause_stop_spread_us.samples,
            r.pause_stop_spread_us.max,
            d.pause_stop_spread_us.max,
            r.late_pauses
        );
        assert_eq!(
            r.late_pauses, 0,
            "seed {seed}: a pause came late; replay: {}",
            r.replay
        );
        assert!(
            d.pause_stop_spread_us.max <= d.sync_spread_us.max + 10.0,
            "seed {seed}: through devices the sound stopped {:.1} us apart, played at most {:.1} us apart; replay: {}",
            d.pause_stop_spread_us.max,
            d.sync_spread_us.max,
            r.replay
        );
        pauses += r.pause_stop_spread_us.samples;
        worst = worst.max(r.pause_stop_spread_us.max);
    }
    assert!(pauses >= 5, "only {pauses} pauses measured");
    assert!(
        worst <= 100.0,
        "ideal player: sound stopped {worst:.1} us apart"
    );
}
