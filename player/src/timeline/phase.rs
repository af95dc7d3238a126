//! Where a device timeline stands: the phase of its line of callbacks, and what it makes of a
//! disagreement between that line and the reports.

/// The phase of a timeline's line of callbacks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Phase {
    /// No line: the next callback starts a new one and everything is learnt again (the first
    /// callback, or the timeline gave up on its line: unpaced device, reports far off for long).
    Stopped,
    /// Right after an output break: the refill burst, whose buffers are queued at once and
    /// timed by the delay learnt before. `left` callbacks at most may still be burst; `line`
    /// says whether a line ran before the break (it restarts, keeping the delay and the rate).
    Refill { left: usize, line: bool },
    /// On the callbacks' line, timed by the envelope plus the learnt delay. `after_break`: the
    /// line restarted at a break (its first seconds may show a new buffering).
    Line { after_break: bool },
}

impl Phase {
    /// Whether a line ran (or is about to restart after a break).
    pub(super) fn has_line(self) -> bool {
        matches!(self, Phase::Line { .. } | Phase::Refill { line: true, .. })
    }
}

/// What a disagreement between the timeline and the reports is taken for. Each but `Agreeing`
/// carries how long (s of audio) it has lasted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Check {
    /// Within `reanchor_ns` of each other.
    Agreeing,
    /// The reports are off: their glitch, unless it lasts `reanchor_after_s`.
    ReportsOff { for_s: f64 },
    /// Off from soon after a break: the restarted stream's new buffering.
    AfterBreak { for_s: f64 },
    /// The callbacks' line stepped while the reports carried on: the buffering between them
    /// changed and the sound did not move. `callbacks` since the (last) step; `baseline_ns`:
    /// what the reports were off by before it.
    LineStepped {
        for_s: f64,
        callbacks: usize,
        baseline_ns: f64,
    },
}

impl Check {
    /// Whether the envelope's filter may follow (no rule is measuring a step).
    pub(super) fn lets_filter_follow(self) -> bool {
        matches!(self, Check::Agreeing | Check::ReportsOff { .. })
    }
}
