//! Plots of measurement results for operators: delay over time and the delay distribution of
//! each direction (or the round trip) of a session, as SVG or PNG.
//!
//! The picture has the title on top and two panels under it:
//!
//! - **delay over time**: one line per series in its own colour, through the delays of the
//!   packets that arrived (with a dot on each sample when a series has fewer than
//!   [`MARKERS_BELOW`] of them). Each lost packet is a short vertical tick in the series'
//!   colour in a band below the delays, one row of ticks per series that lost any.
//! - **delay distribution**: on the left the empirical CDF of each series (a step function);
//!   on the right a histogram ([`HISTOGRAM_BINS`] bins, as the fraction of the series'
//!   samples in each bin, drawn as an outline so that series can overlap).
//!
//! **Axis choice.** The delay axes are linear. A log axis would make the usual case (delays
//! spread over a few per cent of their value) hard to read to save a rare one; instead the
//! range is robust to outliers: it spans the samples from the 1st to the 99th percentile of
//! all series together, widened by three times that spread (at least 1% of the delay, at
//! least 1 µs) on each side, but no further than the smallest and largest sample. Samples
//! beyond the range are drawn on its edge (so an outlier stays visible as a point on the
//! top edge) and the time panel's caption says how many there are and where the edge is.
//! The CDF and the histogram use the same range, so clipped samples show up as a step at
//! the edge of the CDF and in the edge bin of the histogram.
//!
//! **Large series.** Every sample is drawn in the time panel (one polyline per series, so
//! 100 000 samples render in well under a second); loss ticks are merged to one per pixel
//! column; a CDF of more than [`CDF_POINTS`] samples is drawn through that many evenly
//! spaced ranks, which looks the same at this size.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (`assets/DejaVuSans.ttf`, its
//! licence beside it), so PNGs come out the same on any machine; an SVG names the generic
//! `sans-serif` family and leaves the font to its viewer.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ippm_net::owamp_client::{OneWay, OwpingResult};
use ippm_net::twamp_client::{Reply, TwpingResult};
use ippm_net::twoway::TwoWayResult;
use ippm_proto::Timestamp;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Width of a plot, in pixels.
pub(crate) const WIDTH: u32 = 1200;
/// Height of a plot, in pixels.
pub(crate) const HEIGHT: u32 = 800;
/// A series with fewer received samples than this gets a dot on each.
pub(crate) const MARKERS_BELOW: usize = 100;
/// A CDF with more samples than this is drawn through this many ranks (plus the last).
pub(crate) const CDF_POINTS: usize = 2000;
/// Bins of the histogram.
pub(crate) const HISTOGRAM_BINS: usize = 40;

/// The largest time (s) or delay (ms), either sign, that is drawn: about 317 years in ms,
/// well beyond the ±68 years two NTP timestamps can differ by, and small enough that the
/// axis arithmetic stays finite and precise.
pub(crate) const LIMIT: f64 = 1e13;

/// The colours of the series, in order (then again from the start).
pub(crate) const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4), // blue
    RGBColor(0xd6, 0x27, 0x28), // red
    RGBColor(0x2c, 0xa0, 0x2c), // green
    RGBColor(0xff, 0x7f, 0x0e), // orange
    RGBColor(0x94, 0x67, 0xbd), // purple
    RGBColor(0x8c, 0x56, 0x4b), // brown
];

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// One series: delay samples of one direction (or the round trip) of one session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// What it is, e.g. "round trip", "to 192.0.2.2", "from 192.0.2.2".
    pub(crate) label: String,
    /// (seconds since the start, delay in ms or `None` for a lost packet), in sending
    /// order. Samples whose time or delay is not a number within ±[`LIMIT`] are left out.
    pub(crate) points: Vec<(f64, Option<f64>)>,
}

/// What one plot shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlotData {
    /// The title on top.
    pub(crate) title: String,
    /// The series, each in its own colour ([`PALETTE`], in order).
    pub(crate) series: Vec<Series>,
}

/// Why a plot could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlotError {
    /// The file name ends in neither `.svg` nor `.png`.
    #[error("{}: unknown plot format (the file name must end in .svg or .png)", .0.display())]
    UnknownFormat(PathBuf),
    /// The embedded font could not be read.
    #[error("the embedded plot font could not be loaded")]
    Font,
    /// Drawing failed.
    #[error("drawing the plot: {0}")]
    Draw(String),
    /// Encoding the PNG failed.
    #[error("encoding the PNG: {0}")]
    Png(#[from] png::EncodingError),
    /// Writing the file failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Registers the embedded font with plotters, once.
fn font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// The formats [`render`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Svg,
    Png,
}

fn format_of(path: &Path) -> Result<Format, PlotError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => Ok(Format::Svg),
        Some("png") => Ok(Format::Png),
        _ => Err(PlotError::UnknownFormat(path.to_path_buf())),
    }
}

/// Checks that [`render`] knows the format of `path` (so a command can refuse a bad file name
/// before it measures).
pub(crate) fn check_format(path: &Path) -> Result<(), PlotError> {
    format_of(path).map(|_| ())
}

/// Renders `data` to `path`, as SVG or PNG by the file's extension (`.svg`, `.png`, any
/// case; anything else is [`PlotError::UnknownFormat`], checked before drawing).
pub(crate) fn render(data: &PlotData, path: &Path) -> Result<(), PlotError> {
    let bytes = match format_of(path)? {
        Format::Svg => render_svg(data)?.into_bytes(),
        Format::Png => render_png(data)?,
    };
    std::fs::write(path, bytes).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Renders `data` as an SVG document of [`WIDTH`] × [`HEIGHT`].
pub(crate) fn render_svg(data: &PlotData) -> Result<String, PlotError> {
    font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, data)?;
        root.present().map_err(draw_err)?;
    }
    Ok(out)
}

/// Renders `data` as an 8-bit RGB PNG of [`WIDTH`] × [`HEIGHT`].
pub(crate) fn render_png(data: &PlotData) -> Result<Vec<u8>, PlotError> {
    font()?;
    let mut rgb = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, data)?;
        root.present().map_err(draw_err)?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&rgb)?;
        w.finish()?;
    }
    Ok(out)
}

/// One series made ready to draw.
struct Prepared<'a> {
    label: &'a str,
    colour: RGBColor,
    /// (time, delay) of the packets that arrived.
    received: Vec<(f64, f64)>,
    /// Times of the lost packets.
    lost: Vec<f64>,
    /// The delays, ascending.
    sorted: Vec<f64>,
}

impl<'a> Prepared<'a> {
    fn new(i: usize, s: &'a Series) -> Self {
        let mut received = Vec::new();
        let mut lost = Vec::new();
        // NaN compares false, so it is out too.
        let within = |v: f64| v.abs() <= LIMIT;
        for &(t, d) in s.points.iter().filter(|&&(t, _)| within(t)) {
            match d {
                Some(d) if within(d) => received.push((t, d)),
                Some(_) => {}
                None => lost.push(t),
            }
        }
        let mut sorted: Vec<f64> = received.iter().map(|&(_, d)| d).collect();
        sorted.sort_by(f64::total_cmp);
        Self {
            label: &s.label,
            colour: PALETTE[i % PALETTE.len()],
            received,
            lost,
            sorted,
        }
    }

    fn legend(&self) -> String {
        let n = self.received.len() + self.lost.len();
        let mut s = format!("{}: {} of {n} arrived", self.label, self.received.len());
        if let (Some(lo), Some(hi)) = (self.sorted.first(), self.sorted.last()) {
            let median = self.sorted[self.sorted.len() / 2];
            let _ = write!(
                s,
                ", delay {} / {} / {} ms (min / median / max)",
                num(*lo),
                num(median),
                num(*hi)
            );
        }
        s
    }
}

/// A delay in ms with as many digits as make sense.
fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// The value at fraction `p` of the way through `sorted` (which is not empty).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The delay range shown, robust to outliers (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
struct DelayRange {
    lo: f64,
    hi: f64,
}

impl DelayRange {
    /// From all delays together, ascending; `None` when there are none.
    fn of(sorted: &[f64]) -> Option<Self> {
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let (q01, q99) = (quantile(sorted, 0.01), quantile(sorted, 0.99));
        let spread = (q99 - q01).max(0.01 * q01.abs().max(q99.abs())).max(0.001);
        let lo = min.max(q01 - 3.0 * spread);
        let hi = max.min(q99 + 3.0 * spread);
        // 5% more each side; one value alone gets spread / 2 each side.
        let pad = if hi > lo {
            0.05 * (hi - lo)
        } else {
            spread / 2.0
        };
        // Keep a non-negative axis non-negative (delays are, clocks allowing).
        let lo = if lo >= 0.0 {
            (lo - pad).max(0.0)
        } else {
            lo - pad
        };
        Some(Self { lo, hi: hi + pad })
    }

    fn clamp(self, d: f64) -> f64 {
        d.clamp(self.lo, self.hi)
    }
}

/// The time axis: from 0 (or the first sample, if earlier) to the last sample.
fn time_range(series: &[Prepared<'_>]) -> (f64, f64) {
    let times = series.iter().flat_map(|s| {
        s.received
            .iter()
            .map(|&(t, _)| t)
            .chain(s.lost.iter().copied())
    });
    let (lo, hi) = times.fold((0.0f64, f64::NEG_INFINITY), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    if hi < lo {
        return (0.0, 1.0); // no samples
    }
    // At least 1 µs wide, and wide enough for the precision of f64 at these times.
    let least = 1e-6_f64.max(1e-9 * lo.abs().max(hi.abs()));
    if hi - lo >= least {
        (lo, hi)
    } else {
        (lo, lo + 1.0_f64.max(least))
    }
}

/// An axis range, refused unless finite and not empty (plotters does not return on others).
fn axis(lo: f64, hi: f64) -> Result<std::ops::Range<f64>, PlotError> {
    if lo.is_finite() && hi.is_finite() && hi > lo {
        Ok(lo..hi)
    } else {
        Err(PlotError::Draw(format!(
            "cannot draw an axis from {lo} to {hi}"
        )))
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &PlotData) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let body = root.titled(&data.title, (FAMILY, 26)).map_err(draw_err)?;
    let series: Vec<Prepared<'_>> = data
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| Prepared::new(i, s))
        .collect();
    let mut all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.sorted.iter().copied())
        .collect();
    all.sort_by(f64::total_cmp);
    let range = DelayRange::of(&all);

    let (upper, lower) = body.split_vertically(HEIGHT * 55 / 100);
    let (cdf, histogram) = lower.split_horizontally(WIDTH / 2);
    time_panel(&upper, &series, range, &all)?;
    match range {
        Some(range) => {
            cdf_panel(&cdf, &series, range)?;
            histogram_panel(&histogram, &series, range)?;
        }
        None => {
            let msg = if series.iter().any(|s| !s.lost.is_empty()) {
                "no packet arrived: no delays to show"
            } else {
                "no samples"
            };
            lower
                .draw(&Text::new(
                    msg,
                    (WIDTH as i32 / 2 - 150, lower.dim_in_pixel().1 as i32 / 2),
                    (FAMILY, 22),
                ))
                .map_err(draw_err)?;
        }
    }
    Ok(())
}

fn time_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Prepared<'_>],
    range: Option<DelayRange>,
    all: &[f64],
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let range = range.unwrap_or(DelayRange { lo: 0.0, hi: 1.0 });
    let (t0, t1) = time_range(series);
    // A band below the delays for the loss ticks, one row per series that lost packets.
    let lossy: Vec<usize> = (0..series.len())
        .filter(|&i| !series[i].lost.is_empty())
        .collect();
    let row = 0.05 * (range.hi - range.lo);
    let bottom = range.lo - row * lossy.len() as f64;

    let mut caption = String::from("delay over time");
    let above = all.iter().filter(|&&d| d > range.hi).count();
    let below = all.iter().filter(|&&d| d < range.lo).count();
    if above > 0 {
        let _ = write!(
            caption,
            "; {above} above {} ms drawn at the top",
            num(range.hi)
        );
    }
    if below > 0 {
        let _ = write!(
            caption,
            "; {below} below {} ms drawn at the bottom",
            num(range.lo)
        );
    }
    if !lossy.is_empty() {
        caption.push_str("; ticks at the bottom: lost packets");
    }

    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(axis(t0, t1)?, axis(bottom, range.hi)?)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("time since the start (s)")
        .y_desc("delay (ms)")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(draw_err)?;

    for s in series {
        let colour = s.colour;
        let points = s.received.iter().map(|&(t, d)| (t, range.clamp(d)));
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(1)))
            .map_err(draw_err)?
            .label(s.legend())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3)));
        if s.received.len() < MARKERS_BELOW {
            chart
                .draw_series(points.map(|p| Circle::new(p, 2, colour.filled())))
                .map_err(draw_err)?;
        }
    }

    // One tick per pixel column with a loss, per series.
    let plot_width = f64::from(chart.plotting_area().dim_in_pixel().0.max(1));
    for (row_index, &i) in lossy.iter().enumerate() {
        let s = &series[i];
        let y0 = range.lo - row * (row_index as f64 + 0.9);
        let y1 = range.lo - row * (row_index as f64 + 0.1);
        let mut columns: Vec<i64> = s
            .lost
            .iter()
            .map(|&t| ((t - t0) / (t1 - t0) * plot_width).round() as i64)
            .collect();
        columns.sort_unstable();
        columns.dedup();
        let colour = s.colour;
        chart
            .draw_series(columns.into_iter().map(|c| {
                let t = t0 + c as f64 / plot_width * (t1 - t0);
                PathElement::new([(t, y0), (t, y1)], colour.stroke_width(1))
            }))
            .map_err(draw_err)?;
    }

    if !series.is_empty() {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The points of the step function that is the empirical CDF of `sorted` (not empty),
/// clamped to `range`.
fn cdf_points(sorted: &[f64], range: DelayRange) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let nf = n as f64;
    if n <= CDF_POINTS {
        sorted
            .iter()
            .enumerate()
            .flat_map(|(i, &d)| {
                let x = range.clamp(d);
                [(x, i as f64 / nf), (x, (i + 1) as f64 / nf)]
            })
            .collect()
    } else {
        (0..=CDF_POINTS)
            .map(|k| {
                let r = k * (n - 1) / CDF_POINTS;
                (range.clamp(sorted[r]), (r + 1) as f64 / nf)
            })
            .collect()
    }
}

fn cdf_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Prepared<'_>],
    range: DelayRange,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption("delay distribution (CDF)", (FAMILY, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(axis(range.lo, range.hi)?, 0.0..1.0)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("delay (ms)")
        .y_desc("fraction of arrived packets")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(draw_err)?;
    for s in series.iter().filter(|s| !s.sorted.is_empty()) {
        chart
            .draw_series(LineSeries::new(
                cdf_points(&s.sorted, range),
                s.colour.stroke_width(2),
            ))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The fraction of `sorted` (not empty) in each of [`HISTOGRAM_BINS`] equal bins over `range`
/// (values beyond it count in the edge bins).
fn histogram(sorted: &[f64], range: DelayRange) -> Vec<f64> {
    let mut bins = vec![0usize; HISTOGRAM_BINS];
    let width = (range.hi - range.lo) / HISTOGRAM_BINS as f64;
    for &d in sorted {
        let b = ((range.clamp(d) - range.lo) / width).floor() as usize;
        bins[b.min(HISTOGRAM_BINS - 1)] += 1;
    }
    let n = sorted.len() as f64;
    bins.into_iter().map(|c| c as f64 / n).collect()
}

fn histogram_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Prepared<'_>],
    range: DelayRange,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let hists: Vec<(RGBColor, Vec<f64>)> = series
        .iter()
        .filter(|s| !s.sorted.is_empty())
        .map(|s| (s.colour, histogram(&s.sorted, range)))
        .collect();
    let top = hists
        .iter()
        .flat_map(|(_, h)| h.iter().copied())
        .fold(0.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("delay distribution (histogram)", (FAMILY, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(axis(range.lo, range.hi)?, axis(0.0, top.max(0.01))?)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("delay (ms)")
        .y_desc("fraction per bin")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(draw_err)?;
    let width = (range.hi - range.lo) / HISTOGRAM_BINS as f64;
    for (colour, h) in hists {
        let mut outline = Vec::with_capacity(2 * HISTOGRAM_BINS + 2);
        outline.push((range.lo, 0.0));
        for (b, &f) in h.iter().enumerate() {
            outline.push((range.lo + b as f64 * width, f));
            outline.push((range.lo + (b + 1) as f64 * width, f));
        }
        outline.push((range.hi, 0.0));
        chart
            .draw_series(LineSeries::new(outline, colour.stroke_width(2)))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// Seconds from `base` to `t`.
fn secs(t: Timestamp, base: Timestamp) -> f64 {
    t.nanos_since(base) as f64 / 1e9
}

/// Milliseconds from `from` to `to`.
fn millis(from: Timestamp, to: Timestamp) -> f64 {
    to.nanos_since(from) as f64 / 1e6
}

/// The series of a twping run: the round trip, (T4 - T1) - (T3 - T2), of every packet sent
/// (`None` for one without a reply; of duplicates the first reply counts), at T1 since the
/// first packet. When every reply says all three clocks are synchronized, also the one-way
/// delays "to" (T2 - T1) and "from" (T4 - T3) the reflector.
pub(crate) fn from_twping(r: &TwpingResult) -> PlotData {
    from_two_way(
        r,
        format!("TWAMP delay, {} (reflector {})", r.mode, r.reflector),
    )
}

/// The series of any two-way run (twping's TWAMP, stamp's STAMP), as [`from_twping`] says.
pub(crate) fn from_two_way(r: &impl TwoWayResult, title: String) -> PlotData {
    let mut first: HashMap<u32, &Reply> = HashMap::with_capacity(r.replies().len());
    for p in r.replies() {
        first.entry(p.reflector.sender_seq).or_insert(p);
    }
    let base = r.sent().first().map_or(Timestamp::ZERO, |s| s.time);
    let one_way = !first.is_empty()
        && first.values().all(|p| {
            p.recv_error.synchronized()
                && p.reflector.error_estimate.synchronized()
                && p.reflector.sender_error_estimate.synchronized()
        });
    let mut round = Vec::with_capacity(r.sent().len());
    let (mut to, mut from) = (Vec::new(), Vec::new());
    for s in r.sent() {
        let t = secs(s.time, base);
        let reply = first.get(&s.seq);
        round.push((
            t,
            reply.map(|p| {
                let f = &p.reflector;
                millis(f.sender_timestamp, p.recv_time) - millis(f.receive_timestamp, f.timestamp)
            }),
        ));
        if one_way {
            to.push((
                t,
                reply.map(|p| millis(p.reflector.sender_timestamp, p.reflector.receive_timestamp)),
            ));
            from.push((t, reply.map(|p| millis(p.reflector.timestamp, p.recv_time))));
        }
    }
    let peer = r.reflector();
    let mut series = vec![Series {
        label: "round trip".into(),
        points: round,
    }];
    if one_way {
        series.push(Series {
            label: format!("to {}", peer.ip()),
            points: to,
        });
        series.push(Series {
            label: format!("from {}", peer.ip()),
            points: from,
        });
    }
    PlotData { title, series }
}

/// One direction of an owping run: recv - send of each record by sequence number (`None`
/// for a lost packet; of duplicates the first record counts), at its send time since the
/// direction's first packet.
fn one_way_series(label: &str, w: &OneWay) -> Series {
    let mut records: Vec<_> = w.records.iter().collect();
    records.sort_by_key(|r| r.seq);
    records.dedup_by_key(|r| r.seq);
    let base = records
        .iter()
        .map(|r| w.send_time(r))
        .min()
        .unwrap_or(Timestamp::ZERO);
    Series {
        label: label.into(),
        points: records
            .iter()
            .map(|r| {
                let sent = w.send_time(r);
                (
                    secs(sent, base),
                    (!r.is_lost()).then(|| millis(sent, r.recv_time)),
                )
            })
            .collect(),
    }
}

/// The series of an owping run: "to server" and "from server", for the directions measured
/// (the caller may put the server's name in the labels).
pub(crate) fn from_owping(r: &OwpingResult) -> PlotData {
    let series = [("to server", &r.to_server), ("from server", &r.from_server)]
        .into_iter()
        .filter_map(|(label, w)| w.as_ref().map(|w| one_way_series(label, w)))
        .collect();
    PlotData {
        title: format!("OWAMP one-way delay, {}", r.mode),
        series,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use ippm_net::owamp_client::OneWay;
    use ippm_net::twamp_client::Sent;
    use ippm_proto::wire::owamp::DataRecord;
    use ippm_proto::wire::test::ReflectorRepr;
    use ippm_proto::{ErrorEstimate, Modes, SecurityMode};

    use super::*;

    /// Series "A" (50 packets every 0.1 s, 10 ms plus a ripple, 3 of them lost) and "B"
    /// (80 packets, 20 ms plus a ripple, none lost).
    fn two_series() -> PlotData {
        let a = (0..50)
            .map(|i| {
                let t = f64::from(i) * 0.1;
                let d = (![7, 23, 41].contains(&i)).then(|| 10.0 + f64::from(i % 5) * 0.2);
                (t, d)
            })
            .collect();
        let b = (0..80)
            .map(|i| (f64::from(i) * 0.06, Some(20.0 + f64::from(i % 7) * 0.3)))
            .collect();
        PlotData {
            title: "Test plot <A & B>".into(),
            series: vec![
                Series {
                    label: "series A".into(),
                    points: a,
                },
                Series {
                    label: "series B".into(),
                    points: b,
                },
            ],
        }
    }

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    /// The points of every polyline stroked in `c`.
    fn polylines(doc: &roxmltree::Document<'_>, c: RGBColor) -> Vec<Vec<(i32, i32)>> {
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(&hex(c)))
            .map(|n| {
                n.attribute("points")
                    .unwrap_or("")
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').expect("x,y");
                        (x.parse().expect("x"), y.parse().expect("y"))
                    })
                    .collect()
            })
            .collect()
    }

    fn circles(doc: &roxmltree::Document<'_>, c: RGBColor) -> usize {
        doc.descendants()
            .filter(|n| n.has_tag_name("circle") && n.attribute("fill") == Some(&hex(c)))
            .count()
    }

    fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_owned())
            .collect()
    }

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).expect("the SVG is well-formed XML")
    }

    #[test]
    fn svg_has_title_labels_and_every_sample() {
        let svg = render_svg(&two_series()).unwrap();
        let doc = parse(&svg);
        let root = doc.root_element();
        assert!(root.has_tag_name("svg"));
        assert_eq!(root.attribute("width"), Some("1200"));
        assert_eq!(root.attribute("height"), Some("800"));
        let texts = texts(&doc);
        assert!(texts.iter().any(|t| t == "Test plot <A & B>"), "{texts:?}");
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("series A: 47 of 50 arrived")),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("series B: 80 of 80 arrived")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("ticks at the bottom")),
            "{texts:?}"
        );

        let (a, b) = (polylines(&doc, PALETTE[0]), polylines(&doc, PALETTE[1]));
        let lens = |p: &[Vec<(i32, i32)>]| p.iter().map(Vec::len).collect::<Vec<_>>();
        // Time panel: one point per arrived packet; CDF: two per sample; histogram outline.
        let hist = 2 * HISTOGRAM_BINS + 2;
        for (lines, n) in [(&a, 47), (&b, 80)] {
            let l = lens(lines);
            for want in [n, 2 * n, hist] {
                assert_eq!(
                    l.iter().filter(|&&x| x == want).count(),
                    1,
                    "{want} in {l:?}"
                );
            }
        }
        // Legend swatch for each; A also has one tick per lost packet.
        assert_eq!(lens(&a).iter().filter(|&&x| x == 2).count(), 1 + 3);
        assert_eq!(lens(&b).iter().filter(|&&x| x == 2).count(), 1);
        // Fewer than MARKERS_BELOW samples: a dot on each.
        assert_eq!(circles(&doc, PALETTE[0]), 47);
        assert_eq!(circles(&doc, PALETTE[1]), 80);
        // Nothing drawn in a colour no series has.
        assert!(polylines(&doc, PALETTE[2]).is_empty());

        // A's delays (10 ms) are drawn below B's (20 ms): larger y in pixels.
        let line = |lines: &[Vec<(i32, i32)>], n: usize| {
            lines.iter().find(|l| l.len() == n).cloned().unwrap()
        };
        let (la, lb) = (line(&a, 47), line(&b, 80));
        let top_a = la.iter().map(|p| p.1).min().unwrap();
        let bottom_b = lb.iter().map(|p| p.1).max().unwrap();
        assert!(top_a > bottom_b, "A from y {top_a}, B to y {bottom_b}");
        // In time order, left to right.
        assert!(la.windows(2).all(|w| w[0].0 <= w[1].0));
        // The loss ticks are below every delay.
        let ticks: Vec<_> = a
            .iter()
            .filter(|l| l.len() == 2 && l[0].0 == l[1].0)
            .collect();
        assert_eq!(ticks.len(), 3);
        let lowest = la.iter().map(|p| p.1).max().unwrap();
        assert!(ticks.iter().all(|t| t[0].1.min(t[1].1) > lowest));
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = dec.read_info().expect("PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("PNG data");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// Pixels of exactly colour `c` in the rectangle [x0, x1) × [y0, y1).
    fn count(img: &[u8], c: RGBColor, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = ((y * WIDTH + x) * 3) as usize;
                if img[i..i + 3] == [c.0, c.1, c.2] {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn png_decodes_with_each_series_in_its_colour() {
        let bytes = render_png(&two_series()).unwrap();
        let (w, h, img) = decode(&bytes);
        assert_eq!((w, h), (WIDTH, HEIGHT));
        // Left part of the time panel (the legend is at its upper right), the CDF panel, the
        // histogram panel: each shows both series.
        let panels = [
            ((80, 550), (60, 420)),
            ((0, 600), (470, 800)),
            ((600, 1200), (470, 800)),
        ];
        for (xs, ys) in panels {
            for c in &PALETTE[..2] {
                let n = count(&img, *c, xs, ys);
                assert!(n > 100, "{n} pixels of {} in {xs:?} × {ys:?}", hex(*c));
            }
        }
        assert_eq!(count(&img, PALETTE[2], (0, WIDTH), (0, HEIGHT)), 0);
        // Mostly white background.
        let white = count(&img, WHITE, (0, WIDTH), (0, HEIGHT));
        assert!(white > (WIDTH * HEIGHT / 2) as usize, "{white}");
    }

    #[test]
    fn render_picks_the_format_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let data = two_series();
        let svg = dir.path().join("out.svg");
        render(&data, &svg).unwrap();
        parse(&std::fs::read_to_string(&svg).unwrap());
        let png_path = dir.path().join("OUT.PNG");
        render(&data, &png_path).unwrap();
        let bytes = std::fs::read(&png_path).unwrap();
        assert_eq!(decode(&bytes).0, WIDTH);

        for name in ["out.jpg", "out", "out.svg.txt"] {
            let p = dir.path().join(name);
            let e = render(&data, &p).unwrap_err();
            assert!(
                matches!(&e, PlotError::UnknownFormat(q) if *q == p),
                "{e:?}"
            );
            assert!(e.to_string().contains(".svg or .png"), "{e}");
            assert!(!p.exists());
        }
        let e = render(&data, &dir.path().join("no/such/dir/out.svg")).unwrap_err();
        assert!(matches!(e, PlotError::Write { .. }), "{e:?}");
    }

    /// Renders both formats; the SVG parses and the PNG decodes.
    fn renders(data: &PlotData) -> String {
        let svg = render_svg(data).unwrap();
        parse(&svg);
        let (w, h, _) = decode(&render_png(data).unwrap());
        assert_eq!((w, h), (WIDTH, HEIGHT));
        svg
    }

    fn one(points: Vec<(f64, Option<f64>)>) -> PlotData {
        PlotData {
            title: "edge".into(),
            series: vec![Series {
                label: "only".into(),
                points,
            }],
        }
    }

    #[test]
    fn edge_cases_render() {
        // No series, or a series without points.
        let svg = renders(&PlotData {
            title: "nothing".into(),
            series: vec![],
        });
        assert!(texts(&parse(&svg)).iter().any(|t| t == "no samples"));
        renders(&one(vec![]));

        // All lost: ticks, no delays.
        let svg = renders(&one((0..10).map(|i| (f64::from(i), None)).collect()));
        let doc = parse(&svg);
        assert!(texts(&doc).iter().any(|t| t.contains("no packet arrived")));
        assert!(
            texts(&doc)
                .iter()
                .any(|t| t.starts_with("only: 0 of 10 arrived"))
        );
        let ticks = polylines(&doc, PALETTE[0]);
        assert_eq!(ticks.iter().filter(|l| l.len() == 2).count(), 10 + 1);

        // A single point (at time 0: a degenerate time range too).
        let svg = renders(&one(vec![(0.0, Some(5.0))]));
        let doc = parse(&svg);
        assert_eq!(circles(&doc, PALETTE[0]), 1);
        assert!(
            texts(&doc)
                .iter()
                .any(|t| t.contains("5.000 / 5.000 / 5.000"))
        );

        // Negative delays (unsynchronized clocks), NaN and infinities are left out.
        let svg = renders(&one(vec![
            (0.0, Some(-3.0)),
            (1.0, Some(-2.5)),
            (f64::NAN, Some(1.0)),
            (2.0, Some(f64::INFINITY)),
            (3.0, Some(f64::NAN)),
        ]));
        assert!(
            texts(&parse(&svg))
                .iter()
                .any(|t| t.starts_with("only: 2 of 2 arrived"))
        );

        // Absurd values: left out beyond LIMIT, and the axes stay finite up to it.
        let svg = renders(&one(vec![
            (0.0, Some(1e300)),
            (1.0, Some(-1e300)),
            (2.0, Some(f64::MAX)),
            (3.0, Some(LIMIT)),
            (4.0, Some(-LIMIT)),
            (5.0, Some(f64::MIN_POSITIVE)),
            (1e300, Some(1.0)),
            (-LIMIT, Some(2.0)),
            (LIMIT, None),
        ]));
        assert!(
            texts(&parse(&svg))
                .iter()
                .any(|t| t.starts_with("only: 4 of 5 arrived")),
        );
        // Times too close together for a range.
        renders(&one(vec![(1.0, Some(1.0)), (1.0 + 1e-12, Some(2.0))]));
        renders(&one(vec![
            (1e12, Some(1.0)),
            (1e12 + 1e-4, Some(1.0 + 1e-12)),
        ]));

        // Many series: the palette wraps.
        let many = PlotData {
            title: "many".into(),
            series: (0..9)
                .map(|i| Series {
                    label: format!("s{i}"),
                    points: vec![(0.0, Some(f64::from(i))), (1.0, Some(f64::from(i) + 0.5))],
                })
                .collect(),
        };
        renders(&many);
    }

    #[test]
    fn outliers_are_clipped_to_the_edge_and_counted() {
        let mut points: Vec<_> = (0..1000)
            .map(|i| (f64::from(i) * 0.01, Some(10.0 + f64::from(i % 10) * 0.01)))
            .collect();
        points[500].1 = Some(5000.0);
        points[600].1 = Some(1e9);
        let data = one(points);
        let svg = renders(&data);
        let doc = parse(&svg);
        assert!(
            texts(&doc)
                .iter()
                .any(|t| t.starts_with("delay over time; 2 above ")),
            "{:?}",
            texts(&doc)
        );
        // The range: the 998 ordinary samples fill most of it.
        let mut sorted: Vec<f64> = data.series[0].points.iter().filter_map(|p| p.1).collect();
        sorted.sort_by(f64::total_cmp);
        let r = DelayRange::of(&sorted).unwrap();
        assert!(r.lo <= 10.0 && r.lo > 9.0, "{r:?}");
        assert!(r.hi >= 10.09 && r.hi < 12.0, "{r:?}");
        // The outliers are drawn on the top edge: the line's highest points are two samples.
        let line = polylines(&doc, PALETTE[0])
            .into_iter()
            .find(|l| l.len() == 1000)
            .unwrap();
        let top = line.iter().map(|p| p.1).min().unwrap();
        assert_eq!(line.iter().filter(|p| p.1 == top).count(), 2);
        assert_eq!(line[500].1, top);
        assert_eq!(line[600].1, top);

        // Without outliers the whole range shows.
        let r = DelayRange::of(&[1.0, 2.0, 100.0]).unwrap();
        assert!(r.lo <= 1.0 && r.hi >= 100.0, "{r:?}");
        // One value: a range around it.
        let r = DelayRange::of(&[5.0]).unwrap();
        assert!(r.lo < 5.0 && r.hi > 5.0, "{r:?}");
        assert_eq!(DelayRange::of(&[]), None);
    }

    #[test]
    fn axes_must_be_finite_and_not_empty() {
        assert_eq!(axis(1.0, 2.0).unwrap(), 1.0..2.0);
        for (lo, hi) in [
            (1.0, 1.0),
            (2.0, 1.0),
            (0.0, f64::INFINITY),
            (f64::NAN, 1.0),
        ] {
            assert!(
                matches!(axis(lo, hi), Err(PlotError::Draw(_))),
                "{lo}..{hi}"
            );
        }
    }

    #[test]
    fn cdf_and_histogram_values() {
        let r = DelayRange { lo: 0.0, hi: 4.0 };
        assert_eq!(
            cdf_points(&[1.0, 2.0, 3.0, 9.0], r),
            [
                (1.0, 0.0),
                (1.0, 0.25),
                (2.0, 0.25),
                (2.0, 0.5),
                (3.0, 0.5),
                (3.0, 0.75),
                (4.0, 0.75),
                (4.0, 1.0)
            ]
        );
        let many: Vec<f64> = (0..10_000).map(f64::from).collect();
        let big = DelayRange {
            lo: 0.0,
            hi: 10_000.0,
        };
        let c = cdf_points(&many, big);
        assert_eq!(c.len(), CDF_POINTS + 1);
        assert_eq!(c[0], (0.0, 1e-4));
        assert_eq!(c[CDF_POINTS], (9999.0, 1.0));
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));

        let h = histogram(&[0.0, 0.05, 1.0, 3.99, 4.0, 100.0], r);
        assert_eq!(h.len(), HISTOGRAM_BINS);
        let per = 1.0 / 6.0;
        assert_eq!(h[0], 2.0 * per);
        assert_eq!(h[10], per);
        assert_eq!(h[HISTOGRAM_BINS - 1], 3.0 * per);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn hundred_thousand_points_render_quickly() {
        let n = 100_000u32;
        let pts = |base: f64| -> Vec<(f64, Option<f64>)> {
            (0..n)
                .map(|i| {
                    let t = f64::from(i) * 0.001;
                    let d = (i % 997 != 0).then(|| base + f64::from(i % 101) * 0.01);
                    (t, d)
                })
                .collect()
        };
        let data = PlotData {
            title: "100k".into(),
            series: vec![
                Series {
                    label: "to".into(),
                    points: pts(5.0),
                },
                Series {
                    label: "from".into(),
                    points: pts(7.0),
                },
            ],
        };
        let start = Instant::now();
        let svg = render_svg(&data).unwrap();
        let svg_time = start.elapsed();
        let start = Instant::now();
        let png_bytes = render_png(&data).unwrap();
        let png_time = start.elapsed();
        eprintln!(
            "2 × 100k points: SVG {svg_time:?} ({} bytes), PNG {png_time:?} ({} bytes)",
            svg.len(),
            png_bytes.len()
        );
        let received = (n - n.div_ceil(997)) as usize;
        let doc = parse(&svg);
        let lines = polylines(&doc, PALETTE[0]);
        assert!(lines.iter().any(|l| l.len() == received));
        assert!(lines.iter().any(|l| l.len() == CDF_POINTS + 1));
        // Loss ticks merged per pixel column: fewer than the 101 losses if they collide,
        // never more than the plot's width.
        let ticks = lines.iter().filter(|l| l.len() == 2).count() - 1;
        assert!(ticks > 50 && ticks <= 101, "{ticks}");
        assert_eq!(decode(&png_bytes).0, WIDTH);
        // Generous, for unoptimized builds on a slow machine; see the report for real numbers.
        assert!(svg_time < Duration::from_secs(20), "{svg_time:?}");
        assert!(png_time < Duration::from_secs(20), "{png_time:?}");
    }

    fn ts(base: Timestamp, ms: f64) -> Timestamp {
        base + Duration::from_secs_f64(ms / 1e3)
    }

    fn twping_result(synchronized: bool) -> TwpingResult {
        let base = Timestamp::from_unix(Duration::from_secs(1_700_000_000));
        let e = ErrorEstimate::from_duration(synchronized, Duration::from_micros(10));
        let sent: Vec<Sent> = (0..4)
            .map(|i| Sent {
                seq: i,
                time: ts(base, f64::from(i) * 100.0),
                error: e,
                kernel_time: None,
            })
            .collect();
        // Packet 0: T2 = T1 + 3 ms, T3 = T2 + 1 ms, T4 = T3 + 4 ms: round trip 7 ms.
        // Packet 1: lost. Packet 2: 2 + 0.5 + 2 (round trip 4 ms), and a duplicate that
        // arrives later. Packet 3: 1 + 10 + 1.5 (round trip 2.5 ms).
        let reply = |seq: u32, fwd: f64, hold: f64, back: f64, extra: f64| {
            let t1ms = f64::from(seq) * 100.0;
            let t1 = ts(base, t1ms);
            Reply {
                reflector: ReflectorRepr {
                    seq: 0,
                    timestamp: ts(base, t1ms + fwd + hold),
                    error_estimate: e,
                    receive_timestamp: ts(base, t1ms + fwd),
                    sender_seq: seq,
                    sender_timestamp: t1,
                    sender_error_estimate: e,
                    sender_ttl: 255,
                },
                recv_time: ts(base, t1ms + fwd + hold + back + extra),
                recv_error: e,
                ttl: Some(255),
            }
        };
        TwpingResult {
            mode: SecurityMode::Open,
            sid: [0; 16],
            local: SocketAddr::from(([192, 0, 2, 1], 5000)),
            reflector: SocketAddr::from(([192, 0, 2, 2], 6000)),
            padding: 0,
            sent,
            replies: vec![
                reply(0, 3.0, 1.0, 4.0, 0.0),
                reply(3, 1.0, 10.0, 1.5, 0.0),
                reply(2, 2.0, 0.5, 2.0, 0.0),
                reply(2, 2.0, 0.5, 2.0, 50.0),
            ],
            bad_replies: 0,
            setup_time: Duration::ZERO,
            extensions: Modes(0),
            reflect_mismatches: 0,
            kernel_tx_stamps: 0,
            report: ippm_stats::two_way(&[], &[]),
            first_sent: None,
            last_sent: None,
        }
    }

    fn close(got: &[(f64, Option<f64>)], want: &[(f64, Option<f64>)]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g.0 - w.0).abs() < 1e-6, "{got:?} vs {want:?}");
            match (g.1, w.1) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4, "{got:?} vs {want:?}"),
                (None, None) => {}
                _ => panic!("{got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn twping_series() {
        let d = from_twping(&twping_result(false));
        assert_eq!(d.series.len(), 1);
        assert_eq!(d.series[0].label, "round trip");
        assert!(d.title.contains("192.0.2.2:6000"), "{}", d.title);
        close(
            &d.series[0].points,
            &[
                (0.0, Some(7.0)),
                (0.1, None),
                (0.2, Some(4.0)),
                (0.3, Some(2.5)),
            ],
        );

        let d = from_twping(&twping_result(true));
        let labels: Vec<_> = d.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["round trip", "to 192.0.2.2", "from 192.0.2.2"]);
        close(
            &d.series[1].points,
            &[
                (0.0, Some(3.0)),
                (0.1, None),
                (0.2, Some(2.0)),
                (0.3, Some(1.0)),
            ],
        );
        close(
            &d.series[2].points,
            &[
                (0.0, Some(4.0)),
                (0.1, None),
                (0.2, Some(2.0)),
                (0.3, Some(1.5)),
            ],
        );
        renders(&d);

        // Nothing sent: an empty round-trip series, which still renders.
        let mut r = twping_result(true);
        r.sent.clear();
        r.replies.clear();
        let d = from_twping(&r);
        assert_eq!(d.series.len(), 1);
        assert!(d.series[0].points.is_empty());
        renders(&d);
    }

    #[test]
    fn owping_series() {
        let base = Timestamp::from_unix(Duration::from_secs(1_700_000_000));
        let e = ErrorEstimate::from_duration(true, Duration::from_micros(10));
        let rec = |seq: u32, send_ms: f64, delay_ms: Option<f64>| DataRecord {
            seq,
            send_error: e,
            recv_error: e,
            send_time: ts(base, send_ms),
            recv_time: delay_ms.map_or(Timestamp::ZERO, |d| ts(base, send_ms + d)),
            ttl: 255,
        };
        let way = |records| OneWay {
            sid: [0; 16],
            next_seqno: 4,
            skip_ranges: vec![],
            records,
            finished: true,
            kernel_tx: Vec::new(),
            start_time: Timestamp::ZERO,
            slots: vec![],
        };
        let r = OwpingResult {
            mode: SecurityMode::Authenticated,
            // Arrival order, with a duplicate of 1 (its later copy is ignored).
            to_server: Some(way(vec![
                rec(0, 1000.0, Some(5.0)),
                rec(2, 1200.0, Some(1.0)),
                rec(1, 1100.0, Some(30.0)),
                rec(1, 1100.0, Some(90.0)),
                rec(3, 1300.0, None),
            ])),
            from_server: None,
            setup_time: Duration::ZERO,
        };
        let d = from_owping(&r);
        assert_eq!(d.series.len(), 1);
        assert_eq!(d.series[0].label, "to server");
        close(
            &d.series[0].points,
            &[
                (0.0, Some(5.0)),
                (0.1, Some(30.0)),
                (0.2, Some(1.0)),
                (0.3, None),
            ],
        );
        renders(&d);

        let r = OwpingResult {
            from_server: Some(way(vec![rec(0, 0.0, None)])),
            ..r
        };
        let d = from_owping(&r);
        let labels: Vec<_> = d.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["to server", "from server"]);
        close(&d.series[1].points, &[(0.0, None)]);
        renders(&d);
    }
}
