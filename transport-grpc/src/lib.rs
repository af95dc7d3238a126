//! gRPC transport of Music262 (tonic).
//!
//! - [`peer`]: the peer endpoint: [`PeerTransport`], its links (the `Exchange` stream that
//!   carries sync-core frames between peers) and the dialer; `service` is its tonic service
//!   (`client.ClientHandler`): an accepted `Exchange` and the legacy methods handed to the driver.
//! - [`listen`]: the peer port's accept loop with its connection limits.
//! - [`audio`]: the music server's protocol (`audio_service`): the tonic service over what the
//!   music server offers ([`MusicBackend`], implemented by the server), and the client a music
//!   client uses.
//! - [`dial`]: how both dial: a bounded connect and HTTP/2 keep-alive pings.
//!
//! With a group key ([`PeerTransport::with_group_key`]) every `Exchange` link runs the
//! group-key handshake of `music262_proto::auth` before it is reported up, every frame is
//! sealed and checked, and the legacy calls that change playback need the key's token; what
//! fails is reported as [`TransportEvent::Refused`] and counted. Each link's incoming frames are
//! rate-limited (`music262_proto::limits`). See `docs/security.md`.
//!
//! Transports move frames and stamp receive instants; they take no protocol decision.
#![forbid(unsafe_code)]

pub mod audio;
pub mod dial;
pub mod listen;
pub mod peer;
mod service;
pub mod stamp;

pub use audio::{
    AudioClient, AudioServer, MAX_SONG_BYTES, MusicBackend, ServerError, ServerStats, SongBytes,
    SongChunks,
};
pub use peer::{LegacyCall, PeerTransport, TransportEvent, error_chain};
pub use transport_common::{ClockFn, Counters, PeerLinks};
