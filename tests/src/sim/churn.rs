//! Changes to the group: peers taken down by churn, scripted partitions and their heal, the
//! keeper that redials lost neighbours, and the true connected components.

use std::collections::BTreeSet;

use sync_core::NodeId;

use super::{Ev, Sim};

impl Sim {
    pub(super) fn take_down(&mut self, i: usize, graceful: bool, silent: bool) {
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
                self.close_wire(w, i);
            }
        }
    }

    pub(super) fn churn(&mut self) {
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

    pub(super) fn partition_start(&mut self) {
        let Some(p) = self.cfg.partition else { return };
        // A heal not yet followed by one timeline stays unmeasured (`None`).
        self.open_heals.clear();
        self.split(p.minority);
        let partition = self.partitions;
        let at = self.now + self.cfg.transport_timeout;
        self.schedule(at, Ev::TransportTimeout { partition });
    }

    pub(super) fn partition_heal(&mut self) {
        for w in &mut self.wires {
            w.models[0].set_blocked(false);
            w.models[1].set_blocked(false);
        }
        self.partition_side = None;
        if self.cfg.partition.is_some() {
            self.check_heal_from_now(); // (a scripted fault's heal is checked by the fault)
        }
        self.out.heal_lags.push(None);
        self.open_heals
            .push((self.out.heal_lags.len() - 1, self.now));
    }

    pub(super) fn keeper(&mut self, i: usize) {
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
    pub(super) fn component_of(&self, i: usize) -> Vec<usize> {
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
}
