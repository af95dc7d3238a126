//! `--plot`: sync error over time per peer, as a PNG drawn with plotters' bitmap backend.
//!
//! plotters is built without its system-font feature (no fontconfig or freetype to link): text
//! is drawn with ab_glyph from a TrueType file found at run time (`MUSIC262_PLOT_FONT`, else
//! DejaVu Sans where Debian's `fonts-dejavu-core` puts it). Without one, the plot is drawn
//! without text and a note says so.

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::sim::SeriesPoint;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a font for plot text (`MUSIC262_PLOT_FONT`, else DejaVu Sans); false when none
/// was found, and text is then not drawn.
pub fn register_font() -> bool {
    let mut paths: Vec<String> = Vec::new();
    if let Ok(p) = std::env::var("MUSIC262_PLOT_FONT") {
        paths.push(p);
    }
    paths.extend(FONT_PATHS.iter().map(|p| p.to_string()));
    for p in paths {
        if let Ok(bytes) = std::fs::read(&p) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Draws the series labels of `chart` the way every plot here does: a framed, mostly opaque
/// box at `position`, labels of `size` points.
pub fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    size: u32,
    position: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", size))
        .position(position)
        .draw()
}

/// Draws `series` (true time in s, peer, error in µs) to a PNG at `path`; `gap_s` is the
/// sampling interval, beyond twice which a peer's line is broken (excluded samples). Returns a
/// note for the user when the plot has no text.
pub fn draw(
    path: &str,
    title: &str,
    series: &[SeriesPoint],
    duration_s: f64,
    gap_s: f64,
) -> Result<Option<String>, String> {
    let has_font = register_font();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {path}: {e}");
    let root = BitMapBackend::new(path, (1400, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let max_abs = series
        .iter()
        .map(|p| p.2.abs())
        .fold(1.0f64, f64::max)
        .min(1e6);
    let y = max_abs * 1.1;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if has_font {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(45)
            .y_label_area_size(80);
    } else {
        builder.x_label_area_size(0).y_label_area_size(0);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..duration_s, -y..y)
        .map_err(|e| err(&e))?;
    if has_font {
        chart
            .configure_mesh()
            .x_desc("simulated time (s)")
            .y_desc("error against the median of the peers (us)")
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(&e))?;
    } else {
        chart
            .configure_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(|e| err(&e))?;
    }
    let mut by_peer: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
    for &(t, p, e) in series {
        by_peer.entry(p).or_default().push((t, e));
    }
    for (k, (peer, pts)) in by_peer.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let mut segment: Vec<(f64, f64)> = Vec::new();
        let mut first = true;
        let mut flush = |seg: &mut Vec<(f64, f64)>, first: &mut bool| -> Result<(), String> {
            if seg.is_empty() {
                return Ok(());
            }
            let drawn = chart
                .draw_series(LineSeries::new(seg.drain(..), color.stroke_width(1)))
                .map_err(|e| err(&e))?;
            if *first && has_font {
                drawn.label(format!("peer {peer}")).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
            *first = false;
            Ok(())
        };
        for &(t, e) in pts {
            if segment.last().is_some_and(|&(lt, _)| t - lt > 2.0 * gap_s) {
                flush(&mut segment, &mut first)?;
            }
            segment.push((t, e));
        }
        flush(&mut segment, &mut first)?;
    }
    if has_font && by_peer.len() <= 16 {
        draw_legend(&mut chart, 14, SeriesLabelPosition::MiddleRight).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok((!has_font).then(|| {
        "no TrueType font found (install fonts-dejavu-core or set MUSIC262_PLOT_FONT): the plot has no text".to_string()
    }))
}
