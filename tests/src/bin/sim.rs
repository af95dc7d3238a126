//! `sim`: runs one scenario of the deterministic simulator and reports sync error, command
//! latency, message rates and invariant violations (a table, or JSON with `--json`).

use clap::Parser;
use music262_tests::device::DeviceProfile;
use music262_tests::scenario::{SCENARIOS, SEC};
use music262_tests::{SimConfig, Transport, plot, run_checked};

#[derive(Parser, Debug)]
#[command(
    name = "sim",
    about = "Deterministic simulation of many Music262 peers",
    after_help = "Scenarios: lan, wifi, wan-lossy, partition, churn, heal, scale, busy-device (see tests/README.md)."
)]
struct Args {
    /// Scenario preset.
    #[arg(long, default_value = "lan")]
    scenario: String,
    /// Number of peers (default per scenario).
    #[arg(long)]
    peers: Option<usize>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds (default per scenario).
    #[arg(long)]
    duration: Option<f64>,
    /// Transport model: quic (probes as datagrams, the rest reliable), stream, datagram.
    #[arg(long)]
    transport: Option<String>,
    /// Play through a simulated sound device (rig: the as-heard rig's idle device; busy: one
    /// that underruns every few seconds) and report the figures as heard through it too.
    #[arg(long)]
    device: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Draw sync error over time per peer to this PNG file.
    #[arg(long)]
    plot: Option<String>,
    /// Print every peer's clock and controller state to stderr every this many simulated
    /// seconds (debugging).
    #[arg(long)]
    debug_every: Option<f64>,
}

fn main() {
    let args = Args::parse();
    let mut config = match SimConfig::scenario(&args.scenario, args.peers, args.seed, args.duration)
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sim: {e} (scenarios: {})", SCENARIOS.join(", "));
            std::process::exit(2);
        }
    };
    if let Some(t) = &args.transport {
        match Transport::parse(t) {
            Ok(t) => config.transport = t,
            Err(e) => {
                eprintln!("sim: {e}");
                std::process::exit(2);
            }
        }
    }
    if let Some(d) = &args.device {
        match DeviceProfile::parse(d) {
            Ok(d) => config.device = Some(d),
            Err(e) => {
                eprintln!("sim: {e}");
                std::process::exit(2);
            }
        }
    }
    config.series = args.plot.is_some();
    if let Some(d) = args.debug_every {
        config.debug_interval = (d.max(0.001) * SEC as f64) as u64;
    }
    let duration_s = config.duration as f64 / SEC as f64;
    let (outcome, report) = match run_checked(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sim: {e}");
            std::process::exit(101);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{}: {} peers, seed {} (sync error against the median)",
            report.scenario, report.peers, report.seed
        );
        let gap = report.sample_interval_ms / 1e3;
        match plot::draw(path, &title, &outcome.series, duration_s, gap) {
            Ok(note) => {
                if let Some(n) = note {
                    eprintln!("sim: {n}");
                }
            }
            Err(e) => {
                eprintln!("sim: {e}");
                std::process::exit(1);
            }
        }
    }
    if report.invariant_violations > 0 {
        eprintln!(
            "sim: {} invariant violation(s) with seed {}; replay with:\n  {}",
            report.invariant_violations, report.seed, report.replay
        );
        std::process::exit(1);
    }
}
