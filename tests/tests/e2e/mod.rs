//! Support for end-to-end tests with real processes: a music server and music clients on
//! loopback with free ports, driven through their standard input, observed through their
//! standard output and their `--trace` files.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

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
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running process with its output collected line by line.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    cursor: usize,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = lines.clone();
            let tag = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("E2E_VERBOSE").is_some() {
                        eprintln!("[{tag}] {line}");
                    }
                    lines.lock().expect("lines").push(line);
                }
            });
        }
        let stdin = child.stdin.take();
        Proc {
            name: name.to_string(),
            child,
            stdin,
            lines,
            cursor: 0,
        }
    }

    /// Types a command.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to the process");
        stdin.flush().expect("flush");
    }

    /// Everything printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Waits until a line printed after the previous `expect` contains `needle`; returns it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let lines = self.lines.lock().expect("lines");
                if let Some(i) = lines[self.cursor..].iter().position(|l| l.contains(needle)) {
                    self.cursor += i + 1;
                    return lines[self.cursor - 1].clone();
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no line containing `{needle}` within {timeout:?}; output:\n{}",
                    self.name,
                    self.output().join("\n")
                );
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) while waiting for `{needle}`; output:\n{}",
                    self.name,
                    self.output().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `command` and returns the lines printed in the next `settle`.
    pub fn ask(&mut self, command: &str, settle: Duration) -> Vec<String> {
        let start = self.lines.lock().expect("lines").len();
        self.send(command);
        std::thread::sleep(settle);
        let lines = self.lines.lock().expect("lines");
        self.cursor = lines.len();
        lines[start..].to_vec()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let mut p = Proc::spawn("server", cmd);
    p.expect("music server listening", Duration::from_secs(60));
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
    let mut proc = Proc::spawn(spec.name, cmd);
    proc.expect("type `help` for commands", Duration::from_secs(30));
    Client {
        proc,
        port,
        addr,
        trace,
    }
}

/// One line of a trace file.
#[derive(Clone, Copy, Debug)]
pub struct TracePoint {
    pub host_ns: u64,
    pub frame: f64,
    pub playing: bool,
}

/// Reads a `--trace` file.
pub fn read_trace(path: &Path) -> Vec<TracePoint> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("host_monotonic_ns,frame,sample_rate,state"),
        "trace header of {}",
        path.display()
    );
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() != 4 {
                return None;
            }
            Some(TracePoint {
                host_ns: f[0].parse().ok()?,
                frame: f[1].parse().ok()?,
                playing: f[3] == "playing",
            })
        })
        .collect()
}

/// Sync error between two traces (a minus b, microseconds at 48 kHz), at a's instants within
/// `[from_ns, to_ns]` where both play, b interpolated between its neighbouring points.
pub fn sync_errors_us(a: &[TracePoint], b: &[TracePoint], from_ns: u64, to_ns: u64) -> Vec<f64> {
    let bp: Vec<&TracePoint> = b.iter().filter(|p| p.playing).collect();
    let mut out = Vec::new();
    for p in a
        .iter()
        .filter(|p| p.playing && p.host_ns >= from_ns && p.host_ns <= to_ns)
    {
        let i = bp.partition_point(|q| q.host_ns < p.host_ns);
        if i == 0 || i >= bp.len() {
            continue;
        }
        let (q0, q1) = (bp[i - 1], bp[i]);
        if q1.host_ns - q0.host_ns > 50_000_000 {
            continue; // a gap (pause, jump): no interpolation across it
        }
        let f = q0.frame
            + (q1.frame - q0.frame) * (p.host_ns - q0.host_ns) as f64
                / (q1.host_ns - q0.host_ns) as f64;
        out.push((p.frame - f) / 48_000.0 * 1e6);
    }
    out
}

/// The host instant of a trace's last line.
pub fn last_instant(t: &[TracePoint]) -> u64 {
    t.last().map_or(0, |p| p.host_ns)
}

/// Percentile of absolute values.
pub fn percentile_abs(v: &[f64], p: f64) -> f64 {
    let mut a: Vec<f64> = v.iter().map(|x| x.abs()).collect();
    a.sort_by(|x, y| x.partial_cmp(y).expect("finite"));
    if a.is_empty() {
        return f64::NAN;
    }
    a[((a.len() - 1) as f64 * p).round() as usize]
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
