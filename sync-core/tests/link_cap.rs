//! The link cap (`Config::max_links`) holds exactly, whatever the order in which dialled and
//! accepted links finish their handshakes.

use sync_core::*;

fn hello(id: u64) -> Message {
    Message::Hello(Hello {
        node_id: NodeId(id),
        protocol_version: PROTOCOL_VERSION,
        listen_addr: Some(format!("peer{id}:1")),
        name: None,
    })
}

#[test]
fn dialled_links_that_finish_after_accepted_ones_filled_the_cap_are_closed() {
    let now = LocalTime(1_000_000_000);
    let mut config = Config::new(NodeId(1));
    config.max_links = 4;
    let mut n = Node::new(config, 1, now);
    // Two dials go out; while they are answered, four peers dial in and finish first.
    for id in [10, 11] {
        let addr = PeerAddr::parse(&format!("peer{id}:1")).unwrap();
        n.handle_link_command(now, LinkCommand::Join { addr })
            .unwrap();
    }
    for id in 20..24 {
        n.handle_link_up(
            now,
            LinkId(id),
            format!("10.0.0.{id}:5000"),
            Direction::Incoming,
        );
        n.handle_message(now, LinkId(id), hello(id));
    }
    assert_eq!(n.peer_count(), 4);
    for id in [10, 11] {
        n.handle_link_up(now, LinkId(id), format!("peer{id}:1"), Direction::Outgoing);
        n.handle_message(now, LinkId(id), hello(id));
    }
    assert_eq!(n.peer_count(), 4, "the cap of 4 holds");
    let closed: Vec<LinkId> = std::iter::from_fn(|| n.poll_output())
        .filter_map(|o| match o {
            Output::Disconnect { link } => Some(link),
            _ => None,
        })
        .collect();
    assert_eq!(closed, [LinkId(10), LinkId(11)]);
}
