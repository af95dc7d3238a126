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
    let mut cmd = Command::new(binary("music_server"));
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--log-file",
    ])
    .arg(dir.join("server.log"));
    let mut p = spawn("server", cmd);
    p.wait_for("music server listening", Duration::from_secs(60));
    (p, port)
}

/// How a client is started.
pub struct ClientSpec {
    pub name: &'static str,
    pub offset_ms: f64,
    pub drift_ppm: f64,
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

/// Starts a client with a null sink, a trace and the given clock skew.
pub fn client(dir: &Path, server_port: u16, spec: &ClientSpec) -> Client {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let trace = dir.join(format!("{}.csv", spec.name));
    let mut cmd = Command::new(binary("music_client"));
    cmd.args([
        "--server",
        &format!("127.0.0.1:{server_port}"),
        "--p2p-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--advertise",
        &addr,
        "--sink",
        "null",
        "--node-id",
        &format!("{:x}", spec.node_id),
        "--lease-ms",
        "3000",
        "--log-file",
    ])
    .arg(dir.join(format!("{}.log", spec.name)))
    .arg("--trace")
    .arg(&trace)
    .env("MUSIC262_CLOCK_OFFSET_MS", spec.offset_ms.to_string())
    .env("MUSIC262_CLOCK_DRIFT_PPM", spec.drift_ppm.to_string())
    .env("RUST_LOG", "info");
    let mut proc = spawn(spec.name, cmd);
    proc.wait_for("type `help` for commands", Duration::from_secs(30));
    Client {
        proc,
        port,
        addr,
        trace,
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
