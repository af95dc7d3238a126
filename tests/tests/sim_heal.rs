//! The group comes back together by itself (issues 24 and 29): links lost to a partition longer
//! than the transport's timeout, a peer stopped for 10 s, a peer restarted on its address with a
//! new id, the hub of the star killed (the leaves learnt each other as members and linked);
//! nobody types `join`. After each, the live peers are one group (one component, one reference,
//! one state version) within the scenario's bound of 10 s, and a command typed then reaches all.

use music262_tests::{SimConfig, Transport, assert_clean, run};

fn check(transport: Transport, seed: u64) {
    let mut c = SimConfig::scenario("heal", None, seed, None).expect("preset");
    c.transport = transport;
    let faults = c.faults.len();
    let (_, r) = run(c);
    assert_clean(&r);
    assert_eq!(
        r.heal_to_group_ms.len(),
        faults,
        "seed {seed}: every fault was followed by a heal check"
    );
    assert!(
        r.heal_to_group_ms
            .iter()
            .all(|t| t.is_some_and(|t| t <= 10_000.0)),
        "seed {seed}: heal to one group {:?} ms; replay with {}",
        r.heal_to_group_ms,
        r.replay
    );
    assert_eq!(r.final_components, 1, "seed {seed}");
}

#[test]
fn over_tcp_the_group_is_one_again_within_10s_of_every_heal() {
    for seed in 1..=4 {
        check(Transport::Stream, seed);
    }
}

#[test]
fn over_quic_the_group_is_one_again_within_10s_of_every_heal() {
    for seed in 1..=3 {
        check(Transport::Quic, seed);
    }
}
