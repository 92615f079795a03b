//! SVG latency-by-percentile plot, in the style of HdrHistogram's plotter: the x axis is
//! `1/(1-percentile)` on a log scale, labelled 0%, 90%, 99%, 99.9%, ...
use plotters::prelude::*;

use crate::hist::Latency;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn percentile_label(x: f64) -> String {
    // x = 1/(1-p): 1 -> 0%, 10 -> 90%, 100 -> 99%, ...
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

/// Points (x = 1/(1-p), y = µs) of a histogram, from its percentile iteration.
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
        v.push((1.0 / (1.0 - q), it.value_iterated_to() as f64 / 1000.0));
    }
    // The maximum, at the last 'nines' decade the count supports.
    let xmax = (h.len() as f64).max(10.0);
    v.push((xmax, h.max() as f64 / 1000.0));
    v
}

/// Renders `hists` into an SVG document.
pub fn svg(title: &str, hists: &[&Latency]) -> Result<String, String> {
    let series: Vec<(&Latency, Vec<(f64, f64)>)> = hists.iter().map(|h| (*h, points(h))).collect();
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(100.0f64, f64::max);
    let xmax = 10f64.powf(xmax.log10().ceil());
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((1.0f64..xmax).log_scale(), 0.0f64..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("Percentile")
            .y_desc("Latency (µs)")
            .x_label_formatter(&|x| percentile_label(*x))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (h, pts)) in series.iter().enumerate() {
            if pts.is_empty() {
                continue;
            }
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(format!("{} (n={})", h.label, h.hist.len()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
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
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10000.0), "99.99%");
    }

    #[test]
    fn renders_svg() {
        let mut a = Latency::new("invite_200", "INVITE→200");
        for i in 1..5000 {
            a.record(i * 1000);
        }
        let b = Latency::new("bye_200", "BYE→200");
        let s = svg("test", &[&a, &b]).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..50]);
        assert!(s.contains("INVITE→200"));
        assert!(s.contains("99.9%"));
    }
}
