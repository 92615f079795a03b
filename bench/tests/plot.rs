//! The latency plot as an SVG document: a log latency axis labelled at powers of ten,
//! percentile labels, one curve and legend entry per histogram, the title given; and the
//! `.hgrm` files it can be drawn from read back to the same curve.
use bench::{
    hist::{parse_hgrm, Latency},
    plot::{self, Curve},
};

/// Two histograms spanning 5 µs to 50 ms.
fn synthetic() -> (Latency, Latency) {
    let mut a = Latency::new("invite_200", "INVITE→200");
    let mut b = Latency::new("bye_200", "BYE→200");
    // a: 5 µs .. 5 ms, geometric; b: 50 µs .. 50 ms.
    for i in 0..20_000u32 {
        let f = 1000f64.powf(f64::from(i) / 19_999.0);
        a.record((5_000.0 * f) as u64);
        b.record((50_000.0 * f) as u64);
    }
    (a, b)
}

/// The text content of every `<text>` element, unescaped enough for these labels.
fn texts(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find("<text") {
        rest = &rest[i..];
        let Some(open_end) = rest.find('>') else {
            break;
        };
        let Some(close) = rest.find("</text>") else {
            break;
        };
        out.push(rest[open_end + 1..close].trim().replace("&amp;", "&"));
        rest = &rest[close..];
    }
    out
}

/// The attribute `name` of every `<tag ...>` element.
fn attrs<'a>(svg: &'a str, tag: &str, name: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    let key = format!(" {name}=\"");
    svg.match_indices(&open)
        .filter_map(|(i, _)| {
            let el = &svg[i..i + svg[i..].find('>')?];
            let s = el.find(&key)? + key.len();
            Some(&el[s..s + el[s..].find('"')?])
        })
        .collect()
}

/// `(stroke, points)` of every curve: the polylines not drawn in black (the axis lines and
/// tick marks are black polylines; the legend uses filled swatches).
fn curves(svg: &str) -> Vec<(&str, &str)> {
    attrs(svg, "polyline", "stroke")
        .into_iter()
        .zip(attrs(svg, "polyline", "points"))
        .filter(|(stroke, _)| *stroke != "#000000")
        .collect()
}

/// A latency label (`10 µs`, `1 ms`) in µs, or None if it is not one.
fn label_us(t: &str) -> Option<f64> {
    let (v, unit) = t.split_once(' ')?;
    let v: f64 = v.parse().ok()?;
    let scale = match unit {
        "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        _ => return None,
    };
    Some(v * scale)
}

#[test]
fn log_axis_percentile_labels_one_curve_each_and_title() {
    let (a, b) = synthetic();
    let title = "sip calls: 5000/s offered for 10 s → 198.18.0.1:5060 (sip-xdp)";
    let svg = plot::svg(title, &[&a, &b]).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
    let texts = texts(&svg);

    // (a) y ticks: powers of ten of µs, at least three, consecutive decades that enclose the
    // data (5 µs .. 50 ms -> 1 µs .. 100 ms).
    let ys: Vec<f64> = texts.iter().filter_map(|t| label_us(t)).collect();
    assert!(ys.len() >= 3, "y labels {ys:?} in {texts:?}");
    let ks: Vec<i32> = ys
        .iter()
        .map(|&us| {
            let k = us.log10().round() as i32;
            assert!(
                (us - 10f64.powi(k)).abs() <= 1e-9 * us,
                "y label {us} µs is not a power of ten (a linear axis?): {texts:?}"
            );
            k
        })
        .collect();
    for w in ks.windows(2) {
        assert_eq!(w[1], w[0] + 1, "y labels not one decade apart: {ys:?}");
    }
    assert_eq!(ks.first(), Some(&0), "decade below 5 µs: {ys:?}");
    assert_eq!(ks.last(), Some(&5), "decade above 50 ms: {ys:?}");

    // (b) percentile labels.
    for want in ["0%", "50%", "90%", "99%", "99.9%", "99.99%"] {
        assert!(
            texts.iter().any(|t| t == want),
            "no {want} label in {texts:?}"
        );
    }

    // (c) one curve per histogram, each in its own colour, with many points; one legend entry
    // naming each.
    let cs = curves(&svg);
    assert_eq!(cs.len(), 2, "{cs:?}");
    for (_, pts) in &cs {
        assert!(pts.split_whitespace().count() > 20, "{pts}");
    }
    assert_ne!(cs[0].0, cs[1].0);
    for name in ["INVITE→200 (n=20000)", "BYE→200 (n=20000)"] {
        assert_eq!(
            texts.iter().filter(|t| *t == name).count(),
            1,
            "legend {name:?} in {texts:?}"
        );
    }

    // (d) the title, once.
    assert_eq!(texts.iter().filter(|t| *t == title).count(), 1, "{texts:?}");
}

#[test]
fn the_curve_is_log_spaced_in_y() {
    // The axis spans 1 µs .. 100 ms (5 decades) and INVITE→200's median is ~158 µs
    // (10^2.2): on a log axis it is drawn 2.2/5 = 44% of the way up, where a linear axis
    // would draw it within 0.2% of the bottom.
    let (a, b) = synthetic();
    let svg = plot::svg("t", &[&a, &b]).unwrap();
    // The y axis line: the first black polyline, vertical from the top to the bottom.
    let axis = attrs(&svg, "polyline", "points")[0];
    let ends: Vec<f64> = axis
        .split_whitespace()
        .filter_map(|p| p.split_once(',')?.1.parse().ok())
        .collect();
    let (top, bottom) = (ends[0].min(ends[1]), ends[0].max(ends[1]));
    assert!(bottom - top > 300.0, "{axis}");
    let ys: Vec<f64> = curves(&svg)[0]
        .1
        .split_whitespace()
        .filter_map(|p| p.split_once(',')?.1.parse().ok())
        .collect();
    let median = plot::points(&a).iter().position(|p| p.0 >= 2.0).unwrap();
    let frac = (bottom - ys[median]) / (bottom - top);
    assert!(
        (frac - 0.44).abs() < 0.03,
        "median drawn at {frac} of the height"
    );
}

#[test]
fn empty_histogram_draws_no_curve() {
    let (a, _) = synthetic();
    let empty = Latency::new("bye_200", "BYE→200");
    let svg = plot::svg("t", &[&a, &empty]).unwrap();
    assert_eq!(curves(&svg).len(), 1);
    assert!(!texts(&svg).iter().any(|t| t.starts_with("BYE→200")));
    // Nothing at all still renders.
    assert!(plot::svg("t", &[&empty]).unwrap().starts_with("<svg"));
}

#[test]
fn zero_latency_is_clamped_to_the_floor() {
    let mut a = Latency::new("x", "x");
    for _ in 0..100 {
        a.record(0);
    }
    a.record(2_000);
    let pts = plot::points(&a);
    assert!(pts.iter().all(|p| p.1 >= plot::FLOOR_US), "{pts:?}");
    let svg = plot::svg("t", &[&a]).unwrap();
    assert!(texts(&svg).iter().any(|t| t == "0.1 µs"));
}

#[test]
fn hgrm_round_trip_gives_the_same_curve() {
    let (a, b) = synthetic();
    // 3000 samples: the percentile iteration reaches past x = 3000 before the maximum.
    let mut c = Latency::new("invite_200", "INVITE→200");
    for i in 0..3000u64 {
        c.record(50_000 + i * i * 10);
    }
    for (l, dense) in [(&a, true), (&b, true), (&c, false)] {
        let text = l.hgrm();
        let h = parse_hgrm(&text).unwrap();
        let direct = Curve::from_latency(l);
        let read = Curve::from_hgrm(l.label, &h);
        assert_eq!(read.count, direct.count);
        assert_eq!(read.points.len(), direct.points.len());
        for w in direct.points.windows(2) {
            assert!(
                w[1].0 >= w[0].0 && w[1].1 >= w[0].1,
                "curve turns back: {w:?}"
            );
        }
        for (r, d) in read.points.iter().zip(&direct.points) {
            // 1/(1-p) from a 12-decimal percentile; values written to 0.001 µs.
            assert!((r.0 - d.0).abs() <= 1e-6 * d.0, "{r:?} vs {d:?}");
            assert!((r.1 - d.1).abs() <= 0.0005 + 1e-9 * d.1, "{r:?} vs {d:?}");
        }
        // Every line read back is the histogram's own value at that percentile, within its
        // precision (3 significant digits) and the file's 0.001 µs (where samples are dense
        // enough that the iteration's step lands on the percentile it reports).
        for x in h.lines.iter().filter(|_| dense) {
            let want = l.hist.value_at_quantile(x.percentile) as f64 / 1000.0;
            let tol = want * 1e-3 + 0.001;
            assert!(
                (x.value - want).abs() <= tol,
                "p{}: {} vs {want}",
                x.percentile,
                x.value
            );
        }
        assert!(h
            .lines
            .iter()
            .any(|x| x.percentile >= 0.999 && x.percentile < 1.0));
        // The rendered documents match too.
        assert_eq!(
            plot::svg_curves("t", &[read]).unwrap(),
            plot::svg_curves("t", &[direct]).unwrap()
        );
    }
}

#[test]
fn plot_subcommand_draws_hgrm_files_and_skips_empty_ones() {
    let dir = std::env::temp_dir().join(format!("switchyard-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = synthetic();
    let empty = Latency::new("invite_200", "INVITE→200");
    for (name, l) in [("xdp", &a), ("udp", &b), ("none", &empty)] {
        std::fs::write(dir.join(format!("{name}.hgrm")), l.hgrm()).unwrap();
    }
    let out = dir.join("sub/combined.svg");
    let title = "sip calls INVITE→200: 1000/s offered for 3 s → 10.0.0.1:5060";
    let arg = |n: &str| format!("{n}={}", dir.join(format!("{n}.hgrm")).display());
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-bench"))
        .args(["plot", "--title", title, "--out"])
        .arg(&out)
        .args([arg("xdp"), arg("udp"), arg("none")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(stderr.contains("none.hgrm has no samples"), "{stderr}");
    let svg = std::fs::read_to_string(&out).unwrap();
    let texts = texts(&svg);
    assert_eq!(curves(&svg).len(), 2);
    assert!(texts.iter().any(|t| t == "xdp (n=20000)"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "udp (n=20000)"), "{texts:?}");
    assert!(texts.iter().any(|t| t == title), "{texts:?}");
    // The same document as drawing the histograms themselves, up to the names.
    let direct = plot::svg_curves(
        title,
        &[
            Curve {
                label: "xdp".into(),
                ..Curve::from_latency(&a)
            },
            Curve {
                label: "udp".into(),
                ..Curve::from_latency(&b)
            },
        ],
    )
    .unwrap();
    assert_eq!(svg, direct);

    // Only empty inputs, a missing file, a bad argument: errors, nothing written.
    let none = dir.join("none.svg");
    for args in [
        vec![arg("none")],
        vec![format!("x={}", dir.join("missing.hgrm").display())],
        vec!["no-equals-sign".into()],
    ] {
        let r = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-bench"))
            .args(["plot", "--out"])
            .arg(&none)
            .args(&args)
            .output()
            .unwrap();
        assert!(!r.status.success(), "{args:?}");
        assert!(!none.exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
