//! The simulator: sync-core [`Node`]s driven exactly as a real driver drives them, on virtual
//! time, over impaired links, with a virtual player each, under churn, partitions and commands,
//! with invariants checked after every event and the targets of `docs/protocol.md` measured.
//!
//! One ChaCha8 stream seeded from [`SimConfig::seed`] makes every choice (and seeds each link's
//! and node's own stream); events are ordered by (true time, sequence number); nothing iterates
//! a hash map. The same seed and commit therefore give the same trace, which
//! [`Outcome::trace_hash`] summarises.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt::Write as _;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use sync_core::{
    Command, Config, Correction, Direction, Event, GroupState, LinkCommand, LinkId, LocalTime,
    Message, Mode, Node, NodeId, Output, PeerAddr, PlaybackAction, PlayerReport, SongRef,
    StateVersion, Timeline,
};

use crate::clock::SimClock;
use crate::link::LinkModel;
use crate::player::VirtualPlayer;
use crate::scenario::{MS, SEC, SimConfig, Topology, Transport};
use crate::stats::Histogram;

mod faults;

/// One broken invariant, with the true instant it was seen at.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// True instant, ns.
    pub at: u64,
    /// Which peer, if one.
    pub peer: Option<usize>,
    /// What was wrong.
    pub what: String,
}

/// One command typed during the run and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRecord {
    /// True instant it was typed.
    pub issued: u64,
    /// Peer it was typed at.
    pub peer: usize,
    /// The command.
    pub command: Command,
    /// Version of the state it created.
    pub version: StateVersion,
    /// True instant of its effect (the issuing peer's estimate); the issue instant for a
    /// `play`, whose loading state applies on arrival.
    pub effective: u64,
    /// Its lead: effective minus issued, ns.
    pub lead: u64,
    /// From issue until every required peer applied it, ns (`None`: some never did).
    pub latency: Option<u64>,
    /// Every required peer applied it within lead + 1 s.
    pub converged: bool,
    /// Peers (and their incarnations) that had to apply it: live, in the issuer's component.
    required: Vec<(usize, u32)>,
}

/// A point of the per-peer sync error series: true instant (s), peer, error (µs, against the
/// median of the peers compared at that instant).
pub type SeriesPoint = (f64, usize, f64);

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The configuration run.
    pub config: SimConfig,
    /// Pairwise sync error, ns: every pair of compared peers at every sample instant.
    pub pair_error: Histogram,
    /// Largest pairwise error (max − min) at each sample instant, ns.
    pub spread: Histogram,
    /// Per-peer error against the median, ns.
    pub peer_error: Histogram,
    /// Per-peer series (when [`SimConfig::series`]).
    pub series: Vec<SeriesPoint>,
    /// Commands typed.
    pub commands: Vec<CommandRecord>,
    /// Commands refused by the node they were typed at.
    pub commands_refused: u64,
    /// Messages sent by all nodes.
    pub messages: u64,
    /// Sum over nodes of the time they were up, ns.
    pub peer_up_time: u64,
    /// Most messages one node sent in one second.
    pub max_messages_node_second: u64,
    /// Broken invariants (all of them counted, the first 100 kept).
    pub violations: Vec<Violation>,
    /// Number of broken invariants.
    pub violation_count: u64,
    /// Events processed.
    pub events: u64,
    /// Jump corrections.
    pub jumps: u64,
    /// Messages the nodes reported as bad.
    pub bad_messages: u64,
    /// Hash of the trace (see the module documentation).
    pub trace_hash: u64,
    /// Live peers and connected components at the end.
    pub final_live: usize,
    /// Connected components of the live peers at the end.
    pub final_components: usize,
    /// Leads of the commands, ns.
    pub leads: Histogram,
    /// For each fault of [`SimConfig::faults`] that healed: ns from its heal until the live
    /// peers were one group again (`None`: not within [`SimConfig::heal_bound`]).
    pub heal_times: Vec<Option<u64>>,
}

// ------------------------------------------------------------------------------------------
// Events

#[derive(Debug)]
enum Ev {
    Deliver {
        to: usize,
        inc: u32,
        link: LinkId,
        msg: Message,
    },
    LinkUp {
        a: usize,
        inc_a: u32,
        b: usize,
        inc_b: u32,
        addr: String,
    },
    ConnectFailed {
        node: usize,
        inc: u32,
        addr: String,
    },
    LinkDown {
        node: usize,
        inc: u32,
        link: LinkId,
    },
    Loaded {
        node: usize,
        inc: u32,
        song: SongRef,
    },
    Wake {
        node: usize,
        generation: u64,
    },
    Tick {
        node: usize,
        inc: u32,
    },
    Keeper {
        node: usize,
        inc: u32,
    },
    Sample,
    Command,
    Churn,
    PartitionStart,
    PartitionHeal,
    InitialJoin {
        a: usize,
        b: usize,
    },
    ClockStep,
    Debug,
    /// Fault `k` of the script strikes.
    Fault(usize),
    /// A stopped peer runs again.
    Resume {
        node: usize,
    },
    /// A killed peer starts again on its address, with a new id.
    Restart {
        node: usize,
    },
    /// Links still blocked by partition number `partition` are lost at both ends.
    TransportTimeout {
        partition: u64,
    },
    /// Is the group one again after the heal at `healed_at`?
    HealCheck {
        healed_at: u64,
    },
}

impl Ev {
    fn tag(&self) -> u8 {
        match self {
            Ev::Deliver { .. } => 1,
            Ev::LinkUp { .. } => 2,
            Ev::ConnectFailed { .. } => 3,
            Ev::LinkDown { .. } => 4,
            Ev::Loaded { .. } => 5,
            Ev::Wake { .. } => 6,
            Ev::Tick { .. } => 7,
            Ev::Keeper { .. } => 8,
            Ev::Sample => 9,
            Ev::Command => 10,
            Ev::Churn => 11,
            Ev::PartitionStart => 12,
            Ev::PartitionHeal => 13,
            Ev::InitialJoin { .. } => 14,
            Ev::ClockStep => 15,
            Ev::Debug => 16,
            Ev::Fault(_) => 17,
            Ev::Resume { .. } => 18,
            Ev::Restart { .. } => 19,
            Ev::TransportTimeout { .. } => 20,
            Ev::HealCheck { .. } => 21,
        }
    }
}

struct Entry {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and the earliest (time, seq) must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

// ------------------------------------------------------------------------------------------
// Trace hash

/// FNV-1a over everything fed to it, usable as a `fmt::Write` sink for `Debug` output.
struct TraceHash(u64);

impl TraceHash {
    fn new() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for x in b {
            self.0 ^= *x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

impl std::fmt::Write for TraceHash {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Peers and wires

struct Peer {
    id: NodeId,
    addr: String,
    clock: SimClock,
    config: Config,
    node: Option<Node>,
    incarnation: u32,
    player: VirtualPlayer,
    /// Link id on this node -> wire index.
    links: BTreeMap<LinkId, usize>,
    wake_gen: u64,
    wake_at: Option<u64>,
    neighbours: Vec<usize>,
    /// A song start is expected (a `play`, or the node just (re)started): the next start from
    /// silence begins a warm-up.
    song_start_pending: Option<f64>,
    warmup_until: f64,
    jump_settle_until: f64,
    last_heard: Option<(f64, u64)>,
    prev_state: Option<GroupState>,
    up_since: u64,
    bucket: (u64, u64),
    /// Stopped (SIGSTOP): inputs wait until it runs again, it sends nothing.
    frozen: bool,
    /// When a stopped peer runs again, ns.
    resumes_at: u64,
}

struct Wire {
    /// (node, link id on it, incarnation) of each end.
    ends: [(usize, LinkId, u32); 2],
    models: [LinkModel; 2],
    up: bool,
    /// Lost by the transport (timed out): not even packets already sent arrive.
    dead: bool,
}

/// The simulator. Build it with [`Sim::new`], then [`Sim::run`].
pub struct Sim {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    queue: BinaryHeap<Entry>,
    seq: u64,
    peers: Vec<Peer>,
    wires: Vec<Wire>,
    addr_index: BTreeMap<String, usize>,
    next_link: u64,
    songs: Vec<SongRef>,
    partition_side: Option<Vec<bool>>,
    command_windows: Vec<(u64, u64)>,
    accept_logs: BTreeMap<(usize, u32), Vec<(u64, StateVersion)>>,
    sample_interval: u64,
    quiet_from: u64,
    hash: TraceHash,
    out: Outcome,
    /// Partitions started so far (a transport timeout applies to its own partition only).
    partitions: u64,
    /// Indices in `out.commands` of the commands typed once a heal was over.
    heal_commands: Vec<usize>,
}

fn song_library() -> Vec<SongRef> {
    vec![
        SongRef {
            name: "long-48k.wav".into(),
            content_hash: "a1".into(),
            sample_rate: 48_000,
            frames: 48_000 * 1_500,
        },
        SongRef {
            name: "long-44k.wav".into(),
            content_hash: "b2".into(),
            sample_rate: 44_100,
            frames: 44_100 * 1_500,
        },
        SongRef {
            name: "short-48k.wav".into(),
            content_hash: "c3".into(),
            sample_rate: 48_000,
            frames: 48_000 * 40,
        },
    ]
}

/// Rough encoded size of a message, for bandwidth-limited links.
fn message_len(m: &Message) -> usize {
    match m {
        Message::Hello(_) => 48,
        Message::Probe(_) => 140,
        Message::ProbeReply(_) => 160,
        Message::State(_) => 120,
        Message::Ready(_) => 24,
        Message::Gossip(a) => 16 + 24 * a.len(),
        Message::Members(m) => 16 + 36 * m.len(),
        Message::Leave(_) => 8,
    }
}

impl Sim {
    /// A simulator for `cfg`; nothing has happened yet.
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let n = cfg.peers;
        let mut peers = Vec::with_capacity(n);
        let mut addr_index = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for i in 0..n {
            let id = loop {
                let id = NodeId(rng.next_u64());
                if ids.insert(id) {
                    break id;
                }
            };
            let addr = format!("10.{}.{}.{}:50052", i / 65_536, (i / 256) % 256, i % 256);
            let u = |rng: &mut ChaCha8Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let offset = ((u(&mut rng) * 2.0 - 1.0) * cfg.offset_max as f64) as i64;
            let drift = (u(&mut rng) * 2.0 - 1.0) * cfg.drift_max_ppm;
            let device = (u(&mut rng) * 2.0 - 1.0) * cfg.device_max_ppm;
            let mut clock = SimClock::new(offset, drift);
            if let Some(s) = cfg.clock_steps.iter().find(|s| s.peer == i) {
                clock.step = Some((s.at, s.by));
            }
            let mut config = Config::new(id);
            config.listen_addr = Some(addr.clone());
            config.max_links = cfg.max_links;
            addr_index.insert(addr.clone(), i);
            peers.push(Peer {
                id,
                addr,
                clock,
                config,
                node: None,
                incarnation: 0,
                player: VirtualPlayer::new(clock, device),
                links: BTreeMap::new(),
                wake_gen: 0,
                wake_at: None,
                neighbours: Vec::new(),
                song_start_pending: None,
                warmup_until: 0.0,
                jump_settle_until: 0.0,
                last_heard: None,
                prev_state: None,
                up_since: 0,
                bucket: (0, 0),
                frozen: false,
                resumes_at: 0,
            });
        }
        let sample_interval = cfg.effective_sample_interval();
        let quiet_from = cfg.duration.saturating_sub(cfg.quiet_tail);
        let out = Outcome {
            config: cfg.clone(),
            pair_error: Histogram::new(),
            spread: Histogram::new(),
            peer_error: Histogram::new(),
            series: Vec::new(),
            commands: Vec::new(),
            commands_refused: 0,
            messages: 0,
            peer_up_time: 0,
            max_messages_node_second: 0,
            violations: Vec::new(),
            violation_count: 0,
            events: 0,
            jumps: 0,
            bad_messages: 0,
            trace_hash: 0,
            final_live: 0,
            final_components: 0,
            leads: Histogram::new(),
            heal_times: Vec::new(),
        };
        Sim {
            cfg,
            rng,
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            peers,
            wires: Vec::new(),
            addr_index,
            next_link: 1,
            songs: song_library(),
            partition_side: None,
            command_windows: Vec::new(),
            accept_logs: BTreeMap::new(),
            sample_interval,
            quiet_from,
            hash: TraceHash::new(),
            out,
            partitions: 0,
            heal_commands: Vec::new(),
        }
    }

    // --------------------------------------------------------------------------------------
    // Randomness and scheduling

    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + (self.uniform() * (hi.saturating_sub(lo)) as f64) as u64
    }

    fn exponential(&mut self, mean: u64) -> u64 {
        let u = 1.0 - self.uniform();
        (-u.ln() * mean as f64) as u64
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Entry {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        });
    }

    fn violation(&mut self, peer: Option<usize>, what: String) {
        self.out.violation_count += 1;
        if self.out.violations.len() < 100 {
            self.out.violations.push(Violation {
                at: self.now,
                peer,
                what,
            });
        }
    }

    // --------------------------------------------------------------------------------------
    // Set-up

    fn build_topology(&mut self) -> Vec<(usize, usize)> {
        let n = self.cfg.peers;
        let cap = self.cfg.max_links.max(1);
        let mut edges = BTreeSet::new();
        match self.cfg.topology {
            Topology::FullMesh => {
                for a in 0..n {
                    for b in a + 1..n {
                        edges.insert((a, b));
                    }
                }
            }
            Topology::Chain => {
                for a in 0..n.saturating_sub(1) {
                    edges.insert((a, a + 1));
                }
            }
            Topology::Star => {
                for b in 1..n {
                    edges.insert((0, b));
                }
            }
            Topology::Random { degree } => {
                let mut deg = vec![0usize; n];
                // Random spanning tree: each peer attaches to an earlier one with room.
                for b in 1..n {
                    let mut a = self.below(b);
                    let mut tries = 0;
                    while deg[a] >= cap && tries < 4 * n {
                        a = self.below(b);
                        tries += 1;
                    }
                    edges.insert((a, b));
                    deg[a] += 1;
                    deg[b] += 1;
                }
                let target = (n * degree.min(cap)) / 2;
                let mut tries = 0;
                while edges.len() < target && tries < 20 * n {
                    tries += 1;
                    let a = self.below(n);
                    let b = self.below(n);
                    let (a, b) = (a.min(b), a.max(b));
                    // Leave headroom below the cap for links made by gossip.
                    if a == b || deg[a] + 1 >= cap || deg[b] + 1 >= cap || edges.contains(&(a, b)) {
                        continue;
                    }
                    edges.insert((a, b));
                    deg[a] += 1;
                    deg[b] += 1;
                }
            }
        }
        for &(a, b) in &edges {
            self.peers[a].neighbours.push(b);
            self.peers[b].neighbours.push(a);
        }
        edges.into_iter().collect()
    }

    fn script(&mut self) {
        let edges = self.build_topology();
        let n = self.cfg.peers;
        let absent: BTreeSet<usize> = match self.cfg.churn {
            Some(c) => {
                let k = (n as f64 * c.initially_absent) as usize;
                let mut all: Vec<usize> = (0..n).collect();
                let mut out = BTreeSet::new();
                for _ in 0..k.min(n.saturating_sub(2)) {
                    let j = self.below(all.len());
                    out.insert(all.swap_remove(j));
                }
                out
            }
            None => BTreeSet::new(),
        };
        for i in 0..n {
            if !absent.contains(&i) {
                self.start_peer(i, false);
            }
        }
        // Initial joins, spread over the first 200 ms (larger groups: longer).
        let spread = (200 * MS).max(n as u64 * MS / 2);
        for (a, b) in edges {
            if absent.contains(&a) || absent.contains(&b) {
                continue;
            }
            let (from, to) = if self.uniform() < 0.5 { (a, b) } else { (b, a) };
            let at = self.between(10 * MS, spread);
            self.schedule(at, Ev::InitialJoin { a: from, b: to });
        }
        // Commands: the first play, then exponentially spaced commands.
        let quiet = self.quiet_from;
        let first = self.cfg.commands.first_play_at;
        if first < quiet {
            self.schedule(first, Ev::Command);
            if self.cfg.commands.mean_interval > 0 {
                let mut t = first;
                loop {
                    t += self
                        .exponential(self.cfg.commands.mean_interval)
                        .max(500 * MS);
                    if t >= quiet {
                        break;
                    }
                    self.schedule(t, Ev::Command);
                }
            }
        }
        if let Some(c) = self.cfg.churn {
            let mut t = 3 * SEC;
            loop {
                t += self.exponential(c.mean_interval).max(100 * MS);
                if t >= quiet {
                    break;
                }
                self.schedule(t, Ev::Churn);
            }
        }
        if let Some(p) = self.cfg.partition {
            let mut t = p.first_at;
            while t + p.duration < quiet {
                self.schedule(t, Ev::PartitionStart);
                self.schedule(t + p.duration, Ev::PartitionHeal);
                t += p.every.max(p.duration + SEC);
            }
        }
        for s in self.cfg.clock_steps.clone() {
            self.schedule(s.at, Ev::ClockStep);
        }
        for k in 0..self.cfg.faults.len() {
            self.schedule(self.cfg.faults[k].at, Ev::Fault(k));
        }
        let si = self.sample_interval;
        self.schedule(si, Ev::Sample);
        if self.cfg.debug_interval > 0 {
            self.schedule(self.cfg.debug_interval, Ev::Debug);
        }
    }

    fn start_peer(&mut self, i: usize, restarted: bool) {
        let seed = self.rng.next_u64();
        let p = &mut self.peers[i];
        p.incarnation += 1;
        let local = p.clock.local(self.now);
        p.node = Some(Node::new(p.config.clone(), seed, local));
        p.player.reset();
        p.links.clear();
        p.song_start_pending = Some(self.now as f64);
        p.last_heard = None;
        p.prev_state = None;
        p.up_since = self.now;
        p.wake_at = None;
        p.wake_gen += 1;
        let inc = p.incarnation;
        self.accept_logs.insert((i, inc), Vec::new());
        let tick = self.between(0, self.cfg.report_interval);
        self.schedule(self.now + tick, Ev::Tick { node: i, inc });
        if self.cfg.keeper_interval > 0 {
            let keep = self.between(self.cfg.keeper_interval / 2, self.cfg.keeper_interval);
            self.schedule(self.now + keep, Ev::Keeper { node: i, inc });
        }
        if restarted {
            // A restarted or joining peer dials a few of its neighbours, as a user would.
            let mut ns = self.peers[i].neighbours.clone();
            for k in 0..ns.len().min(2) {
                let j = k + self.below(ns.len() - k);
                ns.swap(k, j);
                let addr = self.peers[ns[k]].addr.clone();
                self.command_join(i, addr);
            }
        }
        self.reschedule(i);
    }

    fn command_join(&mut self, i: usize, addr: String) {
        let local = self.peers[i].clock.local(self.now);
        let Some(node) = self.peers[i].node.as_mut() else {
            return;
        };
        // Refusals (already connected, at the cap) are normal here.
        let addr = PeerAddr::parse(&addr).expect("simulated addresses are host:port");
        let _ = node.handle_link_command(local, LinkCommand::Join { addr });
        self.drain(i);
        self.reschedule(i);
    }

    // --------------------------------------------------------------------------------------
    // Driving nodes

    fn local(&self, i: usize) -> LocalTime {
        self.peers[i].clock.local(self.now)
    }

    fn is_up(&self, i: usize) -> bool {
        self.peers[i].node.is_some()
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partition_side.as_ref().is_some_and(|s| s[a] != s[b])
    }

    /// Re-arms node `i`'s wake-up at its `poll_timeout`, if that changed.
    fn reschedule(&mut self, i: usize) {
        let p = &self.peers[i];
        let Some(node) = p.node.as_ref() else {
            return;
        };
        let want = node
            .poll_timeout()
            .map(|(l, _)| p.clock.true_ceil(l).max(self.now));
        if want != p.wake_at {
            let p = &mut self.peers[i];
            p.wake_gen += 1;
            p.wake_at = want;
            let generation = p.wake_gen;
            if let Some(t) = want {
                self.schedule(
                    t,
                    Ev::Wake {
                        node: i,
                        generation,
                    },
                );
            }
        }
    }

    /// Carries out every output of node `i`, as a driver must after each input.
    fn drain(&mut self, i: usize) {
        let mut may_go_back = false;
        loop {
            let Some(node) = self.peers[i].node.as_mut() else {
                return;
            };
            let Some(o) = node.poll_output() else {
                break;
            };
            if self.cfg.full_trace {
                self.hash.u64(i as u64);
                let _ = write!(self.hash, "{o:?}");
            }
            if self.cfg.debug_interval > 0
                && std::env::var("MUSIC262_SIM_TRACE_PEER").ok() == Some(i.to_string())
                && !matches!(o, Output::Transmit { .. })
            {
                eprintln!("{:9.6} peer {i} output {o:?}", self.now as f64 / 1e9);
            }
            match o {
                Output::Transmit { link, message } => self.transmit(i, link, message),
                Output::Connect { addr } => self.connect(i, addr),
                Output::Disconnect { link } => self.disconnect(i, link),
                Output::Playback(action) => {
                    if let PlaybackAction::Load { song } = &action {
                        let d = self.between(self.cfg.load_delay.0, self.cfg.load_delay.1);
                        let inc = self.peers[i].incarnation;
                        self.schedule(
                            self.now + d,
                            Ev::Loaded {
                                node: i,
                                inc,
                                song: song.clone(),
                            },
                        );
                    }
                    let local = self.local(i);
                    let now = self.now as f64;
                    if let PlaybackAction::Start { at, .. } = &action {
                        // A start moves the player onto a timeline: until it lands (and briefly
                        // after, as for a jump) the peer still sounds the old position. For typed
                        // commands the command window covers this; a state that arrives late (a
                        // healed partition, a repaired loss) is covered here.
                        let p = &mut self.peers[i];
                        let at_true = p.clock.true_f64(at.0 as f64).max(now);
                        p.jump_settle_until = p
                            .jump_settle_until
                            .max(at_true + self.cfg.jump_settle as f64);
                    }
                    self.peers[i].player.apply(now, local, &action, may_go_back);
                }
                Output::Correction(c) => {
                    let local = self.local(i);
                    let now = self.now as f64;
                    if let Correction::Jump { at, .. } = c {
                        self.out.jumps += 1;
                        let p = &mut self.peers[i];
                        let at_true = p.clock.true_f64(at.0 as f64).max(now);
                        p.jump_settle_until = at_true + self.cfg.jump_settle as f64;
                    }
                    if let Correction::Rate { ppm } = c
                        && (!ppm.is_finite() || ppm.abs() > 500.0 + 1e-9)
                    {
                        self.violation(Some(i), format!("rate correction {ppm} ppm out of bounds"));
                    }
                    self.peers[i].player.correct(now, local, &c);
                }
                Output::Event(e) => self.on_event(i, e, &mut may_go_back),
            }
        }
        for m in self.peers[i].player.take_backward_moves() {
            self.violation(
                Some(i),
                format!(
                    "position ran backwards without a seek or jump: frame {:.1} -> {} at {:.6} s",
                    m.from,
                    m.to,
                    m.at / 1e9
                ),
            );
        }
    }

    fn on_event(&mut self, i: usize, e: Event, may_go_back: &mut bool) {
        match e {
            Event::StateAccepted { state, .. } => {
                let inc = self.peers[i].incarnation;
                self.accept_logs
                    .entry((i, inc))
                    .or_default()
                    .push((self.now, state.version));
                let moved = timeline_moved(self.peers[i].prev_state.as_ref(), &state);
                *may_go_back |= moved;
                if matches!(state.mode, Mode::Loading { .. }) {
                    self.peers[i].song_start_pending = Some(self.now as f64);
                }
                self.peers[i].prev_state = Some(state);
            }
            Event::BadMessage { .. } => self.out.bad_messages += 1,
            _ => {}
        }
    }

    fn transmit(&mut self, i: usize, link: LinkId, msg: Message) {
        self.out.messages += 1;
        let second = self.now / SEC;
        let bound = self.cfg.message_bound_per_link * self.cfg.max_links as u64 + 50;
        let p = &mut self.peers[i];
        if p.bucket.0 != second {
            p.bucket = (second, 0);
        }
        p.bucket.1 += 1;
        let count = p.bucket.1;
        self.out.max_messages_node_second = self.out.max_messages_node_second.max(count);
        if count == bound + 1 {
            self.violation(Some(i), format!("more than {bound} messages in one second"));
        }
        let Some(&w) = self.peers[i].links.get(&link) else {
            return;
        };
        let wire = &mut self.wires[w];
        if !wire.up {
            return;
        }
        let end = usize::from(wire.ends[0].0 != i);
        let (to, to_link, to_inc) = wire.ends[1 - end];
        let reliable = match self.cfg.transport {
            Transport::Stream => true,
            Transport::Datagram => false,
            Transport::Quic => !matches!(msg, Message::Probe(_) | Message::ProbeReply(_)),
        };
        let len = message_len(&msg);
        let now = self.now;
        let times: Vec<u64> = if reliable {
            wire.models[end]
                .decide_reliable(now, len)
                .into_iter()
                .collect()
        } else {
            wire.models[end].decide(now, len)
        };
        for t in times {
            self.schedule(
                t,
                Ev::Deliver {
                    to,
                    inc: to_inc,
                    link: to_link,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn connect(&mut self, i: usize, addr: String) {
        let inc_a = self.peers[i].incarnation;
        let target = self.addr_index.get(&addr).copied();
        match target {
            Some(j) if j != i && self.is_up(j) && !self.partitioned(i, j) => {
                // Connection set-up takes about one round trip.
                let rtt = 2 * self.between(self.cfg.link.base_min, self.cfg.link.base_max);
                let inc_b = self.peers[j].incarnation;
                self.schedule(
                    self.now + rtt,
                    Ev::LinkUp {
                        a: i,
                        inc_a,
                        b: j,
                        inc_b,
                        addr,
                    },
                );
            }
            Some(j) if j != i && !self.partitioned(i, j) => {
                // The host answers: nothing listens (refused after a round trip).
                let rtt = 2 * self.cfg.link.base_max;
                self.schedule(
                    self.now + rtt,
                    Ev::ConnectFailed {
                        node: i,
                        inc: inc_a,
                        addr,
                    },
                );
            }
            _ => {
                // Unreachable: the dial times out.
                self.schedule(
                    self.now + SEC,
                    Ev::ConnectFailed {
                        node: i,
                        inc: inc_a,
                        addr,
                    },
                );
            }
        }
    }

    fn disconnect(&mut self, i: usize, link: LinkId) {
        let Some(w) = self.peers[i].links.remove(&link) else {
            return;
        };
        let wire = &mut self.wires[w];
        if !wire.up {
            return;
        }
        wire.up = false;
        let end = usize::from(wire.ends[0].0 != i);
        let (to, to_link, to_inc) = wire.ends[1 - end];
        if wire.models[end].is_blocked() {
            // Across a partition the close is lost: the other end finds out by itself.
            return;
        }
        // The other end learns of it after what was sent before it (one base delay, and no
        // earlier than the stream's last message: a full peer's members and leave come first).
        let d = wire.models[end].config().base_delay;
        let at = (self.now + d).max(wire.models[end].last_stream_delivery());
        self.schedule(
            at,
            Ev::LinkDown {
                node: to,
                inc: to_inc,
                link: to_link,
            },
        );
    }

    fn link_up(&mut self, a: usize, inc_a: u32, b: usize, inc_b: u32, addr: String) {
        let a_ok = self.peers[a].incarnation == inc_a && self.is_up(a);
        let b_ok = self.peers[b].incarnation == inc_b && self.is_up(b);
        if !a_ok {
            return;
        }
        if !b_ok || self.partitioned(a, b) {
            let local = self.local(a);
            if let Some(node) = self.peers[a].node.as_mut() {
                node.handle_connect_failed(local, &addr);
            }
            self.drain(a);
            self.reschedule(a);
            return;
        }
        let la = LinkId(self.next_link);
        let lb = LinkId(self.next_link + 1);
        self.next_link += 2;
        let base = self.between(self.cfg.link.base_min, self.cfg.link.base_max);
        let asym = (self.uniform() * 2.0 - 1.0) * self.cfg.link.asymmetry;
        let ab = (base as f64 * (1.0 + asym)) as u64;
        let ba = (base as f64 * (1.0 - asym)) as u64;
        let s1 = self.rng.next_u64();
        let s2 = self.rng.next_u64();
        let w = self.wires.len();
        self.wires.push(Wire {
            ends: [(a, la, inc_a), (b, lb, inc_b)],
            models: [
                LinkModel::new(self.cfg.link.direction(ab), s1),
                LinkModel::new(self.cfg.link.direction(ba), s2),
            ],
            up: true,
            dead: false,
        });
        self.peers[a].links.insert(la, w);
        self.peers[b].links.insert(lb, w);
        let remote_b = self.peers[b].addr.clone();
        let remote_a = format!("10.255.{}.{}:{}", a / 256, a % 256, 40_000 + w % 20_000);
        let (ta, tb) = (self.local(a), self.local(b));
        if let Some(node) = self.peers[a].node.as_mut() {
            node.handle_link_up(ta, la, remote_b, Direction::Outgoing);
        }
        if let Some(node) = self.peers[b].node.as_mut() {
            node.handle_link_up(tb, lb, remote_a, Direction::Incoming);
        }
        self.drain(a);
        self.drain(b);
        self.reschedule(a);
        self.reschedule(b);
    }

    // --------------------------------------------------------------------------------------
    // Churn, partitions, commands

    fn take_down(&mut self, i: usize, graceful: bool, silent: bool) {
        if graceful {
            let local = self.local(i);
            if let Some(node) = self.peers[i].node.as_mut() {
                node.shutdown(local);
            }
            self.drain(i);
        }
        let p = &mut self.peers[i];
        if p.node.take().is_none() {
            return;
        }
        self.out.peer_up_time += self.now - p.up_since;
        p.wake_at = None;
        p.wake_gen += 1;
        let links: Vec<usize> = std::mem::take(&mut p.links).into_values().collect();
        if !silent {
            // The process died: its host closes the connections (peers see them drop).
            for w in links {
                let wire = &mut self.wires[w];
                if !wire.up {
                    continue;
                }
                wire.up = false;
                let end = usize::from(wire.ends[0].0 != i);
                let (to, to_link, to_inc) = wire.ends[1 - end];
                if wire.models[end].is_blocked() {
                    continue; // the reset is lost in the partition
                }
                let d = wire.models[end].config().base_delay;
                self.schedule(
                    self.now + d,
                    Ev::LinkDown {
                        node: to,
                        inc: to_inc,
                        link: to_link,
                    },
                );
            }
        }
    }

    fn churn(&mut self) {
        let Some(c) = self.cfg.churn else { return };
        let n = self.cfg.peers;
        let down: Vec<usize> = (0..n).filter(|&i| !self.is_up(i)).collect();
        let up: Vec<usize> = (0..n).filter(|&i| self.is_up(i)).collect();
        let may_take = up.len() > 2 && (down.len() + 1) as f64 <= c.max_down * n as f64;
        let bring_back = !down.is_empty() && (!may_take || self.uniform() < 0.5);
        if bring_back {
            let i = down[self.below(down.len())];
            self.start_peer(i, true);
            self.check_heal_from_now();
        } else if may_take {
            let i = up[self.below(up.len())];
            let r = self.uniform();
            if r < 0.4 {
                self.take_down(i, true, false); // leaves politely
            } else if r < 0.7 {
                self.take_down(i, false, false); // process crash
            } else {
                self.take_down(i, false, true); // host lost: silence
            }
        }
    }

    fn partition_start(&mut self) {
        let Some(p) = self.cfg.partition else { return };
        self.split(p.minority);
        let partition = self.partitions;
        let at = self.now + self.cfg.transport_timeout;
        self.schedule(at, Ev::TransportTimeout { partition });
    }

    fn partition_heal(&mut self) {
        for w in &mut self.wires {
            w.models[0].set_blocked(false);
            w.models[1].set_blocked(false);
        }
        self.partition_side = None;
        if self.cfg.partition.is_some() {
            self.check_heal_from_now(); // (a scripted fault's heal is checked by the fault)
        }
    }

    fn keeper(&mut self, i: usize) {
        if !self.is_up(i) {
            return;
        }
        let node = self.peers[i].node.as_ref().expect("up");
        let connected: BTreeSet<NodeId> = node.links().iter().filter_map(|l| l.peer).collect();
        let count = node.links().len();
        let missing: Vec<usize> = self.peers[i]
            .neighbours
            .iter()
            .copied()
            // A former neighbour that is down is not in the server's list: not worth a dial.
            .filter(|&j| !connected.contains(&self.peers[j].id) && self.is_up(j))
            .collect();
        if !missing.is_empty() && count < self.cfg.max_links {
            let j = missing[self.below(missing.len())];
            let addr = self.peers[j].addr.clone();
            self.command_join(i, addr);
        } else if count < self.cfg.max_links / 2 && (count == 0 || self.uniform() < 0.2) {
            // No neighbour to dial (or, now and then, to bridge an island of peers whose other
            // neighbours are gone): a peer from the music server's list of registered peers,
            // as the client's `peers` command shows them (live clients only: the server
            // forgets a client whose lease lapses).
            let live: Vec<usize> = (0..self.cfg.peers)
                .filter(|&j| j != i && self.is_up(j))
                .collect();
            if !live.is_empty() {
                let j = live[self.below(live.len())];
                let addr = self.peers[j].addr.clone();
                self.command_join(i, addr);
            }
        }
    }

    /// Peers reachable from `i` over handshaken links (true graph).
    fn component_of(&self, i: usize) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![i];
        seen.insert(i);
        while let Some(a) = stack.pop() {
            let Some(node) = self.peers[a].node.as_ref() else {
                continue;
            };
            for l in node.links() {
                let Some(peer) = l.peer else { continue };
                let Some(&w) = self.peers[a].links.get(&l.link) else {
                    continue;
                };
                let wire = &self.wires[w];
                let end = usize::from(wire.ends[0].0 != a);
                let b = wire.ends[1 - end].0;
                if self.peers[b].id == peer
                    && self.is_up(b)
                    && !self.partitioned(a, b)
                    && seen.insert(b)
                {
                    stack.push(b);
                }
            }
        }
        seen.into_iter().collect()
    }

    /// The command a user at peer `i` would type now, given what the peer shows.
    fn choose_command(&mut self, i: usize) -> Command {
        let local = self.local(i);
        let node = self.peers[i].node.as_ref().expect("up");
        let timeline = node.timeline_at(local);
        let song = node.state().song.clone();
        let loading = matches!(node.state().mode, Mode::Loading { .. });
        let stops = self.cfg.commands.stops;
        let r = self.uniform();
        let pick_song = |sim: &mut Sim| {
            let k = sim.below(sim.songs.len());
            sim.songs[k].clone()
        };
        match (song, timeline) {
            (Some(s), _) if loading => {
                let f = self.below((s.frames / 2) as usize) as u64;
                if stops && r < 0.3 {
                    Command::Stop
                } else {
                    Command::Seek { frame: f }
                }
            }
            (Some(s), Timeline::Playing { .. }) => {
                let f = self.below((s.frames / 2) as usize) as u64;
                if r < 0.35 {
                    Command::Pause
                } else if r < 0.7 {
                    Command::Seek { frame: f }
                } else if r < 0.85 || !stops {
                    let song = pick_song(self);
                    Command::Play {
                        song: Some(song),
                        frame: 0,
                    }
                } else {
                    Command::Stop
                }
            }
            (Some(s), Timeline::Paused { .. }) => {
                if r < 0.75 {
                    Command::Resume
                } else if r < 0.9 || !stops {
                    Command::Seek {
                        frame: self.below((s.frames / 2) as usize) as u64,
                    }
                } else {
                    Command::Stop
                }
            }
            _ => {
                let song = pick_song(self);
                Command::Play {
                    song: Some(song),
                    frame: 0,
                }
            }
        }
    }

    fn issue_command(&mut self, i: usize, command: Command) {
        let local = self.local(i);
        let required: Vec<(usize, u32)> = self
            .component_of(i)
            .into_iter()
            .map(|j| (j, self.peers[j].incarnation))
            .collect();
        let node = self.peers[i].node.as_mut().expect("up");
        let lead_now = node.lead().max(0) as u64;
        let result = node.handle_command(local, command.clone(), None);
        let version = node.state().version;
        let state = node.state().clone();
        let effective = match state.mode {
            Mode::Loading { .. } => self.now,
            _ => {
                let l = node.local_time(state.effective_at());
                self.peers[i].clock.true_ceil(l).max(self.now)
            }
        };
        if self.cfg.full_trace {
            self.hash.u64(self.now);
            let _ = write!(self.hash, "{i} {command:?} {result:?}");
        }
        if self.cfg.debug_interval > 0 {
            eprintln!(
                "{:9.3} peer {i:3} types {command:?}: {result:?} -> {:?}",
                self.now as f64 / 1e9,
                state
            );
        }
        match result {
            Ok(()) => {
                let lead = if matches!(state.mode, Mode::Loading { .. }) {
                    lead_now
                } else {
                    effective - self.now
                };
                self.out.leads.add(lead);
                self.command_windows.push((self.now, effective + lead));
                self.out.commands.push(CommandRecord {
                    issued: self.now,
                    peer: i,
                    command,
                    version,
                    effective,
                    lead,
                    latency: None,
                    converged: false,
                    required,
                });
            }
            Err(_) => self.out.commands_refused += 1,
        }
        self.drain(i);
        self.reschedule(i);
    }

    fn command(&mut self) {
        let up: Vec<usize> = (0..self.cfg.peers)
            .filter(|&i| self.is_up(i) && !self.peers[i].frozen)
            .collect();
        if up.is_empty() {
            return;
        }
        let i = up[self.below(up.len())];
        let c = self.choose_command(i);
        self.issue_command(i, c);
        if up.len() > 1 && self.uniform() < self.cfg.commands.concurrent {
            // Someone else types at about the same instant (within 2 ms), unaware of it.
            let mut j = up[self.below(up.len())];
            while j == i {
                j = up[self.below(up.len())];
            }
            let c = self.choose_command(j);
            let at = self.now + self.between(0, 2 * MS);
            let saved = self.now;
            self.now = at.min(saved + 2 * MS);
            self.issue_command(j, c);
            self.now = saved;
        }
    }

    // --------------------------------------------------------------------------------------
    // Measuring

    /// Prints each live peer's place in the clock tree, its group-time error against the
    /// reference it follows (true time), and its controller, for debugging runs.
    fn debug_print(&mut self) {
        let now = self.now as f64;
        for i in 0..self.cfg.peers {
            let Some(node) = self.peers[i].node.as_ref() else {
                continue;
            };
            let s = node.sync_status();
            let Some(r) = (0..self.cfg.peers).find(|&j| self.peers[j].id == s.root) else {
                continue;
            };
            let Some(root) = self.peers[r].node.as_ref() else {
                continue;
            };
            let base = root.group_time(self.local(r));
            let err = node.group_time_since(self.local(i), base);
            let (rate, last) = node.correction_status();
            // The parent link's estimate against the truth.
            let parent = s.parent.and_then(|pid| {
                let j = (0..self.cfg.peers).find(|&j| self.peers[j].id == pid)?;
                let l = node.links().into_iter().find(|l| l.peer == Some(pid))?;
                let truth = self.local(j).0 as f64 - self.local(i).0 as f64;
                let (ci, cj) = (self.peers[i].clock, self.peers[j].clock);
                let true_rate = (cj.oscillator_rate() / ci.oscillator_rate() - 1.0) * 1e6;
                Some((
                    (l.offset? - truth) / 1e3,
                    l.drift_ppm? - true_rate,
                    l.rtt? as f64 / 1e3,
                ))
            });
            let heard = self.peers[i].player.heard(now);
            eprintln!(
                "{:9.3} peer {i:3} stratum {} map {:+9.3} ppm  clock err {:+9.2} us  link (off err us, rate err ppm, rtt us) {:?}  ctl {:+8.2} ppm err {:?} us  heard {:?}",
                now / 1e9,
                s.stratum,
                s.mapping.rate_ppm,
                err / 1e3,
                parent,
                rate,
                last.map(|e| e as f64 / 1e3),
                heard.is_some()
            );
        }
    }

    fn excluded_now(&mut self) -> bool {
        let now = self.now;
        self.command_windows.retain(|&(_, end)| end >= now);
        self.command_windows
            .iter()
            .any(|&(start, end)| start <= now && now <= end)
    }

    fn sample(&mut self) {
        let now = self.now as f64;
        let global_excluded = self.excluded_now();
        let mut heard: Vec<(StateVersion, String, f64, usize)> = Vec::new();
        for i in 0..self.cfg.peers {
            if !self.is_up(i) || self.peers[i].frozen {
                continue;
            }
            let p = &mut self.peers[i];
            let f = p.player.heard(now);
            // Positions never run backwards within one segment of playback.
            let epoch = p.player.epoch();
            if let (Some(f), Some((lf, le))) = (f, p.last_heard)
                && le == epoch
                && f < lf - 1e-6
            {
                let what = format!("heard position ran backwards: {lf} -> {f}");
                self.violation(Some(i), what);
            }
            let p = &mut self.peers[i];
            p.last_heard = f.map(|f| (f, epoch));
            if let Some(since) = p.song_start_pending
                && let Some(t0) = p.player.last_start_from_silence()
                && t0 >= since
            {
                p.warmup_until = t0 + self.cfg.warmup as f64;
                p.song_start_pending = None;
            }
            let Some(f) = f else { continue };
            if global_excluded
                || p.song_start_pending.is_some()
                || now < p.warmup_until
                || now < p.jump_settle_until
            {
                continue;
            }
            let node = p.node.as_ref().expect("up");
            let Some(song) = node.state().song.clone() else {
                continue;
            };
            if p.player.song().is_none_or(|s| !s.same_song(&song)) {
                continue;
            }
            let ns = f / song.sample_rate as f64 * 1e9;
            heard.push((node.state().version, song.name, ns, i));
        }
        heard.sort_by(|a, b| {
            (a.0, &a.1)
                .cmp(&(b.0, &b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        let mut start = 0;
        while start < heard.len() {
            let mut end = start + 1;
            while end < heard.len()
                && heard[end].0 == heard[start].0
                && heard[end].1 == heard[start].1
            {
                end += 1;
            }
            let group = &heard[start..end];
            if group.len() >= 2 {
                for a in 0..group.len() {
                    for b in a + 1..group.len() {
                        let d = (group[b].2 - group[a].2).abs();
                        self.out.pair_error.add(d.round() as u64);
                    }
                }
                let spread = group[group.len() - 1].2 - group[0].2;
                if self.cfg.debug_interval > 0 && spread > 10e6 {
                    let v: Vec<(usize, f64)> = group.iter().map(|g| (g.3, g.2 / 1e9)).collect();
                    eprintln!(
                        "{:9.3} spread {:.3} ms among {v:?}",
                        now / 1e9,
                        spread / 1e6
                    );
                }
                self.out.spread.add(spread.round() as u64);
                let median = group[group.len() / 2].2;
                for (_, _, ns, i) in group {
                    let e = ns - median;
                    self.out.peer_error.add(e.abs().round() as u64);
                    if self.cfg.series && (*i < 16 || self.cfg.peers <= 64) {
                        self.out.series.push((now / 1e9, *i, e / 1e3));
                    }
                }
            }
            start = end;
        }
    }

    fn finish(&mut self) {
        // Quiescence: every component of live peers holds one state version, and every live
        // peer whose timeline plays is heard playing.
        let n = self.cfg.peers;
        let mut seen = BTreeSet::new();
        let mut components = 0;
        for i in 0..n {
            if !self.is_up(i) || seen.contains(&i) {
                continue;
            }
            components += 1;
            let comp = self.component_of(i);
            let versions: BTreeSet<StateVersion> = comp
                .iter()
                .filter_map(|&j| self.peers[j].node.as_ref())
                .map(|nd| nd.state().version)
                .collect();
            if versions.len() > 1 && self.now >= self.quiet_from + 5 * SEC {
                let what = format!(
                    "after quiescence a component of {} peers holds {} state versions",
                    comp.len(),
                    versions.len()
                );
                self.violation(Some(i), what);
            }
            seen.extend(comp);
        }
        if self.now >= self.quiet_from + 5 * SEC {
            for i in 0..n {
                if !self.is_up(i) {
                    continue;
                }
                let local = self.local(i);
                let now = self.now as f64;
                let p = &mut self.peers[i];
                let node = p.node.as_ref().expect("up");
                let plays = matches!(node.timeline_at(local), Timeline::Playing { .. });
                let heard = p.player.heard(now).is_some();
                if plays && !heard {
                    self.violation(Some(i), "timeline plays but the player is silent".into());
                }
                if !plays && heard {
                    self.violation(Some(i), "timeline is silent but the player plays".into());
                }
            }
        }
        self.out.final_live = (0..n).filter(|&i| self.is_up(i)).count();
        self.out.final_components = components;
        for i in 0..n {
            if self.is_up(i) {
                self.out.peer_up_time += self.now - self.peers[i].up_since;
            }
        }
        // Command latency: until every required peer accepted that version or a newer one, or
        // the effective instant, whichever is later. Peers that died before applying it are
        // not required.
        let mut commands = std::mem::take(&mut self.out.commands);
        for c in &mut commands {
            let mut worst = c.effective;
            let mut all = true;
            for &(p, inc) in &c.required {
                let log = self.accept_logs.get(&(p, inc));
                let applied = log.and_then(|l| l.iter().find(|(_, v)| *v >= c.version));
                match applied {
                    Some((t, _)) => worst = worst.max(*t),
                    None => {
                        let alive = self.peers[p].incarnation == inc && self.is_up(p);
                        if alive {
                            all = false;
                        }
                    }
                }
            }
            c.latency = all.then(|| worst - c.issued);
            c.converged = all && worst <= c.issued + c.lead + SEC;
        }
        for &k in &self.heal_commands {
            let c = &commands[k];
            if !c.converged {
                let what = format!(
                    "a command typed at peer {} after a heal ({:?}) did not reach every peer within its lead + 1 s",
                    c.peer, c.command
                );
                self.out.violation_count += 1;
                if self.out.violations.len() < 100 {
                    self.out.violations.push(Violation {
                        at: c.issued,
                        peer: Some(c.peer),
                        what,
                    });
                }
            }
        }
        self.out.commands = commands;
        self.out.trace_hash = self.hash.0;
    }

    // --------------------------------------------------------------------------------------
    // The loop

    /// Runs the whole scenario and returns what it measured.
    pub fn run(mut self) -> Outcome {
        self.script();
        let max_events = if self.cfg.max_events > 0 {
            self.cfg.max_events
        } else {
            // Generous: a few thousand events per peer per simulated second.
            (self.cfg.peers as u64 * 5_000).saturating_mul(self.cfg.duration / SEC + 1)
        };
        while let Some(Entry { at, ev, .. }) = self.queue.pop() {
            if at > self.cfg.duration {
                break;
            }
            self.now = at;
            self.out.events += 1;
            if self.out.events > max_events {
                self.violation(None, format!("more than {max_events} events: runaway"));
                break;
            }
            self.hash.u64(at);
            self.hash.u64(ev.tag() as u64);
            self.handle(ev);
        }
        self.now = self.now.max(self.cfg.duration);
        self.finish();
        self.out
    }

    fn handle(&mut self, ev: Ev) {
        let Some(ev) = self.defer_if_frozen(ev) else {
            return;
        };
        match ev {
            Ev::Deliver { to, inc, link, msg } => {
                if self.peers[to].incarnation != inc || !self.is_up(to) {
                    return;
                }
                if let Some(&w) = self.peers[to].links.get(&link)
                    && self.wires[w].dead
                {
                    return;
                }
                let local = self.local(to);
                if let Some(node) = self.peers[to].node.as_mut() {
                    node.handle_message(local, link, msg);
                }
                self.drain(to);
                self.reschedule(to);
            }
            Ev::LinkUp {
                a,
                inc_a,
                b,
                inc_b,
                addr,
            } => self.link_up(a, inc_a, b, inc_b, addr),
            Ev::ConnectFailed { node, inc, addr } => {
                if self.peers[node].incarnation != inc {
                    return;
                }
                let local = self.local(node);
                if let Some(n) = self.peers[node].node.as_mut() {
                    n.handle_connect_failed(local, &addr);
                }
                self.drain(node);
                self.reschedule(node);
            }
            Ev::LinkDown { node, inc, link } => {
                if self.peers[node].incarnation != inc {
                    return;
                }
                self.peers[node].links.remove(&link);
                let local = self.local(node);
                if let Some(n) = self.peers[node].node.as_mut() {
                    n.handle_link_down(local, link);
                }
                self.drain(node);
                self.reschedule(node);
            }
            Ev::Loaded { node, inc, song } => {
                if self.peers[node].incarnation != inc || !self.is_up(node) {
                    return;
                }
                self.peers[node].player.loaded(song.clone());
                let local = self.local(node);
                if let Some(n) = self.peers[node].node.as_mut() {
                    n.handle_player(local, PlayerReport::Loaded { song });
                }
                self.drain(node);
                self.reschedule(node);
            }
            Ev::Wake {
                node: i,
                generation,
            } => {
                if self.peers[i].wake_gen != generation || !self.is_up(i) {
                    return;
                }
                self.peers[i].wake_at = None;
                let local = self.local(i);
                let n = self.peers[i].node.as_mut().expect("up");
                n.handle_timeout(local);
                let next = n.poll_timeout();
                if let Some((t, why)) = next
                    && t <= local
                {
                    self.violation(
                        Some(i),
                        format!("busy loop: poll_timeout {t:?} ({why:?}) after handle_timeout({local:?})"),
                    );
                    // Keep the simulation going without spinning.
                    self.drain(i);
                    let generation = self.peers[i].wake_gen + 1;
                    self.peers[i].wake_gen = generation;
                    self.peers[i].wake_at = Some(self.now + MS);
                    self.schedule(
                        self.now + MS,
                        Ev::Wake {
                            node: i,
                            generation,
                        },
                    );
                    return;
                }
                self.drain(i);
                self.reschedule(i);
            }
            Ev::Tick { node: i, inc } => {
                if self.peers[i].incarnation != inc || !self.is_up(i) {
                    return;
                }
                let local = self.local(i);
                let now = self.now as f64;
                let p = &mut self.peers[i];
                if let Some(f) = p.player.heard(now) {
                    let n = p.node.as_mut().expect("up");
                    n.handle_player(
                        local,
                        PlayerReport::Position {
                            at: local,
                            frame: f,
                        },
                    );
                    self.drain(i);
                    self.reschedule(i);
                }
                let next_local = local + self.cfg.report_interval as i64;
                let t = self.peers[i].clock.true_ceil(next_local).max(self.now + 1);
                self.schedule(t, Ev::Tick { node: i, inc });
            }
            Ev::Keeper { node: i, inc } => {
                if self.peers[i].incarnation != inc || !self.is_up(i) {
                    return;
                }
                self.keeper(i);
                let d = self.between(
                    self.cfg.keeper_interval / 2,
                    self.cfg.keeper_interval * 3 / 2,
                );
                self.schedule(self.now + d, Ev::Keeper { node: i, inc });
            }
            Ev::Sample => {
                self.sample();
                let t = self.now + self.sample_interval;
                self.schedule(t, Ev::Sample);
            }
            Ev::Command => self.command(),
            Ev::Churn => self.churn(),
            Ev::PartitionStart => self.partition_start(),
            Ev::PartitionHeal => self.partition_heal(),
            Ev::InitialJoin { a, b } => {
                let addr = self.peers[b].addr.clone();
                self.command_join(a, addr);
            }
            Ev::Debug => {
                self.debug_print();
                self.schedule(self.now + self.cfg.debug_interval, Ev::Debug);
            }
            Ev::Fault(k) => self.fault(k),
            Ev::Resume { node } => self.resume(node),
            Ev::Restart { node } => self.restart(node),
            Ev::TransportTimeout { partition } => self.transport_timeout(partition),
            Ev::HealCheck { healed_at } => self.heal_check(healed_at),
            Ev::ClockStep => {
                // The clock's step is part of its function of true time; wake every node so
                // that timeouts are re-read against the new reading.
                for i in 0..self.cfg.peers {
                    self.peers[i].wake_at = None;
                    self.reschedule(i);
                }
            }
        }
    }
}

/// Whether accepting `new` after `old` moves the timeline (a seek, a resume, a new song) rather
/// than re-stating it: a start that follows may then go backwards.
fn timeline_moved(old: Option<&GroupState>, new: &GroupState) -> bool {
    let Some(old) = old else { return true };
    let (Some(os), Some(ns)) = (&old.song, &new.song) else {
        return true;
    };
    // Anchors in different time bases cannot be compared (a merge of groups): lenient.
    if !os.same_song(ns) || old.timebase != new.timebase {
        return true;
    }
    match (old.mode, new.mode) {
        (Mode::Playing { frame: f0, at: a0 }, Mode::Playing { frame: f1, at: a1 }) => {
            let expected = f0 as f64 + ns.nanos_to_frames(a1.since(a0) as f64);
            ns.frames_to_nanos((f1 as f64 - expected).abs()) > MS as f64
        }
        _ => true,
    }
}
