//! A small deterministic network for sync-core's own tests: nodes with skewed clocks, links
//! with fixed delays, and a virtual player per node. The full simulator (random loss, jitter,
//! churn, reports) lives in the `tests/` crate; this one is just enough to prove behaviours.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use sync_core::*;

/// True (simulation) time in nanoseconds.
pub type True = u64;

pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;

/// A node's clock: `local = base + offset + true * (1 + drift)`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub offset_ns: i64,
    pub drift_ppm: f64,
}

/// Local clocks start far from zero so that negative offsets stay representable.
const BASE: f64 = 1_000.0 * SEC as f64;

impl Clock {
    pub fn local(&self, t: True) -> LocalTime {
        LocalTime(
            (BASE + self.offset_ns as f64 + t as f64 * (1.0 + self.drift_ppm * 1e-6)).round()
                as u64,
        )
    }
    pub fn true_time(&self, l: LocalTime) -> True {
        ((l.0 as f64 - BASE - self.offset_ns as f64) / (1.0 + self.drift_ppm * 1e-6))
            .round()
            .max(0.0) as u64
    }
}

/// A player that does exactly what it is told, its frames advancing with its node's clock
/// (times `1 + rate + device_ppm`), reporting its position every 50 ms of local time.
#[derive(Clone, Debug, Default)]
pub struct VirtualPlayer {
    pub song: Option<SongRef>,
    /// Playing: (frame, local instant) anchor.
    pub anchor: Option<(f64, LocalTime)>,
    pub held: Option<f64>,
    pub rate_ppm: f64,
    /// The sound card's own frequency error, invisible to clock sync.
    pub device_ppm: f64,
    pub pending: Vec<(LocalTime, Pending)>,
    pub pause_at_frame: Option<u64>,
    pub next_report: Option<LocalTime>,
    pub starts: u32,
    pub jumps: u32,
}

#[derive(Clone, Debug)]
pub enum Pending {
    Start(u64),
    Stop,
}

impl VirtualPlayer {
    fn sr(&self) -> f64 {
        self.song
            .as_ref()
            .map_or(48_000.0, |s| s.sample_rate as f64)
    }

    /// Applies pending actions due by `t` and returns the frame heard at `t` (None: silent).
    pub fn position(&mut self, t: LocalTime) -> Option<f64> {
        self.pending.sort_by_key(|(at, _)| *at);
        while let Some((at, _)) = self.pending.first() {
            if *at > t {
                break;
            }
            let (at, p) = self.pending.remove(0);
            // Settle the current segment up to `at` before switching.
            match p {
                Pending::Start(frame) => {
                    self.held = None;
                    self.anchor = Some((frame as f64, at));
                }
                Pending::Stop => {
                    self.anchor = None;
                    self.held = None;
                    self.pause_at_frame = None;
                }
            }
        }
        if let Some((f0, t0)) = self.anchor {
            let mut f = f0
                + t.since(t0) as f64
                    * 1e-9
                    * self.sr()
                    * (1.0 + (self.rate_ppm + self.device_ppm) * 1e-6);
            if t < t0 {
                return None;
            }
            if let Some(pf) = self.pause_at_frame
                && f >= pf as f64
            {
                f = pf as f64;
                self.anchor = None;
                self.held = Some(f);
                self.pause_at_frame = None;
                return None;
            }
            if let Some(song) = &self.song
                && f >= song.frames as f64
            {
                self.anchor = None;
                return None;
            }
            Some(f)
        } else {
            None
        }
    }

    /// Re-anchors at `t` (before a rate change) so the change applies from `t` on.
    fn reanchor(&mut self, t: LocalTime) {
        if let Some((_, t0)) = self.anchor
            && t >= t0
            && let Some(f) = self.position(t)
        {
            self.anchor = Some((f, t));
        }
    }

    pub fn apply(&mut self, now: LocalTime, action: &PlaybackAction) {
        match action {
            PlaybackAction::Load { .. } => {}
            PlaybackAction::Start { frame, at } => {
                self.starts += 1;
                self.pause_at_frame = None;
                self.pending.push((*at, Pending::Start(*frame)));
                self.next_report.get_or_insert(*at);
            }
            PlaybackAction::PauseAt { frame, .. } => {
                let pos = self.position(now);
                match pos {
                    Some(f) if f < *frame as f64 => self.pause_at_frame = Some(*frame),
                    _ => {
                        self.anchor = None;
                        self.pending
                            .retain(|(_, p)| !matches!(p, Pending::Start(_)));
                        self.held = Some(*frame as f64);
                    }
                }
            }
            PlaybackAction::Stop { at } => self.pending.push((*at, Pending::Stop)),
        }
    }

    pub fn correct(&mut self, now: LocalTime, c: &Correction) {
        match c {
            Correction::Rate { ppm } => {
                self.reanchor(now);
                self.rate_ppm = *ppm;
            }
            Correction::Jump { frame, at, .. } => {
                self.jumps += 1;
                self.pending.push((*at, Pending::Start(*frame)));
            }
        }
    }

    /// Frame heard at `t` or held.
    pub fn frame(&mut self, t: LocalTime) -> Option<f64> {
        self.position(t).or(self.held)
    }
}

pub struct SimNode {
    pub node: Node,
    pub clock: Clock,
    pub player: VirtualPlayer,
    /// Songs this node can load, and how long loading takes (true ns); None: never loads.
    pub load_delay: Option<u64>,
    pub events: Vec<(True, Event)>,
    pub up: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct LinkSpec {
    pub a: usize,
    pub b: usize,
    /// One-way delay a -> b and b -> a.
    pub delay_ab: u64,
    pub delay_ba: u64,
}

struct Wire {
    /// (node, link id on that node)
    ends: [(usize, LinkId); 2],
    delays: [u64; 2],
    up: bool,
}

enum Ev {
    Deliver {
        to: usize,
        link: LinkId,
        msg: Message,
    },
    LinkDown {
        to: usize,
        link: LinkId,
    },
    Loaded {
        node: usize,
        song: SongRef,
    },
}

/// Decides whether a message (from, to, message) is lost.
pub type DropFilter = Box<dyn FnMut(usize, usize, &Message) -> bool>;

/// Extra delay of a message (from, to, message), ns, on top of its link's fixed delay.
pub type JitterFn = Box<dyn FnMut(usize, usize, &Message) -> u64>;

/// Exponentially distributed delays with the given mean (ns), from a seeded generator, for
/// [`Net::jitter`].
pub fn exponential_jitter(mean: f64, seed: u64) -> JitterFn {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Box::new(move |_, _, _| {
        // xorshift64*: enough for test jitter.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        (-u.ln() * mean) as u64
    })
}

pub struct Net {
    pub now: True,
    pub nodes: Vec<SimNode>,
    wires: Vec<Wire>,
    /// (node, link) -> wire index and which end
    link_index: BTreeMap<(usize, LinkId), (usize, usize)>,
    queue: BinaryHeap<Reverse<(True, u64, usize)>>,
    events: BTreeMap<u64, Ev>,
    seq: u64,
    next_link: u64,
    /// Drops messages matching this predicate (from, to, message).
    pub drop_filter: Option<DropFilter>,
    /// Delays every message by this much more than its link's delay.
    pub jitter: Option<JitterFn>,
    pub messages: u64,
    /// addr -> node index, for Connect outputs.
    addrs: BTreeMap<String, usize>,
    pub connect_delay: u64,
}

pub fn song(frames: u64) -> SongRef {
    SongRef {
        name: "test.wav".into(),
        content_hash: "abc123".into(),
        sample_rate: 48_000,
        frames,
    }
}

impl Net {
    pub fn new(clocks: &[Clock]) -> Self {
        let mut nodes = Vec::new();
        for (i, c) in clocks.iter().enumerate() {
            let mut cfg = Config::new(NodeId(100 + i as u64));
            cfg.listen_addr = Some(format!("node{i}:1"));
            let node = Node::new(cfg, i as u64, c.local(0));
            nodes.push(SimNode {
                node,
                clock: *c,
                player: VirtualPlayer::default(),
                load_delay: Some(10 * MS),
                events: Vec::new(),
                up: true,
            });
        }
        let mut addrs = BTreeMap::new();
        for i in 0..clocks.len() {
            addrs.insert(format!("node{i}:1"), i);
        }
        Net {
            now: 0,
            nodes,
            wires: Vec::new(),
            link_index: BTreeMap::new(),
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            next_link: 1,
            drop_filter: None,
            jitter: None,
            messages: 0,
            addrs,
            connect_delay: MS,
        }
    }

    /// Replaces node `i`'s config (before any link).
    pub fn configure(&mut self, i: usize, f: impl FnOnce(&mut Config)) {
        let mut cfg = self.nodes[i].node.config().clone();
        f(&mut cfg);
        let local = self.nodes[i].clock.local(self.now);
        self.nodes[i].node = Node::new(cfg, i as u64, local);
    }

    /// Turns the membership link rule off on every node (before any link), so that a chain or
    /// a star built by the test keeps its shape.
    pub fn fixed_links(&mut self) {
        for i in 0..self.nodes.len() {
            self.configure(i, |c| c.min_links = 0);
        }
    }

    pub fn local(&self, i: usize) -> LocalTime {
        self.nodes[i].clock.local(self.now)
    }

    pub fn connect(&mut self, spec: LinkSpec) {
        let la = LinkId(self.next_link);
        let lb = LinkId(self.next_link + 1);
        self.next_link += 2;
        let w = self.wires.len();
        self.wires.push(Wire {
            ends: [(spec.a, la), (spec.b, lb)],
            delays: [spec.delay_ab, spec.delay_ba],
            up: true,
        });
        self.link_index.insert((spec.a, la), (w, 0));
        self.link_index.insert((spec.b, lb), (w, 1));
        let (ta, tb) = (self.local(spec.a), self.local(spec.b));
        self.nodes[spec.a].node.handle_link_up(
            ta,
            la,
            format!("node{}:1", spec.b),
            Direction::Outgoing,
        );
        self.nodes[spec.b].node.handle_link_up(
            tb,
            lb,
            format!("node{}:1", spec.a),
            Direction::Incoming,
        );
        self.drain(spec.a);
        self.drain(spec.b);
    }

    pub fn link_of(&self, a: usize, b: usize) -> Option<LinkId> {
        self.link_index
            .iter()
            .find(|((n, _), (w, end))| {
                *n == a && self.wires[*w].up && self.wires[*w].ends[1 - end].0 == b
            })
            .map(|((_, l), _)| *l)
    }

    /// Cuts the wire between a and b, telling both ends the link is down.
    pub fn cut(&mut self, a: usize, b: usize) {
        if let Some(la) = self.link_of(a, b) {
            let (w, end) = self.link_index[&(a, la)];
            self.wires[w].up = false;
            let (nb, lb) = self.wires[w].ends[1 - end];
            let (ta, tb) = (self.local(a), self.local(nb));
            self.nodes[a].node.handle_link_down(ta, la);
            self.nodes[nb].node.handle_link_down(tb, lb);
            self.drain(a);
            self.drain(nb);
        }
    }

    /// Node `i` crashes: it stops answering, its links stay "up" but silent.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    fn schedule(&mut self, at: True, node: usize, ev: Ev) {
        self.seq += 1;
        self.events.insert(self.seq, ev);
        self.queue.push(Reverse((at, self.seq, node)));
    }

    pub fn command(&mut self, i: usize, c: Command) -> Result<(), CommandError> {
        let t = self.local(i);
        let r = self.nodes[i].node.handle_command(t, c, None);
        self.drain(i);
        r
    }

    pub fn link_command(&mut self, i: usize, c: LinkCommand) -> Result<(), CommandError> {
        let t = self.local(i);
        let r = self.nodes[i].node.handle_link_command(t, c);
        self.drain(i);
        r
    }

    /// Carries out node `i`'s outputs.
    pub fn drain(&mut self, i: usize) {
        while let Some(o) = self.nodes[i].node.poll_output() {
            let now_local = self.local(i);
            match o {
                Output::Transmit { link, message } => {
                    let Some(&(w, end)) = self.link_index.get(&(i, link)) else {
                        continue;
                    };
                    if !self.wires[w].up {
                        continue;
                    }
                    let (to, to_link) = self.wires[w].ends[1 - end];
                    let mut delay = self.wires[w].delays[end];
                    self.messages += 1;
                    if let Some(f) = self.drop_filter.as_mut()
                        && f(i, to, &message)
                    {
                        continue;
                    }
                    if let Some(f) = self.jitter.as_mut() {
                        delay += f(i, to, &message);
                    }
                    self.schedule(
                        self.now + delay,
                        to,
                        Ev::Deliver {
                            to,
                            link: to_link,
                            msg: message,
                        },
                    );
                }
                Output::Connect { addr } => {
                    if let Some(&j) = self.addrs.get(&addr) {
                        if self.nodes[j].up {
                            let now = self.now;
                            self.now += self.connect_delay;
                            self.connect(LinkSpec {
                                a: i,
                                b: j,
                                delay_ab: MS,
                                delay_ba: MS,
                            });
                            self.now = now;
                        } else {
                            let t = self.local(i);
                            self.nodes[i].node.handle_connect_failed(t, &addr);
                        }
                    } else {
                        let t = self.local(i);
                        self.nodes[i].node.handle_connect_failed(t, &addr);
                    }
                }
                Output::Disconnect { link } => {
                    if let Some(&(w, end)) = self.link_index.get(&(i, link))
                        && self.wires[w].up
                    {
                        self.wires[w].up = false;
                        let (to, to_link) = self.wires[w].ends[1 - end];
                        // The other end learns of it after what was sent before (one delay).
                        let at = self.now + self.wires[w].delays[end];
                        self.schedule(at, to, Ev::LinkDown { to, link: to_link });
                    }
                }
                Output::Playback(a) => {
                    if let PlaybackAction::Load { song } = &a
                        && let Some(d) = self.nodes[i].load_delay
                    {
                        let s = song.clone();
                        self.schedule(self.now + d, i, Ev::Loaded { node: i, song: s });
                    }
                    self.nodes[i].player.apply(now_local, &a);
                }
                Output::Correction(c) => self.nodes[i].player.correct(now_local, &c),
                Output::Event(e) => {
                    let now = self.now;
                    self.nodes[i].events.push((now, e));
                }
            }
        }
    }

    fn next_timeout(&self, i: usize) -> Option<True> {
        let n = &self.nodes[i];
        if !n.up {
            return None;
        }
        let mut t = n
            .node
            .poll_timeout()
            .map(|(l, _)| n.clock.true_time(l).max(self.now));
        if (n.player.anchor.is_some() || !n.player.pending.is_empty())
            && let Some(r) = n.player.next_report
        {
            let rt = n.clock.true_time(r).max(self.now);
            t = Some(t.map_or(rt, |x| x.min(rt)));
        }
        t
    }

    /// Runs until true time `until`.
    pub fn run_until(&mut self, until: True) {
        let mut steps = 0u64;
        loop {
            steps += 1;
            assert!(steps < 50_000_000, "step bound exceeded");
            let q = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let mut best: Option<(True, usize)> = None;
            for i in 0..self.nodes.len() {
                if let Some(t) = self.next_timeout(i)
                    && best.is_none_or(|(b, _)| t < b)
                {
                    best = Some((t, i));
                }
            }
            let next = match (q, best) {
                (Some(q), Some((b, _))) => q.min(b),
                (Some(q), None) => q,
                (None, Some((b, _))) => b,
                (None, None) => {
                    self.now = until;
                    return;
                }
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            if q == Some(next) {
                let Reverse((_, seq, _)) = self.queue.pop().unwrap();
                match self.events.remove(&seq).unwrap() {
                    Ev::Deliver { to, link, msg } => {
                        if !self.nodes[to].up {
                            continue;
                        }
                        let t = self.local(to);
                        self.nodes[to].node.handle_message(t, link, msg);
                        self.drain(to);
                    }
                    Ev::LinkDown { to, link } => {
                        let t = self.local(to);
                        self.nodes[to].node.handle_link_down(t, link);
                        self.drain(to);
                    }
                    Ev::Loaded { node, song } => {
                        let t = self.local(node);
                        self.nodes[node].player.song = Some(song.clone());
                        self.nodes[node]
                            .node
                            .handle_player(t, PlayerReport::Loaded { song });
                        self.drain(node);
                    }
                }
                continue;
            }
            let (_, i) = best.unwrap();
            let t = self.local(i);
            let n = &mut self.nodes[i];
            if n.player.next_report.is_some_and(|r| r <= t) {
                n.player.next_report = Some(t + 50 * MS as i64);
                if let Some(f) = n.player.position(t) {
                    n.node
                        .handle_player(t, PlayerReport::Position { at: t, frame: f });
                } else if n.player.anchor.is_none() && n.player.pending.is_empty() {
                    n.player.next_report = None;
                }
            }
            if n.node.poll_timeout().is_some_and(|(l, _)| l <= t) {
                n.node.handle_timeout(t);
            }
            self.drain(i);
        }
    }

    /// Group-time estimate of node `i` at the current true instant, as ns since `base`.
    pub fn group_time(&self, i: usize, base: GroupTime) -> f64 {
        self.nodes[i].node.group_time_since(self.local(i), base)
    }

    /// Largest pairwise difference of the live nodes' group-time estimates now, ns.
    pub fn group_time_spread(&self, which: &[usize]) -> f64 {
        let base = self.nodes[which[0]].node.group_time(self.local(which[0]));
        let v: Vec<f64> = which.iter().map(|&i| self.group_time(i, base)).collect();
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    }

    /// Frame heard (or held) by node `i` at the current true instant.
    pub fn frame(&mut self, i: usize) -> Option<f64> {
        let t = self.local(i);
        self.nodes[i].player.frame(t)
    }

    pub fn events(&self, i: usize) -> impl Iterator<Item = &Event> {
        self.nodes[i].events.iter().map(|(_, e)| e)
    }
}

/// Clocks with offsets of seconds and drifts of about 100 ppm.
pub fn skewed_clocks(n: usize) -> Vec<Clock> {
    (0..n)
        .map(|i| Clock {
            offset_ns: (i as i64 * 2 - 3) * 1_700_000_000,
            drift_ppm: [100.0, -100.0, 60.0, -35.0, 80.0, -90.0, 10.0, 0.0][i % 8],
        })
        .collect()
}

pub fn mesh(net: &mut Net, n: usize, delay: u64) {
    for a in 0..n {
        for b in a + 1..n {
            net.connect(LinkSpec {
                a,
                b,
                delay_ab: delay,
                delay_ba: delay,
            });
        }
    }
}

// Shapes and measures shared by the behaviour tests.

/// Three nodes in a fixed chain 0 – 1 – 2, links of 1 ms each way.
pub fn three_in_a_chain() -> Net {
    let mut net = Net::new(&skewed_clocks(3));
    // A chain stays a chain: the membership rule would close it into a ring.
    net.fixed_links();
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.connect(LinkSpec {
        a: 1,
        b: 2,
        delay_ab: MS,
        delay_ba: MS,
    });
    net
}

/// The frames the nodes `which` play now (each must be playing).
pub fn playing_frames(net: &mut Net, which: &[usize]) -> Vec<f64> {
    which
        .iter()
        .map(|&i| net.frame(i).expect("node is playing"))
        .collect()
}

/// The largest minus the smallest of `v`.
pub fn spread(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
}

/// Node 0 linked to nodes 1 and 2, run for 100 ms.
pub fn star_of_three() -> Net {
    let mut net = Net::new(&skewed_clocks(3));
    for b in 1..3 {
        net.connect(LinkSpec {
            a: 0,
            b,
            delay_ab: MS,
            delay_ba: MS,
        });
    }
    net.run_until(100 * MS);
    net
}
