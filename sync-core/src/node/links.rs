//! Links and membership: the node's connections to its neighbours, their handshake, probe
//! schedule and liveness, and the dials in flight. It decides nothing about clocks or the group
//! state; it tells [`Node`](super::Node) what is due on each link and the node acts on it.

use std::collections::{BTreeMap, VecDeque};

use super::Node;
use super::api::{
    BadInput, Direction, DisconnectReason, Event, LinkId, LinkStatus, Output, PeerRole,
    TimeoutReason,
};
use super::config::Config;
use crate::clock::{ClockFilter, ClockSample};
use crate::message::{Announce, Hello, LeaveReason, Message, PROTOCOL_VERSION, ProbeReply};
use crate::peer::{PeerAddr, PeerSelector};
use crate::state::{GroupState, NodeId, StateVersion};
use crate::time::{LocalTime, Nanos};

/// One connection to one peer.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    pub(crate) remote_addr: String,
    pub(crate) direction: Direction,
    pub(crate) up_at: LocalTime,
    pub(crate) peer: Option<Hello>,
    pub(crate) last_rx: LocalTime,
    pub(crate) suspect: bool,
    pub(crate) filter: ClockFilter,
    pub(crate) next_probe: LocalTime,
    pub(crate) burst_left: u32,
    /// Probes left at the refining interval.
    pub(crate) refine_left: u32,
    pub(crate) probe_seq: u32,
    pub(crate) outstanding: VecDeque<(u32, LocalTime)>,
    pub(crate) announce: Option<Announce>,
    /// Last state pushed for anti-entropy and when, so repairs are not repeated every message.
    pub(crate) last_push: Option<(StateVersion, LocalTime)>,
    /// A state received in a time base this node could not read yet (see `Node::on_state`).
    pub(crate) unreadable_state: Option<GroupState>,
    pub(crate) probes_sent: u64,
    pub(crate) probes_answered: u64,
    /// When the member table was last sent on this link.
    pub(crate) members_told: Option<LocalTime>,
}

impl Link {
    pub(crate) fn peer_id(&self) -> Option<NodeId> {
        self.peer.as_ref().map(|h| h.node_id)
    }

    /// Where the peer accepts links, as it said in its hello.
    pub(crate) fn listen_addr(&self) -> Option<&str> {
        self.peer.as_ref().and_then(|h| h.listen_addr.as_deref())
    }

    /// The peer's room name, as it said in its hello.
    pub(crate) fn name(&self) -> Option<&str> {
        self.peer.as_ref().and_then(|h| h.name.as_deref())
    }

    /// One-way delay estimate used for the tree's delays: half the median round trip of the
    /// window (the median, not the minimum, so that the lead covers ordinary jitter).
    pub(crate) fn one_way_delay(&self) -> Option<u64> {
        let mut d: Vec<Nanos> = self.filter.samples().map(|s| s.delay).collect();
        if d.is_empty() {
            return None;
        }
        d.sort_unstable();
        Some((d[d.len() / 2].max(0) / 2) as u64)
    }
}

/// What [`Links::check`] found due on a link at a timeout.
pub(crate) enum LinkDue {
    /// The link is gone.
    Gone,
    /// Still in its handshake, within the deadline.
    Waiting,
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The peer has been silent past the removal delay.
    Silent,
    /// The peer is alive (or merely suspect).
    Alive {
        /// The peer has just become suspect.
        became_suspect: Option<NodeId>,
        /// A probe is due.
        probe_due: bool,
    },
}

/// The links of a node and the dials it has asked for.
#[derive(Debug, Default)]
pub(crate) struct Links {
    map: BTreeMap<LinkId, Link>,
    /// Addresses dialled and not yet up or failed, with when they were asked for.
    pending_connects: BTreeMap<String, LocalTime>,
}

impl Links {
    pub(crate) fn get(&self, link: &LinkId) -> Option<&Link> {
        self.map.get(link)
    }

    pub(crate) fn get_mut(&mut self, link: &LinkId) -> Option<&mut Link> {
        self.map.get_mut(link)
    }

    pub(crate) fn contains(&self, link: &LinkId) -> bool {
        self.map.contains_key(link)
    }

    /// Every link, ordered by id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&LinkId, &Link)> {
        self.map.iter()
    }

    /// Every link id, ordered.
    pub(crate) fn ids(&self) -> Vec<LinkId> {
        self.map.keys().copied().collect()
    }

    /// Ids of the links whose handshake completed, ordered.
    pub(crate) fn handshaken(&self) -> Vec<LinkId> {
        self.map
            .iter()
            .filter(|(_, l)| l.peer.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Ids of the peers behind handshaken links.
    pub(crate) fn peer_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.map.values().filter_map(Link::peer_id)
    }

    /// Announcements of every neighbour that sent one.
    pub(crate) fn announces(&self) -> impl Iterator<Item = Announce> + '_ {
        self.map.values().filter_map(|l| l.announce)
    }

    /// Snapshots of every link, ordered by link id, for this node `me` following `parent`.
    pub(crate) fn statuses(
        &self,
        now: LocalTime,
        me: NodeId,
        parent: Option<LinkId>,
    ) -> Vec<LinkStatus> {
        let role = |id: LinkId, l: &Link| {
            if l.peer.is_none() {
                PeerRole::Connecting
            } else if parent == Some(id) {
                PeerRole::Parent
            } else if l.announce.is_some_and(|a| a.parent == Some(me)) {
                PeerRole::Child
            } else {
                PeerRole::Peer
            }
        };
        self.map
            .iter()
            .map(|(&id, l)| {
                let est = l.filter.estimate();
                LinkStatus {
                    link: id,
                    remote_addr: l.remote_addr.clone(),
                    listen_addr: l.listen_addr().map(str::to_string),
                    name: l.name().map(str::to_string),
                    peer: l.peer_id(),
                    direction: l.direction,
                    rtt: est.map(|e| e.min_delay),
                    offset: est.map(|e| e.offset_at(now)),
                    drift_ppm: est.map(|e| e.rate * 1e6),
                    jitter: est.map(|e| e.jitter),
                    role: role(id, l),
                    stratum: l.announce.map(|a| a.stratum),
                    last_contact: now.since(l.last_rx),
                    suspect: l.suspect,
                    probes_sent: l.probes_sent,
                    probes_answered: l.probes_answered,
                }
            })
            .collect()
    }

    /// Number of links whose handshake completed.
    pub(crate) fn peer_count(&self) -> usize {
        self.map.values().filter(|l| l.peer.is_some()).count()
    }

    /// A link came up: it waits for the peer's hello from now.
    pub(crate) fn insert_up(
        &mut self,
        now: LocalTime,
        link: LinkId,
        remote_addr: String,
        direction: Direction,
        config: &Config,
    ) {
        if direction == Direction::Outgoing {
            self.pending_connects.remove(&remote_addr);
        }
        self.map.insert(
            link,
            Link {
                remote_addr,
                direction,
                up_at: now,
                peer: None,
                last_rx: now,
                suspect: false,
                filter: ClockFilter::new(config.filter),
                next_probe: now,
                burst_left: config.burst_probes,
                refine_left: config.refine_probes,
                probe_seq: 0,
                outstanding: VecDeque::new(),
                announce: None,
                last_push: None,
                unreadable_state: None,
                probes_sent: 0,
                probes_answered: 0,
                members_told: None,
            },
        );
    }

    /// A dial failed.
    pub(crate) fn connect_failed(&mut self, addr: &str) {
        self.pending_connects.remove(addr);
    }

    pub(crate) fn remove(&mut self, link: LinkId) -> Option<Link> {
        self.map.remove(&link)
    }

    /// A message arrived on `link` at `now`: the peer is alive. Returns the peer (if the
    /// handshake completed), or `None` for a link that is gone.
    pub(crate) fn heard(&mut self, now: LocalTime, link: LinkId) -> Option<Option<NodeId>> {
        let l = self.map.get_mut(&link)?;
        l.last_rx = now;
        l.suspect = false;
        Some(l.peer_id())
    }

    /// Another handshaken link to `peer` than `link`: its id, direction and instant up.
    pub(crate) fn other_link_to(
        &self,
        link: LinkId,
        peer: NodeId,
    ) -> Option<(LinkId, Direction, LocalTime)> {
        self.map
            .iter()
            .find(|(id, l)| **id != link && l.peer_id() == Some(peer))
            .map(|(id, l)| (*id, l.direction, l.up_at))
    }

    /// Records the peer's hello and restarts the probe burst. Returns who dialled.
    pub(crate) fn complete_handshake(
        &mut self,
        now: LocalTime,
        link: LinkId,
        hello: Hello,
        config: &Config,
    ) -> Option<Direction> {
        let l = self.map.get_mut(&link)?;
        l.peer = Some(hello);
        l.next_probe = now;
        l.burst_left = config.burst_probes;
        Some(l.direction)
    }

    /// The listen addresses of the neighbours (but `except`), sorted and without repeats.
    pub(crate) fn neighbour_addrs(&self, except: Option<LinkId>) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .filter_map(|(_, l)| l.peer.as_ref().and_then(|h| h.listen_addr.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The gossiped addresses to dial now (not known, within the link limit); they become
    /// pending. Dials older than the pending lifetime are forgotten first.
    pub(crate) fn gossiped_to_dial(
        &mut self,
        addrs: Vec<String>,
        now: LocalTime,
        config: &Config,
    ) -> Vec<String> {
        self.forget_stale_dials(now, config);
        let mut dial = Vec::new();
        for addr in addrs {
            if self.map.len() + self.pending_connects.len() >= config.max_links {
                break;
            }
            if self.is_known_addr(&addr, config) {
                continue;
            }
            self.pending_connects.insert(addr.clone(), now);
            dial.push(addr);
        }
        dial
    }

    /// Forgets dials pending longer than the pending lifetime (never answered), so that their
    /// addresses can be dialled again.
    fn forget_stale_dials(&mut self, now: LocalTime, config: &Config) {
        self.pending_connects
            .retain(|_, at| now.since(*at) < config.pending_connect_lifetime);
    }

    /// Links (handshaken or not) and dials pending: what counts against the link cap.
    pub(crate) fn open_count(&self) -> usize {
        self.map.len() + self.pending_connects.len()
    }

    /// Whether `addr` is this node's, has a link (as dialled or as the peer's listen address)
    /// or a dial pending.
    pub(crate) fn is_known_addr(&self, addr: &str, config: &Config) -> bool {
        is_own_addr(addr, config)
            || self.pending_connects.contains_key(addr)
            || self
                .map
                .values()
                .any(|l| l.remote_addr == addr || l.listen_addr() == Some(addr))
    }

    /// A local `join`: the dial becomes pending, or the reason it is refused.
    pub(crate) fn join(
        &mut self,
        addr: &PeerAddr,
        now: LocalTime,
        config: &Config,
    ) -> Result<(), &'static str> {
        self.dial(addr.as_str(), now, config)
    }

    /// Whether a link (handshaken or not) goes to `addr`, as dialled or as the peer's listen
    /// address.
    pub(crate) fn has_link_to(&self, addr: &str) -> bool {
        self.map
            .values()
            .any(|l| l.remote_addr == addr || l.listen_addr() == Some(addr))
    }

    /// A dial to `addr` (a `join`, a redial): it becomes pending, or the reason it is refused.
    pub(crate) fn dial(
        &mut self,
        addr: &str,
        now: LocalTime,
        config: &Config,
    ) -> Result<(), &'static str> {
        self.forget_stale_dials(now, config);
        if is_own_addr(addr, config) {
            return Err("that is this client's own address");
        }
        if self.is_known_addr(addr, config) {
            return Err("already connected or connecting");
        }
        if self.map.len() + self.pending_connects.len() >= config.max_links {
            return Err("the link limit is reached");
        }
        self.pending_connects.insert(addr.to_string(), now);
        Ok(())
    }

    /// The links a leaving caller outside the peer protocol means (a legacy `Exit`):
    /// those to the listen address or node id it gave, else those from its own address.
    pub(crate) fn exit_targets(
        &self,
        listen_addr: Option<&PeerAddr>,
        node_id: Option<NodeId>,
        from: Option<&PeerAddr>,
    ) -> Vec<LinkId> {
        let named: Vec<LinkId> = self
            .map
            .iter()
            .filter(|(_, l)| {
                listen_addr.is_some_and(|a| {
                    l.listen_addr() == Some(a.as_str()) || l.remote_addr == a.as_str()
                }) || node_id.is_some_and(|id| l.peer_id() == Some(id))
            })
            .map(|(&link, _)| link)
            .collect();
        match from {
            Some(from) if named.is_empty() => self
                .map
                .iter()
                .filter(|(_, l)| l.remote_addr == from.as_str())
                .map(|(&link, _)| link)
                .collect(),
            _ => named,
        }
    }

    /// The first link (by id) to a peer named by its transport address, its listen address or
    /// its node id.
    pub(crate) fn find_peer(&self, peer: &PeerSelector) -> Option<LinkId> {
        self.map
            .iter()
            .find(|(_, l)| match peer {
                PeerSelector::Addr(a) => {
                    l.remote_addr == a.as_str() || l.listen_addr() == Some(a.as_str())
                }
                PeerSelector::Node(id) => l.peer_id() == Some(*id),
            })
            .map(|(&link, _)| link)
    }

    /// The earliest probe or liveness deadline of any link, and why.
    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<(LocalTime, TimeoutReason)> {
        let mut best = None;
        for (&id, l) in &self.map {
            if l.peer.is_some() {
                best = earliest(best, Some((l.next_probe, TimeoutReason::Probe(id))));
                let check = if l.suspect {
                    l.last_rx + config.remove_after
                } else {
                    l.last_rx + config.suspect_after
                };
                best = earliest(best, Some((check, TimeoutReason::LinkCheck(id))));
            } else {
                let check = l.up_at + config.handshake_timeout;
                best = earliest(best, Some((check, TimeoutReason::LinkCheck(id))));
            }
        }
        best
    }

    /// What is due on `link` at `now`; marks a peer suspect when it becomes so.
    pub(crate) fn check(&mut self, now: LocalTime, link: LinkId, config: &Config) -> LinkDue {
        let Some(l) = self.map.get_mut(&link) else {
            return LinkDue::Gone;
        };
        let Some(peer) = l.peer_id() else {
            return if now.since(l.up_at) >= config.handshake_timeout {
                LinkDue::HandshakeTimeout
            } else {
                LinkDue::Waiting
            };
        };
        let silent = now.since(l.last_rx);
        if silent >= config.remove_after {
            return LinkDue::Silent;
        }
        let became_suspect = (silent >= config.suspect_after && !l.suspect).then(|| {
            l.suspect = true;
            peer
        });
        LinkDue::Alive {
            became_suspect,
            probe_due: l.next_probe <= now,
        }
    }

    /// Whether `link` (the parent) still probes at the refining interval: it has refining
    /// probes left and its estimate is not yet certain enough.
    pub(crate) fn refining(&self, link: LinkId, config: &Config) -> bool {
        self.map.get(&link).is_some_and(|l| {
            l.refine_left > 0
                && l.filter
                    .estimate()
                    .is_none_or(|e| e.uncertainty > config.refine_above as f64)
        })
    }

    /// Records a probe sent on `link` at `now` and schedules the next one: at the refining
    /// interval, in the burst, or at the steady interval stretched by `jitter` (a fraction).
    /// Returns the probe's sequence number.
    pub(crate) fn probe_sent(
        &mut self,
        now: LocalTime,
        link: LinkId,
        refine: bool,
        jitter: f64,
        config: &Config,
    ) -> Option<u32> {
        let l = self.map.get_mut(&link)?;
        l.probe_seq = l.probe_seq.wrapping_add(1);
        let seq = l.probe_seq;
        l.outstanding.push_back((seq, now));
        while l.outstanding.len() > config.max_outstanding_probes {
            l.outstanding.pop_front();
        }
        l.probes_sent += 1;
        if refine {
            l.refine_left -= 1;
            l.burst_left = l.burst_left.saturating_sub(1);
            l.next_probe = now + config.refine_interval;
        } else if l.burst_left > 0 {
            l.burst_left -= 1;
            l.next_probe = now + config.burst_interval;
        } else {
            l.next_probe = now + (config.probe_interval as f64 * (1.0 + jitter)) as Nanos;
        }
        Some(seq)
    }

    /// A probe reply on `link` at `now`: matched to its probe, checked and added to the link's
    /// clock filter. When one of the two clocks stepped, the link probes as if new again.
    pub(crate) fn probe_answered(
        &mut self,
        now: LocalTime,
        link: LinkId,
        r: &ProbeReply,
        config: &Config,
    ) -> Result<(), BadInput> {
        let Some(l) = self.map.get_mut(&link) else {
            return Ok(());
        };
        let Some(pos) = l.outstanding.iter().position(|(s, _)| *s == r.seq) else {
            return Err(BadInput::UnexpectedReply);
        };
        let (_, sent) = l.outstanding.remove(pos).expect("index from position");
        // The transport may have restamped t0 with the real send instant: accept an echo between
        // our stamp and the reply's arrival, and nothing else.
        if r.t0 < sent || r.t0 > now {
            return Err(BadInput::ImpossibleTimestamps);
        }
        let Some(sample) = ClockSample::from_timestamps(r.t0, r.t1, r.t2, now) else {
            return Err(BadInput::ImpossibleTimestamps);
        };
        if sample.delay > config.max_probe_delay {
            return Err(BadInput::ImpossibleTimestamps);
        }
        l.probes_answered += 1;
        let steps = l.filter.steps();
        l.filter.add(sample);
        if l.filter.steps() > steps {
            // One of the two clocks stepped and the estimate starts afresh: probe as quickly
            // as on a new link until it is good again.
            l.burst_left = config.burst_probes;
            l.refine_left = config.refine_probes;
            l.next_probe = now;
        }
        Ok(())
    }

    /// Whether `link`'s neighbour, behind at `version`, is due a push of our state (at most
    /// once per half probe interval for the same version).
    pub(crate) fn push_due(
        &self,
        link: LinkId,
        version: StateVersion,
        now: LocalTime,
        config: &Config,
    ) -> bool {
        self.map.get(&link).is_some_and(|l| {
            l.last_push
                .is_none_or(|(v, at)| v != version || now.since(at) >= config.probe_interval / 2)
        })
    }
}

/// The earlier of two deadlines; on a tie the first one (so chained machines keep their order).
pub(crate) fn earliest(
    a: Option<(LocalTime, TimeoutReason)>,
    b: Option<(LocalTime, TimeoutReason)>,
) -> Option<(LocalTime, TimeoutReason)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Whether `addr` is one this node answers on itself.
pub(crate) fn is_own_addr(addr: &str, config: &Config) -> bool {
    config.listen_addr.as_deref() == Some(addr) || config.own_addrs.iter().any(|a| a == addr)
}

// ---------------------------------------------------------------------------------------------
// What the links mean for the node: a hello admitted or refused, a link removed (and redialled
// when it dropped), gossiped addresses dialled.

impl Node {
    pub(super) fn remove_link(
        &mut self,
        link: LinkId,
        reason: DisconnectReason,
        tell_driver: bool,
    ) {
        let Some(l) = self.links.remove(link) else {
            return;
        };
        if tell_driver {
            self.out.push(Output::Disconnect { link });
        }
        self.remember_lost(&l, &reason);
        self.member_link_ended(&l, &reason);
        self.event(Event::PeerDisconnected {
            link,
            peer: l.peer_id(),
            reason,
        });
        if self.tree.parent == Some(link) {
            self.tree.parent = None;
        }
        self.select_reference();
        self.check_ready();
    }

    /// A member whose link dropped without leaving on purpose is redialled at its listen
    /// address (unless another link to it remains); a redial that never completed its
    /// handshake counts as a failed dial.
    fn remember_lost(&mut self, l: &Link, reason: &DisconnectReason) {
        let Some(peer) = l.peer_id() else {
            if l.direction == Direction::Outgoing {
                let r = self.uniform();
                self.redials
                    .failed(&l.remote_addr, self.now, r, &self.config);
            }
            return;
        };
        let dropped = matches!(
            reason,
            DisconnectReason::Closed
                | DisconnectReason::Timeout
                | DisconnectReason::PeerLeft(LeaveReason::Timeout)
        );
        let Some(addr) = l.listen_addr() else {
            return;
        };
        if dropped && !self.links.peer_ids().any(|p| p == peer) && !self.links.has_link_to(addr) {
            let r = self.uniform();
            self.redials.lost(addr, self.now, r, &self.config);
        }
    }

    /// Dials the lost members whose backoff is over.
    pub(super) fn redial_due(&mut self) {
        let now = self.now;
        for addr in self.redials.due(now, &self.config) {
            let r = self.uniform();
            if self.links.has_link_to(&addr) {
                // Back by the other end's dial (or a join), awaiting its hello.
                self.redials.put_off(&addr, now, r, &self.config);
                continue;
            }
            match self.links.dial(&addr, now, &self.config) {
                Ok(()) => {
                    self.redials.dialled(&addr, now, r, &self.config);
                    self.out.push(Output::Connect { addr });
                }
                Err(_) => self.redials.put_off(&addr, now, r, &self.config),
            }
        }
    }

    pub(super) fn close_link(&mut self, link: LinkId, why: LeaveReason) {
        if self.links.contains(&link) {
            self.send(link, Message::Leave(why));
            self.remove_link(link, DisconnectReason::Local(why), true);
        }
    }

    pub(super) fn on_hello(&mut self, now: LocalTime, link: LinkId, h: Hello) {
        if h.protocol_version != PROTOCOL_VERSION {
            self.bad(link, BadInput::ProtocolVersion(h.protocol_version));
            self.close_link(link, LeaveReason::Refused);
            return;
        }
        if h.node_id == self.id() {
            self.bad(link, BadInput::SelfLink);
            self.close_link(link, LeaveReason::Refused);
            return;
        }
        // Two links to the same node (both dialled each other): keep the one dialled by the
        // lower id, so both ends keep the same one; if the same end dialled twice, the older.
        let me = self.id();
        let dialer = |d: Direction, peer: NodeId| if d == Direction::Outgoing { me } else { peer };
        let duplicate = self.links.other_link_to(link, h.node_id);
        let this = self.links.get(&link).map(|l| (l.direction, l.up_at));
        if let (Some((other, odir, oup)), Some((dir, up))) = (duplicate, this) {
            // A link silent past the suspect delay is stale (the peer was stopped or cut off
            // and dialled again): the fresh one replaces it whoever dialled.
            let stale = self
                .links
                .get(&other)
                .is_some_and(|l| now.since(l.last_rx) >= self.config.suspect_after);
            let keep_other = !stale
                && (dialer(odir, h.node_id), oup, other) < (dialer(dir, h.node_id), up, link);
            let drop = if keep_other { link } else { other };
            if drop == link {
                self.close_link(link, LeaveReason::Duplicate);
                return;
            }
            self.close_link(drop, LeaveReason::Duplicate);
        }
        let full = self.peer_count() >= self.config.max_links;
        let Some(direction) = self
            .links
            .complete_handshake(now, link, h.clone(), &self.config)
        else {
            return;
        };
        if direction == Direction::Incoming && self.left_lately(link) {
            // A member this node left (or that left) dials back, e.g. by a redial after our
            // leave reached it as a bare close: the leave stands.
            self.close_link(link, LeaveReason::Leaving);
            return;
        }
        if full {
            // The cap holds whoever dialled. Point the newcomer at the members so the group
            // stays connected, then refuse. (Not a gossip of addresses: a newcomer dials every
            // one it gets, and in a large group of full members each refusal's gossip fed
            // another round of refusals.)
            if direction == Direction::Incoming {
                self.send_members(link);
            }
            self.close_link(link, LeaveReason::Full);
            return;
        }
        if let Some(addr) = &h.listen_addr {
            self.redials.linked(addr, now);
        }
        if let Some(l) = self.links.get(&link) {
            let dialled = l.remote_addr.clone();
            self.redials.linked(&dialled, now);
        }
        self.event(Event::PeerConnected {
            link,
            peer: h.node_id,
            listen_addr: h.listen_addr,
        });
        self.member_linked(link);
        // A newcomer learns the group state at once rather than at the next anti-entropy round.
        if self.register.state.version != StateVersion::default() {
            self.push_state(link, now);
        }
        self.send_probe(now, link);
        self.check_ready();
    }

    pub(super) fn connect_to_gossiped(&mut self, addrs: Vec<String>) {
        // Addresses that refused us lately wait for their backoff, so refusals cannot loop.
        let addrs = addrs
            .into_iter()
            .filter(|a| self.may_dial_gossiped(a))
            .collect();
        for addr in self.links.gossiped_to_dial(addrs, self.now, &self.config) {
            self.out.push(Output::Connect { addr });
        }
    }
}
