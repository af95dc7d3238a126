//! `experiment`: gRPC against QUIC on an impaired network, with real processes on this host.
//!
//! For each transport and loss rate, it starts a music server, three music clients with skewed
//! clocks (null sinks, trace files), and one impairment relay in front of each client (the
//! client advertises its relay, so every peer link passes through one: a link's two directions
//! are impaired by the relay of the peer that was dialled). It joins them in a chain, lets clock
//! sync settle, types play, pause, resume, seek, pause, resume and stop on different clients,
//! and measures sync error from the traces, when each command was heard everywhere, what the
//! relays dropped or stalled, and the bytes the peers exchanged. It prints a Markdown table and
//! can write JSON and a plot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use music262::fleet::{self, Proc, read_trace};
use music262_tests::experiment::{
    CommandKind, ErrorSummary, converged_at, measurement_window, pairwise_errors_us, parse_lead_ms,
};
use music262_tests::relay::{DirectionStats, RelayStats};
use player::SystemClock;
use plotters::prelude::*;
use serde::Serialize;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "experiment",
    about = "Measures Music262 over gRPC and QUIC on an impaired network: three real clients, \
             each behind an impairment relay, for every transport and loss rate; prints a \
             Markdown table (sync error, command convergence, probes lost, bytes per peer).",
    after_help = "Build first: cargo build --release -p music262 -p music262-tests (the \
                  binaries are looked up next to this one). scripts/experiment does both and \
                  writes EXPERIMENTS.png and experiments.json."
)]
struct Args {
    /// Transports to measure.
    #[arg(long, value_delimiter = ',', default_value = "grpc,quic")]
    transports: Vec<String>,
    /// Loss rates to measure, percent (independent loss, each direction).
    #[arg(long, value_delimiter = ',', default_value = "0,1,5,10")]
    loss: Vec<f64>,
    /// Smallest one-way delay of every link direction, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10.0)]
    delay_ms: f64,
    /// Mean of the exponential jitter on top, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 12.0)]
    jitter_ms: f64,
    /// Largest one-way delay, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30.0)]
    max_delay_ms: f64,
    /// First retransmission timeout the relays model for TCP, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200.0)]
    rto_ms: f64,
    /// Relays deliver each flow's datagrams in order, as one FIFO queue (`relay --in-order`),
    /// instead of letting each take its own delay and overtake others.
    #[arg(long)]
    in_order: bool,
    /// Seed of the relays (each relay and loss rate derives its own).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of clock sync between the joins and the first command.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    sync_secs: f64,
    /// Multiplies the length of every phase (0.3 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    phase_scale: f64,
    /// Keep logs, traces and relay counters in this folder (default: a temporary folder,
    /// removed at the end).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Draw sync error and convergence against loss to this PNG.
    #[arg(long, value_name = "PATH")]
    plot: Option<PathBuf>,
}

/// (name, clock offset ms, drift ppm): like three separate computers.
const PEERS: [(&str, f64, f64); 3] = [
    ("A", 0.0, 0.0),
    ("B", 1_500.0, 150.0),
    ("C", -2_000.0, -200.0),
];

/// Song length, seconds: longer than everything the phases play.
const SONG_SECONDS: u32 = 180;

struct Phase {
    peer: usize,
    command: &'static str,
    kind: CommandKind,
    seconds: f64,
}

fn phases() -> Vec<Phase> {
    let p = |peer, command, kind, seconds| Phase {
        peer,
        command,
        kind,
        seconds,
    };
    vec![
        p(0, "play 1", CommandKind::Play, 25.0),
        p(1, "pause", CommandKind::Pause, 3.0),
        p(2, "resume", CommandKind::Resume, 15.0),
        p(0, "seek 0:05", CommandKind::SeekBack { to_s: 5.0 }, 15.0),
        p(2, "pause", CommandKind::Pause, 3.0),
        p(1, "resume", CommandKind::Resume, 12.0),
        p(0, "stop", CommandKind::Stop, 3.0),
    ]
}

#[derive(Serialize, Clone, Debug)]
struct CommandResult {
    command: String,
    typed_on: String,
    /// From typing until the last peer's trace showed it, ms (`None`: some peer never did).
    convergence_ms: Option<f64>,
}

#[derive(Serialize, Clone, Debug)]
struct Cell {
    transport: String,
    loss_percent: f64,
    sync: Option<ErrorSummary>,
    commands: Vec<CommandResult>,
    lead_ms: Option<f64>,
    converged: usize,
    /// Datagrams the relays received and dropped (both directions, every relay).
    datagrams_in: u64,
    datagrams_dropped: u64,
    tcp_segments: u64,
    tcp_segments_stalled: u64,
    /// Mean one-way delay the relays applied, ms.
    mean_delay_ms: f64,
    /// Bytes the peers sent each other per second, per peer (mean of the three).
    bytes_per_s_per_peer: f64,
    window_s: f64,
    links: Vec<String>,
}

impl Cell {
    fn convergence_max_ms(&self) -> Option<f64> {
        self.commands
            .iter()
            .map(|c| c.convergence_ms)
            .try_fold(0.0f64, |m, c| c.map(|c| m.max(c)))
    }

    fn convergence_p50_ms(&self) -> Option<f64> {
        let mut v: Vec<f64> = self
            .commands
            .iter()
            .filter_map(|c| c.convergence_ms)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("experiment failed: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    for t in &args.transports {
        if t != "grpc" && t != "quic" {
            return Err(format!("unknown transport `{t}` (grpc, quic)"));
        }
    }
    let temp = args.out.is_none();
    let dir = args.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("music262-experiment-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let songs = dir.join("songs");
    write_song(&songs)?;
    let mut cells = Vec::new();
    for (li, &loss) in args.loss.iter().enumerate() {
        for transport in &args.transports {
            let name = format!("{transport}-loss{loss}");
            let cell_dir = dir.join(&name);
            std::fs::create_dir_all(&cell_dir).map_err(|e| e.to_string())?;
            eprintln!("== {transport}, {loss} % loss");
            let seed = args.seed.wrapping_mul(1_000).wrapping_add(li as u64 * 10);
            let cell = run_cell(args, &songs, &cell_dir, transport, loss, seed)?;
            eprintln!("   {}", row(&cell));
            cells.push(cell);
            if let Some(p) = &args.json {
                write_json(p, args, &cells)?;
            }
        }
    }
    println!("{}", table(&cells));
    if let Some(p) = &args.plot {
        plot(p, &cells)?;
        eprintln!("plot written to {}", p.display());
    }
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("logs, traces and relay counters kept in {}", dir.display());
    }
    Ok(())
}

fn write_json(path: &Path, args: &Args, cells: &[Cell]) -> Result<(), String> {
    #[derive(Serialize)]
    struct Out<'a> {
        delay_ms: f64,
        jitter_ms: f64,
        max_delay_ms: f64,
        rto_ms: f64,
        in_order: bool,
        seed: u64,
        phase_scale: f64,
        cells: &'a [Cell],
    }
    let out = Out {
        delay_ms: args.delay_ms,
        jitter_ms: args.jitter_ms,
        max_delay_ms: args.max_delay_ms,
        rto_ms: args.rto_ms,
        in_order: args.in_order,
        seed: args.seed,
        phase_scale: args.phase_scale,
        cells,
    };
    let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A song longer than the run: a soft chord with a slow tremolo, mono 48 kHz, 16-bit.
fn write_song(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join("experiment.wav");
    if path.exists() {
        return Ok(());
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).map_err(|e| e.to_string())?;
    for i in 0..SONG_SECONDS * 48_000 {
        let t = f64::from(i) / 48_000.0;
        let tau = std::f64::consts::TAU;
        let v = (0.12 * (tau * 220.0 * t).sin()
            + 0.08 * (tau * 277.2 * t).sin()
            + 0.06 * (tau * 329.6 * t).sin())
            * (0.75 + 0.25 * (tau * 0.5 * t).sin());
        w.write_sample((v * f64::from(i16::MAX)) as i16)
            .map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())
}

struct Peer {
    name: &'static str,
    proc: Proc,
    relay: Proc,
    addr: String,
    trace: PathBuf,
}

fn relay_stats(relay: &mut Proc) -> Result<RelayStats, String> {
    for _ in 0..3 {
        let lines = relay.ask("stats", Duration::from_millis(300));
        if let Some(l) = lines.iter().find(|l| l.starts_with('{')) {
            return serde_json::from_str(l).map_err(|e| format!("relay stats `{l}`: {e}"));
        }
    }
    Err(format!("{} printed no stats", relay.name))
}

fn add(a: &mut DirectionStats, b: &DirectionStats) {
    a.datagrams_in += b.datagrams_in;
    a.datagrams_dropped += b.datagrams_dropped;
    a.udp_bytes_out += b.udp_bytes_out;
    a.tcp_bytes_out += b.tcp_bytes_out;
    a.tcp_segments += b.tcp_segments;
    a.tcp_segments_stalled += b.tcp_segments_stalled;
    a.delay_sum_ns += b.delay_sum_ns;
    a.delay_count += b.delay_count;
}

fn run_cell(
    args: &Args,
    songs: &Path,
    dir: &Path,
    transport: &str,
    loss: f64,
    seed: u64,
) -> Result<Cell, String> {
    let server_bin = fleet::sibling_binary("music_server")?;
    let client_bin = fleet::sibling_binary("music_client")?;
    let port = fleet::free_port().map_err(|e| e.to_string())?;
    let mut server = fleet::start_server(&server_bin, port, Some(songs), &dir.join("server.log"))?;

    let mut peers: Vec<Peer> = Vec::new();
    for (i, (name, offset_ms, drift_ppm)) in PEERS.into_iter().enumerate() {
        let p2p = fleet::free_port().map_err(|e| e.to_string())?;
        let (relay, relay_addr) = start_relay(args, dir, name, p2p, loss, seed + i as u64)?;
        let client = fleet::SkewedClient {
            name,
            server_port: port,
            p2p_port: p2p,
            advertise: &relay_addr,
            transport,
            sink: "null",
            dir,
            offset_ms,
            drift_ppm,
        };
        let trace = client.trace();
        let (proc, _) = client.start(&client_bin)?;
        // The client moves to the next port if its own was taken: the relay must follow.
        if let Some(l) = proc.output().iter().find(|l| l.contains("instead of")) {
            return Err(format!("client {name} changed its port ({l}); retry"));
        }
        peers.push(Peer {
            name,
            proc,
            relay,
            addr: relay_addr,
            trace,
        });
    }

    // A chain, as in the demo: B joins A, C joins B (through their relays).
    for (from, to) in [(1, 0), (2, 1)] {
        let target = peers[to].addr.clone();
        peers[from].proc.send(&format!("join {target}"));
        peers[from].proc.expect(
            &format!("connected to peer {target}"),
            Duration::from_secs(30),
        )?;
    }
    std::thread::sleep(Duration::from_secs_f64(args.sync_secs));

    let before: Vec<RelayStats> = peers
        .iter_mut()
        .map(|p| relay_stats(&mut p.relay))
        .collect::<Result<_, _>>()?;
    let window_start = SystemClock::monotonic_ns();
    let phases = phases();
    let mut typed = Vec::new();
    for ph in &phases {
        let t = SystemClock::monotonic_ns();
        peers[ph.peer].proc.send(ph.command);
        typed.push(t);
        std::thread::sleep(Duration::from_secs_f64(ph.seconds * args.phase_scale));
    }
    let end = SystemClock::monotonic_ns();
    let after: Vec<RelayStats> = peers
        .iter_mut()
        .map(|p| relay_stats(&mut p.relay))
        .collect::<Result<_, _>>()?;
    let window_s = (end - window_start) as f64 / 1e9;

    let status = peers[2].proc.ask("status", Duration::from_millis(500));
    let lead_ms = status.iter().find_map(|l| parse_lead_ms(l));
    let mut links = Vec::new();
    for p in &mut peers {
        let lines = p.proc.ask("connections", Duration::from_millis(500));
        links.push(format!("{}:\n{}", p.name, lines.join("\n")));
    }
    for p in &mut peers {
        p.proc.send("quit");
    }
    for p in &mut peers {
        if p.proc.wait_exit(Duration::from_secs(5)).is_none() {
            p.proc.kill();
        }
        p.relay.send("quit");
        if p.relay.wait_exit(Duration::from_secs(5)).is_none() {
            p.relay.kill();
        }
    }
    server.kill();
    let mut log = String::new();
    for p in &peers {
        log.push_str(&format!("== {}\n{}\n", p.name, p.proc.output().join("\n")));
    }
    let _ = std::fs::write(dir.join("consoles.txt"), log);

    let traces: Vec<_> = peers.iter().map(|p| read_trace(&p.trace)).collect();
    let mut commands = Vec::new();
    let mut errors = Vec::new();
    for (i, ph) in phases.iter().enumerate() {
        let converged = converged_at(&traces, typed[i], ph.kind);
        commands.push(CommandResult {
            command: ph.command.to_string(),
            typed_on: PEERS[ph.peer].0.to_string(),
            convergence_ms: converged.map(|c| (c - typed[i]) as f64 / 1e6),
        });
        if ph.kind.starts_playback() {
            // As the targets say (docs/protocol.md): a start from silence is measured after 5 s; a resume or seek
            // once it has been heard everywhere (the switch-over itself is excluded).
            let settle = if ph.kind == CommandKind::Play {
                5_000_000_000
            } else {
                1_000_000_000
            };
            let next = typed.get(i + 1).copied().unwrap_or(end);
            if let Some((from, to)) = measurement_window(typed[i], converged, next, settle) {
                errors.extend(pairwise_errors_us(&traces, from, to));
            }
        }
    }
    let limit = lead_ms.unwrap_or(20.0) + 1_000.0;
    let converged = commands
        .iter()
        .filter(|c| c.convergence_ms.is_some_and(|ms| ms <= limit))
        .count();

    let mut total = DirectionStats::default();
    for (b, a) in before.iter().zip(&after) {
        add(&mut total, &a.to_target.since(&b.to_target));
        add(&mut total, &a.from_target.since(&b.from_target));
    }
    Ok(Cell {
        transport: transport.to_string(),
        loss_percent: loss,
        sync: ErrorSummary::of(&errors),
        commands,
        lead_ms,
        converged,
        datagrams_in: total.datagrams_in,
        datagrams_dropped: total.datagrams_dropped,
        tcp_segments: total.tcp_segments,
        tcp_segments_stalled: total.tcp_segments_stalled,
        mean_delay_ms: total.mean_delay_ms(),
        bytes_per_s_per_peer: total.bytes_out() as f64 / window_s / PEERS.len() as f64,
        window_s,
        links,
    })
}

fn start_relay(
    args: &Args,
    dir: &Path,
    name: &str,
    target_port: u16,
    loss: f64,
    seed: u64,
) -> Result<(Proc, String), String> {
    let relay_bin = fleet::sibling_binary("relay")?;
    let mut cmd = Command::new(relay_bin);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--target",
        &format!("127.0.0.1:{target_port}"),
        "--delay-ms",
        &args.delay_ms.to_string(),
        "--jitter-ms",
        &args.jitter_ms.to_string(),
        "--max-delay-ms",
        &args.max_delay_ms.to_string(),
        "--loss-percent",
        &loss.to_string(),
        "--rto-ms",
        &args.rto_ms.to_string(),
        "--seed",
        &seed.to_string(),
        "--stats-every",
        "0",
        "--stats-file",
    ])
    .arg(dir.join(format!("relay-{name}.json")));
    if args.in_order {
        cmd.arg("--in-order");
    }
    let mut relay = Proc::spawn(&format!("relay {name}"), cmd)?;
    let line = relay.expect("relay listening on", Duration::from_secs(10))?;
    let addr = line
        .split_whitespace()
        .nth(3)
        .ok_or_else(|| format!("relay said `{line}`"))?
        .to_string();
    Ok((relay, addr))
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn row(c: &Cell) -> String {
    let sync = c
        .sync
        .map_or("no common playing instants".to_string(), |s| {
            format!("{:.0} / {:.0} / {:.0}", s.p50_us, s.p99_us, s.max_us)
        });
    let lost = if c.datagrams_in > 0 {
        format!(
            "{:.1} % of {}",
            c.datagrams_dropped as f64 * 100.0 / c.datagrams_in as f64,
            c.datagrams_in
        )
    } else {
        "none sent (TCP)".to_string()
    };
    let stalled = if c.tcp_segments > 0 {
        format!(
            "{:.1} % of {}",
            c.tcp_segments_stalled as f64 * 100.0 / c.tcp_segments as f64,
            c.tcp_segments
        )
    } else {
        "-".to_string()
    };
    format!(
        "| {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {:.0} | {:.1} |",
        c.transport,
        c.loss_percent,
        sync,
        c.converged,
        c.commands.len(),
        fmt_opt(c.convergence_p50_ms(), 0),
        fmt_opt(c.convergence_max_ms(), 0),
        fmt_opt(c.lead_ms, 0),
        lost,
        stalled,
        c.bytes_per_s_per_peer,
        c.mean_delay_ms,
    )
}

fn table(cells: &[Cell]) -> String {
    let mut s = String::from(
        "| transport | loss % | sync error p50 / p99 / max (µs) | commands heard everywhere within lead + 1 s | convergence p50 / max (ms) | lead (ms) | datagrams dropped (probes ride in them) | TCP segments stalled | bytes/s per peer | mean one-way delay (ms) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in cells {
        s.push_str(&row(c));
        s.push('\n');
    }
    s
}

/// Two panels against the loss rate: sync error p99 (and p50, dashed) per transport, and the
/// slowest command's convergence.
fn plot(path: &Path, cells: &[Cell]) -> Result<(), String> {
    let has_font = music262_tests::plot::register_font();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(700);
    let max_loss = cells.iter().map(|c| c.loss_percent).fold(1.0f64, f64::max);
    let transports: Vec<&str> = {
        let mut t: Vec<&str> = cells.iter().map(|c| c.transport.as_str()).collect();
        t.dedup();
        t.sort();
        t.dedup();
        t
    };
    let colors = [RGBColor(200, 60, 40), RGBColor(40, 90, 200)];

    // Sync error, log scale.
    let y_max = cells
        .iter()
        .filter_map(|c| c.sync.map(|s| s.p99_us))
        .fold(1_000.0f64, f64::max)
        * 2.0;
    let mut b = ChartBuilder::on(&left);
    b.margin(20);
    if has_font {
        b.caption("sync error between peers", ("sans-serif", 22))
            .x_label_area_size(45)
            .y_label_area_size(70);
    }
    let mut chart = b
        .build_cartesian_2d(0.0..max_loss * 1.05, (10.0..y_max).log_scale())
        .map_err(|e| err(&e))?;
    if has_font {
        chart
            .configure_mesh()
            .x_desc("loss per direction (%)")
            .y_desc("µs (solid p99, dashed p50)")
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(&e))?;
    }
    for (k, t) in transports.iter().enumerate() {
        let color = colors[k % colors.len()];
        let pts = |q: fn(&ErrorSummary) -> f64| -> Vec<(f64, f64)> {
            cells
                .iter()
                .filter(|c| c.transport == *t)
                .filter_map(|c| c.sync.map(|s| (c.loss_percent, q(&s).max(10.0))))
                .collect()
        };
        let p99 = pts(|s| s.p99_us);
        chart
            .draw_series(LineSeries::new(p99.clone(), color.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(format!("{t} p99"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(p99.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(DashedLineSeries::new(
                pts(|s| s.p50_us),
                6,
                4,
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
    }
    let target = vec![(0.0, 1_000.0), (max_loss * 1.05, 1_000.0)];
    chart
        .draw_series(LineSeries::new(target, BLACK.mix(0.4).stroke_width(1)))
        .map_err(|e| err(&e))?
        .label("1 ms target")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    if has_font {
        music262_tests::plot::draw_legend(&mut chart, 15, SeriesLabelPosition::UpperLeft)
            .map_err(|e| err(&e))?;
    }

    // Slowest command.
    let c_max = cells
        .iter()
        .filter_map(|c| c.convergence_max_ms())
        .fold(1_200.0f64, f64::max)
        * 1.1;
    let mut b = ChartBuilder::on(&right);
    b.margin(20);
    if has_font {
        b.caption(
            "slowest command, typed to heard everywhere",
            ("sans-serif", 22),
        )
        .x_label_area_size(45)
        .y_label_area_size(70);
    }
    let mut chart = b
        .build_cartesian_2d(0.0..max_loss * 1.05, 0.0..c_max)
        .map_err(|e| err(&e))?;
    if has_font {
        chart
            .configure_mesh()
            .x_desc("loss per direction (%)")
            .y_desc("ms")
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(&e))?;
    }
    for (k, t) in transports.iter().enumerate() {
        let color = colors[k % colors.len()];
        let pts: Vec<(f64, f64)> = cells
            .iter()
            .filter(|c| c.transport == *t)
            .filter_map(|c| c.convergence_max_ms().map(|m| (c.loss_percent, m)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(t.to_string())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| err(&e))?;
        let leads: Vec<(f64, f64)> = cells
            .iter()
            .filter(|c| c.transport == *t)
            .filter_map(|c| c.lead_ms.map(|l| (c.loss_percent, l + 1_000.0)))
            .collect();
        chart
            .draw_series(DashedLineSeries::new(
                leads,
                6,
                4,
                color.mix(0.5).stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("{t}: lead + 1 s"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.5).stroke_width(1))
            });
    }
    if has_font {
        music262_tests::plot::draw_legend(&mut chart, 15, SeriesLabelPosition::UpperLeft)
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
