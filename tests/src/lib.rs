//! Deterministic simulation of many Music262 peers, and the pieces it is made of.
//!
//! * [`link`]: the sans-IO network impairment (delay, jitter, random and bursty loss,
//!   duplication, reordering, bandwidth, partitions), reusable by a real impairment relay;
//! * [`clock`]: per-node clocks with offset, drift and steps;
//! * [`device`]: a simulated sound device (callback period, latency reported with noise and
//!   wander, buffering changes, underruns) and the player's estimator of it;
//! * [`player`]: a virtual player that follows playback actions and corrections like the real
//!   render core, sample-exact, so sync error is measured as heard;
//! * [`scenario`]: what a run simulates, and the presets of `docs/protocol.md` ("Targets");
//! * [`sim`]: the event loop driving unmodified sync-core nodes, checking invariants after
//!   every event and measuring sync error, command latency and message rates;
//! * [`report`] and [`plot`]: what the `sim` binary prints and draws;
//! * [`relay`]: the same link model applied to real UDP datagrams and TCP streams between
//!   processes on one host (the `relay` binary), for experiments with the real transports;
//! * [`experiment`]: what the `experiment` binary reads from those runs' traces.
//!
//! One seed drives everything: the same seed and commit give the same trace.
#![forbid(unsafe_code)]

pub mod clock;
pub mod device;
pub mod experiment;
pub mod link;
pub mod player;
pub mod plot;
pub mod relay;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod stats;

pub use report::Report;
pub use scenario::{SimConfig, Topology, Transport};
pub use sim::{Outcome, Sim};

/// Runs `config` and returns its report, measuring wall time. A panic inside the run is not
/// caught here: see [`run_checked`].
pub fn run(config: SimConfig) -> (Outcome, Report) {
    let start = std::time::Instant::now();
    let outcome = Sim::new(config).run();
    let report = Report::new(&outcome, start.elapsed().as_secs_f64());
    (outcome, report)
}

/// Runs `config`, turning a panic into an error that names the seed and the command that
/// replays the run.
pub fn run_checked(config: SimConfig) -> Result<(Outcome, Report), String> {
    let replay = config.replay_command();
    let seed = config.seed;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(config))).map_err(|e| {
        let what = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        format!("the simulation panicked ({what}) with seed {seed}; replay with:\n  {replay}")
    })
}

/// Panics, naming the seed and the command that replays the run, unless the run broke no
/// invariant. For tests: `let (_, r) = run(config); assert_clean(&r);`.
pub fn assert_clean(report: &Report) {
    if let Err(e) = check_clean(report) {
        panic!("{e}");
    }
}

/// The failure text of a run that broke invariants (its seed, replay command and the first
/// violations), or `Ok` for a clean run.
pub fn check_clean(report: &Report) -> Result<(), String> {
    if report.invariant_violations == 0 {
        return Ok(());
    }
    let mut s = format!(
        "{} invariant violation(s) in scenario {} with seed {}; replay with:\n  {}\n",
        report.invariant_violations, report.scenario, report.seed, report.replay
    );
    for v in &report.violations {
        s.push_str(&format!(
            "  at {:.6} s peer {:?}: {}\n",
            v.at_s, v.peer, v.what
        ));
    }
    Err(s)
}
