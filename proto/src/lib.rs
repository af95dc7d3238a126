//! Music262 wire protocol.
//!
//! - [`audio_service`]: the music server's protocol (`proto/audio_service.proto`, package
//!   `audio_service`): prost messages and tonic client/server stubs.
//! - [`client`]: the peer protocol (`proto/audio_sync.proto`, package `client`), including the
//!   [`client::PeerFrame`] envelope that carries sync-core's messages over gRPC and QUIC.
//! - [`auth`]: group-key authentication of peer frames (HMAC-SHA256, replay protection).
//! - [`codec`]: [`client::PeerFrame`] ⇄ [`sync_core::Message`], with size limits.
//! - [`limits`]: the per-peer frame rate limit and the music server's message sizes.
//! - [`pages`]: the music server's lists cut into pages, and its legacy lists kept small.
//! - [`legacy`]: typed reading of the legacy `SendMusicCommand` request and the WAV byte
//!   offsets the original protocol used as positions.
//!
//! The legacy parts of both files are kept byte-for-byte compatible with the original Music262
//! protocol; the tests in `proto/tests/` prove it.
#![forbid(unsafe_code)]

pub mod auth;
pub mod codec;
pub mod legacy;
pub mod limits;
pub mod pages;

/// Generated from `audio_service.proto` (package `audio_service`): the music server.
// Generated code: lints are the generator's business, except `missing_docs` (every message
// and field is documented in the .proto file).
#[allow(clippy::all)]
pub mod audio_service {
    include!(concat!(env!("OUT_DIR"), "/audio_service.rs"));
}

/// Generated from `audio_sync.proto` (package `client`): the peer endpoint and the sync-core
/// frames.
#[allow(clippy::all)]
pub mod client {
    include!(concat!(env!("OUT_DIR"), "/client.rs"));
}

/// The encoded `google.protobuf.FileDescriptorSet` of both `.proto` files (with source info),
/// for gRPC server reflection and for tests that check the schema itself.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/music262_descriptor.bin"));

pub use client::PeerFrame;
pub use codec::{CodecError, decode_from_bytes, encode_to_vec};
