//! Simulator target on Wi-Fi (docs/protocol.md, "Targets"): 8 peers, one-way delay 2–30 ms,
//! bursty loss 5 %: p99 sync error ≤ 250 µs over 10 simulated minutes, every command reaching
//! every peer, and no invariant broken. Measured 36–87 µs for seeds 1–6 (tests/README.md).

use music262_tests::{SimConfig, assert_clean, run};

fn check(seed: u64) {
    let c = SimConfig::scenario("wifi", None, seed, Some(600.0)).expect("preset");
    let (_, r) = run(c);
    assert_clean(&r);
    assert_eq!(
        r.commands_converged, r.commands_issued,
        "seed {seed}: every command reaches every peer; replay: {}",
        r.replay
    );
    // Enough of the run was measured for the numbers to mean something (28 pairs every 10 ms
    // for at least a fifth of the run).
    assert!(
        r.sync_error_us.samples as f64 > 28.0 * 100.0 * 600.0 * 0.2,
        "seed {seed}: only {} pair samples",
        r.sync_error_us.samples
    );
    assert!(
        r.sync_error_us.p99 <= 250.0,
        "seed {seed}: sync error p99 {:.1} us (target 250); replay: {}",
        r.sync_error_us.p99,
        r.replay
    );
}

#[test]
fn wifi_sync_error_stays_within_250us_p99_over_ten_minutes() {
    check(1);
}

#[test]
fn wifi_sync_error_target_holds_for_other_seeds() {
    for seed in 2..=6 {
        check(seed);
    }
}
