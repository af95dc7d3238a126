//! The node's vocabulary: what callers feed it (commands, player reports), what it hands back
//! (outputs, events, playback actions, corrections), and the snapshots its queries return.

use crate::clock::ClockMapping;
use crate::message::{LeaveReason, Message};
use crate::peer::{PeerAddr, PeerSelector};
use crate::queue::{QueueError, Repeat};
use crate::state::{GroupState, NodeId, SongRef, StateVersion};
use crate::time::{LocalTime, Nanos};

/// Identifies a link (one connection to one peer) for the node and its driver. Chosen by the
/// driver; never reused while the link exists.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LinkId(pub u64);

/// Who opened a link.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// This node dialled the peer.
    Outgoing,
    /// The peer dialled this node.
    Incoming,
}

/// A command for the group's playback, typed by the local user or received from a legacy
/// caller: it becomes a new group state.
#[derive(Clone, PartialEq, Debug)]
pub enum Command {
    /// Play `song` (or the current song when `None`) from `frame`.
    Play {
        /// The song; `None` replays the group's current song.
        song: Option<SongRef>,
        /// First frame.
        frame: u64,
    },
    /// Pause on the frame the timeline reaches at the effective instant.
    Pause,
    /// Resume from the paused frame.
    Resume,
    /// Stop playback.
    Stop,
    /// Move to `frame`, keeping the current mode (playing or paused).
    Seek {
        /// Target frame.
        frame: u64,
    },
    /// Make `song` the group's song (every peer loads it), stopped at its start, or paused at
    /// `frame` when that is past the start: one new state either way.
    Load {
        /// The song.
        song: SongRef,
        /// Where it is cued.
        frame: u64,
    },
    /// An edit of the group's queue, or a move through it.
    Queue(QueueCommand),
}

/// What a [`Command::Queue`] asks of the group's queue. Positions are 1-based, in list order.
#[derive(Clone, PartialEq, Debug)]
pub enum QueueCommand {
    /// Append songs, in order.
    Add(Vec<SongRef>),
    /// Remove the entry at this position (the current one: the next entry plays instead).
    Remove(usize),
    /// Move the entry at `from` to position `to`.
    Move {
        /// Position of the entry.
        from: usize,
        /// Its new position.
        to: usize,
    },
    /// Empty the queue; a song playing plays to its end.
    Clear,
    /// Play (or, stopped or paused, cue) the next entry in play order.
    Next,
    /// Play (or cue) the previous entry in play order.
    Previous,
    /// What happens at the end of an entry.
    Repeat(Repeat),
    /// Shuffle the play order (a new order each time it is turned on), or not.
    Shuffle(bool),
    /// Put the song right after the current entry and play it now.
    PlayNow(SongRef),
    /// Play the queue from its current entry (or its first) from the start.
    Start,
}

/// A command about this node's links (typed, or from a legacy caller), with its peers named by
/// typed values parsed at the edge. It never changes the group state.
#[derive(Clone, PartialEq, Debug)]
pub enum LinkCommand {
    /// Open a link to the peer at `addr`.
    Join {
        /// The peer's address.
        addr: PeerAddr,
    },
    /// Close the link to a peer, named by an address of its link or its node id.
    Leave {
        /// The peer.
        peer: PeerSelector,
    },
    /// Share the addresses of this node's peers with all of them.
    Gossip,
    /// Addresses gossiped by a caller outside the peer protocol (legacy `Gossip`).
    PeerAddresses {
        /// The addresses.
        addrs: Vec<PeerAddr>,
    },
    /// A caller outside the peer protocol says it is leaving (legacy `Exit`): close the links
    /// to the listen address or node id it gave, or, when none matches, those from its own
    /// transport address.
    Exit {
        /// The address it said it listens on.
        listen_addr: Option<PeerAddr>,
        /// The node id it gave.
        node_id: Option<NodeId>,
        /// The transport address the call came from.
        from: Option<PeerAddr>,
    },
}

/// Why a local command was refused. Nothing changes when one is returned.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CommandError {
    /// There is no song to play, pause or seek in.
    #[error("no song is loaded; use `play <song>` first")]
    NoSong,
    /// Pause or seek while nothing plays.
    #[error("nothing is playing")]
    NotPlaying,
    /// Resume while not paused.
    #[error("playback is not paused")]
    NotPaused,
    /// Stop while stopped.
    #[error("playback is already stopped")]
    AlreadyStopped,
    /// A frame beyond the end of the song.
    #[error("position {frame} is beyond the end of the song ({frames} frames)")]
    OutOfRange {
        /// Requested frame.
        frame: u64,
        /// Song length.
        frames: u64,
    },
    /// A song whose metadata cannot be played.
    #[error("song `{0}` has invalid metadata")]
    InvalidSong(String),
    /// A delay beyond the allowed horizon.
    #[error("delay of {0} ms is too far in the future")]
    TooFarAhead(i64),
    /// Join refused.
    #[error("cannot join {addr}: {reason}")]
    Join {
        /// The address.
        addr: String,
        /// Why.
        reason: &'static str,
    },
    /// Leave of an unknown peer.
    #[error("not connected to {0}")]
    UnknownPeer(String),
    /// A queue edit that cannot apply.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Something the player should do, with target instants on the local clock.
#[derive(Clone, PartialEq, Debug)]
pub enum PlaybackAction {
    /// Fetch and decode this song, then report [`PlayerReport::Loaded`].
    Load {
        /// The song.
        song: SongRef,
    },
    /// Play the loaded song so that `frame` is heard at local instant `at` (also used to seek).
    Start {
        /// Frame heard at `at`.
        frame: u64,
        /// Local instant.
        at: LocalTime,
    },
    /// Keep playing until `frame` is reached, then hold there (from about `at`). If the player is
    /// already past `frame`, it goes back to it; if it is not playing, it cues at `frame`.
    PauseAt {
        /// Frame to hold at.
        frame: u64,
        /// Local instant at which the timeline reaches `frame`.
        at: LocalTime,
    },
    /// Stop at local instant `at`.
    Stop {
        /// Local instant.
        at: LocalTime,
    },
}

/// A correction of the player's timing.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Correction {
    /// Play at this rate relative to the local clock, in ppm (bounded).
    Rate {
        /// Parts per million; positive is faster.
        ppm: f64,
    },
    /// The error is too large for a rate change: play `frame` at local instant `at`.
    Jump {
        /// Frame heard at `at`.
        frame: u64,
        /// Local instant.
        at: LocalTime,
        /// The error that caused the jump (player ahead when positive), nanoseconds.
        error: Nanos,
    },
}

/// What the player tells the node.
#[derive(Clone, PartialEq, Debug)]
pub enum PlayerReport {
    /// The song asked for by [`PlaybackAction::Load`] is ready: the player can play it from
    /// the frame the group starts at (a song decoded while it downloads may not be whole yet;
    /// if it then fails, [`PlayerReport::LoadFailed`] follows).
    Loaded {
        /// The song.
        song: SongRef,
    },
    /// The song could not be loaded.
    LoadFailed {
        /// The song.
        song: SongRef,
        /// Why, in one line.
        reason: String,
    },
    /// `frame` (fractional) was heard at local instant `at`, while playing.
    Position {
        /// Local instant.
        at: LocalTime,
        /// Song frame heard then.
        frame: f64,
    },
    /// The player's output broke at local instant `at` (the sound device ran dry and was
    /// restarted, or the player found its sound had jumped): the sound has already glitched, and the player may now be milliseconds off
    /// the timeline, with a device latency that changed. The node lets the restarted stream
    /// settle, then re-seeks for any error above
    /// [`ControllerConfig::break_jump_threshold`](crate::control::ControllerConfig) instead of
    /// slewing it out over many seconds at the inaudible rate limit.
    OutputBreak {
        /// Local instant of the first output after the break.
        at: LocalTime,
    },
}

/// Why a link ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DisconnectReason {
    /// The transport reported the link closed.
    Closed,
    /// The peer said it leaves.
    PeerLeft(LeaveReason),
    /// This node closed it (user command, duplicate, limit, shutdown).
    Local(LeaveReason),
    /// The peer stopped answering.
    Timeout,
    /// The peer never completed the handshake.
    HandshakeTimeout,
}

/// Why a message from a peer was dropped.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BadInput {
    /// A message other than hello before the handshake (clock probes excepted: as datagrams
    /// they may overtake the hello, and are dropped quietly).
    BeforeHandshake,
    /// A second hello.
    RepeatedHello,
    /// The peer speaks another protocol version.
    ProtocolVersion(u32),
    /// The peer is this node (it joined itself).
    SelfLink,
    /// Probe timestamps that cannot be.
    ImpossibleTimestamps,
    /// A reply to no probe of ours.
    UnexpectedReply,
    /// A state that cannot be valid.
    InvalidState(&'static str),
    /// A clock announcement that cannot be valid.
    InvalidAnnounce(&'static str),
    /// Too many gossiped addresses or members.
    OversizedGossip,
}

/// What happened, for the user interface and the log.
#[derive(Clone, PartialEq, Debug)]
pub enum Event {
    /// A link's handshake completed.
    PeerConnected {
        /// The link.
        link: LinkId,
        /// The peer.
        peer: NodeId,
        /// Where it accepts links.
        listen_addr: Option<String>,
    },
    /// A link is gone.
    PeerDisconnected {
        /// The link.
        link: LinkId,
        /// The peer, if the handshake had completed.
        peer: Option<NodeId>,
        /// Why.
        reason: DisconnectReason,
    },
    /// A peer has been silent for a while.
    PeerSuspect {
        /// The link.
        link: LinkId,
        /// The peer.
        peer: NodeId,
    },
    /// A newer group state was accepted.
    StateAccepted {
        /// The state.
        state: GroupState,
        /// Link it came from (`None`: issued here).
        from: Option<LinkId>,
        /// How late it arrived relative to its effective instant (ns; 0 when on time).
        late_by: Nanos,
    },
    /// The state's effective instant passed: the command is now executed.
    StateEffective {
        /// Version of the state.
        version: StateVersion,
    },
    /// The song reached its end.
    SongFinished {
        /// The song.
        song: SongRef,
    },
    /// The player could not load a song.
    LoadFailed {
        /// The song.
        song: SongRef,
        /// Why.
        reason: String,
    },
    /// The clock reference or this node's place under it changed.
    ReferenceChanged {
        /// The reference.
        root: NodeId,
        /// This node's stratum.
        stratum: u8,
        /// The neighbour followed, if any.
        parent: Option<NodeId>,
    },
    /// Group time stepped (groups merged under another reference).
    GroupTimeStepped {
        /// Size of the step, ns.
        by: Nanos,
    },
    /// A message from a peer was dropped.
    BadMessage {
        /// The link.
        link: LinkId,
        /// Why.
        reason: BadInput,
    },
}

/// Everything the node asks its driver to do, drained with
/// [`Node::poll_output`](super::Node::poll_output).
#[derive(Clone, PartialEq, Debug)]
pub enum Output {
    /// Send `message` on `link`.
    Transmit {
        /// The link.
        link: LinkId,
        /// The message.
        message: Message,
    },
    /// Open a link to `addr`; call [`Node::handle_link_up`](super::Node::handle_link_up) when
    /// connected.
    Connect {
        /// `host:port`.
        addr: String,
    },
    /// Close `link`; the node has already forgotten it.
    Disconnect {
        /// The link.
        link: LinkId,
    },
    /// A playback action for the player.
    Playback(PlaybackAction),
    /// A timing correction for the player.
    Correction(Correction),
    /// Something for the user interface and the log.
    Event(Event),
}

/// What [`Node::poll_timeout`](super::Node::poll_timeout)'s instant is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TimeoutReason {
    /// A clock probe is due on a link.
    Probe(LinkId),
    /// A link's liveness or handshake deadline.
    LinkCheck(LinkId),
    /// The reference's liveness deadline.
    Reference,
    /// A state's effective instant (or a loading deadline).
    StateEffective,
    /// The song's end.
    SongEnd,
    /// A lost member's address is due to be dialled again.
    Redial,
    /// The members are due to be gossiped and the link rule checked.
    Members,
}

/// The clock-sync role of a peer relative to this node, for tables.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerRole {
    /// This node follows the peer's clock.
    Parent,
    /// The peer follows this node's clock.
    Child,
    /// Neither.
    Peer,
    /// The handshake has not completed.
    Connecting,
}

/// A snapshot of one link, for the `connections` table.
#[derive(Clone, PartialEq, Debug)]
pub struct LinkStatus {
    /// The link.
    pub link: LinkId,
    /// The transport address of the other end.
    pub remote_addr: String,
    /// Where the peer accepts links.
    pub listen_addr: Option<String>,
    /// The peer's room name, from its hello.
    pub name: Option<String>,
    /// The peer's id, after the handshake.
    pub peer: Option<NodeId>,
    /// Who dialled.
    pub direction: Direction,
    /// Lowest round-trip time in the filter window, ns.
    pub rtt: Option<Nanos>,
    /// Peer clock minus ours now, ns.
    pub offset: Option<f64>,
    /// Peer frequency relative to ours, ppm.
    pub drift_ppm: Option<f64>,
    /// Residual of the clock filter, ns.
    pub jitter: Option<f64>,
    /// Role in clock sync.
    pub role: PeerRole,
    /// The peer's stratum, if announced.
    pub stratum: Option<u8>,
    /// Time since the last message from the peer, ns.
    pub last_contact: Nanos,
    /// Silent for longer than the suspect delay.
    pub suspect: bool,
    /// Probes sent on this link.
    pub probes_sent: u64,
    /// Probes that were answered.
    pub probes_answered: u64,
}

/// This node's place in clock sync.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct SyncStatus {
    /// This node.
    pub node_id: NodeId,
    /// The reference it follows (itself when it is the reference).
    pub root: NodeId,
    /// Hops to the reference.
    pub stratum: u8,
    /// The neighbour followed.
    pub parent: Option<NodeId>,
    /// Local clock to group time.
    pub mapping: ClockMapping,
    /// Current command lead, ns.
    pub lead: Nanos,
    /// Largest root delay in the group, ns.
    pub radius: u64,
}

/// Counters of what the node did, for reports and invariants.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Counters {
    /// Messages handed to the driver.
    pub messages_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Messages dropped as bad input.
    pub bad_messages: u64,
    /// States accepted.
    pub states_accepted: u64,
    /// States ignored as old or duplicate.
    pub states_ignored: u64,
    /// Jumps asked of the player.
    pub jumps: u64,
    /// States ignored because they were in a time base this node cannot read yet.
    pub states_foreign: u64,
}
