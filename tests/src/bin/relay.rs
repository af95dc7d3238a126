//! `relay`: an impairment relay between Music262 peers on one host. It listens on one port
//! (TCP for gRPC, UDP for QUIC), forwards to one target and applies the simulator's seeded link
//! model to what passes (see `music262_tests::relay`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use music262_tests::link::{GilbertElliott, LinkConfig};
use music262_tests::relay::{DirectionStats, Protocols, Relay, RelayConfig, RelayStats};
use tokio::io::AsyncBufReadExt;

#[derive(Parser, Debug)]
#[command(
    name = "relay",
    about = "Impairment relay: forwards TCP and UDP from one port to a target and applies a \
             seeded network model (delay, jitter, random and bursty loss, duplication, \
             reordering) to what passes, in both directions.",
    long_about = "Impairment relay: forwards TCP and UDP from one port to a target and applies a \
                  seeded network model to what passes, in both directions, with the link model \
                  of the Music262 simulator.\n\n\
                  UDP datagrams (QUIC) are delayed, lost, duplicated and reordered one by one. \
                  TCP streams (gRPC) are cut into segments; a segment the model loses is \
                  retransmitted after --rto-ms (doubling, capped at 1 s) and the bytes behind \
                  it wait (head-of-line blocking): TCP bytes always arrive, in order, intact, \
                  and loss shows up as delay and stalls.\n\n\
                  One-way delay = --delay-ms + exponential jitter of mean --jitter-ms, capped \
                  at --max-delay-ms.",
    after_help = "Put a relay in front of each music client and let the client advertise it, so \
                  that every link to that client passes through the relay:\n\n  \
                  music_client --p2p-port 50052 --bind 127.0.0.1 --advertise 127.0.0.1:60052 ...\n  \
                  relay --listen 127.0.0.1:60052 --target 127.0.0.1:50052 \\\n        \
                  --delay-ms 10 --jitter-ms 12 --max-delay-ms 30 --loss-percent 5 --seed 1\n\n\
                  Standard input: `stats` prints the counters as one JSON line, `quit` stops \
                  (so do Ctrl-C and SIGTERM; the final counters are printed and written to \
                  --stats-file)."
)]
struct Args {
    /// Address to listen on: TCP and UDP on the same port (port 0: any free port, printed).
    #[arg(long, value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// Address everything is forwarded to.
    #[arg(long, value_name = "HOST:PORT")]
    target: SocketAddr,
    /// Forward UDP only.
    #[arg(long, conflicts_with = "tcp_only")]
    udp_only: bool,
    /// Forward TCP only.
    #[arg(long)]
    tcp_only: bool,
    /// Smallest one-way delay, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    delay_ms: f64,
    /// Mean of the exponential jitter added to the delay, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    jitter_ms: f64,
    /// Largest one-way delay, milliseconds (jitter is capped there). Default: delay plus ten
    /// times the jitter mean.
    #[arg(long, value_name = "MS")]
    max_delay_ms: Option<f64>,
    /// The delay towards the target exceeds the delay back by this much, milliseconds (each
    /// direction's base moves by half; two-way clock sync cannot see this asymmetry).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    asymmetry_ms: f64,
    /// Independent loss per packet, percent.
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    loss_percent: f64,
    /// Bursty loss (Gilbert model) on top: its long-run rate, percent.
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    burst_loss_percent: f64,
    /// Mean length of a loss burst, packets.
    #[arg(long, value_name = "N", default_value_t = 4.0)]
    burst_length: f64,
    /// Probability that a datagram arrives twice, percent (UDP only).
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    duplicate_percent: f64,
    /// Probability that a datagram is held back by --reorder-delay-ms so that later ones
    /// overtake it, percent (UDP only).
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    reorder_percent: f64,
    /// Datagrams leave in the order they came, as from one FIFO queue: one behind a late
    /// datagram waits for it (delays are then correlated, as in a real queue), instead of
    /// each taking its own delay and overtaking the others (UDP only).
    #[arg(long, conflicts_with = "reorder_percent")]
    in_order: bool,
    /// Extra delay of a held-back datagram, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5.0)]
    reorder_delay_ms: f64,
    /// Serialisation rate of each direction of each flow, kbit/s (default unlimited).
    #[arg(long, value_name = "KBIT")]
    bandwidth_kbit: Option<u64>,
    /// First retransmission timeout of a TCP segment the model loses, milliseconds (Linux's
    /// minimum RTO is 200 ms).
    #[arg(long, value_name = "MS", default_value_t = 200.0)]
    rto_ms: f64,
    /// TCP segment size the model decides on, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1448)]
    segment_bytes: usize,
    /// Seed of the model: the same seed and traffic give the same decisions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A UDP client silent (both ways) this long is forgotten, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    udp_idle_secs: u64,
    /// Write the counters as JSON to this file every --stats-every seconds and at exit.
    #[arg(long, value_name = "PATH")]
    stats_file: Option<PathBuf>,
    /// Print a summary line every this many seconds (0: only at exit).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    stats_every: f64,
}

fn ns(ms: f64) -> u64 {
    (ms.max(0.0) * 1e6).round() as u64
}

fn link(args: &Args, base_ms: f64) -> LinkConfig {
    let base = ns(base_ms);
    let max = args
        .max_delay_ms
        .map_or(base + 10 * ns(args.jitter_ms), |m| ns(m).max(base));
    LinkConfig {
        base_delay: base,
        jitter_mean: ns(args.jitter_ms),
        max_delay: max,
        loss: args.loss_percent / 100.0,
        burst: (args.burst_loss_percent > 0.0).then(|| {
            GilbertElliott::with_mean_loss(args.burst_loss_percent / 100.0, args.burst_length)
        }),
        duplicate: args.duplicate_percent / 100.0,
        reorder: args.reorder_percent / 100.0,
        reorder_delay: ns(args.reorder_delay_ms),
        bandwidth_bps: args.bandwidth_kbit.map(|k| k * 1000),
        rto: ns(args.rto_ms).max(1),
    }
}

fn check(args: &Args) -> Result<(), String> {
    for (name, v) in [
        ("--loss-percent", args.loss_percent),
        ("--burst-loss-percent", args.burst_loss_percent),
        ("--duplicate-percent", args.duplicate_percent),
        ("--reorder-percent", args.reorder_percent),
    ] {
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("{name} must be between 0 and 100, not {v}"));
        }
    }
    for (name, v) in [
        ("--delay-ms", args.delay_ms),
        ("--jitter-ms", args.jitter_ms),
        ("--reorder-delay-ms", args.reorder_delay_ms),
        ("--rto-ms", args.rto_ms),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(format!("{name} must be a non-negative number, not {v}"));
        }
    }
    if args.asymmetry_ms.abs() / 2.0 > args.delay_ms {
        return Err("half of --asymmetry-ms must fit in --delay-ms".into());
    }
    if args.burst_length < 1.0 {
        return Err("--burst-length must be at least 1".into());
    }
    if args.segment_bytes == 0 {
        return Err("--segment-bytes must be at least 1".into());
    }
    Ok(())
}

fn direction_line(name: &str, d: &DirectionStats) -> String {
    format!(
        "{name}: udp {} in, {} out, {} lost ({:.1} %), {} dup, {:.1} kB; tcp {:.1} kB, {} of {} \
         segments stalled; mean delay {:.2} ms, max {:.2} ms",
        d.datagrams_in,
        d.datagrams_out,
        d.datagrams_dropped,
        d.datagram_loss() * 100.0,
        d.datagrams_duplicated,
        d.udp_bytes_out as f64 / 1e3,
        d.tcp_bytes_out as f64 / 1e3,
        d.tcp_segments_stalled,
        d.tcp_segments,
        d.mean_delay_ms(),
        d.delay_max_ns as f64 / 1e6,
    )
}

fn summary(s: &RelayStats) -> String {
    format!(
        "after {:.0} s ({} UDP sessions, {} TCP connections)\n  {}\n  {}",
        s.uptime_s,
        s.udp_sessions,
        s.tcp_connections,
        direction_line("to target  ", &s.to_target),
        direction_line("from target", &s.from_target)
    )
}

fn write_stats(path: &Option<PathBuf>, s: &RelayStats) {
    let Some(path) = path else { return };
    // Written aside and renamed, so that a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_string_pretty(s).expect("stats serialise");
    if let Err(e) = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, path)) {
        eprintln!("relay: cannot write {}: {e}", path.display());
    }
}

async fn serve(relay: &Relay, args: &Args) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let period = if args.stats_every > 0.0 {
        Duration::from_secs_f64(args.stats_every)
    } else {
        Duration::from_secs(3600)
    };
    let file_period = if args.stats_every > 0.0 {
        period.min(Duration::from_secs(1))
    } else {
        Duration::from_secs(1)
    };
    let mut print_tick = tokio::time::interval(period);
    let mut file_tick = tokio::time::interval(file_period);
    print_tick.tick().await;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = file_tick.tick() => write_stats(&args.stats_file, &relay.stats()),
            _ = print_tick.tick(), if args.stats_every > 0.0 => {
                println!("{}", summary(&relay.stats()));
            }
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(l)) => match l.trim() {
                    "stats" => {
                        println!("{}", serde_json::to_string(&relay.stats()).expect("stats serialise"));
                    }
                    "quit" | "exit" => return,
                    "" => {}
                    other => println!("unknown command `{other}`: stats, quit"),
                },
                // Without a terminal (stdin closed), keep relaying until a signal.
                Ok(None) | Err(_) => stdin_open = false,
            },
        }
        let _ = std::io::stdout().flush();
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = check(&args) {
        eprintln!("relay: {e}");
        std::process::exit(2);
    }
    let half = args.asymmetry_ms / 2.0;
    let config = RelayConfig {
        listen: args.listen,
        target: args.target,
        to_target: link(&args, args.delay_ms + half),
        from_target: link(&args, args.delay_ms - half),
        seed: args.seed,
        protocols: Protocols {
            udp: !args.tcp_only,
            tcp: !args.udp_only,
        },
        segment_bytes: args.segment_bytes,
        udp_idle: Duration::from_secs(args.udp_idle_secs),
        udp_in_order: args.in_order,
    };
    let relay = match Relay::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relay: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let protocols = match (args.udp_only, args.tcp_only) {
        (true, _) => "udp",
        (_, true) => "tcp",
        _ => "tcp+udp",
    };
    println!(
        "relay listening on {} ({protocols}), forwarding to {}, seed {}",
        relay.local_addr(),
        args.target,
        args.seed
    );
    let _ = std::io::stdout().flush();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(&relay, &args));
    let stats = relay.stats();
    write_stats(&args.stats_file, &stats);
    println!("{}", summary(&stats));
    relay.stop();
}
