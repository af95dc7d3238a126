//! What the listener hears: each peer's player through its simulated sound device
//! ([`crate::device`]), the device's stalls and underruns fed to the node as a real driver
//! feeds them, the recovery after each underrun, and the instants the sound stopped at pauses.

use std::collections::BTreeMap;

use serde::Serialize;
use sync_core::{PlayerReport, StateVersion};

use super::{Ev, Sim};
use crate::device::{DeviceProfile, SimDevice};
use crate::stats::Histogram;

/// A peer is back with the group once its sound is within this of the others' median, ns.
pub const RECOVERED_NS: f64 = 100_000.0;

/// ... and stays there this long, ns (otherwise it is not back before the next underrun).
const RECOVERED_FOR_NS: f64 = 1e9;

/// One underrun and how long the peer's sound took to be back with the group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recovery {
    /// Peer index.
    pub peer: usize,
    /// Simulated instant the device ran dry, s.
    pub at_s: f64,
    /// How much later than meant the restarted stream played the player's frames, ms.
    pub slip_ms: f64,
    /// From running dry until the sound was within 100 µs of the others' median and stayed
    /// there 1 s, ms (`None`: not before the next stall or the end of the run).
    pub recovered_ms: Option<f64>,
    /// How long it was watched: from running dry until the next stall or the end, ms.
    pub watched_ms: f64,
}

/// The figures heard through the simulated devices (see [`super::Outcome::device`]).
#[derive(Clone, Debug, Default)]
pub struct DeviceOutcome {
    /// Pairwise error as heard, ns.
    pub pair_error: Histogram,
    /// Worst pair at each sample instant, ns.
    pub spread: Histogram,
    /// Per-peer error against the median, ns.
    pub peer_error: Histogram,
    /// Samples left out because the device was silent (run dry) while the player played.
    pub silent_samples: u64,
    /// Underruns, over every device.
    pub underruns: u64,
    /// Changes of buffering without a break, over every device.
    pub buffering_changes: u64,
    /// Each underrun's recovery.
    pub recoveries: Vec<Recovery>,
    /// Spread of the instants the sound stopped at a pause held by several peers, ns.
    pub pause_stop_spread: Histogram,
}

/// An underrun whose recovery is being watched.
#[derive(Clone, Copy, Debug)]
pub(super) struct Watch {
    /// Index in `DeviceOutcome::recoveries`.
    index: usize,
    peer: usize,
    dry_at: f64,
    /// Last sample instant the peer was off (or silent).
    last_bad: f64,
}

/// Where each peer's sound stopped at the pauses it played on to, keyed by (song, frame):
/// (peer, instant with the ideal player, instant through its device).
pub(super) type PauseStops = BTreeMap<(String, u64), Vec<(usize, f64, Option<f64>)>>;

impl Sim {
    /// The device peer `i` plays through, if the run models devices.
    fn device_profile(&self, i: usize) -> Option<DeviceProfile> {
        let rig = self.cfg.device?;
        Some(if i >= 1 && i <= self.cfg.busy_peers {
            DeviceProfile::busy()
        } else {
            rig
        })
    }

    /// Opens peer `i`'s device as its process starts (no draw from the run's own stream, so a
    /// run without devices is unchanged), and schedules its first stall.
    pub(super) fn open_device(&mut self, i: usize) {
        let Some(profile) = self.device_profile(i) else {
            return;
        };
        let p = &self.peers[i];
        let inc = p.incarnation;
        let seed =
            self.cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (inc as u64) << 48;
        let ppm = (p.clock.oscillator_rate() * (1.0 + p.player.device_ppm * 1e-6) - 1.0) * 1e6;
        let device = SimDevice::new(profile, ppm, self.now as f64, seed);
        if let Some(old) = self.peers[i].device.take()
            && let Some(dev) = self.out.device.as_mut()
        {
            dev.buffering_changes += old.buffering_changes();
        }
        let next = device.next_underrun();
        self.peers[i].device = Some(device);
        if next.is_finite() {
            self.schedule(next as u64, Ev::DeviceStall { node: i, inc });
        }
    }

    /// Peer `i`'s audio thread stops getting the processor: its callbacks stall.
    pub(super) fn device_stall(&mut self, i: usize, inc: u32) {
        if self.peers[i].incarnation != inc || !self.is_up(i) {
            return;
        }
        let now = self.now as f64;
        self.close_watches(i, now);
        let Some(d) = self.peers[i].device.as_mut() else {
            return;
        };
        d.stall(now);
        let gap = d.draw_stall();
        self.schedule(self.now + gap, Ev::DeviceResume { node: i, inc });
    }

    /// Peer `i`'s callbacks run again; if its device ran dry meanwhile, the renderer's frames
    /// slip and the node hears of the break, as from the real player.
    pub(super) fn device_resume(&mut self, i: usize, inc: u32) {
        if self.peers[i].incarnation != inc || !self.is_up(i) {
            return;
        }
        let now = self.now as f64;
        let Some(d) = self.peers[i].device.as_mut() else {
            return;
        };
        let underrun = d.resume(now);
        let next = d.next_underrun();
        if next.is_finite() {
            self.schedule(next as u64, Ev::DeviceStall { node: i, inc });
        }
        let Some(u) = underrun else { return };
        self.peers[i].player.slip(now, u.slip);
        let local = self.local(i);
        if let Some(n) = self.peers[i].node.as_mut() {
            n.handle_player(local, PlayerReport::OutputBreak { at: local });
        }
        self.drain(i);
        self.reschedule(i);
        let dev = self.out.device.get_or_insert_with(DeviceOutcome::default);
        dev.underruns += 1;
        dev.recoveries.push(Recovery {
            peer: i,
            at_s: u.dry_at / 1e9,
            slip_ms: u.slip / 1e6,
            recovered_ms: None,
            watched_ms: 0.0,
        });
        self.watches.push(Watch {
            index: dev.recoveries.len() - 1,
            peer: i,
            dry_at: u.dry_at,
            last_bad: u.dry_at,
        });
    }

    /// Song nanoseconds heard through peer `i`'s device at true instant `now`, given the
    /// frame its player means for now (`None`: the device is silent).
    pub(super) fn sound_ns(&mut self, i: usize, now: f64, frame: f64, rate: f64) -> Option<f64> {
        let p = &mut self.peers[i];
        let Some(d) = p.device.as_mut() else {
            return Some(frame / rate * 1e9);
        };
        let error = d.error_at(now)?;
        let speed = p.player.frames_per_ns()?;
        Some((frame + error * speed) / rate * 1e9)
    }

    /// Records the pauses peer `i`'s player played on to since the last sample, with the
    /// instant its sound stopped: the ideal player's, and its device's (the true instant whose
    /// buffer the player meant for the held frame's instant).
    pub(super) fn collect_pause_stops(&mut self, i: usize) {
        let holds = self.peers[i].player.take_holds();
        let Some(song) = self.peers[i].player.song().map(|s| s.name.clone()) else {
            return;
        };
        for (at, frame) in holds {
            let device = self.peers[i].device.as_mut().map(|d| {
                let e = d.error_at(at)?;
                let e = d.error_at(at - e)?;
                Some(at - e)
            });
            let stops = self.pause_stops.entry((song.clone(), frame)).or_default();
            if stops.iter().all(|s| s.0 != i) {
                stops.push((i, at, device.flatten()));
            }
        }
    }

    /// Follows the watched recoveries with this sample's sound: `heard` holds (peer, state
    /// version and song key, sound ns or `None` if silent) of every playing peer.
    pub(super) fn track_recoveries(
        &mut self,
        now: f64,
        heard: &[(usize, (StateVersion, String), Option<f64>)],
    ) {
        for w in &mut self.watches {
            let Some(mine) = heard.iter().find(|h| h.0 == w.peer) else {
                w.last_bad = now;
                continue;
            };
            let mut others: Vec<f64> = heard
                .iter()
                .filter(|h| h.0 != w.peer && h.1 == mine.1)
                .filter_map(|h| h.2)
                .collect();
            if others.is_empty() {
                continue;
            }
            others.sort_by(f64::total_cmp);
            let median = others[others.len() / 2];
            match mine.2 {
                Some(ns) if (ns - median).abs() <= RECOVERED_NS => {}
                _ => w.last_bad = now,
            }
        }
    }

    /// Closes peer `i`'s watched recoveries at true instant `now` (a new stall, or the end
    /// of the run for every peer when `i` is `usize::MAX`).
    pub(super) fn close_watches(&mut self, i: usize, now: f64) {
        let Some(dev) = self.out.device.as_mut() else {
            return;
        };
        self.watches.retain(|w| {
            if i != usize::MAX && w.peer != i {
                return true;
            }
            dev.recoveries[w.index].watched_ms = (now - w.dry_at) / 1e6;
            if now - w.last_bad >= RECOVERED_FOR_NS {
                dev.recoveries[w.index].recovered_ms = Some((w.last_bad - w.dry_at) / 1e6);
            }
            false
        });
    }

    /// At the end: the spread of the instants the sound stopped at each pause held by several
    /// peers, and the devices' counters.
    pub(super) fn finish_sound(&mut self) {
        for stops in self.pause_stops.values() {
            if stops.len() < 2 {
                continue;
            }
            let spread = |v: Vec<f64>| {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (hi - lo).round() as u64
            };
            self.out
                .pause_stop_spread
                .add(spread(stops.iter().map(|s| s.1).collect()));
            if let Some(dev) = self.out.device.as_mut()
                && let Some(v) = stops.iter().map(|s| s.2).collect::<Option<Vec<f64>>>()
            {
                dev.pause_stop_spread.add(spread(v));
            }
        }
        self.out.late_pauses = self.peers.iter().map(|p| p.player.late_pauses()).sum();
        if let Some(dev) = self.out.device.as_mut() {
            for p in &self.peers {
                if let Some(d) = &p.device {
                    dev.buffering_changes += d.buffering_changes();
                }
            }
        }
    }
}
