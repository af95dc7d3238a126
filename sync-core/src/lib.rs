//! Sans-IO synchronization core of Music262.
//!
//! This crate does no networking, reads no clock, spawns nothing and draws no OS randomness:
//! a [`Node`] is a value that is fed inputs and drained of outputs, so that the same code runs
//! under the gRPC and QUIC drivers, in the many-peer simulator and under a fuzzer.
//!
//! # Contract
//!
//! * Build a node with [`Node::new`] from a [`Config`], a seed and the current [`LocalTime`].
//! * Feed it inputs, each with the local instant it happened at: [`Node::handle_link_up`],
//!   [`Node::handle_link_down`], [`Node::handle_connect_failed`], [`Node::handle_message`]
//!   (with the receive instant stamped as close to the socket as possible),
//!   [`Node::handle_command`] (group playback), [`Node::handle_link_command`] (links, with
//!   peers named by typed [`PeerAddr`] and [`PeerSelector`] values parsed at the edge),
//!   [`Node::handle_player`] and [`Node::handle_timeout`].
//! * **After any input, call [`Node::poll_output`] until it returns `None`**, carrying out each
//!   [`Output`]: transmit a message, open or close a link, hand a [`PlaybackAction`] or a
//!   [`Correction`] to the player, log an [`Event`].
//! * Then sleep until [`Node::poll_timeout`] (an instant and a [`TimeoutReason`]) or the next
//!   input, whichever comes first, and call [`Node::handle_timeout`] when it is due.
//!
//! Bad input from a peer never panics and never stops the node: it is dropped and reported as
//! [`Event::BadMessage`]. Only local misuse, such as a command that cannot apply, returns an
//! error ([`CommandError`]), and then nothing changes. Output order depends only on the inputs
//! and the seed (ordered maps only), so a run can be replayed exactly.
//!
//! # Structure
//!
//! [`Node`] is made of four machines, each owning its state, that `Node` routes between:
//!
//! * **links** (`node/links.rs`): connections to neighbours, handshake, probe schedule,
//!   liveness, and the dials in flight;
//! * **clock tree** (`node/clock_tree.rs`): the reference, stratum, parent and the mapping of
//!   the local clock to group time; it *returns* what a change means (a new time base and its
//!   step, a step of group time, a new reference);
//! * **register** (`node/register.rs`): the group state, its Lamport counter, the instants at
//!   which it takes effect and ends, readiness for a loading state; accepting a state *returns*
//!   how it relates to the timeline the player follows (smooth, pause on the timeline);
//! * **follower** (`node/follower.rs`): what the player was told, and the drift controller.
//!
//! [`Node::poll_timeout`] is the earliest of the links', the clock tree's and the register's
//! deadlines. Group commands ([`Command`]) and link commands ([`LinkCommand`]) are separate;
//! peers are named by [`PeerAddr`] and [`PeerSelector`], parsed where text comes in ([`peer`]).
//! Every tuning number is a field of [`Config`], [`FilterConfig`] or [`ControllerConfig`].
//!
//! # Protocol in brief
//!
//! * **Clock sync**: four-timestamp probes (a burst when a link comes up, then about two a
//!   second; twenty a second to the parent while its estimate is uncertain), a filter that fits
//!   the lower envelopes of both one-way series with one slope, giving offset, frequency and its
//!   own uncertainty ([`clock`]). The reference is the lowest live node id of the connected group,
//!   found without a coordinator; every node follows one neighbour nearer to it (a stratum), and
//!   composes that neighbour's mapping to group time with its own link estimate. A dead
//!   reference is detected by its liveness counter ceasing to rise; the next one carries on
//!   from its current mapping, so group time does not jump.
//! * **Group state**: a last-writer-wins register versioned by a Lamport counter and the
//!   origin's id ([`state`]); newer states are relayed to every other neighbour, and every probe
//!   carries the holder's version so a node that missed one is repaired (anti-entropy).
//! * **Commands** take effect at `now + lead` in group time, the lead sized from the measured
//!   delays of the clock tree; pauses land on the frame the timeline reaches then; late arrivals
//!   join the timeline where it stands.
//! * **Drift correction**: player reports against the timeline drive the playback rate through
//!   feed-forward of the group clock's frequency, an observer of the sound card's own rate
//!   error and a bounded proportional term (there is no integrator), and a jump beyond a
//!   threshold ([`control`]).
#![forbid(unsafe_code)]

pub mod clock;
pub mod control;
pub mod message;
pub mod node;
pub mod peer;
pub mod queue;
pub mod state;
pub mod time;

pub use clock::{ClockFilter, ClockMapping, ClockSample, FilterConfig, LinkEstimate};
pub use control::{ControlDecision, ControllerConfig, DriftController};
pub use message::{
    Announce, Hello, LeaveReason, MemberInfo, MembersDigest, Message, PROTOCOL_VERSION, Probe,
    ProbeReply,
};
pub use node::{
    BadInput, Command, CommandError, Config, Correction, Counters, Direction, DisconnectReason,
    Event, LinkCommand, LinkId, LinkStatus, LoadWait, Node, Output, PeerRole, PlaybackAction,
    PlayerReport, QueueCommand, SyncStatus, TimeoutReason,
};
pub use peer::{BadAddr, MAX_NAME_LEN, PeerAddr, PeerSelector, room_name};
pub use queue::{Queue, QueueEntry, QueueError, Repeat};
pub use state::{GroupState, Mode, NodeId, SongRef, StateVersion, Timeline};
pub use time::{GroupTime, LocalTime, Nanos};
