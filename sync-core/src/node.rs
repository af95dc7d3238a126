//! The [`Node`]: one peer's protocol state machine.
//!
//! It owns the links to its neighbours (handshake, probes, failure detection), its place in
//! the clock tree (reference, stratum, parent) and its mapping to group time, the group state
//! register with relay and anti-entropy, the scheduling of commands, and the drift controller
//! that keeps the local player on the timeline. It reads no clock and does no I/O.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::clock::{ClockFilter, ClockMapping, ClockSample, FilterConfig, LinkEstimate};
use crate::control::{ControlDecision, ControllerConfig, DriftController};
use crate::message::{Announce, Hello, LeaveReason, Message, PROTOCOL_VERSION, Probe, ProbeReply};
use crate::state::{GroupState, Mode, NodeId, SongRef, StateVersion, Timeline, supersedes};
use crate::time::{GroupTime, LocalTime, MILLISECOND, Nanos, SECOND};

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

/// Strata beyond this are treated as unreachable (a loop counting up).
pub const MAX_STRATUM: u8 = 32;

/// Configuration of a [`Node`]. Defaults suit a LAN.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; the lowest id of a connected group becomes its reference.
    pub node_id: NodeId,
    /// Address (`host:port`) at which this node accepts links, told to peers.
    pub listen_addr: Option<String>,
    /// Most links kept at once.
    pub max_links: usize,
    /// Steady interval between clock probes on a link.
    pub probe_interval: Nanos,
    /// Probes sent quickly when a link comes up.
    pub burst_probes: u32,
    /// Interval between the burst's probes.
    pub burst_interval: Nanos,
    /// Interval between probes to the parent while its clock estimate is uncertain.
    pub refine_interval: Nanos,
    /// The parent is probed every `refine_interval` while the uncertainty of the estimate of
    /// its clock is above this (ns): a jittery link gets the samples it needs in its first
    /// seconds, a quiet one is done with the burst.
    pub refine_above: Nanos,
    /// Most probes sent every `refine_interval` on one link (bounds the extra traffic on a
    /// link whose estimate never gets that good).
    pub refine_probes: u32,
    /// Clock filter tuning.
    pub filter: FilterConfig,
    /// A peer silent this long is suspect.
    pub suspect_after: Nanos,
    /// A peer silent this long is removed.
    pub remove_after: Nanos,
    /// A link whose peer has not said hello within this is closed.
    pub handshake_timeout: Nanos,
    /// A reference whose liveness counter has not risen for this long is considered gone.
    pub root_timeout: Nanos,
    /// Smallest command lead (time between a command and its effect).
    pub lead_min: Nanos,
    /// Largest command lead.
    pub lead_max: Nanos,
    /// Added to the lead on top of the measured propagation delay.
    pub lead_margin: Nanos,
    /// How long an initiator waits for its peers to load a song before starting anyway.
    pub ready_timeout: Nanos,
    /// How far ahead a late or corrective start is scheduled, so the player can honour it.
    pub start_latency: Nanos,
    /// Target instants further than this from now are refused.
    pub max_future: Nanos,
    /// A step of group time larger than this (groups merging) re-anchors the playing state.
    pub step_threshold: Nanos,
    /// Drift controller tuning.
    pub controller: ControllerConfig,
}

impl Config {
    /// Defaults for a node with the given id.
    pub fn new(node_id: NodeId) -> Self {
        Config {
            node_id,
            listen_addr: None,
            max_links: 8,
            probe_interval: 500 * MILLISECOND,
            burst_probes: 40,
            burst_interval: 100 * MILLISECOND,
            refine_interval: 50 * MILLISECOND,
            refine_above: 15 * crate::time::MICROSECOND,
            refine_probes: 600,
            filter: FilterConfig::default(),
            suspect_after: 2 * SECOND,
            remove_after: 6 * SECOND,
            handshake_timeout: 5 * SECOND,
            root_timeout: 3 * SECOND,
            lead_min: 20 * MILLISECOND,
            lead_max: 2 * SECOND,
            lead_margin: 5 * MILLISECOND,
            ready_timeout: 3 * SECOND,
            start_latency: 5 * MILLISECOND,
            max_future: 120 * SECOND,
            step_threshold: MILLISECOND,
            controller: ControllerConfig::default(),
        }
    }
}

/// A command typed by the local user or received from a legacy caller.
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
    /// Make `song` the group's song, stopped (every peer loads it).
    Load {
        /// The song.
        song: SongRef,
    },
    /// Open a link to the peer at `addr`.
    Join {
        /// `host:port` of the peer.
        addr: String,
    },
    /// Close the link to a peer, named by its address or node id (hex).
    Leave {
        /// Address or node id as shown by [`Node::links`].
        peer: String,
    },
    /// Share the addresses of this node's peers with all of them.
    Gossip,
    /// Addresses gossiped by a caller outside the peer protocol (legacy `Gossip`).
    PeerAddresses {
        /// `host:port` addresses.
        addrs: Vec<String>,
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
    /// The song asked for by [`PlaybackAction::Load`] is decoded and ready.
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
    /// Too many gossiped addresses.
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

/// Everything the node asks its driver to do, drained with [`Node::poll_output`].
#[derive(Clone, PartialEq, Debug)]
pub enum Output {
    /// Send `message` on `link`.
    Transmit {
        /// The link.
        link: LinkId,
        /// The message.
        message: Message,
    },
    /// Open a link to `addr`; call [`Node::handle_link_up`] when connected.
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

/// What [`Node::poll_timeout`]'s instant is for.
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

#[derive(Clone, Debug)]
struct Link {
    remote_addr: String,
    direction: Direction,
    up_at: LocalTime,
    peer: Option<Hello>,
    last_rx: LocalTime,
    suspect: bool,
    filter: ClockFilter,
    next_probe: LocalTime,
    burst_left: u32,
    /// Probes left at the refining interval.
    refine_left: u32,
    probe_seq: u32,
    outstanding: VecDeque<(u32, LocalTime)>,
    announce: Option<Announce>,
    /// Last state pushed for anti-entropy and when, so repairs are not repeated every message.
    last_push: Option<(StateVersion, LocalTime)>,
    /// A state received in a time base this node could not read yet (see `on_state`).
    unreadable_state: Option<GroupState>,
    probes_sent: u64,
    probes_answered: u64,
}

impl Link {
    fn peer_id(&self) -> Option<NodeId> {
        self.peer.as_ref().map(|h| h.node_id)
    }

    /// One-way delay estimate used for the tree's delays: half the median round trip of the
    /// window (the median, not the minimum, so that the lead covers ordinary jitter).
    fn one_way_delay(&self) -> Option<u64> {
        let mut d: Vec<Nanos> = self.filter.samples().map(|s| s.delay).collect();
        if d.is_empty() {
            return None;
        }
        d.sort_unstable();
        Some((d[d.len() / 2].max(0) / 2) as u64)
    }
}

#[derive(Clone, Copy, Debug)]
struct RootLiveness {
    max_seq: u64,
    advanced_at: LocalTime,
}

/// What the node last told the player, so that re-applying the same state is silent.
#[derive(Clone, PartialEq, Debug)]
struct PlanKey {
    version: StateVersion,
    loaded: bool,
    started: bool,
}

/// One peer's protocol state machine. See the crate documentation for the contract.
#[derive(Debug)]
pub struct Node {
    config: Config,
    rng: ChaCha8Rng,
    now: LocalTime,
    links: BTreeMap<LinkId, Link>,
    pending_connects: BTreeMap<String, LocalTime>,

    mapping: ClockMapping,
    /// Time bases this node has left, with what to add to their instants to express them in
    /// the current one.
    conversions: BTreeMap<u64, Nanos>,
    root: NodeId,
    stratum: u8,
    parent: Option<LinkId>,
    root_delay: u64,
    radius: u64,
    roots: BTreeMap<NodeId, RootLiveness>,

    state: GroupState,
    lamport: u64,
    effective_announced: Option<StateVersion>,
    finished_announced: Option<StateVersion>,

    loaded: Option<SongRef>,
    requested: Option<SongRef>,
    plan: Option<PlanKey>,
    playing: bool,
    jump_until: Option<LocalTime>,
    /// Until this instant, after the player's output broke, small errors are re-seeked.
    break_until: Option<LocalTime>,
    ready_from: BTreeSet<NodeId>,
    /// Set while accepting a state whose timeline matches what the player already plays
    /// (within a millisecond): the controller absorbs the difference instead of a re-seek.
    smooth_retime: bool,
    /// Whether the pause being applied was decided on the timeline the player follows (it then
    /// plays on to the pause frame); otherwise the player is stopped at the pause instant and
    /// cued at the frame.
    pause_on_timeline: bool,
    /// When the player was last started from silence, the instant that start lands: until
    /// then nothing of the timeline has been heard.
    sound_from: Option<LocalTime>,
    controller: DriftController,
    /// The player's last position report (instant, frame), for the controller's observer.
    last_report: Option<(LocalTime, f64)>,

    outputs: VecDeque<Output>,
    counters: Counters,
}

const MAX_OUTSTANDING_PROBES: usize = 8;
/// After the player's output breaks, its reports are ignored this long: a restarted sound
/// stream first takes a burst of buffers whose reported instants are meaningless (measured
/// through ALSA's pulse plugin: three callbacks within 2 ms, then steady ones).
const OUTPUT_BREAK_SETTLE: Nanos = 150 * MILLISECOND;
/// ...and for this long after the break, errors above the break threshold are re-seeked.
const OUTPUT_BREAK_WINDOW: Nanos = 2 * SECOND;
const MAX_GOSSIP_ADDRS: usize = 256;
const MAX_CONVERSIONS: usize = 16;

impl Node {
    /// A node with no links, stopped, its own reference, at local instant `now`. `seed` drives
    /// every random choice (probe timing jitter), so equal seeds and inputs give equal outputs.
    pub fn new(config: Config, seed: u64, now: LocalTime) -> Self {
        let controller = DriftController::new(config.controller);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A fresh time base: the node's own clock until it joins a group.
        let timebase = rng.next_u64() | 1;
        Node {
            root: config.node_id,
            config,
            rng,
            now,
            links: BTreeMap::new(),
            pending_connects: BTreeMap::new(),
            mapping: ClockMapping::identity(now, timebase),
            conversions: BTreeMap::new(),
            stratum: 0,
            parent: None,
            root_delay: 0,
            radius: 0,
            roots: BTreeMap::new(),
            state: GroupState::initial(timebase),
            lamport: 0,
            effective_announced: None,
            finished_announced: None,
            loaded: None,
            requested: None,
            plan: None,
            playing: false,
            jump_until: None,
            break_until: None,
            ready_from: BTreeSet::new(),
            smooth_retime: false,
            pause_on_timeline: false,
            sound_from: None,
            controller,
            last_report: None,
            outputs: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Queries

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The group state held.
    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// Group time at local instant `at`.
    pub fn group_time(&self, at: LocalTime) -> GroupTime {
        self.mapping.to_group(at)
    }

    /// Group time at local instant `at`, fractional, as nanoseconds since `base`.
    pub fn group_time_since(&self, at: LocalTime, base: GroupTime) -> f64 {
        self.mapping.to_group_since(at, base)
    }

    /// The local instant at which group time reaches `g`.
    pub fn local_time(&self, g: GroupTime) -> LocalTime {
        self.mapping.to_local(g)
    }

    /// Where the group timeline stands at local instant `at` (what should be heard then).
    pub fn timeline_at(&self, at: LocalTime) -> Timeline {
        self.state.timeline_at(self.group_time(at))
    }

    /// Fractional frame the timeline says is heard at local instant `at`, when playing.
    pub fn expected_frame(&self, at: LocalTime) -> Option<f64> {
        let song = self.state.song.as_ref()?;
        let (frame, anchor) = match self.state.mode {
            Mode::Playing { frame, at } => (frame, at),
            Mode::Loading {
                start_frame,
                deadline,
            } => (start_frame, deadline),
            // Before a pause or stop takes effect the timeline keeps playing towards it.
            Mode::Paused { frame, at: pa } if self.group_time(at) < pa && self.playing => {
                (frame, pa)
            }
            _ => return None,
        };
        let g = self.mapping.to_group_since(at, anchor);
        if g < 0.0 && !matches!(self.state.mode, Mode::Paused { .. }) {
            return None;
        }
        let f = frame as f64 + song.nanos_to_frames(g);
        (f >= 0.0 && f < song.frames as f64).then_some(f)
    }

    /// Clock-sync status.
    pub fn sync_status(&self) -> SyncStatus {
        SyncStatus {
            node_id: self.id(),
            root: self.root,
            stratum: self.stratum,
            parent: self
                .parent
                .and_then(|l| self.links.get(&l))
                .and_then(Link::peer_id),
            mapping: self.mapping,
            lead: self.lead(),
            radius: self.radius,
        }
    }

    /// The lead currently added to commands: long enough for a state to cross the clock tree
    /// from here to its farthest node (measured delays with a factor and a margin), bounded.
    pub fn lead(&self) -> Nanos {
        let path = (self.root_delay + self.radius) as f64 * 1.5;
        (path as Nanos + self.config.lead_margin).clamp(self.config.lead_min, self.config.lead_max)
    }

    /// The drift controller's last rate (ppm) and error (ns).
    pub fn correction_status(&self) -> (f64, Option<Nanos>) {
        (self.controller.rate_ppm(), self.controller.last_error())
    }

    /// Snapshots of every link, ordered by link id.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.links
            .iter()
            .map(|(&id, l)| {
                let est = l.filter.estimate();
                LinkStatus {
                    link: id,
                    remote_addr: l.remote_addr.clone(),
                    listen_addr: l.peer.as_ref().and_then(|h| h.listen_addr.clone()),
                    peer: l.peer_id(),
                    direction: l.direction,
                    rtt: est.map(|e| e.min_delay),
                    offset: est.map(|e| e.offset_at(self.now)),
                    drift_ppm: est.map(|e| e.rate * 1e6),
                    jitter: est.map(|e| e.jitter),
                    role: self.role_of(id, l),
                    stratum: l.announce.map(|a| a.stratum),
                    last_contact: self.now.since(l.last_rx),
                    suspect: l.suspect,
                    probes_sent: l.probes_sent,
                    probes_answered: l.probes_answered,
                }
            })
            .collect()
    }

    /// Number of links whose handshake completed.
    pub fn peer_count(&self) -> usize {
        self.links.values().filter(|l| l.peer.is_some()).count()
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn role_of(&self, id: LinkId, l: &Link) -> PeerRole {
        if l.peer.is_none() {
            PeerRole::Connecting
        } else if self.parent == Some(id) {
            PeerRole::Parent
        } else if l.announce.is_some_and(|a| a.parent == Some(self.id())) {
            PeerRole::Child
        } else {
            PeerRole::Peer
        }
    }

    // ----------------------------------------------------------------------------------------
    // Outputs

    /// The next thing for the driver to do. After any `handle_*` call, call this until it
    /// returns `None`; only `handle_*` calls add to it.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next instant at which [`Node::handle_timeout`] must be called, and why. Changes only
    /// after a `handle_*` call. Every instant returned is later than the last `now` handled
    /// once `handle_timeout` has run for it, so a driver cannot busy-loop on it.
    pub fn poll_timeout(&self) -> Option<(LocalTime, TimeoutReason)> {
        let mut best: Option<(LocalTime, TimeoutReason)> = None;
        let mut consider = |t: LocalTime, r: TimeoutReason| {
            if best.is_none_or(|(b, _)| t < b) {
                best = Some((t, r));
            }
        };
        for (&id, l) in &self.links {
            if l.peer.is_some() {
                consider(l.next_probe, TimeoutReason::Probe(id));
                let check = if l.suspect {
                    l.last_rx + self.config.remove_after
                } else {
                    l.last_rx + self.config.suspect_after
                };
                consider(check, TimeoutReason::LinkCheck(id));
            } else {
                consider(
                    l.up_at + self.config.handshake_timeout,
                    TimeoutReason::LinkCheck(id),
                );
            }
        }
        if self.root != self.id()
            && let Some(r) = self.roots.get(&self.root)
        {
            consider(
                r.advanced_at + self.config.root_timeout,
                TimeoutReason::Reference,
            );
        }
        if let Some(t) = self.next_state_instant() {
            consider(t, TimeoutReason::StateEffective);
        }
        if let Some(t) = self.song_end_instant() {
            consider(t, TimeoutReason::SongEnd);
        }
        best
    }

    fn emit(&mut self, o: Output) {
        if matches!(o, Output::Transmit { .. }) {
            self.counters.messages_sent += 1;
        }
        self.outputs.push_back(o);
    }

    fn event(&mut self, e: Event) {
        self.emit(Output::Event(e));
    }

    fn send(&mut self, link: LinkId, message: Message) {
        self.emit(Output::Transmit { link, message });
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: links

    /// A link is up (dialled by us after [`Output::Connect`], or accepted). The node sends its
    /// hello on it.
    pub fn handle_link_up(
        &mut self,
        now: LocalTime,
        link: LinkId,
        remote_addr: String,
        direction: Direction,
    ) {
        self.advance(now);
        if direction == Direction::Outgoing {
            self.pending_connects.remove(&remote_addr);
        }
        self.links.insert(
            link,
            Link {
                remote_addr,
                direction,
                up_at: now,
                peer: None,
                last_rx: now,
                suspect: false,
                filter: ClockFilter::new(self.config.filter),
                next_probe: now,
                burst_left: self.config.burst_probes,
                refine_left: self.config.refine_probes,
                probe_seq: 0,
                outstanding: VecDeque::new(),
                announce: None,
                last_push: None,
                unreadable_state: None,
                probes_sent: 0,
                probes_answered: 0,
            },
        );
        let hello = Hello {
            node_id: self.id(),
            protocol_version: PROTOCOL_VERSION,
            listen_addr: self.config.listen_addr.clone(),
        };
        self.send(link, Message::Hello(hello));
    }

    /// A dial asked for with [`Output::Connect`] failed.
    pub fn handle_connect_failed(&mut self, now: LocalTime, addr: &str) {
        self.advance(now);
        self.pending_connects.remove(addr);
    }

    /// The transport lost a link.
    pub fn handle_link_down(&mut self, now: LocalTime, link: LinkId) {
        self.advance(now);
        self.remove_link(link, DisconnectReason::Closed, false);
    }

    fn remove_link(&mut self, link: LinkId, reason: DisconnectReason, tell_driver: bool) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        if tell_driver {
            self.emit(Output::Disconnect { link });
        }
        self.event(Event::PeerDisconnected {
            link,
            peer: l.peer_id(),
            reason,
        });
        if self.parent == Some(link) {
            self.parent = None;
        }
        self.select_reference();
        self.check_ready();
    }

    fn close_link(&mut self, link: LinkId, why: LeaveReason) {
        if self.links.contains_key(&link) {
            self.send(link, Message::Leave(why));
            self.remove_link(link, DisconnectReason::Local(why), true);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: messages

    /// A message from the peer on `link`, received at local instant `now` (stamped as close to
    /// the socket as the transport allows: it is the t3 of clock probes).
    pub fn handle_message(&mut self, now: LocalTime, link: LinkId, message: Message) {
        self.advance(now);
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        self.counters.messages_received += 1;
        l.last_rx = now;
        if l.suspect {
            l.suspect = false;
        }
        let handshaken = l.peer.is_some();
        // Any message straight from the reference proves it alive: its liveness counter rides
        // only on probes, and a lossy link may drop several of those in a row.
        let from = l.peer.as_ref().map(|h| h.node_id);
        if let Some(peer) = from
            && peer == self.root
            && let Some(r) = self.roots.get_mut(&peer)
        {
            r.advanced_at = r.advanced_at.max(now);
        }

        match message {
            Message::Hello(h) => {
                if handshaken {
                    self.bad(link, BadInput::RepeatedHello);
                } else {
                    self.on_hello(now, link, h);
                }
            }
            // Probes travel as datagrams beside the stream that carries the hello, so one can
            // overtake a hello that is being retransmitted: that is not a misbehaving peer.
            Message::Probe(_) | Message::ProbeReply(_) if !handshaken => {}
            _ if !handshaken => self.bad(link, BadInput::BeforeHandshake),
            Message::Probe(p) => self.on_probe(now, link, p),
            Message::ProbeReply(r) => self.on_probe_reply(now, link, r),
            Message::State(s) => self.on_state(now, Some(link), s),
            Message::Ready(v) => self.on_ready(link, v),
            Message::Gossip(addrs) => {
                if addrs.len() > MAX_GOSSIP_ADDRS {
                    self.bad(link, BadInput::OversizedGossip);
                } else {
                    self.connect_to_gossiped(addrs);
                }
            }
            Message::Leave(reason) => {
                self.remove_link(link, DisconnectReason::PeerLeft(reason), true);
            }
        }
    }

    fn bad(&mut self, link: LinkId, reason: BadInput) {
        self.counters.bad_messages += 1;
        self.event(Event::BadMessage { link, reason });
    }

    fn on_hello(&mut self, now: LocalTime, link: LinkId, h: Hello) {
        if h.protocol_version != PROTOCOL_VERSION {
            self.bad(link, BadInput::ProtocolVersion(h.protocol_version));
            self.close_link(link, LeaveReason::Refused);
            return;
        }
        if h.node_id == self.id() {
            self.bad(link, BadInput::SelfLink);
            self.close_link(link, LeaveReason::Refused);
            return;
        }
        // Two links to the same node (both dialled each other): keep the one dialled by the
        // lower id, so both ends keep the same one; if the same end dialled twice, the older.
        let me = self.id();
        let dialer = |d: Direction, peer: NodeId| if d == Direction::Outgoing { me } else { peer };
        let duplicate = self
            .links
            .iter()
            .find(|(id, l)| **id != link && l.peer_id() == Some(h.node_id))
            .map(|(id, l)| (*id, l.direction, l.up_at));
        let this = self.links.get(&link).map(|l| (l.direction, l.up_at));
        if let (Some((other, odir, oup)), Some((dir, up))) = (duplicate, this) {
            let keep_other =
                (dialer(odir, h.node_id), oup, other) < (dialer(dir, h.node_id), up, link);
            let drop = if keep_other { link } else { other };
            if drop == link {
                self.close_link(link, LeaveReason::Duplicate);
                return;
            }
            self.close_link(drop, LeaveReason::Duplicate);
        }
        let full = self.peer_count() >= self.config.max_links;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let direction = l.direction;
        l.peer = Some(h.clone());
        l.next_probe = now;
        l.burst_left = self.config.burst_probes;
        if full && direction == Direction::Incoming {
            // Point the newcomer at our neighbours so the group stays connected, then refuse.
            let addrs = self.neighbour_addrs(Some(link));
            self.send(link, Message::Gossip(addrs));
            self.close_link(link, LeaveReason::Full);
            return;
        }
        self.event(Event::PeerConnected {
            link,
            peer: h.node_id,
            listen_addr: h.listen_addr,
        });
        // A newcomer learns the group state at once rather than at the next anti-entropy round.
        if self.state.version != StateVersion::default() {
            self.push_state(link, now);
        }
        self.send_probe(now, link);
        self.check_ready();
    }

    fn neighbour_addrs(&self, except: Option<LinkId>) -> Vec<String> {
        let mut v: Vec<String> = self
            .links
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .filter_map(|(_, l)| l.peer.as_ref().and_then(|h| h.listen_addr.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn connect_to_gossiped(&mut self, addrs: Vec<String>) {
        let now = self.now;
        self.pending_connects
            .retain(|_, at| now.since(*at) < 10 * SECOND);
        for addr in addrs {
            if self.links.len() + self.pending_connects.len() >= self.config.max_links {
                break;
            }
            if self.is_known_addr(&addr) {
                continue;
            }
            self.pending_connects.insert(addr.clone(), now);
            self.emit(Output::Connect { addr });
        }
    }

    fn is_known_addr(&self, addr: &str) -> bool {
        self.config.listen_addr.as_deref() == Some(addr)
            || self.pending_connects.contains_key(addr)
            || self.links.values().any(|l| {
                l.remote_addr == addr
                    || l.peer.as_ref().and_then(|h| h.listen_addr.as_deref()) == Some(addr)
            })
    }

    fn announce(&self) -> Announce {
        let subtree = self
            .links
            .values()
            .filter_map(|l| l.announce)
            .filter(|a| a.parent == Some(self.id()) && a.root == self.root)
            .map(|a| a.subtree_delay)
            .fold(self.root_delay, u64::max);
        Announce {
            root: self.root,
            stratum: self.stratum,
            // The reference's liveness counter is its own clock in milliseconds: it rises by
            // itself, and keeps rising across a restart of the process on the same host.
            root_seq: if self.root == self.id() {
                self.now.0 / MILLISECOND as u64
            } else {
                self.roots.get(&self.root).map_or(0, |r| r.max_seq)
            },
            root_delay: self.root_delay,
            parent: self
                .parent
                .and_then(|l| self.links.get(&l))
                .and_then(Link::peer_id),
            state_version: self.state.version,
            mapping: self.mapping.reanchored(self.now),
            subtree_delay: subtree,
            radius: self.radius.max(subtree),
        }
    }

    fn send_probe(&mut self, now: LocalTime, link: LinkId) {
        let announce = self.announce();
        let interval = self.config.probe_interval;
        let burst = self.config.burst_interval;
        let refine = self.parent == Some(link)
            && self.links.get(&link).is_some_and(|l| {
                l.refine_left > 0
                    && l.filter
                        .estimate()
                        .is_none_or(|e| e.uncertainty > self.config.refine_above as f64)
            });
        // Jitter the steady interval by +-10 % so that links do not fall into lockstep.
        let jitter = (self.rng.next_u32() as f64 / u32::MAX as f64 - 0.5) * 0.2;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.probe_seq = l.probe_seq.wrapping_add(1);
        let seq = l.probe_seq;
        l.outstanding.push_back((seq, now));
        while l.outstanding.len() > MAX_OUTSTANDING_PROBES {
            l.outstanding.pop_front();
        }
        l.probes_sent += 1;
        if refine {
            l.refine_left -= 1;
            l.burst_left = l.burst_left.saturating_sub(1);
            l.next_probe = now + self.config.refine_interval;
        } else if l.burst_left > 0 {
            l.burst_left -= 1;
            l.next_probe = now + burst;
        } else {
            l.next_probe = now + (interval as f64 * (1.0 + jitter)) as Nanos;
        }
        self.send(
            link,
            Message::Probe(Probe {
                seq,
                t0: now,
                announce,
            }),
        );
        self.maybe_send_ready(link);
    }

    fn on_probe(&mut self, now: LocalTime, link: LinkId, p: Probe) {
        if self.on_announce(now, link, p.announce).is_err() {
            return;
        }
        let announce = self.announce();
        self.send(
            link,
            Message::ProbeReply(ProbeReply {
                seq: p.seq,
                t0: p.t0,
                t1: now,
                t2: self.now,
                announce,
            }),
        );
    }

    fn on_probe_reply(&mut self, now: LocalTime, link: LinkId, r: ProbeReply) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(pos) = l.outstanding.iter().position(|(s, _)| *s == r.seq) else {
            self.bad(link, BadInput::UnexpectedReply);
            return;
        };
        let (_, sent) = l.outstanding.remove(pos).expect("index from position");
        // The transport may have restamped t0 with the real send instant: accept an echo between
        // our stamp and the reply's arrival, and nothing else.
        if r.t0 < sent || r.t0 > now {
            self.bad(link, BadInput::ImpossibleTimestamps);
            return;
        }
        let Some(sample) = ClockSample::from_timestamps(r.t0, r.t1, r.t2, now) else {
            self.bad(link, BadInput::ImpossibleTimestamps);
            return;
        };
        if sample.delay > 10 * SECOND {
            self.bad(link, BadInput::ImpossibleTimestamps);
            return;
        }
        l.probes_answered += 1;
        let steps = l.filter.steps();
        l.filter.add(sample);
        if l.filter.steps() > steps {
            // One of the two clocks stepped and the estimate starts afresh: probe as quickly
            // as on a new link until it is good again.
            l.burst_left = self.config.burst_probes;
            l.refine_left = self.config.refine_probes;
            l.next_probe = now;
        }
        if self.on_announce(now, link, r.announce).is_err() {
            return;
        }
        if self.parent == Some(link) {
            self.update_mapping();
        }
    }

    /// Records a neighbour's announcement: liveness of its reference, anti-entropy, and a new
    /// choice of reference if warranted.
    fn on_announce(&mut self, now: LocalTime, link: LinkId, a: Announce) -> Result<(), ()> {
        if a.stratum > MAX_STRATUM {
            self.bad(link, BadInput::InvalidAnnounce("stratum"));
            return Err(());
        }
        if !a.mapping.rate_ppm.is_finite() || a.mapping.rate_ppm.abs() > 10_000.0 {
            self.bad(link, BadInput::InvalidAnnounce("clock rate"));
            return Err(());
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.announce = Some(a);
        }
        if a.root != self.id() {
            let r = self.roots.entry(a.root).or_insert(RootLiveness {
                max_seq: a.root_seq,
                advanced_at: now,
            });
            if a.root_seq > r.max_seq {
                r.max_seq = a.root_seq;
                r.advanced_at = now;
            }
        }
        // Anti-entropy: a neighbour behind us gets our state (at most once per half interval).
        if a.state_version < self.state.version {
            let due = self.links.get(&link).is_some_and(|l| {
                l.last_push.is_none_or(|(v, at)| {
                    v != self.state.version || now.since(at) >= self.config.probe_interval / 2
                })
            });
            if due {
                self.push_state(link, now);
            }
        }
        self.select_reference();
        if self.parent == Some(link) {
            self.update_mapping();
        }
        // The announcement may say how to read a state that arrived before it.
        if let Some(st) = self
            .links
            .get_mut(&link)
            .and_then(|l| l.unreadable_state.take())
            && (st.timebase == self.mapping.timebase
                || self.conversions.contains_key(&st.timebase)
                || a.mapping.timebase == st.timebase)
        {
            self.on_state(now, Some(link), st);
        }
        Ok(())
    }

    /// What to add to instants of time base `base` to read them in ours, when the neighbour on
    /// `link` runs `base`: a state arriving on a link is in its sender's time base, and the
    /// sender's announced mapping composed with our estimate of its clock says where its group
    /// time stands against ours (to within the link's estimation error).
    fn neighbour_conversion(&self, link: LinkId, base: u64) -> Option<Nanos> {
        let l = self.links.get(&link)?;
        let a = l.announce?;
        if a.mapping.timebase != base {
            return None;
        }
        let est = l.filter.estimate()?;
        let theirs = a.mapping.compose(est, self.now);
        Some(
            self.mapping
                .to_group(self.now)
                .since(theirs.to_group(self.now)),
        )
    }

    fn push_state(&mut self, link: LinkId, now: LocalTime) {
        let v = self.state.version;
        if let Some(l) = self.links.get_mut(&link) {
            l.last_push = Some((v, now));
        }
        self.send(link, Message::State(self.state.clone()));
    }

    // ----------------------------------------------------------------------------------------
    // Clock tree

    fn root_alive(&self, root: NodeId) -> bool {
        self.roots
            .get(&root)
            .is_some_and(|r| self.now.since(r.advanced_at) < self.config.root_timeout)
    }

    /// Chooses the reference and the neighbour to follow: the lowest live root id announced by a
    /// neighbour with a clock estimate, then the lowest stratum, then the shortest delay; under
    /// the same reference, a neighbour whose clock is known much less well than the current
    /// parent's is not followed yet.
    fn select_reference(&mut self) {
        let me = self.id();
        let stale_ms = (self.config.root_timeout / MILLISECOND) as u64;
        let mut best: Option<((NodeId, u8, u64, NodeId), LinkId)> = None;
        let mut current = None;
        for (&id, l) in &self.links {
            let (Some(a), Some(peer)) = (l.announce, l.peer_id()) else {
                continue;
            };
            let Some(delay) = l.one_way_delay() else {
                continue;
            };
            if l.filter.estimate().is_none()
                || a.parent == Some(me)
                || a.root == me
                || a.stratum >= MAX_STRATUM
                || !self.root_alive(a.root)
            {
                continue;
            }
            let newest = self.roots.get(&a.root).map_or(0, |r| r.max_seq);
            if newest.saturating_sub(a.root_seq) > stale_ms {
                continue;
            }
            let key = (a.root, a.stratum, a.root_delay + delay, peer);
            if Some(id) == self.parent {
                current = Some((key, id));
            }
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, id));
            }
        }
        // A neighbour nearer the reference is not followed until its clock is known about as
        // well as the current parent's: switching to a link that came up seconds ago would
        // trade a good estimate for a poor one (a step of group time, heard).
        if let (Some(((root, ..), link)), Some(((croot, ..), clink))) = (best, current)
            && root == croot
            && link != clink
        {
            let unc = |l: LinkId| {
                self.links
                    .get(&l)
                    .and_then(|l| l.filter.estimate())
                    .map_or(f64::INFINITY, |e| e.uncertainty)
            };
            if unc(link) > (2.0 * unc(clink)).max(self.config.refine_above as f64) {
                best = current;
            }
        }
        let (root, stratum, parent) = match best {
            Some(((root, stratum, _, _), link)) if root < me => (root, stratum + 1, Some(link)),
            _ => (me, 0, None),
        };
        let parent_changed = parent != self.parent;
        let root_changed = root != self.root || stratum != self.stratum;
        let was_following = self.parent.is_some() || self.root != me;
        self.parent = parent;
        self.root = root;
        self.stratum = stratum;
        match parent.and_then(|p| self.links.get(&p)) {
            Some(l) => {
                let a = l.announce.expect("parent has an announcement");
                self.root_delay = a.root_delay + l.one_way_delay().unwrap_or(0);
                self.radius = a.radius;
            }
            None => {
                self.root_delay = 0;
                self.radius = self
                    .links
                    .values()
                    .filter_map(|l| l.announce)
                    .filter(|a| a.parent == Some(me))
                    .map(|a| a.subtree_delay)
                    .max()
                    .unwrap_or(0);
            }
        }
        if parent_changed || root_changed {
            if parent.is_none() {
                // Becoming the reference: keep the current mapping so group time runs on without
                // a jump, re-anchored to keep numbers small.
                self.mapping = self.mapping.reanchored(self.now);
                if was_following {
                    // A reference that takes over after its own left (or after a split) starts a
                    // time base of its own: the other half of a split group carries the old one
                    // on with another clock, and instants of the two must never be confused
                    // when they meet again. Followers switch to it with a step of about zero.
                    let fresh = self.rng.next_u64() | 1;
                    self.adopt_timebase(fresh, 0);
                }
            }
            let parent_id = parent
                .and_then(|p| self.links.get(&p))
                .and_then(Link::peer_id);
            self.event(Event::ReferenceChanged {
                root,
                stratum,
                parent: parent_id,
            });
            if parent.is_some() {
                self.update_mapping();
            }
        }
    }

    /// Recomputes the mapping from the parent's mapping and the link estimate.
    fn update_mapping(&mut self) {
        let Some(l) = self.parent.and_then(|p| self.links.get(&p)) else {
            return;
        };
        let (Some(a), Some(est)) = (l.announce, l.filter.estimate()) else {
            return;
        };
        let est: LinkEstimate = *est;
        let now = self.now;
        let new = a.mapping.compose(&est, now);
        let step = new.to_group(now).since(self.mapping.to_group(now));
        let old_base = self.mapping.timebase;
        self.mapping = ClockMapping {
            timebase: old_base,
            ..new
        };
        if new.timebase != old_base {
            self.adopt_timebase(new.timebase, step);
        } else if step.abs() > self.config.step_threshold {
            self.event(Event::GroupTimeStepped { by: step });
        }
    }

    /// Moves to time base `base`, whose instants are `step` ahead of the current one's (this
    /// node joined another group's time, or started a new one): remembers how to read instants
    /// of the old bases, and converts the state held so that local playback does not move.
    fn adopt_timebase(&mut self, base: u64, step: Nanos) {
        let old = self.mapping.timebase;
        if base == old {
            return;
        }
        for by in self.conversions.values_mut() {
            *by = by.saturating_add(step);
        }
        self.conversions.insert(old, step);
        self.conversions.remove(&base);
        while self.conversions.len() > MAX_CONVERSIONS {
            let oldest = *self.conversions.keys().next().expect("non-empty");
            self.conversions.remove(&oldest);
        }
        self.mapping.timebase = base;
        self.state = self.state.converted(step, base);
        if step.abs() > self.config.step_threshold {
            self.event(Event::GroupTimeStepped { by: step });
        }
        // Every node that converts uses its own estimate of the step; re-stating the converted
        // state as a revision of the same command lets the register pick one, so the group
        // holds identical anchors (the player follows without a re-seek), and no command issued
        // meanwhile is undone (a revision loses to any later command).
        if self.state.version != StateVersion::default() {
            let state = GroupState {
                version: self.state.version.revised(self.id()),
                ..self.state.clone()
            };
            self.accept_state(state, None, 0);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Group state

    fn next_version(&mut self) -> StateVersion {
        self.lamport = self.lamport.max(self.state.version.counter) + 1;
        StateVersion::new(self.lamport, self.id())
    }

    fn validate_state(&self, s: &GroupState) -> Result<(), &'static str> {
        let horizon = self.group_time(self.now) + self.config.max_future;
        if let Some(song) = &s.song {
            if song.sample_rate == 0 || song.sample_rate > 1_536_000 {
                return Err("sample rate");
            }
            if song.frames == 0 {
                return Err("empty song");
            }
            if song.name.is_empty() {
                return Err("song name");
            }
        }
        let frames = s.song.as_ref().map_or(0, |x| x.frames);
        match s.mode {
            Mode::Stopped { at } => {
                if at > horizon {
                    return Err("instant too far ahead");
                }
            }
            Mode::Loading {
                start_frame,
                deadline,
            } => {
                if s.song.is_none() {
                    return Err("loading without a song");
                }
                if start_frame >= frames {
                    return Err("frame beyond the song");
                }
                if deadline > horizon {
                    return Err("instant too far ahead");
                }
            }
            Mode::Paused { frame, at } | Mode::Playing { frame, at } => {
                if s.song.is_none() {
                    return Err("playing without a song");
                }
                if frame > frames {
                    return Err("frame beyond the song");
                }
                if at > horizon {
                    return Err("instant too far ahead");
                }
            }
        }
        Ok(())
    }

    fn on_state(&mut self, now: LocalTime, from: Option<LinkId>, s: GroupState) {
        let conversion = if s.timebase == self.mapping.timebase {
            Some(0)
        } else {
            self.conversions
                .get(&s.timebase)
                .copied()
                .or_else(|| from.and_then(|l| self.neighbour_conversion(l, s.timebase)))
        };
        let Some(by) = conversion else {
            // In a time base this node cannot read yet: typically the sender has just moved to a
            // new one and its first announcement in it is still on the way. Keep it for that
            // link and try again when the link's next announcement arrives.
            self.counters.states_foreign += 1;
            if let Some(l) = from.and_then(|l| self.links.get_mut(&l)) {
                l.unreadable_state = Some(s);
            }
            return;
        };
        let s = if by == 0 && s.timebase == self.mapping.timebase {
            s
        } else {
            s.converted(by, self.mapping.timebase)
        };
        if let Err(why) = self.validate_state(&s) {
            if let Some(link) = from {
                self.bad(link, BadInput::InvalidState(why));
            }
            return;
        }
        self.lamport = self.lamport.max(s.version.counter);
        if !supersedes(&s.version, &self.state.version) {
            self.counters.states_ignored += 1;
            return;
        }
        let late_by = self.group_time(now).since(s.effective_at()).max(0);
        let late_by = if matches!(s.mode, Mode::Loading { .. }) {
            0
        } else {
            late_by
        };
        self.accept_state(s, from, late_by);
    }

    /// Installs a newer state, relays it, and applies it to the local player.
    fn accept_state(&mut self, s: GroupState, from: Option<LinkId>, late_by: Nanos) {
        self.counters.states_accepted += 1;
        // Readiness is per version: Ready messages name the version they answer.
        self.ready_from.clear();
        // Compare the two timelines at an instant where both play: now, or the later of their
        // anchors (a state re-stated or re-decided a hair later must not re-seek a player that
        // already started on the earlier one).
        let compare_at = [self.state.effective_at(), s.effective_at()]
            .into_iter()
            .map(|g| self.local_time(g))
            .fold(self.now, LocalTime::max)
            // A microsecond past the later anchor, so that rounding to local time cannot
            // land before it (where the timeline is not defined yet).
            + crate::time::MICROSECOND;
        let before = self
            .playing
            .then(|| self.expected_frame(compare_at))
            .flatten();
        let old_song = self.state.song.clone();
        // A pause lands exactly on its frame ("play on to the frame") only for a player that
        // follows the timeline the pause was decided on. One that lost a concurrent command,
        // or follows an older timeline, could be far from the frame: it would play on for as
        // long, or go back, while the group is silent.
        self.pause_on_timeline = match (s.mode, &old_song, &s.song) {
            (Mode::Paused { frame, at }, Some(o), Some(n)) if self.playing && o.same_song(n) => {
                self.state.frame_heard_at(at).is_some_and(|f| {
                    n.frames_to_nanos((frame as f64 - f).abs()) < MILLISECOND as f64
                })
            }
            _ => false,
        };
        self.state = s.clone();
        let after = self.expected_frame(compare_at);
        self.smooth_retime = match (before, after, &old_song, &self.state.song) {
            (Some(b), Some(a), Some(o), Some(n)) if o.same_song(n) => {
                n.frames_to_nanos((a - b).abs()) < MILLISECOND as f64
            }
            _ => false,
        };
        self.event(Event::StateAccepted {
            state: s,
            from,
            late_by,
        });
        let now = self.now;
        let targets: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(id, l)| Some(**id) != from && l.peer.is_some())
            .map(|(id, _)| *id)
            .collect();
        for link in targets {
            self.push_state(link, now);
        }
        self.apply_state();
        self.check_ready();
    }

    /// The state's mode with a loading state past its deadline read as playing.
    fn effective_mode(&self) -> Mode {
        match self.state.mode {
            Mode::Loading {
                start_frame,
                deadline,
            } if self.local_time(deadline) <= self.now => Mode::Playing {
                frame: start_frame,
                at: deadline,
            },
            m => m,
        }
    }

    fn song_is_loaded(&self) -> bool {
        match (&self.state.song, &self.loaded) {
            (Some(s), Some(l)) => s.same_song(l),
            _ => false,
        }
    }

    /// Tells the player what the current state means for it, once per (version, loaded, phase).
    fn apply_state(&mut self) {
        let now = self.now;
        if let Some(song) = self.state.song.clone()
            && !self.song_is_loaded()
            && self.requested.as_ref().is_none_or(|r| !r.same_song(&song))
        {
            self.requested = Some(song.clone());
            self.emit(Output::Playback(PlaybackAction::Load { song }));
        }
        let mode = self.effective_mode();
        let key = PlanKey {
            version: self.state.version,
            loaded: self.song_is_loaded(),
            started: matches!(mode, Mode::Playing { .. }),
        };
        if self.plan.as_ref() == Some(&key) {
            return;
        }
        self.plan = Some(key);
        let loaded = self.song_is_loaded();
        match mode {
            Mode::Stopped { at } => {
                if self.playing || loaded {
                    let at = self.local_time(at).max(now);
                    self.emit(Output::Playback(PlaybackAction::Stop { at }));
                }
                self.playing = false;
            }
            Mode::Loading { .. } => {
                if self.playing {
                    self.emit(Output::Playback(PlaybackAction::Stop { at: now }));
                    self.playing = false;
                }
                if loaded {
                    self.send_ready_to_all();
                }
            }
            Mode::Paused { frame, at } => {
                if loaded {
                    let at = self.local_time(at).max(now);
                    if self.pause_on_timeline {
                        self.emit(Output::Playback(PlaybackAction::PauseAt { frame, at }));
                    } else {
                        // Stop wherever the player is at the pause instant, then cue the frame.
                        self.emit(Output::Playback(PlaybackAction::Stop { at }));
                        self.emit(Output::Playback(PlaybackAction::PauseAt {
                            frame,
                            at: at + 1,
                        }));
                    }
                }
                // The player keeps playing until the pause instant; drift control goes on.
            }
            Mode::Playing { .. } => {
                // A start from silence that has not landed yet: nothing was heard, so a newer
                // timeline replaces it outright, however close.
                let unheard = self.sound_from.is_some_and(|t| t > now);
                if loaded && self.playing && std::mem::take(&mut self.smooth_retime) && !unheard {
                    // Same timeline within a millisecond (a re-anchored or repeated state):
                    // the drift controller takes care of it without an audible re-seek.
                } else if loaded {
                    if unheard {
                        // Cancel the pending start (the player keeps a start due before the
                        // new one otherwise).
                        self.emit(Output::Playback(PlaybackAction::Stop { at: now }));
                    }
                    self.start_player();
                } else if self.playing {
                    self.emit(Output::Playback(PlaybackAction::Stop { at: now }));
                    self.playing = false;
                }
            }
        }
    }

    /// Starts the player on the timeline: at the anchor if it is still ahead, else at the
    /// frame the timeline will have reached a moment from now (a late arrival joins in sync).
    fn start_player(&mut self) {
        let Some((frame, at)) = self.start_point() else {
            return;
        };
        let from_silence = !self.playing || self.sound_from.is_some_and(|t| t > self.now);
        self.sound_from = from_silence.then_some(at);
        self.playing = true;
        self.jump_until = Some(at);
        self.last_report = None;
        self.controller.restart();
        self.emit(Output::Playback(PlaybackAction::Start { frame, at }));
    }

    /// Where to (re)start the player: a whole frame and the local instant it is due.
    fn start_point(&self) -> Option<(u64, LocalTime)> {
        let song = self.state.song.as_ref()?;
        let Mode::Playing { frame, at } = self.effective_mode() else {
            return None;
        };
        let earliest = self.now + self.config.start_latency;
        let anchor_local = self.local_time(at);
        if anchor_local >= earliest {
            return Some((frame, anchor_local));
        }
        // Frame reached at `earliest`, rounded up to a whole frame, and the instant it is due.
        let elapsed = self.mapping.to_group_since(earliest, at);
        let f = (frame as f64 + song.nanos_to_frames(elapsed)).ceil();
        if f >= song.frames as f64 {
            return None;
        }
        let due_group = at + song.frames_to_nanos(f - frame as f64).round() as Nanos;
        Some((f as u64, self.local_time(due_group)))
    }

    /// Local instant at which the current state takes effect, until that has been handled. The
    /// same expression decides in `handle_timeout`, so rounding cannot make the two disagree.
    fn next_state_instant(&self) -> Option<LocalTime> {
        if self.effective_announced == Some(self.state.version)
            || self.state.version == StateVersion::default()
        {
            return None;
        }
        let at = match self.state.mode {
            Mode::Loading { deadline, .. } => deadline,
            _ => self.state.effective_at(),
        };
        Some(self.local_time(at).max(self.now))
    }

    fn song_end_instant(&self) -> Option<LocalTime> {
        if self.finished_announced == Some(self.state.version) {
            return None;
        }
        let song = self.state.song.as_ref()?;
        let Mode::Playing { frame, at } = self.effective_mode() else {
            return None;
        };
        let end = at
            + song
                .frames_to_nanos((song.frames - frame.min(song.frames)) as f64)
                .round() as Nanos;
        Some(self.local_time(end).max(self.now))
    }

    // ----------------------------------------------------------------------------------------
    // Readiness (an initiator waits a bounded time for its peers to load)

    fn maybe_send_ready(&mut self, link: LinkId) {
        if let Mode::Loading { .. } = self.effective_mode()
            && self.song_is_loaded()
            && self.state.version.origin != self.id()
        {
            self.send(link, Message::Ready(self.state.version));
        }
    }

    fn send_ready_to_all(&mut self) {
        if self.state.version.origin == self.id() {
            self.check_ready();
            return;
        }
        let links: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.peer.is_some())
            .map(|(id, _)| *id)
            .collect();
        for link in links {
            self.send(link, Message::Ready(self.state.version));
        }
    }

    fn on_ready(&mut self, link: LinkId, v: StateVersion) {
        if v != self.state.version || v.origin != self.id() {
            return;
        }
        if let Some(peer) = self.links.get(&link).and_then(Link::peer_id) {
            self.ready_from.insert(peer);
        }
        self.check_ready();
    }

    /// The initiator of a loading state starts playback as soon as it and all its peers are
    /// ready (the deadline in the state covers peers that never are).
    fn check_ready(&mut self) {
        let Mode::Loading { start_frame, .. } = self.effective_mode() else {
            return;
        };
        if self.state.version.origin != self.id() || !self.song_is_loaded() {
            return;
        }
        let all = self
            .links
            .values()
            .filter_map(Link::peer_id)
            .all(|p| self.ready_from.contains(&p));
        if !all {
            return;
        }
        let at = self.group_time(self.now) + self.lead();
        let state = GroupState {
            version: self.next_version(),
            song: self.state.song.clone(),
            mode: Mode::Playing {
                frame: start_frame,
                at,
            },
            timebase: self.mapping.timebase,
        };
        self.accept_state(state, None, 0);
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: commands

    /// A local command (typed, or from a legacy caller). `delay` postpones the effective instant
    /// beyond the lead (the legacy `wait_time_ms`). Refused commands change nothing.
    pub fn handle_command(
        &mut self,
        now: LocalTime,
        command: Command,
        delay: Option<Nanos>,
    ) -> Result<(), CommandError> {
        self.advance(now);
        let delay = delay.unwrap_or(0).max(0);
        if delay > self.config.max_future {
            return Err(CommandError::TooFarAhead(delay / MILLISECOND));
        }
        let effective = self.group_time(now) + self.lead().max(delay);
        let song = self.state.song.clone();
        // A song that played to its end counts as stopped.
        let mode = match self.timeline_at(now) {
            Timeline::Finished => Mode::Stopped {
                at: self.group_time(now),
            },
            _ => self.effective_mode(),
        };
        match &command {
            Command::Join { addr } => return self.join(addr),
            Command::Leave { peer } => return self.leave(peer),
            Command::Gossip => {
                let links: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, l)| l.peer.is_some())
                    .map(|(id, _)| *id)
                    .collect();
                for link in links {
                    let addrs = self.neighbour_addrs(Some(link));
                    self.send(link, Message::Gossip(addrs));
                }
                return Ok(());
            }
            Command::PeerAddresses { addrs } => {
                self.connect_to_gossiped(addrs.iter().take(MAX_GOSSIP_ADDRS).cloned().collect());
                return Ok(());
            }
            _ => {}
        }
        let new_mode = |s: &Self| -> Result<(Option<SongRef>, Mode), CommandError> {
            match &command {
                Command::Play {
                    song: wanted,
                    frame,
                } => {
                    let song = wanted
                        .clone()
                        .or(song.clone())
                        .ok_or(CommandError::NoSong)?;
                    if song.sample_rate == 0 || song.frames == 0 {
                        return Err(CommandError::InvalidSong(song.name));
                    }
                    if *frame >= song.frames {
                        return Err(CommandError::OutOfRange {
                            frame: *frame,
                            frames: song.frames,
                        });
                    }
                    let loaded_here = s.loaded.as_ref().is_some_and(|l| l.same_song(&song));
                    if loaded_here && s.peer_count() == 0 {
                        Ok((
                            Some(song),
                            Mode::Playing {
                                frame: *frame,
                                at: effective,
                            },
                        ))
                    } else {
                        let deadline = s.group_time(now) + s.config.ready_timeout.max(delay);
                        Ok((
                            Some(song),
                            Mode::Loading {
                                start_frame: *frame,
                                deadline,
                            },
                        ))
                    }
                }
                Command::Pause => {
                    let song = song.clone().ok_or(CommandError::NoSong)?;
                    match mode {
                        Mode::Playing { .. } => {
                            let f = s
                                .state
                                .frame_at_or_anchor(effective)
                                .ok_or(CommandError::NotPlaying)?;
                            Ok((
                                Some(song),
                                Mode::Paused {
                                    frame: f,
                                    at: effective,
                                },
                            ))
                        }
                        Mode::Loading { start_frame, .. } => Ok((
                            Some(song),
                            Mode::Paused {
                                frame: start_frame,
                                at: effective,
                            },
                        )),
                        _ => Err(CommandError::NotPlaying),
                    }
                }
                Command::Resume => {
                    let song = song.clone().ok_or(CommandError::NoSong)?;
                    match mode {
                        Mode::Paused { frame, .. } => Ok((
                            Some(song),
                            Mode::Playing {
                                frame,
                                at: effective,
                            },
                        )),
                        _ => Err(CommandError::NotPaused),
                    }
                }
                Command::Stop => {
                    if matches!(mode, Mode::Stopped { .. }) {
                        return Err(CommandError::AlreadyStopped);
                    }
                    Ok((song.clone(), Mode::Stopped { at: effective }))
                }
                Command::Seek { frame } => {
                    let song = song.clone().ok_or(CommandError::NoSong)?;
                    if *frame >= song.frames {
                        return Err(CommandError::OutOfRange {
                            frame: *frame,
                            frames: song.frames,
                        });
                    }
                    match mode {
                        Mode::Playing { .. } => Ok((
                            Some(song),
                            Mode::Playing {
                                frame: *frame,
                                at: effective,
                            },
                        )),
                        Mode::Paused { .. } | Mode::Stopped { .. } => Ok((
                            Some(song),
                            Mode::Paused {
                                frame: *frame,
                                at: effective,
                            },
                        )),
                        Mode::Loading { deadline, .. } => Ok((
                            Some(song),
                            Mode::Loading {
                                start_frame: *frame,
                                deadline,
                            },
                        )),
                    }
                }
                Command::Load { song } => {
                    if song.sample_rate == 0 || song.frames == 0 {
                        return Err(CommandError::InvalidSong(song.name.clone()));
                    }
                    Ok((Some(song.clone()), Mode::Stopped { at: effective }))
                }
                // Handled above; they do not change the group state.
                Command::Join { .. }
                | Command::Leave { .. }
                | Command::Gossip
                | Command::PeerAddresses { .. } => Ok((s.state.song.clone(), s.state.mode)),
            }
        };
        let (song, mode) = new_mode(self)?;
        let state = GroupState {
            version: self.next_version(),
            song,
            mode,
            timebase: self.mapping.timebase,
        };
        self.accept_state(state, None, 0);
        Ok(())
    }

    fn join(&mut self, addr: &str) -> Result<(), CommandError> {
        let err = |reason| {
            Err(CommandError::Join {
                addr: addr.to_string(),
                reason,
            })
        };
        if self.config.listen_addr.as_deref() == Some(addr) {
            return err("that is this client's own address");
        }
        if self.is_known_addr(addr) {
            return err("already connected or connecting");
        }
        if self.links.len() + self.pending_connects.len() >= self.config.max_links {
            return err("the link limit is reached");
        }
        self.pending_connects.insert(addr.to_string(), self.now);
        self.emit(Output::Connect {
            addr: addr.to_string(),
        });
        Ok(())
    }

    fn leave(&mut self, peer: &str) -> Result<(), CommandError> {
        let found = self.links.iter().find(|(_, l)| {
            l.remote_addr == peer
                || l.peer.as_ref().and_then(|h| h.listen_addr.as_deref()) == Some(peer)
                || l.peer_id()
                    .is_some_and(|id| id.to_string() == peer.to_ascii_lowercase())
        });
        match found {
            Some((&link, _)) => {
                self.close_link(link, LeaveReason::Leaving);
                Ok(())
            }
            None => Err(CommandError::UnknownPeer(peer.to_string())),
        }
    }

    /// Closes every link politely (the node is shutting down).
    pub fn shutdown(&mut self, now: LocalTime) {
        self.advance(now);
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.close_link(link, LeaveReason::Leaving);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: player

    /// A report from the player.
    pub fn handle_player(&mut self, now: LocalTime, report: PlayerReport) {
        self.advance(now);
        match report {
            PlayerReport::Loaded { song } => {
                if self.requested.as_ref().is_some_and(|r| r.same_song(&song)) {
                    self.requested = None;
                }
                self.loaded = Some(song);
                self.apply_state();
                self.check_ready();
            }
            PlayerReport::LoadFailed { song, reason } => {
                if self.requested.as_ref().is_some_and(|r| r.same_song(&song)) {
                    self.requested = None;
                }
                self.event(Event::LoadFailed { song, reason });
            }
            PlayerReport::Position { at, frame } => self.on_position(now, at, frame),
            PlayerReport::OutputBreak { at } => {
                // The first reports after a restart describe buffers queued in a burst before
                // the stream ran again; they are not worth a decision.
                let settled = at + OUTPUT_BREAK_SETTLE;
                self.jump_until = Some(self.jump_until.map_or(settled, |t| t.max(settled)));
                self.break_until = Some(at + OUTPUT_BREAK_WINDOW);
                // Errors from before the break say nothing of the player's rate.
                self.last_report = None;
                self.controller.restart();
            }
        }
    }

    fn on_position(&mut self, now: LocalTime, at: LocalTime, frame: f64) {
        // A frame the song cannot have is a broken report, not an error to correct.
        if !self.playing || !frame.is_finite() || frame < 0.0 {
            return;
        }
        if self.jump_until.is_some_and(|t| at < t) {
            return;
        }
        let Some(song) = self.state.song.clone() else {
            return;
        };
        let Some(expected) = self.expected_frame(at) else {
            return;
        };
        let error = song.frames_to_nanos(frame - expected).round() as Nanos;
        // The previous report, judged against the current timeline estimate.
        let previous = self.last_report.and_then(|(pat, pframe)| {
            let e = self.expected_frame(pat)?;
            Some((pat, song.frames_to_nanos(pframe - e).round() as Nanos))
        });
        self.last_report = Some((at, frame));
        let ff = self.mapping.rate_ppm;
        let after_break = self.break_until.is_some_and(|t| at < t);
        match self.controller.update(at, error, previous, ff, after_break) {
            ControlDecision::Hold => {}
            ControlDecision::Rate(ppm) => self.emit(Output::Correction(Correction::Rate { ppm })),
            ControlDecision::Jump => {
                // Re-seek a moment from now, onto the timeline.
                let _ = now;
                if let Some((frame, at)) = self.start_point() {
                    self.counters.jumps += 1;
                    self.jump_until = Some(at);
                    self.last_report = None;
                    self.controller.restart();
                    self.emit(Output::Correction(Correction::Jump { frame, at, error }));
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: time

    fn advance(&mut self, now: LocalTime) {
        // Time never runs backwards inside the node, whatever the driver passes.
        if now > self.now {
            self.now = now;
        }
    }

    /// Time has reached `now`: send due probes, detect silent peers and a dead reference, and
    /// act on states whose instants have come.
    pub fn handle_timeout(&mut self, now: LocalTime) {
        self.advance(now);
        let now = self.now;
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in ids {
            let Some(l) = self.links.get(&id) else {
                continue;
            };
            if l.peer.is_none() {
                if now.since(l.up_at) >= self.config.handshake_timeout {
                    self.remove_link(id, DisconnectReason::HandshakeTimeout, true);
                }
                continue;
            }
            let silent = now.since(l.last_rx);
            if silent >= self.config.remove_after {
                self.send(id, Message::Leave(LeaveReason::Timeout));
                self.remove_link(id, DisconnectReason::Timeout, true);
                continue;
            }
            if silent >= self.config.suspect_after && !l.suspect {
                let peer = l.peer_id().expect("handshaken");
                if let Some(l) = self.links.get_mut(&id) {
                    l.suspect = true;
                }
                self.event(Event::PeerSuspect { link: id, peer });
            }
            if self.links.get(&id).is_some_and(|l| l.next_probe <= now) {
                self.send_probe(now, id);
            }
        }
        if self.root != self.id() && !self.root_alive(self.root) {
            self.select_reference();
        }
        // Forget references not heard of for a long time.
        self.roots
            .retain(|_, r| now.since(r.advanced_at) < 600 * SECOND);

        if let Some(t) = self.next_state_instant()
            && t <= now
        {
            self.effective_announced = Some(self.state.version);
            if matches!(self.state.mode, Mode::Paused { .. } | Mode::Stopped { .. }) {
                self.playing = false;
            }
            self.event(Event::StateEffective {
                version: self.state.version,
            });
        }
        // A loading state past its deadline now plays.
        self.apply_state();
        if let Some(t) = self.song_end_instant()
            && t <= now
            && let Some(song) = self.state.song.clone()
        {
            self.finished_announced = Some(self.state.version);
            self.playing = false;
            self.event(Event::SongFinished { song });
        }
    }
}

impl GroupState {
    /// The fractional frame a player following this state emits at group instant `t`, while
    /// the state says it plays then (before a pause's instant, it plays towards the pause).
    fn frame_heard_at(&self, t: GroupTime) -> Option<f64> {
        let song = self.song.as_ref()?;
        let (frame, at) = match self.mode {
            Mode::Playing { frame, at }
            | Mode::Loading {
                start_frame: frame,
                deadline: at,
            } if t >= at => (frame, at),
            Mode::Paused { frame, at } if t < at => (frame, at),
            _ => return None,
        };
        Some(frame as f64 + song.nanos_to_frames(t.since(at) as f64))
    }

    /// The whole frame the timeline reaches at `t` (pause placement): floor of the fractional
    /// frame, so the frame being heard at `t` is the last one played.
    fn frame_at_or_anchor(&self, t: GroupTime) -> Option<u64> {
        match self.mode {
            Mode::Playing { frame, at }
            | Mode::Loading {
                start_frame: frame,
                deadline: at,
            } => {
                let song = self.song.as_ref()?;
                let f = frame as f64 + song.nanos_to_frames(t.since(at) as f64);
                Some((f.floor().max(0.0) as u64).min(song.frames))
            }
            _ => None,
        }
    }
}
