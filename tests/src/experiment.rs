//! What the transport experiment (`experiment` binary) reads from real runs: when a typed
//! command became audible on each peer (from `--trace` files), the windows in which sync error
//! is measured, and the quantiles it reports. Kept apart from the process driving so that the
//! rules can be tested on hand-made traces.

use music262::fleet::{TracePoint, TraceState, quantile_abs, sync_errors_us};
use serde::Serialize;

/// A command typed during a run, as the trace shows its effect.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CommandKind {
    /// `play N`: the peer loads or plays the song.
    Play,
    /// `pause`: the peer holds a frame.
    Pause,
    /// `resume`: the peer plays again.
    Resume,
    /// `seek` backwards to this many seconds of the song: the peer plays from there.
    SeekBack {
        /// Target position, seconds.
        to_s: f64,
    },
    /// `stop`.
    Stop,
}

impl CommandKind {
    /// Whether the command (re)starts playback, so that sync error is measured after it.
    pub fn starts_playback(self) -> bool {
        matches!(
            self,
            CommandKind::Play | CommandKind::Resume | CommandKind::SeekBack { .. }
        )
    }

    /// Whether trace point `p`, taken `since_ns` after the command was typed, shows it applied.
    fn shows(self, p: &TracePoint, since_ns: u64) -> bool {
        match self {
            CommandKind::Play => matches!(p.state, TraceState::Loading | TraceState::Playing),
            CommandKind::Pause => p.state == TraceState::Paused,
            CommandKind::Resume => p.state == TraceState::Playing,
            // Played from the target: at most the time since typing (plus a margin) past it,
            // which the position before a backward seek of several seconds is not.
            CommandKind::SeekBack { to_s } => {
                p.state == TraceState::Playing
                    && p.frame / f64::from(p.sample_rate.max(1))
                        < to_s + since_ns as f64 / 1e9 + 1.0
            }
            CommandKind::Stop => p.state == TraceState::Stopped,
        }
    }
}

/// The host instant (ns) of the first trace line at or after `typed_ns` that shows `kind`
/// applied; `None` if none does.
pub fn applied_at(trace: &[TracePoint], typed_ns: u64, kind: CommandKind) -> Option<u64> {
    trace
        .iter()
        .filter(|p| p.host_ns >= typed_ns)
        .find(|p| kind.shows(p, p.host_ns - typed_ns))
        .map(|p| p.host_ns)
}

/// When the last of `traces` applied the command: `None` if one never did.
pub fn converged_at(traces: &[Vec<TracePoint>], typed_ns: u64, kind: CommandKind) -> Option<u64> {
    traces
        .iter()
        .map(|t| applied_at(t, typed_ns, kind))
        .try_fold(0u64, |acc, a| a.map(|a| acc.max(a)))
}

/// Sync error of every pair of `traces` (µs, signed) at the instants of the first of each pair,
/// within `[from_ns, to_ns]`.
pub fn pairwise_errors_us(traces: &[Vec<TracePoint>], from_ns: u64, to_ns: u64) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..traces.len() {
        for j in 0..i {
            out.extend(sync_errors_us(&traces[i], &traces[j], from_ns, to_ns));
        }
    }
    out
}

/// The interval after a command in which sync error counts: from `settle_ns` after it was
/// typed, or half a second after the last peer applied it if that is later (a peer that
/// applied it late, after a loss, is command latency, reported separately), until the next
/// command is typed. `None` when nothing is left of it.
pub fn measurement_window(
    typed_ns: u64,
    converged_ns: Option<u64>,
    next_typed_ns: u64,
    settle_ns: u64,
) -> Option<(u64, u64)> {
    let from = (typed_ns + settle_ns).max(converged_ns? + 500_000_000);
    (from < next_typed_ns).then_some((from, next_typed_ns))
}

/// p50, p99 and max of |error|.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ErrorSummary {
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Largest, µs.
    pub max_us: f64,
    /// Number of compared instants (all pairs).
    pub samples: usize,
}

impl ErrorSummary {
    /// Summarises `errors`; `None` when empty.
    pub fn of(errors: &[f64]) -> Option<ErrorSummary> {
        Some(ErrorSummary {
            p50_us: quantile_abs(errors, 0.5)?,
            p99_us: quantile_abs(errors, 0.99)?,
            max_us: quantile_abs(errors, 1.0)?,
            samples: errors.len(),
        })
    }
}

/// The lead in a `status` line (`... command lead 61.234ms`), in milliseconds.
pub fn parse_lead_ms(status_line: &str) -> Option<f64> {
    let rest = status_line.split("command lead ").nth(1)?;
    let word = rest.split_whitespace().next()?;
    let (number, scale) = if let Some(v) = word.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = word.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = word.strip_suffix("ns") {
        (v, 1e-6)
    } else if let Some(v) = word.strip_suffix('s') {
        (v, 1e3)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(ms: u64, frame_s: f64, state: TraceState) -> TracePoint {
        TracePoint {
            host_ns: ms * 1_000_000,
            frame: frame_s * 48_000.0,
            sample_rate: 48_000,
            playing: state == TraceState::Playing,
            state,
            group_ns: None,
        }
    }

    /// A peer playing from `start_ms` at song second 0, seeking back at `seek_ms` to 5 s,
    /// pausing at `pause_ms`.
    fn peer(start_ms: u64, seek_ms: u64, pause_ms: u64) -> Vec<TracePoint> {
        let mut t = Vec::new();
        for ms in (0..60_000).step_by(10) {
            let p = if ms < start_ms {
                pt(ms, 0.0, TraceState::Loading)
            } else if ms < seek_ms {
                pt(ms, (ms - start_ms) as f64 / 1e3, TraceState::Playing)
            } else if ms < pause_ms {
                pt(ms, 5.0 + (ms - seek_ms) as f64 / 1e3, TraceState::Playing)
            } else {
                pt(
                    ms,
                    5.0 + (pause_ms - seek_ms) as f64 / 1e3,
                    TraceState::Paused,
                )
            };
            t.push(p);
        }
        t
    }

    #[test]
    fn a_command_converges_when_the_last_peer_shows_it() {
        let traces = vec![peer(1_000, 30_000, 50_000), peer(1_000, 30_200, 51_000)];
        let seek = CommandKind::SeekBack { to_s: 5.0 };
        assert_eq!(
            applied_at(&traces[0], 29_900_000_000, seek),
            Some(30_000_000_000)
        );
        assert_eq!(
            converged_at(&traces, 29_900_000_000, seek),
            Some(30_200_000_000)
        );
        assert_eq!(
            converged_at(&traces, 49_950_000_000, CommandKind::Pause),
            Some(51_000_000_000)
        );
        assert_eq!(
            converged_at(&traces, 59_000_000_000, CommandKind::Stop),
            None
        );
        // Before the seek the position is far past the target: not mistaken for it.
        assert_eq!(
            applied_at(&traces[0], 10_000_000_000, seek),
            Some(30_000_000_000)
        );
    }

    #[test]
    fn pairs_are_compared_and_windows_start_after_the_late_peer() {
        // The second peer plays 1 ms behind (started 1 ms later).
        let a = peer(1_000, 60_000, 60_000);
        let b: Vec<TracePoint> = peer(1_000, 60_000, 60_000)
            .into_iter()
            .map(|mut p| {
                if p.playing {
                    p.frame -= 48.0;
                }
                p
            })
            .collect();
        let e = pairwise_errors_us(&[a, b], 2_000_000_000, 3_000_000_000);
        assert!(!e.is_empty());
        let s = ErrorSummary::of(&e).unwrap();
        assert!((s.p99_us - 1_000.0).abs() < 1.0, "{s:?}");
        assert_eq!(
            measurement_window(1_000, Some(2_000_000_000), 10_000_000_000, 5_000),
            Some((2_500_000_000, 10_000_000_000))
        );
        assert_eq!(
            measurement_window(0, Some(10), 9_000_000_000, 5_000_000_000),
            Some((5_000_000_000, 9_000_000_000))
        );
        assert_eq!(measurement_window(0, None, 9_000_000_000, 1), None);
        assert_eq!(measurement_window(0, Some(0), 400_000_000, 1), None);
    }

    #[test]
    fn the_lead_is_read_from_a_status_line() {
        let l = "sync: reference 1a at stratum 1, following 1a; command lead 61.250ms";
        assert_eq!(parse_lead_ms(l), Some(61.25));
        assert_eq!(parse_lead_ms("command lead 1.500s"), Some(1_500.0));
        assert_eq!(parse_lead_ms("no lead here"), None);
    }
}
