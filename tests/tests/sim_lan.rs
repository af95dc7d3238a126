//! Simulator target on a LAN (docs/protocol.md, "Targets"): 8 peers, one-way delay 0.2–2 ms,
//! 1 % loss, clock offsets ±5 s, drifts ±100 ppm: p99 sync error ≤ 50 µs after warm-up, max
//! ≤ 200 µs over 10 simulated minutes, and no invariant broken.

use music262_tests::{SimConfig, assert_clean, run};

fn check(seed: u64, minutes: f64) {
    let c = SimConfig::scenario("lan", None, seed, Some(minutes * 60.0)).expect("preset");
    let (_, r) = run(c);
    assert_clean(&r);
    let e = r.sync_error_us;
    // Enough of the run was measured for the numbers to mean something.
    assert!(
        e.samples as f64 > 28.0 * 100.0 * 60.0 * minutes * 0.2,
        "seed {seed}: only {} pair samples",
        e.samples
    );
    assert!(
        e.p99 <= 50.0 && e.max <= 200.0,
        "seed {seed}: sync error p99 {:.1} us, max {:.1} us (targets 50 and 200); replay: {}",
        e.p99,
        e.max,
        r.replay
    );
    assert_eq!(
        r.commands_converged, r.commands_issued,
        "seed {seed}: every command reaches every peer; replay: {}",
        r.replay
    );
}

#[test]
fn lan_sync_error_stays_within_50us_p99_and_200us_max_over_ten_minutes() {
    check(1, 10.0);
}

#[test]
fn lan_sync_error_targets_hold_for_other_seeds() {
    for seed in 2..=4 {
        check(seed, 10.0);
    }
}
