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
    /// A legacy `ClientHandler` call (gRPC only).
    Legacy(LegacyCall),
}

impl From<transport_grpc::TransportEvent> for LinkEvent {
    fn from(e: transport_grpc::TransportEvent) -> Self {
        use transport_grpc::TransportEvent as E;
        match e {
            E::LinkUp {
                link,
                remote_addr,
                direction,
            } => LinkEvent::Up {
                link,
                remote_addr,
                direction,
                via: TransportKind::Grpc,
            },
            E::ConnectFailed { addr, error } => LinkEvent::ConnectFailed { addr, error },
            E::Frame { link, at, message } => LinkEvent::Frame { link, at, message },
            E::LinkDown { link, error } => LinkEvent::Down { link, error },
            E::Legacy(call) => LinkEvent::Legacy(call),
            E::Refused {
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
        }
    }
}

impl From<transport_quic::TransportEvent> for LinkEvent {
    fn from(e: transport_quic::TransportEvent) -> Self {
        use transport_quic::TransportEvent as E;
        match e {
            E::LinkUp {
                link,
                remote_addr,
                direction,
            } => LinkEvent::Up {
                link,
                remote_addr,
                direction,
                via: TransportKind::Quic,
            },
            E::ConnectFailed { addr, error } => LinkEvent::ConnectFailed { addr, error },
            E::Frame { link, at, message } => LinkEvent::Frame { link, at, message },
            E::LinkDown { link, error } => LinkEvent::Down { link, error },
            E::Refused {
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
        }
    }
}

/// Both transports, seen as one.
pub struct Links {
    grpc: PeerTransport,
    grpc_events: UnboundedReceiver<transport_grpc::TransportEvent>,
    quic: QuicTransport,
    quic_events: UnboundedReceiver<transport_quic::TransportEvent>,
    dial: TransportKind,
    via: BTreeMap<LinkId, TransportKind>,
}

impl Links {
    /// Joins the two transports (whose link ids come from one counter); `dial` carries the
    /// links this client opens.
    pub fn new(
        grpc: (
            PeerTransport,
            UnboundedReceiver<transport_grpc::TransportEvent>,
        ),
        quic: (
            QuicTransport,
            UnboundedReceiver<transport_quic::TransportEvent>,
        ),
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
            Some(e) = self.grpc_events.recv() => LinkEvent::from(e),
            Some(e) = self.quic_events.recv() => LinkEvent::from(e),
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

    /// Sends on `link`'s transport; `false` if the link is unknown or the frame was dropped.
    pub fn send(&self, link: LinkId, message: Message) -> bool {
        match self.via(link) {
            Some(TransportKind::Grpc) => self.grpc.send(link, message),
            Some(TransportKind::Quic) => self.quic.send(link, message),
            None => false,
        }
    }

    /// Dials `addr` with the chosen transport.
    pub fn connect(&self, addr: String) {
        match self.dial {
            TransportKind::Grpc => self.grpc.connect(addr),
            TransportKind::Quic => self.quic.connect(addr),
        }
    }

    /// Closes `link` on its transport.
    pub fn close(&mut self, link: LinkId) {
        match self.via.remove(&link) {
            Some(TransportKind::Grpc) => self.grpc.close(link),
            Some(TransportKind::Quic) => self.quic.close(link),
            // Already down: both transports ignore ids they do not know.
            None => {
                self.grpc.close(link);
                self.quic.close(link);
            }
        }
    }
}
