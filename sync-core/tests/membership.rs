//! Membership beyond neighbours (`docs/membership.md`): every node learns the group's members
//! through gossip and keeps enough links that losing any one member does not split the group;
//! a dialler refused because the other side is full backs off; a restarted member is taken
//! back under its new id.

mod harness;

use harness::*;
use sync_core::*;

fn connections(net: &Net, i: usize) -> usize {
    net.events(i)
        .filter(|e| matches!(e, Event::PeerConnected { .. }))
        .count()
}

/// Nodes reachable from `from` over live links, `dead` left out.
fn component(net: &Net, from: usize, dead: usize) -> Vec<usize> {
    let mut seen = vec![from];
    let mut k = 0;
    while k < seen.len() {
        let a = seen[k];
        for b in 0..net.nodes.len() {
            if b != dead && !seen.contains(&b) && net.link_of(a, b).is_some() {
                seen.push(b);
            }
        }
        k += 1;
    }
    seen.sort_unstable();
    seen
}

/// A star: every leaf joined node 0 only.
fn star(n: usize) -> Net {
    let mut net = Net::new(&skewed_clocks(n));
    for leaf in 1..n {
        net.connect(LinkSpec {
            a: leaf,
            b: 0,
            delay_ab: MS,
            delay_ba: MS,
        });
    }
    net
}

#[test]
fn every_node_of_a_star_learns_every_member_with_its_id() {
    let mut net = star(5);
    net.run_until(5 * SEC);
    for i in 0..5 {
        let members = net.nodes[i].node.members();
        let want: Vec<(String, NodeId)> = (0..5)
            .filter(|&j| j != i)
            .map(|j| (format!("node{j}:1"), net.nodes[j].node.id()))
            .collect();
        let got: Vec<(String, NodeId)> = members.into_iter().map(|(a, id, _)| (a, id)).collect();
        assert_eq!(got, want, "node {i}");
    }
}

#[test]
fn the_leaves_of_a_star_link_to_each_other_and_stay_one_group_when_the_hub_dies() {
    let mut net = star(5);
    net.run_until(10 * SEC);
    for leaf in 1..5 {
        let links = net.nodes[leaf].node.peer_count();
        assert!(links >= 2, "leaf {leaf} holds {links} links");
    }
    // The links settle: nothing is dialled again and again.
    let before: usize = (0..5).map(|i| connections(&net, i)).sum();
    net.run_until(40 * SEC);
    let after: usize = (0..5).map(|i| connections(&net, i)).sum();
    assert_eq!(before, after, "no link made after the rule was met");
    // The hub is killed: its connections reset at every leaf.
    for leaf in 1..5 {
        net.cut(0, leaf);
    }
    net.crash(0);
    assert_eq!(component(&net, 1, 0), vec![1, 2, 3, 4], "one group at once");
    net.run_until(45 * SEC);
    let roots: Vec<NodeId> = (1..5)
        .map(|i| net.nodes[i].node.sync_status().root)
        .collect();
    assert!(
        roots.iter().all(|r| *r == roots[0]),
        "one reference {roots:?}"
    );
    net.command(
        3,
        Command::Play {
            song: Some(song(48_000 * 60)),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(47 * SEC);
    let v = net.nodes[3].node.state().version;
    for i in 1..5 {
        assert_eq!(
            net.nodes[i].node.state().version,
            v,
            "node {i} got the command"
        );
    }
}

#[test]
fn every_member_keeps_two_links_on_a_ring_so_no_single_loss_splits_the_group() {
    let mut net = star(8);
    net.run_until(15 * SEC);
    for dead in 0..8 {
        let from = usize::from(dead == 0);
        let reached = component(&net, from, dead);
        assert_eq!(reached.len(), 7, "without node {dead}: {reached:?}");
    }
    for i in 0..8 {
        let n = net.nodes[i].node.peer_count();
        assert!((2..=8).contains(&n), "node {i} holds {n} links");
    }
}

#[test]
fn a_full_member_points_the_dialler_elsewhere_and_it_backs_off() {
    // Node 0 takes one link; node 1 is linked to it; node 2 dials node 0.
    let mut net = Net::new(&skewed_clocks(3));
    net.fixed_links();
    net.configure(0, |c| {
        c.max_links = 1;
        c.min_links = 0;
    });
    net.connect(LinkSpec {
        a: 1,
        b: 0,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(SEC);
    net.configure(2, |c| c.min_links = 3);
    let addr = PeerAddr::parse("node0:1").expect("address");
    net.link_command(2, LinkCommand::Join { addr }).unwrap();
    net.run_until(30 * SEC);
    assert_eq!(net.nodes[0].node.peer_count(), 1, "the cap holds");
    // Node 2 was told of node 1 and linked to it.
    assert!(
        net.link_of(2, 1).is_some(),
        "node 2 linked to the member it was given"
    );
    // It tried node 0 again only after backoffs: a handful of times in 30 s, not a loop.
    let refusals = net
        .events(2)
        .filter(|e| {
            matches!(
                e,
                Event::PeerDisconnected {
                    reason: DisconnectReason::PeerLeft(LeaveReason::Full),
                    ..
                }
            )
        })
        .count();
    assert!((1..=12).contains(&refusals), "{refusals} refusals in 30 s");
}

#[test]
fn a_member_restarted_with_a_new_id_replaces_its_former_self() {
    let mut net = Net::new(&skewed_clocks(3));
    mesh(&mut net, 3, MS);
    net.run_until(5 * SEC);
    let old = net.nodes[2].node.id();
    // Node 2 is killed (its connections reset) and starts again on its address, new id.
    net.cut(0, 2);
    net.cut(1, 2);
    net.configure(2, |c| c.node_id = NodeId(7));
    net.run_until(15 * SEC);
    for i in 0..2 {
        assert!(
            net.link_of(i, 2).is_some(),
            "node {i} linked the restarted node"
        );
        let ids: Vec<NodeId> = net.nodes[i]
            .node
            .members()
            .into_iter()
            .filter(|(a, _, _)| a == "node2:1")
            .map(|(_, id, _)| id)
            .collect();
        assert_eq!(
            ids,
            vec![NodeId(7)],
            "node {i} knows node 2 by its new id only"
        );
        assert!(
            net.nodes[i]
                .node
                .links()
                .iter()
                .all(|l| l.peer != Some(old))
        );
    }
}

#[test]
fn a_member_left_on_purpose_is_not_linked_again_even_when_the_leave_was_lost() {
    let mut net = Net::new(&skewed_clocks(3));
    mesh(&mut net, 3, MS);
    net.run_until(5 * SEC);
    // Node 2 leaves node 0, but its `Leave` is lost: node 0 sees a bare close and redials.
    net.drop_filter = Some(Box::new(|from, to, m| {
        from == 2 && to == 0 && matches!(m, Message::Leave(_))
    }));
    let peer = PeerSelector::parse("node0:1").expect("address");
    net.link_command(2, LinkCommand::Leave { peer }).unwrap();
    net.run_until(30 * SEC);
    assert!(net.link_of(2, 0).is_none(), "the leave stands");
    assert!(net.link_of(2, 1).is_some() && net.link_of(0, 1).is_some());
}
