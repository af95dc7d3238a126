//! `music_server`: serves a folder of songs (or the built-in library), streams them to
//! clients and keeps the registry of joinable peer addresses.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::Parser;
use music262_proto::audio_service::{
    CoverResponse, LoadAudioRequest, RegisterPeerRequest, RegisterPeerResponse, RegisteredPeer,
    SongInfo, UnregisterPeerRequest,
};
use tonic::Status;
use transport_grpc::{AudioServer, MusicBackend, SongBytes};

use crate::console::{self, Input, Printer};
use crate::discovery::Discovery;
use crate::library::MusicLibrary;
use crate::logging::{self, LogTarget};
use crate::registry::{Caller, PeerRegistry};

/// What the music server serves over `audio_service`: its songs and its registry of joinable
/// peers.
#[derive(Debug)]
pub struct Music {
    library: MusicLibrary,
    /// The songs' metadata, in playlist order.
    infos: Vec<SongInfo>,
    registry: PeerRegistry,
}

impl Music {
    /// `library`, with an empty registry.
    pub fn new(library: MusicLibrary) -> Self {
        Music {
            infos: library.songs().iter().map(|s| s.info.clone()).collect(),
            library,
            registry: PeerRegistry::default(),
        }
    }
}

impl MusicBackend for Music {
    fn songs(&self) -> &[SongInfo] {
        &self.infos
    }

    async fn open_song(&self, request: &LoadAudioRequest) -> Result<SongBytes, Status> {
        self.library.open(request).await
    }

    async fn cover(&self, name: &str) -> Result<CoverResponse, Status> {
        self.library.cover(name).await
    }

    fn peers(&self, after: &str, max: usize) -> (Vec<RegisteredPeer>, usize) {
        self.registry.listed(after, max, Instant::now())
    }

    fn register_peer(
        &self,
        request: RegisterPeerRequest,
        observed: Option<IpAddr>,
    ) -> Result<RegisterPeerResponse, Status> {
        self.registry
            .register_request(request, observed, Instant::now())
    }

    fn unregister_peer(
        &self,
        request: &UnregisterPeerRequest,
        observed: Option<IpAddr>,
    ) -> Result<(), Status> {
        let caller = Caller {
            token: &request.token,
            ip: observed,
        };
        self.registry
            .unregister(&request.peer_addr, request.node_id, caller, Instant::now())
    }
}

/// Command-line options of `music_server`.
#[derive(Parser, Debug)]
#[command(
    name = "music_server",
    version,
    about = "Music262 music server: lists and streams songs (FLAC, MP3, Ogg Vorbis, AAC/ALAC, \
             AIFF, WAV) to music clients and keeps the \
             registry of joinable clients.",
    after_help = "Examples:\n  music_server                          serve the built-in songs on port 50051\n  \
                  music_server --audio-dir ~/Music      serve every song of a folder and its subfolders\n  \
                  music_server --port 6000 --bind 127.0.0.1  only this machine's clients, on port 6000\n  \
                  music_server --log-file /tmp/server.log  log to a file (RUST_LOG=debug for more)\n\n\
                  Console commands: status, help, exit."
)]
pub struct ServerArgs {
    /// TCP port to listen on.
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// Folder of songs to serve, subfolders included (FLAC, MP3, Ogg Vorbis, AAC/ALAC in
    /// M4A, AIFF, WAV). Without it, a built-in library of generated songs is served.
    #[arg(long, value_name = "DIR")]
    pub audio_dir: Option<PathBuf>,
    /// Address to listen on (0.0.0.0: every interface).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Where the log goes: a file path, or `-` for standard error. `RUST_LOG` sets the level.
    #[arg(long, value_name = "PATH", default_value = "-")]
    pub log_file: String,
    /// Do not announce this server on the local network (mDNS `_music262-srv._tcp`, which lets
    /// clients started without --server find it).
    #[arg(long)]
    pub no_discovery: bool,
}

const HELP: &str = "commands:\n  status   songs served, registered clients, streams\n  help     this list\n  exit     stop the server (also: quit)";

fn status(server: &AudioServer<Music>, addr: SocketAddr, started: Instant) -> String {
    let stats = server.stats();
    let music = server.backend();
    let live = music.registry.live(Instant::now());
    let mut out = format!(
        "listening on {addr}, up {}s\nsongs: {}\nstreams: {} active, {} served, {:.1} MB sent\nregistered clients: {}",
        started.elapsed().as_secs(),
        music.library.songs().len(),
        stats.active_streams.load(Ordering::Relaxed),
        stats.streams_started.load(Ordering::Relaxed),
        stats.bytes_sent.load(Ordering::Relaxed) as f64 / 1e6,
        live.len()
    );
    for (addr, node, left) in live {
        out.push_str(&format!(
            "\n  {addr:<24} node {node:016x}  lease {:.0}s",
            left.as_secs_f64()
        ));
    }
    out
}

/// Runs the server until `exit` or a signal. Returns the process exit code.
pub async fn run(args: ServerArgs) -> i32 {
    if let Err(e) = logging::init(
        "music_server",
        &LogTarget::parse(&args.log_file),
        "info",
        crate::env::log_filter(&crate::env::process).as_deref(),
    ) {
        eprintln!("error: {e}");
        return 2;
    }
    let printer = Printer::stdout();
    let songs = match &args.audio_dir {
        None => {
            printer.println("no --audio-dir given: serving the built-in songs");
            crate::library::builtin()
        }
        Some(dir) => {
            let mut last = Instant::now();
            let scan = crate::library::scan(dir, |done, total, name| {
                if total > 0
                    && (last.elapsed().as_millis() > 500 || done == total)
                    && !name.is_empty()
                {
                    printer.println(format!("scanning {}/{}: {name}", done + 1, total));
                    last = Instant::now();
                }
            });
            match scan {
                Ok(scan) => {
                    // Each file in the log, one summary line on the console.
                    for s in &scan.skipped {
                        tracing::info!("{s}");
                    }
                    if let Some(summary) = scan.summary() {
                        printer.println(format!("{summary} (the log names each file)"));
                    }
                    if scan.songs.is_empty() {
                        printer.println(format!(
                            "warning: no playable songs in {} or its subfolders",
                            dir.display()
                        ));
                    }
                    scan.songs
                }
                Err(e) => {
                    eprintln!(
                        "error: {e}; give a folder of songs with --audio-dir, or leave it out to \
                         serve the built-in songs"
                    );
                    return 2;
                }
            }
        }
    };
    for (i, s) in songs.iter().enumerate() {
        let tags = match (s.info.title.as_str(), s.info.artist.as_str()) {
            ("", _) => String::new(),
            (title, "") => format!("  {title}"),
            (title, artist) => format!("  {title} - {artist}"),
        };
        printer.println(format!(
            "{:>3}. {}{tags}  ({}:{:02}, {} Hz, {} ch)",
            i + 1,
            s.info.name,
            s.info.duration_ms / 60_000,
            s.info.duration_ms / 1000 % 60,
            s.info.sample_rate,
            s.info.channels
        ));
    }
    transport_grpc::listen::raise_fd_limit();
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {addr}: {e}{}",
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    " (another server is running there; pick another --port)"
                } else {
                    ""
                }
            );
            return 1;
        }
    };
    let addr = listener.local_addr().unwrap_or(addr);
    let server = AudioServer::new(Music::new(MusicLibrary::new(songs)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = server.clone().serve(listener, async {
        let _ = stop_rx.await;
    });
    printer.println(format!(
        "music server listening on {addr} (type `help` for commands)"
    ));
    tracing::info!(%addr, "music server listening");
    // Announced once listening, so that a client that finds it can use it at once.
    let discovery = announce(&args, addr.port(), &printer);
    let started = Instant::now();
    let mut console = console::start("server> ", None);
    let printer = console.printer.clone();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            input = console.input.recv(), if stdin_open => match input {
                Some(Input::Line(line)) => match line.as_str() {
                    "" => {}
                    "status" => printer.println(status(&server, addr, started)),
                    "help" => printer.println(HELP),
                    "exit" | "quit" => break,
                    other => printer.println(format!("unknown command `{other}`; type `help`")),
                },
                Some(Input::Interrupted) => break,
                // Without a terminal (a service, a test), the end of input does not stop the
                // server; a signal does.
                Some(Input::Eof) | None => {
                    if console.interactive {
                        break;
                    }
                    stdin_open = false;
                }
            },
            _ = shutdown_signal() => break,
        }
    }
    printer.println("music server stopping");
    if let Some(d) = discovery {
        d.shutdown();
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), serving).await;
    0
}

/// Announces the server on the local network unless `--no-discovery`; a failure is one line
/// and the server runs on without it.
fn announce(args: &ServerArgs, port: u16, printer: &Printer) -> Option<Discovery> {
    if args.no_discovery {
        return None;
    }
    let announced = Discovery::start(args.bind).and_then(|d| {
        d.announce_server(&crate::discovery::host_name(), args.bind, port)?;
        Ok(d)
    });
    match announced {
        Ok(d) => {
            printer.println("announced on the local network (mDNS; --no-discovery to stop it)");
            Some(d)
        }
        Err(e) => {
            printer.println(format!("warning: {e}; clients must be given --server"));
            None
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
