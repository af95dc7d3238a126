//! Logging: `tracing` to a file or to stderr, never onto the prompt.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tracing_subscriber::EnvFilter;

/// Where the log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error.
    Stderr,
    /// Appended to this file.
    File(PathBuf),
}

impl LogTarget {
    /// Parses `-` (stderr) or a path.
    pub fn parse(s: &str) -> LogTarget {
        if s == "-" {
            LogTarget::Stderr
        } else {
            LogTarget::File(PathBuf::from(s))
        }
    }
}

/// Starts logging at `default_level`, raised or narrowed by `filter` (the `RUST_LOG` directives,
/// read by `env.rs`; ignored if they do not parse), and logs a start line naming `program`, its
/// version and its arguments (a log file is appended to across runs). Colour codes only go to a
/// terminal. Returns a line that says where the log goes, or an error line.
pub fn init(
    program: &str,
    target: &LogTarget,
    default_level: &str,
    filter: Option<&str>,
) -> Result<String, String> {
    let said = subscribe(target, default_level, filter)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        ?args,
        pid = std::process::id(),
        "{program} starting"
    );
    Ok(said)
}

fn subscribe(
    target: &LogTarget,
    default_level: &str,
    filter: Option<&str>,
) -> Result<String, String> {
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    match target {
        LogTarget::Stderr => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .init();
            Ok("log: standard error".to_string())
        }
        LogTarget::File(path) => {
            let file = open_log(path)?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
            Ok(format!("log: {}", path.display()))
        }
    }
}

fn open_log(path: &Path) -> Result<std::fs::File, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the log folder {}: {e}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))
}
