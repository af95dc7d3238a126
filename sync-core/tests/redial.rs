//! Links come back by themselves: a member whose link drops without leaving is redialled at
//! its listen address with backoff; one that leaves on purpose is not.

mod harness;

use harness::*;
use sync_core::*;

fn pair() -> Net {
    let mut net = Net::new(&skewed_clocks(2));
    mesh(&mut net, 2, MS);
    net.run_until(SEC);
    assert_eq!(net.nodes[0].node.peer_count(), 1);
    net
}

fn connections(net: &Net, i: usize) -> usize {
    net.events(i)
        .filter(|e| matches!(e, Event::PeerConnected { .. }))
        .count()
}

#[test]
fn a_link_reset_is_redialled_and_one_link_comes_back() {
    let mut net = pair();
    net.cut(0, 1);
    assert_eq!(net.nodes[0].node.peer_count(), 0);
    // The first redial comes after redial_min (500 ms, +-25 %); both ends dial, and the
    // duplicate rule leaves one link.
    net.run_until(3 * SEC);
    for i in 0..2 {
        assert_eq!(net.nodes[i].node.peer_count(), 1, "node {i}");
        assert_eq!(net.nodes[i].node.links().len(), 1, "node {i}: one link");
    }
    assert!(connections(&net, 0) >= 2);
}

#[test]
fn a_peer_that_leaves_is_not_redialled() {
    let mut net = pair();
    let peer = PeerSelector::parse("node1:1").expect("address");
    net.link_command(0, LinkCommand::Leave { peer }).unwrap();
    net.run_until(30 * SEC);
    assert_eq!(net.nodes[0].node.peer_count(), 0);
    assert_eq!(net.nodes[1].node.peer_count(), 0);
    assert_eq!(connections(&net, 0), 1, "only the first link");
}

#[test]
fn a_peer_down_for_a_minute_is_linked_again_within_the_backoff_cap_of_its_return() {
    let mut net = pair();
    net.crash(1);
    // Node 0 finds it silent (remove_after, 6 s), then dials with a backoff capped at 4 s.
    net.run_until(61 * SEC);
    assert_eq!(net.nodes[0].node.peer_count(), 0);
    net.nodes[1].up = true;
    net.run_until(61 * SEC + 5_100 * MS);
    assert_eq!(net.nodes[0].node.peer_count(), 1, "back within 4 s + 25 %");
}
