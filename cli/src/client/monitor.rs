//! The player as the loop sees it: the node's playback instructions and corrections carried
//! out, and the player sampled every tick (its events said, its output breaks and positions
//! reported to the node, a line for the trace file).

use std::sync::Arc;
use std::time::Duration;

use player::{Clock, PlaybackState, Player, PlayerEvent, SkewedClock};
use sync_core::{Correction, LocalTime, Nanos, Node, PlaybackAction, PlayerReport, SongRef};

use crate::trace::TraceWriter;

/// How often the player is sampled (trace lines, position reports).
pub const TICK: Duration = Duration::from_millis(10);

/// Every how many ticks a position report goes to the node: as near as the tick allows to the
/// spacing the node asks for (`Config::report_interval`, which its drift controller assumes).
pub fn ticks_per_report(report_interval: Nanos) -> u32 {
    let tick = TICK.as_nanos() as i64;
    ((report_interval + tick / 2) / tick).clamp(1, i64::from(u32::MAX)) as u32
}

/// Drives and samples the player.
pub struct Monitor {
    player: Arc<Player>,
    clock: Arc<SkewedClock>,
    trace: Option<TraceWriter>,
    ticks: u32,
    /// Every how many ticks the position goes to the node.
    report_every: u32,
    /// The instant of the last position reported (one report per position).
    last_report: Option<u64>,
    /// The player's count of output breaks, as last passed on to the node.
    output_breaks: u64,
}

impl Monitor {
    /// Follows and samples `player`, reporting its position to the node every `report_every`
    /// ticks; writes `trace` lines in `clock`'s base time.
    pub fn new(
        player: Arc<Player>,
        clock: Arc<SkewedClock>,
        trace: Option<TraceWriter>,
        report_every: u32,
    ) -> Self {
        Monitor {
            player,
            clock,
            trace,
            ticks: 0,
            report_every: report_every.max(1),
            last_report: None,
            output_breaks: 0,
        }
    }

    fn now(&self) -> LocalTime {
        LocalTime(self.clock.now_ns())
    }

    /// Carries out a playback instruction; a load is returned, for the fetcher.
    pub fn follow(&self, action: PlaybackAction) -> Option<SongRef> {
        match action {
            PlaybackAction::Load { song } => return Some(song),
            PlaybackAction::Start { frame, at } => {
                tracing::info!(
                    frame,
                    at = at.0,
                    in_ms = at.since(self.now()) / 1_000_000,
                    "start"
                );
                self.player.start_at(frame, at.0);
            }
            PlaybackAction::PauseAt { frame, at } => {
                tracing::info!(frame, at = at.0, "pause");
                self.player.pause_at(frame, at.0);
            }
            PlaybackAction::Stop { at } => {
                tracing::info!(at = at.0, "stop");
                self.player.stop_at(at.0);
            }
        }
        None
    }

    /// Carries out a correction of the player's rate or position.
    pub fn correct(&self, c: Correction) {
        match c {
            Correction::Rate { ppm } => self.player.set_rate_ppm(ppm),
            Correction::Jump { frame, at, error } => {
                tracing::info!(
                    frame,
                    error_us = error / 1000,
                    "re-seeking onto the timeline"
                );
                self.player.start_at(frame, at.0);
            }
        }
    }

    /// A new song is in the player: its positions start a new series.
    pub fn song_installed(&mut self) {
        self.last_report = None;
    }

    /// One tick: the player's events become lines to say (returned), its output breaks and
    /// (every `report_every` ticks) its position go to `node`, and the trace gets a line.
    /// `generation` is the fetcher's for the song installed; `loading` the song downloading.
    pub fn tick(
        &mut self,
        node: &mut Node,
        generation: Option<u64>,
        loading: Option<&SongRef>,
    ) -> Vec<String> {
        self.ticks = self.ticks.wrapping_add(1);
        let report = self.ticks.is_multiple_of(self.report_every);
        let said = self.take_events();
        let Some(pos) = self.player.position() else {
            return said;
        };
        let current = generation == Some(pos.song_generation);
        let breaks = self.player.output_breaks();
        if breaks != self.output_breaks {
            // Checked every tick, so the node hears of it before the next position.
            self.output_breaks = breaks;
            tracing::info!(breaks, "sound output broke or jumped");
            node.handle_player(
                self.now(),
                PlayerReport::OutputBreak {
                    at: LocalTime(pos.instant_ns),
                },
            );
        }
        if report
            && current
            && pos.state == PlaybackState::Playing
            && self.last_report != Some(pos.instant_ns)
        {
            self.last_report = Some(pos.instant_ns);
            node.handle_player(
                self.now(),
                PlayerReport::Position {
                    at: LocalTime(pos.instant_ns),
                    frame: pos.frame,
                },
            );
        }
        if let Some(trace) = &mut self.trace {
            if let Some(song) = self.player.song() {
                let state = if loading.is_some() {
                    "loading"
                } else {
                    match pos.state {
                        PlaybackState::Playing => "playing",
                        PlaybackState::Paused { .. } => "paused",
                        PlaybackState::Stopped => "stopped",
                    }
                };
                trace.line(
                    self.clock.to_base(pos.instant_ns),
                    pos.frame,
                    song.sample_rate,
                    state,
                    Some(node.group_time(LocalTime(pos.instant_ns)).0),
                );
            } else if let Some(f) = loading {
                trace.line(
                    player::SystemClock::monotonic_ns(),
                    0.0,
                    f.sample_rate,
                    "loading",
                    None,
                );
            }
        }
        said
    }

    /// The player's events since the last tick: logged, and the ones for the user returned.
    fn take_events(&self) -> Vec<String> {
        let mut said = Vec::new();
        for e in self.player.take_events() {
            match e {
                PlayerEvent::SinkError(m) => {
                    tracing::warn!(%m, "sound output error");
                    said.push(format!("sound output: {m}"));
                }
                PlayerEvent::SinkLost(m) => {
                    tracing::error!(%m, "sound output lost");
                    said.push(format!(
                        "sound output lost: {m}; the song goes on silently in sync"
                    ));
                }
                PlayerEvent::LateCommand {
                    scheduled_ns,
                    applied_ns,
                } => {
                    tracing::debug!(
                        late_us = (applied_ns.saturating_sub(scheduled_ns)) / 1000,
                        "player applied a command late"
                    );
                }
                other => tracing::debug!(?other, "player event"),
            }
        }
        said
    }

    /// At exit: the trace written out, and the player stopped.
    pub fn finish(&mut self) {
        if let Some(t) = &mut self.trace {
            t.flush();
        }
        self.player.stop_at(self.now().0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_go_to_the_node_as_often_as_its_config_asks() {
        let config = sync_core::Config::new(sync_core::NodeId(1));
        assert_eq!(config.report_interval, 50_000_000);
        assert_eq!(ticks_per_report(config.report_interval), 5);
        assert_eq!(ticks_per_report(14_000_000), 1);
        assert_eq!(ticks_per_report(0), 1);
    }
}
