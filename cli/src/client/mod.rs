//! `music_client`: plays the group's songs, runs a peer endpoint others can join, and reads
//! commands from the console.

pub mod commands;
pub mod config;
mod discovered;
mod driver;
mod executor;
mod fetcher;
mod format;
mod legacy;
mod links;
mod monitor;
mod news;
mod peers;
mod progress;
pub mod queue;
mod server_link;
mod songs;
mod state_dir;
mod transcript;
mod web_snapshot;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use clap::{Parser, ValueEnum};
use music262_proto::auth::GroupKey;
use player::{Clock, DeviceTiming, Player, PlayerConfig, SinkSpec};
use sync_core::{Config, LocalTime, Node, NodeId};
use transport_grpc::{AudioClient, PeerTransport};
use transport_quic::QuicTransport;

use crate::console;
use crate::logging::{self, LogTarget};

/// Which transport carries the peer protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// gRPC over HTTP/2 (TCP): the `Exchange` stream of `ClientHandler`.
    Grpc,
    /// QUIC (UDP): frames on a reliable stream, clock probes as datagrams.
    Quic,
}

impl TransportKind {
    /// Short name, as in the `connections` table.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Grpc => "grpc",
            TransportKind::Quic => "quic",
        }
    }
}

/// Command-line options of `music_client`.
#[derive(Parser, Debug)]
#[command(
    name = "music_client",
    version,
    args_override_self = true,
    about = "Music262 client: plays songs from a music server in sync with every client it is \
             joined to. A command typed here (play, pause, resume, seek, stop) lands on every \
             peer at the same instant and on the same audio frame.",
    after_help = "Examples:\n  music_client                                  server on localhost:50051, peers on port 50052\n  \
                  music_client --server 192.168.1.2:50051       use a server on another machine\n  \
                  music_client --p2p-port 50062 --sink null     a second client on the same machine, silent\n  \
                  music_client --sink wav:out.wav --trace t.csv  record what would be heard, and a timing trace\n  \
                  music_client --web                            also serve a control page on http://127.0.0.1:8080/\n  \
                  music_client --latency-ms 180                 Bluetooth speakers: start 180 ms early\n  \
                  music_client --transport quic                 join peers over QUIC (better on lossy Wi-Fi)\n  \
                  music_client --bind 192.168.1.5 --advertise 192.168.1.5:50052\n  \
                  \x20                                             listen on one interface, registered under that address\n  \
                  MUSIC262_GROUP_KEY=$(cat ~/.music262-key) music_client\n  \
                  \x20                                             only peers with the same key can join or control\n  \
                  music_client --max-links 4 --min-lead-ms 50   fewer links; commands take effect 50 ms later or more\n  \
                  music_client --log-file -                     log to the terminal instead of a file\n\n\
                  Environment:\n  MUSIC262_CLOCK_OFFSET_MS, MUSIC262_CLOCK_DRIFT_PPM  skew this client's sync clock (and its null/wav\n                                                      sink) to emulate a separate machine\n  \
                  MUSIC262_CLOCK_STEP_AT_S, MUSIC262_CLOCK_STEP_MS    step that clock forward once, by STEP_MS milliseconds,\n                                                      STEP_AT_S seconds after start (fault injection)\n  \
                  MUSIC262_GROUP_KEY                                  the group key (see --group-key)\n  \
                  RUST_LOG                                            log level (e.g. debug, or sync_core=trace)\n\n\
                  Files:\n  \
                  $XDG_CONFIG_HOME/music262/client.toml (~/.config/music262/client.toml)\n  \
                  \x20   every option, by its long name (latency_ms = 180, web = true); the command line wins;\n  \
                  \x20   --config chooses another file\n  \
                  $XDG_STATE_HOME/music262/client-PORT/state.toml (~/.local/state/music262/client-PORT/)\n  \
                  \x20   node id, the peers this client was linked to (dialled again at start), latency,\n  \
                  \x20   channel and volume; one folder per peer port; --state-dir moves it\n\n\
                  Type `help` at the prompt for the commands."
)]
pub struct ClientArgs {
    /// Music server address (host:port; default localhost:50051, or, when nothing answers
    /// there, a server found on the local network). The client starts and works without it
    /// (peer features only) and connects when it appears.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Port of this client's peer endpoint (others `join` it there). If it is taken, the next
    /// free port is used and said so.
    #[arg(long, value_name = "PORT", default_value_t = 50052)]
    pub p2p_port: u16,
    /// Address the peer endpoint listens on.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Address (host:port) other clients should use to join this one, registered with the
    /// server. Default: this machine's first non-loopback address and the peer port.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Transport for the links this client dials (`join`, gossip). Links are accepted on both:
    /// gRPC on the TCP peer port and QUIC on the UDP port of the same number. Peers are
    /// authenticated by the group key (`--group-key`), on both transports, or not at all.
    #[arg(long, value_enum, default_value_t = TransportKind::Grpc)]
    pub transport: TransportKind,
    /// Where the sound goes: `device` (the default sound device; falls back to `null` with one
    /// line if there is none), `device:NAME`, `null` (silent, paced by the sync clock), or
    /// `wav:PATH` (record exactly what would be heard).
    #[arg(long, value_name = "SINK", default_value = "device")]
    pub sink: String,
    /// Write a timing trace (CSV: host_monotonic_ns,frame,sample_rate,state,group_ns) every
    /// 10 ms while a song is loaded.
    #[arg(long, value_name = "PATH")]
    pub trace: Option<PathBuf>,
    /// Most peer links kept at once; further peers are reached through relaying.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_links: usize,
    /// Smallest delay between a command and its effect, in milliseconds (grows with measured
    /// network delays).
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub min_lead_ms: u64,
    /// Where the log goes: a file path, or `-` for standard error. Default: a file in the
    /// temporary folder, named after the peer port. `RUST_LOG` sets the level (default info).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<String>,
    /// This room's name, shown to the other rooms (`peers`, `connections`, "paused by
    /// Kitchen"): up to 64 printable characters. Default: the host name.
    #[arg(long, value_name = "NAME", value_parser = parse_name_arg)]
    pub name: Option<String>,
    /// This client's node id in hex (the lowest id of a group is its clock reference).
    /// Default: random.
    #[arg(long, value_name = "HEX", hide = true)]
    pub node_id: Option<String>,
    /// The group key: a secret shared by every client of the group (at least 12 bytes; use a
    /// random one, e.g. `openssl rand -hex 16`). With it, every peer frame is authenticated
    /// (HMAC-SHA256, replay-protected), peers without it cannot link, and legacy calls that
    /// change playback need its token. Prefer the environment variable MUSIC262_GROUP_KEY, which
    /// other users cannot read from the process list.
    #[arg(long, value_name = "KEY")]
    pub group_key: Option<String>,
    /// Serve a web page to watch and control the group at this address (default
    /// 127.0.0.1:8080 when given without a value). It binds to loopback unless told otherwise;
    /// with a group key, the page needs the token printed at start.
    #[arg(
        long,
        value_name = "IP:PORT",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:8080"
    )]
    pub web: Option<SocketAddr>,
    /// Extra delay of this client's speakers that the sound card does not report (Bluetooth,
    /// HDMI receivers), in milliseconds: playback starts that much earlier so it is heard in
    /// sync. Also the `latency` command, whose last value is kept in the state directory and
    /// used when this option is not given (default 0).
    #[arg(long, value_name = "MS", value_parser = parse_latency_arg)]
    pub latency_ms: Option<f64>,
    /// How much audio the sound device is handed ahead, in milliseconds (default: what the
    /// device chooses, about 21 ms through PulseAudio). The device may round it; the client
    /// says what it took. A deeper buffer rides out longer stalls of a busy machine before the
    /// sound runs dry, but commands need that much lead to land on time (--min-lead-ms), and
    /// through PulseAudio 80 ms made the callbacks uneven and the sync milliseconds off: the
    /// default is what BENCHMARKS.md measures. Only for --sink device.
    #[arg(long, value_name = "MS", value_parser = parse_device_buffer_arg)]
    pub device_buffer_ms: Option<f64>,
    /// Nice value for the threads that feed the sound device (default -11, what PulseAudio
    /// gives its own; from -20 to 19). A busy machine that wakes them late runs the device dry,
    /// which puts the sound out of step for seconds. Lowering it needs CAP_SYS_NICE or an
    /// RLIMIT_NICE allowance (root has both); without, they run as ordinary threads (0).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub audio_nice: Option<i32>,
    /// Lease asked of the server for this client's registration, in milliseconds (renewed at a
    /// third of it; a client that dies disappears from `peers` when it lapses).
    #[arg(long, value_name = "MS", default_value_t = 15_000, hide = true)]
    pub lease_ms: u64,
    /// How the sound device's buffers are timed: `callbacks` (the default: the rhythm of its
    /// callbacks plus the long-run average of the latency it reports) or `reported` (the
    /// latency it reports, as it is; for comparison, see BENCHMARKS.md). Only for --sink
    /// device; for the as-heard rig, so not listed in --help.
    #[arg(long, value_name = "TIMING", hide = true, value_parser = parse_device_timing_arg)]
    pub device_timing: Option<DeviceTiming>,
    /// When the sound device closes, write PATH: every callback's instant, reported latency
    /// and timing (CSV; diagnostics, for the as-heard rig, so not listed in --help). Only for
    /// --sink device.
    #[arg(long, value_name = "PATH", hide = true)]
    pub device_probe: Option<PathBuf>,

    // Where this client keeps its identity and finds its settings.
    /// The config file (TOML, every option by its long name). Default:
    /// $XDG_CONFIG_HOME/music262/client.toml or ~/.config/music262/client.toml, if it exists.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Folder of this client's state (node id, remembered peers, latency, channel, volume).
    /// Default: $XDG_STATE_HOME/music262/client-PORT or ~/.local/state/music262/client-PORT,
    /// PORT being the peer port bound.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// A group name announced on the local network: rooms of the same group name join each
    /// other by themselves (with a group key, only rooms that need one; the key still decides).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Neither announce this client on the local network (mDNS) nor look for rooms and music
    /// servers there.
    #[arg(long)]
    pub no_discovery: bool,
}

fn parse_device_timing_arg(s: &str) -> Result<DeviceTiming, String> {
    s.parse()
}

/// A room name as given: taken only if it is already what peers would keep of it.
fn parse_name_arg(s: &str) -> Result<String, String> {
    match sync_core::room_name(s) {
        Some(name) if name == s => Ok(name),
        _ => Err(format!(
            "expected 1 to {} bytes of printable text without leading or trailing blanks, like Kitchen",
            sync_core::MAX_NAME_LEN
        )),
    }
}

fn parse_latency_arg(s: &str) -> Result<f64, String> {
    commands::parse_latency_ms(s)
}

/// Longest device buffer accepted: a second is already far more than any stall to ride out.
const MAX_DEVICE_BUFFER_MS: f64 = 1000.0;

fn parse_device_buffer_arg(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(ms) if (1.0..=MAX_DEVICE_BUFFER_MS).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "expected milliseconds from 1 to {MAX_DEVICE_BUFFER_MS}, like 40"
        )),
    }
}

/// Refuses the sound device's options with any other sink, naming the first one given.
fn check_device_options(args: &ClientArgs, sink: &SinkSpec) -> Result<(), String> {
    if matches!(sink, SinkSpec::Device(_)) {
        return Ok(());
    }
    let given = [
        (args.device_buffer_ms.is_some(), "--device-buffer-ms"),
        (args.audio_nice.is_some(), "--audio-nice"),
        (args.device_timing.is_some(), "--device-timing"),
        (args.device_probe.is_some(), "--device-probe"),
    ];
    match given.iter().find(|(given, _)| *given) {
        Some((_, option)) => Err(format!("{option} is for --sink device, not {sink}")),
        None => Ok(()),
    }
}

/// The player's configuration from the options: `sink` and what the device options say.
fn player_config(args: &ClientArgs, sink: &SinkSpec) -> PlayerConfig {
    let mut config = PlayerConfig::new(sink.clone());
    config.fallback_to_null = matches!(sink, SinkSpec::Device(_));
    config.device_probe = args.device_probe.clone();
    config.device_timing = args.device_timing.unwrap_or_default();
    config.device_buffer_ms = args.device_buffer_ms;
    config.audio_nice = Some(args.audio_nice.unwrap_or(player::AUDIO_NICE));
    config
}

/// This machine's non-loopback addresses, IPv4 first.
pub fn interface_addrs() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .filter(|i| !i.is_loopback())
                .map(|i| i.ip())
                .filter(|ip| match ip {
                    IpAddr::V4(_) => true,
                    // Link-local IPv6 needs a scope to be joinable; leave it out.
                    IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    v.dedup();
    v
}

/// The start line about the state directory: where it is, whether the node id is the one
/// kept there, and which remembered peers are dialled.
fn rejoin_note(dir: &std::path::Path, same_id: bool, peers: &[sync_core::PeerAddr]) -> String {
    let id = if same_id {
        "node id kept"
    } else {
        "new node id saved"
    };
    let peers = match peers {
        [] => "no remembered peers".to_string(),
        peers => format!(
            "rejoining {} remembered peer(s): {}",
            peers.len(),
            peers
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!("state in {} ({id}); {peers}", dir.display())
}

fn join_host_port(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// Runs the client until `quit` or a signal. Returns the process exit code.
pub async fn run(args: ClientArgs) -> i32 {
    let env = match crate::env::ClientEnv::read(&crate::env::process) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let sink: SinkSpec = match args.sink.parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --sink {}: {e}", args.sink);
            return 2;
        }
    };
    if let Err(e) = check_device_options(&args, &sink) {
        eprintln!("error: {e}");
        return 2;
    }
    if let Some(server) = &args.server
        && let Err(e) = crate::client::commands::check_addr(server)
    {
        eprintln!("error: --server {e}");
        return 2;
    }
    if let Some(a) = &args.advertise
        && let Err(e) = crate::client::commands::check_addr(a)
    {
        eprintln!("error: --advertise {e}");
        return 2;
    }
    if args.max_links == 0 {
        eprintln!("error: --max-links must be at least 1");
        return 2;
    }
    let given_id = match args.node_id.as_deref().map(state_dir::parse_node_id) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            eprintln!("error: --node-id {e}");
            return 2;
        }
    };
    // The option wins over the variable, as clap's `env` did.
    let group_key = match args
        .group_key
        .as_deref()
        .or(env.group_key.as_deref())
        .map(|k| GroupKey::new(k.as_bytes()))
    {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => {
            eprintln!("error: --group-key / {}: {e}", crate::env::GROUP_KEY);
            return 2;
        }
    };
    let has_key = group_key.is_some();
    let clock = crate::clock::sync_clock(&env.skew);

    // The peer endpoint: the port asked for, or the next free one, over TCP (gRPC) and UDP
    // (QUIC) alike.
    let mut listener = None;
    for port in args.p2p_port..args.p2p_port.saturating_add(20) {
        let addr = SocketAddr::new(args.bind, port);
        let bound = match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => std::net::UdpSocket::bind(addr).map(|udp| (tcp, udp)),
            Err(e) => Err(e),
        };
        match bound {
            Ok(pair) => {
                listener = Some(pair);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => {
                eprintln!("error: cannot listen on {}:{port}: {e}", args.bind);
                return 1;
            }
        }
    }
    let Some((listener, udp)) = listener else {
        eprintln!(
            "error: peer ports {} to {} are all in use; pick another with --p2p-port",
            args.p2p_port,
            args.p2p_port.saturating_add(19)
        );
        return 1;
    };
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(args.p2p_port);
    // The log file is named after the port actually bound, so that a client that fell back to
    // another port does not write into the log of the client holding the one it asked for.
    let log_target = match &args.log_file {
        Some(p) => LogTarget::parse(p),
        None => LogTarget::File(
            std::env::temp_dir()
                .join("music262")
                .join(format!("client-{port}.log")),
        ),
    };
    let log_line = match logging::init(
        "music_client",
        &log_target,
        "info",
        env.log_filter.as_deref(),
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };

    transport_grpc::listen::raise_fd_limit();

    let restored = match state_dir::restore(
        args.state_dir.as_deref(),
        env.state_home.as_deref(),
        port,
        given_id,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let node_id = restored.node_id;

    // What can fail at start fails here, before the banner and the prompt.
    let player_clock: Arc<dyn Clock> = clock.clone();
    let player = match Player::open(player_config(&args, &sink), player_clock) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    // The web page: a taken port stops the client with one line instead of leaving it half
    // started.
    let web = match args.web {
        Some(addr) => match crate::web::bind(addr, group_key.clone()).await {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
        None => None,
    };
    let trace = match &args.trace {
        Some(p) => match crate::trace::TraceWriter::create(p) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        },
        None => None,
    };

    let console = console::start("music262> ", None);
    let printer = console.printer.clone();
    printer.println(log_line);
    for line in &env.retired {
        tracing::warn!("{line}");
        printer.println(line);
    }
    if clock.offset_ns() != 0 || clock.drift_ppm() != 0.0 {
        printer.println(format!(
            "sync clock skewed by {:+.3} ms and {:+.1} ppm (from {} / {})",
            clock.offset_ns() as f64 / 1e6,
            clock.drift_ppm(),
            crate::env::CLOCK_OFFSET_MS,
            crate::env::CLOCK_DRIFT_PPM
        ));
    }

    if port != args.p2p_port {
        printer.println(format!(
            "peer port {} is in use; listening on {port} instead",
            args.p2p_port
        ));
    }

    let interfaces = interface_addrs();
    let advertised = args.advertise.clone().unwrap_or_else(|| {
        let ip = match args.bind {
            ip if !ip.is_unspecified() => ip,
            _ => interfaces
                .first()
                .copied()
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        };
        join_host_port(ip, port)
    });
    let joinable: Vec<String> = if args.bind.is_unspecified() {
        interfaces
            .iter()
            .map(|ip| join_host_port(*ip, port))
            .collect()
    } else {
        vec![join_host_port(args.bind, port)]
    };
    printer.println(format!(
        "peer endpoint on port {port} (gRPC on TCP, QUIC on UDP; joins dial {}); others can join \
         this client with: join {}",
        args.transport.name(),
        if joinable.is_empty() {
            format!("127.0.0.1:{port} (no network interface found)")
        } else {
            joinable.join("  or  join ")
        }
    ));

    let key_note = match &group_key {
        Some(k) => {
            printer.println(format!(
                "group key {} set: only peers with it can link, and legacy commands need its \
                 token",
                k.fingerprint()
            ));
            tracing::info!(key_id = %k.fingerprint(), "group key set");
            format!("group key {}", k.fingerprint())
        }
        None => {
            // Said once, at start: the one moment the user is looking.
            let warning = format!(
                "warning: no group key: anyone who can reach port {port} can join this client \
                 and control playback (set {} or --group-key on every client)",
                crate::env::GROUP_KEY
            );
            tracing::warn!("{warning}");
            printer.println(warning);
            "no group key (anyone can control playback)".to_string()
        }
    };

    // The player.
    // The player.
    if let Some(note) = player.fallback_note() {
        printer.println(note);
    }
    printer.println(format!(
        "playing through {} at {} Hz",
        player.sink_kind(),
        player.sink_rate()
    ));
    match player.audio_nice() {
        Some(Ok(nice)) => tracing::info!(nice, "sound device threads at a raised priority"),
        Some(Err(why)) => {
            tracing::info!(%why, "sound device threads at the ordinary priority");
            // Said on the console only when asked for: most users cannot grant it anyway.
            if args.audio_nice.is_some() {
                printer.println(format!(
                    "--audio-nice: {why}; the sound runs at the ordinary priority"
                ));
            }
        }
        None => {}
    }
    if let (Some(ms), Some(period)) = (args.device_buffer_ms, player.device_period_frames()) {
        let rate = f64::from(player.sink_rate());
        printer.println(format!(
            "device buffer {:.1} ms (asked {ms} ms): two periods of {period} frames",
            2.0 * f64::from(period) * 1e3 / rate
        ));
    }
    let latency_ms = args
        .latency_ms
        .or(restored.settings.latency())
        .unwrap_or(0.0);
    if latency_ms > 0.0 {
        player.set_output_latency_ns((latency_ms * 1e6).round() as u64);
        printer.println(executor::latency_note(latency_ms));
    }

    if let Some(w) = &web {
        printer.println(format!("web page: {}", w.url(&interfaces)));
        if !w.local_addr().ip().is_loopback() && group_key.is_none() {
            printer.println(
                "warning: the web page is reachable from the network and there is no \
                 group key: anyone who can reach it can control playback",
            );
        }
    }

    // The node.
    let mut cfg = Config::new(NodeId(node_id));
    cfg.listen_addr = Some(advertised.clone());
    cfg.name = args.name.clone().or_else(|| env.host_name.clone());
    cfg.own_addrs = interfaces
        .iter()
        .map(|ip| join_host_port(*ip, port))
        .chain([
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ])
        .collect();
    cfg.max_links = args.max_links;
    cfg.lead_min = (args.min_lead_ms as i64).saturating_mul(1_000_000);
    let now = LocalTime(clock.now_ns());
    let room = cfg.name.clone();
    let mut node = Node::new(cfg, node_id, now);
    match &room {
        Some(room) => printer.println(format!("node id {} (room {room})", NodeId(node_id))),
        None => printer.println(format!("node id {}", NodeId(node_id))),
    }
    let mut keeper = restored.keeper;
    if let (Some(keeper), Some(dir)) = (&mut keeper, &restored.dir) {
        printer.println(rejoin_note(
            dir,
            restored.same_id,
            &keeper.remembered_addrs(),
        ));
        keeper.offer_remembered(&mut node, now);
    }

    // The transports: one link id counter, so that gRPC and QUIC links never share an id.
    let clock_fn: transport_grpc::ClockFn = {
        let c = clock.clone();
        Arc::new(move || c.now_ns())
    };
    let link_ids = Arc::new(AtomicU64::new(1));
    let (transport, transport_events) =
        PeerTransport::with_group_key(clock_fn.clone(), link_ids.clone(), group_key.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let serving = transport.serve(listener, stopped(stop_rx.clone()));
    let (quic, quic_events) = QuicTransport::with_group_key(clock_fn, link_ids, group_key);
    let quic_serving = match quic.serve(udp, stopped(stop_rx.clone())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: QUIC peer endpoint on port {port}: {e}");
            return 1;
        }
    };

    let web = web.map(|w| {
        let (state_tx, state_rx) =
            tokio::sync::watch::channel(Arc::new(crate::web::Snapshot::default()));
        let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
        w.serve(state_rx, cmd_tx, stopped(stop_rx.clone()));
        driver::WebLink {
            state: state_tx,
            commands: cmd_rx,
        }
    });
    let announcement = (!args.no_discovery).then(|| crate::discovery::RoomAnnouncement {
        name: room.clone().unwrap_or_else(crate::discovery::host_name),
        node_id,
        group: args.group.clone(),
        key: has_key,
        port,
        bind: args.bind,
    });
    let discovered = discovered::start_or_say(announcement, &printer);
    let server = discovered::server_addr(args.server.as_deref(), discovered.as_ref(), &printer);
    let audio = match AudioClient::new(&server.await) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    printer.println("type `help` for commands");

    let driver = driver::Driver::new(driver::Parts {
        node,
        clock,
        player,
        links: links::Links::new(
            (transport, transport_events),
            (quic, quic_events),
            args.transport,
        ),
        audio,
        printer,
        advertised,
        trace,
        interactive: console.interactive,
        lease: std::time::Duration::from_millis(args.lease_ms.max(1)),
        key_note,
        transport: args.transport,
        web,
        state: keeper,
        settings: restored.settings,
        discovered,
    });
    let code = driver.run(console.input).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let _ = tokio::join!(serving, quic_serving);
    })
    .await;
    code
}

#[cfg(test)]
mod tests;
