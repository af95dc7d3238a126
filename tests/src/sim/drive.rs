//! Driving nodes as a real driver does: wake-ups, draining outputs (messages, dials, playback
//! actions, corrections, events) and the links between peers.

use std::fmt::Write as _;

use rand_core::Rng;
use sync_core::{
    Correction, Direction, Event, GroupState, LinkId, LocalTime, Message, Mode, Output,
    PlaybackAction,
};

use super::{Ev, Sim, Wire};
use crate::link::LinkModel;
use crate::scenario::{MS, SEC, Transport};

impl Sim {
    pub(super) fn local(&self, i: usize) -> LocalTime {
        self.peers[i].clock.local(self.now)
    }

    pub(super) fn is_up(&self, i: usize) -> bool {
        self.peers[i].node.is_some()
    }

    pub(super) fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partition_side.as_ref().is_some_and(|s| s[a] != s[b])
    }

    /// Re-arms node `i`'s wake-up at its `poll_timeout`, if that changed.
    pub(super) fn reschedule(&mut self, i: usize) {
        let p = &self.peers[i];
        let Some(node) = p.node.as_ref() else {
            return;
        };
        let want = node
            .poll_timeout()
            .map(|(l, _)| p.clock.true_ceil(l).max(self.now));
        if want != p.wake_at {
            let p = &mut self.peers[i];
            p.wake_gen += 1;
            p.wake_at = want;
            let generation = p.wake_gen;
            if let Some(t) = want {
                self.schedule(
                    t,
                    Ev::Wake {
                        node: i,
                        generation,
                    },
                );
            }
        }
    }

    /// Carries out every output of node `i`, as a driver must after each input.
    pub(super) fn drain(&mut self, i: usize) {
        let mut may_go_back = false;
        loop {
            let Some(node) = self.peers[i].node.as_mut() else {
                return;
            };
            let Some(o) = node.poll_output() else {
                break;
            };
            if self.cfg.full_trace {
                self.hash.u64(i as u64);
                let _ = write!(self.hash, "{o:?}");
            }
            if self.cfg.debug_interval > 0
                && std::env::var("MUSIC262_SIM_TRACE_PEER").ok() == Some(i.to_string())
                && !matches!(o, Output::Transmit { .. })
            {
                eprintln!("{:9.6} peer {i} output {o:?}", self.now as f64 / 1e9);
            }
            match o {
                Output::Transmit { link, message } => self.transmit(i, link, message),
                Output::Connect { addr } => self.connect(i, addr),
                Output::Disconnect { link } => self.disconnect(i, link),
                Output::Playback(action) => {
                    if let PlaybackAction::Load { song } = &action {
                        let d = self.between(self.cfg.load_delay.0, self.cfg.load_delay.1);
                        let inc = self.peers[i].incarnation;
                        self.schedule(
                            self.now + d,
                            Ev::Loaded {
                                node: i,
                                inc,
                                song: song.clone(),
                            },
                        );
                    }
                    let local = self.local(i);
                    let now = self.now as f64;
                    if let PlaybackAction::Start { at, .. } = &action {
                        // A start moves the player onto a timeline: until it lands (and briefly
                        // after, as for a jump) the peer still sounds the old position. For typed
                        // commands the command window covers this; a state that arrives late (a
                        // healed partition, a repaired loss) is covered here.
                        let p = &mut self.peers[i];
                        let at_true = p.clock.true_f64(at.0 as f64).max(now);
                        p.jump_settle_until = p
                            .jump_settle_until
                            .max(at_true + self.cfg.jump_settle as f64);
                    }
                    self.peers[i].player.apply(now, local, &action, may_go_back);
                }
                Output::Correction(c) => {
                    let local = self.local(i);
                    let now = self.now as f64;
                    if let Correction::Jump { at, .. } = c {
                        self.out.jumps += 1;
                        let p = &mut self.peers[i];
                        let at_true = p.clock.true_f64(at.0 as f64).max(now);
                        p.jump_settle_until = at_true + self.cfg.jump_settle as f64;
                        p.jump_only_until = p.jump_settle_until;
                    }
                    if let Correction::Rate { ppm } = c
                        && (!ppm.is_finite() || ppm.abs() > 500.0 + 1e-9)
                    {
                        self.violation(Some(i), format!("rate correction {ppm} ppm out of bounds"));
                    }
                    self.peers[i].player.correct(now, local, &c);
                }
                Output::Event(e) => self.on_event(i, e, &mut may_go_back),
            }
        }
        for m in self.peers[i].player.take_backward_moves() {
            self.violation(
                Some(i),
                format!(
                    "position ran backwards without a seek or jump: frame {:.1} -> {} at {:.6} s",
                    m.from,
                    m.to,
                    m.at / 1e9
                ),
            );
        }
    }

    pub(super) fn on_event(&mut self, i: usize, e: Event, may_go_back: &mut bool) {
        match e {
            Event::StateAccepted { state, .. } => {
                let inc = self.peers[i].incarnation;
                self.accept_logs
                    .entry((i, inc))
                    .or_default()
                    .push((self.now, state.version));
                let moved = timeline_moved(self.peers[i].prev_state.as_ref(), &state);
                *may_go_back |= moved;
                if matches!(state.mode, Mode::Loading { .. }) {
                    self.peers[i].song_start_pending = Some(self.now as f64);
                }
                if super::queue::is_queue_transition(&state.version) {
                    self.out.queue_transitions += 1;
                }
                self.peers[i].prev_state = Some(state);
            }
            Event::BadMessage { .. } => self.out.bad_messages += 1,
            _ => {}
        }
    }

    pub(super) fn transmit(&mut self, i: usize, link: LinkId, msg: Message) {
        self.out.messages += 1;
        let second = self.now / SEC;
        let bound = self.cfg.message_bound_per_link * self.cfg.max_links as u64 + 50;
        let p = &mut self.peers[i];
        if p.bucket.0 != second {
            p.bucket = (second, 0);
        }
        p.bucket.1 += 1;
        let count = p.bucket.1;
        self.out.max_messages_node_second = self.out.max_messages_node_second.max(count);
        if count == bound + 1 {
            self.violation(Some(i), format!("more than {bound} messages in one second"));
        }
        let Some(&w) = self.peers[i].links.get(&link) else {
            return;
        };
        let wire = &mut self.wires[w];
        if !wire.up {
            return;
        }
        let end = usize::from(wire.ends[0].0 != i);
        let (to, to_link, to_inc) = wire.ends[1 - end];
        let reliable = match self.cfg.transport {
            Transport::Stream => true,
            Transport::Datagram => false,
            Transport::Quic => !matches!(msg, Message::Probe(_) | Message::ProbeReply(_)),
        };
        let len = message_len(&msg);
        let now = self.now;
        let times: Vec<u64> = if reliable {
            wire.models[end]
                .decide_reliable(now, len)
                .into_iter()
                .collect()
        } else {
            wire.models[end].decide(now, len)
        };
        for t in times {
            self.schedule(
                t,
                Ev::Deliver {
                    to,
                    inc: to_inc,
                    link: to_link,
                    msg: msg.clone(),
                },
            );
        }
    }

    pub(super) fn connect(&mut self, i: usize, addr: String) {
        let inc_a = self.peers[i].incarnation;
        let target = self.addr_index.get(&addr).copied();
        match target {
            Some(j) if j != i && self.is_up(j) && !self.partitioned(i, j) => {
                // Connection set-up takes about one round trip.
                let rtt = 2 * self.between(self.cfg.link.base_min, self.cfg.link.base_max);
                let inc_b = self.peers[j].incarnation;
                self.schedule(
                    self.now + rtt,
                    Ev::LinkUp {
                        a: i,
                        inc_a,
                        b: j,
                        inc_b,
                        addr,
                    },
                );
            }
            Some(j) if j != i && !self.partitioned(i, j) => {
                // The host answers: nothing listens (refused after a round trip).
                let rtt = 2 * self.cfg.link.base_max;
                self.schedule(
                    self.now + rtt,
                    Ev::ConnectFailed {
                        node: i,
                        inc: inc_a,
                        addr,
                    },
                );
            }
            _ => {
                // Unreachable: the dial times out.
                self.schedule(
                    self.now + SEC,
                    Ev::ConnectFailed {
                        node: i,
                        inc: inc_a,
                        addr,
                    },
                );
            }
        }
    }

    pub(super) fn disconnect(&mut self, i: usize, link: LinkId) {
        let Some(w) = self.peers[i].links.remove(&link) else {
            return;
        };
        self.close_wire(w, i);
    }

    /// Peer `i` closes wire `w` (a disconnect, or its host resetting a dead process's
    /// connections): the other end learns of it after what was sent before it (one base
    /// delay), unless a partition loses the close (it then finds out by itself).
    pub(super) fn close_wire(&mut self, w: usize, i: usize) {
        let wire = &mut self.wires[w];
        if !wire.up {
            return;
        }
        wire.up = false;
        let end = usize::from(wire.ends[0].0 != i);
        let (to, to_link, to_inc) = wire.ends[1 - end];
        if wire.models[end].is_blocked() {
            return;
        }
        // The other end learns of it after what was sent before it (one base delay, and no
        // earlier than the stream's last message: a full peer's members and leave come first).
        let d = wire.models[end].config().base_delay;
        let at = (self.now + d).max(wire.models[end].last_stream_delivery());
        self.schedule(
            at,
            Ev::LinkDown {
                node: to,
                inc: to_inc,
                link: to_link,
            },
        );
    }

    pub(super) fn link_up(&mut self, a: usize, inc_a: u32, b: usize, inc_b: u32, addr: String) {
        let a_ok = self.peers[a].incarnation == inc_a && self.is_up(a);
        let b_ok = self.peers[b].incarnation == inc_b && self.is_up(b);
        if !a_ok {
            return;
        }
        if !b_ok || self.partitioned(a, b) {
            let local = self.local(a);
            if let Some(node) = self.peers[a].node.as_mut() {
                node.handle_connect_failed(local, &addr);
            }
            self.drain(a);
            self.reschedule(a);
            return;
        }
        let la = LinkId(self.next_link);
        let lb = LinkId(self.next_link + 1);
        self.next_link += 2;
        let base = self.between(self.cfg.link.base_min, self.cfg.link.base_max);
        let asym = (self.uniform() * 2.0 - 1.0) * self.cfg.link.asymmetry;
        let ab = (base as f64 * (1.0 + asym)) as u64;
        let ba = (base as f64 * (1.0 - asym)) as u64;
        let s1 = self.rng.next_u64();
        let s2 = self.rng.next_u64();
        let w = self.wires.len();
        self.wires.push(Wire {
            ends: [(a, la, inc_a), (b, lb, inc_b)],
            models: [
                LinkModel::new(self.cfg.link.direction(ab), s1),
                LinkModel::new(self.cfg.link.direction(ba), s2),
            ],
            up: true,
            dead: false,
        });
        self.peers[a].links.insert(la, w);
        self.peers[b].links.insert(lb, w);
        let remote_b = self.peers[b].addr.clone();
        let remote_a = format!("10.255.{}.{}:{}", a / 256, a % 256, 40_000 + w % 20_000);
        let (ta, tb) = (self.local(a), self.local(b));
        if let Some(node) = self.peers[a].node.as_mut() {
            node.handle_link_up(ta, la, remote_b, Direction::Outgoing);
        }
        if let Some(node) = self.peers[b].node.as_mut() {
            node.handle_link_up(tb, lb, remote_a, Direction::Incoming);
        }
        self.drain(a);
        self.drain(b);
        self.reschedule(a);
        self.reschedule(b);
    }
}

/// Rough encoded size of a message, for bandwidth-limited links.
fn message_len(m: &Message) -> usize {
    match m {
        Message::Hello(_) => 48,
        Message::Probe(_) => 140,
        Message::ProbeReply(_) => 160,
        Message::State(_) => 120,
        Message::Ready(_) => 24,
        Message::Gossip(a) => 16 + 24 * a.len(),
        Message::Members(m) => 16 + 36 * m.len(),
        Message::Leave(_) => 8,
    }
}

/// Whether accepting `new` after `old` moves the timeline (a seek, a resume, a new song) rather
/// than re-stating it: a start that follows may then go backwards.
fn timeline_moved(old: Option<&GroupState>, new: &GroupState) -> bool {
    let Some(old) = old else { return true };
    let (Some(os), Some(ns)) = (&old.song, &new.song) else {
        return true;
    };
    // Anchors in different time bases cannot be compared (a merge of groups): lenient.
    if !os.same_song(ns) || old.timebase != new.timebase {
        return true;
    }
    match (old.mode, new.mode) {
        (Mode::Playing { frame: f0, at: a0 }, Mode::Playing { frame: f1, at: a1 }) => {
            let expected = f0 as f64 + ns.nanos_to_frames(a1.since(a0) as f64);
            ns.frames_to_nanos((f1 as f64 - expected).abs()) > MS as f64
        }
        _ => true,
    }
}
