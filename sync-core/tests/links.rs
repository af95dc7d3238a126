//! Links: handshakes, leaves and exits, gossip, the link cap, silent peers, self and duplicate
//! links.

mod harness;

use harness::*;
use sync_core::*;

#[test]
fn handshake_lists_both_sides_and_leave_removes_both() {
    let mut net = Net::new(&skewed_clocks(2));
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(100 * MS);
    assert_eq!(net.nodes[0].node.peer_count(), 1);
    assert_eq!(net.nodes[1].node.peer_count(), 1);
    let l = &net.nodes[0].node.links()[0];
    assert_eq!(l.peer, Some(net.nodes[1].node.id()));
    assert_eq!(l.listen_addr.as_deref(), Some("node1:1"));
    net.link_command(
        0,
        LinkCommand::Leave {
            peer: PeerSelector::parse("node1:1").unwrap(),
        },
    )
    .unwrap();
    net.run_until(200 * MS);
    assert_eq!(net.nodes[0].node.peer_count(), 0);
    assert_eq!(net.nodes[1].node.peer_count(), 0);
    assert!(
        net.events(1)
            .any(|e| matches!(e, Event::PeerDisconnected { .. }))
    );
    assert_eq!(
        net.link_command(
            0,
            LinkCommand::Leave {
                peer: PeerSelector::parse("node1:1").unwrap()
            }
        ),
        Err(CommandError::UnknownPeer("node1:1".into()))
    );
}

fn addr(text: &str) -> PeerAddr {
    PeerAddr::parse(text).unwrap()
}

#[test]
fn an_exit_closes_the_links_to_the_listen_address_or_node_the_caller_names() {
    let mut net = star_of_three();
    let exit = LinkCommand::Exit {
        listen_addr: Some(addr("node1:1")),
        node_id: None,
        from: None,
    };
    net.link_command(0, exit).unwrap();
    net.run_until(200 * MS);
    let peers: Vec<_> = net.nodes[0].node.links().iter().map(|l| l.peer).collect();
    assert_eq!(peers, [Some(net.nodes[2].node.id())]);
    let exit = LinkCommand::Exit {
        listen_addr: None,
        node_id: Some(net.nodes[2].node.id()),
        from: None,
    };
    net.link_command(0, exit).unwrap();
    net.run_until(300 * MS);
    assert_eq!(net.nodes[0].node.peer_count(), 0);
}

#[test]
fn an_exit_naming_nothing_known_closes_the_links_from_the_callers_address() {
    let mut net = star_of_three();
    let unknown = |from: Option<PeerAddr>| LinkCommand::Exit {
        listen_addr: Some(addr("elsewhere:9")),
        node_id: Some(NodeId(0xdead)),
        from,
    };
    net.link_command(0, unknown(None)).unwrap();
    net.run_until(200 * MS);
    assert_eq!(net.nodes[0].node.peer_count(), 2);
    net.link_command(0, unknown(Some(addr("node2:1")))).unwrap();
    net.run_until(300 * MS);
    let peers: Vec<_> = net.nodes[0].node.links().iter().map(|l| l.peer).collect();
    assert_eq!(peers, [Some(net.nodes[1].node.id())]);
}

#[test]
fn a_join_of_any_of_its_own_addresses_is_refused_and_gossip_of_them_is_not_dialled() {
    let mut config = Config::new(NodeId(1));
    config.listen_addr = Some("10.0.0.1:50052".into());
    config.own_addrs = vec!["127.0.0.1:50052".into()];
    let mut node = Node::new(config, 1, LocalTime(0));
    let now = LocalTime(SEC);
    for own in ["127.0.0.1:50052", "10.0.0.1:50052"] {
        assert_eq!(
            node.handle_link_command(now, LinkCommand::Join { addr: addr(own) }),
            Err(CommandError::Join {
                addr: own.into(),
                reason: "that is this client's own address"
            })
        );
    }
    let addrs = ["127.0.0.1:50052", "10.0.0.1:50052", "10.0.0.2:50052"].map(addr);
    let gossip = LinkCommand::PeerAddresses {
        addrs: addrs.to_vec(),
    };
    node.handle_link_command(now, gossip).unwrap();
    let dialled: Vec<String> = std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            Output::Connect { addr } => Some(addr),
            _ => None,
        })
        .collect();
    assert_eq!(dialled, ["10.0.0.2:50052"]);
}

#[test]
fn gossip_connects_to_missing_peers_up_to_the_link_cap() {
    let mut net = Net::new(&skewed_clocks(5));
    net.configure(4, |c| c.max_links = 2);
    // Star around node 0.
    for b in 1..5 {
        net.connect(LinkSpec {
            a: 0,
            b,
            delay_ab: MS,
            delay_ba: MS,
        });
    }
    net.run_until(SEC);
    net.link_command(0, LinkCommand::Gossip).unwrap();
    net.run_until(3 * SEC);
    for i in 1..4 {
        assert!(
            net.nodes[i].node.peer_count() >= 3,
            "node {i} has {} peers",
            net.nodes[i].node.peer_count()
        );
    }
    assert!(net.nodes[4].node.peer_count() <= 2, "cap respected");
}

#[test]
fn a_full_node_refuses_with_addresses_and_the_newcomer_still_joins_the_group() {
    let mut net = Net::new(&skewed_clocks(3));
    net.configure(0, |c| c.max_links = 1);
    net.connect(LinkSpec {
        a: 1,
        b: 0,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(SEC);
    net.link_command(
        2,
        LinkCommand::Join {
            addr: PeerAddr::parse("node0:1").unwrap(),
        },
    )
    .unwrap();
    net.run_until(3 * SEC);
    assert_eq!(net.nodes[0].node.peer_count(), 1);
    assert_eq!(
        net.nodes[2].node.peer_count(),
        1,
        "node 2 went to node 1 instead"
    );
    assert_eq!(
        net.nodes[2].node.links()[0].peer,
        Some(net.nodes[1].node.id())
    );
}

#[test]
fn a_silent_peer_becomes_suspect_then_is_removed() {
    let mut net = Net::new(&skewed_clocks(2));
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(SEC);
    net.crash(1);
    net.run_until(3 * SEC + 500 * MS);
    assert!(
        net.events(0)
            .any(|e| matches!(e, Event::PeerSuspect { .. }))
    );
    assert_eq!(
        net.nodes[0].node.peer_count(),
        1,
        "suspect, not yet removed"
    );
    net.run_until(8 * SEC);
    assert_eq!(net.nodes[0].node.peer_count(), 0);
    assert!(net.events(0).any(|e| matches!(
        e,
        Event::PeerDisconnected {
            reason: DisconnectReason::Timeout,
            ..
        }
    )));
}

#[test]
fn joining_itself_or_twice_is_refused() {
    let mut net = Net::new(&skewed_clocks(2));
    assert!(matches!(
        net.link_command(
            0,
            LinkCommand::Join {
                addr: PeerAddr::parse("node0:1").unwrap()
            }
        ),
        Err(CommandError::Join { .. })
    ));
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(SEC);
    assert!(matches!(
        net.link_command(
            0,
            LinkCommand::Join {
                addr: PeerAddr::parse("node1:1").unwrap()
            }
        ),
        Err(CommandError::Join { .. })
    ));
}

#[test]
fn a_link_to_itself_is_closed_at_the_handshake() {
    let mut net = Net::new(&skewed_clocks(1));
    let t = net.local(0);
    net.nodes[0]
        .node
        .handle_link_up(t, LinkId(77), "elsewhere:1".into(), Direction::Outgoing);
    let own = Hello {
        node_id: net.nodes[0].node.id(),
        protocol_version: PROTOCOL_VERSION,
        listen_addr: None,
        name: None,
    };
    net.nodes[0]
        .node
        .handle_message(t, LinkId(77), Message::Hello(own));
    net.drain(0);
    assert_eq!(net.nodes[0].node.links().len(), 0);
    assert!(net.events(0).any(|e| matches!(
        e,
        Event::BadMessage {
            reason: BadInput::SelfLink,
            ..
        }
    )));
}

#[test]
fn duplicate_links_between_two_nodes_collapse_to_one_on_both_sides() {
    let mut net = Net::new(&skewed_clocks(2));
    net.connect(LinkSpec {
        a: 0,
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
    net.run_until(SEC);
    assert_eq!(net.nodes[0].node.links().len(), 1);
    assert_eq!(net.nodes[1].node.links().len(), 1);
    net.run_until(5 * SEC);
    assert_eq!(net.nodes[0].node.peer_count(), 1, "the kept link works");
}
