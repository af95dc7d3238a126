//! What the membership table means for the node: the members gossiped to every neighbour each
//! round, the links the rule of [`members`](super::members) asks for dialled (at most one per
//! round or per lost link), and refusals and departures remembered so that no address is dialled
//! in a loop.

use super::links::is_own_addr;
use super::members::next_dial;
use super::*;
use crate::message::{MemberInfo, MembersDigest};

impl Node {
    /// Every member this node knows, ordered by address: its listen address, its id, and how
    /// long ago (ns) this node or a peer it heard from last had it as a neighbour.
    pub fn members(&self) -> Vec<(String, NodeId, Nanos)> {
        self.members.list(self.now)
    }

    /// A neighbour's members gossip: learnt, unless it is longer than a message may be.
    pub(super) fn on_members(&mut self, link: LinkId, members: Vec<MemberInfo>) {
        if members.len() > self.config.max_gossip_addrs {
            self.bad(link, BadInput::OversizedGossip);
            return;
        }
        let config = &self.config;
        self.members
            .heard(members, self.now, |a| is_own_addr(a, config), config);
    }

    /// The neighbour on `link` completed its handshake: it is a member under its id, and it
    /// learns the members this node knows at once.
    pub(super) fn member_linked(&mut self, link: LinkId) {
        let Some((addr, id, name)) = self.links.get(&link).and_then(|l| {
            let name = l.name().map(str::to_string);
            Some((l.listen_addr()?.to_string(), l.peer_id()?, name))
        }) else {
            return;
        };
        let peer = (id, name.as_deref());
        self.members
            .linked(&addr, peer, self.now, false, &self.config);
        self.send_members(link);
    }

    pub(super) fn send_members(&mut self, link: LinkId) {
        let members = self.members.gossip(self.now, &self.config);
        if let Some(l) = self.links.get_mut(&link) {
            l.members_told = Some(self.now);
        }
        if !members.is_empty() {
            self.send(link, Message::Members(members));
        }
    }

    /// Whether the neighbour on `link` is due the table at this round: its last digest differs
    /// from `ours` (or it sent none), or its ages were last refreshed `members_refresh` ago.
    fn members_due(&self, link: LinkId, ours: MembersDigest) -> bool {
        self.links.get(&link).is_some_and(|l| {
            let theirs = l.announce.and_then(|a| a.members);
            let refresh = l
                .members_told
                .is_none_or(|t| self.now.since(t) >= self.config.members_refresh);
            theirs != Some(ours) || refresh
        })
    }

    /// A link ended: a dial of ours refused because the peer is full (or holds another link to
    /// us, perhaps one still open to our former incarnation), or never answered, backs that
    /// address off; a member that left on purpose (or that we left) is not dialled by the
    /// rule again until it is forgotten or links again. Then the rule may dial another member.
    pub(super) fn member_link_ended(&mut self, l: &Link, reason: &DisconnectReason) {
        let now = self.now;
        let addrs: Vec<String> = [Some(l.remote_addr.clone()), l.listen_addr().map(Into::into)]
            .into_iter()
            .flatten()
            .collect();
        let refused = l.direction == Direction::Outgoing
            && matches!(
                reason,
                DisconnectReason::PeerLeft(
                    LeaveReason::Full | LeaveReason::Refused | LeaveReason::Duplicate
                ) | DisconnectReason::HandshakeTimeout
            );
        let by_us = matches!(reason, DisconnectReason::Local(LeaveReason::Leaving));
        let left = by_us || matches!(reason, DisconnectReason::PeerLeft(LeaveReason::Leaving));
        for addr in &addrs {
            if refused {
                let r = self.uniform();
                self.members.refused(addr, now, r, &self.config);
            } else if left {
                self.members.left(addr, now, by_us, &self.config);
            }
        }
        if !left {
            self.keep_links();
        }
    }

    /// A dial to `addr` failed.
    pub(super) fn member_dial_failed(&mut self, addr: &str) {
        let r = self.uniform();
        self.members.refused(addr, self.now, r, &self.config);
    }

    /// The round of `Config::members_interval`: neighbours are members seen now, members
    /// nobody has seen for long are forgotten, each neighbour that knows other members than
    /// this node (by its digest), or whose ages are due a refresh, gets the table; the rule
    /// dials.
    pub(super) fn members_round(&mut self) {
        let now = self.now;
        if !self.members.round_due(now) {
            return;
        }
        self.members.round_held(now, &self.config);
        for link in self.links.handshaken() {
            let Some(l) = self.links.get(&link) else {
                continue;
            };
            if let (Some(addr), Some(id)) = (l.listen_addr().map(str::to_string), l.peer_id()) {
                let name = l.name().map(str::to_string);
                let peer = (id, name.as_deref());
                self.members.linked(&addr, peer, now, true, &self.config);
            }
        }
        self.members.forget_old(now, &self.config);
        let ours = self.members.digest(&self.config);
        for link in self.links.handshaken() {
            if self.members_due(link, ours) {
                self.send_members(link);
            }
        }
        self.keep_links();
    }

    /// Dials the member the link rule asks for, if any and within the cap.
    pub(super) fn keep_links(&mut self) {
        let now = self.now;
        if self.links.open_count() >= self.config.max_links {
            return;
        }
        let ring = self
            .members
            .ring(self.id(), now, |a| self.redials.contains(a));
        let successor = ring.first().map(|(a, _)| a.as_str());
        let settled = self.members.successor_settled(successor, now, &self.config);
        let (links, config) = (&self.links, &self.config);
        let Some(addr) = next_dial(
            &ring,
            |a| links.is_known_addr(a, config),
            (links.open_count(), settled),
            config,
        ) else {
            return;
        };
        if self.links.dial(&addr, now, &self.config).is_ok() {
            self.out.push(Output::Connect { addr });
        }
    }

    /// The room name of node `id`: from its hello when linked, else from the members gossip.
    pub fn name_of(&self, id: NodeId) -> Option<&str> {
        if id == self.id() {
            return self.config.name.as_deref();
        }
        let linked = self.links.iter().map(|(_, l)| l);
        linked
            .filter(|l| l.peer_id() == Some(id))
            .find_map(Link::name)
            .or_else(|| self.members.name_of(id))
    }

    /// The room name of node `id` if it tells that room apart: no other node this one knows
    /// (itself, a neighbour, a member) has the same name, as clients on one host named after
    /// it would. `None` when unknown or shared.
    pub fn unique_name_of(&self, id: NodeId) -> Option<&str> {
        let name = self.name_of(id)?;
        let me = (self.config.name.as_deref() == Some(name)).then_some(self.id());
        let linked = self.links.iter().map(|(_, l)| l);
        let neighbours = linked
            .filter(|l| l.name() == Some(name))
            .filter_map(Link::peer_id);
        let others = me
            .into_iter()
            .chain(neighbours)
            .chain(self.members.ids_named(name))
            .any(|other| other != id);
        (!others).then_some(name)
    }

    /// Whether the peer on `link` (by its listen address) is one this node left lately.
    pub(super) fn left_lately(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .and_then(Link::listen_addr)
            .is_some_and(|a| self.members.refuses(a, self.now))
    }

    /// Whether gossip's `addr` may be dialled now (not held back after a refusal).
    pub(super) fn may_dial_gossiped(&self, addr: &str) -> bool {
        !self.members.quiet(addr, self.now)
    }

    /// When the next members round is due.
    pub(super) fn members_timeout(&self) -> Option<(LocalTime, TimeoutReason)> {
        self.members
            .next_round()
            .map(|at| (at, TimeoutReason::Members))
    }
}
