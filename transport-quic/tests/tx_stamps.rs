//! Transmit instants of clock probes over QUIC are those of the socket, not of the hand-off to
//! quinn (`transport_quic::stamp`).
//!
//! Two transports in one process read one clock, so the true offset between them is zero.
//! The runtime has one thread, and after handing over a probe (or a reply) one side blocks
//! that thread for [`HOLD`]. quinn's connection driver cannot run in that time, so the
//! packet leaves at least `HOLD` after the hand-off, which is the kind of wait that biased
//! the offset, made large and certain. A transport that stamps at the hand-off is off by
//! about `HOLD / 2` (asserted below as more than `HOLD / 4`). One that uses the socket's
//! instant is off by the small difference between the two receive paths.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use music262_proto::auth::GroupKey;
use sync_core::{Hello, LinkId, LocalTime, Message, NodeId, Probe, ProbeReply};
use tokio::sync::mpsc::UnboundedReceiver;
use transport_common::testing::announce;
use transport_quic::{ClockFn, PeerLinks, QuicTransport, TransportEvent};

/// How long one side keeps quinn from sending after a hand-off.
const HOLD: Duration = Duration::from_millis(2);
/// Exchanges measured, after [`WARM_UP`] ones that let the responder learn its waits.
const EXCHANGES: usize = 40;
const WARM_UP: usize = 10;
/// How far a reply's predicted `t2` may fall after the true arrival `t3`.
const T2_OVERSHOOT_NS: u64 = 50_000;

fn hello(id: u64) -> Message {
    Message::Hello(Hello {
        node_id: NodeId(id),
        protocol_version: sync_core::PROTOCOL_VERSION,
        listen_addr: None,
        name: None,
    })
}

/// Which side blocks the runtime after its hand-off.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slow {
    Requester,
    Responder,
}

/// One exchange's four instants, all on the shared clock, and the requester's own stamp.
struct Exchange {
    stamped: u64,
    t0: u64,
    t1: u64,
    t2: u64,
    t3: u64,
}

impl Exchange {
    /// The offset the four instants give, in microseconds (the truth is 0).
    fn offset_us(&self) -> f64 {
        let (t0, t1, t2, t3) = (
            self.t0 as f64,
            self.t1 as f64,
            self.t2 as f64,
            self.t3 as f64,
        );
        ((t1 - t0) + (t2 - t3)) / 2.0 / 1000.0
    }
}

async fn next_frame(events: &mut UnboundedReceiver<TransportEvent>) -> (LocalTime, Message) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(TransportEvent::Frame {
                at, message: Ok(m), ..
            })) => return (at, m),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("transport gone"),
            Err(_) => panic!("no frame in 10 s"),
        }
    }
}

async fn link_up(events: &mut UnboundedReceiver<TransportEvent>) -> LinkId {
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        Ok(Some(TransportEvent::LinkUp { link, .. })) => link,
        other => panic!("expected a link, got {other:?}"),
    }
}

/// Runs [`WARM_UP`] + [`EXCHANGES`] probe exchanges between two transports on one thread and
/// one clock, `slow` holding the thread after each hand-off; returns the measured ones.
async fn exchanges(slow: Slow, key: Option<GroupKey>) -> Vec<Exchange> {
    let base = Instant::now();
    let clock: ClockFn = Arc::new(move || 5_000_000_000 + base.elapsed().as_nanos() as u64);
    let ids = Arc::new(AtomicU64::new(1));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let (responder, mut responder_events) =
        QuicTransport::with_group_key(clock.clone(), ids.clone(), key.clone());
    let _serving = responder.serve(socket, std::future::pending()).unwrap();
    let (requester, mut requester_events) = QuicTransport::with_group_key(clock.clone(), ids, key);
    requester.connect(addr.to_string());
    let rl = link_up(&mut requester_events).await;
    // The dialler's first frame goes on the stream and opens the link on the other side.
    assert!(requester.send(rl, hello(2)));
    let al = link_up(&mut responder_events).await;
    assert!(matches!(
        next_frame(&mut responder_events).await.1,
        Message::Hello(_)
    ));
    assert!(responder.send(al, hello(1)));
    assert!(matches!(
        next_frame(&mut requester_events).await.1,
        Message::Hello(_)
    ));

    // The responder answers every probe as soon as it is read, as a node does.
    let responder_clock = clock.clone();
    tokio::spawn(async move {
        loop {
            let (at, message) = next_frame(&mut responder_events).await;
            if let Message::Probe(p) = message {
                assert!(responder.send(
                    al,
                    Message::ProbeReply(ProbeReply {
                        seq: p.seq,
                        t0: p.t0,
                        t1: at,
                        t2: LocalTime(responder_clock()),
                        announce: announce(0),
                    }),
                ));
                if slow == Slow::Responder {
                    std::thread::sleep(HOLD);
                }
            }
        }
    });

    let mut measured = Vec::new();
    for seq in 0..(WARM_UP + EXCHANGES) as u32 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let stamped = clock();
        assert!(requester.send(
            rl,
            Message::Probe(Probe {
                seq,
                t0: LocalTime(stamped),
                announce: announce(0),
            }),
        ));
        if slow == Slow::Requester {
            std::thread::sleep(HOLD);
        }
        let (t3, reply) = loop {
            match next_frame(&mut requester_events).await {
                (at, Message::ProbeReply(r)) if r.seq == seq => break (at, r),
                _ => continue,
            }
        };
        if seq as usize >= WARM_UP {
            measured.push(Exchange {
                stamped,
                t0: reply.t0.0,
                t1: reply.t1.0,
                t2: reply.t2.0,
                t3: t3.0,
            });
        }
    }
    measured
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The offset is within a quarter of the hold; the old stamps (at the hand-off) gave about
/// half of it, with the sign of the slow side.
fn assert_unbiased(slow: Slow, measured: &[Exchange]) {
    let offset = median(measured.iter().map(Exchange::offset_us).collect());
    let bound = HOLD.as_secs_f64() * 1e6 / 4.0;
    eprintln!("{slow:?} slow: median offset {offset:+.1} us (bound {bound} us)");
    assert!(
        offset.abs() < bound,
        "{slow:?} slow: median offset {offset:+.1} us, expected under {bound} us"
    );
}

#[tokio::test]
async fn a_probe_held_back_by_a_busy_requester_does_not_bias_the_offset() {
    let measured = exchanges(Slow::Requester, None).await;
    for e in &measured {
        // What sync-core accepts as an echo: between its own stamp and the reply's arrival.
        assert!(e.t0 >= e.stamped && e.t0 <= e.t3, "echoed t0 out of range");
        // The socket's instant, not the hand-off's: quinn could not send before the hold.
        assert!(
            e.t0 - e.stamped >= HOLD.as_nanos() as u64,
            "t0 not replaced"
        );
    }
    assert_unbiased(Slow::Requester, &measured);
}

#[tokio::test]
async fn a_reply_held_back_by_a_busy_responder_does_not_bias_the_offset() {
    let measured = exchanges(Slow::Responder, None).await;
    for e in &measured {
        // `t2` is predicted (hand-off plus the second least recent wait), so a reply that left
        // sooner than predicted carries a `t2` a little after its departure; `t3` is the
        // kernel's arrival instant, only microseconds after it. The prediction may overshoot
        // by that much, not by a hold.
        assert!(
            e.t1 <= e.t2 && e.t2 <= e.t3 + T2_OVERSHOOT_NS,
            "impossible t2: {} ns after t3",
            e.t2 as i64 - e.t3 as i64
        );
    }
    assert_unbiased(Slow::Responder, &measured);
}

#[tokio::test]
async fn sealed_probes_are_restamped_too() {
    let key = GroupKey::new(b"tx stamps test key").unwrap();
    let measured = exchanges(Slow::Requester, Some(key.clone())).await;
    assert_unbiased(Slow::Requester, &measured);
    let measured = exchanges(Slow::Responder, Some(key)).await;
    assert_unbiased(Slow::Responder, &measured);
}
