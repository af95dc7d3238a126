//! Setting a run up: the song library, the topology, the script of scheduled events, and
//! starting a peer.

use std::collections::BTreeSet;

use rand_core::Rng;
use sync_core::{LinkCommand, Node, PeerAddr, SongRef};

use super::{Ev, Sim};
use crate::scenario::{MS, SEC, Topology};

impl Sim {
    pub(super) fn build_topology(&mut self) -> Vec<(usize, usize)> {
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

    pub(super) fn script(&mut self) {
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

    pub(super) fn start_peer(&mut self, i: usize, restarted: bool) {
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
        self.open_device(i);
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

    pub(super) fn command_join(&mut self, i: usize, addr: String) {
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
}

/// The songs commands pick from.
pub(super) fn song_library() -> Vec<SongRef> {
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
