//! Draws the PNGs of BENCHMARKS.md from the results `bench/run` leaves in `bench/results/`:
//!
//! * `sync.png`: sync error over time of each pair of the three real clients, gRPC and QUIC
//!   (from `sync-grpc.csv` and `sync-quic.csv`, written by the `bench_sync` example);
//! * `scale.png`: wall time and messages per peer per second of the simulator's `scale`
//!   scenario against the number of peers (from `sim-scale-*.json`);
//! * `server.png`: each client's time to the last byte when one server streams a song to many
//!   (from `server-*.csv`, written by the `bench_server` example).
//!
//! A missing input skips its plot with one line; a malformed one is an error.

use std::path::{Path, PathBuf};

use clap::Parser;
use plotters::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "Draws the benchmark plots from bench/results")]
struct Args {
    /// Folder of the results, where the PNGs are written too.
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
}

type Failure = Box<dyn std::error::Error>;
/// One sample of a real-process run: seconds after `play`, the pair, its error in µs.
type PairSample = (f64, String, f64);

fn main() {
    let args = Args::parse();
    if !music262_tests::plot::register_font() {
        eprintln!(
            "bench_plot: no TrueType font found (install fonts-dejavu-core); plots will have no text"
        );
    }
    let mut failed = false;
    for (name, f) in [
        ("sync.png", sync as fn(&Path) -> Result<bool, Failure>),
        ("scale.png", scale),
        ("server.png", server),
    ] {
        match f(&args.results) {
            Ok(true) => println!("{}", args.results.join(name).display()),
            Ok(false) => println!("{name}: no results yet, skipped"),
            Err(e) => {
                eprintln!("bench_plot: {name}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

/// Rows of a CSV file with a header line, split at commas; `None` when the file is absent.
fn read_csv(path: &Path) -> Result<Option<Vec<Vec<String>>>, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display()).into()),
    };
    Ok(Some(
        text.lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect(),
    ))
}

fn number(s: &str, path: &Path) -> Result<f64, Failure> {
    s.parse()
        .map_err(|_| format!("{}: `{s}` is not a number", path.display()).into())
}

/// `(time s, pair, error µs)` of one transport's run.
fn sync_series(results: &Path, transport: &str) -> Result<Option<Vec<PairSample>>, Failure> {
    let path = results.join(format!("sync-{transport}.csv"));
    let Some(rows) = read_csv(&path)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for r in rows {
        if r.len() != 3 {
            return Err(format!("{}: expected t_s,pair,error_us", path.display()).into());
        }
        if r[0].is_empty() {
            continue;
        }
        out.push((number(&r[0], &path)?, r[1].clone(), number(&r[2], &path)?));
    }
    Ok(Some(out))
}

fn sync(results: &Path) -> Result<bool, Failure> {
    let runs: Vec<(&str, Vec<PairSample>)> = ["grpc", "quic"]
        .into_iter()
        .filter_map(|t| {
            sync_series(results, t)
                .transpose()
                .map(|s| s.map(|s| (t, s)))
        })
        .collect::<Result<_, _>>()?;
    if runs.is_empty() {
        return Ok(false);
    }
    let path = results.join("sync.png");
    let root = BitMapBackend::new(&path, (1400, 450 * runs.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, (transport, series)) in root.split_evenly((runs.len(), 1)).iter().zip(&runs) {
        let t_max = series.iter().map(|p| p.0).fold(1.0, f64::max);
        let y = series.iter().map(|p| p.2.abs()).fold(10.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .margin(15)
            .caption(
                format!("three real clients over {transport}: sync error of each pair (clocks ±2 s, ±200 ppm)"),
                ("sans-serif", 20),
            )
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, -y..y)?;
        chart
            .configure_mesh()
            .x_desc("seconds after `play` was typed")
            .y_desc("error (us)")
            .label_style(("sans-serif", 14))
            .draw()?;
        let mut pairs: Vec<&str> = series.iter().map(|p| p.1.as_str()).collect();
        pairs.dedup();
        for (i, pair) in pairs.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(
                    series
                        .iter()
                        .filter(|p| p.1 == *pair)
                        .map(|p| Circle::new((p.0, p.2), 1, color.filled())),
                )?
                .label(*pair)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        music262_tests::plot::draw_legend(&mut chart, 14, SeriesLabelPosition::MiddleRight)?;
    }
    root.present()?;
    Ok(true)
}

fn scale(results: &Path) -> Result<bool, Failure> {
    let mut points = Vec::new();
    for entry in std::fs::read_dir(results)? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("sim-scale-") && name.ends_with(".json")) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p)?)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        let field = |k: &str| {
            v[k].as_f64()
                .ok_or_else(|| format!("{}: no number `{k}`", p.display()))
        };
        points.push((
            field("peers")?,
            field("wall_seconds")?,
            field("messages_per_peer_per_sec")?,
        ));
    }
    if points.is_empty() {
        return Ok(false);
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let path = results.join("scale.png");
    let root = BitMapBackend::new(&path, (1400, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let n_max = points.last().map_or(1.0, |p| p.0) * 1.1;
    let areas = root.split_evenly((1, 2));
    for (area, (title, y_desc, pick)) in areas.iter().zip([
        (
            "simulator, 60 simulated s: wall time",
            "wall seconds (one core)",
            (|p: &(f64, f64, f64)| p.1) as fn(&(f64, f64, f64)) -> f64,
        ),
        (
            "messages per peer per second",
            "messages / peer / s",
            |p: &(f64, f64, f64)| p.2,
        ),
    ]) {
        let y_max = points.iter().map(pick).fold(1.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(area)
            .margin(15)
            .caption(title, ("sans-serif", 20))
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("peers")
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .draw()?;
        chart.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0, pick(p))),
            BLUE.stroke_width(2),
        ))?;
        chart.draw_series(
            points
                .iter()
                .map(|p| Circle::new((p.0, pick(p)), 5, BLUE.filled())),
        )?;
    }
    root.present()?;
    Ok(true)
}

fn server(results: &Path) -> Result<bool, Failure> {
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(results)? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("server-") && name.ends_with(".csv") {
            runs.push(p);
        }
    }
    runs.sort();
    let Some(csv) = runs.last() else {
        return Ok(false);
    };
    let rows = read_csv(csv)?.unwrap_or_default();
    let mut last = Vec::new();
    for r in &rows {
        if r.len() != 3 {
            return Err(format!(
                "{}: expected client,first_byte_ms,last_byte_s",
                csv.display()
            )
            .into());
        }
        last.push(number(&r[2], csv)?);
    }
    if last.is_empty() {
        return Ok(false);
    }
    last.sort_by(f64::total_cmp);
    let path = results.join("server.png");
    let root = BitMapBackend::new(&path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let y_max = last.last().copied().unwrap_or(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .margin(15)
        .caption(
            format!(
                "one server streaming one song to {} clients at once",
                last.len()
            ),
            ("sans-serif", 20),
        )
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..last.len() as f64, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("clients, fastest first")
        .y_desc("time to the last byte (s)")
        .label_style(("sans-serif", 14))
        .draw()?;
    chart.draw_series(last.iter().enumerate().map(|(i, t)| {
        Rectangle::new([(i as f64 + 0.1, 0.0), (i as f64 + 0.9, *t)], BLUE.filled())
    }))?;
    root.present()?;
    Ok(true)
}
