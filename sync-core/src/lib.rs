//! Sans-IO synchronization core of Music262 (being written).
#![forbid(unsafe_code)]

pub mod clock;
pub mod message;
pub mod state;
pub mod time;

pub use clock::{ClockFilter, ClockMapping, ClockSample, FilterConfig, LinkEstimate};
pub use message::{Announce, Hello, LeaveReason, Message, PROTOCOL_VERSION, Probe, ProbeReply};
pub use state::{GroupState, Mode, NodeId, SongRef, StateVersion, Timeline};
pub use time::{GroupTime, LocalTime, Nanos};
