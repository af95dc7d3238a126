//! What a transport reports to its driver, and what the driver asks of it.

use music262_proto::auth::Refusal;
use music262_proto::codec::CodecError;
use sync_core::{Direction, LinkId, LocalTime, Message};

use crate::{Counters, ShedReason};

/// Something a transport tells the driver. `L` is a call of the transport's own that the
/// driver must answer (the gRPC transport's legacy `ClientHandler` methods); a transport
/// without any reports `TransportEvent` with the default `L`, which cannot be made.
#[derive(Debug)]
pub enum TransportEvent<L = std::convert::Infallible> {
    /// A link is up (accepted, or dialled after the transport's `connect`).
    LinkUp {
        /// The new link.
        link: LinkId,
        /// The other end's transport address (for a dialled link, the address dialled).
        remote_addr: String,
        /// Who dialled.
        direction: Direction,
    },
    /// A dial failed.
    ConnectFailed {
        /// The address dialled.
        addr: String,
        /// Why, in one line.
        error: String,
    },
    /// A frame arrived.
    Frame {
        /// The link.
        link: LinkId,
        /// Local instant its bytes were read off the socket (see each transport's `stamp`).
        at: LocalTime,
        /// The decoded message, or why it could not be decoded (the frame is then dropped).
        message: Result<Message, CodecError>,
    },
    /// The link ended (the peer closed it, or the connection broke or timed out).
    LinkDown {
        /// The link.
        link: LinkId,
        /// Why, if it ended with an error.
        error: Option<String>,
    },
    /// A call of the transport's own for the driver to answer (gRPC's legacy methods).
    Legacy(L),
    /// A link, a frame, a burst of frames or a legacy call was refused (group key, rate limit);
    /// nothing of it reached the node.
    Refused {
        /// The link, if it was up; `None` for a link refused during its group-key handshake and
        /// for a legacy call.
        link: Option<LinkId>,
        /// The peer's or caller's address (for a dialled link, the address dialled).
        remote_addr: String,
        /// Whether this end dialled a link refused during its handshake (the dial failed).
        dialled: bool,
        /// Why.
        reason: Refusal,
    },
    /// A connection from outside was closed at the listening port before it carried a link:
    /// the port was full ([`crate::ConnLimits`]). Nothing of it reached the node.
    Shed {
        /// The remote address.
        remote_addr: std::net::SocketAddr,
        /// Why.
        reason: ShedReason,
    },
}

impl<L> TransportEvent<L> {
    /// The same event with its legacy call (if any) turned by `f`.
    pub fn map_legacy<M>(self, f: impl FnOnce(L) -> M) -> TransportEvent<M> {
        match self {
            TransportEvent::LinkUp {
                link,
                remote_addr,
                direction,
            } => TransportEvent::LinkUp {
                link,
                remote_addr,
                direction,
            },
            TransportEvent::ConnectFailed { addr, error } => {
                TransportEvent::ConnectFailed { addr, error }
            }
            TransportEvent::Frame { link, at, message } => {
                TransportEvent::Frame { link, at, message }
            }
            TransportEvent::LinkDown { link, error } => TransportEvent::LinkDown { link, error },
            TransportEvent::Legacy(call) => TransportEvent::Legacy(f(call)),
            TransportEvent::Refused {
                link,
                remote_addr,
                dialled,
                reason,
            } => TransportEvent::Refused {
                link,
                remote_addr,
                dialled,
                reason,
            },
            TransportEvent::Shed {
                remote_addr,
                reason,
            } => TransportEvent::Shed {
                remote_addr,
                reason,
            },
        }
    }
}

impl TransportEvent {
    /// The event of a transport without calls of its own, as any transport's.
    pub fn widen<M>(self) -> TransportEvent<M> {
        self.map_legacy(|never| match never {})
    }
}

/// What a driver asks of a peer transport. Cheap calls: nothing waits on the network.
pub trait PeerLinks {
    /// Queues `message` on `link`. Returns `false` when the link is unknown or its queue is
    /// full, or the message cannot be encoded (it is then dropped).
    fn send(&self, link: LinkId, message: Message) -> bool;
    /// Dials the peer at `addr` (`host:port`) and opens a link; reports
    /// [`TransportEvent::LinkUp`] or [`TransportEvent::ConnectFailed`].
    fn connect(&self, addr: String);
    /// Closes `link` after the frames already queued on it are written.
    fn close(&self, link: LinkId);
    /// What the transport counted so far.
    fn counters(&self) -> Counters;
}
