//! Clock sync: skewed clocks agree on group time, probes come in a burst then steadily, the
//! reference is the lowest id and its loss does not make group time jump.

mod harness;

use harness::*;
use sync_core::*;

#[test]
fn three_nodes_with_skewed_clocks_agree_on_group_time_within_20us_after_5s() {
    for topology in ["mesh", "chain"] {
        let mut net = Net::new(&skewed_clocks(3));
        if topology == "mesh" {
            mesh(&mut net, 3, MS);
        } else {
            net.connect(LinkSpec {
                a: 0,
                b: 1,
                delay_ab: MS,
                delay_ba: MS,
            });
            net.connect(LinkSpec {
                a: 1,
                b: 2,
                delay_ab: MS,
                delay_ba: MS,
            });
        }
        let mut worst: f64 = 0.0;
        for step in 0..100 {
            net.run_until(5 * SEC + step * 250 * MS);
            worst = worst.max(net.group_time_spread(&[0, 1, 2]));
        }
        assert!(worst < 20_000.0, "{topology}: group time spread {worst} ns");
    }
}

#[test]
fn probes_come_in_a_burst_then_at_a_steady_rate() {
    let mut net = Net::new(&skewed_clocks(2));
    let probes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let p = probes.clone();
    net.drop_filter = Some(Box::new(move |from, _to, m| {
        if from == 0 && matches!(m, Message::Probe(_)) {
            p.borrow_mut().push(());
        }
        false
    }));
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    // The burst: ten a second for its first four seconds (enough low-delay samples to fit
    // offset and frequency before a song is likely to start).
    net.run_until(4_050 * MS);
    let burst = probes.borrow().len();
    net.run_until(5 * SEC);
    let before_steady = probes.borrow().len();
    net.run_until(15 * SEC);
    let steady = probes.borrow().len() - before_steady;
    assert!((38..=42).contains(&burst), "burst of {burst} probes");
    // About two a second for ten seconds.
    assert!((17..=23).contains(&steady), "{steady} probes in 10 s");
}

#[test]
fn drift_is_estimated_so_group_time_holds_between_probes() {
    let mut net = Net::new(&skewed_clocks(2));
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(20 * SEC);
    let s = net.nodes[1].node.sync_status();
    // Node 1's clock runs 100 ppm slow relative to node 0 (the reference): group time must run
    // ~200 ppm faster than its local clock.
    let want = (1.0 + 100e-6) / (1.0 - 100e-6) * 1e6 - 1e6;
    assert!(
        (s.mapping.rate_ppm - want).abs() < 0.5,
        "rate {} want {want}",
        s.mapping.rate_ppm
    );
    // Silence the link for 1.5 s (no probes delivered): the estimate still holds.
    net.drop_filter = Some(Box::new(|_, _, _| true));
    let mut worst: f64 = 0.0;
    for k in 1..=15 {
        net.run_until(20 * SEC + k * 100 * MS);
        worst = worst.max(net.group_time_spread(&[0, 1]));
    }
    assert!(worst < 5_000.0, "spread without probes {worst} ns");
}

#[test]
fn a_jittery_parent_is_probed_quickly_until_its_clock_is_known_then_steadily() {
    // Wi-Fi-like: 2.5 ms each way plus exponential jitter of mean 2 ms per message.
    let mut net = Net::new(&skewed_clocks(2));
    // Members gossip draws no jitter, so the probes meet the same delays whatever else flows.
    let mut jitter = exponential_jitter(2.0 * MS as f64, 7);
    net.jitter = Some(Box::new(move |from, to, m| {
        if matches!(m, Message::Members(_)) {
            0
        } else {
            jitter(from, to, m)
        }
    }));
    let probes = std::rc::Rc::new(std::cell::RefCell::new(0usize));
    let p = probes.clone();
    net.drop_filter = Some(Box::new(move |from, _to, m| {
        if from == 1 && matches!(m, Message::Probe(_)) {
            *p.borrow_mut() += 1;
        }
        false
    }));
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: 2_500_000,
        delay_ba: 2_500_000,
    });
    net.run_until(10 * SEC);
    let early = *probes.borrow();
    // Node 1 follows node 0 and probes it about 20 times a second while its estimate is poor.
    assert!(early > 120, "{early} probes in the first 10 s");
    let mut worst: f64 = 0.0;
    for k in 0..40 {
        net.run_until(20 * SEC + k * SEC);
        worst = worst.max(net.group_time_spread(&[0, 1]));
    }
    assert!(worst < 100_000.0, "group time spread {worst} ns");
    // Then back to about two a second.
    net.run_until(60 * SEC);
    let before = *probes.borrow();
    net.run_until(70 * SEC);
    let steady = *probes.borrow() - before;
    assert!((17..=23).contains(&steady), "{steady} probes in 10 s");
}

#[test]
fn a_quiet_parent_gets_only_the_burst() {
    let mut net = Net::new(&skewed_clocks(2));
    let probes = std::rc::Rc::new(std::cell::RefCell::new(0usize));
    let p = probes.clone();
    net.drop_filter = Some(Box::new(move |from, _to, m| {
        if from == 1 && matches!(m, Message::Probe(_)) {
            *p.borrow_mut() += 1;
        }
        false
    }));
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(4_050 * MS);
    let burst = *probes.borrow();
    assert!((38..=42).contains(&burst), "burst of {burst} probes");
}

#[test]
fn reference_is_the_lowest_id_and_strata_count_hops() {
    // Chain 2 - 1 - 0 with the lowest id (node 0) at the end.
    let mut net = Net::new(&skewed_clocks(3));
    net.fixed_links();
    net.connect(LinkSpec {
        a: 2,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.connect(LinkSpec {
        a: 1,
        b: 0,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(3 * SEC);
    let root = net.nodes[0].node.id();
    for (i, stratum) in [(0, 0), (1, 1), (2, 2)] {
        let s = net.nodes[i].node.sync_status();
        assert_eq!(s.root, root, "node {i}");
        assert_eq!(s.stratum, stratum, "node {i}");
    }
    assert_eq!(
        net.nodes[2].node.sync_status().parent,
        Some(net.nodes[1].node.id())
    );
    assert_eq!(net.nodes[1].node.sync_status().parent, Some(root));
}

#[test]
fn group_time_does_not_jump_when_the_reference_leaves() {
    let mut net = Net::new(&skewed_clocks(4));
    mesh(&mut net, 4, MS);
    net.run_until(10 * SEC);
    let before = net.group_time_spread(&[1, 2, 3]);
    assert!(before < 20_000.0);
    // Reference 0 leaves politely.
    let steps_before: Vec<usize> = (0..4)
        .map(|i| {
            net.events(i)
                .filter(|e| matches!(e, Event::GroupTimeStepped { .. }))
                .count()
        })
        .collect();
    let t = net.local(0);
    net.nodes[0].node.shutdown(t);
    net.drain(0);
    net.crash(0);
    let mut worst: f64 = 0.0;
    for k in 1..=60 {
        net.run_until(10 * SEC + k * 100 * MS);
        worst = worst.max(net.group_time_spread(&[1, 2, 3]));
    }
    assert!(
        worst < 20_000.0,
        "spread after the reference left {worst} ns"
    );
    assert_eq!(net.nodes[2].node.sync_status().root, net.nodes[1].node.id());
    for (i, before) in steps_before.iter().enumerate().skip(1) {
        let steps = net
            .events(i)
            .filter(|e| matches!(e, Event::GroupTimeStepped { .. }))
            .count();
        assert_eq!(steps, *before, "node {i} stepped");
    }
}

#[test]
fn a_crashed_reference_is_replaced_without_a_jump() {
    let mut net = Net::new(&skewed_clocks(4));
    mesh(&mut net, 4, MS);
    net.run_until(10 * SEC);
    net.crash(0);
    let mut worst: f64 = 0.0;
    for k in 1..=150 {
        net.run_until(10 * SEC + k * 100 * MS);
        worst = worst.max(net.group_time_spread(&[1, 2, 3]));
    }
    assert!(
        worst < 20_000.0,
        "spread after the reference crashed {worst} ns"
    );
    for i in 1..4 {
        assert_eq!(
            net.nodes[i].node.sync_status().root,
            net.nodes[1].node.id(),
            "node {i}"
        );
        assert_eq!(
            net.nodes[i].node.peer_count(),
            2,
            "crashed peer removed at node {i}"
        );
    }
}
