//! Clock sync over the real gRPC transport on loopback: the shared suite of
//! `transport_common::testing` (two nodes with clocks skewed like separate machines agree on
//! group time), over gRPC. This isolates the transport's timestamping (receive stamps, probe
//! restamps) from the player.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use music262_proto::auth::GroupKey;
use transport_common::testing::{self, Started, probe, skewed};
use transport_grpc::{ClockFn, LegacyCall, PeerLinks, PeerTransport, TransportEvent};

/// A gRPC peer transport serving on a fresh loopback port.
async fn start(clock: ClockFn, key: Option<GroupKey>) -> Started<PeerTransport, LegacyCall> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (transport, events) =
        PeerTransport::with_group_key(clock, Arc::new(AtomicU64::new(1)), key);
    let _server = transport.serve(listener, std::future::pending());
    (transport, events, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_grpc_agree_on_group_time() {
    testing::agree_on_group_time("gRPC", None, start).await;
}

/// With a group key every probe is sealed, and its transmit instant is still rewritten at the
/// socket with the seal recomputed: a wrong seal would show as refused frames and lost probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keyed_nodes_over_grpc_agree_on_group_time_with_probes_resealed_at_the_socket() {
    testing::keyed_nodes_agree_and_every_seal_verifies("gRPC", start).await;
}

/// Diagnostic: one-way delays of the dialler→acceptor and acceptor→dialler directions of an
/// `Exchange` stream, both ends reading the same clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn one_way_delays_per_direction() {
    use sync_core::{Direction, Message};
    let base = Instant::now();
    let clock = skewed(base, 0.0, 0.0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (acc, mut acc_ev) = PeerTransport::new(clock.clone(), Arc::new(AtomicU64::new(1)));
    let _s = acc.serve(listener, std::future::pending());
    let (dial, mut dial_ev) = PeerTransport::new(clock.clone(), Arc::new(AtomicU64::new(100)));
    dial.connect(addr.to_string());
    let up = |ev: TransportEvent| match ev {
        TransportEvent::LinkUp {
            link, direction, ..
        } => Some((link, direction)),
        _ => None,
    };
    let (dl, _) = up(dial_ev.recv().await.unwrap()).unwrap();
    let (al, d) = up(acc_ev.recv().await.unwrap()).unwrap();
    assert_eq!(d, Direction::Incoming);
    for (name, tx, link, rx) in [
        ("dialler->acceptor", &dial, dl, &mut acc_ev),
        ("acceptor->dialler", &acc, al, &mut dial_ev),
    ] {
        let mut d = Vec::new();
        for _ in 0..200 {
            tx.send(link, probe(0));
            if let Some(TransportEvent::Frame {
                at,
                message: Ok(Message::Probe(p)),
                ..
            }) = rx.recv().await
            {
                d.push(at.0 as i64 - p.t0.0 as i64);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        d.sort();
        eprintln!(
            "{name}: min {} us, median {} us, p90 {} us",
            d[0] / 1000,
            d[d.len() / 2] / 1000,
            d[d.len() * 9 / 10] / 1000
        );
    }
}
