//! The QUIC peer endpoint: one quinn endpoint on the client's peer port, serving and dialling,
//! one connection per peer link.
//!
//! On each connection the dialler opens one bidirectional stream, which carries the link's
//! frames in order (length-delimited `PeerFrame` bytes, see [`crate::framing`]); clock probes
//! and their replies travel as QUIC datagrams instead, so a lost probe is simply lost and never
//! holds up the frames behind it (nor waits behind them). Frames are decoded here and handed to
//! the driver with the instant their packet was read off the socket ([`crate::stamp`]). No
//! protocol decision is taken here.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use music262_proto::auth::{self, Channel, GroupKey, LinkKeys, Opener, Refusal, Role, Sealer};
use music262_proto::client::PeerFrame;
use music262_proto::codec::{self, CodecError};
use prost::Message as _;
use quinn::{
    ClientConfig, Connection, ConnectionError, Endpoint, EndpointConfig, IdleTimeout, RecvStream,
    Runtime, SendStream, ServerConfig, TransportConfig, VarInt,
};
use sync_core::{Direction, LinkId, LocalTime, Message};
use tokio::sync::{mpsc, oneshot};
use transport_common::counters::bump;
use transport_common::probe::{
    AUTH_TIMEOUT, CONNECT_TIMEOUT, HandshakeFailure, LINK_QUEUE, REFUSAL_LINGER, auth_role,
    stamp_message,
};
use transport_common::refusals::{PortLog, RefusalKind};
use transport_common::{
    AtomicCounters, ClockFn, ConnGate, ConnLimits, ConnSlot, Counters, PeerLinks, PeerRateLimit,
    PortGate, TransportEvent,
};

use crate::framing::{FrameReader, delimit};
use crate::stamp::{ProbeTx, RxStamps, StampedSocket, TxStamps, find_tx_stamp, restamp};
use crate::tls::{self, SERVER_NAME, TlsError};

/// How long an accepted connection may take to open its stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closed link waits for the peer to acknowledge its last frames (a `Leave`)
/// before the connection is closed regardless.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// A connection silent this long is dead (sync-core removes a silent peer sooner, after 6 s).
const IDLE_TIMEOUT_MS: u32 = 10_000;
/// Keep-alives, in case the node sends nothing for a while.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Datagram bytes buffered in each direction.
const DATAGRAM_BUFFER: usize = 64 * 1024;
/// Largest piece read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;
/// QUIC application error code of a connection closed because the group-key check failed.
pub const AUTH_REFUSED: u32 = 0x4B;

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The UDP socket could not be used.
    #[error("UDP socket: {0}")]
    Io(#[from] io::Error),
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

struct LinkHandle {
    conn: Connection,
    outbound: mpsc::Sender<Message>,
    readers: Vec<tokio::task::AbortHandle>,
    /// Seals this end's frames, on a keyed link.
    sealer: Option<Arc<Sealer>>,
    /// The socket's transmit instants of this link's probes and replies.
    probe_tx: Arc<Mutex<ProbeTx>>,
}

struct Shared {
    clock: ClockFn,
    events: mpsc::UnboundedSender<TransportEvent>,
    links: Mutex<BTreeMap<LinkId, LinkHandle>>,
    next_link: Arc<AtomicU64>,
    /// The endpoint that dials: the serving one, or a client-only one made on demand.
    endpoint: Mutex<Option<Endpoint>>,
    stamps: RxStamps,
    tx_stamps: TxStamps,
    counters: AtomicCounters,
    /// The group key: with one, every link is authenticated and every frame sealed.
    key: Option<GroupKey>,
    /// The peer port's connection budget, once it serves.
    gate: PortGate,
    /// The peer port's refusals, logged at a bounded rate.
    port_log: Arc<PortLog>,
}

/// The QUIC peer transport. Cheap to clone; all clones drive the same links.
#[derive(Clone)]
pub struct QuicTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport").finish_non_exhaustive()
    }
}

fn transport_config() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        .keep_alive_interval(Some(KEEP_ALIVE))
        // One stream per link, opened by the dialler.
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_BUFFER);
    Arc::new(t)
}

impl QuicTransport {
    /// A transport reading `clock` for receive instants, numbering links from `link_ids` (shared
    /// with any other transport of the same node so ids never collide). Events arrive on the
    /// returned receiver.
    pub fn new(
        clock: ClockFn,
        link_ids: Arc<AtomicU64>,
    ) -> (Self, mpsc::UnboundedReceiver<TransportEvent>) {
        QuicTransport::with_group_key(clock, link_ids, None)
    }

    /// As [`QuicTransport::new`], with a group key: every link then goes through the
    /// group-key handshake (bound to its TLS session) before it is reported up, and every frame
    /// is sealed and checked (see [`music262_proto::auth`]).
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
            endpoint: Mutex::new(None),
            stamps: RxStamps::default(),
            tx_stamps: TxStamps::default(),
            counters: AtomicCounters::default(),
            key,
            gate: PortGate::default(),
            port_log: PortLog::new("QUIC peer port"),
        });
        (QuicTransport { shared }, rx)
    }

    /// Serves the peer endpoint on `socket` (links are dialled from it too) until `shutdown`
    /// resolves, then closes every connection, with the peer port's connection limits
    /// ([`ConnLimits::PEER_PORT`]). Must be called within a tokio runtime.
    pub fn serve(
        &self,
        socket: std::net::UdpSocket,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<tokio::task::JoinHandle<()>, QuicError> {
        self.serve_with_limits(socket, ConnLimits::PEER_PORT, shutdown)
    }

    /// As [`QuicTransport::serve`], with these limits on strangers' connections: beyond them
    /// an incoming connection is refused before its handshake (reported as
    /// [`TransportEvent::Shed`]). A connection whose link passes the group-key handshake (any
    /// link, without a key) is a member's and leaves the strangers' budget; a stranger's is
    /// closed by the stream and handshake timeouts.
    pub fn serve_with_limits(
        &self,
        socket: std::net::UdpSocket,
        limits: ConnLimits,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<tokio::task::JoinHandle<()>, QuicError> {
        let gate = self.shared.gate.serve(limits);
        let endpoint = make_endpoint(&self.shared, socket, true)?;
        *self.shared.endpoint.lock().expect("endpoint lock") = Some(endpoint.clone());
        let shared = self.shared.clone();
        Ok(tokio::spawn(async move {
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    incoming = endpoint.accept() => match incoming {
                        Some(incoming) => admit(&shared, &gate, incoming),
                        None => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
            endpoint.close(VarInt::from_u32(0), b"shutting down");
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }))
    }

    /// The local address of the endpoint links are dialled from, once there is one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        let endpoint = self.shared.endpoint.lock().expect("endpoint lock");
        endpoint.as_ref().and_then(|e| e.local_addr().ok())
    }

    /// Number of open links.
    pub fn link_count(&self) -> usize {
        self.shared.links.lock().expect("links lock").len()
    }
}

impl PeerLinks for QuicTransport {
    /// Sends `message` on `link`: clock probes and replies as a datagram (on the stream if the
    /// peer takes no datagrams), everything else queued on the link's stream. Returns `false`
    /// when the link is unknown, its queue is full, or the message cannot be encoded (the
    /// message is then dropped).
    fn send(&self, link: LinkId, message: Message) -> bool {
        let (conn, outbound, sealer, probe_tx) = {
            let links = self.shared.links.lock().expect("links lock");
            match links.get(&link) {
                Some(h) => (
                    h.conn.clone(),
                    h.outbound.clone(),
                    h.sealer.clone(),
                    h.probe_tx.clone(),
                ),
                None => return false,
            }
        };
        let message = match message {
            m @ (Message::Probe(_) | Message::ProbeReply(_)) => {
                match send_datagram(&self.shared, &conn, sealer.as_deref(), &probe_tx, m) {
                    Datagram::Sent => return true,
                    Datagram::UseStream(m) => m,
                    Datagram::Unencodable => return false,
                }
            }
            m => m,
        };
        outbound.try_send(message).is_ok()
    }

    /// Dials the peer at `addr` (`host:port`, the peer's UDP port) and opens a link; reports
    /// [`TransportEvent::LinkUp`] or [`TransportEvent::ConnectFailed`]. Without [`serve`]
    /// first, dials from a client-only endpoint on an ephemeral port.
    ///
    /// [`serve`]: QuicTransport::serve
    fn connect(&self, addr: String) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            match dial(&shared, &addr).await {
                Ok((conn, send, recv)) => {
                    open_link(shared, conn, send, recv, addr, Direction::Outgoing).await
                }
                Err(error) => {
                    let _ = shared
                        .events
                        .send(TransportEvent::ConnectFailed { addr, error });
                }
            }
        });
    }

    /// Closes `link` after the frames already queued on it are written and acknowledged (for at
    /// most a couple of seconds). No event follows for it.
    fn close(&self, link: LinkId) {
        let handle = self.shared.links.lock().expect("links lock").remove(&link);
        if let Some(h) = handle {
            for r in &h.readers {
                r.abort();
            }
            // Dropping the sender lets the writer drain, finish the stream and close the
            // connection; this is the backstop if the peer never acknowledges.
            drop(h.outbound);
            let conn = h.conn;
            tokio::spawn(async move {
                tokio::time::sleep(CLOSE_LINGER + Duration::from_secs(1)).await;
                conn.close(VarInt::from_u32(0), b"closed");
            });
        }
    }

    /// What went over this transport so far (no legacy calls: QUIC carries none).
    fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }
}

/// Builds an endpoint on `socket`, wrapped so that receive instants are stamped.
fn make_endpoint(
    shared: &Shared,
    socket: std::net::UdpSocket,
    serve: bool,
) -> Result<Endpoint, QuicError> {
    socket.set_nonblocking(true)?;
    let runtime: Arc<dyn Runtime> = Arc::new(quinn::TokioRuntime);
    // Cloned before quinn takes it: receive instants are peeked at on the clone.
    let stamped = StampedSocket::new(
        runtime.wrap_udp_socket(socket.try_clone()?)?,
        shared.clock.clone(),
        shared.stamps.clone(),
        shared.tx_stamps.clone(),
    )
    .with_kernel_stamps(&socket);
    drop(socket);
    let socket = Arc::new(stamped);
    let server_config = if serve {
        let mut config = ServerConfig::with_crypto(Arc::new(tls::server_crypto()?));
        config.transport_config(transport_config());
        // Handshakes not yet taken by the accept loop (which takes them at once).
        if let Some(gate) = shared.gate.get() {
            config.max_incoming(gate.limits().total);
        }
        Some(config)
    } else {
        None
    };
    let mut endpoint = Endpoint::new_with_abstract_socket(
        EndpointConfig::default(),
        server_config,
        socket,
        runtime,
    )?;
    let mut client = ClientConfig::new(Arc::new(tls::client_crypto()?));
    client.transport_config(transport_config());
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// The endpoint to dial from, made client-only on an ephemeral port if none serves yet.
fn dialling_endpoint(shared: &Shared) -> Result<Endpoint, QuicError> {
    let mut slot = shared.endpoint.lock().expect("endpoint lock");
    if let Some(e) = slot.as_ref() {
        return Ok(e.clone());
    }
    let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))?;
    let endpoint = make_endpoint(shared, socket, false)?;
    *slot = Some(endpoint.clone());
    Ok(endpoint)
}

type Dialled = (Connection, SendStream, RecvStream);

async fn dial(shared: &Shared, addr: &str) -> Result<Dialled, String> {
    let endpoint = dialling_endpoint(shared).map_err(|e| e.to_string())?;
    let local_v4 = endpoint.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
    let targets: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("bad address `{addr}`: {e}"))?
        .collect();
    let target = targets
        .iter()
        .find(|a| a.is_ipv4() == local_v4)
        .or(targets.first())
        .copied()
        .ok_or_else(|| format!("`{addr}` resolves to no address"))?;
    let connecting = endpoint
        .connect(target, SERVER_NAME)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => return Err("peer did not answer (QUIC)".to_string()),
    };
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| format!("cannot open a stream to {addr}: {e}"))?;
    Ok((conn, send, recv))
}

/// An incoming connection admitted by `gate` is accepted; one beyond it refused at once
/// (quinn's `Incoming::refuse`: no handshake, no state kept), logged and reported.
fn admit(shared: &Arc<Shared>, gate: &ConnGate, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    match gate.admit(remote) {
        Ok(slot) => {
            tokio::spawn(accept_link(shared.clone(), incoming, slot));
        }
        Err(reason) => {
            incoming.refuse();
            shared.port_log.note(remote.ip(), RefusalKind::TooMany);
            let _ = shared.events.send(TransportEvent::Shed {
                remote_addr: remote,
                reason,
            });
        }
    }
}

/// Holds `slot` while `conn` is open, and closes `conn` if the gate sheds it for a newcomer.
async fn hold_slot(conn: Connection, slot: ConnSlot) {
    let shed = std::future::poll_fn(|cx| {
        slot.wake_on_shed(cx.waker());
        if slot.is_shed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    tokio::select! {
        _ = conn.closed() => {}
        _ = shed => conn.close(VarInt::from_u32(0), b"too many connections"),
    }
}

async fn accept_link(shared: Arc<Shared>, incoming: quinn::Incoming, slot: ConnSlot) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, incoming.into_future()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "incoming QUIC connection failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "incoming QUIC handshake timed out");
            return;
        }
    };
    tokio::spawn(hold_slot(conn.clone(), slot));
    match tokio::time::timeout(STREAM_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok((send, recv))) => {
            open_link(
                shared,
                conn,
                send,
                recv,
                remote.to_string(),
                Direction::Incoming,
            )
            .await
        }
        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "QUIC peer opened no stream"),
        Err(_) => {
            tracing::debug!(%remote, "QUIC peer opened no stream in time");
            conn.close(VarInt::from_u32(0), b"no stream");
        }
    }
}

/// What the group-key handshake leaves for the link's tasks.
struct Authenticated {
    sealer: Arc<Sealer>,
    stream: Opener,
    datagrams: Opener,
    /// Bytes read past the proof (the start of the peer's first message).
    reader: FrameReader,
}

/// The next whole frame of the stream, decoded (handshake frames only).
async fn next_frame(
    recv: &mut RecvStream,
    reader: &mut FrameReader,
) -> Result<PeerFrame, HandshakeFailure> {
    loop {
        if let Some(frame) = reader.next_frame() {
            let bytes = frame.map_err(|e| HandshakeFailure::Broken(e.to_string()))?;
            return PeerFrame::decode(bytes.as_slice())
                .map_err(|e| HandshakeFailure::Broken(format!("malformed frame: {e}")));
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) => return Err(HandshakeFailure::Broken("the peer closed the link".into())),
            Err(e) => return Err(HandshakeFailure::Broken(e.to_string())),
        }
    }
}

/// The group-key handshake (see [`music262_proto::auth`]): opening frames with nonces, then
/// proofs, with the TLS session's exporter keying material as channel binding, so that the key
/// is checked against this very TLS session before the link is handed to the node.
async fn authenticate(
    key: &GroupKey,
    conn: &Connection,
    send: &mut SendStream,
    recv: &mut RecvStream,
    role: Role,
) -> Result<Authenticated, HandshakeFailure> {
    let mut nonce = [0u8; auth::NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| HandshakeFailure::Broken(format!("no randomness for a nonce: {e}")))?;
    let mut binding = [0u8; auth::CHANNEL_BINDING_LEN];
    conn.export_keying_material(&mut binding, auth::EXPORTER_LABEL, b"")
        .map_err(|_| HandshakeFailure::Broken("TLS exporter unavailable".into()))?;
    let write = |e: quinn::WriteError| HandshakeFailure::Broken(e.to_string());
    send.write_all(&delimit(&auth::opening_frame(key, nonce).encode_to_vec()))
        .await
        .map_err(write)?;
    let mut reader = FrameReader::default();
    let opening = next_frame(recv, &mut reader).await?;
    let peer_nonce = auth::read_opening(key, &opening).map_err(HandshakeFailure::Refused)?;
    let keys = LinkKeys::derive(key, role, &nonce, &peer_nonce, &binding);
    let sealer = Arc::new(keys.sealer());
    send.write_all(&delimit(&sealer.proof().encode_to_vec()))
        .await
        .map_err(write)?;
    let mut stream = keys.opener(Channel::Stream);
    let proof = next_frame(recv, &mut reader).await?;
    stream
        .open_proof(proof)
        .map_err(HandshakeFailure::Refused)?;
    Ok(Authenticated {
        sealer,
        stream,
        datagrams: keys.opener(Channel::Datagram),
        reader,
    })
}

/// Runs the group-key handshake when there is a key, then starts the link; a peer that fails
/// it is refused (reported, counted, its connection closed with [`AUTH_REFUSED`]).
async fn open_link(
    shared: Arc<Shared>,
    conn: Connection,
    mut send: SendStream,
    mut recv: RecvStream,
    remote_addr: String,
    direction: Direction,
) {
    let Some(key) = shared.key.clone() else {
        // Without a key any link is a member's.
        if direction == Direction::Incoming {
            shared.gate.member(&remote_addr);
        }
        start_link(&shared, conn, send, recv, remote_addr, direction, None);
        return;
    };
    let role = auth_role(direction);
    let dialled = direction == Direction::Outgoing;
    let outcome = tokio::time::timeout(
        AUTH_TIMEOUT,
        authenticate(&key, &conn, &mut send, &mut recv, role),
    )
    .await
    .unwrap_or_else(|_| Err(HandshakeFailure::too_slow()));
    match outcome {
        Ok(auth) => {
            if direction == Direction::Incoming {
                shared.gate.member(&remote_addr);
            }
            start_link(
                &shared,
                conn,
                send,
                recv,
                remote_addr,
                direction,
                Some(auth),
            )
        }
        Err(HandshakeFailure::Refused(error)) => {
            bump(&shared.counters.auth_refused);
            match remote_addr.parse::<SocketAddr>() {
                // A stranger's refusals are logged at a bounded rate.
                Ok(a) if !dialled => shared.port_log.note(a.ip(), RefusalKind::WrongKey),
                _ => tracing::warn!(peer = %remote_addr, %error, "QUIC link refused"),
            }
            // Closing at once would discard our opening frame before the peer reads it, and
            // it would not learn why; let it read and refuse in turn, briefly.
            let _ = tokio::time::timeout(REFUSAL_LINGER, conn.closed()).await;
            conn.close(VarInt::from_u32(AUTH_REFUSED), b"group key refused");
            let _ = shared.events.send(TransportEvent::Refused {
                link: None,
                remote_addr,
                dialled,
                reason: Refusal::Auth(error),
            });
        }
        Err(HandshakeFailure::Broken(error)) => {
            conn.close(VarInt::from_u32(0), b"handshake failed");
            if dialled {
                let _ = shared.events.send(TransportEvent::ConnectFailed {
                    addr: remote_addr,
                    error,
                });
            } else {
                tracing::trace!(peer = %remote_addr, %error, "QUIC group-key handshake failed");
                if let Ok(a) = remote_addr.parse::<SocketAddr>() {
                    shared.port_log.note(a.ip(), RefusalKind::Handshake);
                }
            }
        }
    }
}

/// Registers a link for an established (and, with a key, authenticated) connection and its
/// stream, announces it, and starts its reader and writer tasks.
fn start_link(
    shared: &Arc<Shared>,
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    remote_addr: String,
    direction: Direction,
    auth: Option<Authenticated>,
) {
    let (sealer, stream_opener, datagram_opener, reader) = match auth {
        Some(a) => (Some(a.sealer), Some(a.stream), Some(a.datagrams), a.reader),
        None => (None, None, None, FrameReader::default()),
    };
    let limit = Arc::new(Mutex::new(PeerRateLimit::new((shared.clock)())));
    let probe_tx = Arc::new(Mutex::new(ProbeTx::default()));
    let link = LinkId(shared.next_link.fetch_add(1, Ordering::Relaxed));
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    {
        let mut links = shared.links.lock().expect("links lock");
        links.insert(
            link,
            LinkHandle {
                conn: conn.clone(),
                outbound: tx,
                readers: Vec::new(),
                sealer: sealer.clone(),
                probe_tx: probe_tx.clone(),
            },
        );
        // Sent under the lock so that nothing about this link can precede it.
        let _ = shared.events.send(TransportEvent::LinkUp {
            link,
            remote_addr: remote_addr.clone(),
            direction,
        });
    }
    tokio::spawn(write_frames(shared.clone(), conn.clone(), send, rx, sealer));
    let (first_tx, first_rx) = oneshot::channel();
    let inbound = Inbound {
        shared: shared.clone(),
        link,
        remote_addr,
        limit,
        probe_tx,
    };
    let stream = tokio::spawn(read_stream(
        inbound.clone(),
        conn.clone(),
        recv,
        reader,
        stream_opener,
        first_tx,
    ));
    let datagrams = tokio::spawn(read_datagrams(inbound, conn, datagram_opener, first_rx));
    let readers = vec![stream.abort_handle(), datagrams.abort_handle()];
    let mut links = shared.links.lock().expect("links lock");
    match links.get_mut(&link) {
        Some(h) => h.readers = readers,
        None => {
            // Already closed or ended.
            for r in readers {
                r.abort();
            }
        }
    }
}

/// What became of a frame offered as a datagram.
enum Datagram {
    Sent,
    /// Datagrams are not possible on this connection (or not this large): send it on the
    /// stream.
    UseStream(Message),
    Unencodable,
}

/// Sends a probe or reply as a datagram, its transmit instant rewritten just before it is
/// handed to quinn (a reply's `t2` moved on by the delay its predecessors took to reach the
/// socket), and a ticket taken for the instant the socket really sends it ([`ProbeTx`]).
fn send_datagram(
    shared: &Shared,
    conn: &Connection,
    sealer: Option<&Sealer>,
    probe_tx: &Mutex<ProbeTx>,
    mut message: Message,
) -> Datagram {
    let Some(max) = conn.max_datagram_size() else {
        return Datagram::UseStream(message);
    };
    let lead = match message {
        Message::ProbeReply(_) => probe_tx.lock().expect("probe tx lock").reply_lead(),
        _ => 0,
    };
    stamp_message(&mut message, (shared.clock)());
    let mut bytes = match codec::encode_to_vec(&message) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "frame not sent: cannot be encoded");
            return Datagram::Unencodable;
        }
    };
    if bytes.len() + SEAL_OVERHEAD > max {
        return Datagram::UseStream(message);
    }
    let stamp = find_tx_stamp(&message, &bytes);
    let handoff = (shared.clock)();
    let written = restamp(&mut bytes, stamp, handoff + lead);
    // Sealed after the instant is final, so that the tag covers what is sent.
    if let Some(sealer) = sealer {
        bytes = sealer.seal_bytes(Channel::Datagram, bytes);
    }
    // Taken before the hand-off: quinn's driver may send the packet at once, on another thread.
    let ticket = shared.tx_stamps.ticket(conn.remote_address());
    match conn.send_datagram(bytes.into()) {
        Ok(()) => {
            bump(&shared.counters.datagrams_sent);
            let mut probe_tx = probe_tx.lock().expect("probe tx lock");
            match (&message, written) {
                (Message::Probe(p), Some(t0)) => probe_tx.probe_sent(p.seq, t0, ticket),
                (Message::ProbeReply(_), Some(_)) => probe_tx.reply_sent(handoff, ticket),
                _ => {}
            }
            Datagram::Sent
        }
        Err(e) => {
            tracing::debug!(error = %e, "datagram not sent; using the stream");
            Datagram::UseStream(message)
        }
    }
}

/// Bytes a seal adds to a frame at most: `auth` (tag, length, tag and 8-byte counter) and
/// `mac` (tag, length and the tag itself).
const SEAL_OVERHEAD: usize = 2 + 1 + 8 + 2 + auth::MAC_LEN;

/// Writes the link's queued frames to its stream until the link is closed, then finishes the
/// stream, lets the peer acknowledge it, and closes the connection.
async fn write_frames(
    shared: Arc<Shared>,
    conn: Connection,
    mut send: SendStream,
    mut rx: mpsc::Receiver<Message>,
    sealer: Option<Arc<Sealer>>,
) {
    while let Some(mut message) = rx.recv().await {
        stamp_message(&mut message, (shared.clock)());
        let mut body = match codec::encode_to_vec(&message) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "frame not sent: cannot be encoded");
                continue;
            }
        };
        let stamp = find_tx_stamp(&message, &body);
        restamp(&mut body, stamp, (shared.clock)());
        if let Some(sealer) = &sealer {
            body = sealer.seal_bytes(Channel::Stream, body);
        }
        let bytes = delimit(&body);
        if send.write_all(&bytes).await.is_err() {
            // The connection broke; the readers report it.
            return;
        }
        bump(&shared.counters.stream_frames_sent);
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(CLOSE_LINGER, send.stopped()).await;
    conn.close(VarInt::from_u32(0), b"closed");
}

fn close_reason(e: &ConnectionError) -> Option<String> {
    match e {
        ConnectionError::ApplicationClosed(c) if c.error_code == VarInt::from_u32(AUTH_REFUSED) => {
            Some("the peer refused the link: group keys differ (or one side has none)".into())
        }
        // The peer closed the connection on purpose (after its `Leave`, or shutting down).
        ConnectionError::ApplicationClosed(_) | ConnectionError::LocallyClosed => None,
        other => Some(other.to_string()),
    }
}

/// The link ended on its own: forget it, close the connection, tell the driver (once, and
/// never for a link the driver closed).
fn link_ended(shared: &Shared, link: LinkId, error: Option<String>) {
    let handle = shared.links.lock().expect("links lock").remove(&link);
    if let Some(h) = handle {
        for r in &h.readers {
            r.abort();
        }
        h.conn.close(VarInt::from_u32(0), b"link ended");
        let _ = shared.events.send(TransportEvent::LinkDown { link, error });
    }
}

/// A link's inbound side, shared by its stream and datagram readers.
#[derive(Clone)]
struct Inbound {
    shared: Arc<Shared>,
    link: LinkId,
    remote_addr: String,
    /// The per-peer rate limit, over both channels.
    limit: Arc<Mutex<PeerRateLimit>>,
    /// The socket's transmit instants of our probes, put into their replies.
    probe_tx: Arc<Mutex<ProbeTx>>,
}

impl Inbound {
    /// Applies the rate limit to one frame arriving at `now`; a refused one is counted and,
    /// at most once a second, reported.
    fn admit(&self, now: u64) -> bool {
        let admitted = self
            .limit
            .lock()
            .expect("rate limit lock")
            .admit(now, &self.shared.counters);
        match admitted {
            Ok(()) => true,
            Err(report) => {
                if let Some(reason) = report {
                    self.refuse(reason);
                }
                false
            }
        }
    }

    fn refuse(&self, reason: Refusal) {
        tracing::warn!(peer = %self.remote_addr, error = %reason, "QUIC frame refused");
        let _ = self.shared.events.send(TransportEvent::Refused {
            link: Some(self.link),
            remote_addr: self.remote_addr.clone(),
            dialled: false,
            reason,
        });
    }

    /// Checks (with a key) and decodes one frame's bytes, and hands it to the driver.
    fn deliver(&self, at: u64, bytes: Result<Vec<u8>, CodecError>, opener: Option<&mut Opener>) {
        let mut message = match (bytes, opener) {
            (Err(e), _) => Err(e),
            (Ok(b), None) => codec::decode_from_bytes(&b),
            (Ok(b), Some(opener)) => match PeerFrame::decode(b.as_slice()) {
                Err(e) => Err(CodecError::Malformed(e)),
                Ok(frame) => match opener.open_message(frame) {
                    Ok(frame) => Message::try_from(frame),
                    Err(error) => {
                        bump(&self.shared.counters.auth_refused);
                        self.refuse(Refusal::Auth(error));
                        return;
                    }
                },
            },
        };
        match &mut message {
            Err(_) => bump(&self.shared.counters.undecodable),
            // The echo of our probe's `t0` becomes the instant our socket really sent it.
            Ok(Message::ProbeReply(r)) => {
                self.probe_tx
                    .lock()
                    .expect("probe tx lock")
                    .fix_reply(r.seq, &mut r.t0.0);
            }
            Ok(_) => {}
        }
        let _ = self.shared.events.send(TransportEvent::Frame {
            link: self.link,
            at: LocalTime(at),
            message,
        });
    }
}

/// Reads the link's stream, frame by frame (starting with what the handshake read past its
/// end); opens `first` (the datagram gate) once the first frame (the peer's `Hello`) has been
/// handed over, so that no datagram overtakes it.
async fn read_stream(
    inbound: Inbound,
    conn: Connection,
    mut recv: RecvStream,
    mut reader: FrameReader,
    mut opener: Option<Opener>,
    first: oneshot::Sender<()>,
) {
    let shared = inbound.shared.clone();
    let mut first = Some(first);
    let mut chunk_at = (shared.clock)();
    let error = loop {
        while let Some(frame) = reader.next_frame() {
            bump(&shared.counters.stream_frames_received);
            if inbound.admit(chunk_at) {
                inbound.deliver(chunk_at, frame, opener.as_mut());
            }
            if let Some(gate) = first.take() {
                let _ = gate.send(());
            }
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => {
                let now = (shared.clock)();
                chunk_at = shared.stamps.stamp(conn.remote_address(), now);
                reader.push(&chunk.bytes);
            }
            Ok(None) => break None,
            Err(quinn::ReadError::ConnectionLost(e)) => break close_reason(&e),
            Err(e) => break Some(e.to_string()),
        }
    };
    link_ended(&shared, inbound.link, error);
}

/// Reads the connection's datagrams once the stream's first frame is through.
async fn read_datagrams(
    inbound: Inbound,
    conn: Connection,
    mut opener: Option<Opener>,
    first: oneshot::Receiver<()>,
) {
    if first.await.is_err() {
        return;
    }
    let shared = inbound.shared.clone();
    loop {
        match conn.read_datagram().await {
            Ok(bytes) => {
                let now = (shared.clock)();
                let at = shared.stamps.stamp(conn.remote_address(), now);
                bump(&shared.counters.datagrams_received);
                if inbound.admit(at) {
                    inbound.deliver(at, Ok(bytes.to_vec()), opener.as_mut());
                }
            }
            Err(e) => {
                link_ended(&shared, inbound.link, close_reason(&e));
                return;
            }
        }
    }
}
