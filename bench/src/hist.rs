//! Latency histograms (HdrHistogram) and their text percentile format (`.hgrm`).
//!
//! Values are recorded in nanoseconds and written in microseconds, in the format of
//! HdrHistogram's `outputPercentileDistribution` that its plotter reads: a header line, one line
//! per percentile step (`Value Percentile TotalCount 1/(1-Percentile)`) and the `#[Mean ...]`,
//! `#[Max ...]`, `#[Buckets ...]` footer.
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram tracks: 10 minutes (larger values saturate).
pub const MAX_TRACKABLE_NS: u64 = 600_000_000_000;
/// Significant digits kept.
pub const SIGFIG: u8 = 3;
/// Nanoseconds per written unit (µs).
pub const NS_PER_US: f64 = 1000.0;

/// A named latency histogram.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Short name used in tables, JSON keys and file names (`invite_200`).
    pub name: &'static str,
    /// Human label (`INVITE→200`).
    pub label: &'static str,
    /// Recorded values in nanoseconds.
    pub hist: Histogram<u64>,
}

impl Latency {
    /// An empty histogram (allocates once, at set-up).
    pub fn new(name: &'static str, label: &'static str) -> Self {
        Latency {
            name,
            label,
            hist: Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, SIGFIG)
                .expect("static histogram bounds are valid"),
        }
    }

    /// Records one latency; values beyond the range saturate, zero counts as 1 ns.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
    }

    /// The summary numbers (µs) for tables and JSON.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.hist;
        let us = |ns: u64| ns as f64 / NS_PER_US;
        let q = |x: f64| {
            if h.is_empty() {
                0.0
            } else {
                us(h.value_at_quantile(x))
            }
        };
        LatencySummary {
            count: h.len(),
            min_us: if h.is_empty() { 0.0 } else { us(h.min()) },
            mean_us: if h.is_empty() {
                0.0
            } else {
                h.mean() / NS_PER_US
            },
            stdev_us: if h.is_empty() {
                0.0
            } else {
                h.stdev() / NS_PER_US
            },
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: if h.is_empty() { 0.0 } else { us(h.max()) },
        }
    }

    /// The `.hgrm` text (percentile distribution, 5 ticks per half distance, values in µs).
    pub fn hgrm(&self) -> String {
        write_hgrm(&self.hist, 5, NS_PER_US)
    }

    /// Adds every sample of `o` (another generator thread's histogram of the same name).
    /// Both have the same bounds ([`Latency::new`]), so this cannot fail; values saturate.
    pub fn merge(&mut self, o: &Latency) {
        let _ = self.hist.add(&o.hist);
    }
}

/// Latency numbers in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Smallest.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Standard deviation.
    pub stdev_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// 99.99th percentile.
    pub p9999_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// Writes `h` like HdrHistogram's `outputPercentileDistribution(out, ticks, scale)`.
pub fn write_hgrm(h: &Histogram<u64>, ticks_per_half_distance: u32, scale: f64) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(ticks_per_half_distance) {
            total += v.count_since_last_iteration();
            let p = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / scale;
            if p < 1.0 {
                let _ = writeln!(
                    s,
                    "{:12.3} {:2.12} {:10} {:14.2}",
                    value,
                    p,
                    total,
                    1.0 / (1.0 - p)
                );
            } else {
                let _ = writeln!(s, "{:12.3} {:2.12} {:10}", value, p, total);
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / scale, h.stdev() / scale, h.max() as f64 / scale)
    };
    let _ = writeln!(s, "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]");
    let _ = writeln!(
        s,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    );
    s
}

/// Sub-bucket count HdrHistogram uses for `sigfig` significant digits.
fn sub_buckets(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    largest.next_power_of_two()
}

/// One data line of a `.hgrm` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmLine {
    /// Value (µs).
    pub value: f64,
    /// Percentile as a fraction 0..=1.
    pub percentile: f64,
    /// Samples at or below the value.
    pub total_count: u64,
}

/// A `.hgrm` file read back: data lines and the footer numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Hgrm {
    /// Data lines in order.
    pub lines: Vec<HgrmLine>,
    /// `#[Mean = ...]`.
    pub mean: f64,
    /// `#[Max = ...]`.
    pub max: f64,
    /// `Total count`.
    pub total_count: u64,
}

/// Parses `.hgrm` text (the subset [`write_hgrm`] writes; also HdrHistogram's own output).
pub fn parse_hgrm(text: &str) -> Result<Hgrm, String> {
    let mut it = text.lines();
    let header = it.next().ok_or("empty file")?;
    let cols: Vec<&str> = header.split_whitespace().collect();
    if cols != ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"] {
        return Err(format!("bad header {header:?}"));
    }
    let mut out = Hgrm {
        lines: Vec::new(),
        mean: f64::NAN,
        max: f64::NAN,
        total_count: 0,
    };
    let mut footer_total = None;
    for line in it {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(rest) = t.strip_prefix("#[") {
            let rest = rest.trim_end_matches(']');
            for kv in rest.split(',') {
                let (k, v) = kv.split_once('=').ok_or(format!("bad footer {t:?}"))?;
                let v = v.trim();
                match k.trim() {
                    "Mean" => out.mean = v.parse().map_err(|_| format!("bad mean {v:?}"))?,
                    "Max" => out.max = v.parse().map_err(|_| format!("bad max {v:?}"))?,
                    "Total count" => {
                        footer_total = Some(v.parse().map_err(|_| format!("bad count {v:?}"))?)
                    }
                    _ => {}
                }
            }
            continue;
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        if f.len() < 3 || f.len() > 4 {
            return Err(format!("bad line {t:?}"));
        }
        let bad = || format!("bad number in {t:?}");
        out.lines.push(HgrmLine {
            value: f[0].parse().map_err(|_| bad())?,
            percentile: f[1].parse().map_err(|_| bad())?,
            total_count: f[2].parse().map_err(|_| bad())?,
        });
    }
    out.total_count = footer_total.ok_or("no `#[Max = ..., Total count = ...]` footer")?;
    if out.mean.is_nan() {
        return Err("no `#[Mean = ...]` footer".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn merged_histograms_hold_both_sets_of_samples() {
        let mut a = Latency::new("x", "x");
        let mut b = Latency::new("x", "x");
        for v in [1_000, 2_000] {
            a.record(v);
        }
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.hist.len(), 3);
        assert_eq!(a.summary().max_us.round(), 1000.0);
        assert_eq!(a.summary().min_us.round(), 1.0);
    }

    use super::*;

    fn sample() -> Latency {
        let mut l = Latency::new("invite_200", "INVITE→200");
        // 1..=10000 µs, plus one outlier.
        for us in 1..=10_000u64 {
            l.record(us * 1000);
        }
        l.record(250_000_000);
        l
    }

    #[test]
    fn hgrm_parses_back_monotone_with_footer() {
        let l = sample();
        let text = l.hgrm();
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        let h = parse_hgrm(&text).unwrap();
        assert!(h.lines.len() > 20);
        for w in h.lines.windows(2) {
            assert!(w[1].value >= w[0].value, "{w:?}");
            assert!(w[1].percentile >= w[0].percentile, "{w:?}");
            assert!(w[1].total_count >= w[0].total_count, "{w:?}");
        }
        let last = h.lines.last().unwrap();
        assert_eq!(last.percentile, 1.0);
        assert_eq!(last.total_count, 10_001);
        assert_eq!(h.total_count, 10_001);
        assert!((h.max - 250_000.0).abs() / 250_000.0 < 0.001, "{}", h.max);
        assert!(h.mean > 5000.0 && h.mean < 5100.0, "{}", h.mean);
        assert!(text.contains("#[Buckets = "));
        assert!(text.contains("SubBuckets     =         2048]"));
        // The last line has no 1/(1-p) column (it would be infinite).
        let last_line = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert_eq!(last_line.split_whitespace().count(), 3);
        // Median close to 5 ms.
        let med = h.lines.iter().find(|l| l.percentile >= 0.5).unwrap().value;
        assert!((med - 5000.0).abs() < 10.0, "{med}");
    }

    #[test]
    fn empty_histogram_still_has_header_and_footer() {
        let l = Latency::new("bye_200", "BYE→200");
        let h = parse_hgrm(&l.hgrm()).unwrap();
        assert!(h.lines.is_empty());
        assert_eq!(h.total_count, 0);
        assert_eq!(l.summary().count, 0);
    }

    #[test]
    fn summary_in_microseconds() {
        let s = sample().summary();
        assert_eq!(s.count, 10_001);
        assert!((s.p50_us - 5000.0).abs() < 10.0);
        assert!((s.p99_us - 9900.0).abs() < 20.0);
        assert!(s.max_us > 249_000.0);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse_hgrm("").is_err());
        assert!(parse_hgrm("Value Percentile\n").is_err());
        let no_footer =
            "       Value     Percentile TotalCount 1/(1-Percentile)\n\n 1.0 0.5 1 2.0\n";
        assert!(parse_hgrm(no_footer).is_err());
    }
}
