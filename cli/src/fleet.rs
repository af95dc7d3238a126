//! Running a group of real processes on one host: a music server and music clients with
//! skewed sync clocks, driven through their standard input and observed through their output
//! and `--trace` files. Used by the demo; the measurement functions compare traces the way an
//! outside tool would.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

/// Starts a `music_server` (binary `bin`) on loopback port `port`, serving `audio_dir` or the
/// built-in songs, logging to `log`, and waits until it listens.
pub fn start_server(
    bin: &Path,
    port: u16,
    audio_dir: Option<&Path>,
    log: &Path,
) -> Result<Proc, String> {
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
    if let Some(dir) = audio_dir {
        cmd.arg("--audio-dir").arg(dir);
    }
    cmd.arg("--log-file").arg(log);
    let mut server = Proc::spawn("server", cmd)?;
    server.expect("music server listening", Duration::from_secs(30))?;
    Ok(server)
}

/// How the demo and the benchmarks start a client on loopback: its sync clock skewed like a
/// separate machine's, its log and `--trace` in `dir`, named after it.
pub struct SkewedClient<'a> {
    /// Name of the client (and of its files).
    pub name: &'a str,
    /// The music server's port on loopback.
    pub server_port: u16,
    /// The client's peer port.
    pub p2p_port: u16,
    /// The address it registers and others join (a relay's, in the experiment).
    pub advertise: &'a str,
    /// `grpc` or `quic`.
    pub transport: &'a str,
    /// `--sink` value.
    pub sink: &'a str,
    /// Folder of its log and trace.
    pub dir: &'a Path,
    /// Offset of its sync clock, in milliseconds.
    pub offset_ms: f64,
    /// Drift of its sync clock, in ppm.
    pub drift_ppm: f64,
}

impl SkewedClient<'_> {
    /// Its trace file.
    pub fn trace(&self) -> PathBuf {
        self.dir.join(format!("{}.csv", self.name))
    }

    /// The command that starts it with `music_client` binary `bin`.
    pub fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--server",
            &format!("127.0.0.1:{}", self.server_port),
            "--p2p-port",
            &self.p2p_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--advertise",
            self.advertise,
            "--transport",
            self.transport,
            "--sink",
            self.sink,
            "--log-file",
        ])
        .arg(self.dir.join(format!("{}.log", self.name)))
        .arg("--trace")
        .arg(self.trace())
        .arg("--state-dir")
        .arg(self.dir.join(format!("{}.state", self.name)))
        .arg("--no-discovery")
        .env(crate::env::CLOCK_OFFSET_MS, self.offset_ms.to_string())
        .env(crate::env::CLOCK_DRIFT_PPM, self.drift_ppm.to_string());
        cmd
    }

    /// Starts it and waits until its player is open; returns the process and the line saying
    /// where it plays.
    pub fn start(&self, bin: &Path) -> Result<(Proc, String), String> {
        let mut proc = Proc::spawn(self.name, self.command(bin))?;
        let through = proc.expect("playing through", Duration::from_secs(30))?;
        Ok((proc, through))
    }
}

/// A running process whose output is collected line by line.
pub struct Proc {
    /// Name used in messages.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    cursor: usize,
}

impl Proc {
    /// Starts `cmd` with piped standard streams.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Proc, String> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("lines").push(line);
                }
            });
        }
        Ok(Proc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            cursor: 0,
        })
    }

    /// Types a command line.
    pub fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Waits until a line printed since the previous wait contains `needle`.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let lines = self.lines.lock().expect("lines");
                if let Some(i) = lines[self.cursor..].iter().position(|l| l.contains(needle)) {
                    self.cursor += i + 1;
                    return Ok(lines[self.cursor - 1].clone());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) while waiting for `{needle}`:\n{}",
                    self.name,
                    self.output().join("\n")
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: nothing like `{needle}` within {timeout:?}; its output:\n{}",
                    self.name,
                    self.output().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `command` and returns the lines printed during the next `settle`.
    pub fn ask(&mut self, command: &str, settle: Duration) -> Vec<String> {
        let start = self.lines.lock().expect("lines").len();
        self.send(command);
        std::thread::sleep(settle);
        let lines = self.lines.lock().expect("lines");
        self.cursor = lines.len();
        lines[start..].to_vec()
    }

    /// Waits up to `timeout` for the process to exit; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One line of a `--trace` file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracePoint {
    /// Host `CLOCK_MONOTONIC`, nanoseconds.
    pub host_ns: u64,
    /// Song frame heard then.
    pub frame: f64,
    /// The song's sample rate.
    pub sample_rate: u32,
    /// Whether it was playing.
    pub playing: bool,
    /// The state word.
    pub state: TraceState,
    /// The group clock then, as the client estimated it (older traces have none).
    pub group_ns: Option<u64>,
}

/// The state column of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceState {
    /// `stopped`
    Stopped,
    /// `loading`
    Loading,
    /// `paused`
    Paused,
    /// `playing`
    Playing,
}

impl TraceState {
    /// The word as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            TraceState::Stopped => "stopped",
            TraceState::Loading => "loading",
            TraceState::Paused => "paused",
            TraceState::Playing => "playing",
        }
    }
}

/// Reads a trace file written by `music_client --trace` (an unfinished last line is ignored).
pub fn read_trace(path: &Path) -> Vec<TracePoint> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            // Four columns in traces written before `group_ns` was added.
            if f.len() != 4 && f.len() != 5 {
                return None;
            }
            let state = match f[3] {
                "stopped" => TraceState::Stopped,
                "loading" => TraceState::Loading,
                "paused" => TraceState::Paused,
                "playing" => TraceState::Playing,
                _ => return None,
            };
            Some(TracePoint {
                host_ns: f[0].parse().ok()?,
                frame: f[1].parse().ok()?,
                sample_rate: f[2].parse().ok()?,
                playing: state == TraceState::Playing,
                state,
                group_ns: match f.get(4) {
                    None | Some(&"") => None,
                    Some(g) => Some(g.parse().ok()?),
                },
            })
        })
        .collect()
}

/// Sync error of `a` against `b` in microseconds, at each of `a`'s playing instants in
/// `[from_ns, to_ns]` where `b` plays too (b interpolated between its neighbouring lines; no
/// interpolation across a gap of more than 50 ms, which is a pause or a jump).
pub fn sync_errors_us(a: &[TracePoint], b: &[TracePoint], from_ns: u64, to_ns: u64) -> Vec<f64> {
    let bp: Vec<&TracePoint> = b.iter().filter(|p| p.playing).collect();
    let mut out = Vec::new();
    for p in a
        .iter()
        .filter(|p| p.playing && p.host_ns >= from_ns && p.host_ns <= to_ns)
    {
        let Some((i, x)) = bracket(&bp, |q| q.host_ns, p.host_ns) else {
            continue;
        };
        let (q0, q1) = (bp[i - 1], bp[i]);
        if (q1.frame - q0.frame).abs() > 48_000.0 {
            continue;
        }
        let f = q0.frame + (q1.frame - q0.frame) * x;
        out.push((p.frame - f) / f64::from(p.sample_rate.max(1)) * 1e6);
    }
    out
}

/// Clock sync error of `a` against `b` in microseconds: at each of `a`'s playing instants in
/// `[from_ns, to_ns]` that carries a group clock, how far `b`'s group clock (interpolated as in
/// [`sync_errors_us`]) was behind `a`'s. Positive when `b`'s clock is behind, which makes `b`
/// late by as much: the part of the sync error that comes from clock sync rather than from how
/// the players follow their clocks.
pub fn clock_errors_us(a: &[TracePoint], b: &[TracePoint], from_ns: u64, to_ns: u64) -> Vec<f64> {
    let bp: Vec<(u64, u64)> = b
        .iter()
        .filter(|p| p.playing)
        .filter_map(|p| Some((p.host_ns, p.group_ns?)))
        .collect();
    let mut out = Vec::new();
    for p in a
        .iter()
        .filter(|p| p.playing && p.host_ns >= from_ns && p.host_ns <= to_ns)
    {
        let Some(ga) = p.group_ns else { continue };
        let Some((i, x)) = bracket(&bp, |q| q.0, p.host_ns) else {
            continue;
        };
        let ((_, g0), (_, g1)) = (bp[i - 1], bp[i]);
        // Differences first: the clocks themselves are too large for an f64's fraction.
        let gb = g0 as f64 - ga as f64 + (g1 as f64 - g0 as f64) * x;
        out.push(-gb / 1e3);
    }
    out
}

/// Where host instant `at` falls among `points` (in host order): the index `i` of the first
/// point at or after it and how far (0..=1) it lies from point `i - 1` to point `i`; `None`
/// outside them or across a gap of more than 50 ms (a pause or a jump).
fn bracket<T>(points: &[T], host_ns: impl Fn(&T) -> u64, at: u64) -> Option<(usize, f64)> {
    let i = points.partition_point(|q| host_ns(q) < at);
    if i == 0 || i >= points.len() {
        return None;
    }
    let (h0, h1) = (host_ns(&points[i - 1]), host_ns(&points[i]));
    (h1 - h0 <= 50_000_000).then(|| (i, (at - h0) as f64 / (h1 - h0) as f64))
}

/// The host instant (ns) the sound stopped in `trace` at its first pause after `from_ns`: when
/// the frame reached the frame the pause holds, extrapolated at the rate of the last two playing
/// lines (the trace samples the position, so the stop falls between lines). `None` when the
/// trace holds no playing line followed by a paused one after `from_ns`.
pub fn pause_instant_ns(trace: &[TracePoint], from_ns: u64) -> Option<u64> {
    // The paused line comes after `from_ns`; the playing lines before it may not (a pause one
    // lead after it is typed can follow a single line).
    let k = trace.windows(2).position(|w| {
        w[1].host_ns >= from_ns && w[0].playing && w[1].state == TraceState::Paused
    })?;
    let (last, held) = (&trace[k], trace[k + 1].frame);
    let before = trace[..k].iter().rev().find(|p| p.playing)?;
    let per_ns = (last.frame - before.frame) / (last.host_ns - before.host_ns) as f64;
    if per_ns <= 0.0 {
        return None;
    }
    let offset_ns = ((held - last.frame) / per_ns).round() as i64;
    last.host_ns.checked_add_signed(offset_ns)
}

/// The spread (µs) of the instants the sound stopped across `traces` at their first pause after
/// `from_ns` ([`pause_instant_ns`]); `None` when a trace shows no such pause.
pub fn pause_spread_us(traces: &[Vec<TracePoint>], from_ns: u64) -> Option<f64> {
    let instants: Option<Vec<u64>> = traces
        .iter()
        .map(|t| pause_instant_ns(t, from_ns))
        .collect();
    let instants = instants?;
    let (lo, hi) = (instants.iter().min()?, instants.iter().max()?);
    Some((hi - lo) as f64 / 1e3)
}

/// The `q` quantile (0..=1) of the absolute values; `None` when empty.
pub fn quantile_abs(v: &[f64], q: f64) -> Option<f64> {
    let mut a: Vec<f64> = v.iter().map(|x| x.abs()).collect();
    if a.is_empty() {
        return None;
    }
    a.sort_by(f64::total_cmp);
    Some(a[((a.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize])
}

/// Where binaries next to the running one live (from an example, one folder up:
/// `target/release/examples/..`).
pub fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut p = exe.with_file_name(name);
    if !p.exists()
        && let Some(dir) = exe.parent().filter(|d| d.ends_with("examples"))
        && let Some(up) = dir.parent()
    {
        p = up.join(name);
    }
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing; build it with `cargo build --release -p music262`",
            p.display()
        ))
    }
}

/// Sends one legacy `SendMusicCommand` (`action`, song number `song_num`) to the peer endpoint
/// at `addr`, as a script would, with `token` in the `music262-auth` metadata entry when given.
/// Blocks until answered; an error is `"<gRPC code>: <message>"`.
pub fn send_legacy_command(
    addr: &str,
    action: &str,
    song_num: i32,
    token: Option<&str>,
) -> Result<(), String> {
    use music262_proto::auth::LEGACY_TOKEN_METADATA;
    use music262_proto::client::MusicRequest;
    use music262_proto::client::client_handler_client::ClientHandlerClient;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut client = ClientHandlerClient::connect(format!("http://{addr}"))
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let mut request = tonic::Request::new(MusicRequest {
            action: action.to_string(),
            song_num,
            ..MusicRequest::default()
        });
        if let Some(t) = token {
            let value = t
                .parse()
                .map_err(|_| "the token is not valid metadata".to_string())?;
            request.metadata_mut().insert(LEGACY_TOKEN_METADATA, value);
        }
        client
            .send_music_command(request)
            .await
            .map(|_| ())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    })
}

/// The legacy-call token of the group key `key` (what a script puts in the `music262-auth`
/// metadata entry), or why the key is not valid.
pub fn legacy_token(key: &str) -> Result<String, String> {
    music262_proto::auth::GroupKey::new(key.as_bytes())
        .map(|k| k.legacy_token())
        .map_err(|e| e.to_string())
}

/// A hand-driven peer of a keyed client, over gRPC, for tests that play a misbehaving peer:
/// it runs the group-key handshake with the key it is given, then sends frames sealed, forged
/// or replayed as told. Blocking (it owns a runtime with one worker thread).
pub struct RawKeyedPeer {
    runtime: tokio::runtime::Runtime,
    out: tokio::sync::mpsc::Sender<music262_proto::PeerFrame>,
    /// Held so that the link stays open.
    _inbound: tonic::Streaming<music262_proto::PeerFrame>,
    sealer: music262_proto::auth::Sealer,
    sent: Vec<music262_proto::PeerFrame>,
}

impl RawKeyedPeer {
    /// Opens an `Exchange` link to the peer endpoint at `addr` and passes the group-key
    /// handshake with `key` (which fails, with the reason, if the keys differ).
    pub fn connect(addr: &str, key: &str) -> Result<Self, String> {
        use music262_proto::auth::{self, Channel, GroupKey, LinkKeys, Role};
        use music262_proto::client::client_handler_client::ClientHandlerClient;

        let key = GroupKey::new(key.as_bytes()).map_err(|e| e.to_string())?;
        // A worker thread keeps the connection going between calls.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (out, inbound, sealer) = runtime.block_on(async {
            let mut client = ClientHandlerClient::connect(format!("http://{addr}"))
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let (out, rx) = tokio::sync::mpsc::channel(16);
            let mut nonce = [0u8; auth::NONCE_LEN];
            getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
            out.send(auth::opening_frame(&key, nonce))
                .await
                .map_err(|e| e.to_string())?;
            let mut inbound = client
                .exchange(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            let mut next = async || match inbound.message().await {
                Ok(Some(f)) => Ok(f),
                Ok(None) => Err("the peer closed the link".to_string()),
                Err(s) => Err(s.message().to_string()),
            };
            let theirs = next().await?;
            let their_nonce = auth::read_opening(&key, &theirs).map_err(|e| e.to_string())?;
            let keys = LinkKeys::derive(&key, Role::Dialler, &nonce, &their_nonce, b"");
            let sealer = keys.sealer();
            out.send(sealer.proof()).await.map_err(|e| e.to_string())?;
            let proof = next().await?;
            keys.opener(Channel::Stream)
                .open_proof(proof)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((out, inbound, sealer))
        })?;
        Ok(RawKeyedPeer {
            runtime,
            out,
            _inbound: inbound,
            sealer,
            sent: Vec::new(),
        })
    }

    fn send(&mut self, frame: music262_proto::PeerFrame) -> Result<(), String> {
        self.sent.push(frame.clone());
        self.runtime
            .block_on(self.out.send(frame))
            .map_err(|_| "the link is closed".to_string())
    }

    /// Sends `message` sealed, as a peer holding the key does.
    pub fn send_sealed(&mut self, message: &sync_core::Message) -> Result<(), String> {
        let frame = self.sealer.seal(
            music262_proto::auth::Channel::Stream,
            music262_proto::PeerFrame::from(message),
        );
        self.send(frame)
    }

    /// Sends `message` under a tag that is not its own (the next counter, a made-up tag), as
    /// a forger without the key would.
    pub fn send_forged(&mut self, message: &sync_core::Message) -> Result<(), String> {
        let mut frame = self.sealer.seal(
            music262_proto::auth::Channel::Stream,
            music262_proto::PeerFrame::from(message),
        );
        frame.mac = vec![0x5a; music262_proto::auth::MAC_LEN];
        self.send(frame)
    }

    /// Sends again, byte for byte, the frame sent `back` frames ago (1: the last one).
    pub fn replay(&mut self, back: usize) -> Result<(), String> {
        let frame = self
            .sent
            .len()
            .checked_sub(back)
            .map(|i| self.sent[i].clone())
            .ok_or("nothing that far back to replay")?;
        self.send(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(host_ns: u64, frame: f64) -> TracePoint {
        TracePoint {
            host_ns,
            frame,
            sample_rate: 48_000,
            playing: true,
            state: TraceState::Playing,
            group_ns: None,
        }
    }

    /// A trace playing at 48 kHz from `start_ns` (host) every 10 ms, pausing when frame `held`
    /// is heard, then paused lines holding it.
    fn trace_pausing_at(start_ns: u64, held: f64) -> Vec<TracePoint> {
        let mut t = Vec::new();
        for i in 0..100u64 {
            let host_ns = start_ns + i * 10_000_000;
            let frame = i as f64 * 480.0;
            if frame > held {
                t.push(TracePoint {
                    playing: false,
                    state: TraceState::Paused,
                    frame: held,
                    ..pt(host_ns, held)
                });
            } else {
                t.push(pt(host_ns, frame));
            }
        }
        t
    }

    #[test]
    fn the_pause_instant_is_when_the_frame_reached_the_held_frame_between_lines() {
        // Frame 10_000 is heard 208.333 ms after the start, between the lines at 200 and 210.
        let t = trace_pausing_at(1_000_000_000, 10_000.0);
        let at = pause_instant_ns(&t, 0).unwrap();
        assert!((at as f64 - 1_208_333_333.0).abs() < 2.0, "{at}");
        assert_eq!(pause_instant_ns(&t[..20], 0), None, "no pause in the trace");
    }

    #[test]
    fn the_pause_spread_is_how_far_apart_the_sound_stopped() {
        // The same frame held, but the second client heard it 150 µs later.
        let a = trace_pausing_at(1_000_000_000, 10_000.0);
        let b = trace_pausing_at(1_000_150_000, 10_000.0);
        let spread = pause_spread_us(&[a.clone(), b], 0).unwrap();
        assert!((spread - 150.0).abs() < 0.01, "{spread}");
        assert_eq!(pause_spread_us(&[a.clone(), a[..20].to_vec()], 0), None);
    }

    #[test]
    fn sync_error_interpolates_the_other_trace_and_skips_gaps() {
        // b is 48 frames (1 ms) behind a.
        let a: Vec<_> = (0..10)
            .map(|i| pt(i * 10_000_000 + 5_000_000, 480.0 * i as f64 + 240.0 + 48.0))
            .collect();
        let b: Vec<_> = (0..10)
            .map(|i| pt(i * 10_000_000, 480.0 * i as f64))
            .collect();
        let e = sync_errors_us(&a, &b, 0, u64::MAX);
        assert_eq!(e.len(), 9);
        assert!(e.iter().all(|x| (x - 1_000.0).abs() < 1e-6), "{e:?}");
        assert_eq!(quantile_abs(&e, 0.99), Some(1_000.0));
        let gappy = vec![pt(0, 0.0), pt(100_000_000, 4_800.0)];
        assert!(sync_errors_us(&a, &gappy, 0, u64::MAX).is_empty());
    }

    #[test]
    fn clock_error_is_how_far_the_other_group_clock_is_behind() {
        // b's group clock runs 1.5 s + 250 ns behind host time, a's 1.5 s behind exactly.
        let with_group = |t: TracePoint, behind_ns: u64| TracePoint {
            group_ns: Some(t.host_ns + 10_000_000_000 - behind_ns),
            ..t
        };
        let a: Vec<_> = (0..10)
            .map(|i| with_group(pt(i * 10_000_000 + 5_000_000, 0.0), 1_500_000_000))
            .collect();
        let b: Vec<_> = (0..10)
            .map(|i| with_group(pt(i * 10_000_000, 0.0), 1_500_000_250))
            .collect();
        let e = clock_errors_us(&a, &b, 0, u64::MAX);
        assert_eq!(e.len(), 9);
        assert!(e.iter().all(|x| (x - 0.25).abs() < 1e-9), "{e:?}");
        // Lines without a group clock give nothing.
        assert!(clock_errors_us(&a, &[pt(0, 0.0), pt(10_000_000, 0.0)], 0, u64::MAX).is_empty());
    }

    #[test]
    fn traces_parse_and_ignore_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "host_monotonic_ns,frame,sample_rate,state,group_ns\n10,1.5,44100,paused,\n20,2.0,44100,playing,1500000020\n30,2").unwrap();
        let t = read_trace(&p);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].state, TraceState::Paused);
        assert_eq!(t[0].group_ns, None);
        assert_eq!(t[1].sample_rate, 44_100);
        assert_eq!(t[1].group_ns, Some(1_500_000_020));
        // A trace from before the group clock column.
        std::fs::write(
            &p,
            "host_monotonic_ns,frame,sample_rate,state\n10,1.5,44100,playing\n",
        )
        .unwrap();
        let t = read_trace(&p);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].group_ns, None);
    }
}
