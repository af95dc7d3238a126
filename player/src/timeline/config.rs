//! The device timeline's tuning: every number it decides by, with its unit. Why each value is
//! what it is, measured on the as-heard rig: `docs/device-timing.md`, "The tuning".

/// How a [`super::DeviceTimeline`] decides. [`TimelineConfig::default`] is what the client
/// runs; tests and the simulator may change any field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelineConfig {
    /// Time every buffer by the reported latency as it is (`--device-timing reported`): the
    /// timeline then only detects output breaks.
    pub reports_only: bool,
    /// Callbacks the envelope (their earliest, carried forward) looks back over.
    pub envelope_callbacks: usize,
    /// Audio seconds per block: the rate fit's points and the delay's medians are per block.
    pub block_s: f64,
    /// Blocks in the device's rate fit.
    pub rate_blocks: usize,
    /// Blocks before the rate fit is used (the nominal rate until then).
    pub rate_min_blocks: usize,
    /// A fitted rate further than this fraction from nominal is no crystal's: start over.
    pub max_rate_fraction: f64,
    /// A block whose callbacks spanned a clock time this fraction off its audio was not paced
    /// by a clock (ALSA's `null` PCM): start over, timing by the reports.
    pub max_pace_error: f64,
    /// A block's earliest callback this far off the rate fit's line (ns) restarts the fit.
    pub rate_step_ns: f64,
    /// Blocks of delay history kept, of which the later half is used.
    pub delay_blocks: usize,
    /// Share of the lowest and of the highest block medians dropped from the delay's mean.
    pub delay_trim: f64,
    /// Stream age (s of audio) before the delay is learnt; the reports are used until then.
    pub delay_min_age_s: f64,
    /// A block median this far (ns) from the last one kept is held out of the delay history.
    pub block_step_ns: f64,
    /// Most blocks held out in a row, after which they count again.
    pub block_hold: usize,
    /// Reports per block kept for its median (storage reserved up front).
    pub block_reports: usize,
    /// Disagreement (ns) between the timeline and the reports that counts.
    pub reanchor_ns: f64,
    /// Seconds of audio a disagreement must last before the timeline starts over on the reports.
    pub reanchor_after_s: f64,
    /// After a break, a disagreement starting within this many seconds of audio is the
    /// restarted stream's new buffering.
    pub break_verify_s: f64,
    /// How long (s of audio) that disagreement must last before the delay moves by it.
    pub reanchor_after_break_s: f64,
    /// A step (ns) of the timeline from one callback to the next that is a change of buffering
    /// or a jump of the sound.
    pub step_ns: f64,
    /// The reports carried on through a step of the timeline if they stepped less than this (ns).
    pub report_step_ns: f64,
    /// Spread (ns) within which the differences after a step of the line are steady.
    pub steady_span_ns: f64,
    /// Seconds of audio after which a step of the line is taken, steady or not.
    pub steady_wait_s: f64,
    /// Time constant (s of audio) of the envelope's filter.
    pub smooth_s: f64,
    /// A pause between callbacks longer than this (ns), plus two buffers, is an output break.
    pub stall_ns: f64,
    /// Audio (s) a new stream plays before a pause can count as a break (its first buffers are
    /// queued before it starts).
    pub stall_grace_s: f64,
    /// Most callbacks after a break taken as the refill burst.
    pub burst_callbacks: usize,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        TimelineConfig {
            reports_only: false,
            envelope_callbacks: 8,
            block_s: 0.5,
            rate_blocks: 40,
            rate_min_blocks: 4,
            max_rate_fraction: 1e-3,
            max_pace_error: 0.1,
            rate_step_ns: 1e6,
            delay_blocks: 600,
            delay_trim: 0.25,
            delay_min_age_s: 4.0,
            block_step_ns: 0.5e6,
            block_hold: 20,
            block_reports: 256,
            reanchor_ns: 2e6,
            reanchor_after_s: 5.0,
            break_verify_s: 1.0,
            reanchor_after_break_s: 0.05,
            step_ns: 1e6,
            report_step_ns: 0.5e6,
            steady_span_ns: 1e6,
            steady_wait_s: 0.5,
            smooth_s: 4.0,
            stall_ns: 100e6,
            stall_grace_s: 1.0,
            burst_callbacks: 8,
        }
    }
}
