//! The typed messages peers exchange. Bytes are the business of the codec in `proto/`
//! (`PeerFrame`); these types are what the [`Node`](crate::Node) consumes and produces.

use crate::clock::ClockMapping;
use crate::state::{GroupState, NodeId, StateVersion};
use crate::time::LocalTime;

/// Version of the peer protocol spoken by this crate. A peer announcing another version is
/// refused at the handshake.
pub const PROTOCOL_VERSION: u32 = 1;

/// Every message one node sends another over a link.
#[derive(Clone, PartialEq, Debug)]
pub enum Message {
    /// First message on every link, in both directions.
    Hello(Hello),
    /// Clock probe (first half of a four-timestamp exchange), also carrying the sender's view.
    Probe(Probe),
    /// Answer to a [`Probe`].
    ProbeReply(ProbeReply),
    /// A group state, pushed when it is new or when the receiver is known to be behind.
    State(GroupState),
    /// The sender has loaded the song of the loading state `version` and is ready to start.
    Ready(StateVersion),
    /// Addresses of peers the sender knows; the receiver may connect to those it lacks.
    Gossip(Vec<String>),
    /// The group's members as the sender knows them (itself included), for the receiver's
    /// membership table; it links to them by its own rule (see `docs/membership.md`).
    Members(Vec<MemberInfo>),
    /// The sender closes the link.
    Leave(LeaveReason),
}

/// Why a node closes a link.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LeaveReason {
    /// The user asked to leave this peer, or the node is shutting down.
    Leaving,
    /// The node already has as many links as it allows; try the addresses it gossiped.
    Full,
    /// The link duplicates another link between the same two nodes.
    Duplicate,
    /// The handshake failed (protocol version, or the peer is this very node).
    Refused,
    /// The peer stopped answering.
    Timeout,
}

/// One member of the group as gossiped.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MemberInfo {
    /// Address (`host:port`) at which the member accepts links.
    pub addr: String,
    /// The member's id (a restarted member has a new one at the same address).
    pub node_id: NodeId,
    /// Milliseconds since the sender, or the peer it heard this from, last had the member as a
    /// neighbour (0: linked to it now).
    pub age_ms: u64,
    /// The member's room name (`--name`), if it has one and the sender knows it.
    pub name: Option<String>,
}

/// Who the members of the group are, as one node knows them, in a few bytes: their count
/// (the node itself included) and a hash of their addresses and ids that does not depend on
/// order. Neighbours with equal digests know the same members; unequal ones exchange tables.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MembersDigest {
    /// How many members, the sender included.
    pub count: u32,
    /// The wrapping sum over the members of a hash of (address, id).
    pub hash: u64,
}

/// Handshake, sent by both ends as soon as a link is up.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Hello {
    /// The sender's id.
    pub node_id: NodeId,
    /// The sender's [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Address (`host:port`) at which the sender accepts links, if any.
    pub listen_addr: Option<String>,
    /// The sender's room name (`--name`, e.g. `Kitchen`), if it has one.
    pub name: Option<String>,
}

/// What a node tells its neighbours about itself in every periodic message: its place in the
/// clock hierarchy, its clock mapping and the version of the state it holds (anti-entropy).
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Announce {
    /// The reference (root) the sender follows: the lowest live node id it knows of.
    pub root: NodeId,
    /// Hops from the sender to the root (the root itself is stratum 0).
    pub stratum: u8,
    /// The root's liveness counter as last heard by the sender; the root raises it at every
    /// announce, so a value that stops rising reveals a dead root or a loop.
    pub root_seq: u64,
    /// Estimated one-way delay from the root to the sender along the clock tree, nanoseconds.
    pub root_delay: u64,
    /// The neighbour the sender disciplines its clock to (`None` for the root).
    pub parent: Option<NodeId>,
    /// Version of the group state the sender holds.
    pub state_version: StateVersion,
    /// The sender's mapping from its local clock to group time, at the time of sending.
    pub mapping: ClockMapping,
    /// Largest `root_delay` in the sender's subtree of the clock tree (itself and the nodes
    /// that follow it, transitively), nanoseconds; flows up the tree to the root.
    pub subtree_delay: u64,
    /// Largest one-way delay from the root to any node of the group, nanoseconds, as the root
    /// computed it from `subtree_delay` and the tree relayed down; sizes the command lead.
    pub radius: u64,
    /// Who the sender knows as members (`None` from a peer that predates the digest).
    pub members: Option<MembersDigest>,
}

/// First half of a clock probe.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Probe {
    /// Sequence number, echoed in the reply.
    pub seq: u32,
    /// Sender's local instant of sending (t0).
    pub t0: LocalTime,
    /// The sender's view.
    pub announce: Announce,
}

/// Second half of a clock probe.
///
/// Transports may restamp `t2` (and a [`Probe`]'s `t0`) with the instant the frame really
/// leaves, just before writing it: the node matches replies by `seq` and accepts any echoed `t0`
/// between the one it stamped and the reply's arrival.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct ProbeReply {
    /// Sequence number of the probe answered.
    pub seq: u32,
    /// The probe's t0, echoed.
    pub t0: LocalTime,
    /// Responder's local instant of receiving the probe (t1).
    pub t1: LocalTime,
    /// Responder's local instant of sending this reply (t2).
    pub t2: LocalTime,
    /// The responder's view.
    pub announce: Announce,
}
