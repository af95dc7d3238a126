//! Configuration of a [`Node`](super::Node): every tuning number of the core, with its unit.
//!
//! Defaults suit a LAN; the simulator and the drivers override single fields.

use crate::clock::FilterConfig;
use crate::control::ControllerConfig;
use crate::state::NodeId;
use crate::time::{MICROSECOND, MILLISECOND, Nanos, SECOND};

/// Strata beyond this are treated as unreachable (a loop counting up).
pub const MAX_STRATUM: u8 = 32;

/// Configuration of a [`Node`](super::Node). Defaults suit a LAN.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; the lowest id of a connected group becomes its reference.
    pub node_id: NodeId,
    /// Address (`host:port`) at which this node accepts links, told to peers.
    pub listen_addr: Option<String>,
    /// Every other address this node answers on (its interfaces, loopback names): a `join`
    /// there is refused as joining itself, and gossip naming one is not dialled.
    pub own_addrs: Vec<String>,
    /// This node's room name (`Kitchen`), told to peers in the hello and the members gossip.
    pub name: Option<String>,
    /// How often the player should report its position, in ns: the drift controller's rate
    /// estimate and its noise and outlier bounds assume reports this far apart.
    pub report_interval: Nanos,
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
    /// The lead covers the measured delay of the clock tree times this factor (unitless), so
    /// that a state reaches the farthest node before it takes effect despite ordinary jitter.
    pub lead_path_factor: f64,
    /// Total spread of the steady probe interval, as a fraction of it (0.2: +-10 %), so that
    /// links do not fall into lockstep.
    pub probe_jitter: f64,
    /// Probes remembered per link while their replies are awaited; older ones are forgotten.
    pub max_outstanding_probes: usize,
    /// A probe round trip longer than this (ns) is an impossible sample, not a slow link.
    pub max_probe_delay: Nanos,
    /// A neighbour announcing a clock rate beyond this (ppm) is sending nonsense.
    pub max_announced_rate_ppm: f64,
    /// A dial to a gossiped address still pending after this (ns) is forgotten, so the address
    /// can be dialled again.
    pub pending_connect_lifetime: Nanos,
    /// Most addresses taken from one gossip message (a longer one is bad input). The default
    /// is the most the wire codec accepts in one message (`MAX_GOSSIP_ADDRS` in `proto`).
    pub max_gossip_addrs: usize,
    /// A reference not heard of for this long (ns) is forgotten.
    pub forget_root_after: Nanos,
    /// Under the same reference, a neighbour nearer to it is followed only once the uncertainty
    /// of its clock estimate is at most this factor (unitless) times the current parent's.
    pub switch_uncertainty_factor: f64,
    /// Most old time bases remembered, to read states still expressed in them.
    pub max_conversions: usize,
    /// A new state whose timeline is within this (ns) of the one the player follows is
    /// absorbed by the drift controller rather than re-seeked; a pause within this of the
    /// followed timeline is played on to rather than cued.
    pub retime_tolerance: Nanos,
    /// Highest sample rate (Hz) a song in a received state may have.
    pub max_sample_rate_hz: u32,
    /// After the player's output breaks, its reports are ignored this long (ns): a restarted
    /// sound stream first takes a burst of buffers whose reported instants are meaningless
    /// (measured through ALSA's pulse plugin: three callbacks within 2 ms, then steady ones).
    pub output_break_settle: Nanos,
    /// For this long (ns) after the player's output breaks, errors above
    /// [`ControllerConfig::break_jump_threshold`] are re-seeked.
    pub output_break_window: Nanos,
    /// A member whose link dropped (timeout, reset, partition) is dialled again at its listen
    /// address this long (ns) after, and after each failed dial the wait doubles...
    pub redial_min: Nanos,
    /// ...up to this (ns). With the defaults one lost address is dialled at most about 3 times
    /// in its first second and then once every 3 to 5 s.
    pub redial_max: Nanos,
    /// Total spread of each redial wait, as a fraction of it (0.5: +-25 %), so that the two ends
    /// of a link and the members of a split group do not dial in step.
    pub redial_jitter: f64,
    /// A lost member not linked again within this (ns) is forgotten: it is no longer dialled.
    pub forget_lost_after: Nanos,
    /// Most lost members' addresses remembered at once (bounds the dials per second to about
    /// this divided by `redial_max`, once every backoff has grown).
    pub max_redials: usize,
    /// Every this long (ns) a node gossips the members it knows to each neighbour and checks
    /// its link rule (`docs/membership.md`), dialling at most one member per round.
    pub members_interval: Nanos,
    /// A neighbour whose announced members digest equals this node's is sent the table only
    /// this often (ns), to refresh the members' ages; one with another digest (or none: a peer
    /// that predates it) at every round.
    pub members_refresh: Nanos,
    /// A node links to its ring successor and, while it holds fewer links than this (capped by
    /// `max_links`), to the next members in node-id order: with at least 2 links along a ring
    /// through every member, losing any one member does not split the group. 0: the node
    /// dials only what it is told to (joins, gossip, redials).
    pub min_links: usize,
    /// A member that no one has had as a neighbour for this long (ns) is forgotten.
    pub forget_member_after: Nanos,
    /// Most members remembered (a larger group is known in part; the member seen longest ago
    /// goes first).
    pub max_members: usize,
}

impl Config {
    /// Defaults for a node with the given id.
    pub fn new(node_id: NodeId) -> Self {
        Config {
            node_id,
            listen_addr: None,
            own_addrs: Vec::new(),
            name: None,
            report_interval: 50 * MILLISECOND,
            max_links: 8,
            probe_interval: 500 * MILLISECOND,
            burst_probes: 40,
            burst_interval: 100 * MILLISECOND,
            refine_interval: 50 * MILLISECOND,
            refine_above: 15 * MICROSECOND,
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
            lead_path_factor: 1.5,
            probe_jitter: 0.2,
            max_outstanding_probes: 8,
            max_probe_delay: 10 * SECOND,
            max_announced_rate_ppm: 10_000.0,
            pending_connect_lifetime: 10 * SECOND,
            max_gossip_addrs: 64,
            forget_root_after: 600 * SECOND,
            switch_uncertainty_factor: 2.0,
            max_conversions: 16,
            retime_tolerance: MILLISECOND,
            max_sample_rate_hz: 1_536_000,
            output_break_settle: 150 * MILLISECOND,
            output_break_window: 2 * SECOND,
            redial_min: 500 * MILLISECOND,
            redial_max: 4 * SECOND,
            redial_jitter: 0.5,
            forget_lost_after: 600 * SECOND,
            max_redials: 32,
            members_interval: 2 * SECOND,
            members_refresh: 10 * SECOND,
            min_links: 3,
            forget_member_after: 60 * SECOND,
            max_members: 1024,
        }
    }
}
