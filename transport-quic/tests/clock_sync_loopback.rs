//! Clock sync over the real QUIC transport on loopback: the shared suite of
//! `transport_common::testing` (two nodes with clocks skewed like separate machines agree on
//! group time), over QUIC. This isolates the transport's timestamping (receive stamps at the
//! socket, probe restamps, probes as datagrams) from the player; the bias it prints is the
//! transport's (compare with `transport-grpc/tests/clock_sync_loopback.rs`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use music262_proto::auth::GroupKey;
use sync_core::NodeId;
use transport_common::testing::{self, Started, probe, skewed};
use transport_quic::{ClockFn, PeerLinks, QuicTransport, TransportEvent};

mod support;
use support::serving;

/// A QUIC peer transport serving on a fresh loopback port.
async fn start(clock: ClockFn, key: Option<GroupKey>) -> Started<QuicTransport, Infallible> {
    serving(clock, 1, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_quic_agree_on_group_time() {
    testing::agree_on_group_time("QUIC", None, start).await;
}

/// With a group key every probe and reply is sealed after its transmit instant is written, and
/// the echoed `t0` is replaced on arrival: a wrong seal would show as refused frames and lost
/// probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keyed_nodes_over_quic_agree_on_group_time_with_every_seal_verified() {
    testing::keyed_nodes_agree_and_every_seal_verifies("QUIC", start).await;
}

/// Diagnostic: one-way delays of probes sent from a quiet transport (after a sleep, like the
/// node's probe timer) and of replies sent straight after a frame arrived, both ends reading
/// the same clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn one_way_delays_quiet_and_reactive() {
    use sync_core::Message;
    let base = Instant::now();
    let clock = skewed(base, 0.0, 0.0);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let (acc, mut acc_ev) = QuicTransport::new(clock.clone(), Arc::new(AtomicU64::new(1)));
    let _s = acc.serve(socket, std::future::pending()).unwrap();
    let (dial, mut dial_ev) = QuicTransport::new(clock.clone(), Arc::new(AtomicU64::new(100)));
    dial.connect(addr.to_string());
    let Some(TransportEvent::LinkUp { link: dl, .. }) = dial_ev.recv().await else {
        panic!()
    };
    // The first frame goes on the stream (sync-core's first is a hello): it opens the link on
    // the acceptor's side.
    dial.send(
        dl,
        Message::Hello(sync_core::Hello {
            node_id: NodeId(2),
            protocol_version: sync_core::PROTOCOL_VERSION,
            listen_addr: None,
            name: None,
        }),
    );
    let Some(TransportEvent::LinkUp { link: al, .. }) = acc_ev.recv().await else {
        panic!()
    };
    let _ = acc_ev.recv().await;
    acc.send(
        al,
        Message::Hello(sync_core::Hello {
            node_id: NodeId(1),
            protocol_version: sync_core::PROTOCOL_VERSION,
            listen_addr: None,
            name: None,
        }),
    );
    let _ = dial_ev.recv().await;
    let (mut quiet, mut reactive) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        dial.send(dl, probe(0));
        if let Some(TransportEvent::Frame {
            at,
            message: Ok(Message::Probe(p)),
            ..
        }) = acc_ev.recv().await
        {
            quiet.push(at.0 as i64 - p.t0.0 as i64);
        }
        acc.send(al, probe(0));
        if let Some(TransportEvent::Frame {
            at,
            message: Ok(Message::Probe(p)),
            ..
        }) = dial_ev.recv().await
        {
            reactive.push(at.0 as i64 - p.t0.0 as i64);
        }
    }
    for (name, mut d) in [("quiet", quiet), ("reactive", reactive)] {
        d.sort();
        eprintln!(
            "{name}: min {} us, p10 {} us, median {} us, p90 {} us",
            d[0] / 1000,
            d[d.len() / 10] / 1000,
            d[d.len() / 2] / 1000,
            d[d.len() * 9 / 10] / 1000
        );
    }
}
