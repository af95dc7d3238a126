//! The driver's peer links over both transports. A client serves the gRPC peer endpoint (TCP)
//! and the QUIC one (UDP) on the same port number and accepts links on both; it dials with the
//! transport chosen by `--transport`. This merges the two transports' events into one stream,
//! remembers which transport carries each link, and routes sends and closes to it; it takes no
//! protocol decision.

use std::collections::BTreeMap;

use music262_proto::auth::Refusal;
use music262_proto::codec::CodecError;
use sync_core::{Direction, LinkId, LocalTime, Message};
use tokio::sync::mpsc::UnboundedReceiver;
use transport_common::{PeerLinks, ShedReason, TransportEvent};
use transport_grpc::{LegacyCall, PeerTransport};
use transport_quic::QuicTransport;

use super::TransportKind;

/// Something one of the transports reported.
#[derive(Debug)]
pub enum LinkEvent {
    /// A link is up.
    Up {
        link: LinkId,
        remote_addr: String,
        direction: Direction,
        via: TransportKind,
    },
    /// A dial failed.
    ConnectFailed { addr: String, error: String },
    /// A frame arrived, stamped with its receive instant.
    Frame {
        link: LinkId,
        at: LocalTime,
        message: Result<Message, CodecError>,
    },
    /// A link ended on its own.
    Down { link: LinkId, error: Option<String> },
    /// A link, frame or burst of frames refused by the transport (group key, rate limit).
    Refused {
        link: Option<LinkId>,
        remote_addr: String,
        dialled: bool,
        reason: Refusal,
    },
    /// A connection from outside closed at the peer port before it carried a link (too many).
    Shed {
        remote_addr: std::net::SocketAddr,
        reason: ShedReason,
    },
    /// A legacy `ClientHandler` call (gRPC only).
    Legacy(LegacyCall),
}

impl LinkEvent {
    /// What a transport reported, from the transport `via`.
    fn reported(e: TransportEvent<LegacyCall>, via: TransportKind) -> Self {
        match e {
            TransportEvent::LinkUp {
                link,
                remote_addr,
                direction,
            } => LinkEvent::Up {
                link,
                remote_addr,
                direction,
                via,
            },
            TransportEvent::ConnectFailed { addr, error } => {
                LinkEvent::ConnectFailed { addr, error }
            }
            TransportEvent::Frame { link, at, message } => LinkEvent::Frame { link, at, message },
            TransportEvent::LinkDown { link, error } => LinkEvent::Down { link, error },
            TransportEvent::Legacy(call) => LinkEvent::Legacy(call),
            TransportEvent::Refused {
                link,
                remote_addr,
                dialled,
                reason,
            } => LinkEvent::Refused {
                link,
                remote_addr,
                dialled,
                reason,
            },
            TransportEvent::Shed {
                remote_addr,
                reason,
            } => LinkEvent::Shed {
                remote_addr,
                reason,
            },
        }
    }
}

/// Both transports, seen as one.
pub struct Links {
    grpc: PeerTransport,
    grpc_events: UnboundedReceiver<TransportEvent<LegacyCall>>,
    quic: QuicTransport,
    quic_events: UnboundedReceiver<TransportEvent>,
    dial: TransportKind,
    via: BTreeMap<LinkId, TransportKind>,
}

impl Links {
    /// Joins the two transports (whose link ids come from one counter); `dial` carries the
    /// links this client opens.
    pub fn new(
        grpc: (PeerTransport, UnboundedReceiver<TransportEvent<LegacyCall>>),
        quic: (QuicTransport, UnboundedReceiver<TransportEvent>),
        dial: TransportKind,
    ) -> Self {
        Links {
            grpc: grpc.0,
            grpc_events: grpc.1,
            quic: quic.0,
            quic_events: quic.1,
            dial,
            via: BTreeMap::new(),
        }
    }

    /// The next event of either transport; `None` once both are gone. Cancel-safe.
    pub async fn next(&mut self) -> Option<LinkEvent> {
        let event = tokio::select! {
            Some(e) = self.grpc_events.recv() => LinkEvent::reported(e, TransportKind::Grpc),
            Some(e) = self.quic_events.recv() => LinkEvent::reported(e.widen(), TransportKind::Quic),
            else => return None,
        };
        match &event {
            LinkEvent::Up { link, via, .. } => {
                self.via.insert(*link, *via);
            }
            LinkEvent::Down { link, .. } => {
                self.via.remove(link);
            }
            _ => {}
        }
        Some(event)
    }

    /// Which transport carries `link`.
    pub fn via(&self, link: LinkId) -> Option<TransportKind> {
        self.via.get(&link).copied()
    }

    /// The transport of that kind.
    fn transport(&self, kind: TransportKind) -> &dyn PeerLinks {
        match kind {
            TransportKind::Grpc => &self.grpc,
            TransportKind::Quic => &self.quic,
        }
    }

    /// Sends on `link`'s transport; `false` if the link is unknown or the frame was dropped.
    pub fn send(&self, link: LinkId, message: Message) -> bool {
        self.via(link)
            .is_some_and(|kind| self.transport(kind).send(link, message))
    }

    /// Dials `addr` with the chosen transport.
    pub fn connect(&self, addr: String) {
        self.transport(self.dial).connect(addr);
    }

    /// Closes `link` on its transport.
    pub fn close(&mut self, link: LinkId) {
        match self.via.remove(&link) {
            Some(kind) => self.transport(kind).close(link),
            // Already down: both transports ignore ids they do not know.
            None => {
                self.grpc.close(link);
                self.quic.close(link);
            }
        }
    }
}
