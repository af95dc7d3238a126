//! Simulator target on a lossy WAN (docs/protocol.md, "Targets"): one-way delay 20–80 ms,
//! 10 % loss: p99 sync error ≤ 1 ms, every command applied on every peer within lead + 1 s, no
//! invariant broken.

use music262_tests::{SimConfig, assert_clean, run};

#[test]
fn lossy_wan_keeps_p99_within_1ms_and_every_command_lands_within_lead_plus_1s() {
    for seed in 1..=3 {
        let c = SimConfig::scenario("wan-lossy", None, seed, Some(600.0)).expect("preset");
        let (o, r) = run(c);
        assert_clean(&r);
        assert!(r.sync_error_us.samples > 100_000, "seed {seed}: measured");
        assert!(
            r.sync_error_us.p99 <= 1_000.0,
            "seed {seed}: p99 {:.1} us; replay: {}",
            r.sync_error_us.p99,
            r.replay
        );
        assert!(r.commands_issued >= 10, "seed {seed}: commands were typed");
        for c in &o.commands {
            assert!(
                c.converged,
                "seed {seed}: {:?} typed at {:.3} s (lead {} ms) took {:?} ns; replay: {}",
                c.command,
                c.issued as f64 / 1e9,
                c.lead / 1_000_000,
                c.latency,
                r.replay
            );
        }
    }
}
