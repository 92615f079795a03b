//! SVG latency-by-percentile plots, in the style of HdrHistogram's plotter.
//!
//! - x: `1/(1-percentile)` on a log scale, labelled at 0%, 50%, 90%, 99%, 99.9%, 99.99%, ...
//!   (always at least up to 99.99%, further if the sample count reaches further);
//! - y: latency on a log10 scale, labelled at powers of ten (`1 µs`, `10 µs`, `100 µs`, `1 ms`,
//!   ...), from the decade at or below the smallest value to the decade above the largest.
//!   Values below [`FLOOR_US`] (a histogram may hold 1 ns) are drawn at the floor, since a log
//!   axis has no zero;
//! - one curve per histogram, coloured from a fixed palette, named in the legend with its
//!   sample count; a histogram without samples draws no curve.
use plotters::prelude::*;

use crate::hist::{Hgrm, Latency};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Smallest latency drawn (µs): lower values are clamped to it on the log axis.
pub const FLOOR_US: f64 = 0.1;

/// The x axis always reaches this far (`1/(1-0.9999)`, the 99.99% label).
const MIN_XMAX: f64 = 10_000.0;

/// The x-axis label of `x = 1/(1-p)`: 1 -> 0%, 2 -> 50%, 10 -> 90%, 100 -> 99%, ...
pub fn percentile_label(x: f64) -> String {
    if x <= 1.0 {
        return "0%".into();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    let nines = x.log10().round() as i32;
    if nines <= 2 {
        format!("{p:.0}%")
    } else {
        format!("{:.*}%", (nines - 2) as usize, p)
    }
}

/// The y-axis label of a latency in µs, in the largest unit that keeps it at least 1
/// (`0.1 µs`, `1 µs`, `100 µs`, `1 ms`, `10 s`): used for the powers of ten the axis marks.
pub fn latency_label(us: f64) -> String {
    let (v, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    // Up to 3 decimals, trailing zeros trimmed (powers of ten come out as 1, 10, 100, 0.1).
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} {unit}")
}

/// One curve: a legend name, its sample count and its points (x = 1/(1-p), y = µs).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend name (`INVITE→200`, `xdp`).
    pub label: String,
    /// Samples behind the curve.
    pub count: u64,
    /// Points in percentile order; empty for an empty histogram.
    pub points: Vec<(f64, f64)>,
}

impl Curve {
    /// The curve of a histogram, labelled with its human label.
    pub fn from_latency(l: &Latency) -> Self {
        Curve {
            label: l.label.into(),
            count: l.hist.len(),
            points: points(l),
        }
    }

    /// The curve of a `.hgrm` file read back (the same points [`points`] gives for the
    /// histogram that wrote it, to the file's 0.001 µs precision).
    pub fn from_hgrm(label: &str, h: &Hgrm) -> Self {
        let mut pts: Vec<(f64, f64)> = h
            .lines
            .iter()
            .filter(|l| l.percentile < 1.0)
            .map(|l| (1.0 / (1.0 - l.percentile), l.value.max(FLOOR_US)))
            .collect();
        if h.total_count > 0 {
            push_max(&mut pts, h.total_count, h.max);
        }
        Curve {
            label: label.into(),
            count: h.total_count,
            points: pts,
        }
    }
}

/// Ends a curve with its maximum at `x = count` (the last 'nines' the count supports, at
/// least 10), or at the last point's x if the iteration already went further, so that the
/// curve never turns back left.
fn push_max(pts: &mut Vec<(f64, f64)>, count: u64, max_us: f64) {
    let last = pts.last().map_or(0.0, |p| p.0);
    pts.push(((count as f64).max(10.0).max(last), max_us.max(FLOOR_US)));
}

/// Points (x = 1/(1-p), y = µs, at least [`FLOOR_US`]) of a histogram, from its percentile
/// iteration (5 steps per half distance, as in its `.hgrm`), ending with the maximum.
pub fn points(l: &Latency) -> Vec<(f64, f64)> {
    let h = &l.hist;
    if h.is_empty() {
        return Vec::new();
    }
    let mut v = Vec::new();
    for it in h.iter_quantiles(5) {
        let q = it.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        let us = it.value_iterated_to() as f64 / 1000.0;
        v.push((1.0 / (1.0 - q), us.max(FLOOR_US)));
    }
    push_max(&mut v, h.len(), h.max() as f64 / 1000.0);
    v
}

/// Renders `hists` (one curve each) into an SVG document titled `title`.
pub fn svg(title: &str, hists: &[&Latency]) -> Result<String, String> {
    let curves: Vec<Curve> = hists.iter().map(|h| Curve::from_latency(h)).collect();
    svg_curves(title, &curves)
}

/// Powers of ten from `10^lo` to `10^hi`, exactly as parsed from their decimal form (so that
/// `0.1` is `0.1`, not `0.1000000000000000055`).
fn decades(lo: i32, hi: i32) -> Vec<f64> {
    (lo..=hi)
        .map(|k| format!("1e{k}").parse().unwrap_or(f64::NAN))
        .collect()
}

/// Renders `curves` into an SVG document titled `title` (see the module documentation).
pub fn svg_curves(title: &str, curves: &[Curve]) -> Result<String, String> {
    let all = || curves.iter().flat_map(|c| c.points.iter().copied());
    // x: from 0% to the decade at or above the last point, at least 99.99%.
    let xmax = all().map(|p| p.0).fold(MIN_XMAX, f64::max);
    let xdec = xmax.log10().ceil() as i32;
    let xmax = 10f64.powi(xdec);
    let mut xkeys = vec![1.0, 2.0];
    xkeys.extend(decades(1, xdec));
    // y: the decade at or below the smallest value to the decade above the largest.
    let ymin = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let ymax = all().map(|p| p.1).fold(0.0f64, f64::max);
    let (ylo, yhi) = if ymax > 0.0 {
        let lo = ymin.max(FLOOR_US).log10().floor() as i32;
        let hi = ymax.max(FLOOR_US).log10().floor() as i32 + 1;
        (lo, hi)
    } else {
        (0, 3)
    };
    let ykeys = decades(ylo, yhi);
    let ylight: Vec<f64> = ykeys
        .iter()
        .take(ykeys.len() - 1)
        .flat_map(|d| (2..10).map(move |m| d * f64::from(m)))
        .collect();
    let (y0, y1) = (ykeys[0], ykeys[ykeys.len() - 1]);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            // Room for the last percentile label, centred on the right edge.
            .margin_right(45)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (1.0f64..xmax)
                    .log_scale()
                    .with_key_points(xkeys.clone())
                    .with_light_points(xkeys),
                (y0..y1)
                    .log_scale()
                    .with_key_points(ykeys)
                    .with_light_points(ylight),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("Percentile (log scale of 1/(1-p))")
            .y_desc("Latency (log scale)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| latency_label(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, c) in curves.iter().enumerate() {
            if c.points.is_empty() {
                continue;
            }
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(format!("{} (n={})", c.label, c.count))
                // A filled swatch: the coloured polylines in the document are the curves only.
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 3), (x + 20, y + 3)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10000.0), "99.99%");
        assert_eq!(latency_label(0.1), "0.1 µs");
        assert_eq!(latency_label(1.0), "1 µs");
        assert_eq!(latency_label(100.0), "100 µs");
        assert_eq!(latency_label(1000.0), "1 ms");
        assert_eq!(latency_label(100_000.0), "100 ms");
        assert_eq!(latency_label(10_000_000.0), "10 s");
    }
}
