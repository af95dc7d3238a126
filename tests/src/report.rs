//! The report of a run: the JSON object printed by `sim --json` and the short human table.

use serde::Serialize;

use crate::scenario::SEC;
use crate::sim::Outcome;
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
            let times: Vec<String> = self
                .heal_to_group_ms
                .iter()
                .map(|t| t.map_or("never".into(), |t| format!("{t:.0} ms")))
                .collect();
            s.push_str(&format!("heal to one group   {}\n", times.join(", ")));
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
