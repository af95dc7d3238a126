//! Measuring a run: sync error samples, quiescence checks and command latency at the end, and
//! the debugging print.

use std::collections::BTreeSet;

use serde::Serialize;

use sync_core::{StateVersion, Timeline};

use super::{Sim, Violation};
use crate::scenario::SEC;
use crate::stats::Histogram;

impl Sim {
    /// Prints each live peer's place in the clock tree, its group-time error against the
    /// reference it follows (true time), and its controller, for debugging runs.
    pub(super) fn debug_print(&mut self) {
        let now = self.now as f64;
        for i in 0..self.cfg.peers {
            let Some(node) = self.peers[i].node.as_ref() else {
                continue;
            };
            let s = node.sync_status();
            let Some(r) = (0..self.cfg.peers).find(|&j| self.peers[j].id == s.root) else {
                continue;
            };
            let Some(root) = self.peers[r].node.as_ref() else {
                continue;
            };
            let base = root.group_time(self.local(r));
            let err = node.group_time_since(self.local(i), base);
            let (rate, last) = node.correction_status();
            // The parent link's estimate against the truth.
            let parent = s.parent.and_then(|pid| {
                let j = (0..self.cfg.peers).find(|&j| self.peers[j].id == pid)?;
                let l = node.links().into_iter().find(|l| l.peer == Some(pid))?;
                let truth = self.local(j).0 as f64 - self.local(i).0 as f64;
                let (ci, cj) = (self.peers[i].clock, self.peers[j].clock);
                let true_rate = (cj.oscillator_rate() / ci.oscillator_rate() - 1.0) * 1e6;
                Some((
                    (l.offset? - truth) / 1e3,
                    l.drift_ppm? - true_rate,
                    l.rtt? as f64 / 1e3,
                ))
            });
            let heard = self.peers[i].player.heard(now);
            eprintln!(
                "{:9.3} peer {i:3} stratum {} map {:+9.3} ppm  clock err {:+9.2} us  link (off err us, rate err ppm, rtt us) {:?}  ctl {:+8.2} ppm err {:?} us  heard {:?}",
                now / 1e9,
                s.stratum,
                s.mapping.rate_ppm,
                err / 1e3,
                parent,
                rate,
                last.map(|e| e as f64 / 1e3),
                heard.is_some()
            );
        }
    }

    pub(super) fn excluded_now(&mut self) -> bool {
        let now = self.now;
        self.command_windows.retain(|&(_, end)| end >= now);
        self.command_windows
            .iter()
            .any(|&(start, end)| start <= now && now <= end)
    }

    pub(super) fn sample(&mut self) {
        let now = self.now as f64;
        let global_excluded = self.excluded_now();
        self.out.sample_instants += 1;
        self.check_same_queue();
        let mut heard: Vec<Heard> = Vec::new();
        let mut sounding: Vec<Heard> = Vec::new();
        // Every playing peer, excluded or not: for recoveries and heal lags.
        let mut playing: Vec<(usize, (StateVersion, String), Option<f64>)> = Vec::new();
        for i in 0..self.cfg.peers {
            if !self.is_up(i) || self.peers[i].frozen {
                self.out.exclusions.down_or_stopped += 1;
                continue;
            }
            let p = &mut self.peers[i];
            let f = p.player.heard(now);
            // Positions never run backwards within one segment of playback.
            let epoch = p.player.epoch();
            if let (Some(f), Some((lf, le))) = (f, p.last_heard)
                && le == epoch
                && f < lf - 1e-6
            {
                let what = format!("heard position ran backwards: {lf} -> {f}");
                self.violation(Some(i), what);
            }
            let p = &mut self.peers[i];
            p.last_heard = f.map(|f| (f, epoch));
            if let Some(since) = p.song_start_pending
                && let Some(t0) = p.player.last_start_from_silence()
                && t0 >= since
            {
                p.warmup_until = t0 + self.cfg.warmup as f64;
                p.song_start_pending = None;
            }
            self.collect_pause_stops(i);
            let Some(f) = f else {
                self.out.exclusions.silent += 1;
                continue;
            };
            let p = &self.peers[i];
            let node = p.node.as_ref().expect("up");
            let version = node.state().version;
            let song = node.state().song.clone();
            let same_song = song
                .as_ref()
                .is_some_and(|s| p.player.song().is_some_and(|ps| ps.same_song(s)));
            type Rule = fn(&mut Exclusions) -> &mut u64;
            let rule: Option<Rule> = if global_excluded {
                Some(|x| &mut x.command_window)
            } else if p.song_start_pending.is_some() {
                Some(|x| &mut x.song_starting)
            } else if now < p.warmup_until {
                Some(|x| &mut x.warmup)
            } else if now < p.jump_only_until {
                Some(|x| &mut x.after_jump)
            } else if now < p.jump_settle_until {
                Some(|x| &mut x.after_start)
            } else if song.is_none() {
                Some(|x| &mut x.no_song)
            } else if !same_song {
                Some(|x| &mut x.song_mismatch)
            } else {
                None
            };
            let Some(song) = song.filter(|_| same_song) else {
                if let Some(r) = rule {
                    *r(&mut self.out.exclusions) += 1;
                }
                continue;
            };
            let rate = song.sample_rate as f64;
            let sound = self.sound_ns(i, now, f, rate);
            let key = (version, song.name.clone());
            playing.push((i, key, sound));
            if let Some(r) = rule {
                *r(&mut self.out.exclusions) += 1;
                continue;
            }
            heard.push((version, song.name.clone(), f / rate * 1e9, i));
            if self.cfg.device.is_some() {
                match sound {
                    Some(ns) => sounding.push((version, song.name, ns, i)),
                    None => {
                        if let Some(d) = self.out.device.as_mut() {
                            d.silent_samples += 1;
                        }
                    }
                }
            }
        }
        self.track_recoveries(now, &playing);
        self.track_heals(&playing);
        let series = self.cfg.series;
        let keep = |i: usize| series && (i < 16 || self.cfg.peers <= 64);
        let mut points = Vec::new();
        let lone = group_figures(
            &mut heard,
            [
                &mut self.out.pair_error,
                &mut self.out.spread,
                &mut self.out.peer_error,
            ],
            |i, e| {
                if keep(i) {
                    points.push((now / 1e9, i, e / 1e3));
                }
            },
        );
        self.out.exclusions.alone += lone;
        self.out.series.extend(points);
        if let Some(d) = self.out.device.as_mut() {
            group_figures(
                &mut sounding,
                [&mut d.pair_error, &mut d.spread, &mut d.peer_error],
                |_, _| {},
            );
        }
    }

    /// Closes the heal lags whose live peers now all hold one state version and sound it
    /// within 1 ms of each other.
    fn track_heals(&mut self, playing: &[(usize, (StateVersion, String), Option<f64>)]) {
        if self.open_heals.is_empty() {
            return;
        }
        let versions: BTreeSet<StateVersion> = (0..self.cfg.peers)
            .filter(|&i| !self.peers[i].frozen)
            .filter_map(|i| self.peers[i].node.as_ref())
            .map(|n| n.state().version)
            .collect();
        let songs: BTreeSet<&String> = playing.iter().map(|p| &p.1.1).collect();
        let ns: Vec<f64> = playing.iter().filter_map(|p| p.2).collect();
        let lo = ns.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ns.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let one = versions.len() == 1 && songs.len() <= 1 && (ns.len() < 2 || hi - lo <= 1e6);
        if one {
            for (k, at) in std::mem::take(&mut self.open_heals) {
                self.out.heal_lags[k] = Some(self.now - at);
            }
        }
    }

    pub(super) fn finish(&mut self) {
        // Quiescence: every component of live peers holds one state version, and every live
        // peer whose timeline plays is heard playing.
        let n = self.cfg.peers;
        let mut seen = BTreeSet::new();
        let mut components = 0;
        for i in 0..n {
            if !self.is_up(i) || seen.contains(&i) {
                continue;
            }
            components += 1;
            let comp = self.component_of(i);
            let versions: BTreeSet<StateVersion> = comp
                .iter()
                .filter_map(|&j| self.peers[j].node.as_ref())
                .map(|nd| nd.state().version)
                .collect();
            if versions.len() > 1 && self.now >= self.quiet_from + 5 * SEC {
                let what = format!(
                    "after quiescence a component of {} peers holds {} state versions",
                    comp.len(),
                    versions.len()
                );
                self.violation(Some(i), what);
            }
            seen.extend(comp);
        }
        if self.now >= self.quiet_from + 5 * SEC {
            for i in 0..n {
                if !self.is_up(i) {
                    continue;
                }
                let local = self.local(i);
                let now = self.now as f64;
                let p = &mut self.peers[i];
                let node = p.node.as_ref().expect("up");
                let plays = matches!(node.timeline_at(local), Timeline::Playing { .. });
                let heard = p.player.heard(now).is_some();
                if plays && !heard {
                    self.violation(Some(i), "timeline plays but the player is silent".into());
                }
                if !plays && heard {
                    self.violation(Some(i), "timeline is silent but the player plays".into());
                }
            }
        }
        self.out.final_live = (0..n).filter(|&i| self.is_up(i)).count();
        self.out.final_components = components;
        for i in 0..n {
            if self.is_up(i) {
                self.out.peer_up_time += self.now - self.peers[i].up_since;
            }
        }
        // Command latency: until every required peer accepted that version or a newer one, or
        // the effective instant, whichever is later. Peers that died before applying it are
        // not required.
        let mut commands = std::mem::take(&mut self.out.commands);
        for c in &mut commands {
            let mut worst = c.effective;
            let mut all = true;
            for &(p, inc) in &c.required {
                let log = self.accept_logs.get(&(p, inc));
                let applied = log.and_then(|l| l.iter().find(|(_, v)| *v >= c.version));
                match applied {
                    Some((t, _)) => worst = worst.max(*t),
                    None => {
                        let alive = self.peers[p].incarnation == inc && self.is_up(p);
                        if alive {
                            all = false;
                        }
                    }
                }
            }
            c.latency = all.then(|| worst - c.issued);
            c.converged = all && worst <= c.issued + c.lead + SEC;
        }
        for &k in &self.heal_commands {
            let c = &commands[k];
            if !c.converged {
                let what = format!(
                    "a command typed at peer {} after a heal ({:?}) did not reach every peer within its lead + 1 s",
                    c.peer, c.command
                );
                self.out.violation_count += 1;
                if self.out.violations.len() < 100 {
                    self.out.violations.push(Violation {
                        at: c.issued,
                        peer: Some(c.peer),
                        what,
                    });
                }
            }
        }
        self.out.commands = commands;
        self.close_watches(usize::MAX, self.now as f64);
        self.finish_sound();
        self.out.trace_hash = self.hash.0;
    }
}

/// A compared sample: state version, song, song position heard (ns), peer.
type Heard = (StateVersion, String, f64, usize);

/// Adds the sample's figures (pairwise error, spread, error against the median) of every group
/// of peers on one version and song to `into`, calling `point` with each peer's error (ns);
/// returns how many peers were alone in their group (nothing to compare with).
fn group_figures(
    heard: &mut [Heard],
    into: [&mut Histogram; 3],
    mut point: impl FnMut(usize, f64),
) -> u64 {
    let [pairs, spreads, peers] = into;
    heard.sort_by(|a, b| {
        (a.0, &a.1)
            .cmp(&(b.0, &b.1))
            .then(a.2.total_cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    let mut alone = 0;
    let mut start = 0;
    while start < heard.len() {
        let mut end = start + 1;
        while end < heard.len() && heard[end].0 == heard[start].0 && heard[end].1 == heard[start].1
        {
            end += 1;
        }
        let group = &heard[start..end];
        if group.len() >= 2 {
            for a in 0..group.len() {
                for b in a + 1..group.len() {
                    let d = (group[b].2 - group[a].2).abs();
                    pairs.add(d.round() as u64);
                }
            }
            let spread = group[group.len() - 1].2 - group[0].2;
            spreads.add(spread.round() as u64);
            let median = group[group.len() / 2].2;
            for (_, _, ns, i) in group {
                let e = ns - median;
                peers.add(e.abs().round() as u64);
                point(*i, e);
            }
        } else {
            alone += 1;
        }
        start = end;
    }
    alone
}

/// Peer samples left out of the error figures, by the first rule that left each out. A peer
/// sample is one peer at one sample instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Exclusions {
    /// The peer was down, or stopped (SIGSTOP).
    pub down_or_stopped: u64,
    /// Its player was silent (stopped, paused, loading): no position to compare.
    pub silent: u64,
    /// Inside a typed command's window (from typing until its effect plus its lead): every peer.
    pub command_window: u64,
    /// A song start was expected and had not begun (a `play`, a (re)started node).
    pub song_starting: u64,
    /// Within the warm-up after the song started from silence.
    pub warmup: u64,
    /// Within the settling after a jump correction lands.
    pub after_jump: u64,
    /// Within the settling after any `Start` lands (a late state, a repaired loss, a heal).
    pub after_start: u64,
    /// The node's state holds no song.
    pub no_song: u64,
    /// The player holds another song than its node's state (still loading the new one).
    pub song_mismatch: u64,
    /// The only peer on its state version and song at that instant: nothing to compare with.
    pub alone: u64,
}
