//! The [`Node`]: one peer's protocol state machine, made of four smaller ones.
//!
//! `links` keeps the connections to neighbours (handshake, probes, failure detection);
//! `clock_tree` the reference, stratum, parent and mapping to group time; `register` the
//! group state with relay, anti-entropy and readiness; `follower` the local player and its
//! drift controller. `Node` routes inputs to them, passes on what one returns for another (a
//! new time base, an accepted state and how it relates to the player's timeline), and answers
//! `poll_timeout` with the earliest of their deadlines. It reads no clock and does no I/O.

mod api;
mod clock_tree;
mod config;
mod follower;
mod keep;
mod links;
mod members;
mod queries;
mod queue_play;
mod redial;
mod register;

use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

pub use api::{
    BadInput, Command, CommandError, Correction, Counters, Direction, DisconnectReason, Event,
    LinkCommand, LinkId, LinkStatus, Output, PeerRole, PlaybackAction, PlayerReport, QueueCommand,
    SyncStatus, TimeoutReason,
};
pub use config::{Config, MAX_STRATUM};
pub use register::LoadWait;

use clock_tree::{ClockTree, MappingChange, Selection, TimebaseChange};
use follower::Follower;
use links::{Link, LinkDue, Links, earliest};
use members::Members;
use redial::Redials;
use register::{Register, Retime};

use crate::message::{Announce, Hello, LeaveReason, Message, PROTOCOL_VERSION, Probe, ProbeReply};
use crate::state::{GroupState, NodeId, SongRef, StateVersion, Timeline};
use crate::time::{GroupTime, LocalTime, MILLISECOND, Nanos};

/// The outputs waiting for the driver, in order, and how many of them are messages.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Output>,
    messages_sent: u64,
}

impl Outbox {
    pub(crate) fn push(&mut self, o: Output) {
        if matches!(o, Output::Transmit { .. }) {
            self.messages_sent += 1;
        }
        self.queue.push_back(o);
    }
}

/// One peer's protocol state machine. See the crate documentation for the contract.
#[derive(Debug)]
pub struct Node {
    config: Config,
    rng: ChaCha8Rng,
    now: LocalTime,
    links: Links,
    redials: Redials,
    members: Members,
    tree: ClockTree,
    register: Register,
    follower: Follower,
    out: Outbox,
    messages_received: u64,
    bad_messages: u64,
}

impl Node {
    /// A node with no links, stopped, its own reference, at local instant `now`. `seed` drives
    /// every random choice (probe timing jitter), so equal seeds and inputs give equal outputs.
    pub fn new(config: Config, seed: u64, now: LocalTime) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A fresh time base: the node's own clock until it joins a group.
        let timebase = rng.next_u64() | 1;
        Node {
            tree: ClockTree::new(config.node_id, now, timebase),
            register: Register::new(timebase),
            follower: Follower::new(&config),
            config,
            rng,
            now,
            links: Links::default(),
            redials: Redials::default(),
            members: Members::default(),
            out: Outbox::default(),
            messages_received: 0,
            bad_messages: 0,
        }
    }

    // ----------------------------------------------------------------------------------------
    // Outputs

    /// The next thing for the driver to do. After any `handle_*` call, call this until it
    /// returns `None`; only `handle_*` calls add to it.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.queue.pop_front()
    }

    /// The next instant at which [`Node::handle_timeout`] must be called, and why: the earliest
    /// deadline of the links, the clock tree and the register (on a tie, in that order).
    /// Changes only after a `handle_*` call. Every instant returned is later than the last
    /// `now` handled once `handle_timeout` has run for it, so a driver cannot busy-loop on it.
    pub fn poll_timeout(&self) -> Option<(LocalTime, TimeoutReason)> {
        let links = self.links.poll_timeout(&self.config);
        let links = earliest(links, self.redials.poll_timeout());
        let links = earliest(links, self.members_timeout());
        let tree = self.tree.poll_timeout(self.id(), &self.config);
        let register = self.register.poll_timeout(&self.tree.mapping, self.now);
        earliest(earliest(links, tree), register)
    }

    fn event(&mut self, e: Event) {
        self.out.push(Output::Event(e));
    }

    fn send(&mut self, link: LinkId, message: Message) {
        self.out.push(Output::Transmit { link, message });
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: links

    /// A link is up (dialled by us after [`Output::Connect`], or accepted). The node sends its
    /// hello on it.
    pub fn handle_link_up(
        &mut self,
        now: LocalTime,
        link: LinkId,
        remote_addr: String,
        direction: Direction,
    ) {
        self.advance(now);
        self.links
            .insert_up(now, link, remote_addr, direction, &self.config);
        let hello = Hello {
            node_id: self.id(),
            protocol_version: PROTOCOL_VERSION,
            listen_addr: self.config.listen_addr.clone(),
            name: self.config.name.clone(),
        };
        self.send(link, Message::Hello(hello));
    }

    /// A dial asked for with [`Output::Connect`] failed.
    pub fn handle_connect_failed(&mut self, now: LocalTime, addr: &str) {
        self.advance(now);
        self.links.connect_failed(addr);
        let r = self.uniform();
        self.redials.failed(addr, self.now, r, &self.config);
        self.member_dial_failed(addr);
    }

    /// A uniform draw in [0, 1) from the node's seeded generator.
    fn uniform(&mut self) -> f64 {
        self.rng.next_u32() as f64 / (u32::MAX as f64 + 1.0)
    }

    /// The transport lost a link.
    pub fn handle_link_down(&mut self, now: LocalTime, link: LinkId) {
        self.advance(now);
        self.remove_link(link, DisconnectReason::Closed, false);
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: messages

    /// A message from the peer on `link`, received at local instant `now` (stamped as close to
    /// the socket as the transport allows: it is the t3 of clock probes).
    pub fn handle_message(&mut self, now: LocalTime, link: LinkId, message: Message) {
        self.advance(now);
        let Some(from) = self.links.heard(now, link) else {
            return;
        };
        self.messages_received += 1;
        let handshaken = from.is_some();
        if let Some(peer) = from {
            self.tree.heard_from(peer, now);
        }
        match message {
            Message::Hello(h) => {
                if handshaken {
                    self.bad(link, BadInput::RepeatedHello);
                } else {
                    self.on_hello(now, link, h);
                }
            }
            // Probes travel as datagrams beside the stream that carries the hello, so one can
            // overtake a hello that is being retransmitted: that is not a misbehaving peer.
            Message::Probe(_) | Message::ProbeReply(_) if !handshaken => {}
            _ if !handshaken => self.bad(link, BadInput::BeforeHandshake),
            Message::Probe(p) => self.on_probe(now, link, p),
            Message::ProbeReply(r) => self.on_probe_reply(now, link, r),
            Message::State(s) => self.on_state(now, Some(link), s),
            Message::Ready(v) => {
                let peer = self.links.get(&link).and_then(Link::peer_id);
                if self.register.ready(self.id(), peer, v) {
                    self.check_ready();
                }
            }
            Message::Gossip(addrs) => {
                if addrs.len() > self.config.max_gossip_addrs {
                    self.bad(link, BadInput::OversizedGossip);
                } else {
                    self.connect_to_gossiped(addrs);
                }
            }
            Message::Members(members) => self.on_members(link, members),
            Message::Leave(reason) => {
                self.remove_link(link, DisconnectReason::PeerLeft(reason), true);
            }
        }
    }

    fn bad(&mut self, link: LinkId, reason: BadInput) {
        self.bad_messages += 1;
        self.event(Event::BadMessage { link, reason });
    }

    fn send_probe(&mut self, now: LocalTime, link: LinkId) {
        let announce = self.announce();
        let refine = self.tree.parent == Some(link) && self.links.refining(link, &self.config);
        // Jitter the steady interval so that links do not fall into lockstep.
        let jitter =
            (self.rng.next_u32() as f64 / u32::MAX as f64 - 0.5) * self.config.probe_jitter;
        let Some(seq) = self
            .links
            .probe_sent(now, link, refine, jitter, &self.config)
        else {
            return;
        };
        self.send(
            link,
            Message::Probe(Probe {
                seq,
                t0: now,
                announce,
            }),
        );
        self.maybe_send_ready(link);
    }

    /// What this node tells a neighbour about itself in a probe or a reply.
    fn announce(&self) -> Announce {
        let version = self.register.state.version;
        Announce {
            members: Some(self.members.digest(&self.config)),
            ..self
                .tree
                .announce(self.id(), self.now, &self.links, version)
        }
    }

    fn on_probe(&mut self, now: LocalTime, link: LinkId, p: Probe) {
        if self.on_announce(now, link, p.announce).is_err() {
            return;
        }
        let announce = self.announce();
        self.send(
            link,
            Message::ProbeReply(ProbeReply {
                seq: p.seq,
                t0: p.t0,
                t1: now,
                t2: self.now,
                announce,
            }),
        );
    }

    fn on_probe_reply(&mut self, now: LocalTime, link: LinkId, r: ProbeReply) {
        if !self.links.contains(&link) {
            return;
        }
        if let Err(bad) = self.links.probe_answered(now, link, &r, &self.config) {
            self.bad(link, bad);
            return;
        }
        if self.on_announce(now, link, r.announce).is_err() {
            return;
        }
        if self.tree.parent == Some(link) {
            self.update_mapping();
        }
    }

    /// Records a neighbour's announcement: liveness of its reference, anti-entropy, and a new
    /// choice of reference if warranted.
    fn on_announce(&mut self, now: LocalTime, link: LinkId, a: Announce) -> Result<(), ()> {
        if a.stratum > MAX_STRATUM {
            self.bad(link, BadInput::InvalidAnnounce("stratum"));
            return Err(());
        }
        let rate = a.mapping.rate_ppm;
        if !rate.is_finite() || rate.abs() > self.config.max_announced_rate_ppm {
            self.bad(link, BadInput::InvalidAnnounce("clock rate"));
            return Err(());
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.announce = Some(a);
        }
        self.tree.record_root(self.id(), &a, now);
        // Anti-entropy: a neighbour behind us gets our state (at most once per half interval).
        let version = self.register.state.version;
        if a.state_version < version && self.links.push_due(link, version, now, &self.config) {
            self.push_state(link, now);
        }
        self.select_reference();
        if self.tree.parent == Some(link) {
            self.update_mapping();
        }
        // The announcement may say how to read a state that arrived before it.
        if let Some(st) = self
            .links
            .get_mut(&link)
            .and_then(|l| l.unreadable_state.take())
            && self.tree.can_read(st.timebase, &a)
        {
            self.on_state(now, Some(link), st);
        }
        Ok(())
    }

    fn push_state(&mut self, link: LinkId, now: LocalTime) {
        let v = self.register.state.version;
        if let Some(l) = self.links.get_mut(&link) {
            l.last_push = Some((v, now));
        }
        self.send(link, Message::State(self.register.state.clone()));
    }

    // ----------------------------------------------------------------------------------------
    // Clock tree: what its changes mean for the rest of the node

    fn select_reference(&mut self) {
        let Selection {
            fresh_timebase,
            reference,
            mapping,
        } = self.tree.select_reference(
            self.id(),
            self.now,
            &self.links,
            &self.config,
            &mut self.rng,
        );
        if let Some(change) = fresh_timebase {
            self.timebase_changed(change);
        }
        if let Some(r) = reference {
            self.event(Event::ReferenceChanged {
                root: r.root,
                stratum: r.stratum,
                parent: r.parent,
            });
        }
        self.mapping_changed(mapping);
    }

    fn update_mapping(&mut self) {
        let change = self
            .tree
            .update_mapping(self.now, &self.links, &self.config);
        self.mapping_changed(change);
    }

    fn mapping_changed(&mut self, change: Option<MappingChange>) {
        match change {
            Some(MappingChange::Timebase(change)) => self.timebase_changed(change),
            Some(MappingChange::Stepped(by)) => self.event(Event::GroupTimeStepped { by }),
            None => {}
        }
    }

    /// The clock tree moved to another time base: the state held is converted so that local
    /// playback does not move.
    fn timebase_changed(&mut self, TimebaseChange { base, step }: TimebaseChange) {
        self.register.convert(step, base);
        if step.abs() > self.config.step_threshold {
            self.event(Event::GroupTimeStepped { by: step });
        }
        // Every node that converts uses its own estimate of the step; re-stating the converted
        // state as a revision of the same command lets the register pick one, so the group
        // holds identical anchors (the player follows without a re-seek), and no command issued
        // meanwhile is undone (a revision loses to any later command).
        let state = &self.register.state;
        if state.version != StateVersion::default() {
            let state = GroupState {
                version: state.version.revised(self.id()),
                ..state.clone()
            };
            self.accept_state(state, None, 0);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Group state

    fn on_state(&mut self, now: LocalTime, from: Option<LinkId>, s: GroupState) {
        let Some(by) = self
            .tree
            .conversion(s.timebase, from, &self.links, self.now)
        else {
            // In a time base this node cannot read yet: typically the sender has just moved to a
            // new one and its first announcement in it is still on the way. Keep it for that
            // link and try again when the link's next announcement arrives.
            self.register.states_foreign += 1;
            if let Some(l) = from.and_then(|l| self.links.get_mut(&l)) {
                l.unreadable_state = Some(s);
            }
            return;
        };
        let mapping = self.tree.mapping;
        let s = if by == 0 && s.timebase == mapping.timebase {
            s
        } else {
            s.converted(by, mapping.timebase)
        };
        if let Err(why) = self.register.validate(&s, &mapping, self.now, &self.config) {
            if let Some(link) = from {
                self.bad(link, BadInput::InvalidState(why));
            }
            return;
        }
        if !self.register.is_newer(&s) {
            return;
        }
        let late_by = match s.mode {
            crate::state::Mode::Loading { .. } => 0,
            _ => self.group_time(now).since(s.effective_at()).max(0),
        };
        self.accept_state(s, from, late_by);
    }

    /// Installs a newer state, relays it, and applies it to the local player.
    fn accept_state(&mut self, s: GroupState, from: Option<LinkId>, late_by: Nanos) {
        let playing = self.follower.playing;
        let tolerance = self.config.retime_tolerance;
        let retime =
            self.register
                .accept(s.clone(), &self.tree.mapping, self.now, playing, tolerance);
        self.event(Event::StateAccepted {
            state: s,
            from,
            late_by,
        });
        let now = self.now;
        for link in self.links.handshaken() {
            if Some(link) != from {
                self.push_state(link, now);
            }
        }
        self.apply_state(retime);
        self.check_ready();
    }

    /// Tells the player what the current state means for it; `retime` is what accepting the
    /// state said of it (default when the state is applied again).
    fn apply_state(&mut self, retime: Retime) {
        let (state, mapping) = (&self.register.state, &self.tree.mapping);
        let ready = self.follower.apply(
            state,
            mapping,
            self.now,
            &self.config,
            retime,
            &mut self.out,
        );
        if ready {
            self.send_ready_to_all();
        }
    }

    // ----------------------------------------------------------------------------------------
    // Readiness (an initiator waits a bounded time for its peers to load)

    fn maybe_send_ready(&mut self, link: LinkId) {
        let state = &self.register.state;
        if let crate::state::Mode::Loading { .. } =
            register::effective_mode(state, &self.tree.mapping, self.now)
            && self.follower.has_song_of(state)
            && state.version.origin != self.id()
        {
            self.send(link, Message::Ready(state.version));
        }
    }

    fn send_ready_to_all(&mut self) {
        let version = self.register.state.version;
        if version.origin == self.id() {
            self.check_ready();
            return;
        }
        for link in self.links.handshaken() {
            self.send(link, Message::Ready(version));
        }
    }

    /// The initiator of a loading state starts playback as soon as it and all its peers are
    /// ready (the deadline in the state covers peers that never are).
    fn check_ready(&mut self) {
        let loaded = self.follower.has_song_of(&self.register.state);
        let lead = self.lead();
        if let Some(state) = self.register.start_when_ready(
            self.config.node_id,
            self.links.peer_ids(),
            loaded,
            &self.tree.mapping,
            self.now,
            lead,
        ) {
            self.accept_state(state, None, 0);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: commands

    /// A local command for the group's playback (typed, or from a legacy caller). `delay`
    /// postpones the effective instant beyond the lead (the legacy `wait_time_ms`). Refused
    /// commands change nothing.
    pub fn handle_command(
        &mut self,
        now: LocalTime,
        command: Command,
        delay: Option<Nanos>,
    ) -> Result<(), CommandError> {
        self.advance(now);
        let delay = delay.unwrap_or(0).max(0);
        if delay > self.config.max_future {
            return Err(CommandError::TooFarAhead(delay / MILLISECOND));
        }
        let effective = self.group_time(now) + self.lead().max(delay);
        let (song, mode, queue) = self.register.decide(
            &command,
            &self.tree.mapping,
            now,
            effective,
            delay,
            self.follower.loaded(),
            self.links.peer_count() == 0,
            &self.config,
        )?;
        let state = GroupState {
            version: self.register.next_version(self.config.node_id),
            song,
            mode,
            timebase: self.tree.mapping.timebase,
            queue,
        };
        self.accept_state(state, None, 0);
        Ok(())
    }

    /// A local command about the links. Refused commands change nothing.
    pub fn handle_link_command(
        &mut self,
        now: LocalTime,
        command: LinkCommand,
    ) -> Result<(), CommandError> {
        self.advance(now);
        match command {
            LinkCommand::Join { addr } => match self.links.join(&addr, self.now, &self.config) {
                Ok(()) => {
                    let addr = addr.as_str().to_string();
                    self.out.push(Output::Connect { addr });
                    Ok(())
                }
                Err(reason) => Err(CommandError::Join {
                    addr: addr.as_str().to_string(),
                    reason,
                }),
            },
            LinkCommand::Leave { peer } => match self.links.find_peer(&peer) {
                Some(link) => {
                    self.close_link(link, LeaveReason::Leaving);
                    Ok(())
                }
                None => Err(CommandError::UnknownPeer(peer.to_string())),
            },
            LinkCommand::Gossip => {
                for link in self.links.handshaken() {
                    let addrs = self.links.neighbour_addrs(Some(link));
                    self.send(link, Message::Gossip(addrs));
                }
                Ok(())
            }
            LinkCommand::Exit {
                listen_addr,
                node_id,
                from,
            } => {
                let targets = self
                    .links
                    .exit_targets(listen_addr.as_ref(), node_id, from.as_ref());
                for link in targets {
                    self.close_link(link, LeaveReason::Leaving);
                }
                Ok(())
            }
            LinkCommand::PeerAddresses { addrs } => {
                let max = self.config.max_gossip_addrs;
                let addrs = addrs.iter().take(max).map(|a| a.as_str().to_string());
                self.connect_to_gossiped(addrs.collect());
                Ok(())
            }
        }
    }

    /// Closes every link politely (the node is shutting down).
    pub fn shutdown(&mut self, now: LocalTime) {
        self.advance(now);
        for link in self.links.ids() {
            self.close_link(link, LeaveReason::Leaving);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: player

    /// A report from the player.
    pub fn handle_player(&mut self, now: LocalTime, report: PlayerReport) {
        self.advance(now);
        match report {
            PlayerReport::Loaded { song } => {
                self.follower.song_loaded(song);
                self.apply_state(Retime::default());
                self.check_ready();
            }
            PlayerReport::LoadFailed { song, reason } => {
                if self.follower.load_failed(&song, &self.register.state) {
                    self.event(Event::LoadFailed { song, reason });
                }
            }
            PlayerReport::Position { at, frame } => self.follower.position(
                &self.register.state,
                &self.tree.mapping,
                now,
                &self.config,
                (at, frame),
                &mut self.out,
            ),
            PlayerReport::OutputBreak { at } => self.follower.output_broke(at, &self.config),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Inputs: time

    fn advance(&mut self, now: LocalTime) {
        // Time never runs backwards inside the node, whatever the driver passes.
        if now > self.now {
            self.now = now;
        }
    }

    /// Time has reached `now`: send due probes, detect silent peers and a dead reference, and
    /// act on states whose instants have come.
    pub fn handle_timeout(&mut self, now: LocalTime) {
        self.advance(now);
        let now = self.now;
        for id in self.links.ids() {
            match self.links.check(now, id, &self.config) {
                LinkDue::Gone | LinkDue::Waiting => {}
                LinkDue::HandshakeTimeout => {
                    self.remove_link(id, DisconnectReason::HandshakeTimeout, true);
                }
                LinkDue::Silent => {
                    self.send(id, Message::Leave(LeaveReason::Timeout));
                    self.remove_link(id, DisconnectReason::Timeout, true);
                }
                LinkDue::Alive {
                    became_suspect,
                    probe_due,
                } => {
                    if let Some(peer) = became_suspect {
                        self.event(Event::PeerSuspect { link: id, peer });
                    }
                    if probe_due {
                        self.send_probe(now, id);
                    }
                }
            }
        }
        self.redial_due();
        self.members_round();
        if self.tree.reference_lost(self.id(), now, &self.config) {
            self.select_reference();
        }
        self.tree.forget_old_roots(now, &self.config);

        let mapping = self.tree.mapping;
        let me = self.id();
        self.register
            .deadline_passed(me, self.links.peer_ids(), &mapping, now);
        if let Some(version) = self.register.effective_due(&mapping, now) {
            if matches!(
                self.register.state.mode,
                crate::state::Mode::Paused { .. } | crate::state::Mode::Stopped { .. }
            ) {
                self.follower.stopped();
            }
            self.event(Event::StateEffective { version });
        }
        // A loading state past its deadline now plays.
        self.apply_state(Retime::default());
        let mapping = self.tree.mapping;
        if let Some(song) = self.register.song_end_due(&mapping, now)
            && !self.advance_queue(now)
        {
            self.follower.stopped();
            self.event(Event::SongFinished { song });
        }
    }
}
