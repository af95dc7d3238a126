//! The simulator: sync-core [`Node`]s driven exactly as a real driver drives them, on virtual
//! time, over impaired links, with a virtual player each, under churn, partitions and commands,
//! with invariants checked after every event and the targets of `docs/protocol.md` measured.
//!
//! One ChaCha8 stream seeded from [`SimConfig::seed`] makes every choice (and seeds each link's
//! and node's own stream); events are ordered by (true time, sequence number); nothing iterates
//! a hash map. The same seed and commit therefore give the same trace, which
//! [`Outcome::trace_hash`] summarises.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use sync_core::{
    Command, Config, GroupState, LinkId, Node, NodeId, PlayerReport, SongRef, StateVersion,
};

use crate::clock::SimClock;
use crate::link::LinkModel;
use crate::player::VirtualPlayer;
use crate::scenario::{MS, SEC, SimConfig};
use crate::stats::Histogram;

mod churn;
mod commands;
mod drive;
mod events;
mod faults;
mod measure;
mod queue;
mod setup;
mod sound;

use events::{Entry, Ev, TraceHash};
pub use measure::Exclusions;
use setup::song_library;
pub use sound::{DeviceOutcome, RECOVERED_NS, Recovery};

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
    /// States accepted that start the next queue entry (each peer makes its own).
    pub queue_transitions: u64,
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
    /// Sample instants (each looks at every peer: `peers` peer samples).
    pub sample_instants: u64,
    /// Peer samples each exclusion rule left out of the error figures.
    pub exclusions: Exclusions,
    /// For each partition heal: ns until every live peer held one state version and sounded
    /// it within 1 ms of the others (`None`: not before the next partition or the end).
    pub heal_lags: Vec<Option<u64>>,
    /// For each pause that stopped several peers' sound (same song, same frame): the spread of
    /// the instants their sound stopped, ns, with the ideal player.
    pub pause_stop_spread: Histogram,
    /// Pauses applied more than 1 ms past their frame (late; the position went back to it), over
    /// every player since its last (re)start.
    pub late_pauses: u64,
    /// The figures heard through the simulated sound devices (when [`SimConfig::device`]).
    pub device: Option<DeviceOutcome>,
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
    /// The simulated sound device it plays through (`None`: the ideal player).
    device: Option<crate::device::SimDevice>,
    /// Until when the settling after a jump correction (not a start) excludes its samples.
    jump_only_until: f64,
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
    /// Underruns whose recovery is being watched.
    watches: Vec<sound::Watch>,
    /// Where each peer's sound stopped at each pause.
    pause_stops: sound::PauseStops,
    /// Partition heals not yet followed by one timeline: (index in `heal_lags`, instant).
    open_heals: Vec<(usize, u64)>,
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
                device: None,
                jump_only_until: 0.0,
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
            queue_transitions: 0,
            trace_hash: 0,
            final_live: 0,
            final_components: 0,
            leads: Histogram::new(),
            heal_times: Vec::new(),
            sample_instants: 0,
            exclusions: Exclusions::default(),
            heal_lags: Vec::new(),
            pause_stop_spread: Histogram::new(),
            late_pauses: 0,
            device: cfg.device.map(|_| DeviceOutcome::default()),
        };
        let songs = if cfg.commands.queue {
            queue::queue_songs()
        } else {
            song_library()
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
            songs,
            partition_side: None,
            command_windows: Vec::new(),
            accept_logs: BTreeMap::new(),
            sample_interval,
            quiet_from,
            hash: TraceHash::new(),
            out,
            partitions: 0,
            heal_commands: Vec::new(),
            watches: Vec::new(),
            pause_stops: sound::PauseStops::new(),
            open_heals: Vec::new(),
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
            Ev::DeviceStall { node, inc } => self.device_stall(node, inc),
            Ev::DeviceResume { node, inc } => self.device_resume(node, inc),
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
