//! Limits of the gRPC peer endpoint against a raw tonic client: a frame over the size limit,
//! a flood of frames beyond the per-peer rate, and a gossip list beyond its length.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use music262_proto::auth::Refusal;
use music262_proto::client::client_handler_client::ClientHandlerClient;
use music262_proto::client::{GossipRequest, PeerFrame, SyncGossip, peer_frame};
use music262_proto::codec::{MAX_FRAME_LEN, MAX_GOSSIP_ADDRS};
use music262_proto::limits::{PEER_FRAME_BURST, PEER_FRAMES_PER_SECOND};
use sync_core::{Hello, Message, NodeId};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request};
use transport_common::testing::steady_clock as clock;
use transport_grpc::{PeerLinks, PeerTransport, TransportEvent};

async fn serving() -> (PeerTransport, UnboundedReceiver<TransportEvent>, SocketAddr) {
    let (t, rx) = PeerTransport::new(clock(), Arc::new(AtomicU64::new(1)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    t.serve(listener, std::future::pending());
    (t, rx, addr)
}

async fn next(rx: &mut UnboundedReceiver<TransportEvent>) -> Option<TransportEvent> {
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .ok()
        .flatten()
}

fn hello() -> PeerFrame {
    PeerFrame::from(&Message::Hello(Hello {
        node_id: NodeId(77),
        protocol_version: sync_core::PROTOCOL_VERSION,
        listen_addr: None,
        name: None,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_frames_beyond_the_rate_limit_is_cut_and_reported_and_the_link_lives_on() {
    let (t, mut ev, addr) = serving().await;
    let mut client = ClientHandlerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let flood = 3 * PEER_FRAME_BURST as usize;
    let (tx, rx) = mpsc::channel(flood);
    for _ in 0..flood {
        tx.try_send(hello()).unwrap();
    }
    let _inbound = client
        .exchange(Request::new(ReceiverStream::new(rx)))
        .await
        .unwrap();
    let (mut delivered, mut reported) = (0usize, 0u64);
    while let Some(e) = next(&mut ev).await {
        match e {
            TransportEvent::LinkUp { .. } => {}
            TransportEvent::Frame { .. } => delivered += 1,
            TransportEvent::Refused {
                reason:
                    Refusal::RateLimited {
                        dropped,
                        per_second,
                    },
                ..
            } => {
                assert_eq!(per_second, PEER_FRAMES_PER_SECOND);
                reported += dropped;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let limit = (PEER_FRAME_BURST + PEER_FRAMES_PER_SECOND) as usize;
    assert!(
        delivered <= limit,
        "{delivered} frames passed, limit {limit}"
    );
    assert!(reported >= 1, "the flood is reported");
    assert_eq!(
        t.counters().rate_limited as usize + delivered,
        flood,
        "every frame is either delivered or counted as dropped"
    );
    assert_eq!(t.link_count(), 1, "the link lives on");
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_size_limit_ends_the_stream_with_an_error_and_reaches_nothing() {
    let (_t, mut ev, addr) = serving().await;
    let mut client = ClientHandlerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(hello()).await.unwrap();
    tx.send(PeerFrame {
        body: Some(peer_frame::Body::Gossip(SyncGossip {
            addrs: vec!["h".repeat(1000); MAX_FRAME_LEN / 1000 + 1],
            members: Vec::new(),
        })),
        ..PeerFrame::default()
    })
    .await
    .unwrap();
    let _inbound = client
        .exchange(Request::new(ReceiverStream::new(rx)))
        .await
        .unwrap();
    let mut frames = 0;
    let error = loop {
        match next(&mut ev).await.expect("the link ends") {
            TransportEvent::LinkUp { .. } => {}
            TransportEvent::Frame { .. } => frames += 1,
            TransportEvent::LinkDown { error, .. } => break error,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(frames, 1, "only the frame within the limit arrived");
    let error = error.expect("an error");
    assert!(error.contains("message length too large"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_gossip_beyond_the_address_limit_is_invalid_argument() {
    let (_t, mut ev, addr) = serving().await;
    let mut client = ClientHandlerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let status = client
        .gossip(GossipRequest {
            peer_list: vec!["10.0.0.1:1".into(); MAX_GOSSIP_ADDRS + 1],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        format!(
            "too many addresses: {} (at most {MAX_GOSSIP_ADDRS})",
            MAX_GOSSIP_ADDRS + 1
        )
    );
    assert!(next(&mut ev).await.is_none(), "nothing reached the driver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_flooding_legacy_commands_gets_resource_exhausted_beyond_its_rate() {
    use music262_proto::client::MusicRequest;
    use music262_proto::limits::{LEGACY_CALL_BURST, LEGACY_CALLS_PER_SECOND};
    use transport_grpc::LegacyCall;
    let (t, mut ev, addr) = serving().await;
    // The driver's part: obey every command, count the refusals reported.
    let reported = Arc::new(AtomicU64::new(0));
    let seen = reported.clone();
    tokio::spawn(async move {
        while let Some(e) = ev.recv().await {
            match e {
                TransportEvent::Legacy(LegacyCall::Command { reply, .. }) => {
                    let _ = reply.send(Ok(()));
                }
                TransportEvent::Refused {
                    reason:
                        Refusal::LegacyRateLimited {
                            dropped,
                            per_second,
                        },
                    ..
                } => {
                    assert_eq!(per_second, LEGACY_CALLS_PER_SECOND);
                    seen.fetch_add(dropped, std::sync::atomic::Ordering::SeqCst);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let mut client = ClientHandlerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let started = Instant::now();
    let calls = 3 * LEGACY_CALL_BURST as usize;
    let (mut ok, mut exhausted) = (0usize, 0usize);
    for _ in 0..calls {
        let req = MusicRequest {
            action: "stop".into(),
            ..Default::default()
        };
        match client.send_music_command(req).await {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted);
                assert_eq!(
                    s.message(),
                    format!(
                        "too many calls: at most {LEGACY_CALLS_PER_SECOND} per second from one \
                         caller, in bursts of {LEGACY_CALL_BURST}"
                    )
                );
                exhausted += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = LEGACY_CALL_BURST as f64 + LEGACY_CALLS_PER_SECOND as f64 * elapsed + 1.0;
    assert!(
        exhausted > 0,
        "{calls} calls in {elapsed:.2} s were all let through"
    );
    assert!(
        (ok as f64) <= allowed,
        "{ok} calls obeyed in {elapsed:.2} s, at most {allowed:.0} allowed"
    );
    assert_eq!(t.counters().legacy_refused as usize, exhausted);
    // The first refusal is reported at once (later ones at most once a second).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reported = reported.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=exhausted as u64).contains(&reported),
        "{reported} refusals reported of {exhausted}"
    );
}
