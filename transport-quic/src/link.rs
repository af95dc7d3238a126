//! One QUIC link's traffic once it is up: its registration and reader and writer tasks, the
//! stream's frames in order, the probes as datagrams (stamped), and the end of the link.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use music262_proto::auth::{self, Channel, Opener, Refusal, Sealer};
use music262_proto::client::PeerFrame;
use music262_proto::codec::{self, CodecError};
use prost::Message as _;
use quinn::{Connection, ConnectionError, RecvStream, SendStream, VarInt};
use sync_core::{Direction, LinkId, LocalTime, Message};
use tokio::sync::{mpsc, oneshot};
use transport_common::counters::bump;
use transport_common::probe::{LINK_QUEUE, stamp_message};
use transport_common::{PeerRateLimit, TransportEvent};

use crate::framing::{FrameReader, delimit};
use crate::stamp::{ProbeTx, find_tx_stamp, restamp};

use crate::peer::{AUTH_REFUSED, Authenticated, CLOSE_LINGER, LinkHandle, READ_CHUNK, Shared};

/// Registers a link for an established (and, with a key, authenticated) connection and its
/// stream, announces it, and starts its reader and writer tasks.
pub(crate) fn start_link(
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
pub(crate) enum Datagram {
    Sent,
    /// Datagrams are not possible on this connection (or not this large): send it on the
    /// stream.
    UseStream(Message),
    Unencodable,
}

/// Sends a probe or reply as a datagram, its transmit instant rewritten just before it is
/// handed to quinn (a reply's `t2` moved on by the delay its predecessors took to reach the
/// socket), and a ticket taken for the instant the socket really sends it ([`ProbeTx`]).
pub(crate) fn send_datagram(
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
pub(crate) const SEAL_OVERHEAD: usize = 2 + 1 + 8 + 2 + auth::MAC_LEN;

/// Writes the link's queued frames to its stream until the link is closed, then finishes the
/// stream, lets the peer acknowledge it, and closes the connection.
pub(crate) async fn write_frames(
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

pub(crate) fn close_reason(e: &ConnectionError) -> Option<String> {
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
pub(crate) fn link_ended(shared: &Shared, link: LinkId, error: Option<String>) {
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
pub(crate) struct Inbound {
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
pub(crate) async fn read_stream(
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
pub(crate) async fn read_datagrams(
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
