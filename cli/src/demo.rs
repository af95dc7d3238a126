//! The one-command demo: a music server and three music clients as separate processes on this
//! machine, their sync clocks skewed like three different computers, joined in a chain. It
//! plays a song, pauses, resumes, seeks and stops, typing each command on a different client,
//! prints a live line per peer with the sync error measured from their trace files, then a
//! summary, and cleans up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use player::SystemClock;

use crate::fleet::{
    self, Proc, TraceState, pause_spread_us, quantile_abs, read_trace, sync_errors_us,
};

/// Command-line options of the demo.
#[derive(Parser, Debug)]
#[command(
    name = "music262_demo",
    version,
    about = "Runs a music server and three music clients with skewed clocks on this machine, \
             plays a song through play/pause/resume/seek/stop typed on different clients, and \
             reports how closely they stayed in sync.",
    after_help = "The first client plays through the sound device when there is one (otherwise \
                  silently); the others are silent. Logs and traces go to a temporary folder \
                  (kept with --keep)."
)]
pub struct DemoArgs {
    /// Sink of the first client (the one you may hear): device, null or wav:PATH.
    #[arg(long, default_value = "device")]
    pub sink: String,
    /// Playlist number of the song to play (built-in library: 1 chimes, 2 noise groove,
    /// 3 sweep, 4 sample song).
    #[arg(long, default_value_t = 1)]
    pub song: usize,
    /// Keep the folder with logs and traces.
    #[arg(long)]
    pub keep: bool,
    /// Seconds of playback before the pause (the other phases scale with it).
    #[arg(long, default_value_t = 10)]
    pub play_seconds: u64,
}

struct Peer {
    name: &'static str,
    proc: Proc,
    addr: String,
    trace: PathBuf,
}

const PEERS: [(&str, f64, f64); 3] = [
    ("A", 0.0, 0.0),
    ("B", 1_500.0, 150.0),
    ("C", -2_000.0, -200.0),
];

fn clock_time(frame: f64, rate: u32) -> String {
    let ms = (frame.max(0.0) * 1000.0 / f64::from(rate.max(1))) as u64;
    format!(
        "{}:{:02}.{:01}",
        ms / 60_000,
        ms / 1000 % 60,
        ms % 1000 / 100
    )
}

/// Runs the demo; returns the exit code.
pub fn run(args: DemoArgs) -> i32 {
    match demo(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("demo failed: {e}");
            1
        }
    }
}

fn demo(args: &DemoArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("music262-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = demo_in(args, &dir);
    if args.keep || result.is_err() {
        println!("logs and traces kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn demo_in(args: &DemoArgs, dir: &std::path::Path) -> Result<(), String> {
    let server_bin = fleet::sibling_binary("music_server")?;
    let client_bin = fleet::sibling_binary("music_client")?;
    let port = fleet::free_port().map_err(|e| e.to_string())?;
    println!("== Music262 demo: one music server and three music clients on this machine");
    let mut server = fleet::start_server(&server_bin, port, None, &dir.join("server.log"))?;
    println!("server      127.0.0.1:{port}, built-in songs");

    let mut peers = Vec::new();
    for (i, (name, offset_ms, drift_ppm)) in PEERS.into_iter().enumerate() {
        let p2p = fleet::free_port().map_err(|e| e.to_string())?;
        let addr = format!("127.0.0.1:{p2p}");
        let sink = if i == 0 {
            args.sink.clone()
        } else {
            "null".to_string()
        };
        let client = fleet::SkewedClient {
            name,
            server_port: port,
            p2p_port: p2p,
            advertise: &addr,
            transport: "grpc",
            sink: &sink,
            dir,
            offset_ms,
            drift_ppm,
        };
        let trace = client.trace();
        let (proc, through) = client.start(&client_bin)?;
        println!(
            "client {name}    {addr}, clock {offset_ms:+.0} ms and {drift_ppm:+.0} ppm off, {}",
            through.trim_start_matches("playing ")
        );
        peers.push(Peer {
            name,
            proc,
            addr,
            trace,
        });
    }

    // A chain: B joins A, C joins B (C reaches A only through B).
    for (from, to) in [(1, 0), (2, 1)] {
        let target = peers[to].addr.clone();
        peers[from].proc.send(&format!("join {target}"));
        peers[from].proc.expect(
            &format!("connected to peer {target}"),
            Duration::from_secs(20),
        )?;
        println!("{} joined {}", peers[from].name, peers[to].name);
    }
    // Clock sync needs a few seconds of probes before the first command.
    std::thread::sleep(Duration::from_secs(3));

    let t = args.play_seconds.max(4);
    let phases: [(usize, String, u64); 5] = [
        (0, format!("play {}", args.song), t),
        (1, "pause".to_string(), 3),
        (2, "resume".to_string(), t.max(6)),
        (0, "seek 0:15".to_string(), t.max(6)),
        (1, "stop".to_string(), 2),
    ];
    let started = Instant::now();
    // Playing windows to measure: (from, to) in host ns, settling excluded.
    let mut windows: Vec<(u64, u64)> = Vec::new();
    let mut pause_frames = Vec::new();
    // How far apart the sound stopped at the pause (µs), from the traces.
    let mut pause_sound = None;
    let settle_ns = 5_000_000_000u64;
    for (who, command, seconds) in phases {
        println!("\n-- {} types `{command}`", peers[who].name);
        let issued = SystemClock::monotonic_ns();
        peers[who].proc.send(&command);
        for _ in 0..seconds {
            std::thread::sleep(Duration::from_secs(1));
            print_live(&peers, started);
        }
        let ended = SystemClock::monotonic_ns();
        let starts =
            command.starts_with("play") || command == "resume" || command.starts_with("seek");
        if starts && ended > issued + settle_ns {
            windows.push((issued + settle_ns, ended));
        }
        if command == "pause" {
            for p in &peers {
                let last = read_trace(&p.trace)
                    .into_iter()
                    .rev()
                    .find(|x| x.state == TraceState::Paused);
                pause_frames.push((p.name, last.map(|x| x.frame)));
            }
            let traces: Vec<_> = peers.iter().map(|p| read_trace(&p.trace)).collect();
            pause_sound = pause_spread_us(&traces, issued);
        }
    }

    println!(
        "\n== Summary (sync error of B and C against A, from their traces, 5 s after each start)"
    );
    let traces: Vec<_> = peers.iter().map(|p| read_trace(&p.trace)).collect();
    let mut ok = true;
    for (i, p) in peers.iter().enumerate().skip(1) {
        let errors: Vec<f64> = windows
            .iter()
            .flat_map(|(from, to)| sync_errors_us(&traces[i], &traces[0], *from, *to))
            .collect();
        match (
            quantile_abs(&errors, 0.5),
            quantile_abs(&errors, 0.99),
            quantile_abs(&errors, 1.0),
        ) {
            (Some(p50), Some(p99), Some(max)) => println!(
                "{} vs A: p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us over {} instants (one frame at 48 kHz is 20.8 us)",
                p.name,
                errors.len()
            ),
            _ => {
                ok = false;
                println!("{} vs A: no common playing instants", p.name);
            }
        }
    }
    let frames: Vec<String> = pause_frames
        .iter()
        .map(|(n, f)| format!("{n} {}", f.map_or("-".to_string(), |f| format!("{f:.0}"))))
        .collect();
    let same = pause_frames
        .windows(2)
        .all(|w| w[0].1.is_some() && w[0].1 == w[1].1);
    println!(
        "pause: {} ({})",
        frames.join(", "),
        if same {
            "the same frame on every client"
        } else {
            "frames differ"
        }
    );
    if let Some(us) = pause_sound {
        println!("pause: the sound stopped within {us:.1} us on every client");
    }
    let before = peers[0].proc.output().len();
    peers[0].proc.send("status");
    std::thread::sleep(Duration::from_millis(500));
    for line in peers[0].proc.output().iter().skip(before) {
        if line.starts_with("sync:") {
            println!("A's {line}");
        }
    }

    for p in &mut peers {
        p.proc.send("quit");
    }
    for p in &mut peers {
        if p.proc.wait_exit(Duration::from_secs(5)).is_none() {
            p.proc.kill();
        }
    }
    server.kill();
    println!("all processes stopped");
    if ok {
        Ok(())
    } else {
        Err("some clients never played together".into())
    }
}

fn print_live(peers: &[Peer], started: Instant) {
    let traces: Vec<_> = peers.iter().map(|p| read_trace(&p.trace)).collect();
    let now = traces[0].last().map_or(0, |p| p.host_ns);
    let mut line = format!("{:>4.0}s ", started.elapsed().as_secs_f64());
    for (i, p) in peers.iter().enumerate() {
        let Some(last) = traces[i].last() else {
            line.push_str(&format!(" | {} (no trace yet)", p.name));
            continue;
        };
        line.push_str(&format!(
            " | {} {:<7} {}",
            p.name,
            last.state.name(),
            clock_time(last.frame, last.sample_rate)
        ));
        if i > 0 && last.playing {
            let e = sync_errors_us(
                &traces[i],
                &traces[0],
                now.saturating_sub(1_000_000_000),
                now,
            );
            let n = e.len().max(1) as f64;
            if !e.is_empty() {
                line.push_str(&format!(" {:+.0}us", e.iter().sum::<f64>() / n));
            }
        }
    }
    println!("{line}");
}
