//! QUIC links with a group key: peers sharing the key link and exchange sealed frames (stream
//! and datagrams); a different key, or a key on one side only, is refused during the handshake
//! on both sides, counted, and no link reaches the node.

use music262_proto::auth::{AuthError, GroupKey, Refusal};
use sync_core::{Hello, Message, NodeId};
use tokio::sync::mpsc::UnboundedReceiver;
use transport_common::testing::{next_event as next, steady_clock as clock};
use transport_quic::{PeerLinks, TransportEvent};

mod support;
use support::serving;

fn key(s: &str) -> Option<GroupKey> {
    Some(GroupKey::new(s.as_bytes()).unwrap())
}

fn hello(id: u64) -> Message {
    Message::Hello(Hello {
        node_id: NodeId(id),
        protocol_version: sync_core::PROTOCOL_VERSION,
        listen_addr: None,
        name: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_sharing_a_key_link_and_exchange_sealed_frames_and_datagrams() {
    let (a, mut a_ev, a_addr) = serving(clock(), 1, key("the group key of this test"));
    let (b, mut b_ev, _) = serving(clock(), 100, key("the group key of this test"));
    b.connect(a_addr.to_string());
    let TransportEvent::LinkUp { link: bl, .. } = next(&mut b_ev).await else {
        panic!("link up expected")
    };
    let TransportEvent::LinkUp { link: al, .. } = next(&mut a_ev).await else {
        panic!("link up expected")
    };
    assert!(b.send(bl, hello(2)));
    match next(&mut a_ev).await {
        TransportEvent::Frame { link, message, .. } => {
            assert_eq!((link, message), (al, Ok(hello(2))))
        }
        other => panic!("expected the hello, got {other:?}"),
    }
    // Datagrams are read once the stream's first frame is through.
    assert!(a.send(al, hello(1)));
    match next(&mut b_ev).await {
        TransportEvent::Frame { message, .. } => assert_eq!(message, Ok(hello(1))),
        other => panic!("expected the hello, got {other:?}"),
    }
    // A probe goes as a sealed datagram and opens on the other side.
    let probe = Message::Probe(sync_core::Probe {
        seq: 1,
        t0: sync_core::LocalTime(5),
        announce: sync_core::Announce {
            root: NodeId(1),
            stratum: 0,
            root_seq: 0,
            root_delay: 0,
            parent: None,
            state_version: sync_core::StateVersion::default(),
            mapping: sync_core::ClockMapping {
                local: sync_core::LocalTime(5),
                group: sync_core::GroupTime(5),
                rate_ppm: 0.0,
                timebase: 1,
            },
            radius: 0,
            subtree_delay: 0,
            members: None,
        },
    });
    assert!(a.send(al, probe));
    match next(&mut b_ev).await {
        TransportEvent::Frame {
            message: Ok(Message::Probe(p)),
            ..
        } => assert_eq!(p.seq, 1),
        other => panic!("expected the probe, got {other:?}"),
    }
    assert_eq!(a.counters().datagrams_sent, 1);
    assert_eq!(b.counters().datagrams_received, 1);
    assert_eq!(a.counters().auth_refused + b.counters().auth_refused, 0);
}

/// Waits for the refusal on each side; no link may come up before it.
async fn refused(rx: &mut UnboundedReceiver<TransportEvent>) -> (bool, Refusal) {
    loop {
        match next(rx).await {
            TransportEvent::Refused {
                link: None,
                dialled,
                reason,
                ..
            } => return (dialled, reason),
            TransportEvent::LinkUp { .. } => panic!("a refused peer must not link"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_different_keys_refuse_each_other_during_the_handshake() {
    let (a, mut a_ev, a_addr) = serving(clock(), 1, key("the group key of this test"));
    let (b, mut b_ev, _) = serving(clock(), 100, key("another key, another group"));
    b.connect(a_addr.to_string());
    let (dialled, reason) = refused(&mut b_ev).await;
    assert!(dialled);
    assert!(matches!(
        reason,
        Refusal::Auth(AuthError::DifferentKey { .. })
    ));
    let (dialled, reason) = refused(&mut a_ev).await;
    assert!(!dialled);
    assert!(matches!(
        reason,
        Refusal::Auth(AuthError::DifferentKey { .. })
    ));
    assert_eq!(a.counters().auth_refused, 1);
    assert_eq!(b.counters().auth_refused, 1);
    assert_eq!((a.link_count(), b.link_count()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_key_is_refused_and_never_reaches_the_node() {
    let (a, mut a_ev, a_addr) = serving(clock(), 1, key("the group key of this test"));
    let (b, mut b_ev, _) = serving(clock(), 100, None);
    b.connect(a_addr.to_string());
    // The keyless dialler sees its link come up (it checks nothing) and sends its hello; the
    // keyed side refuses it at once.
    let TransportEvent::LinkUp { link: bl, .. } = next(&mut b_ev).await else {
        panic!("link up expected on the keyless side")
    };
    assert!(b.send(bl, hello(2)));
    let (_, reason) = refused(&mut a_ev).await;
    assert_eq!(reason, Refusal::Auth(AuthError::PeerHasNoKey));
    assert_eq!(a.counters().auth_refused, 1);
    assert_eq!(a.link_count(), 0);
    // The keyless side learns why its link went down.
    loop {
        match next(&mut b_ev).await {
            TransportEvent::LinkDown { error, .. } => {
                let error = error.expect("a reason");
                assert!(error.contains("group keys differ"), "{error}");
                break;
            }
            TransportEvent::Frame { message, .. } => assert_eq!(
                message,
                Err(music262_proto::codec::CodecError::PeerHasKey),
                "the keyed side's opening frame is named for what it is"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
}
