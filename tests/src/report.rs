//! The report of a run: the JSON object printed by `sim --json` and the short human table.

use serde::Serialize;

use crate::scenario::SEC;
use crate::sim::{Exclusions, Outcome, Recovery};
use crate::stats::{Histogram, Quantiles};

/// One broken invariant, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct ReportedViolation {
    /// Simulated instant, seconds.
    pub at_s: f64,
    /// Peer index, if one.
    pub peer: Option<usize>,
    /// What was wrong.
    pub what: String,
}

/// The figures heard through the simulated sound devices ([`crate::device`]).
#[derive(Clone, Debug, Serialize)]
pub struct DeviceReport {
    /// The device model of every peer (`rig`, `busy`).
    pub model: String,
    /// Peers 1..=this played through the busy device instead.
    pub busy_peers: usize,
    /// Pairwise sync error as heard (µs).
    pub sync_error_us: Quantiles,
    /// Worst pair at each sample instant as heard (µs).
    pub sync_spread_us: Quantiles,
    /// Each peer's error against the median as heard (µs).
    pub peer_error_us: Quantiles,
    /// Samples left out because a device was silent (run dry) while its player played.
    pub silent_samples: u64,
    /// Underruns over every device.
    pub underruns: u64,
    /// Changes of buffering without a break over every device.
    pub buffering_changes: u64,
    /// Each underrun: when, the slip, and the time until the sound was back within 100 µs.
    pub recoveries: Vec<Recovery>,
    /// The spread of the instants the sound stopped at pauses, through the devices (µs).
    pub pause_stop_spread_us: Quantiles,
}

/// Everything `sim` reports about a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Number of peers.
    pub peers: usize,
    /// Seed.
    pub seed: u64,
    /// Transport model (quic, stream, datagram).
    pub transport: String,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Wall-clock seconds the run took.
    pub wall_seconds: f64,
    /// Pairwise sync error (µs) over every compared pair at every sample instant.
    pub sync_error_us: Quantiles,
    /// Worst pair (max − min) at each sample instant (µs).
    pub sync_spread_us: Quantiles,
    /// Each peer's error against the median of the compared peers (µs).
    pub peer_error_us: Quantiles,
    /// Interval between sync-error samples, ms.
    pub sample_interval_ms: f64,
    /// From a command until every live peer of the issuer's component applied it (ms).
    pub command_latency_ms: Quantiles,
    /// Leads of the commands (ms).
    pub lead_ms: Quantiles,
    /// Commands typed (accepted by the node they were typed at).
    pub commands_issued: usize,
    /// Commands every required peer applied within lead + 1 s.
    pub commands_converged: usize,
    /// Commands the node refused (nothing changed).
    pub commands_refused: u64,
    /// Messages sent per live peer per simulated second.
    pub messages_per_peer_per_sec: f64,
    /// Most messages one peer sent in one simulated second.
    pub max_messages_peer_second: u64,
    /// Broken invariants.
    pub invariant_violations: u64,
    /// The first broken invariants.
    pub violations: Vec<ReportedViolation>,
    /// Jump corrections asked of players.
    pub jumps: u64,
    /// Messages dropped by nodes as bad input.
    pub bad_messages: u64,
    /// Events processed.
    pub events: u64,
    /// Live peers at the end.
    pub final_live_peers: usize,
    /// Connected components of live peers at the end.
    pub final_components: usize,
    /// For each scripted fault: ms from its heal until the live peers were one group again
    /// (`None`: not within the scenario's bound).
    pub heal_to_group_ms: Vec<Option<f64>>,
    /// Peer samples looked at: every peer at every sample instant. Each is either in
    /// `peer_error_us` or counted once in `excluded_samples`.
    pub peer_samples: u64,
    /// Peer samples each exclusion rule left out of the error figures (see [`Exclusions`]).
    pub excluded_samples: Exclusions,
    /// For each partition heal: ms until every live peer held one state version and sounded
    /// it within 1 ms of the others (`None`: not before the next partition or the end).
    pub post_heal_lag_ms: Vec<Option<f64>>,
    /// Pauses that stopped several peers' sound on the same frame: the spread of the instants their
    /// sound stopped (µs), with the ideal player.
    pub pause_stop_spread_us: Quantiles,
    /// Pauses applied more than 1 ms past their frame (late; the position went back to it), over
    /// every player since its last (re)start.
    pub late_pauses: u64,
    /// The figures heard through the simulated sound devices (`None`: the ideal player only).
    pub device: Option<DeviceReport>,
    /// Hash of the trace, hexadecimal (equal seeds and commits give equal hashes).
    pub trace_hash: String,
    /// The command that replays this run.
    pub replay: String,
}

impl Report {
    /// Builds the report of `o`, which took `wall_seconds` to run.
    pub fn new(o: &Outcome, wall_seconds: f64) -> Report {
        let mut latency = Histogram::new();
        for c in &o.commands {
            // A command that never converged counts at the end of the run.
            let l = c
                .latency
                .unwrap_or(o.config.duration.saturating_sub(c.issued));
            latency.add(l);
        }
        let sim_seconds = o.config.duration as f64 / SEC as f64;
        let up_seconds = o.peer_up_time as f64 / SEC as f64;
        Report {
            scenario: o.config.scenario.clone(),
            peers: o.config.peers,
            seed: o.config.seed,
            transport: o.config.transport.name().to_string(),
            sim_seconds,
            wall_seconds,
            sync_error_us: o.pair_error.summary(1e3),
            sync_spread_us: o.spread.summary(1e3),
            peer_error_us: o.peer_error.summary(1e3),
            sample_interval_ms: o.config.effective_sample_interval() as f64 / 1e6,
            command_latency_ms: latency.summary(1e6),
            lead_ms: o.leads.summary(1e6),
            commands_issued: o.commands.len(),
            commands_converged: o.commands.iter().filter(|c| c.converged).count(),
            commands_refused: o.commands_refused,
            messages_per_peer_per_sec: if up_seconds > 0.0 {
                o.messages as f64 / up_seconds
            } else {
                0.0
            },
            max_messages_peer_second: o.max_messages_node_second,
            invariant_violations: o.violation_count,
            violations: o
                .violations
                .iter()
                .take(20)
                .map(|v| ReportedViolation {
                    at_s: v.at as f64 / SEC as f64,
                    peer: v.peer,
                    what: v.what.clone(),
                })
                .collect(),
            jumps: o.jumps,
            bad_messages: o.bad_messages,
            events: o.events,
            final_live_peers: o.final_live,
            final_components: o.final_components,
            heal_to_group_ms: o
                .heal_times
                .iter()
                .map(|t| t.map(|t| t as f64 / 1e6))
                .collect(),
            peer_samples: o.sample_instants * o.config.peers as u64,
            excluded_samples: o.exclusions,
            post_heal_lag_ms: o
                .heal_lags
                .iter()
                .map(|t| t.map(|t| t as f64 / 1e6))
                .collect(),
            pause_stop_spread_us: o.pause_stop_spread.summary(1e3),
            late_pauses: o.late_pauses,
            device: o.device.as_ref().map(|d| DeviceReport {
                model: o.config.device.map_or("", |p| p.name).to_string(),
                busy_peers: o.config.busy_peers,
                sync_error_us: d.pair_error.summary(1e3),
                sync_spread_us: d.spread.summary(1e3),
                peer_error_us: d.peer_error.summary(1e3),
                silent_samples: d.silent_samples,
                underruns: d.underruns,
                buffering_changes: d.buffering_changes,
                recoveries: d.recoveries.clone(),
                pause_stop_spread_us: d.pause_stop_spread.summary(1e3),
            }),
            trace_hash: format!("{:016x}", o.trace_hash),
            replay: o.config.replay_command(),
        }
    }

    /// The short human table.
    pub fn table(&self) -> String {
        let q = |x: &Quantiles, unit: &str| {
            format!(
                "p50 {:>9.2} {unit}   p99 {:>9.2} {unit}   max {:>9.2} {unit}   ({} samples)",
                x.p50, x.p99, x.max, x.samples
            )
        };
        let mut s = String::new();
        s.push_str(&format!(
            "scenario {}   peers {}   seed {}   transport {}\n",
            self.scenario, self.peers, self.seed, self.transport
        ));
        s.push_str(&format!(
            "simulated {:.1} s in {:.2} s wall   {} events\n",
            self.sim_seconds, self.wall_seconds, self.events
        ));
        s.push_str(&format!(
            "sync error (pairs)   {}\n",
            q(&self.sync_error_us, "us")
        ));
        s.push_str(&format!(
            "sync spread          {}\n",
            q(&self.sync_spread_us, "us")
        ));
        s.push_str(&format!(
            "command latency      {}\n",
            q(&self.command_latency_ms, "ms")
        ));
        s.push_str(&format!(
            "lead                 {}\n",
            q(&self.lead_ms, "ms")
        ));
        s.push_str(&format!(
            "commands             {} issued, {} converged within lead + 1 s, {} refused\n",
            self.commands_issued, self.commands_converged, self.commands_refused
        ));
        s.push_str(&format!(
            "messages             {:.1} per peer per s (max {} by one peer in one s)\n",
            self.messages_per_peer_per_sec, self.max_messages_peer_second
        ));
        s.push_str(&format!(
            "jumps {}   bad messages {}   live peers at end {} in {} component(s)\n",
            self.jumps, self.bad_messages, self.final_live_peers, self.final_components
        ));
        if !self.heal_to_group_ms.is_empty() {
            let times = durations(self.heal_to_group_ms.iter().copied());
            s.push_str(&format!("heal to one group   {times}\n"));
        }
        let x = &self.excluded_samples;
        s.push_str(&format!(
            "excluded samples     down/stopped {}, silent {}, command window {}, song starting {}, warm-up {}, after jump {}, after start {}, no song {}, song mismatch {}, alone {}\n",
            x.down_or_stopped,
            x.silent,
            x.command_window,
            x.song_starting,
            x.warmup,
            x.after_jump,
            x.after_start,
            x.no_song,
            x.song_mismatch,
            x.alone
        ));
        if !self.post_heal_lag_ms.is_empty() {
            let lags = durations(self.post_heal_lag_ms.iter().copied());
            s.push_str(&format!("post-heal lag        {lags}\n"));
        }
        s.push_str(&format!(
            "pause stop spread    {}   ({} late pauses)\n",
            q(&self.pause_stop_spread_us, "us"),
            self.late_pauses
        ));
        if let Some(d) = &self.device {
            s.push_str(&format!(
                "through devices ({}, {} busy):\n  sync error (pairs) {}\n  sync spread        {}\n  pause stop spread  {}\n",
                d.model,
                d.busy_peers,
                q(&d.sync_error_us, "us"),
                q(&d.sync_spread_us, "us"),
                q(&d.pause_stop_spread_us, "us")
            ));
            let rec = durations(d.recoveries.iter().map(|r| r.recovered_ms));
            s.push_str(&format!(
                "  underruns {} (recovered to 100 us after: {}), buffering changes {}, silent samples {}\n",
                d.underruns,
                rec,
                d.buffering_changes,
                d.silent_samples
            ));
        }
        s.push_str(&format!(
            "invariant violations {}   trace {}\n",
            self.invariant_violations, self.trace_hash
        ));
        for v in &self.violations {
            s.push_str(&format!(
                "  at {:.6} s peer {:?}: {}\n",
                v.at_s, v.peer, v.what
            ));
        }
        s
    }
}

/// Durations in ms as "700 ms, never, 80 ms".
fn durations(ms: impl Iterator<Item = Option<f64>>) -> String {
    let v: Vec<String> = ms
        .map(|t| t.map_or("never".into(), |t| format!("{t:.0} ms")))
        .collect();
    v.join(", ")
}
