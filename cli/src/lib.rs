//! Music262's binaries as a library: `music_server` ([`server`]), `music_client` ([`client`])
//! and the pieces they share (the environment, the skewable sync clock, logging, the console,
//! the song library, the trace file).
#![forbid(unsafe_code)]

pub mod client;
pub mod clock;
pub mod console;
pub mod demo;
pub mod discovery;
pub mod env;
pub mod fleet;
pub mod library;
pub mod logging;
pub mod registry;
pub mod server;
pub mod trace;
pub mod web;
