//! The group's queue in the simulator (issue 28): simulated users add, remove, move, skip and
//! replay entries, set repeat and shuffle, from every side of a lossy network that splits in two
//! and heals, with songs of a few seconds so that the group moves on by itself many times. Every
//! invariant holds after every sample (peers holding one state version hold the same song and
//! queue, so every transition to the next entry comes out the same on every peer), and after
//! the last heal every peer holds one state, hence one queue and current entry.

use music262_tests::{SimConfig, assert_clean, run};

#[test]
fn concurrent_queue_edits_under_loss_and_partitions_converge_and_advance_together() {
    for seed in 1..=3 {
        let c = SimConfig::scenario("queue", None, seed, None).expect("preset");
        let peers = c.peers as u64;
        let (outcome, r) = run(c);
        assert_clean(&r);
        assert_eq!(r.final_components, 1, "seed {seed}: one group at the end");
        assert!(
            r.heal_to_group_ms
                .iter()
                .all(|t| t.is_some_and(|t| t <= 12_000.0)),
            "seed {seed}: heal to one group {:?} ms; replay with {}",
            r.heal_to_group_ms,
            r.replay
        );
        // Songs of 5 to 8 s over two minutes, interrupted by the users' commands and two
        // partitions: the group moved on by itself several times on every peer.
        assert!(
            outcome.queue_transitions >= 4 * peers,
            "seed {seed}: {} transitions accepted over {peers} peers",
            outcome.queue_transitions
        );
        assert!(
            outcome.commands.len() > 20,
            "seed {seed}: {} commands",
            outcome.commands.len()
        );
    }
}
