//! What a run simulates: the group's size and topology, the network, the clocks, the players,
//! churn, partitions and the commands users type; and the named presets of the simulator targets
//! (`docs/protocol.md`, "Targets").

use crate::device::DeviceProfile;
use crate::link::{GilbertElliott, LinkConfig};

/// Nanoseconds in a millisecond.
pub const MS: u64 = 1_000_000;
/// Nanoseconds in a microsecond.
pub const US: u64 = 1_000;
/// Nanoseconds in a second.
pub const SEC: u64 = 1_000_000_000;

/// Names accepted by [`SimConfig::scenario`].
pub const SCENARIOS: &[&str] = &[
    "lan",
    "wifi",
    "wan-lossy",
    "partition",
    "churn",
    "heal",
    "scale",
    "busy-device",
    "queue",
];

/// How the peers are wired at the start (each edge is a `join` typed at one end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every peer joins every other.
    FullMesh,
    /// Peer i joins peer i + 1.
    Chain,
    /// Every peer joins peer 0 (the hub).
    Star,
    /// A random spanning tree plus random extra edges until the mean degree reaches `degree`,
    /// never more than the node's link cap.
    Random {
        /// Target mean number of links per node.
        degree: usize,
    },
}

/// Which messages the transport delivers reliably.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// QUIC as the project uses it: clock probes and replies as datagrams (lost, duplicated,
    /// reordered), everything else on a reliable ordered stream (retransmitted).
    Quic,
    /// gRPC over TCP: every message on one reliable ordered stream.
    Stream,
    /// Every message as a datagram (the harshest: states and handshakes can be lost).
    Datagram,
}

impl Transport {
    /// Parses `quic`, `stream` (or `grpc`) and `datagram`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "quic" => Ok(Transport::Quic),
            "stream" | "grpc" | "tcp" => Ok(Transport::Stream),
            "datagram" | "udp" => Ok(Transport::Datagram),
            other => Err(format!(
                "unknown transport {other:?} (expected quic, stream or datagram)"
            )),
        }
    }

    /// Name as parsed.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Stream => "stream",
            Transport::Datagram => "datagram",
        }
    }
}

/// Network conditions of every link; each link draws its own base delay and asymmetry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkProfile {
    /// Smallest base one-way delay of a link, ns.
    pub base_min: u64,
    /// Largest base one-way delay of a link, ns.
    pub base_max: u64,
    /// Each direction's base is the link's base times `1 ± asymmetry` (drawn per link).
    /// Clock sync cannot see asymmetry: half the difference shows up as offset error.
    pub asymmetry: f64,
    /// Mean exponential jitter per packet, ns.
    pub jitter_mean: u64,
    /// Cap on a packet's one-way delay, ns.
    pub max_delay: u64,
    /// Independent loss probability.
    pub loss: f64,
    /// Bursty loss: (mean loss, mean burst length in packets).
    pub burst: Option<(f64, f64)>,
    /// Duplication probability (datagrams).
    pub duplicate: f64,
    /// Probability that a packet is held back by `reorder_delay`.
    pub reorder: f64,
    /// Extra delay of held-back packets, ns.
    pub reorder_delay: u64,
}

impl LinkProfile {
    /// The link configuration of one direction with the given base delay.
    pub fn direction(&self, base: u64) -> LinkConfig {
        LinkConfig {
            base_delay: base,
            jitter_mean: self.jitter_mean,
            max_delay: self.max_delay.max(base),
            loss: self.loss,
            burst: self
                .burst
                .map(|(mean, len)| GilbertElliott::with_mean_loss(mean, len)),
            duplicate: self.duplicate,
            reorder: self.reorder,
            reorder_delay: self.reorder_delay,
            bandwidth_bps: None,
            // A transport's retransmission timeout: a few round trips, at least 10 ms.
            rto: (4 * (base + 2 * self.jitter_mean)).max(10 * MS),
        }
    }
}

/// Nodes leaving, crashing, restarting and joining.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChurnProfile {
    /// Mean time between churn events, ns (exponentially distributed).
    pub mean_interval: u64,
    /// Fraction of the peers absent at the start, joining later.
    pub initially_absent: f64,
    /// Most peers down at once, as a fraction.
    pub max_down: f64,
}

/// Partitions that split the group in two and heal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PartitionProfile {
    /// First partition, ns after the start.
    pub first_at: u64,
    /// Interval between partition starts, ns.
    pub every: u64,
    /// How long each lasts (at least), ns.
    pub duration: u64,
    /// Fraction of the peers on the smaller side.
    pub minority: f64,
}

/// One scripted fault of the `heal` scenario (and any config that lists some).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultKind {
    /// The group splits in two for `duration` ns (packets lost both ways; links that stay
    /// silent past the transport's timeout are lost at both ends).
    Partition {
        /// How long it lasts, ns.
        duration: u64,
        /// Fraction of the peers on the smaller side.
        minority: f64,
    },
    /// A random live peer other than peer 0 is stopped (SIGSTOP) for `duration` ns: it takes
    /// no input and gives no output while its clock runs on, then resumes where it was.
    Freeze {
        /// How long it is stopped, ns.
        duration: u64,
    },
    /// A random live peer other than peer 0 is killed and started again `down_for` ns later on
    /// the same address, with a new node id and no state; nobody types `join`.
    Restart {
        /// How long it is down, ns.
        down_for: u64,
    },
    /// Peer 0 (the hub of a star) is killed -9 and stays down.
    KillHub,
}

/// A fault and when it strikes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fault {
    /// True instant, ns after the start.
    pub at: u64,
    /// What happens.
    pub kind: FaultKind,
}

impl Fault {
    /// The instant the fault is over (the heal, the resume, the restart; a hub's death at once).
    pub fn healed_at(&self) -> u64 {
        match self.kind {
            FaultKind::Partition { duration, .. } | FaultKind::Freeze { duration } => {
                self.at + duration
            }
            FaultKind::Restart { down_for } => self.at + down_for,
            FaultKind::KillHub => self.at,
        }
    }
}

/// When commands are typed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CommandProfile {
    /// The first `play`, ns after the start.
    pub first_play_at: u64,
    /// Mean time between later commands, ns (exponentially distributed; 0: none).
    pub mean_interval: u64,
    /// Probability that a command is accompanied by another at another peer, within 2 ms.
    pub concurrent: f64,
    /// Whether `stop` is among the commands typed.
    pub stops: bool,
    /// Whether users edit and play the group's queue instead (the `queue` scenario).
    pub queue: bool,
}

/// A scheduled forward step of one peer's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockStep {
    /// Peer index.
    pub peer: usize,
    /// True instant, ns.
    pub at: u64,
    /// Size of the step, ns.
    pub by: u64,
}

/// Everything a run depends on besides the code: with the same config (seed included) and the
/// same commit, a run is the same.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Scenario name, for reports.
    pub scenario: String,
    /// Number of peers (including those absent at the start).
    pub peers: usize,
    /// The seed of every random choice.
    pub seed: u64,
    /// Simulated duration, ns.
    pub duration: u64,
    /// Initial wiring.
    pub topology: Topology,
    /// Link cap per node (`sync_core::Config::max_links`).
    pub max_links: usize,
    /// Network conditions.
    pub link: LinkProfile,
    /// Which messages are delivered reliably.
    pub transport: Transport,
    /// Clock offsets are drawn in ± this, ns.
    pub offset_max: u64,
    /// Clock drifts are drawn in ± this, ppm.
    pub drift_max_ppm: f64,
    /// Sound-card frequency errors (beyond the clock's) are drawn in ± this, ppm.
    pub device_max_ppm: f64,
    /// Forward clock steps.
    pub clock_steps: Vec<ClockStep>,
    /// Time a peer takes to load a song, drawn in [min, max], ns.
    pub load_delay: (u64, u64),
    /// Churn, if any.
    pub churn: Option<ChurnProfile>,
    /// Partitions, if any.
    pub partition: Option<PartitionProfile>,
    /// Commands.
    pub commands: CommandProfile,
    /// No command, churn or partition in the last this-many ns, so the run ends quiescent.
    pub quiet_tail: u64,
    /// Interval between sync-error samples, ns (0: chosen from the number of peers).
    pub sample_interval: u64,
    /// Samples of a peer are left out for this long after it starts a song, ns.
    pub warmup: u64,
    /// Samples of a peer are left out for this long after a jump correction lands, ns.
    pub jump_settle: u64,
    /// Player position reports every this-many ns of local time.
    pub report_interval: u64,
    /// Peers re-dial missing neighbours every this-many ns, as a user typing `join` would
    /// (0: never; the real drivers do not, so the `heal` scenario leaves it to the nodes).
    pub keeper_interval: u64,
    /// A connection that carries nothing for this long, ns, is lost at both ends (the
    /// transport's own timeout: TCP retransmissions giving up, QUIC's idle timeout).
    pub transport_timeout: u64,
    /// Scripted faults.
    pub faults: Vec<Fault>,
    /// After every partition heal and fault, the live peers must be one group again within this,
    /// ns (one component, one reference, one state version), and a command typed then must
    /// reach all of them within its lead + 1 s (0: not checked).
    pub heal_bound: u64,
    /// Message bound per link per second, for the invariant.
    pub message_bound_per_link: u64,
    /// Record per-peer sync error series (for plots).
    pub series: bool,
    /// Hash the full trace (every output) rather than event instants only.
    pub full_trace: bool,
    /// Bound on processed events (a run that exceeds it is a violation).
    pub max_events: u64,
    /// Print every peer's clock and controller state to stderr every this-many ns (0: never).
    pub debug_interval: u64,
    /// Every peer plays through this simulated sound device (`None`: the ideal player, sample
    /// exact at its instants; see `tests/README.md`).
    pub device: Option<DeviceProfile>,
    /// Peers 1..=this play through [`DeviceProfile::busy`] instead (a device on a busy machine).
    pub busy_peers: usize,
}

fn lan_link() -> LinkProfile {
    LinkProfile {
        base_min: 200 * US,
        base_max: 400 * US,
        asymmetry: 0.0,
        jitter_mean: 150 * US,
        max_delay: 2 * MS,
        loss: 0.01,
        burst: None,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: 0,
    }
}

impl SimConfig {
    /// The preset `name` (see [`SCENARIOS`]), optionally resized, with a seed, and a duration
    /// in seconds (default per scenario).
    pub fn scenario(
        name: &str,
        peers: Option<usize>,
        seed: u64,
        duration_s: Option<f64>,
    ) -> Result<SimConfig, String> {
        let mut c = SimConfig {
            scenario: name.to_string(),
            peers: 8,
            seed,
            duration: 60 * SEC,
            topology: Topology::FullMesh,
            max_links: 8,
            link: lan_link(),
            transport: Transport::Quic,
            offset_max: 5 * SEC,
            drift_max_ppm: 100.0,
            device_max_ppm: 20.0,
            clock_steps: Vec::new(),
            load_delay: (20 * MS, 300 * MS),
            churn: None,
            partition: None,
            commands: CommandProfile {
                first_play_at: 2 * SEC,
                mean_interval: 40 * SEC,
                concurrent: 0.1,
                stops: false,
                queue: false,
            },
            quiet_tail: 10 * SEC,
            sample_interval: 0,
            warmup: 5 * SEC,
            jump_settle: 100 * MS,
            report_interval: 50 * MS,
            keeper_interval: 5 * SEC,
            transport_timeout: 10 * SEC,
            faults: Vec::new(),
            heal_bound: 0,
            message_bound_per_link: 40,
            series: false,
            full_trace: true,
            max_events: 0,
            debug_interval: 0,
            device: None,
            busy_peers: 0,
        };
        match name {
            "lan" => {}
            "wifi" => {
                c.link = LinkProfile {
                    base_min: 2 * MS,
                    base_max: 3 * MS,
                    jitter_mean: 2 * MS,
                    max_delay: 30 * MS,
                    loss: 0.0,
                    burst: Some((0.05, 4.0)),
                    duplicate: 0.001,
                    ..lan_link()
                };
            }
            "wan-lossy" => {
                c.link = LinkProfile {
                    base_min: 20 * MS,
                    base_max: 40 * MS,
                    jitter_mean: 5 * MS,
                    max_delay: 80 * MS,
                    loss: 0.10,
                    duplicate: 0.001,
                    ..lan_link()
                };
                c.commands.mean_interval = 15 * SEC;
                c.commands.concurrent = 0.25;
            }
            "partition" => {
                c.peers = 12;
                c.topology = Topology::Random { degree: 4 };
                c.duration = 120 * SEC;
                c.partition = Some(PartitionProfile {
                    first_at: 20 * SEC,
                    every: 30 * SEC,
                    duration: 12 * SEC,
                    minority: 0.4,
                });
                c.commands.mean_interval = 6 * SEC;
                c.commands.concurrent = 0.3;
                c.commands.stops = true;
                c.quiet_tail = 15 * SEC;
                // After every heal: one group within 12 s (the transport's timeout is 10 s, so
                // links cut by the partition may be seen dead only now; redials then take a
                // few seconds).
                c.heal_bound = 12 * SEC;
            }
            "queue" => {
                // Users edit and move through the group's queue from every side of a lossy
                // network that splits in two and heals; the songs last seconds, so the group
                // moves from one to the next by itself many times.
                c.peers = 8;
                c.topology = Topology::Random { degree: 3 };
                c.duration = 120 * SEC;
                c.link = LinkProfile {
                    loss: 0.05,
                    ..lan_link()
                };
                c.partition = Some(PartitionProfile {
                    first_at: 25 * SEC,
                    every: 35 * SEC,
                    duration: 12 * SEC,
                    minority: 0.4,
                });
                c.commands.mean_interval = 4 * SEC;
                c.commands.concurrent = 0.4;
                c.commands.queue = true;
                c.quiet_tail = 20 * SEC;
                c.heal_bound = 12 * SEC;
            }
            "churn" => {
                c.peers = 16;
                c.topology = Topology::Random { degree: 4 };
                c.duration = 120 * SEC;
                c.churn = Some(ChurnProfile {
                    mean_interval: 3 * SEC,
                    initially_absent: 0.25,
                    max_down: 0.4,
                });
                c.commands.mean_interval = 5 * SEC;
                c.commands.concurrent = 0.3;
                c.commands.stops = true;
                c.quiet_tail = 15 * SEC;
                // After every return of a peer: one group within 12 s (a peer lost silently
                // meanwhile is found silent after remove_after, 6 s).
                c.heal_bound = 12 * SEC;
            }
            "heal" => {
                // What broke with real processes (issue 24): a star over TCP, nobody re-dialling
                // by hand, a short and a long partition, a peer stopped and resumed, a peer
                // restarted on its address, the hub killed. After each the group must be one
                // within 10 s.
                c.topology = Topology::Star;
                c.transport = Transport::Stream;
                c.duration = 110 * SEC;
                c.keeper_interval = 0;
                c.heal_bound = 10 * SEC;
                c.commands.mean_interval = 8 * SEC;
                c.commands.stops = true;
                c.quiet_tail = 12 * SEC;
                let partition = |duration| FaultKind::Partition {
                    duration,
                    minority: 0.4,
                };
                c.faults = vec![
                    Fault {
                        at: 15 * SEC,
                        kind: partition(4 * SEC),
                    },
                    Fault {
                        at: 30 * SEC,
                        kind: partition(15 * SEC),
                    },
                    Fault {
                        at: 60 * SEC,
                        kind: FaultKind::Freeze { duration: 10 * SEC },
                    },
                    Fault {
                        at: 82 * SEC,
                        kind: FaultKind::Restart { down_for: 3 * SEC },
                    },
                    // The hub everyone joined dies: the leaves linked to each other through
                    // the members they learnt, so they stay (or are at once again) one group.
                    Fault {
                        at: 92 * SEC,
                        kind: FaultKind::KillHub,
                    },
                ];
            }
            "scale" => {
                c.peers = 1000;
                c.topology = Topology::Random { degree: 4 };
                c.max_links = 8;
                c.commands.mean_interval = 20 * SEC;
                c.full_trace = false;
            }
            "busy-device" => busy_device(&mut c),
            other => {
                return Err(format!(
                    "unknown scenario {other:?}; known: {}",
                    SCENARIOS.join(", ")
                ));
            }
        }
        if let Some(p) = peers {
            if p < 2 {
                return Err("a group needs at least 2 peers".into());
            }
            c.peers = p;
        }
        if let Some(d) = duration_s {
            if !(d > 0.0 && d <= 86_400.0) {
                return Err(format!("duration {d} s out of range"));
            }
            c.duration = (d * SEC as f64) as u64;
        }
        c.quiet_tail = c.quiet_tail.min(c.duration / 3);
        Ok(c)
    }

    /// The shell command that replays this run (for presets with their defaults otherwise).
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p music262-tests --bin sim -- --scenario {} --peers {} --seed {} --duration {}{}{}",
            self.scenario,
            self.peers,
            self.seed,
            self.duration as f64 / SEC as f64,
            if self.transport == Transport::Quic {
                String::new()
            } else {
                format!(" --transport {}", self.transport.name())
            },
            self.device
                .map_or(String::new(), |d| format!(" --device {}", d.name))
        )
    }

    /// The sync-error sampling interval in force: 10 ms, or longer for large groups so that
    /// the all-pairs comparison stays near a million pairs per simulated second.
    pub fn effective_sample_interval(&self) -> u64 {
        if self.sample_interval > 0 {
            return self.sample_interval;
        }
        let pairs = (self.peers * self.peers.saturating_sub(1) / 2) as u64;
        (pairs * 1_000).clamp(10 * MS, SEC)
    }
}

/// `busy-device`: four peers on a LAN, each through the rig's sound device, peer 1's on a busy
/// machine (an underrun every few seconds, [`DeviceProfile::busy`]); one `play` and nothing
/// else typed, so that each underrun's recovery is measured alone. 40 s: the shortest song of
/// the library plays to the end.
fn busy_device(c: &mut SimConfig) {
    c.peers = 4;
    c.duration = 40 * SEC;
    c.commands.mean_interval = 0;
    c.device = Some(DeviceProfile::rig());
    c.busy_peers = 1;
}
