//! gRPC links and legacy calls with a group key, against a raw tonic client playing the peer:
//! a forged frame, a replayed frame, a peer with the wrong key, a peer without a key, and a
//! legacy command without the key's token are each refused, counted and reported, and none of
//! them reaches the node (no frame event, no legacy call). The well-behaved peer's frames go
//! through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use music262_proto::auth::{
    self, AuthError, Channel, GroupKey, LEGACY_TOKEN_METADATA, LinkKeys, Refusal, Role, Sealer,
};
use music262_proto::client::client_handler_client::ClientHandlerClient;
use music262_proto::client::{GetPositionRequest, MusicRequest, PeerFrame};
use sync_core::{Hello, Message, NodeId};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Streaming};
use transport_common::testing::{next_event as next, steady_clock as clock};
use transport_grpc::{LegacyCall, PeerLinks, PeerTransport, TransportEvent};

const KEY: &str = "the group key of this test";

fn key(s: &str) -> GroupKey {
    GroupKey::new(s.as_bytes()).unwrap()
}

async fn serving(
    key: Option<GroupKey>,
) -> (PeerTransport, UnboundedReceiver<TransportEvent>, SocketAddr) {
    let (t, rx) = PeerTransport::with_group_key(clock(), Arc::new(AtomicU64::new(1)), key);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    t.serve(listener, std::future::pending());
    (t, rx, addr)
}

/// Nothing more arrives for a while.
async fn quiet(rx: &mut UnboundedReceiver<TransportEvent>) {
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("nothing should reach the driver, got {ev:?}");
    }
}

fn hello_frame() -> PeerFrame {
    PeerFrame::from(&Message::Hello(Hello {
        node_id: NodeId(77),
        protocol_version: sync_core::PROTOCOL_VERSION,
        listen_addr: None,
        name: None,
    }))
}

/// A raw peer: an `Exchange` stream whose frames the test writes by hand.
struct RawPeer {
    out: mpsc::Sender<PeerFrame>,
    inbound: Streaming<PeerFrame>,
}

async fn raw_peer(addr: SocketAddr) -> RawPeer {
    let mut client = ClientHandlerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (out, rx) = mpsc::channel(64);
    let inbound = client
        .exchange(Request::new(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    RawPeer { out, inbound }
}

impl RawPeer {
    /// Runs the group-key handshake as a dialler holding `key`; returns its sealer.
    async fn handshake(&mut self, key: &GroupKey) -> Sealer {
        let nonce = [7u8; auth::NONCE_LEN];
        self.out
            .send(auth::opening_frame(key, nonce))
            .await
            .unwrap();
        let theirs = self.inbound.message().await.unwrap().unwrap();
        let their_nonce = auth::read_opening(key, &theirs).unwrap();
        let keys = LinkKeys::derive(key, Role::Dialler, &nonce, &their_nonce, b"");
        let sealer = keys.sealer();
        self.out.send(sealer.proof()).await.unwrap();
        let proof = self.inbound.message().await.unwrap().unwrap();
        keys.opener(Channel::Stream).open_proof(proof).unwrap();
        sealer
    }
}

fn refusal(ev: TransportEvent) -> (Option<sync_core::LinkId>, Refusal) {
    match ev {
        TransportEvent::Refused { link, reason, .. } => (link, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_frame_and_a_replayed_frame_are_refused_and_counted_and_never_reach_the_node() {
    let (t, mut ev, addr) = serving(Some(key(KEY))).await;
    let mut peer = raw_peer(addr).await;
    let sealer = peer.handshake(&key(KEY)).await;
    let TransportEvent::LinkUp { link, .. } = next(&mut ev).await else {
        panic!("the link is up once the handshake passed")
    };
    // A genuine frame goes through.
    let genuine = sealer.seal(Channel::Stream, hello_frame());
    peer.out.send(genuine.clone()).await.unwrap();
    match next(&mut ev).await {
        TransportEvent::Frame { message, .. } => assert!(matches!(message, Ok(Message::Hello(_)))),
        other => panic!("expected the hello, got {other:?}"),
    }
    // The same frame again: a replay.
    peer.out.send(genuine).await.unwrap();
    let (l, reason) = refusal(next(&mut ev).await);
    assert_eq!(l, Some(link));
    assert_eq!(
        reason,
        Refusal::Auth(AuthError::Replayed {
            counter: 1,
            channel: Channel::Stream
        })
    );
    // A forged one: a body changed under a genuine tag.
    let mut forged = sealer.seal(Channel::Stream, hello_frame());
    forged.body = PeerFrame::from(&Message::Gossip(vec!["10.0.0.1:1".into()])).body;
    peer.out.send(forged).await.unwrap();
    assert!(matches!(
        refusal(next(&mut ev).await).1,
        Refusal::Auth(AuthError::BadMac { counter: 2, .. })
    ));
    // An unsealed one, as a peer without the key would send it.
    peer.out.send(hello_frame()).await.unwrap();
    assert_eq!(
        refusal(next(&mut ev).await).1,
        Refusal::Auth(AuthError::Unsealed)
    );
    quiet(&mut ev).await;
    assert_eq!(t.counters().auth_refused, 3);
    assert_eq!(t.link_count(), 1, "the link itself lives on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_the_wrong_key_is_refused_at_the_handshake_and_never_linked() {
    let (t, mut ev, addr) = serving(Some(key(KEY))).await;
    let mut peer = raw_peer(addr).await;
    peer.out
        .send(auth::opening_frame(&key("some other group key"), [1; 16]))
        .await
        .unwrap();
    let (l, reason) = refusal(next(&mut ev).await);
    assert_eq!(l, None);
    assert!(matches!(
        reason,
        Refusal::Auth(AuthError::DifferentKey { .. })
    ));
    quiet(&mut ev).await;
    assert_eq!(t.counters().auth_refused, 1);
    assert_eq!(t.link_count(), 0);
    // The peer's stream ends after our opening frame.
    let mut frames = 0;
    while let Ok(Some(_)) = peer.inbound.message().await {
        frames += 1;
    }
    assert_eq!(frames, 1, "only the opening frame was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_forges_its_proof_is_refused_at_the_handshake() {
    let (t, mut ev, addr) = serving(Some(key(KEY))).await;
    let mut peer = raw_peer(addr).await;
    // It copies a real key id (seen on the wire) but does not hold the key.
    let k = key(KEY);
    peer.out
        .send(auth::opening_frame(&k, [3; 16]))
        .await
        .unwrap();
    let theirs = peer.inbound.message().await.unwrap().unwrap();
    let their_nonce = auth::read_opening(&k, &theirs).unwrap();
    let wrong = LinkKeys::derive(
        &key("a guess at the key!"),
        Role::Dialler,
        &[3; 16],
        &their_nonce,
        b"",
    );
    peer.out.send(wrong.sealer().proof()).await.unwrap();
    assert!(matches!(
        refusal(next(&mut ev).await).1,
        Refusal::Auth(AuthError::BadMac { counter: 0, .. })
    ));
    quiet(&mut ev).await;
    assert_eq!(t.counters().auth_refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_key_is_refused_by_a_keyed_one() {
    let (t, mut ev, addr) = serving(Some(key(KEY))).await;
    let peer = raw_peer(addr).await;
    peer.out.send(hello_frame()).await.unwrap();
    assert_eq!(
        refusal(next(&mut ev).await).1,
        Refusal::Auth(AuthError::PeerHasNoKey)
    );
    assert_eq!(t.counters().auth_refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keyed_transports_link_and_differently_keyed_ones_refuse_each_other() {
    let (a, mut a_ev, a_addr) = serving(Some(key(KEY))).await;
    let (b, mut b_ev, _) = serving(Some(key(KEY))).await;
    b.connect(a_addr.to_string());
    let TransportEvent::LinkUp { link: bl, .. } = next(&mut b_ev).await else {
        panic!("link up")
    };
    let TransportEvent::LinkUp { .. } = next(&mut a_ev).await else {
        panic!("link up")
    };
    assert!(b.send(
        bl,
        Message::Hello(Hello {
            node_id: NodeId(2),
            protocol_version: sync_core::PROTOCOL_VERSION,
            listen_addr: None,
            name: None,
        })
    ));
    assert!(matches!(
        next(&mut a_ev).await,
        TransportEvent::Frame {
            message: Ok(Message::Hello(_)),
            ..
        }
    ));

    let (c, mut c_ev, _) = serving(Some(key("another group's key"))).await;
    c.connect(a_addr.to_string());
    match next(&mut c_ev).await {
        TransportEvent::Refused {
            link: None,
            dialled: true,
            reason: Refusal::Auth(AuthError::DifferentKey { .. }),
            ..
        } => {}
        other => panic!("expected the dial to be refused, got {other:?}"),
    }
    assert!(matches!(
        refusal(next(&mut a_ev).await).1,
        Refusal::Auth(AuthError::DifferentKey { .. })
    ));
    assert_eq!(c.link_count(), 0);
    assert_eq!(a.link_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_calls_that_change_playback_need_the_token_and_read_only_ones_do_not() {
    let k = key(KEY);
    let (t, mut ev, addr) = serving(Some(k.clone())).await;
    let mut client = ClientHandlerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let play = MusicRequest {
        action: "play".into(),
        song_num: 1,
        ..Default::default()
    };
    // Without a token, and with the raw key instead of the token: UNAUTHENTICATED.
    for token in [None, Some(KEY.to_string())] {
        let mut req = Request::new(play.clone());
        if let Some(t) = token {
            req.metadata_mut()
                .insert(LEGACY_TOKEN_METADATA, t.parse().unwrap());
        }
        let status = client.send_music_command(req).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(
            status.message().contains("music262-auth"),
            "{}",
            status.message()
        );
        assert_eq!(
            refusal(next(&mut ev).await).1,
            Refusal::LegacyUnauthenticated {
                method: "SendMusicCommand"
            }
        );
    }
    let status = client
        .gossip(music262_proto::client::GossipRequest {
            peer_list: vec!["10.0.0.1:1".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    refusal(next(&mut ev).await);
    let status = client
        .exit(music262_proto::client::ExitRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    refusal(next(&mut ev).await);
    assert_eq!(t.counters().legacy_refused, 4);

    // With the token, the command reaches the driver.
    let mut req = Request::new(play);
    req.metadata_mut()
        .insert(LEGACY_TOKEN_METADATA, k.legacy_token().parse().unwrap());
    let call = tokio::spawn(async move { client.send_music_command(req).await.map(|_| client) });
    match next(&mut ev).await {
        TransportEvent::Legacy(LegacyCall::Command { request, reply, .. }) => {
            assert_eq!(request.action, "play");
            reply.send(Ok(())).unwrap();
        }
        other => panic!("expected the command, got {other:?}"),
    }
    let mut client = call.await.unwrap().unwrap();
    // A read-only call needs nothing.
    let pos = tokio::spawn(async move { client.get_position(GetPositionRequest {}).await });
    match next(&mut ev).await {
        TransportEvent::Legacy(LegacyCall::Position { reply }) => {
            reply.send(Default::default()).unwrap()
        }
        other => panic!("expected the position call, got {other:?}"),
    }
    assert!(pos.await.unwrap().is_ok());
    assert_eq!(t.counters().legacy_refused, 4);
}
