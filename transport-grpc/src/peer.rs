//! The peer endpoint: the `ClientHandler` service every music client runs, and the dialer
//! that opens `Exchange` streams to other peers.
//!
//! Each `Exchange` stream, accepted or dialled, is one link of the sync-core node. Frames are
//! decoded here and handed to the driver with the instant they were read off the stream (as
//! close to the socket as tonic lets us see). The legacy methods are turned into
//! [`LegacyCall`]s for the driver to answer, except `Ping`, which is only a pair of clock
//! readings. No protocol decision is taken here.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use music262_proto::auth::{self, Channel, GroupKey, LinkKeys, Opener, Refusal, Role, Sealer};
use music262_proto::client::client_handler_client::ClientHandlerClient;
use music262_proto::client::client_handler_server::ClientHandlerServer;
use music262_proto::client::{ExitRequest, GetPositionResponse, MusicRequest, PeerFrame};
use music262_proto::codec::MAX_FRAME_LEN;
use music262_proto::limits::RateLimit;
use prost::Message as _;
use sync_core::{Direction, LinkId, LocalTime, Message};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Status, Streaming};
use transport_common::counters::bump;
use transport_common::probe::{
    AUTH_TIMEOUT, CONNECT_TIMEOUT, HandshakeFailure, LINK_QUEUE, REFUSAL_LINGER, auth_role,
    stamp_message,
};
use transport_common::refusals::{PortLog, RefusalKind};
use transport_common::{
    AtomicCounters, ClockFn, ConnLimits, Counters, PeerLinks, PeerRateLimit, PortGate,
};

use crate::listen;
use crate::service::PeerService;

use crate::stamp::{ConnStamps, Reseal, StampedStream};

/// What the gRPC transport reports: the shared event, with the legacy calls as its own.
pub type TransportEvent = transport_common::TransportEvent<LegacyCall>;

/// A legacy `ClientHandler` call; the driver must answer through `reply` (dropping it answers
/// UNAVAILABLE).
#[derive(Debug)]
pub enum LegacyCall {
    /// `SendMusicCommand`.
    Command {
        /// The request.
        request: MusicRequest,
        /// The caller's address, if known.
        from: Option<SocketAddr>,
        /// The answer: `Ok` once the command is scheduled.
        reply: oneshot::Sender<Result<(), Status>>,
    },
    /// `GetPosition`.
    Position {
        /// The answer.
        reply: oneshot::Sender<GetPositionResponse>,
    },
    /// `Gossip`.
    Gossip {
        /// The addresses shared.
        peers: Vec<String>,
        /// The caller's address, if known.
        from: Option<SocketAddr>,
        /// Answered once handled.
        reply: oneshot::Sender<Result<(), Status>>,
    },
    /// `Exit`.
    Exit {
        /// The request (listen address and node id, when the caller gave them).
        request: ExitRequest,
        /// The caller's address, if known.
        from: Option<SocketAddr>,
        /// Answered once handled.
        reply: oneshot::Sender<()>,
    },
}

struct LinkHandle {
    outbound: mpsc::Sender<Message>,
    /// The task reading the inbound half, once there is one.
    reader: Option<tokio::task::AbortHandle>,
}

pub(crate) struct Shared {
    pub(crate) clock: ClockFn,
    pub(crate) events: mpsc::UnboundedSender<TransportEvent>,
    links: Mutex<BTreeMap<LinkId, LinkHandle>>,
    pub(crate) next_link: Arc<AtomicU64>,
    /// The group key: with one, every link is authenticated, every frame sealed, and legacy
    /// calls that change playback need its token.
    pub(crate) key: Option<GroupKey>,
    pub(crate) counters: AtomicCounters,
    /// Rate limits of the callers of legacy methods that change anything, by IP address.
    pub(crate) legacy_rates: Mutex<BTreeMap<IpAddr, RateLimit>>,
    /// The peer port's connection budget, once it serves.
    pub(crate) gate: PortGate,
    /// The peer port's refusals, logged at a bounded rate.
    pub(crate) port_log: Arc<PortLog>,
}

/// Legacy callers whose rates are remembered at once; beyond this the table starts afresh (a
/// flood of sources must not grow memory).
pub(crate) const MAX_LEGACY_CALLERS: usize = 1024;

/// A keyed link's sealer, set once the peer's opening frame is read (no message is sent
/// before: the link is reported up only after the handshake).
pub(crate) type SealSlot = Arc<OnceLock<Arc<Sealer>>>;

/// The gRPC peer transport. Cheap to clone; all clones drive the same links.
#[derive(Clone)]
pub struct PeerTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransport").finish_non_exhaustive()
    }
}

impl PeerTransport {
    /// A transport reading `clock` for receive instants, numbering links from `link_ids` (shared
    /// with any other transport of the same node so ids never collide). Events arrive on the
    /// returned receiver.
    pub fn new(
        clock: ClockFn,
        link_ids: Arc<AtomicU64>,
    ) -> (Self, mpsc::UnboundedReceiver<TransportEvent>) {
        PeerTransport::with_group_key(clock, link_ids, None)
    }

    /// As [`PeerTransport::new`], with a group key: every `Exchange` link then goes through the
    /// group-key handshake before it is reported up, every frame is sealed and checked (see
    /// [`music262_proto::auth`]), and the legacy calls that change playback (`SendMusicCommand`,
    /// `Gossip`, `Exit`) need the key's token in the `music262-auth` metadata entry.
    pub fn with_group_key(
        clock: ClockFn,
        link_ids: Arc<AtomicU64>,
        key: Option<GroupKey>,
    ) -> (Self, mpsc::UnboundedReceiver<TransportEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            clock,
            events: tx,
            links: Mutex::new(BTreeMap::new()),
            next_link: link_ids,
            key,
            counters: AtomicCounters::default(),
            legacy_rates: Mutex::new(BTreeMap::new()),
            gate: PortGate::default(),
            port_log: PortLog::new("peer port"),
        });
        (PeerTransport { shared }, rx)
    }

    /// Serves the peer endpoint on `listener` until `shutdown` resolves, with the peer port's
    /// connection limits ([`ConnLimits::PEER_PORT`]).
    pub fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
        self.serve_with_limits(listener, ConnLimits::PEER_PORT, shutdown)
    }

    /// As [`PeerTransport::serve`], with these limits on strangers' connections: beyond them a
    /// connection is closed at accept (reported as [`TransportEvent::Shed`]), and a stranger's
    /// idle one after the idle timeout. A connection whose link passes the group-key handshake
    /// (any link, without a key) is a member's and leaves the strangers' budget.
    pub fn serve_with_limits(
        &self,
        listener: TcpListener,
        limits: ConnLimits,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
        let service = ClientHandlerServer::new(PeerService {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(MAX_FRAME_LEN)
        .max_encoding_message_size(MAX_FRAME_LEN);
        let clock = self.shared.clock.clone();
        let gate = self.shared.gate.serve(limits);
        let events = self.shared.events.clone();
        let incoming = listen::admit(
            listener,
            gate,
            self.shared.port_log.clone(),
            move |tcp| StampedStream::new(tcp, clock.clone()),
            move |remote_addr, reason| {
                let _ = events.send(TransportEvent::Shed {
                    remote_addr,
                    reason,
                });
            },
        );
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        })
    }

    /// Number of open links.
    pub fn link_count(&self) -> usize {
        self.shared.links.lock().expect("links lock").len()
    }
}

impl PeerLinks for PeerTransport {
    /// Queues `message` on `link`. Returns `false` when the link is unknown or its queue is full
    /// (the message is then dropped).
    fn send(&self, link: LinkId, message: Message) -> bool {
        let links = self.shared.links.lock().expect("links lock");
        match links.get(&link) {
            Some(h) => h.outbound.try_send(message).is_ok(),
            None => false,
        }
    }

    /// Dials the peer at `addr` (`host:port`) and opens a link; reports
    /// [`TransportEvent::LinkUp`] or [`TransportEvent::ConnectFailed`].
    fn connect(&self, addr: String) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            match dial(&addr, shared.clock.clone()).await {
                Ok((client, stamp)) => open_outgoing(shared, client, stamp, addr).await,
                Err(error) => {
                    let _ = shared
                        .events
                        .send(TransportEvent::ConnectFailed { addr, error });
                }
            }
        });
    }

    /// Closes `link` after the frames already queued on it are written.
    fn close(&self, link: LinkId) {
        let handle = self.shared.links.lock().expect("links lock").remove(&link);
        if let Some(h) = handle {
            // Dropping the sender ends the outbound stream once it is drained; stop reading.
            drop(h.outbound);
            if let Some(r) = h.reader {
                r.abort();
            }
        }
    }

    /// What this transport counted so far (no datagrams: gRPC has none).
    fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }
}

type Dialled = (ClientHandlerClient<tonic::transport::Channel>, ConnStamps);

async fn dial(addr: &str, clock: ClockFn) -> Result<Dialled, String> {
    let endpoint = crate::dial::endpoint(addr, CONNECT_TIMEOUT)?;
    // Our own connector, so that the TCP stream under the channel stamps its reads.
    let stamp_slot: Arc<Mutex<ConnStamps>> = Arc::default();
    let slot = stamp_slot.clone();
    let connector = tower::service_fn(move |uri: tonic::transport::Uri| {
        let clock = clock.clone();
        let slot = slot.clone();
        async move {
            let host = uri
                .host()
                .unwrap_or("localhost")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(80);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let stream = StampedStream::new(tcp, clock);
            *slot.lock().expect("stamp slot") = stream.stamps();
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {}", error_chain(&e)))?;
    let stamp = stamp_slot.lock().expect("stamp slot").clone();
    Ok((
        ClientHandlerClient::new(channel)
            .max_decoding_message_size(MAX_FRAME_LEN)
            .max_encoding_message_size(MAX_FRAME_LEN),
        stamp,
    ))
}

/// The innermost causes of an error, joined, which is where tonic puts the useful part
/// ("Connection refused").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Restamps the transmit instants of clock probes with the moment the frame is encoded, and
/// asks the connection to rewrite them once more when their bytes reach the socket (see
/// [`crate::stamp`] and `sync_core::ProbeReply`), then converts the message. On a keyed link the
/// frame is sealed here, and the connection is given what it needs to reseal the frame when it
/// rewrites the instant.
fn outbound_frame(
    shared: &Shared,
    stamps: &ConnStamps,
    sealer: Option<&Arc<Sealer>>,
    mut message: Message,
) -> PeerFrame {
    let provisional = stamp_message(&mut message, (shared.clock)());
    bump(&shared.counters.stream_frames_sent);
    let frame = PeerFrame::from(&message);
    let Some(sealer) = sealer else {
        if let Some(t) = provisional {
            stamps.stamp_on_write(t);
        }
        return frame;
    };
    let body_len = frame.encoded_len();
    let sealed = sealer.seal(Channel::Stream, frame);
    if let Some(t) = provisional {
        let bytes = sealed.encode_to_vec();
        // The instant is the last field of the body holding these bytes (t2 follows t1, which
        // may hold the same value).
        let needle = t.to_le_bytes();
        if let Some(stamp_at) = bytes[..body_len].windows(8).rposition(|w| w == needle) {
            stamps.stamp_and_reseal_on_write(
                t,
                Reseal {
                    frame: bytes,
                    stamp_at,
                    body_len,
                    counter: sealed.auth.as_ref().map_or(0, |a| a.counter),
                    sealer: sealer.clone(),
                },
            );
        }
    }
    sealed
}

/// The frames of one link: the group-key handshake's frames first (none without a key), then
/// the node's messages, sealed once the handshake has set the sealer.
pub(crate) fn outbound_stream(
    shared: &Arc<Shared>,
    stamps: ConnStamps,
    handshake: mpsc::Receiver<PeerFrame>,
    rx: mpsc::Receiver<Message>,
    seal: SealSlot,
) -> impl Stream<Item = PeerFrame> + Send + 'static {
    let shared = shared.clone();
    ReceiverStream::new(handshake).chain(
        ReceiverStream::new(rx).map(move |m| outbound_frame(&shared, &stamps, seal.get(), m)),
    )
}

async fn next_handshake_frame(
    inbound: &mut Streaming<PeerFrame>,
) -> Result<PeerFrame, HandshakeFailure> {
    match inbound.message().await {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(HandshakeFailure::Broken("the peer closed the link".into())),
        Err(status) => Err(HandshakeFailure::Broken(status.message().to_string())),
    }
}

/// The group-key handshake on an `Exchange` stream (see [`music262_proto::auth`]): our opening
/// frame, the peer's, our proof, the peer's. Plain TCP has no channel binding to offer.
async fn authenticate(
    key: &GroupKey,
    role: Role,
    handshake: mpsc::Sender<PeerFrame>,
    seal: &SealSlot,
    inbound: &mut Streaming<PeerFrame>,
) -> Result<Opener, HandshakeFailure> {
    let mut nonce = [0u8; auth::NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| HandshakeFailure::Broken(format!("no randomness for a nonce: {e}")))?;
    let gone = |_| HandshakeFailure::Broken("the link was closed".into());
    handshake
        .send(auth::opening_frame(key, nonce))
        .await
        .map_err(gone)?;
    let opening = next_handshake_frame(inbound).await?;
    let peer_nonce = auth::read_opening(key, &opening).map_err(HandshakeFailure::Refused)?;
    let keys = LinkKeys::derive(key, role, &nonce, &peer_nonce, b"");
    let sealer = Arc::new(keys.sealer());
    let proof = sealer.proof();
    let _ = seal.set(sealer);
    handshake.send(proof).await.map_err(gone)?;
    // Ends the handshake part of the outbound stream: the node's messages follow.
    drop(handshake);
    let mut opener = keys.opener(Channel::Stream);
    let proof = next_handshake_frame(inbound).await?;
    opener
        .open_proof(proof)
        .map_err(HandshakeFailure::Refused)?;
    Ok(opener)
}

/// Runs the group-key handshake of a keyed link, then reports it up and reads its frames; a
/// peer that fails is refused (reported, counted, the link closed).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_keyed_link(
    shared: Arc<Shared>,
    link: LinkId,
    stamp: ConnStamps,
    mut inbound: Streaming<PeerFrame>,
    key: GroupKey,
    handshake: mpsc::Sender<PeerFrame>,
    seal: SealSlot,
    remote_addr: String,
    direction: Direction,
) {
    let role = auth_role(direction);
    let dialled = direction == Direction::Outgoing;
    let outcome = tokio::time::timeout(
        AUTH_TIMEOUT,
        authenticate(&key, role, handshake, &seal, &mut inbound),
    )
    .await
    .unwrap_or_else(|_| Err(HandshakeFailure::too_slow()));
    match outcome {
        Ok(opener) => {
            if !shared.links.lock().expect("links lock").contains_key(&link) {
                return; // closed meanwhile
            }
            if direction == Direction::Incoming {
                shared.gate.member(&remote_addr);
            }
            let _ = shared.events.send(TransportEvent::LinkUp {
                link,
                remote_addr: remote_addr.clone(),
                direction,
            });
            read_frames(shared, link, remote_addr, stamp, inbound, Some(opener)).await;
        }
        Err(failure) => {
            // Dropping the link's sender ends our half of the stream.
            shared.links.lock().expect("links lock").remove(&link);
            let event = match failure {
                HandshakeFailure::Refused(error) => {
                    bump(&shared.counters.auth_refused);
                    match remote_addr.parse::<SocketAddr>() {
                        // A stranger's refusals are logged at a bounded rate.
                        Ok(a) if !dialled => shared.port_log.note(a.ip(), RefusalKind::WrongKey),
                        _ => tracing::warn!(peer = %remote_addr, %error, "gRPC link refused"),
                    }
                    // Dropping the stream at once would reset it, and the peer could lose our
                    // opening frame unread and never learn why; let it read and refuse in
                    // turn, briefly (what it sends meanwhile is discarded).
                    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                        while let Ok(Some(_)) = inbound.message().await {}
                    })
                    .await;
                    TransportEvent::Refused {
                        link: None,
                        remote_addr,
                        dialled,
                        reason: Refusal::Auth(error),
                    }
                }
                HandshakeFailure::Broken(error) if dialled => TransportEvent::ConnectFailed {
                    addr: remote_addr,
                    error,
                },
                HandshakeFailure::Broken(error) => {
                    tracing::trace!(peer = %remote_addr, %error, "gRPC group-key handshake failed");
                    if let Ok(a) = remote_addr.parse::<SocketAddr>() {
                        shared.port_log.note(a.ip(), RefusalKind::Handshake);
                    }
                    return;
                }
            };
            let _ = shared.events.send(event);
        }
    }
}

pub(crate) fn register_link(
    shared: &Arc<Shared>,
    outbound: mpsc::Sender<Message>,
    reader: Option<tokio::task::AbortHandle>,
) -> LinkId {
    let link = LinkId(shared.next_link.fetch_add(1, Ordering::Relaxed));
    shared
        .links
        .lock()
        .expect("links lock")
        .insert(link, LinkHandle { outbound, reader });
    link
}

/// Reads frames from `inbound` until it ends, stamping each with the instant its bytes were
/// read off the socket (see [`crate::stamp`]).
///
/// Frames beyond the per-peer rate limit are dropped before anything else (counted, reported
/// at most once a second); on a keyed link each frame's seal is checked by `opener`, and a
/// frame that fails is dropped, counted and reported.
pub(crate) async fn read_frames(
    shared: Arc<Shared>,
    link: LinkId,
    remote_addr: String,
    stamp: ConnStamps,
    mut inbound: Streaming<PeerFrame>,
    mut opener: Option<Opener>,
) {
    let mut limit = PeerRateLimit::new((shared.clock)());
    let refuse = |reason: Refusal| {
        tracing::warn!(peer = %remote_addr, error = %reason, "gRPC frame refused");
        // `false` once the driver is gone.
        shared
            .events
            .send(TransportEvent::Refused {
                link: Some(link),
                remote_addr: remote_addr.clone(),
                dialled: false,
                reason,
            })
            .is_ok()
    };
    let error = loop {
        match inbound.message().await {
            Ok(Some(frame)) => {
                let now = (shared.clock)();
                let at = LocalTime(stamp.last_read(now).unwrap_or(now));
                bump(&shared.counters.stream_frames_received);
                if let Err(report) = limit.admit(now, &shared.counters) {
                    if let Some(reason) = report
                        && !refuse(reason)
                    {
                        return;
                    }
                    continue;
                }
                let frame = match opener.as_mut() {
                    None => frame,
                    Some(opener) => match opener.open_message(frame) {
                        Ok(opened) => opened,
                        Err(error) => {
                            bump(&shared.counters.auth_refused);
                            if !refuse(Refusal::Auth(error)) {
                                return;
                            }
                            continue;
                        }
                    },
                };
                let message = Message::try_from(frame);
                if message.is_err() {
                    bump(&shared.counters.undecodable);
                }
                if shared
                    .events
                    .send(TransportEvent::Frame { link, at, message })
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => break None,
            Err(status) => break Some(status.message().to_string()),
        }
    };
    shared.links.lock().expect("links lock").remove(&link);
    let _ = shared.events.send(TransportEvent::LinkDown { link, error });
}

async fn open_outgoing(
    shared: Arc<Shared>,
    mut client: ClientHandlerClient<tonic::transport::Channel>,
    stamp: ConnStamps,
    addr: String,
) {
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    let (hs_tx, hs_rx) = mpsc::channel(2);
    let seal = SealSlot::default();
    let outbound = outbound_stream(&shared, stamp.clone(), hs_rx, rx, seal.clone());
    // Registered now so that a close during the dial is noticed; announced to the driver only
    // once the peer has answered (and, with a key, passed the handshake).
    let link = register_link(&shared, tx, None);
    let response = client.exchange(Request::new(outbound));
    match tokio::time::timeout(CONNECT_TIMEOUT, response).await {
        Ok(Ok(resp)) => {
            let inbound = resp.into_inner();
            let reader = match shared.key.clone() {
                Some(key) => tokio::spawn(run_keyed_link(
                    shared.clone(),
                    link,
                    stamp,
                    inbound,
                    key,
                    hs_tx,
                    seal,
                    addr.clone(),
                    Direction::Outgoing,
                )),
                None => {
                    drop(hs_tx);
                    tokio::spawn(read_frames(
                        shared.clone(),
                        link,
                        addr.clone(),
                        stamp,
                        inbound,
                        None,
                    ))
                }
            };
            let mut links = shared.links.lock().expect("links lock");
            match links.get_mut(&link) {
                Some(h) => h.reader = Some(reader.abort_handle()),
                None => {
                    // Closed by the driver while the stream was being opened.
                    reader.abort();
                    return;
                }
            }
            drop(links);
            if shared.key.is_none() {
                let _ = shared.events.send(TransportEvent::LinkUp {
                    link,
                    remote_addr: addr,
                    direction: Direction::Outgoing,
                });
            }
        }
        Ok(Err(status)) => {
            shared.links.lock().expect("links lock").remove(&link);
            let _ = shared.events.send(TransportEvent::ConnectFailed {
                addr,
                error: format!("peer refused the link: {}", status.message()),
            });
        }
        Err(_) => {
            shared.links.lock().expect("links lock").remove(&link);
            let _ = shared.events.send(TransportEvent::ConnectFailed {
                addr,
                error: "peer did not answer".to_string(),
            });
        }
    }
}
