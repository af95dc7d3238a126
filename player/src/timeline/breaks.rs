//! Output breaks: the one place that decides the device's output broke before a callback,
//! because the stack said so (an xrun) or because the callbacks stopped for longer than any
//! buffer lasts (not every stack reports that underrun).

use super::config::TimelineConfig;

/// Break detection over one stream's callbacks.
#[derive(Debug, Clone, Default)]
pub(super) struct BreakDetector {
    /// Clock instant of the last callback.
    last_ns: Option<u64>,
    /// Frames handed over so far.
    frames: u64,
}

impl BreakDetector {
    /// Whether the output broke before this callback at `now_ns` of `frames` frames (the stack
    /// reported an underrun if `xrun`). A new stream's first buffers are queued before it
    /// starts, a second or so later: a pause in its first `stall_grace_s` is no break.
    pub(super) fn on_callback(
        &mut self,
        cfg: &TimelineConfig,
        now_ns: u64,
        frames: usize,
        ns_per_frame: f64,
        xrun: bool,
    ) -> bool {
        let started = self.frames as f64 * ns_per_frame >= cfg.stall_grace_s * 1e9;
        self.frames += frames as u64;
        let stalled = self.last_ns.replace(now_ns).is_some_and(|last| {
            let gap_ns = now_ns.saturating_sub(last) as f64;
            started && gap_ns > cfg.stall_ns + 2.0 * frames as f64 * ns_per_frame
        });
        xrun || stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_longer_than_the_stall_bound_is_a_break_once_the_stream_has_started() {
        let cfg = TimelineConfig::default();
        let p = 1e9 / 48_000.0;
        let mut breaks = BreakDetector::default();
        // The first pause, before a second of audio, is the stream starting.
        assert!(!breaks.on_callback(&cfg, 0, 512, p, false));
        assert!(!breaks.on_callback(&cfg, 900_000_000, 512, p, false));
        let mut now = 900_000_000;
        for _ in 0..100 {
            now += 10_666_667;
            assert!(!breaks.on_callback(&cfg, now, 512, p, false));
        }
        // 100 ms plus two buffers is the bound.
        assert!(!breaks.on_callback(&cfg, now + 121_000_000, 512, p, false));
        now += 121_000_000;
        assert!(breaks.on_callback(&cfg, now + 122_000_000, 512, p, false));
        assert!(breaks.on_callback(&cfg, now + 123_000_000, 512, p, true));
    }
}
