//! Support for end-to-end tests with real processes: a music server and music clients on
//! loopback with free ports, driven through their standard input, observed through their
//! standard output and their `--trace` files (process control and trace arithmetic come from
//! `music262::fleet`, which the demo uses too).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

pub use music262::fleet::{Proc, TracePoint, quantile_abs, read_trace, sync_errors_us};

/// Folder of the workspace's build (the binaries sit next to the test executable's `deps`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

static BUILD: Once = Once::new();

/// Path of a binary of the `music262` package, built first if needed (a no-op when the test
/// script has built the workspace already).
pub fn binary(name: &str) -> PathBuf {
    BUILD.call_once(|| {
        let release = bin_dir().ends_with("release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "music262", "--bins", "--quiet"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p music262 failed");
    });
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} is missing", p.display());
    p
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    music262::fleet::free_port().expect("a free port")
}

/// Waiting for output, failing the test (with the process's output) when it does not come.
pub trait WaitFor {
    /// Waits until a line printed since the previous wait contains `needle`; returns it.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String;
}

impl WaitFor for Proc {
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.expect(needle, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn spawn(name: &str, cmd: Command) -> Proc {
    Proc::spawn(name, cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// A music server on a free port.
pub fn server(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    (server_on(dir, port, "server"), port)
}

/// A music server on `port` (again, after a restart), logging to `<name>.log`.
pub fn server_on(dir: &Path, port: u16, name: &str) -> Proc {
    start_server(name, server_command(dir, port, name, "127.0.0.1"))
}

/// The command line of a music server on `bind:port`, logging to `<name>.log` in `dir`.
pub fn server_command(dir: &Path, port: u16, name: &str, bind: &str) -> Command {
    let mut cmd = Command::new(binary("music_server"));
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        bind,
        "--no-discovery",
        "--log-file",
    ])
    .arg(dir.join(format!("{name}.log")));
    cmd
}

/// Runs `cmd` (a music server's command line) and waits until it listens.
pub fn start_server(name: &str, cmd: Command) -> Proc {
    let mut p = spawn(name, cmd);
    p.wait_for("music server listening", Duration::from_secs(60));
    p
}

/// How a client is started.
pub struct ClientSpec {
    pub name: &'static str,
    pub offset_ms: f64,
    pub drift_ppm: f64,
    /// Its `--node-id`; 0 gives none (the one in its state directory, or a new one).
    pub node_id: u64,
}

/// A running client and where it writes.
pub struct Client {
    pub proc: Proc,
    pub port: u16,
    pub addr: String,
    pub trace: PathBuf,
}

impl std::ops::Deref for Client {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// The transport a client dials with (`--transport`); every client accepts both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Quic,
}

impl Transport {
    /// The `--transport` value, also the `connections` table's "Via".
    pub fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Quic => "quic",
        }
    }
}

/// Starts a client dialling with `transport`, with a null sink, a trace and the given clock
/// skew.
pub fn client(dir: &Path, server_port: u16, spec: &ClientSpec, transport: Transport) -> Client {
    client_with_env(dir, server_port, spec, transport, &[])
}

/// As [`client`], with extra environment variables (a group key, for instance).
pub fn client_with_env(
    dir: &Path,
    server_port: u16,
    spec: &ClientSpec,
    transport: Transport,
    env: &[(&str, &str)],
) -> Client {
    client_on(dir, server_port, spec, transport, env, free_port())
}

/// As [`client_with_env`], on peer port `port` (a restarted client takes its old one).
pub fn client_on(
    dir: &Path,
    server_port: u16,
    spec: &ClientSpec,
    transport: Transport,
    env: &[(&str, &str)],
    port: u16,
) -> Client {
    let server = format!("127.0.0.1:{server_port}");
    let cmd = client_command(dir, &server, spec, transport, env, "127.0.0.1", port);
    start_client(dir, spec, cmd, "127.0.0.1", port)
}

/// The command line of a client listening on `ip:port` (and advertising it), using the music
/// server at `server` (`host:port`), with a null sink, a trace and `spec`'s clock skew.
pub fn client_command(
    dir: &Path,
    server: &str,
    spec: &ClientSpec,
    transport: Transport,
    env: &[(&str, &str)],
    ip: &str,
    port: u16,
) -> Command {
    let mut cmd = Command::new(binary("music_client"));
    cmd.args([
        "--server",
        server,
        "--p2p-port",
        &port.to_string(),
        "--bind",
        ip,
        "--advertise",
        &format!("{ip}:{port}"),
        "--sink",
        "null",
        "--lease-ms",
        "3000",
        "--transport",
        transport.name(),
        "--log-file",
    ])
    .arg(dir.join(format!("{}.log", spec.name)))
    .arg("--trace")
    .arg(dir.join(format!("{}.csv", spec.name)))
    // Its state in the test's folder (kept across a restart of the same name), and no config
    // file of the user who runs the tests.
    .arg("--state-dir")
    .arg(dir.join(format!("{}.state", spec.name)))
    // Tests that discover take this flag out again (`e2e_discovery`).
    .arg("--no-discovery")
    .env("XDG_CONFIG_HOME", dir)
    .env("MUSIC262_CLOCK_OFFSET_MS", spec.offset_ms.to_string())
    .env("MUSIC262_CLOCK_DRIFT_PPM", spec.drift_ppm.to_string())
    .env("RUST_LOG", "info")
    .envs(env.iter().copied());
    if spec.node_id != 0 {
        cmd.args(["--node-id", &format!("{:x}", spec.node_id)]);
    }
    cmd
}

/// Runs `cmd` (made by [`client_command`] for `spec`, on `ip:port`) and waits for its console.
pub fn start_client(dir: &Path, spec: &ClientSpec, cmd: Command, ip: &str, port: u16) -> Client {
    let mut proc = spawn(spec.name, cmd);
    proc.wait_for("type `help` for commands", Duration::from_secs(30));
    Client {
        proc,
        port,
        addr: format!("{ip}:{port}"),
        trace: dir.join(format!("{}.csv", spec.name)),
    }
}

/// The host instant of a trace's last line.
pub fn last_instant(t: &[TracePoint]) -> u64 {
    t.last().map_or(0, |p| p.host_ns)
}

/// Parses `(frame N)` out of a `status` reply.
pub fn status_frame(lines: &[String]) -> Option<u64> {
    let l = lines.iter().find(|l| l.starts_with("state:"))?;
    let i = l.find("(frame ")?;
    l[i + 7..].trim_end_matches(')').trim().parse().ok()
}

/// The `state:` word of a `status` reply.
pub fn status_state(lines: &[String]) -> Option<String> {
    let l = lines.iter().find(|l| l.starts_with("state:"))?;
    l.split_whitespace()
        .nth(1)
        .map(|s| s.trim_end_matches(',').to_string())
}

/// The non-empty lines a typed command gets within half a second.
pub fn answer(c: &mut Client, line: &str) -> Vec<String> {
    c.ask(line, S / 2)
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// One second.
pub const S: Duration = Duration::from_secs(1);

/// Three clients skewed like separate machines (A is the reference: lowest id).
pub fn specs() -> [ClientSpec; 3] {
    [
        ClientSpec {
            name: "a",
            offset_ms: 0.0,
            drift_ppm: 0.0,
            node_id: 0xa,
        },
        ClientSpec {
            name: "b",
            offset_ms: 1_500.0,
            drift_ppm: 150.0,
            node_id: 0xb,
        },
        ClientSpec {
            name: "c",
            offset_ms: -2_000.0,
            drift_ppm: -200.0,
            node_id: 0xc,
        },
    ]
}

/// Joins `from` to `to` and waits until both list each other.
pub fn join(from: &mut Client, to: &mut Client) {
    from.send(&format!("join {}", to.addr));
    from.wait_for(&format!("connected to peer {}", to.addr), 20 * S);
    to.wait_for(&format!("connected to peer {}", from.addr), 20 * S);
}

/// Asserts that the clients' traces agree within `max_us` over the last `seconds` they share.
pub fn assert_in_sync(clients: &[&Client], seconds: u64, max_us: f64) {
    let traces: Vec<Vec<TracePoint>> = clients.iter().map(|c| read_trace(&c.trace)).collect();
    let end = traces.iter().map(|t| last_instant(t)).min().unwrap();
    let from = end - seconds * 1_000_000_000;
    for i in 1..traces.len() {
        let e = sync_errors_us(&traces[0], &traces[i], from, end);
        assert!(
            e.len() > 50,
            "too few common playing instants between {} and {}: {}",
            clients[0].name,
            clients[i].name,
            e.len()
        );
        let worst = quantile_abs(&e, 1.0).unwrap();
        eprintln!(
            "sync error {} vs {}: p50 {:.1} us, p99 {:.1} us, max {:.1} us over {} points",
            clients[0].name,
            clients[i].name,
            quantile_abs(&e, 0.5).unwrap(),
            quantile_abs(&e, 0.99).unwrap(),
            worst,
            e.len()
        );
        assert!(
            worst < max_us,
            "{} vs {}: sync error up to {worst:.0} us",
            clients[0].name,
            clients[i].name
        );
    }
}

/// A test's folder of logs and traces: removed when the test passes, kept (and named on
/// stderr) when it fails, because the logs are what explains a failure.
pub struct WorkDir(std::path::PathBuf);

impl std::ops::Deref for WorkDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh folder for one test's logs and traces (see [`WorkDir`]). Declare it first in the
/// test, so it is dropped after the processes writing into it.
pub fn tempfile_dir(name: &str) -> WorkDir {
    let d = std::env::temp_dir().join(format!("music262-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    WorkDir(d)
}

/// The `status` frame of every client, asserting that each is in `state`.
pub fn frames_in_state(clients: &mut [&mut Client], state: &str) -> Vec<u64> {
    clients
        .iter_mut()
        .map(|x| {
            let st = x.ask("status", S / 2);
            assert_eq!(
                status_state(&st).as_deref(),
                Some(state),
                "{}: {st:?}",
                x.name
            );
            status_frame(&st).expect("a frame in status")
        })
        .collect()
}

/// The latest instant any of `clients`' traces reached: a pause typed after it is the first
/// pause [`sound_stop_spread_us`] finds.
pub fn traces_end(clients: &[&Client]) -> u64 {
    clients
        .iter()
        .map(|c| last_instant(&read_trace(&c.trace)))
        .max()
        .unwrap_or(0)
}

/// How far apart (µs) the sound stopped on `clients` at their first pause after `from_ns`,
/// measured on their traces (the instant each one's frame reached the frame it holds), and
/// asserted within `max_us`: holding one frame is the state, stopping together is the sound.
pub fn sound_stop_spread_us(clients: &[&Client], from_ns: u64, max_us: f64) -> f64 {
    let traces: Vec<Vec<TracePoint>> = clients.iter().map(|c| read_trace(&c.trace)).collect();
    let spread = music262::fleet::pause_spread_us(&traces, from_ns).unwrap_or_else(|| {
        let names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
        panic!("a trace of {names:?} shows no pause after {from_ns}")
    });
    eprintln!("the sound stopped within {spread:.1} us");
    assert!(
        spread <= max_us,
        "the sound stopped {spread:.1} us apart (bound {max_us} us)"
    );
    spread
}

/// Types `pause` on `typed` and asserts that it and every one of `others` hold `song` on one
/// frame, and that the sound stopped together (within 1 ms: a behaviour bound on a loaded
/// machine; `e2e_pause_sound` holds the 100 µs one); returns the frames.
pub fn pause_holds_one_frame(
    typed: &mut Client,
    others: &mut [&mut Client],
    song: &str,
) -> Vec<u64> {
    let mut all: Vec<&Client> = vec![&*typed];
    all.extend(others.iter().map(|x| &**x));
    let before = traces_end(&all);
    typed.send("pause");
    for x in others.iter_mut() {
        x.wait_for(&format!("pause {song} at"), 5 * S);
    }
    std::thread::sleep(S);
    let mut all: Vec<&mut Client> = vec![typed];
    all.extend(others.iter_mut().map(|x| &mut **x));
    let frames = frames_in_state(&mut all, "paused");
    assert!(
        frames.iter().all(|f| *f == frames[0]),
        "paused frames {frames:?}"
    );
    let all: Vec<&Client> = all.iter().map(|x| &**x).collect();
    sound_stop_spread_us(&all, before, 1_000.0);
    frames
}

/// The transports named in the "Via" column of a `connections` reply, in row order (the table
/// is aligned: a row's transport starts where the header's "Via" does).
pub fn vias(lines: &[String]) -> Vec<String> {
    let Some(header) = lines.iter().find(|l| l.starts_with("Peer ")) else {
        return Vec::new();
    };
    let Some(col) = header.find(" Via ").map(|i| i + 1) else {
        return Vec::new();
    };
    lines
        .iter()
        .skip_while(|l| !l.starts_with("Peer "))
        .skip(1)
        // The client may print something else (a server status line) while the table comes:
        // rows are the lines with a transport under "Via".
        .filter_map(|l| l.get(col..)?.split_whitespace().next().map(str::to_string))
        .filter(|via| matches!(via.as_str(), "grpc" | "quic" | "-"))
        .collect()
}

/// The process id of a running client, found in `/proc` by its trace path (unique per test and
/// client): `Proc` keeps its child to itself, and a test that stops a client needs the pid.
#[cfg(target_os = "linux")]
pub fn pid_of(c: &Client) -> u32 {
    let needle = c.trace.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|&b| b == 0).any(|arg| arg == needle.as_bytes()))
        })
        .unwrap_or_else(|| panic!("no process of {} in /proc", c.name))
}

/// Sends `signal` (`STOP`, `CONT`) to a client, as `kill -<signal>` would.
#[cfg(target_os = "linux")]
pub fn signal(c: &Client, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid_of(c).to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {} failed", c.name);
}

/// The host instant (`host_ns=`) at which a client's sync clock stepped, from its log (the
/// client logs it once, at the step).
pub fn clock_step_instant(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("sync clock stepped forward"))?;
    let i = line.find("host_ns=")? + "host_ns=".len();
    line[i..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A trace of a client whose sync clock stepped forward by `step_ns` at host instant `at_ns`,
/// put back on the host clock. The client dates its trace lines through its sync clock, so
/// after the step they read `step_ns` late: those are moved back, and the lines dated inside
/// the skipped span (the frames its paced sink rendered in one burst to catch up with the
/// jump) are dropped, since no host instant of theirs is known.
pub fn unstep_trace(t: &[TracePoint], at_ns: u64, step_ns: u64) -> Vec<TracePoint> {
    t.iter()
        .filter(|p| p.host_ns < at_ns || p.host_ns >= at_ns + step_ns)
        .map(|p| {
            let mut p = *p;
            if p.host_ns >= at_ns + step_ns {
                p.host_ns -= step_ns;
            }
            p
        })
        .collect()
}

/// The sync errors (us) of `b` against `a` over the last `seconds` they share, asserting
/// there are enough points; returns (p50, p99, max) of their absolute values.
pub fn sync_error_stats(
    a: &[TracePoint],
    b: &[TracePoint],
    seconds: u64,
    what: &str,
) -> (f64, f64, f64) {
    let end = last_instant(a).min(last_instant(b));
    let e = sync_errors_us(a, b, end - seconds * 1_000_000_000, end);
    assert!(
        e.len() > 50,
        "{what}: too few common playing instants: {}",
        e.len()
    );
    let q = |x| quantile_abs(&e, x).unwrap();
    let stats = (q(0.5), q(0.99), q(1.0));
    eprintln!(
        "sync error {what}: p50 {:.1} us, p99 {:.1} us, max {:.1} us over {} points",
        stats.0,
        stats.1,
        stats.2,
        e.len()
    );
    stats
}
