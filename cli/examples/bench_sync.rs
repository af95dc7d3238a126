//! Benchmark: sync error of three real `music_client` processes on this machine, their sync
//! clocks skewed like three computers (offsets of ±2 s, drifts of ±200 ppm), over gRPC or QUIC.
//!
//! ```sh
//! cargo build --release -p music262 --bins --examples
//! target/release/examples/bench_sync --transport grpc --seconds 60 --out bench/results
//! ```
//!
//! A server (one generated song, long enough) and three clients start (B joins A, C joins B;
//! gossip may add the A–C link), A types `play`, they play for `--seconds`, C types `pause`, B
//! types `resume`, A types `stop`. The sync error of each pair is read from the clients' trace
//! files (`--trace`, one line per 10 ms) over the `play` run, skipping its first 5 s (clock sync
//! converging from seconds of offset). The command lead is what each client's `status` reports;
//! the delay from typing `pause` and `resume` to the first trace line of each client in the new
//! state is measured too (it adds the trace's 10 ms grain and the stdin pipe to the lead).
//! Results go to `<out>/sync-<transport>.json` and the error series to `sync-<transport>.csv`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::write_song;
use music262::fleet::{
    self, Proc, TraceState, pause_spread_us, quantile_abs, read_trace, sync_errors_us,
};
use player::SystemClock;

mod common;

#[derive(Parser, Debug)]
#[command(
    about = "Sync error p50/p99/max and command lead of three skewed music clients (real \
             processes) over gRPC or QUIC"
)]
struct Args {
    /// Transport of the links between the clients: grpc or quic.
    #[arg(long, default_value = "grpc")]
    transport: String,
    /// Seconds of playback measured (the first 5 s after the start are excluded).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Folder for the results (JSON summary and CSV error series).
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

/// Name, clock offset (ms) and drift (ppm) of each client.
const PEERS: [(&str, f64, f64); 3] = [
    ("A", 0.0, 0.0),
    ("B", 2_000.0, 200.0),
    ("C", -2_000.0, -200.0),
];
const SETTLE_NS: u64 = 5_000_000_000;

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("bench_sync: {e}");
        std::process::exit(1);
    }
}

/// Parses a duration as the client prints it (`sync_core::time::format_nanos`: `850ns`,
/// `35.2us`, `20.000ms`, `1.500s`), ignoring what follows it.
fn parse_duration_ns(text: &str) -> Option<f64> {
    let text = text.trim_start();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let value: f64 = text[..split].trim().parse().ok()?;
    let unit: String = text[split..]
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let scale = match unit.as_str() {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some(value * scale)
}

struct Peer {
    name: &'static str,
    proc: Proc,
    addr: String,
    trace: PathBuf,
}

fn run(args: &Args) -> Result<(), String> {
    if !matches!(args.transport.as_str(), "grpc" | "quic") {
        return Err(format!(
            "unknown transport `{}` (grpc or quic)",
            args.transport
        ));
    }
    let server_bin = fleet::sibling_binary("music_server")?;
    let client_bin = fleet::sibling_binary("music_client")?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = fleet::free_port().map_err(|e| e.to_string())?;
    let songs = dir.path().join("songs");
    std::fs::create_dir_all(&songs).map_err(|e| e.to_string())?;
    let song_seconds = u32::try_from(args.seconds + 30).map_err(|_| "--seconds is too large")?;
    write_song(&songs.join("bench.wav"), song_seconds, 48_000)?;
    let mut server = fleet::start_server(
        &server_bin,
        port,
        Some(&songs),
        &dir.path().join("server.log"),
    )?;

    let mut peers = Vec::new();
    for (name, offset_ms, drift_ppm) in PEERS {
        let p2p = fleet::free_port().map_err(|e| e.to_string())?;
        let addr = format!("127.0.0.1:{p2p}");
        let client = fleet::SkewedClient {
            name,
            server_port: port,
            p2p_port: p2p,
            advertise: &addr,
            transport: &args.transport,
            sink: "null",
            dir: dir.path(),
            offset_ms,
            drift_ppm,
        };
        let trace = client.trace();
        let (proc, _) = client.start(&client_bin)?;
        peers.push(Peer {
            name,
            proc,
            addr,
            trace,
        });
    }
    for (from, to) in [(1, 0), (2, 1)] {
        let target = peers[to].addr.clone();
        peers[from].proc.send(&format!("join {target}"));
        peers[from].proc.expect(
            &format!("connected to peer {target}"),
            Duration::from_secs(20),
        )?;
    }
    std::thread::sleep(Duration::from_secs(3));

    let issued = SystemClock::monotonic_ns();
    peers[0].proc.send("play 1");
    for s in 0..args.seconds + 5 {
        std::thread::sleep(Duration::from_secs(1));
        if s % 10 == 9 {
            eprintln!("{}: {} of {} s", args.transport, s + 1, args.seconds + 5);
        }
    }
    let ended = SystemClock::monotonic_ns();
    let mut leads = Vec::new();
    for p in &mut peers {
        let lines = p.proc.ask("status", Duration::from_millis(500));
        let lead = lines
            .iter()
            .find_map(|l| l.split("command lead ").nth(1).and_then(parse_duration_ns));
        leads.push(lead);
    }
    // Pause and resume, typed on other clients: how long until each client is in the new state.
    let mut applied = Vec::new();
    let mut pause_frames: Vec<Option<f64>> = Vec::new();
    // How far apart the sound stopped (µs), from the traces: the instant each frame reached
    // the frame held.
    let mut pause_sound_spread: Option<f64> = None;
    for (who, command, state) in [
        (2, "pause", TraceState::Paused),
        (1, "resume", TraceState::Playing),
    ] {
        let typed = SystemClock::monotonic_ns();
        peers[who].proc.send(command);
        std::thread::sleep(Duration::from_secs(2));
        let per_peer: Vec<Option<f64>> = peers
            .iter()
            .map(|p| {
                read_trace(&p.trace)
                    .iter()
                    .find(|x| x.host_ns >= typed && x.state == state)
                    .map(|x| (x.host_ns - typed) as f64 / 1e6)
            })
            .collect();
        if state == TraceState::Paused {
            // The frame each client holds once paused: the pause must land on the same one.
            pause_frames = peers
                .iter()
                .map(|p| {
                    read_trace(&p.trace)
                        .iter()
                        .find(|x| x.host_ns >= typed && x.state == state)
                        .map(|x| x.frame)
                })
                .collect();
            let traces: Vec<_> = peers.iter().map(|p| read_trace(&p.trace)).collect();
            pause_sound_spread = pause_spread_us(&traces, typed);
        }
        applied.push((command, per_peer));
    }
    peers[0].proc.send("stop");
    std::thread::sleep(Duration::from_millis(500));
    for p in &mut peers {
        p.proc.send("quit");
    }
    for p in &mut peers {
        if p.proc.wait_exit(Duration::from_secs(5)).is_none() {
            p.proc.kill();
        }
    }
    server.kill();

    let traces: Vec<_> = peers.iter().map(|p| read_trace(&p.trace)).collect();
    let from = issued + SETTLE_NS;
    let mut all = Vec::new();
    let mut csv = String::from("t_s,pair,error_us\n");
    let mut pairs = Vec::new();
    for (i, j) in [(1, 0), (2, 0), (2, 1)] {
        let errors = sync_errors_us(&traces[i], &traces[j], from, ended);
        let times: Vec<u64> = traces[i]
            .iter()
            .filter(|p| p.playing && p.host_ns >= from && p.host_ns <= ended)
            .map(|p| p.host_ns)
            .collect();
        let name = format!("{}-{}", peers[i].name, peers[j].name);
        // `sync_errors_us` skips instants the other trace cannot interpolate; pair times up
        // only when nothing was skipped, else write the errors without a time.
        for (k, e) in errors.iter().enumerate() {
            let t = if times.len() == errors.len() {
                format!("{:.3}", (times[k] - issued) as f64 / 1e9)
            } else {
                String::new()
            };
            csv.push_str(&format!("{t},{name},{e:.2}\n"));
        }
        let q = |x| quantile_abs(&errors, x).unwrap_or(f64::NAN);
        println!(
            "{:5} {name}: p50 {:6.1} us  p99 {:6.1} us  max {:6.1} us  ({} instants)",
            args.transport,
            q(0.5),
            q(0.99),
            q(1.0),
            errors.len()
        );
        pairs.push(format!(
            "{{\"pair\":\"{name}\",\"p50_us\":{:.2},\"p99_us\":{:.2},\"max_us\":{:.2},\"n\":{}}}",
            q(0.5),
            q(0.99),
            q(1.0),
            errors.len()
        ));
        all.extend(errors);
    }
    if all.is_empty() {
        return Err("the clients never played together (see the logs)".into());
    }
    let q = |x| quantile_abs(&all, x).unwrap_or(f64::NAN);
    let fmt_opt =
        |v: &Option<f64>, scale: f64| v.map_or("null".to_string(), |x| format!("{:.2}", x / scale));
    let applied_text: Vec<String> = applied
        .iter()
        .map(|(c, v)| {
            format!(
                "{c} {} ms",
                v.iter()
                    .map(|x| fmt_opt(x, 1.0))
                    .collect::<Vec<_>>()
                    .join(" / ")
            )
        })
        .collect();
    let held: Vec<f64> = pause_frames.iter().flatten().copied().collect();
    let pause_spread = (held.len() == pause_frames.len() && !held.is_empty()).then(|| {
        held.iter().copied().fold(f64::MIN, f64::max)
            - held.iter().copied().fold(f64::MAX, f64::min)
    });
    println!(
        "{:5} pause held at frames {} (spread {} frames); the sound stopped within {} us",
        args.transport,
        pause_frames
            .iter()
            .map(|f| f.map_or("-".to_string(), |f| format!("{f:.0}")))
            .collect::<Vec<_>>()
            .join(" / "),
        pause_spread.map_or("-".to_string(), |s| format!("{s:.0}")),
        pause_sound_spread.map_or("-".to_string(), |s| format!("{s:.1}"))
    );
    println!(
        "{:5} all pairs: p50 {:.1} us  p99 {:.1} us  max {:.1} us; command lead {} ms (status of A); typed to applied on A / B / C: {}",
        args.transport,
        q(0.5),
        q(0.99),
        q(1.0),
        fmt_opt(&leads[0], 1e6),
        applied_text.join(", ")
    );
    let json = format!(
        "{{\"transport\":\"{}\",\"seconds\":{},\"offsets_ms\":[0,2000,-2000],\"drifts_ppm\":[0,200,-200],\
         \"p50_us\":{:.2},\"p99_us\":{:.2},\"max_us\":{:.2},\"n\":{},\"pairs\":[{}],\
         \"pause_frame_spread\":{},\"pause_sound_spread_us\":{},\"lead_ms\":[{}],\"typed_to_applied_ms\":{{{}}}}}\n",
        args.transport,
        args.seconds,
        q(0.5),
        q(0.99),
        q(1.0),
        all.len(),
        pairs.join(","),
        pause_spread.map_or("null".to_string(), |s| format!("{s:.0}")),
        pause_sound_spread.map_or("null".to_string(), |s| format!("{s:.2}")),
        leads
            .iter()
            .map(|l| fmt_opt(l, 1e6))
            .collect::<Vec<_>>()
            .join(","),
        applied
            .iter()
            .map(|(c, v)| format!(
                "\"{c}\":[{}]",
                v.iter()
                    .map(|x| fmt_opt(x, 1.0))
                    .collect::<Vec<_>>()
                    .join(",")
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let base = args.out.join(format!("sync-{}", args.transport));
    std::fs::write(base.with_extension("json"), json).map_err(|e| e.to_string())?;
    std::fs::write(base.with_extension("csv"), csv).map_err(|e| e.to_string())?;
    println!(
        "results: {} and .csv",
        base.with_extension("json").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ns;

    #[test]
    fn durations_as_the_client_prints_them_parse_to_nanoseconds() {
        assert_eq!(parse_duration_ns("20.000ms"), Some(20e6));
        assert_eq!(parse_duration_ns("35.0us"), Some(35e3));
        assert_eq!(parse_duration_ns("1.500s\n"), Some(1.5e9));
        assert_eq!(parse_duration_ns("850ns and more"), Some(850.0));
        assert_eq!(parse_duration_ns("soon"), None);
    }
}
