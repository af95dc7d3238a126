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
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use music262_proto::auth::{self, Channel, GroupKey, LinkKeys, Opener, Refusal, Role, Sealer};
use music262_proto::client::PeerFrame;
use prost::Message as _;
use quinn::{
    ClientConfig, Connection, Endpoint, EndpointConfig, IdleTimeout, RecvStream, Runtime,
    SendStream, ServerConfig, TransportConfig, VarInt,
};
use sync_core::{Direction, LinkId, Message};
use tokio::sync::mpsc;
use transport_common::counters::bump;
use transport_common::probe::{
    AUTH_TIMEOUT, CONNECT_TIMEOUT, HandshakeFailure, REFUSAL_LINGER, auth_role,
};
use transport_common::refusals::{PortLog, RefusalKind};
use transport_common::{
    AtomicCounters, ClockFn, ConnGate, ConnLimits, ConnSlot, Counters, PeerLinks, PortGate,
    TransportEvent,
};

use crate::framing::{FrameReader, delimit};
use crate::link::{Datagram, send_datagram, start_link};
use crate::stamp::{ProbeTx, RxStamps, StampedSocket, TxStamps};
use crate::tls::{self, SERVER_NAME, TlsError};

/// How long an accepted connection may take to open its stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closed link waits for the peer to acknowledge its last frames (a `Leave`)
/// before the connection is closed regardless.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// A connection silent this long is dead (sync-core removes a silent peer sooner, after 6 s).
const IDLE_TIMEOUT_MS: u32 = 10_000;
/// Keep-alives, in case the node sends nothing for a while.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Datagram bytes buffered in each direction.
const DATAGRAM_BUFFER: usize = 64 * 1024;
/// Largest piece read from a stream at once.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
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

pub(crate) struct LinkHandle {
    pub(crate) conn: Connection,
    pub(crate) outbound: mpsc::Sender<Message>,
    pub(crate) readers: Vec<tokio::task::AbortHandle>,
    /// Seals this end's frames, on a keyed link.
    pub(crate) sealer: Option<Arc<Sealer>>,
    /// The socket's transmit instants of this link's probes and replies.
    pub(crate) probe_tx: Arc<Mutex<ProbeTx>>,
}

pub(crate) struct Shared {
    pub(crate) clock: ClockFn,
    pub(crate) events: mpsc::UnboundedSender<TransportEvent>,
    pub(crate) links: Mutex<BTreeMap<LinkId, LinkHandle>>,
    pub(crate) next_link: Arc<AtomicU64>,
    /// The endpoint that dials: the serving one, or a client-only one made on demand.
    pub(crate) endpoint: Mutex<Option<Endpoint>>,
    pub(crate) stamps: RxStamps,
    pub(crate) tx_stamps: TxStamps,
    pub(crate) counters: AtomicCounters,
    /// The group key: with one, every link is authenticated and every frame sealed.
    pub(crate) key: Option<GroupKey>,
    /// The peer port's connection budget, once it serves.
    pub(crate) gate: PortGate,
    /// The peer port's refusals, logged at a bounded rate.
    pub(crate) port_log: Arc<PortLog>,
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
pub(crate) struct Authenticated {
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) stream: Opener,
    pub(crate) datagrams: Opener,
    /// Bytes read past the proof (the start of the peer's first message).
    pub(crate) reader: FrameReader,
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
