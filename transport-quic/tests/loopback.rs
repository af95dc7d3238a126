//! Two QUIC transports on loopback, and a raw quinn client playing a misbehaving peer.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use music262_proto::codec::{CodecError, MAX_FRAME_LEN, encode_to_vec};
use sync_core::{
    Announce, ClockMapping, Direction, GroupState, GroupTime, Hello, LinkId, LocalTime, Message,
    NodeId, Probe, StateVersion,
};
use transport_common::testing::{next_event as next, steady_clock as clock};
use transport_quic::framing::delimit;
use transport_quic::{PeerLinks, QuicTransport, TransportEvent};

mod support;
use support::serving;

fn hello(id: u64) -> Message {
    Message::Hello(Hello {
        node_id: NodeId(id),
        protocol_version: sync_core::PROTOCOL_VERSION,
        listen_addr: Some(format!("127.0.0.1:{id}")),
        name: None,
    })
}

fn probe(seq: u32, t0: u64) -> Message {
    Message::Probe(Probe {
        seq,
        t0: LocalTime(t0),
        announce: Announce {
            root: NodeId(1),
            stratum: 0,
            root_seq: 3,
            root_delay: 0,
            parent: None,
            state_version: StateVersion::default(),
            mapping: ClockMapping {
                local: LocalTime(t0),
                group: GroupTime(t0),
                rate_ppm: 0.0,
                timebase: 1,
            },
            subtree_delay: 0,
            radius: 0,
            members: None,
        },
    })
}

fn link_up(ev: TransportEvent) -> (LinkId, String, Direction) {
    match ev {
        TransportEvent::LinkUp {
            link,
            remote_addr,
            direction,
        } => (link, remote_addr, direction),
        other => panic!("expected a link up, got {other:?}"),
    }
}

fn frame(ev: TransportEvent) -> (LinkId, LocalTime, Result<Message, CodecError>) {
    match ev {
        TransportEvent::Frame { link, at, message } => (link, at, message),
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_endpoints_exchange_frames_and_probes_go_as_datagrams() {
    let (a, mut a_ev, a_addr) = serving(clock(), 1, None);
    let (b, mut b_ev, _) = serving(clock(), 100, None);
    b.connect(a_addr.to_string());
    let (bl, remote, dir) = link_up(next(&mut b_ev).await);
    assert_eq!((remote, dir), (a_addr.to_string(), Direction::Outgoing));
    assert!(bl.0 >= 100, "ids come from the shared counter");
    // The acceptor sees the link once the dialler's first frame arrives.
    assert!(b.send(bl, hello(2)));
    let (al, remote, dir) = link_up(next(&mut a_ev).await);
    assert_eq!(dir, Direction::Incoming);
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    let (l, _, m) = frame(next(&mut a_ev).await);
    assert_eq!((l, m), (al, Ok(hello(2))));
    assert!(a.send(al, hello(1)));
    assert_eq!(frame(next(&mut b_ev).await).2, Ok(hello(1)));

    // A probe goes as a datagram, restamped on the way out and stamped on the way in.
    let before = b.counters();
    let stamped_by_node = 5;
    assert!(b.send(bl, probe(9, stamped_by_node)));
    let (l, at, m) = frame(next(&mut a_ev).await);
    assert_eq!(l, al);
    let Ok(Message::Probe(p)) = m else {
        panic!("not a probe: {m:?}")
    };
    assert_eq!(p.seq, 9);
    assert!(p.t0.0 > stamped_by_node, "t0 restamped when sent");
    assert!(at.0 > 1_000_000_000, "receive instant from the clock");
    let after = b.counters();
    assert_eq!(after.datagrams_sent, before.datagrams_sent + 1);
    assert_eq!(after.stream_frames_sent, before.stream_frames_sent);
    assert_eq!(a.counters().datagrams_received, 1);

    // Other messages go on the stream, in order.
    for i in 0..20 {
        assert!(a.send(al, Message::State(GroupState::initial(i))));
    }
    for i in 0..20 {
        assert_eq!(
            frame(next(&mut b_ev).await).2,
            Ok(Message::State(GroupState::initial(i)))
        );
    }
    assert_eq!(a.counters().stream_frames_sent, 21);

    // Closing one side: the other sees the link go down, the closer hears nothing more.
    b.close(bl);
    match next(&mut a_ev).await {
        TransportEvent::LinkDown { link, error } => {
            assert_eq!(link, al);
            assert_eq!(error, None, "a clean close");
        }
        other => panic!("{other:?}"),
    }
    assert!(!b.send(bl, hello(2)), "closed link refuses frames");
    assert_eq!(a.link_count(), 0);
    assert_eq!(b.link_count(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b_ev.try_recv().is_err(), "no event for a link closed here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_to_a_silent_port_fails_with_one_event() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let (t, mut ev) = QuicTransport::new(clock(), Arc::new(AtomicU64::new(1)));
    let started = Instant::now();
    t.connect(addr.clone());
    match next(&mut ev).await {
        TransportEvent::ConnectFailed { addr: a, error } => {
            assert_eq!(a, addr);
            assert!(!error.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    t.connect("no such host:1".to_string());
    assert!(matches!(
        next(&mut ev).await,
        TransportEvent::ConnectFailed { .. }
    ));
}

/// A quinn client speaking our ALPN but sending whatever it likes.
async fn raw_peer(to: SocketAddr) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(Some(65536));
    let mut config =
        quinn::ClientConfig::new(Arc::new(transport_quic::tls::client_crypto().unwrap()));
    config.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(config);
    let conn = endpoint
        .connect(to, transport_quic::tls::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    (endpoint, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_are_dropped_with_an_event_and_the_link_lives_on() {
    let (a, mut a_ev, a_addr) = serving(clock(), 1, None);
    let (_endpoint, conn) = raw_peer(a_addr).await;
    // A datagram before the stream exists: held until the stream's first frame is through.
    conn.send_datagram(encode_to_vec(&probe(1, 7)).unwrap().into())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&delimit(&encode_to_vec(&hello(9)).unwrap()))
        .await
        .unwrap();
    let (al, _, _) = link_up(next(&mut a_ev).await);
    assert_eq!(frame(next(&mut a_ev).await).2, Ok(hello(9)));
    assert!(matches!(
        frame(next(&mut a_ev).await).2,
        Ok(Message::Probe(Probe { seq: 1, .. }))
    ));

    // A garbage datagram.
    conn.send_datagram(vec![0xff; 40].into()).unwrap();
    let (l, _, m) = frame(next(&mut a_ev).await);
    assert_eq!(l, al);
    assert!(matches!(m, Err(CodecError::Malformed(_))), "{m:?}");

    // Garbage with a valid length, then an oversized frame, then a good one, on the stream.
    send.write_all(&delimit(&[0xff; 12])).await.unwrap();
    let big = MAX_FRAME_LEN + 1;
    send.write_all(&(big as u32).to_be_bytes()).await.unwrap();
    send.write_all(&vec![0u8; big]).await.unwrap();
    let good = Message::State(GroupState::initial(4));
    send.write_all(&delimit(&encode_to_vec(&good).unwrap()))
        .await
        .unwrap();
    assert!(matches!(
        frame(next(&mut a_ev).await).2,
        Err(CodecError::Malformed(_))
    ));
    assert_eq!(
        frame(next(&mut a_ev).await).2,
        Err(CodecError::FrameTooLarge {
            len: big,
            max: MAX_FRAME_LEN
        })
    );
    assert_eq!(frame(next(&mut a_ev).await).2, Ok(good));
    assert_eq!(a.counters().undecodable, 3);
    assert_eq!(a.link_count(), 1);

    // The peer vanishes without a word: the link goes down with the reason.
    conn.close(quinn::VarInt::from_u32(7), b"bye");
    match next(&mut a_ev).await {
        TransportEvent::LinkDown { link, .. } => assert_eq!(link, al),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_frames_beyond_the_rate_limit_is_cut_and_reported_and_the_link_lives_on() {
    use music262_proto::auth::Refusal;
    use music262_proto::limits::{PEER_FRAME_BURST, PEER_FRAMES_PER_SECOND};
    let (a, mut a_ev, a_addr) = serving(clock(), 1, None);
    let (_endpoint, conn) = raw_peer(a_addr).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    // Three bursts' worth of frames in one write: far beyond the burst, in well under a
    // second.
    let flood = 3 * PEER_FRAME_BURST as usize;
    let one = delimit(&encode_to_vec(&hello(9)).unwrap());
    send.write_all(&one.repeat(flood)).await.unwrap();
    let mut delivered = 0;
    let mut reported = 0;
    while delivered + reported < flood {
        match next(&mut a_ev).await {
            TransportEvent::LinkUp { .. } => {}
            TransportEvent::Frame { message, .. } => {
                assert_eq!(message, Ok(hello(9)));
                delivered += 1;
            }
            TransportEvent::Refused {
                reason:
                    Refusal::RateLimited {
                        dropped,
                        per_second,
                    },
                ..
            } => {
                assert_eq!(per_second, PEER_FRAMES_PER_SECOND);
                // One report for the whole flood (reports come at most once a second); the
                // rest of the dropped frames are in the counter.
                reported += dropped as usize;
                assert!(
                    a.counters().rate_limited >= dropped,
                    "dropped frames are counted"
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(reported >= 1, "the flood is reported");
    // Let the rest arrive: at most the burst (plus what a second of refill allows) got through.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(ev) = a_ev.try_recv() {
        if let TransportEvent::Frame { .. } = ev {
            delivered += 1;
        }
    }
    let limit = (PEER_FRAME_BURST + PEER_FRAMES_PER_SECOND) as usize;
    assert!(
        delivered <= limit,
        "{delivered} frames passed, limit {limit}"
    );
    assert_eq!(
        a.counters().rate_limited as usize + delivered,
        flood,
        "every frame is either delivered or counted as dropped"
    );
    assert_eq!(a.link_count(), 1, "the link lives on");
}
