//! Commands typed by simulated users: which command a user would type, and what became of it.

use std::fmt::Write as _;

use sync_core::{Command, Mode, Timeline};

use super::{CommandRecord, Sim};
use crate::scenario::MS;

impl Sim {
    /// The command a user at peer `i` would type now, given what the peer shows.
    pub(super) fn choose_command(&mut self, i: usize) -> Command {
        if self.cfg.commands.queue {
            return self.choose_queue_command(i);
        }
        let local = self.local(i);
        let node = self.peers[i].node.as_ref().expect("up");
        let timeline = node.timeline_at(local);
        let song = node.state().song.clone();
        let loading = matches!(node.state().mode, Mode::Loading { .. });
        let stops = self.cfg.commands.stops;
        let r = self.uniform();
        let pick_song = |sim: &mut Sim| {
            let k = sim.below(sim.songs.len());
            sim.songs[k].clone()
        };
        match (song, timeline) {
            (Some(s), _) if loading => {
                let f = self.below((s.frames / 2) as usize) as u64;
                if stops && r < 0.3 {
                    Command::Stop
                } else {
                    Command::Seek { frame: f }
                }
            }
            (Some(s), Timeline::Playing { .. }) => {
                let f = self.below((s.frames / 2) as usize) as u64;
                if r < 0.35 {
                    Command::Pause
                } else if r < 0.7 {
                    Command::Seek { frame: f }
                } else if r < 0.85 || !stops {
                    let song = pick_song(self);
                    Command::Play {
                        song: Some(song),
                        frame: 0,
                    }
                } else {
                    Command::Stop
                }
            }
            (Some(s), Timeline::Paused { .. }) => {
                if r < 0.75 {
                    Command::Resume
                } else if r < 0.9 || !stops {
                    Command::Seek {
                        frame: self.below((s.frames / 2) as usize) as u64,
                    }
                } else {
                    Command::Stop
                }
            }
            _ => {
                let song = pick_song(self);
                Command::Play {
                    song: Some(song),
                    frame: 0,
                }
            }
        }
    }

    pub(super) fn issue_command(&mut self, i: usize, command: Command) {
        let local = self.local(i);
        let required: Vec<(usize, u32)> = self
            .component_of(i)
            .into_iter()
            .map(|j| (j, self.peers[j].incarnation))
            .collect();
        let node = self.peers[i].node.as_mut().expect("up");
        let lead_now = node.lead().max(0) as u64;
        let result = node.handle_command(local, command.clone(), None);
        let version = node.state().version;
        let state = node.state().clone();
        let effective = match state.mode {
            Mode::Loading { .. } => self.now,
            _ => {
                let l = node.local_time(state.effective_at());
                self.peers[i].clock.true_ceil(l).max(self.now)
            }
        };
        if self.cfg.full_trace {
            self.hash.u64(self.now);
            let _ = write!(self.hash, "{i} {command:?} {result:?}");
        }
        if self.cfg.debug_interval > 0 {
            eprintln!(
                "{:9.3} peer {i:3} types {command:?}: {result:?} -> {:?}",
                self.now as f64 / 1e9,
                state
            );
        }
        match result {
            Ok(()) => {
                let lead = if matches!(state.mode, Mode::Loading { .. }) {
                    lead_now
                } else {
                    effective - self.now
                };
                self.out.leads.add(lead);
                self.command_windows.push((self.now, effective + lead));
                self.out.commands.push(CommandRecord {
                    issued: self.now,
                    peer: i,
                    command,
                    version,
                    effective,
                    lead,
                    latency: None,
                    converged: false,
                    required,
                });
            }
            Err(_) => self.out.commands_refused += 1,
        }
        self.drain(i);
        self.reschedule(i);
    }

    pub(super) fn command(&mut self) {
        let up: Vec<usize> = (0..self.cfg.peers)
            .filter(|&i| self.is_up(i) && !self.peers[i].frozen)
            .collect();
        if up.is_empty() {
            return;
        }
        let i = up[self.below(up.len())];
        let c = self.choose_command(i);
        self.issue_command(i, c);
        if up.len() > 1 && self.uniform() < self.cfg.commands.concurrent {
            // Someone else types at about the same instant (within 2 ms), unaware of it.
            let mut j = up[self.below(up.len())];
            while j == i {
                j = up[self.below(up.len())];
            }
            let c = self.choose_command(j);
            let at = self.now + self.between(0, 2 * MS);
            let saved = self.now;
            self.now = at.min(saved + 2 * MS);
            self.issue_command(j, c);
            self.now = saved;
        }
    }
}
