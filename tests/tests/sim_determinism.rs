//! One seed and one commit reproduce a run exactly; a failing run says how to replay it.

use music262_tests::{SimConfig, check_clean, run};

/// A preset, unmodified but for its size and length, so that its replay command is exact.
fn small(scenario: &str, seed: u64) -> SimConfig {
    SimConfig::scenario(scenario, Some(8), seed, Some(60.0)).expect("preset")
}

#[test]
fn the_same_seed_gives_the_same_trace_and_numbers() {
    for scenario in ["lan", "churn", "partition"] {
        let (a, ra) = run(small(scenario, 7));
        let (b, rb) = run(small(scenario, 7));
        assert_eq!(a.trace_hash, b.trace_hash, "{scenario}: trace differs");
        assert_eq!(a.events, b.events, "{scenario}");
        assert_eq!(ra.sync_error_us, rb.sync_error_us, "{scenario}");
        assert_eq!(ra.command_latency_ms, rb.command_latency_ms, "{scenario}");
        assert_eq!(a.messages, b.messages, "{scenario}");
        assert!(a.events > 10_000, "{scenario}: the run did something");
        assert!(!a.commands.is_empty(), "{scenario}: commands were typed");
    }
}

#[test]
fn another_seed_gives_another_trace() {
    let (a, _) = run(small("lan", 1));
    let (b, _) = run(small("lan", 2));
    assert_ne!(a.trace_hash, b.trace_hash);
}

#[test]
fn a_failing_run_names_its_seed_and_the_replay_command() {
    // A message bound no node can keep: the invariant must trip, and the failure text must
    // tell how to reproduce it.
    let mut c = small("lan", 11);
    c.message_bound_per_link = 0;
    let (_, report) = run(c);
    assert!(report.invariant_violations > 0);
    let text = check_clean(&report).expect_err("violations reported");
    assert!(text.contains("seed 11"), "{text}");
    assert!(
        text.contains("cargo run --release -p music262-tests --bin sim -- --scenario lan --peers 8 --seed 11 --duration 60"),
        "{text}"
    );
    assert!(text.contains("messages in one second"), "{text}");
}
