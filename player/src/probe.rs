//! A record of every callback of the sound device, written as CSV when the output stream closes
//! (`PlayerConfig::device_probe`; `music_client --device-probe PATH`).
//!
//! What goes wrong with a device's timing is rare (a client knocked off the CPU, a report that
//! is milliseconds off for a second) and is over before anyone looks: a trace of what the
//! player believed it played shows that its timing stepped, not why. This record keeps what
//! the timeline was given and what it made of it, for every callback, so a bad run can be
//! explained afterwards. The audio callback must not allocate or block, so rows go into storage
//! reserved when the stream opens, and rows beyond it are counted, not kept.
//!
//! Columns: `host_ns` (the player's clock read in the callback: a skewed client's sync clock),
//! `first_slot_ns` (when the buffer's first frame is taken to be heard), `latency_ns` (what the
//! audio stack reported: `playback - callback`), `frames`, `broke` (1 where the output broke
//! just before this callback: the stack said the device ran dry, or the callbacks stopped for
//! longer than a buffer lasts), `moved` (1 where the timeline found the sound had moved with no
//! break; the player counts both as output breaks, but only a break is given back to the
//! timeline when a record is replayed) and `learnt_delay_ns` (the delay from callback to sound the
//! timeline went by; empty where it used the reported latency as it was: until it has learnt
//! the delay, after it started over, or with `DeviceTiming::Reported`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Rows kept: at PulseAudio's 512-frame buffers, about 45 minutes at 48 kHz (12 MiB).
const CAPACITY: usize = 1 << 18;

/// One device callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CallbackRow {
    pub(crate) host_ns: u64,
    pub(crate) first_slot_ns: u64,
    pub(crate) latency_ns: u64,
    pub(crate) frames: u32,
    pub(crate) broke: bool,
    pub(crate) moved: bool,
    pub(crate) learnt_delay_ns: Option<f64>,
}

/// The record of one output stream's callbacks.
#[derive(Debug)]
pub(crate) struct CallbackProbe {
    path: PathBuf,
    rows: Vec<CallbackRow>,
    /// Rows that came after the storage was full.
    left_out: u64,
}

impl CallbackProbe {
    /// A record to be written to `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self::with_capacity(path, CAPACITY)
    }

    fn with_capacity(path: PathBuf, capacity: usize) -> Self {
        CallbackProbe {
            path,
            rows: Vec::with_capacity(capacity),
            left_out: 0,
        }
    }

    /// Keeps `row` if there is room for it (never allocates).
    pub(crate) fn record(&mut self, row: CallbackRow) {
        if self.rows.len() < self.rows.capacity() {
            self.rows.push(row);
        } else {
            self.left_out += 1;
        }
    }

    fn write(&self) -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(&self.path)?);
        writeln!(
            out,
            "host_ns,first_slot_ns,latency_ns,frames,broke,moved,learnt_delay_ns"
        )?;
        for r in &self.rows {
            let delay = r.learnt_delay_ns.map(|d| format!("{d:.0}"));
            writeln!(
                out,
                "{},{},{},{},{},{},{}",
                r.host_ns,
                r.first_slot_ns,
                r.latency_ns,
                r.frames,
                u8::from(r.broke),
                u8::from(r.moved),
                delay.as_deref().unwrap_or("")
            )?;
        }
        out.flush()
    }
}

impl Drop for CallbackProbe {
    /// Writes the record when the stream closes; a failure is said on stderr, since there is
    /// no one else to tell by then.
    fn drop(&mut self) {
        if let Err(e) = self.write() {
            eprintln!("device probe: {}: {e}", self.path.display());
        } else if self.left_out > 0 {
            eprintln!(
                "device probe: {}: the last {} callbacks did not fit",
                self.path.display(),
                self.left_out
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: u64, learnt: Option<f64>) -> CallbackRow {
        CallbackRow {
            host_ns: 1_000 + k,
            first_slot_ns: 30_000 + k,
            latency_ns: 29_000,
            frames: 512,
            broke: k == 1,
            moved: k == 0,
            learnt_delay_ns: learnt,
        }
    }

    #[test]
    fn the_record_is_written_as_csv_when_the_stream_closes_and_stops_at_its_capacity() {
        let dir = std::env::temp_dir().join(format!("music262-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("callbacks.csv");
        let mut probe = CallbackProbe::with_capacity(path.clone(), 2);
        probe.record(row(0, None));
        probe.record(row(1, Some(28_912.4)));
        probe.record(row(2, Some(28_913.0)));
        assert_eq!(probe.left_out, 1);
        drop(probe);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            text,
            "host_ns,first_slot_ns,latency_ns,frames,broke,moved,learnt_delay_ns\n\
             1000,30000,29000,512,0,1,\n\
             1001,30001,29000,512,1,0,28912\n"
        );
    }
}
