//! QUIC transport of Music262 (quinn): the same sync-core frames as the gRPC transport's
//! `Exchange` stream, one QUIC connection per peer link.
//!
//! - [`peer`]: [`QuicTransport`], the endpoint on the client's peer port (UDP, the same number
//!   as the gRPC peer endpoint's TCP port) that accepts and dials links and reports
//!   [`TransportEvent`]s: link up and down, failed dials, frames with their receive instants.
//!   Frames travel length-delimited on one reliable bidirectional stream per link
//!   ([`framing`]); clock probes and replies travel as QUIC datagrams, so a lost probe is
//!   simply lost and nothing waits behind it.
//! - `link`: one link's traffic once it is up: its reader and writer tasks, the datagrams, the
//!   end of the link.
//! - [`stamp`]: probe instants taken as close to the socket as quinn allows, through a wrapper
//!   of quinn's UDP socket. A receive is stamped with the kernel's instant (`SO_TIMESTAMPNS`,
//!   peeked at before quinn reads the datagram; where refused, when `recvmsg` returns). A transmit instant is
//!   written into the frame when it is handed to quinn. When the reply to our probe comes back,
//!   its echoed `t0` is replaced by the instant our socket sent the probe. A reply's `t2` is
//!   moved on by the wait measured between hand-off and `sendmsg` for the link's recent
//!   replies.
//! - [`tls`]: our ALPN (`music262/1`) and self-signed certificates; any certificate is
//!   accepted. Without a group key peers are not authenticated (encryption against passive
//!   observers only). With one ([`QuicTransport::with_group_key`]) every link runs the
//!   group-key handshake of `music262_proto::auth` on its stream before it is reported up,
//!   bound to the TLS session by exporter keying material, and every frame is sealed; a peer
//!   that fails is refused ([`TransportEvent::Refused`]) and its connection closed.
//!
//! Each link's incoming frames are limited to `music262_proto::limits::PEER_FRAMES_PER_SECOND`
//! (excess dropped before decoding, counted and reported at most once a second).
//!
//! Transports move frames and stamp receive instants; they take no protocol decision. Sizes
//! are limited as by the codec (`music262_proto::codec::MAX_FRAME_LEN`); an undecodable or
//! oversized frame is reported as a [`TransportEvent::Frame`] with an error and dropped.
#![forbid(unsafe_code)]

pub mod framing;
mod link;
pub mod peer;
pub mod stamp;
pub mod tls;

pub use peer::{QuicError, QuicTransport};
pub use tls::{ALPN, TlsError};
pub use transport_common::{ClockFn, Counters, PeerLinks, TransportEvent};
