//! Scripted faults as real systems suffer them (issue 24): links lost at both ends when a
//! partition outlasts the transport's timeout, peers stopped and resumed, a restart on the same
//! address with a new id, the hub of a star killed; and the check that after every heal the live
//! peers are one group again within [`SimConfig::heal_bound`](crate::SimConfig::heal_bound).

use std::collections::BTreeSet;

use sync_core::{NodeId, StateVersion};

use super::{Ev, Sim};
use crate::scenario::{FaultKind, MS};

/// How often the heal check looks whether the group is one again, ns.
const HEAL_POLL: u64 = 100 * MS;

impl Sim {
    /// Fault `k` of the script strikes now.
    pub(super) fn fault(&mut self, k: usize) {
        let fault = self.cfg.faults[k];
        match fault.kind {
            FaultKind::Partition { minority, .. } => {
                self.split(minority);
                let partition = self.partitions;
                let at = self.now + self.cfg.transport_timeout;
                self.schedule(at, Ev::TransportTimeout { partition });
                self.schedule(fault.healed_at(), Ev::PartitionHeal);
            }
            FaultKind::Freeze { .. } => {
                if let Some(i) = self.pick_victim() {
                    self.peers[i].frozen = true;
                    self.peers[i].resumes_at = fault.healed_at();
                    self.peers[i].wake_gen += 1;
                    self.peers[i].wake_at = None;
                    self.schedule(fault.healed_at(), Ev::Resume { node: i });
                }
            }
            FaultKind::Restart { .. } => {
                if let Some(i) = self.pick_victim() {
                    self.take_down(i, false, false);
                    self.schedule(fault.healed_at(), Ev::Restart { node: i });
                }
            }
            FaultKind::KillHub => self.take_down(0, false, false),
        }
        if self.cfg.heal_bound > 0 {
            let healed_at = fault.healed_at();
            self.schedule(healed_at, Ev::HealCheck { healed_at });
        }
    }

    /// A heal (of a scripted partition, or a churned peer's return) happened now: the live
    /// peers must be one group again within the heal bound, if the scenario sets one.
    pub(super) fn check_heal_from_now(&mut self) {
        if self.cfg.heal_bound > 0 {
            let healed_at = self.now;
            self.schedule(healed_at, Ev::HealCheck { healed_at });
        }
    }

    /// A live, running peer other than the hub, if there is one.
    fn pick_victim(&mut self) -> Option<usize> {
        let live: Vec<usize> = (1..self.cfg.peers)
            .filter(|&i| self.is_up(i) && !self.peers[i].frozen)
            .collect();
        (!live.is_empty()).then(|| live[self.below(live.len())])
    }

    /// Splits the peers in two (`minority` of them on the smaller side): packets between the
    /// sides are lost from now on.
    pub(super) fn split(&mut self, minority: f64) {
        let n = self.cfg.peers;
        let k = ((n as f64 * minority).round() as usize).clamp(1, n - 1);
        let mut side = vec![false; n];
        let mut all: Vec<usize> = (0..n).collect();
        for _ in 0..k {
            let j = self.below(all.len());
            side[all.swap_remove(j)] = true;
        }
        for w in &mut self.wires {
            let (a, b) = (w.ends[0].0, w.ends[1].0);
            if side[a] != side[b] {
                w.models[0].set_blocked(true);
                w.models[1].set_blocked(true);
            }
        }
        self.partition_side = Some(side);
        self.partitions += 1;
    }

    /// The transport gives up on connections that partition `partition` has kept silent:
    /// both ends see them lost, and nothing more crosses them.
    pub(super) fn transport_timeout(&mut self, partition: u64) {
        if self.partition_side.is_none() || partition != self.partitions {
            return;
        }
        for w in 0..self.wires.len() {
            let wire = &mut self.wires[w];
            if !wire.up || !wire.models[0].is_blocked() {
                continue;
            }
            wire.up = false;
            wire.dead = true;
            let ends = wire.ends;
            for (node, link, inc) in ends {
                self.peers[node].links.remove(&link);
                self.schedule(self.now, Ev::LinkDown { node, inc, link });
            }
        }
    }

    /// Events for a stopped peer wait until it runs again (the kernel queues its packets and
    /// connections); its timers fire late, all at once. Returns the event when it may run now.
    pub(super) fn defer_if_frozen(&mut self, ev: Ev) -> Option<Ev> {
        let target = match &ev {
            Ev::Deliver { to, .. } => Some(*to),
            Ev::LinkUp { a, b, .. } => [*a, *b].into_iter().find(|&i| self.peers[i].frozen),
            Ev::ConnectFailed { node, .. }
            | Ev::LinkDown { node, .. }
            | Ev::Loaded { node, .. }
            | Ev::Tick { node, .. }
            | Ev::Keeper { node, .. } => Some(*node),
            // A stopped peer's wake-up is re-armed when it resumes.
            Ev::Wake { node, .. } if self.peers[*node].frozen => return None,
            _ => None,
        };
        match target {
            Some(i) if self.peers[i].frozen => {
                // Resumes are scheduled before anything deferred to the same instant.
                let at = self.resume_at(i);
                self.schedule(at, ev);
                None
            }
            _ => Some(ev),
        }
    }

    /// When stopped peer `i` resumes.
    fn resume_at(&self, i: usize) -> u64 {
        self.peers[i].resumes_at.max(self.now)
    }

    /// Stopped peer `i` runs again: its overdue timers fire, its queued inputs follow.
    pub(super) fn resume(&mut self, i: usize) {
        let p = &mut self.peers[i];
        p.frozen = false;
        p.wake_at = None;
        p.last_heard = None;
        // Its player ran on alone: measured again once it has had time to follow the group.
        p.warmup_until = self.now as f64 + self.cfg.warmup as f64;
        self.reschedule(i);
    }

    /// Killed peer `i` starts again on its address with a new node id and no state.
    pub(super) fn restart(&mut self, i: usize) {
        let used: BTreeSet<NodeId> = self.peers.iter().map(|p| p.id).collect();
        let id = loop {
            let id = NodeId(rand_core::Rng::next_u64(&mut self.rng));
            if !used.contains(&id) {
                break id;
            }
        };
        self.peers[i].id = id;
        self.peers[i].config.node_id = id;
        self.start_peer(i, false);
    }

    /// Whether the live, running peers are one group: one component, one reference, one state
    /// version.
    fn one_group(&self) -> bool {
        let live: Vec<usize> = (0..self.cfg.peers)
            .filter(|&i| self.is_up(i) && !self.peers[i].frozen)
            .collect();
        let Some(&first) = live.first() else {
            return true;
        };
        let component = self.component_of(first);
        let roots: BTreeSet<NodeId> = live
            .iter()
            .filter_map(|&i| self.peers[i].node.as_ref())
            .map(|n| n.sync_status().root)
            .collect();
        let versions: BTreeSet<StateVersion> = live
            .iter()
            .filter_map(|&i| self.peers[i].node.as_ref())
            .map(|n| n.state().version)
            .collect();
        live.iter().all(|i| component.contains(i)) && roots.len() == 1 && versions.len() == 1
    }

    /// Polls until the group is one again after the heal at `healed_at`; then records the time
    /// it took and types a command that must reach everyone. Past the bound, a violation.
    pub(super) fn heal_check(&mut self, healed_at: u64) {
        if self.one_group() {
            self.out.heal_times.push(Some(self.now - healed_at));
            let live: Vec<usize> = (0..self.cfg.peers)
                .filter(|&i| self.is_up(i) && !self.peers[i].frozen)
                .collect();
            if !live.is_empty() && self.now < self.quiet_from {
                let i = live[self.below(live.len())];
                let command = self.choose_command(i);
                let before = self.out.commands.len();
                self.issue_command(i, command);
                if self.out.commands.len() > before {
                    self.heal_commands.push(before);
                }
            }
            return;
        }
        if self.now >= healed_at + self.cfg.heal_bound {
            self.out.heal_times.push(None);
            let live = (0..self.cfg.peers).filter(|&i| self.is_up(i)).count();
            let components = self.components();
            let what = format!(
                "{:.1} s after the heal at {:.1} s the {live} live peers are not one group ({components} components)",
                self.cfg.heal_bound as f64 / 1e9,
                healed_at as f64 / 1e9
            );
            self.violation(None, what);
            return;
        }
        self.schedule(self.now + HEAL_POLL, Ev::HealCheck { healed_at });
    }

    /// Connected components of the live peers.
    pub(super) fn components(&self) -> usize {
        let mut seen = BTreeSet::new();
        let mut count = 0;
        for i in 0..self.cfg.peers {
            if self.is_up(i) && !seen.contains(&i) {
                count += 1;
                seen.extend(self.component_of(i));
            }
        }
        count
    }
}
