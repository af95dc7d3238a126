//! Membership beyond neighbours: every member of the group this node has heard of (its listen
//! address, its node id, when someone last had it as a neighbour), learnt from hellos and from
//! the members gossiped every `Config::members_interval`; and the rule that picks whom to link to
//! so that losing any one member does not split the group (`docs/membership.md`): a link to the
//! next member in node-id order (the ring successor), then more in that order up to
//! `Config::min_links`. Dials it asks for back off per address when they fail or are refused.

use std::collections::BTreeMap;

use super::config::Config;
use super::redial::backoff;
use crate::message::{MemberInfo, MembersDigest};
use crate::state::NodeId;
use crate::time::{LocalTime, MILLISECOND};

/// One member as this node knows it.
#[derive(Clone, Debug)]
struct Member {
    id: NodeId,
    /// Its room name, if it has one and this node heard it.
    name: Option<String>,
    /// When this node, or a peer it heard from, last had the member as a neighbour.
    seen: LocalTime,
    /// Dials to it (for the ring or the degree) that failed or were refused in a row.
    refusals: u32,
    /// No dial of ours before this (after a failure or a refusal).
    quiet_until: Option<LocalTime>,
    /// This node left it, or it left, on purpose: no dial of ours to it before this...
    left_until: Option<LocalTime>,
    /// ...and, when this node did the leaving, no link from it either.
    refuse_until: Option<LocalTime>,
}

/// The members this node knows, by listen address (one id per address: a member restarted on
/// its address replaces its former self).
#[derive(Debug, Default)]
pub(crate) struct Members {
    map: BTreeMap<String, Member>,
    /// The wrapping sum of [`entry_hash`] over the table: the digest's hash, kept as it changes.
    sum: u64,
    /// Next gossip of the table and check of the link rule.
    next_round: Option<LocalTime>,
    /// Where the next gossip's window through a table too large for one message starts.
    cursor: Option<String>,
    /// The ring successor last seen and since when (see [`Members::successor_settled`]).
    successor: Option<(String, LocalTime)>,
}

impl Members {
    /// A neighbour at `addr` with id `id` completed its handshake at `now`: it is a member,
    /// under this id from now on. Its refusals count on until the link is `settled` (still
    /// there at a round): a full member says hello before it refuses.
    pub(crate) fn linked(
        &mut self,
        addr: &str,
        (id, name): (NodeId, Option<&str>),
        now: LocalTime,
        settled: bool,
        config: &Config,
    ) {
        match self.map.get_mut(addr) {
            Some(m) => {
                self.sum = rehash(self.sum, addr, m.id, id);
                m.id = id;
                m.name = name.map(str::to_string);
                m.seen = now;
                if settled {
                    m.refusals = 0;
                    m.quiet_until = None;
                    m.left_until = None;
                    m.refuse_until = None;
                }
            }
            None => {
                let m = Member {
                    id,
                    name: name.map(str::to_string),
                    seen: now,
                    refusals: 0,
                    quiet_until: None,
                    left_until: None,
                    refuse_until: None,
                };
                self.insert(addr, m, config);
            }
        }
    }

    /// Members gossiped by a neighbour at `now`: each is learnt, or replaces what this node
    /// knows of its address when the news is fresher. `own` tells this node's own addresses.
    pub(crate) fn heard(
        &mut self,
        members: Vec<MemberInfo>,
        now: LocalTime,
        own: impl Fn(&str) -> bool,
        config: &Config,
    ) {
        for info in members {
            if own(&info.addr) {
                continue;
            }
            let age = info.age_ms.saturating_mul(MILLISECOND as u64);
            let seen = LocalTime(now.0.saturating_sub(age));
            if now.since(seen) >= config.forget_member_after {
                continue;
            }
            match self.map.get_mut(&info.addr) {
                Some(m) if m.seen >= seen => {}
                Some(m) => {
                    self.sum = rehash(self.sum, &info.addr, m.id, info.node_id);
                    m.seen = seen;
                    m.id = info.node_id;
                    m.name = info.name;
                }
                None => {
                    let m = Member {
                        id: info.node_id,
                        name: info.name,
                        seen,
                        refusals: 0,
                        quiet_until: None,
                        left_until: None,
                        refuse_until: None,
                    };
                    self.insert(&info.addr, m, config);
                }
            }
        }
    }

    /// Adds a new address; beyond `Config::max_members` the member seen longest ago goes.
    fn insert(&mut self, addr: &str, m: Member, config: &Config) {
        while self.map.len() >= config.max_members.max(1) {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(a, m)| (m.seen, (*a).clone()))
                .map(|(a, _)| a.clone());
            match oldest.and_then(|a| self.map.remove_entry(&a)) {
                Some((a, gone)) => self.sum = self.sum.wrapping_sub(entry_hash(&a, gone.id)),
                None => break,
            };
        }
        self.sum = self.sum.wrapping_add(entry_hash(addr, m.id));
        self.map.insert(addr.to_string(), m);
    }

    /// A dial of ours to `addr` failed or was refused at `now` (the member is full): no dial
    /// there for the backoff, which doubles with each refusal in a row.
    pub(crate) fn refused(&mut self, addr: &str, now: LocalTime, r: f64, config: &Config) {
        if let Some(m) = self.map.get_mut(addr) {
            m.quiet_until = Some(now + backoff(m.refusals, r, config));
            m.refusals = m.refusals.saturating_add(1);
        }
    }

    /// The member at `addr` left on purpose, or this node left it (`by_us`), at `now`: the rule
    /// does not dial it for `Config::forget_member_after`; when this node left, it does not
    /// accept a link from it either, even a `join` typed there (one typed here goes through).
    pub(crate) fn left(&mut self, addr: &str, now: LocalTime, by_us: bool, config: &Config) {
        if let Some(m) = self.map.get_mut(addr) {
            let until = Some(now + config.forget_member_after);
            m.left_until = until;
            if by_us {
                m.refuse_until = until;
            }
        }
    }

    /// Whether the member at `addr` was left on purpose lately (see [`Members::left`]).
    fn was_left(&self, addr: &str, now: LocalTime) -> bool {
        self.map
            .get(addr)
            .and_then(|m| m.left_until)
            .is_some_and(|t| now < t)
    }

    /// Whether a link from the member at `addr` is refused: this node left it lately.
    pub(crate) fn refuses(&self, addr: &str, now: LocalTime) -> bool {
        self.map
            .get(addr)
            .and_then(|m| m.refuse_until)
            .is_some_and(|t| now < t)
    }

    /// Whether dials to `addr` are held back at `now` after a refusal.
    pub(crate) fn quiet(&self, addr: &str, now: LocalTime) -> bool {
        self.was_left(addr, now)
            || self
                .map
                .get(addr)
                .and_then(|m| m.quiet_until)
                .is_some_and(|t| now < t)
    }

    /// Forgets members nobody has had as a neighbour for `Config::forget_member_after`.
    pub(crate) fn forget_old(&mut self, now: LocalTime, config: &Config) {
        let sum = &mut self.sum;
        self.map.retain(|a, m| {
            let keep = now.since(m.seen) < config.forget_member_after;
            if !keep {
                *sum = sum.wrapping_sub(entry_hash(a, m.id));
            }
            keep
        });
    }

    /// Whether a gossip round is due at `now` (the first one is due at once).
    pub(crate) fn round_due(&self, now: LocalTime) -> bool {
        self.next_round.is_none_or(|t| t <= now)
    }

    /// A round was held at `now`: the next one is due one interval later.
    pub(crate) fn round_held(&mut self, now: LocalTime, config: &Config) {
        self.next_round = Some(now + config.members_interval);
    }

    /// When the next round is due (none before the node has any link).
    pub(crate) fn next_round(&self) -> Option<LocalTime> {
        self.next_round
    }

    /// The table as gossip at `now`, this node (as `config` names it) first: every member when
    /// they fit in one message, else a window that moves on at every call, so that every member
    /// is told within a few rounds.
    pub(crate) fn gossip(&mut self, now: LocalTime, config: &Config) -> Vec<MemberInfo> {
        let room = config.max_gossip_addrs.saturating_sub(1);
        let info = |(a, m): (&String, &Member)| MemberInfo {
            addr: a.clone(),
            node_id: m.id,
            age_ms: (now.since(m.seen).max(0) / MILLISECOND) as u64,
            name: m.name.clone(),
        };
        let mut out: Vec<MemberInfo> = config
            .listen_addr
            .as_ref()
            .map(|a| MemberInfo {
                addr: a.clone(),
                node_id: config.node_id,
                age_ms: 0,
                name: config.name.clone(),
            })
            .into_iter()
            .collect();
        if self.map.len() <= room {
            out.extend(self.map.iter().map(info));
            return out;
        }
        let start = self.cursor.take().unwrap_or_default();
        let after = self.map.range(start.clone()..);
        let wrapped = self.map.range(..start);
        let window: Vec<MemberInfo> = after.chain(wrapped).take(room).map(info).collect();
        self.cursor = self
            .map
            .range(window.last().map(|m| m.addr.clone()).unwrap_or_default()..)
            .nth(1)
            .map(|(a, _)| a.clone());
        out.extend(window);
        out
    }

    /// The members to link to, in the order to dial them, for this node `me` at `now`:
    /// members in node-id order starting after `me` and wrapping around (the ring), leaving out
    /// those whose dials are held back and those `skip` names (lost members that the redial
    /// backoff already dials). The first is the ring successor; `linked` tells which have a link
    /// (or a dial pending) already.
    pub(crate) fn ring(
        &self,
        me: NodeId,
        now: LocalTime,
        skip: impl Fn(&str) -> bool,
    ) -> Vec<(String, NodeId)> {
        let mut v: Vec<(String, NodeId)> = self
            .map
            .iter()
            .filter(|(a, m)| m.id != me && !skip(a) && !self.quiet(a, now))
            .map(|(a, m)| (a.clone(), m.id))
            .collect();
        // After `me` first, then from the lowest id: the ring's order seen from here.
        v.sort_by_key(|(a, id)| (*id <= me, *id, a.clone()));
        v
    }

    /// Who the members are, in a few bytes: this node (as `config` names it) and the table.
    /// Two nodes that know the same members (whatever their ages) have the same digest.
    pub(crate) fn digest(&self, config: &Config) -> MembersDigest {
        let own = config
            .listen_addr
            .as_deref()
            .map(|a| entry_hash(a, config.node_id));
        MembersDigest {
            count: (self.map.len() + usize::from(own.is_some())) as u32,
            hash: self.sum.wrapping_add(own.unwrap_or(0)),
        }
    }

    /// The room name of the member `id`, if known.
    pub(crate) fn name_of(&self, id: NodeId) -> Option<&str> {
        self.map
            .values()
            .find(|m| m.id == id)
            .and_then(|m| m.name.as_deref())
    }

    /// Whether `successor` (the ring's first member now) has been the successor for a round.
    /// While a node learns the group its successor moves closer with every new member; dialling
    /// each would leave a trail of links the rule no longer needs (the rule only adds).
    pub(crate) fn successor_settled(
        &mut self,
        successor: Option<&str>,
        now: LocalTime,
        config: &Config,
    ) -> bool {
        match (&self.successor, successor) {
            (Some((a, since)), Some(s)) if a == s => now.since(*since) >= config.members_interval,
            (_, s) => {
                self.successor = s.map(|s| (s.to_string(), now));
                false
            }
        }
    }

    /// The members known by the room name `name` (ids; one member per address).
    pub(crate) fn ids_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = NodeId> + 'a {
        self.map
            .values()
            .filter(move |m| m.name.as_deref() == Some(name))
            .map(|m| m.id)
    }

    /// Every member known, ordered by address: `(address, id, ns since seen)`.
    pub(crate) fn list(&self, now: LocalTime) -> Vec<(String, NodeId, i64)> {
        self.map
            .iter()
            .map(|(a, m)| (a.clone(), m.id, now.since(m.seen)))
            .collect()
    }
}

/// A member's share of the digest's hash: FNV-1a over its address and id, then mixed
/// (SplitMix64's finaliser), so that a sum over a set depends on every entry and not on order.
fn entry_hash(addr: &str, id: NodeId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in addr.bytes().chain(id.0.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `sum` with the member at `addr` moved from id `old` to `new`.
fn rehash(sum: u64, addr: &str, old: NodeId, new: NodeId) -> u64 {
    sum.wrapping_sub(entry_hash(addr, old))
        .wrapping_add(entry_hash(addr, new))
}

/// Which of the `ring` (from [`Members::ring`]) to dial now, if any: the ring successor when it
/// has no link, else the next member without one while fewer than `min_links` links are held.
/// `has_link` tells whether an address has a link or a dial pending; `links` counts them;
/// `settled` whether the successor has held its place for a round (with `min_links` held, an
/// unsettled successor waits). `Config::min_links` 0 turns the rule off.
pub(crate) fn next_dial(
    ring: &[(String, NodeId)],
    has_link: impl Fn(&str) -> bool,
    (links, settled): (usize, bool),
    config: &Config,
) -> Option<String> {
    if config.min_links == 0 {
        return None;
    }
    let (successor, _) = ring.first()?;
    let enough = links >= config.min_links.min(config.max_links);
    if !has_link(successor) && (settled || !enough) {
        return Some(successor.clone());
    }
    if enough {
        return None;
    }
    ring.iter().map(|(a, _)| a).find(|a| !has_link(a)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SECOND;

    fn member(addr: &str, id: u64, age_ms: u64) -> MemberInfo {
        MemberInfo {
            addr: addr.into(),
            node_id: NodeId(id),
            age_ms,
            name: None,
        }
    }

    #[test]
    fn the_ring_starts_after_this_node_and_wraps_to_the_lowest_id() {
        let config = Config::new(NodeId(5));
        let mut m = Members::default();
        let now = LocalTime(100 * SECOND as u64);
        let heard = vec![
            member("a:1", 9, 0),
            member("b:1", 2, 0),
            member("c:1", 7, 0),
        ];
        m.heard(heard, now, |_| false, &config);
        let ring: Vec<u64> = m
            .ring(NodeId(5), now, |_| false)
            .iter()
            .map(|r| r.1.0)
            .collect();
        assert_eq!(ring, vec![7, 9, 2]);
        // The successor is dialled first; with it linked, the next while below min_links.
        let ring = m.ring(NodeId(5), now, |_| false);
        assert_eq!(
            next_dial(&ring, |_| false, (0, false), &config),
            Some("c:1".into())
        );
        assert_eq!(
            next_dial(&ring, |a| a == "c:1", (1, false), &config),
            Some("a:1".into())
        );
        assert_eq!(next_dial(&ring, |a| a != "b:1", (3, true), &config), None);
        // With enough links, a successor without a link waits until it has held its place.
        let none = |_: &str| false;
        assert_eq!(next_dial(&ring, none, (3, false), &config), None);
        assert_eq!(
            next_dial(&ring, none, (3, true), &config),
            Some("c:1".into())
        );
        assert!(!m.successor_settled(Some("c:1"), now, &config));
        let later = now + config.members_interval;
        assert!(m.successor_settled(Some("c:1"), later, &config));
        assert!(!m.successor_settled(Some("a:1"), later, &config));
        // A refused member is skipped until its backoff is over.
        m.refused("c:1", now, 0.5, &config);
        let ring = m.ring(NodeId(5), now, |_| false);
        assert_eq!(ring[0].0, "a:1");
    }

    #[test]
    fn fresher_news_of_an_address_replaces_its_id_and_stale_news_does_not() {
        let config = Config::new(NodeId(1));
        let mut m = Members::default();
        let now = LocalTime(100 * SECOND as u64);
        m.heard(vec![member("h:1", 3, 5_000)], now, |_| false, &config);
        m.heard(vec![member("h:1", 4, 1_000)], now, |_| false, &config);
        m.heard(vec![member("h:1", 3, 9_000)], now, |_| false, &config);
        assert_eq!(m.list(now), vec![("h:1".into(), NodeId(4), SECOND)]);
        // Too old to be news; and this node's own address is never a member.
        m.heard(vec![member("old:1", 8, 61_000)], now, |_| false, &config);
        m.heard(vec![member("me:1", 8, 0)], now, |a| a == "me:1", &config);
        assert_eq!(m.list(now).len(), 1);
    }

    #[test]
    fn the_digest_depends_on_who_the_members_are_not_on_their_ages_or_order() {
        let mut config = Config::new(NodeId(1));
        config.listen_addr = Some("me:1".into());
        let now = LocalTime(100 * SECOND as u64);
        let (mut a, mut b) = (Members::default(), Members::default());
        a.heard(
            vec![member("x:1", 2, 0), member("y:1", 3, 0)],
            now,
            |_| false,
            &config,
        );
        b.heard(vec![member("y:1", 3, 5_000)], now, |_| false, &config);
        assert_ne!(a.digest(&config), b.digest(&config));
        b.heard(vec![member("x:1", 2, 9_000)], now, |_| false, &config);
        assert_eq!(a.digest(&config), b.digest(&config));
        assert_eq!(a.digest(&config).count, 3, "the two and this node");
        // A restart's new id changes it; forgetting a member does too, back to what it was.
        let before = a.digest(&config);
        let now = now + SECOND;
        a.heard(vec![member("x:1", 7, 0)], now, |_| false, &config);
        assert_ne!(a.digest(&config), before);
        b.heard(vec![member("x:1", 7, 0)], now, |_| false, &config);
        assert_eq!(a.digest(&config), b.digest(&config));
        let mut c = Members::default();
        c.heard(vec![member("x:1", 7, 0)], now, |_| false, &config);
        b.forget_old(now + config.forget_member_after - 1_000_000, &config);
        assert_eq!(
            b.digest(&config).count,
            2,
            "y (older news) forgotten, x kept"
        );
        assert_eq!(b.digest(&config), c.digest(&config));
    }

    #[test]
    fn a_table_larger_than_a_message_is_told_in_windows_that_cover_it() {
        let mut config = Config::new(NodeId(0));
        config.max_gossip_addrs = 4;
        config.listen_addr = Some("me:1".into());
        let mut m = Members::default();
        let now = LocalTime(SECOND as u64);
        let all: Vec<MemberInfo> = (1..=10)
            .map(|i| member(&format!("h{i:02}:1"), i, 0))
            .collect();
        m.heard(all, now, |_| false, &config);
        let mut told = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let g = m.gossip(now, &config);
            assert_eq!(g.len(), 4);
            assert_eq!(g[0].addr, "me:1");
            told.extend(g.into_iter().skip(1).map(|i| i.addr));
        }
        assert_eq!(told.len(), 10, "every member told within four rounds");
    }
}
