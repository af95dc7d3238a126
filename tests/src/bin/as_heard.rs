//! `as_heard`: the lag between the left and right channels of a recording, as a listener would
//! hear two players placed one on each side (the analysis half of `bench/as-heard`).
//!
//! The recording is raw interleaved 16-bit little-endian stereo (what `parec --raw
//! --format=s16le --channels=2` writes). It is cut into windows (0.5 s by default); in each,
//! the cross-correlation of left against right is computed at every integer lag within
//! `--max-lag-ms`, its peak found, and the peak refined to a fraction of a sample by
//! band-limited (windowed-sinc) interpolation of the correlation around it, maximized by
//! golden-section search. Windows where either side is near silent, or where the two sides do
//! not look alike (normalized peak below `--min-correlation`), are not used. The lag is positive
//! when the right channel is late.
//!
//! Given the two players' `--trace` files and the host `CLOCK_MONOTONIC` instant at which the
//! recording started, each window's lag is also split in two: the **sync** part is the lag the
//! players believe they have (the difference of the song frames their traces give for the
//! window's instants: clock sync and drift control), and the **device** part is the rest (what
//! their sound devices' timing adds). Where the traces carry each player's group clock, the
//! sync part's **clock** share is given too: how far the right-hand player's estimate of the
//! group clock was behind the left's at the same host instants (the rest of the sync part is
//! how the players follow their clocks).
//!
//! ```sh
//! as_heard --input rec.raw --rate 48000 --csv lags.csv --json summary.json --plot lags.png
//! ```

use std::f64::consts::PI;
use std::path::PathBuf;

use clap::Parser;
use music262::fleet::{TracePoint, clock_errors_us, quantile_abs, read_trace, sync_errors_us};
use plotters::prelude::*;

#[derive(Parser, Debug)]
#[command(
    about = "Lag between the left and right channels of a stereo recording (cross-correlation \
                   in windows, refined to a fraction of a sample)"
)]
struct Args {
    /// Raw interleaved s16le stereo recording.
    #[arg(long)]
    input: PathBuf,
    /// Sample rate of the recording (Hz).
    #[arg(long, default_value_t = 48_000)]
    rate: u32,
    /// Window length in seconds.
    #[arg(long, default_value_t = 0.5)]
    window: f64,
    /// Largest lag searched, milliseconds.
    #[arg(long, default_value_t = 10.0)]
    max_lag_ms: f64,
    /// Seconds skipped at the start of the recording.
    #[arg(long, default_value_t = 0.0)]
    skip: f64,
    /// Windows whose normalized correlation peak is below this are not used.
    #[arg(long, default_value_t = 0.5)]
    min_correlation: f64,
    /// Write each used window's start time and lag (µs) here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the lag over time to this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Title of the plot.
    #[arg(long, default_value = "lag of the right channel behind the left")]
    title: String,
    /// The left-hand player's `--trace` file (with `--right-trace` and `--start-ns`: split each
    /// window's lag into its sync and device parts).
    #[arg(long, requires_all = ["right_trace", "start_ns"])]
    left_trace: Option<PathBuf>,
    /// The right-hand player's `--trace` file.
    #[arg(long, requires_all = ["left_trace", "start_ns"])]
    right_trace: Option<PathBuf>,
    /// Host `CLOCK_MONOTONIC` instant (ns) of the recording's first sample.
    #[arg(long, requires_all = ["left_trace", "right_trace"])]
    start_ns: Option<u64>,
}

/// Half-width (in samples) of the windowed-sinc kernel interpolating the correlation.
const SINC_HALF: i64 = 32;

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("as_heard: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let bytes = std::fs::read(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let (left, right) = deinterleave_s16le(&bytes);
    let rate = f64::from(args.rate);
    let skip = (args.skip * rate) as usize;
    let window = (args.window * rate).round() as usize;
    let max_lag = (args.max_lag_ms * 1e-3 * rate).ceil() as usize;
    if window <= 2 * max_lag + 2 * SINC_HALF as usize {
        return Err("--window is too short for --max-lag-ms".into());
    }
    let windows = analyze(
        left.get(skip..).unwrap_or(&[]),
        right.get(skip..).unwrap_or(&[]),
        window,
        max_lag,
        args.min_correlation,
    );
    let total = left.len().saturating_sub(skip) / window;
    let used: Vec<(f64, f64)> = windows
        .iter()
        .map(|w| ((skip + w.start) as f64 / rate, w.lag_samples / rate * 1e6))
        .collect();
    if used.is_empty() {
        return Err(format!(
            "no usable window among {total} (silence, or the two sides do not match)"
        ));
    }
    let lags: Vec<f64> = used.iter().map(|w| w.1).collect();
    let q = |p: f64| quantile_abs(&lags, p).unwrap_or(0.0);
    let mean = used.iter().map(|w| w.1).sum::<f64>() / used.len() as f64;
    println!(
        "lag |right - left|: p50 {:.1} us, p99 {:.1} us, max {:.1} us; mean (signed) {:+.1} us; {} of {} windows of {} s used",
        q(0.5),
        q(0.99),
        q(1.0),
        mean,
        used.len(),
        total,
        args.window
    );
    // The sync part of each window and its clock share (None where a trace does not cover it).
    let (sync, clock): (Vec<Option<f64>>, Vec<Option<f64>>) =
        match (&args.left_trace, &args.right_trace, args.start_ns) {
            (Some(l), Some(r), Some(start_ns)) => {
                let (l, r) = (read_trace(l), read_trace(r));
                if !l.iter().any(|p| p.playing) || !r.iter().any(|p| p.playing) {
                    // The lag heard stands without the split.
                    eprintln!("as_heard: no sync/device split: a trace has no line while playing");
                }
                used.iter()
                    .map(|(t, _)| {
                        let from = start_ns + (t * 1e9) as u64;
                        let to = from + (args.window * 1e9) as u64;
                        (
                            believed_lag_us(&l, &r, from, to),
                            believed_clock_us(&l, &r, from, to),
                        )
                    })
                    .unzip()
            }
            _ => (Vec::new(), Vec::new()),
        };
    let parts = split_summary(&used, &sync);
    if let Some(p) = &parts {
        println!(
            "of which sync (what the players believe): mean {:+.1} us, p99 |.| {:.1} us; device: mean {:+.1} us, p99 |.| {:.1} us; {} windows",
            p.sync_mean, p.sync_p99, p.device_mean, p.device_p99, p.windows
        );
    }
    let clock_part = clock_summary(&clock);
    if let Some((mean, p99, n)) = clock_part {
        println!(
            "the sync part's clock share (group clocks at the same instants): mean {mean:+.1} us, p99 |.| {p99:.1} us; {n} windows"
        );
    }
    if let Some(path) = &args.csv {
        let mut s = String::from("t_s,lag_us,sync_us,device_us,clock_us\n");
        let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
        for (i, (t, l)) in used.iter().enumerate() {
            let y = sync.get(i).copied().flatten();
            let c = clock.get(i).copied().flatten();
            s.push_str(&format!(
                "{t:.3},{l:.3},{},{},{}\n",
                cell(y),
                cell(y.map(|y| l - y)),
                cell(c)
            ));
        }
        std::fs::write(path, s).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let mut split = parts.as_ref().map_or(String::new(), |p| {
            format!(
                ",\"sync_mean_us\":{:.3},\"sync_p99_us\":{:.3},\"device_mean_us\":{:.3},\"device_p99_us\":{:.3},\"split_windows\":{}",
                p.sync_mean, p.sync_p99, p.device_mean, p.device_p99, p.windows
            )
        });
        if let Some((mean, p99, _)) = clock_part {
            split.push_str(&format!(
                ",\"clock_mean_us\":{mean:.3},\"clock_p99_us\":{p99:.3}"
            ));
        }
        let s = format!(
            "{{\"p50_us\":{:.3},\"p99_us\":{:.3},\"max_us\":{:.3},\"mean_us\":{:.3},\"windows_used\":{},\"windows\":{},\"window_s\":{}{split}}}\n",
            q(0.5),
            q(0.99),
            q(1.0),
            mean,
            used.len(),
            total,
            args.window
        );
        std::fs::write(path, s).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        plot(path, &args.title, &used, &sync, &clock)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Trace lines further apart than this are a pause or a seek: a window with such a hole is not
/// covered.
const TRACE_GAP_NS: u64 = 50_000_000;

/// The lag (µs) of the right-hand player behind the left that their traces give, averaged over
/// the left trace's playing lines in host instants `from_ns..=to_ns`; `None` unless those lines
/// cover the whole window and the right trace covers every one of them.
fn believed_lag_us(
    left: &[TracePoint],
    right: &[TracePoint],
    from_ns: u64,
    to_ns: u64,
) -> Option<f64> {
    let instants: Vec<u64> = left
        .iter()
        .filter(|p| p.playing && (from_ns..=to_ns).contains(&p.host_ns))
        .map(|p| p.host_ns)
        .collect();
    let covered = instants.first()? - from_ns <= TRACE_GAP_NS
        && to_ns - instants.last()? <= TRACE_GAP_NS
        && instants
            .windows(2)
            // Lines going back in time (a restart or re-seek) do not cover it either.
            .all(|w| w[0] < w[1] && w[1] - w[0] <= TRACE_GAP_NS);
    // The left side's error against the right: positive when the right one is late.
    let errors = sync_errors_us(left, right, from_ns, to_ns);
    (covered && errors.len() == instants.len())
        .then(|| errors.iter().sum::<f64>() / errors.len() as f64)
}

/// How far the right-hand player's group clock was behind the left's (µs), averaged like
/// [`believed_lag_us`]; `None` unless every left line of the window has a group clock to
/// compare.
fn believed_clock_us(
    left: &[TracePoint],
    right: &[TracePoint],
    from_ns: u64,
    to_ns: u64,
) -> Option<f64> {
    let lines = left
        .iter()
        .filter(|p| p.playing && (from_ns..=to_ns).contains(&p.host_ns))
        .count();
    let errors = clock_errors_us(left, right, from_ns, to_ns);
    (lines > 0 && errors.len() == lines).then(|| errors.iter().sum::<f64>() / errors.len() as f64)
}

/// Mean, p99 of the magnitude and count of the windows' clock shares, if any has one.
fn clock_summary(clock: &[Option<f64>]) -> Option<(f64, f64, usize)> {
    let c: Vec<f64> = clock.iter().flatten().copied().collect();
    let p99 = quantile_abs(&c, 0.99)?;
    Some((c.iter().sum::<f64>() / c.len() as f64, p99, c.len()))
}

/// The sync and device parts of the lag, summarized over the windows that have both.
#[derive(Debug)]
struct SplitSummary {
    sync_mean: f64,
    sync_p99: f64,
    device_mean: f64,
    device_p99: f64,
    windows: usize,
}

fn split_summary(used: &[(f64, f64)], sync: &[Option<f64>]) -> Option<SplitSummary> {
    let pairs: Vec<(f64, f64)> = used
        .iter()
        .zip(sync)
        .filter_map(|(&(_, lag), s)| s.map(|s| (s, lag - s)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let (sync, device): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    let n = pairs.len() as f64;
    Some(SplitSummary {
        sync_mean: sync.iter().sum::<f64>() / n,
        sync_p99: quantile_abs(&sync, 0.99)?,
        device_mean: device.iter().sum::<f64>() / n,
        device_p99: quantile_abs(&device, 0.99)?,
        windows: pairs.len(),
    })
}

/// Left and right samples of raw interleaved s16le stereo (a torn last frame is dropped).
fn deinterleave_s16le(bytes: &[u8]) -> (Vec<f64>, Vec<f64>) {
    let mut l = Vec::with_capacity(bytes.len() / 4);
    let mut r = Vec::with_capacity(bytes.len() / 4);
    for f in bytes.chunks_exact(4) {
        l.push(f64::from(i16::from_le_bytes([f[0], f[1]])));
        r.push(f64::from(i16::from_le_bytes([f[2], f[3]])));
    }
    (l, r)
}

/// One used window.
#[derive(Clone, Copy, Debug)]
struct WindowLag {
    /// First sample of the window.
    start: usize,
    /// Lag of `right` behind `left`, in samples (fractional).
    lag_samples: f64,
}

/// The lag of each usable window of `len` samples (see the module documentation).
fn analyze(
    left: &[f64],
    right: &[f64],
    len: usize,
    max_lag: usize,
    min_correlation: f64,
) -> Vec<WindowLag> {
    let n = left.len().min(right.len());
    let reach = max_lag + SINC_HALF as usize + 2;
    let mut out = Vec::new();
    // The left window is compared with right windows shifted by up to `reach` samples either
    // way, so the first and last `reach` samples only serve as context.
    let mut start = reach;
    while start + len + reach <= n {
        if let Some(lag) = window_lag(left, right, start, len, max_lag, min_correlation) {
            out.push(WindowLag {
                start,
                lag_samples: lag,
            });
        }
        start += len;
    }
    out
}

/// Correlation of `left[start..start+len]` with `right` shifted by `k`: `Σ l[n]·r[n+k]`.
fn xcorr(left: &[f64], right: &[f64], start: usize, len: usize, k: i64) -> f64 {
    let l = &left[start..start + len];
    let from = (start as i64 + k) as usize;
    let r = &right[from..from + len];
    l.iter().zip(r).map(|(a, b)| a * b).sum()
}

fn energy(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum()
}

/// The refined lag of one window, or `None` when it is not usable.
fn window_lag(
    left: &[f64],
    right: &[f64],
    start: usize,
    len: usize,
    max_lag: usize,
    min_correlation: f64,
) -> Option<f64> {
    let el = energy(&left[start..start + len]);
    let er = energy(&right[start..start + len]);
    // Near-silent sides (below about -60 dBFS) carry no timing.
    let floor = len as f64 * 32.0 * 32.0;
    if el < floor || er < floor {
        return None;
    }
    let max_lag = max_lag as i64;
    // Correlation at every integer lag, with SINC_HALF extra on both sides for interpolation.
    let span = max_lag + SINC_HALF + 1;
    let c: Vec<f64> = (-span..=span)
        .map(|k| xcorr(left, right, start, len, k))
        .collect();
    let at = |k: i64| c[(k + span) as usize];
    let k0 = (-max_lag..=max_lag).max_by(|a, b| at(*a).total_cmp(&at(*b)))?;
    if at(k0) / (el * er).sqrt() < min_correlation {
        return None;
    }
    // The correlation of band-limited signals is band-limited: interpolate it with a
    // Blackman-windowed sinc and find its maximum near k0.
    let interp = |tau: f64| -> f64 {
        let base = tau.floor() as i64;
        let mut sum = 0.0;
        for k in base - SINC_HALF + 1..=base + SINC_HALF {
            let x = tau - k as f64;
            let w = 0.42
                + 0.5 * (PI * x / SINC_HALF as f64).cos()
                + 0.08 * (2.0 * PI * x / SINC_HALF as f64).cos();
            let s = if x.abs() < 1e-12 {
                1.0
            } else {
                (PI * x).sin() / (PI * x)
            };
            sum += at(k) * s * w;
        }
        sum
    };
    let (mut a, mut b) = (k0 as f64 - 1.0, k0 as f64 + 1.0);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = b - g * (b - a);
    let mut x2 = a + g * (b - a);
    let (mut f1, mut f2) = (interp(x1), interp(x2));
    while b - a > 1e-5 {
        if f1 < f2 {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + g * (b - a);
            f2 = interp(x2);
        } else {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - g * (b - a);
            f1 = interp(x1);
        }
    }
    Some((a + b) / 2.0)
}

fn plot(
    path: &std::path::Path,
    title: &str,
    used: &[(f64, f64)],
    sync: &[Option<f64>],
    clock: &[Option<f64>],
) -> Result<(), Box<dyn std::error::Error>> {
    music262_tests::plot::register_font();
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let t0 = used.first().map_or(0.0, |w| w.0);
    let t1 = used.last().map_or(1.0, |w| w.0) + 0.5;
    let y = used.iter().map(|w| w.1.abs()).fold(10.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .margin(15)
        .caption(title, ("sans-serif", 20))
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(t0..t1, -y..y)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the recording")
        .y_desc("lag (us)")
        .label_style(("sans-serif", 14))
        .draw()?;
    chart
        .draw_series(used.iter().map(|w| Circle::new(*w, 3, BLUE.filled())))?
        .label("lag heard")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
    if sync.iter().any(Option::is_some) {
        // The two parts, where the traces cover the window.
        let parts = |device: bool| {
            used.iter()
                .zip(sync)
                .filter_map(move |(&(t, lag), s)| s.map(|s| (t, if device { lag - s } else { s })))
                .collect::<Vec<_>>()
        };
        chart
            .draw_series(LineSeries::new(parts(false), GREEN.stroke_width(2)))?
            .label("sync (what the players believe)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(parts(true), RED.stroke_width(2)))?
            .label("device (the rest)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        let clock: Vec<(f64, f64)> = used
            .iter()
            .zip(clock)
            .filter_map(|(&(t, _), c)| c.map(|c| (t, c)))
            .collect();
        if !clock.is_empty() {
            chart
                .draw_series(LineSeries::new(clock, MAGENTA.stroke_width(1)))?
                .label("of sync: clock (group clocks)")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA.stroke_width(1))
                });
        }
        music262_tests::plot::draw_legend(&mut chart, 14, SeriesLabelPosition::MiddleRight)?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stereo signal of `secs` s: a sum of sinusoids below 15 kHz with irregular amplitudes
    /// and phases, the right side delayed by `delay_s` (computed exactly, not interpolated).
    fn synthetic(rate: f64, secs: f64, delay_s: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let tones: Vec<(f64, f64, f64)> = (0..60)
            .map(|_| (40.0 + next() * 15_000.0, 0.2 + next(), next() * 2.0 * PI))
            .collect();
        let n = (secs * rate) as usize;
        let side = |shift: f64| -> Vec<f64> {
            (0..n)
                .map(|i| {
                    let t = i as f64 / rate - shift;
                    tones
                        .iter()
                        .map(|(f, a, p)| a * (2.0 * PI * f * t + p).sin())
                        .sum::<f64>()
                        * 400.0
                })
                .collect()
        };
        (side(0.0), side(delay_s))
    }

    #[test]
    fn known_fractional_delays_are_recovered_to_well_under_a_microsecond() {
        let rate = 48_000.0;
        for (i, delay_us) in [0.0, 7.3, -13.9, 20.8, 104.17, -250.5]
            .into_iter()
            .enumerate()
        {
            let (l, r) = synthetic(rate, 1.6, delay_us * 1e-6, 7 + i as u64);
            let w = analyze(&l, &r, 24_000, 480, 0.5);
            assert!(!w.is_empty(), "no window for {delay_us} us");
            for x in &w {
                let got = x.lag_samples / rate * 1e6;
                assert!(
                    (got - delay_us).abs() < 0.1,
                    "delay {delay_us} us recovered as {got} us"
                );
            }
        }
    }

    #[test]
    fn silent_or_unrelated_windows_are_not_used() {
        let rate = 48_000.0;
        let silent = vec![0.0; 96_000];
        let (l, _) = synthetic(rate, 2.0, 0.0, 3);
        assert!(analyze(&l, &silent, 24_000, 480, 0.5).is_empty());
        let (other, _) = synthetic(rate, 2.0, 0.0, 99);
        assert!(analyze(&l, &other, 24_000, 480, 0.5).is_empty());
    }

    /// A playing trace heard `late_us` behind a timeline that starts at host instant 5 s, its
    /// group clock `clock_behind_us` behind host time + 1 s, with a line every 10 ms from
    /// `from_ns` to `to_ns`.
    fn trace(late_us: f64, clock_behind_us: f64, from_ns: u64, to_ns: u64) -> Vec<TracePoint> {
        (from_ns..=to_ns)
            .step_by(10_000_000)
            .map(|t| TracePoint {
                host_ns: t,
                frame: ((t - 5_000_000_000) as f64 * 1e-9 - late_us * 1e-6) * 48_000.0,
                sample_rate: 48_000,
                playing: true,
                state: music262::fleet::TraceState::Playing,
                group_ns: Some(t + 1_000_000_000 - (clock_behind_us * 1e3) as u64),
            })
            .collect()
    }

    #[test]
    fn the_traces_give_the_lag_the_players_believe_they_have() {
        let start = 5_000_000_000u64;
        let left = trace(12.0, 2.0, start, start + 3_000_000_000);
        let right = trace(-30.5, 7.0, start + 5_000_000, start + 3_000_000_000);
        let from = start + 1_000_000_000;
        let got = believed_lag_us(&left, &right, from, from + 500_000_000).unwrap();
        // The right side is 30.5 us early, the left 12 us late: the right is 42.5 us ahead.
        assert!((got + 42.5).abs() < 0.01, "{got}");
        // Its group clock is 5 us further behind than the left's.
        let clock = believed_clock_us(&left, &right, from, from + 500_000_000).unwrap();
        assert!((clock - 5.0).abs() < 0.01, "{clock}");
        let without: Vec<_> = right
            .iter()
            .map(|p| TracePoint {
                group_ns: None,
                ..*p
            })
            .collect();
        assert_eq!(
            believed_clock_us(&left, &without, from, from + 500_000_000),
            None
        );
        // Outside what both traces cover while playing: no answer.
        assert_eq!(
            believed_lag_us(&left, &right, from + 1_800_000_000, from + 2_300_000_000),
            None
        );
        assert_eq!(
            believed_lag_us(&left, &right, start - 500_000_000, start),
            None
        );
        // A hole in the right-hand trace (a pause) leaves the window without an answer.
        let holed: Vec<_> = right
            .iter()
            .filter(|p| !(from + 100_000_000..from + 300_000_000).contains(&p.host_ns))
            .copied()
            .collect();
        assert_eq!(
            believed_lag_us(&left, &holed, from, from + 500_000_000),
            None
        );
    }

    #[test]
    fn the_split_gives_each_windows_rest_to_the_device() {
        let used = [(0.0, 50.0), (0.5, -10.0), (1.0, 30.0)];
        let sync = [Some(20.0), None, Some(40.0)];
        let s = split_summary(&used, &sync).unwrap();
        assert_eq!(s.windows, 2);
        assert!((s.sync_mean - 30.0).abs() < 1e-9 && (s.device_mean - 10.0).abs() < 1e-9);
        assert!((s.sync_p99 - 40.0).abs() < 1e-9 && (s.device_p99 - 30.0).abs() < 1e-9);
        assert!(split_summary(&used, &[None, None, None]).is_none());
    }

    #[test]
    fn raw_s16le_frames_split_into_channels_and_a_torn_frame_is_dropped() {
        let bytes = [1u8, 0, 0xff, 0xff, 0, 0x80, 0xff, 0x7f, 9];
        let (l, r) = deinterleave_s16le(&bytes);
        assert_eq!(l, vec![1.0, -32768.0]);
        assert_eq!(r, vec![-1.0, 32767.0]);
    }
}
