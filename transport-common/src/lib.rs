//! What Music262's two peer transports (`transport-grpc`, `transport-quic`) share, written once:
//!
//! - [`TransportEvent`]: what a transport tells its driver (links up and down, failed dials,
//!   frames with their receive instants, refusals), the same type on both;
//! - [`ClockFn`]: the node's sync clock, which stamps receive and transmit instants;
//! - [`Counters`] and [`AtomicCounters`]: what a transport counted;
//! - [`PeerRateLimit`]: the per-peer frame limit, applied and counted the same way on both;
//! - [`probe`]: the provisional transmit stamp of a clock probe and the group-key handshake's
//!   failure type and timings;
//! - [`kernel`]: the kernel's receive instant of what a socket read (`SO_TIMESTAMPNS`);
//! - [`PeerLinks`]: the calls a driver makes on a transport;
//! - [`shedding`]: the connection budget of a listening port, the accept loop's backoff and the
//!   descriptor limit; [`refusals`]: refusals logged and summarised at a bounded rate.
//!
//! With the feature `testing`, the module `testing` holds the loopback clock-sync suite both transports
//! run. No I/O runtime is needed otherwise.
#![forbid(unsafe_code)]

use std::sync::Arc;

pub mod counters;
pub mod event;
pub mod kernel;
pub mod probe;
pub mod refusals;
pub mod shedding;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use counters::{AtomicCounters, Counters, PeerRateLimit};
pub use event::{PeerLinks, TransportEvent};
pub use shedding::{ConnGate, ConnLimits, ConnSlot, PortGate, ShedReason};

/// Reads the node's sync clock, in nanoseconds (`sync_core::LocalTime` units).
pub type ClockFn = Arc<dyn Fn() -> u64 + Send + Sync>;
