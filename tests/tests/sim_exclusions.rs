//! Every sample the error figures leave out is counted by the rule that left it out, and the
//! lag after a partition heals is measured (issue 31).

use music262_tests::{SimConfig, assert_clean, run};

#[test]
fn every_peer_sample_is_compared_or_counted_by_one_exclusion_rule() {
    for name in ["lan", "churn", "partition"] {
        let c = SimConfig::scenario(name, None, 3, Some(60.0)).expect("preset");
        let (_, r) = run(c);
        assert_clean(&r);
        let x = r.excluded_samples;
        let excluded = x.down_or_stopped
            + x.silent
            + x.command_window
            + x.song_starting
            + x.warmup
            + x.after_jump
            + x.after_start
            + x.no_song
            + x.song_mismatch
            + x.alone;
        assert_eq!(
            excluded + r.peer_error_us.samples,
            r.peer_samples,
            "{name}: {x:?}; replay: {}",
            r.replay
        );
        assert!(
            x.warmup > 0,
            "{name}: the warm-up after the first play is counted"
        );
    }
}

#[test]
fn the_lag_from_a_heal_to_one_timeline_is_measured_for_every_partition() {
    let c = SimConfig::scenario("partition", None, 11, None).expect("preset");
    let (_, r) = run(c);
    assert_clean(&r);
    eprintln!("post-heal lags: {:?} ms", r.post_heal_lag_ms);
    assert_eq!(r.post_heal_lag_ms.len(), 3, "three partitions healed");
    for lag in &r.post_heal_lag_ms {
        let lag = lag.expect("every heal ends on one timeline before the next partition");
        assert!(lag <= 5_000.0, "{lag} ms; replay: {}", r.replay);
    }
}
