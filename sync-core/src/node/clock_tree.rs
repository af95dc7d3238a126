//! The clock tree: which reference this node follows, through which neighbour, and its
//! mapping of the local clock to group time. What a change means for the rest of the node
//! (a new time base, a step of group time, a new reference) is returned, for the node to pass on.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use super::api::{LinkId, TimeoutReason};
use super::config::{Config, MAX_STRATUM};
use super::links::{Link, Links};
use crate::clock::{ClockMapping, LinkEstimate};
use crate::message::Announce;
use crate::state::{NodeId, StateVersion};
use crate::time::{LocalTime, MILLISECOND, Nanos};

#[derive(Clone, Copy, Debug)]
struct RootLiveness {
    max_seq: u64,
    advanced_at: LocalTime,
}

/// The node moved to time base `base`, whose instants are `step` ahead of the old one's.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) struct TimebaseChange {
    pub(crate) base: u64,
    pub(crate) step: Nanos,
}

/// What a new estimate of the parent's clock did to group time.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum MappingChange {
    /// Group time is now read in another time base.
    Timebase(TimebaseChange),
    /// Same time base, stepped by more than the step threshold (ns).
    Stepped(Nanos),
}

/// The reference or this node's place under it changed.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) struct ReferenceChange {
    pub(crate) root: NodeId,
    pub(crate) stratum: u8,
    pub(crate) parent: Option<NodeId>,
}

/// What a new choice of reference did, in the order the node passes it on.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    /// This node became the reference after following another and started a time base.
    pub(crate) fresh_timebase: Option<TimebaseChange>,
    /// The reference, stratum or parent changed.
    pub(crate) reference: Option<ReferenceChange>,
    /// The mapping recomputed from the new parent.
    pub(crate) mapping: Option<MappingChange>,
}

/// This node's place in the clock tree and its mapping to group time.
#[derive(Debug)]
pub(crate) struct ClockTree {
    pub(crate) mapping: ClockMapping,
    /// Time bases this node has left, with what to add to their instants to express them in
    /// the current one.
    conversions: BTreeMap<u64, Nanos>,
    pub(crate) root: NodeId,
    pub(crate) stratum: u8,
    pub(crate) parent: Option<LinkId>,
    root_delay: u64,
    pub(crate) radius: u64,
    roots: BTreeMap<NodeId, RootLiveness>,
}

impl ClockTree {
    /// A node that is its own reference, its time base `timebase` its own clock from `now`.
    pub(crate) fn new(me: NodeId, now: LocalTime, timebase: u64) -> Self {
        ClockTree {
            mapping: ClockMapping::identity(now, timebase),
            conversions: BTreeMap::new(),
            root: me,
            stratum: 0,
            parent: None,
            root_delay: 0,
            radius: 0,
            roots: BTreeMap::new(),
        }
    }

    /// The lead added to commands: long enough for a state to cross the clock tree from here to
    /// its farthest node (measured delays with a factor and a margin), bounded.
    pub(crate) fn lead(&self, config: &Config) -> Nanos {
        let path = (self.root_delay + self.radius) as f64 * config.lead_path_factor;
        (path as Nanos + config.lead_margin).clamp(config.lead_min, config.lead_max)
    }

    /// The reference's liveness deadline, when this node follows one.
    pub(crate) fn poll_timeout(
        &self,
        me: NodeId,
        config: &Config,
    ) -> Option<(LocalTime, TimeoutReason)> {
        if self.root == me {
            return None;
        }
        let r = self.roots.get(&self.root)?;
        Some((
            r.advanced_at + config.root_timeout,
            TimeoutReason::Reference,
        ))
    }

    /// The peer this node follows.
    pub(crate) fn parent_peer(&self, links: &Links) -> Option<NodeId> {
        self.parent
            .and_then(|l| links.get(&l))
            .and_then(Link::peer_id)
    }

    /// A message came straight from `peer` at `now`: if it is the reference, it is alive (its
    /// liveness counter rides only on probes, and a lossy link may drop several in a row).
    pub(crate) fn heard_from(&mut self, peer: NodeId, now: LocalTime) {
        if peer == self.root
            && let Some(r) = self.roots.get_mut(&peer)
        {
            r.advanced_at = r.advanced_at.max(now);
        }
    }

    /// Records the liveness counter of the reference a neighbour announces.
    pub(crate) fn record_root(&mut self, me: NodeId, a: &Announce, now: LocalTime) {
        if a.root != me {
            let r = self.roots.entry(a.root).or_insert(RootLiveness {
                max_seq: a.root_seq,
                advanced_at: now,
            });
            if a.root_seq > r.max_seq {
                r.max_seq = a.root_seq;
                r.advanced_at = now;
            }
        }
    }

    fn root_alive(&self, root: NodeId, now: LocalTime, config: &Config) -> bool {
        self.roots
            .get(&root)
            .is_some_and(|r| now.since(r.advanced_at) < config.root_timeout)
    }

    /// Whether this node follows a reference that has gone quiet.
    pub(crate) fn reference_lost(&self, me: NodeId, now: LocalTime, config: &Config) -> bool {
        self.root != me && !self.root_alive(self.root, now, config)
    }

    /// Forgets references not heard of for a long time.
    pub(crate) fn forget_old_roots(&mut self, now: LocalTime, config: &Config) {
        self.roots
            .retain(|_, r| now.since(r.advanced_at) < config.forget_root_after);
    }

    /// This node's clock announcement, carried by every probe and reply.
    pub(crate) fn announce(
        &self,
        me: NodeId,
        now: LocalTime,
        links: &Links,
        state_version: StateVersion,
    ) -> Announce {
        let subtree = links
            .announces()
            .filter(|a| a.parent == Some(me) && a.root == self.root)
            .map(|a| a.subtree_delay)
            .fold(self.root_delay, u64::max);
        Announce {
            root: self.root,
            stratum: self.stratum,
            // The reference's liveness counter is its own clock in milliseconds: it rises by
            // itself, and keeps rising across a restart of the process on the same host.
            root_seq: if self.root == me {
                now.0 / MILLISECOND as u64
            } else {
                self.roots.get(&self.root).map_or(0, |r| r.max_seq)
            },
            root_delay: self.root_delay,
            parent: self.parent_peer(links),
            state_version,
            mapping: self.mapping.reanchored(now),
            subtree_delay: subtree,
            radius: self.radius.max(subtree),
            members: None,
        }
    }

    /// What to add to instants of time base `base` to read them in ours: zero for ours, the
    /// remembered step for one this node has left, or, when the neighbour on `from` runs
    /// `base`, its announced mapping composed with our estimate of its clock (to within the
    /// link's estimation error). `None` when the base cannot be read yet.
    pub(crate) fn conversion(
        &self,
        base: u64,
        from: Option<LinkId>,
        links: &Links,
        now: LocalTime,
    ) -> Option<Nanos> {
        if base == self.mapping.timebase {
            return Some(0);
        }
        if let Some(by) = self.conversions.get(&base) {
            return Some(*by);
        }
        let l = links.get(&from?)?;
        let a = l.announce?;
        if a.mapping.timebase != base {
            return None;
        }
        let est = l.filter.estimate()?;
        let theirs = a.mapping.compose(est, now);
        Some(self.mapping.to_group(now).since(theirs.to_group(now)))
    }

    /// Whether a state in time base `base` can be read once the neighbour announced `a`.
    pub(crate) fn can_read(&self, base: u64, a: &Announce) -> bool {
        base == self.mapping.timebase
            || self.conversions.contains_key(&base)
            || a.mapping.timebase == base
    }

    /// Chooses the reference and the neighbour to follow: the lowest live root id announced by a
    /// neighbour with a clock estimate, then the lowest stratum, then the shortest delay; under
    /// the same reference, a neighbour whose clock is known much less well than the current
    /// parent's is not followed yet.
    pub(crate) fn select_reference(
        &mut self,
        me: NodeId,
        now: LocalTime,
        links: &Links,
        config: &Config,
        rng: &mut ChaCha8Rng,
    ) -> Selection {
        let stale_ms = (config.root_timeout / MILLISECOND) as u64;
        let mut best: Option<((NodeId, u8, u64, NodeId), LinkId)> = None;
        let mut current = None;
        for (&id, l) in links.iter() {
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
                || !self.root_alive(a.root, now, config)
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
                links
                    .get(&l)
                    .and_then(|l| l.filter.estimate())
                    .map_or(f64::INFINITY, |e| e.uncertainty)
            };
            if unc(link)
                > (config.switch_uncertainty_factor * unc(clink)).max(config.refine_above as f64)
            {
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
        match parent.and_then(|p| links.get(&p)) {
            Some(l) => {
                let a = l.announce.expect("parent has an announcement");
                self.root_delay = a.root_delay + l.one_way_delay().unwrap_or(0);
                self.radius = a.radius;
            }
            None => {
                self.root_delay = 0;
                self.radius = links
                    .announces()
                    .filter(|a| a.parent == Some(me))
                    .map(|a| a.subtree_delay)
                    .max()
                    .unwrap_or(0);
            }
        }
        let mut selection = Selection::default();
        if parent_changed || root_changed {
            if parent.is_none() {
                // Becoming the reference: keep the current mapping so group time runs on without
                // a jump, re-anchored to keep numbers small.
                self.mapping = self.mapping.reanchored(now);
                if was_following {
                    // A reference that takes over after its own left (or after a split) starts a
                    // time base of its own: the other half of a split group carries the old one
                    // on with another clock, and instants of the two must never be confused
                    // when they meet again. Followers switch to it with a step of about zero.
                    let fresh = rng.next_u64() | 1;
                    selection.fresh_timebase = self.adopt_timebase(fresh, 0, config);
                }
            }
            selection.reference = Some(ReferenceChange {
                root,
                stratum,
                parent: self.parent_peer(links),
            });
            if parent.is_some() {
                selection.mapping = self.update_mapping(now, links, config);
            }
        }
        selection
    }

    /// Recomputes the mapping from the parent's mapping and the link estimate.
    pub(crate) fn update_mapping(
        &mut self,
        now: LocalTime,
        links: &Links,
        config: &Config,
    ) -> Option<MappingChange> {
        let l = self.parent.and_then(|p| links.get(&p))?;
        let (Some(a), Some(est)) = (l.announce, l.filter.estimate()) else {
            return None;
        };
        let est: LinkEstimate = *est;
        let new = a.mapping.compose(&est, now);
        let step = new.to_group(now).since(self.mapping.to_group(now));
        let old_base = self.mapping.timebase;
        self.mapping = ClockMapping {
            timebase: old_base,
            ..new
        };
        if new.timebase != old_base {
            self.adopt_timebase(new.timebase, step, config)
                .map(MappingChange::Timebase)
        } else if step.abs() > config.step_threshold {
            Some(MappingChange::Stepped(step))
        } else {
            None
        }
    }

    /// Moves to time base `base`, whose instants are `step` ahead of the current one's (this
    /// node joined another group's time, or started a new one), remembering how to read
    /// instants of the old bases. The node converts its state with the change returned.
    fn adopt_timebase(
        &mut self,
        base: u64,
        step: Nanos,
        config: &Config,
    ) -> Option<TimebaseChange> {
        let old = self.mapping.timebase;
        if base == old {
            return None;
        }
        for by in self.conversions.values_mut() {
            *by = by.saturating_add(step);
        }
        self.conversions.insert(old, step);
        self.conversions.remove(&base);
        while self.conversions.len() > config.max_conversions {
            let oldest = *self.conversions.keys().next().expect("non-empty");
            self.conversions.remove(&oldest);
        }
        self.mapping.timebase = base;
        Some(TimebaseChange { base, step })
    }
}
