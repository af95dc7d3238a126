//! The `--trace` file: what this client plays, on the host's unskewed monotonic clock, so that
//! an outside tool can compare peers running on one host.
//!
//! Format: a header line `host_monotonic_ns,frame,sample_rate,state,group_ns`, then one line
//! about every 10 ms while a song is loaded: the host's `CLOCK_MONOTONIC` in nanoseconds, the
//! song frame heard at that instant (fractional), the song's own sample rate, one of `stopped`,
//! `loading`, `paused`, `playing`, and the group clock at that instant as this client estimates
//! it (nanoseconds; empty before the song's first position). Two clients on one host that agree
//! on the group clock write the same `group_ns` for the same `host_monotonic_ns`: the difference
//! is their clock sync error, apart from what their players do with it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The header line.
pub const HEADER: &str = "host_monotonic_ns,frame,sample_rate,state,group_ns";

/// Writes trace lines.
#[derive(Debug)]
pub struct TraceWriter {
    out: BufWriter<File>,
    lines_since_flush: u32,
    last_instant: Option<u64>,
}

impl TraceWriter {
    /// Creates (truncates) the trace file and writes the header.
    pub fn create(path: &Path) -> Result<Self, String> {
        let file = File::create(path)
            .map_err(|e| format!("cannot create the trace file {}: {e}", path.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "{HEADER}").map_err(|e| format!("trace file: {e}"))?;
        out.flush().map_err(|e| format!("trace file: {e}"))?;
        Ok(TraceWriter {
            out,
            lines_since_flush: 0,
            last_instant: None,
        })
    }

    /// Writes one line, unless it would repeat the previous instant.
    pub fn line(
        &mut self,
        host_ns: u64,
        frame: f64,
        sample_rate: u32,
        state: &str,
        group_ns: Option<u64>,
    ) {
        if self.last_instant == Some(host_ns) {
            return;
        }
        self.last_instant = Some(host_ns);
        let group = group_ns.map_or(String::new(), |g| g.to_string());
        let _ = writeln!(
            self.out,
            "{host_ns},{frame:.3},{sample_rate},{state},{group}"
        );
        self.lines_since_flush += 1;
        // Flushed about every quarter second, so a reader (or a killed process) loses little.
        if self.lines_since_flush >= 25 {
            self.flush();
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
        self.lines_since_flush = 0;
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_has_a_header_and_one_line_per_instant() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        {
            let mut t = TraceWriter::create(&p).unwrap();
            t.line(1_000, 0.0, 48_000, "loading", None);
            t.line(10_001_000, 480.25, 48_000, "playing", Some(7_010_001_000));
            t.line(10_001_000, 480.25, 48_000, "playing", Some(7_010_001_000));
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "host_monotonic_ns,frame,sample_rate,state,group_ns\n1000,0.000,48000,loading,\n10001000,480.250,48000,playing,7010001000\n"
        );
    }
}
