//! Benchmark: one `music_server` streaming one song to many clients at once.
//!
//! ```sh
//! cargo build --release -p music262 --bins --examples
//! target/release/examples/bench_server --clients 50 --out bench/results
//! ```
//!
//! Starts the real server binary on a generated 3-minute CD-quality song (or `--audio-dir`), opens `--clients`
//! separate connections (one `AudioClient` each, the music client's own download path), asks
//! them all for the same song at the same instant and reports the time to the first and last
//! byte of each, the aggregate throughput, and whether every client received identical bytes.
//! The result goes to `<out>/server-<clients>.json`, each client's times to `.csv`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use common::write_song;
use music262::fleet::{self, Proc};
use music262_proto::audio_service::LoadAudioRequest;
use sha2::{Digest, Sha256};
use transport_grpc::AudioClient;

mod common;

#[derive(Parser, Debug)]
#[command(
    about = "Time to the last byte and throughput of one music server streaming a song \
                   to many clients at once"
)]
struct Args {
    /// Number of clients downloading at once.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Playlist number of the song streamed.
    #[arg(long, default_value_t = 1)]
    song: i32,
    /// Folder of WAV songs for the server. Default: a folder holding one generated 3-minute
    /// 44.1 kHz 16-bit stereo song (31.8 MB, a typical CD-quality track).
    #[arg(long)]
    audio_dir: Option<PathBuf>,
    /// Folder for the JSON result.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

/// What one client saw.
struct Download {
    first_byte: Duration,
    last_byte: Duration,
    bytes: usize,
    digest: [u8; 32],
}

fn main() {
    let args = Args::parse();
    if args.clients == 0 {
        eprintln!("bench_server: --clients must be at least 1");
        std::process::exit(2);
    }
    if let Err(e) = run(&args) {
        eprintln!("bench_server: {e}");
        std::process::exit(1);
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn run(args: &Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let port = fleet::free_port().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(fleet::sibling_binary("music_server")?);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--log-file",
        "-",
    ]);
    let generated = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = match &args.audio_dir {
        Some(dir) => dir.clone(),
        None => {
            write_song(&generated.path().join("three-minutes.wav"), 180, 44_100)?;
            generated.path().to_path_buf()
        }
    };
    cmd.arg("--audio-dir").arg(dir);
    let mut server = Proc::spawn("server", cmd)?;
    server.expect("music server listening", Duration::from_secs(60))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let addr = format!("127.0.0.1:{port}");
    let result = rt.block_on(async {
        let clients: Vec<AudioClient> = (0..args.clients)
            .map(|_| AudioClient::new(&addr).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        // Connect every client first, so the measured part is the streaming itself.
        for c in &clients {
            c.playlist().await.map_err(|e| e.to_string())?;
        }
        let start = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|c| {
                let song = args.song;
                tokio::spawn(async move {
                    let mut first = None;
                    let bytes = c
                        .load_song(
                            LoadAudioRequest {
                                song_num: song,
                                song_name: String::new(),
                            },
                            |received, _| {
                                if received > 0 && first.is_none() {
                                    first = Some(start.elapsed());
                                }
                            },
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    let last_byte = start.elapsed();
                    Ok::<_, String>(Download {
                        first_byte: first.unwrap_or(last_byte),
                        last_byte,
                        bytes: bytes.len(),
                        digest: Sha256::digest(&bytes).into(),
                    })
                })
            })
            .collect();
        let mut downloads = Vec::new();
        for t in tasks {
            downloads.push(t.await.map_err(|e| e.to_string())??);
        }
        Ok::<_, String>((downloads, start.elapsed()))
    });
    server.kill();
    let (downloads, wall) = result?;

    let identical = downloads.windows(2).all(|w| w[0].digest == w[1].digest);
    let bytes = downloads[0].bytes;
    let total: usize = downloads.iter().map(|d| d.bytes).sum();
    let mut last: Vec<f64> = downloads
        .iter()
        .map(|d| d.last_byte.as_secs_f64())
        .collect();
    let mut first: Vec<f64> = downloads
        .iter()
        .map(|d| d.first_byte.as_secs_f64())
        .collect();
    last.sort_by(f64::total_cmp);
    first.sort_by(f64::total_cmp);
    let throughput = total as f64 / wall.as_secs_f64() / 1e6;
    println!(
        "{} clients x {:.1} MB: last byte after {:.2} s (median client {:.2} s), first byte median {:.0} ms / max {:.0} ms, {:.0} MB/s in all, {:.1} MB/s per client; {}",
        args.clients,
        bytes as f64 / 1e6,
        wall.as_secs_f64(),
        quantile(&last, 0.5),
        quantile(&first, 0.5) * 1e3,
        quantile(&first, 1.0) * 1e3,
        throughput,
        throughput / args.clients as f64,
        if identical {
            "every client got identical bytes"
        } else {
            "CLIENTS GOT DIFFERENT BYTES"
        }
    );
    let json = format!(
        "{{\"clients\":{},\"song_bytes\":{},\"last_byte_s\":{:.3},\"median_last_byte_s\":{:.3},\
         \"median_first_byte_ms\":{:.1},\"max_first_byte_ms\":{:.1},\"throughput_mb_s\":{:.1},\
         \"identical\":{}}}\n",
        args.clients,
        bytes,
        wall.as_secs_f64(),
        quantile(&last, 0.5),
        quantile(&first, 0.5) * 1e3,
        quantile(&first, 1.0) * 1e3,
        throughput,
        identical
    );
    let path = args.out.join(format!("server-{}.json", args.clients));
    std::fs::write(&path, json).map_err(|e| e.to_string())?;
    let mut csv = String::from("client,first_byte_ms,last_byte_s\n");
    for (i, d) in downloads.iter().enumerate() {
        csv.push_str(&format!(
            "{i},{:.3},{:.4}\n",
            d.first_byte.as_secs_f64() * 1e3,
            d.last_byte.as_secs_f64()
        ));
    }
    std::fs::write(path.with_extension("csv"), csv).map_err(|e| e.to_string())?;
    println!("result: {}", path.display());
    if identical {
        Ok(())
    } else {
        Err("clients received different bytes".into())
    }
}
