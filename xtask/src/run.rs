//! `cargo xtask run`: the README's first command. It brings up the testbed, runs `switchyard`
//! there, drives real SIP calls and MGCP connections at it with the load generator for a
//! bounded time, and ends with a short report a person reads at a glance (what was offered,
//! completed and failed, how fast it was answered, how dialogs were shared, what XDP did, what
//! the dispatcher cost, where the files are). It exits non-zero when any call failed, naming
//! the failure kinds.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::testbed::{self, Testbed};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `xdp` or `udp`.
    pub backend: String,
    /// Seconds of load.
    pub seconds: u64,
    /// Calls per second offered, split between SIP and MGCP.
    pub rate: u64,
    /// Testbed name prefix.
    pub name: String,
    /// Capacity of each processor in session units (0: unlimited).
    pub capacity: u32,
    /// Rx queues of the dispatcher-side veth (switchyard serves them all; with
    /// `--dispatcher-threads` auto, one thread each).
    pub queues: u32,
    /// Keep the testbed afterwards.
    pub keep: bool,
    /// Further flags for `switchyard run` (after the ones this sets).
    pub switchyard_args: Vec<String>,
    /// Where `switchyard` and `switchyard-bench` are.
    pub bin_dir: PathBuf,
    /// Where this run's files go.
    pub out_dir: PathBuf,
}

/// One load generator's result, from its `summary.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct GenResult {
    /// `sip` or `mgcp`.
    pub kind: String,
    /// Calls started.
    pub offered: u64,
    /// Calls that completed.
    pub completed: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Failure kinds with a non-zero count.
    pub failures: Vec<(String, u64)>,
    /// The first-answer histogram's (name, p50, p99, max) in µs.
    pub answer: Option<(String, f64, f64, f64)>,
    /// Files written (name → path).
    pub files: Vec<PathBuf>,
}

impl GenResult {
    /// Reads `dir/summary.json`, taking `first` (e.g. `invite_200`) as the answer latency.
    pub fn read(dir: &Path, first: &str) -> anyhow::Result<Self> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("the load generator wrote no {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        Ok(Self::from_summary(&v, first, dir))
    }

    /// From a parsed `summary.json` of a run whose files are in `dir`.
    pub fn from_summary(v: &Value, first: &str, dir: &Path) -> Self {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let mut failures: Vec<(String, u64)> = v["failures"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, c)| c.as_u64().filter(|&c| c > 0).map(|c| (k.clone(), c)))
                    .collect()
            })
            .unwrap_or_default();
        failures.sort();
        let lat = &v["latency_us"][first];
        let answer = lat["count"].as_u64().filter(|&c| c > 0).map(|_| {
            let f = |k: &str| lat[k].as_f64().unwrap_or(f64::NAN);
            (first.to_string(), f("p50_us"), f("p99_us"), f("max_us"))
        });
        let files = v["files"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(Value::as_str)
                    .map(|f| dir.join(f))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            kind: v["kind"].as_str().unwrap_or("?").to_string(),
            offered: n("offered_calls"),
            completed: n("completed_calls"),
            failed: n("failed_calls"),
            failures,
            answer,
            files,
        }
    }
}

/// What the dispatcher reported, from its `--stats-json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DispatcherResult {
    /// Messages handed to each processor.
    pub per_processor: Vec<u64>,
    /// XDP verdicts (redirected, passed, malformed, no socket, not allowed, over rate), xdp
    /// backend only.
    pub xdp: Option<[u64; 6]>,
    /// Datagrams decided.
    pub datagrams: u64,
    /// New dialogs placed.
    pub new_dialogs: u64,
    /// Dialogs refused for overload.
    pub overload: u64,
    /// CPU of the dispatcher thread, ns.
    pub cpu_ns: u64,
}

impl DispatcherResult {
    /// From switchyard's `--stats-json` document.
    pub fn from_stats(v: &Value) -> Self {
        let r = &v["router"];
        let n = |x: &Value| x.as_u64().unwrap_or(0);
        Self {
            per_processor: r["forwarded_per_processor"]
                .as_array()
                .map(|a| a.iter().map(n).collect())
                .unwrap_or_default(),
            xdp: v["xdp"].is_object().then(|| {
                let x = &v["xdp"];
                [
                    n(&x["redirected"]),
                    n(&x["passed"]),
                    n(&x["malformed"]),
                    n(&x["no_socket"]),
                    n(&x["dropped_not_allowed"]),
                    n(&x["dropped_rate"]),
                ]
            }),
            datagrams: n(&r["sip"]) + n(&r["mgcp"]),
            new_dialogs: n(&r["new_dialogs"]),
            overload: n(&r["overload"]),
            cpu_ns: n(&v["dispatcher_cpu_ns"]),
        }
    }
}

fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// The end-of-run report. `gens` are the SIP and MGCP generator results.
pub fn render(
    cfg: &RunConfig,
    gens: &[GenResult],
    sy: &DispatcherResult,
    files: &[PathBuf],
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nrun: {} s at {} calls/s ({} backend), half SIP calls, half MGCP connections",
        cfg.seconds, cfg.rate, cfg.backend
    );
    let mut line = |label: &str, text: String| {
        let _ = writeln!(o, "  {label:<18} {text}");
    };
    for g in gens {
        let label = if g.kind == "sip" {
            "SIP calls"
        } else {
            "MGCP connections"
        };
        let mut t = format!(
            "offered {:>6}  completed {:>6}  failed {:>4}",
            g.offered, g.completed, g.failed
        );
        if let Some((name, p50, p99, max)) = &g.answer {
            let name = name.replace("_200", "→200").to_uppercase();
            let _ = write!(
                t,
                "   {name} p50 {}  p99 {}  max {}",
                ms(*p50),
                ms(*p99),
                ms(*max)
            );
        }
        if !g.failures.is_empty() {
            let kinds: Vec<String> = g.failures.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = write!(t, "   failures: {}", kinds.join(", "));
        }
        line(label, t);
    }
    let total: u64 = sy.per_processor.iter().sum();
    let shares: Vec<String> = sy
        .per_processor
        .iter()
        .enumerate()
        .map(|(k, &n)| format!("#{k} {:.1}%", 100.0 * n as f64 / total.max(1) as f64))
        .collect();
    line(
        "dialogs per proc.",
        if shares.is_empty() {
            "none".into()
        } else {
            shares.join("  ")
        },
    );
    if let Some([redirected, passed, malformed, no_socket, not_allowed, over_rate]) = sy.xdp {
        line(
            "XDP verdicts",
            format!("{redirected} redirected, {passed} passed (not ours) + {malformed} malformed + {no_socket} without a socket to the kernel, {} dropped ({not_allowed} not allowed, {over_rate} over rate)", not_allowed + over_rate),
        );
    }
    let calls: u64 = gens.iter().map(|g| g.offered).sum();
    line(
        "dispatcher CPU",
        format!(
            "{:.2} µs per call ({:.1} ms in all, {} datagrams, {} new dialogs, {} refused for overload)",
            sy.cpu_ns as f64 / calls.max(1) as f64 / 1e3,
            sy.cpu_ns as f64 / 1e6,
            sy.datagrams,
            sy.new_dialogs,
            sy.overload
        ),
    );
    // Files, grouped by folder under the run's directory: histograms (.hgrm), plots (.svg),
    // reports (.txt, .json).
    let mut all: Vec<&PathBuf> = gens.iter().flat_map(|g| g.files.iter()).collect();
    all.extend(files.iter());
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for p in all {
        let rel = p.strip_prefix(&cfg.out_dir).unwrap_or(p);
        let dir = rel
            .parent()
            .map(|d| d.display().to_string())
            .filter(|d| !d.is_empty())
            .map_or_else(String::new, |d| format!("{d}/"));
        let name = rel
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match groups.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) => names.push(name),
            None => groups.push((dir, vec![name])),
        }
    }
    line("files", format!("{}/", cfg.out_dir.display()));
    for (dir, mut names) in groups {
        names.sort_by_key(|n| (!n.ends_with(".hgrm"), !n.ends_with(".svg"), n.clone()));
        let _ = writeln!(o, "  {:<18}   {dir:<6} {}", "", names.join(" "));
    }
    let failed: u64 = gens.iter().map(|g| g.failed).sum();
    if failed == 0 {
        o.push_str("  result             every call completed\n");
    } else {
        let _ = writeln!(o, "  result             {failed} calls FAILED");
    }
    o
}

/// Runs it; returns the report, and an error (after printing the report) when a call failed.
pub fn run(cfg: &RunConfig) -> anyhow::Result<String> {
    std::fs::create_dir_all(&cfg.out_dir)?;
    let bin = cfg.bin_dir.join("switchyard");
    let gen = cfg.bin_dir.join("switchyard-bench");
    let tb = Testbed::up(&cfg.name, cfg.queues)?;
    let tb = if cfg.keep { tb.keep() } else { tb };
    println!(
        "testbed up: {} ({}) <-> {} ({}, {})",
        tb.app_ns,
        testbed::APP_V4,
        tb.disp_ns,
        testbed::DISP_V4,
        tb.disp_if
    );
    let sy_json = cfg.out_dir.join("switchyard.json");
    let mut sw = Testbed::exec(&tb.disp_ns, bin.to_str().unwrap_or("switchyard"));
    sw.args(["run", "--backend", &cfg.backend, "--iface", &tb.disp_if])
        .args(["--sip", &format!("{}:5060", testbed::DISP_V4)])
        .args(["--mgcp", &format!("{}:2427", testbed::DISP_V4)])
        .args(["--capacity", &cfg.capacity.to_string()])
        .args(["--stats-interval", "1"])
        .arg("--stats-json")
        .arg(&sy_json)
        .args(&cfg.switchyard_args)
        .stdin(Stdio::null());
    let sy = Child(sw.spawn().context("starting switchyard")?);
    std::thread::sleep(Duration::from_secs(1));
    let mut gens = Vec::new();
    for (kind, port) in [("sip", 5060), ("mgcp", 2427)] {
        gens.push(
            Testbed::exec(&tb.app_ns, gen.to_str().unwrap_or("switchyard-bench"))
                .args([kind, "--target", &format!("{}:{port}", testbed::DISP_V4)])
                .args(["--local-ip", testbed::APP_V4, "--hold-ms", "500", "--quiet"])
                .args(["--rate", &(cfg.rate / 2).max(1).to_string()])
                .args(["--duration", &cfg.seconds.to_string()])
                .args(["--label", &format!("run-{kind}")])
                .arg("--out")
                .arg(cfg.out_dir.join(kind))
                .stdout(Stdio::null())
                .spawn()
                .context("starting the load generator")?,
        );
    }
    let mut gen_ok = true;
    for mut g in gens {
        gen_ok &= g.wait()?.success();
    }
    std::thread::sleep(Duration::from_millis(1500));
    sy.stop()?;
    let sip = GenResult::read(&cfg.out_dir.join("sip"), "invite_200")?;
    let mgcp = GenResult::read(&cfg.out_dir.join("mgcp"), "crcx_200")?;
    let stats: Value = serde_json::from_str(
        &std::fs::read_to_string(&sy_json)
            .with_context(|| format!("switchyard wrote no {}", sy_json.display()))?,
    )?;
    let report = render(
        cfg,
        &[sip.clone(), mgcp.clone()],
        &DispatcherResult::from_stats(&stats),
        &[sy_json],
    );
    print!("{report}");
    let failed = sip.failed + mgcp.failed;
    if failed > 0 || !gen_ok {
        let kinds: Vec<String> = [&sip, &mgcp]
            .iter()
            .flat_map(|g| {
                g.failures
                    .iter()
                    .map(move |(k, n)| format!("{} {k}: {n}", g.kind))
            })
            .collect();
        bail!(
            "{failed} calls failed ({})",
            if kinds.is_empty() {
                "the load generator exited with an error".into()
            } else {
                kinds.join(", ")
            }
        );
    }
    Ok(report)
}

/// A child process that is SIGINT-ed (and reaped) when stopped, SIGKILL-ed if dropped.
pub struct Child(pub std::process::Child);

impl Child {
    /// SIGINT, then wait; an error when it exits unsuccessfully.
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let status = self.0.wait()?;
        if !status.success() {
            bail!("switchyard exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: signalling our own child by its PID.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> RunConfig {
        RunConfig {
            backend: "xdp".into(),
            seconds: 2,
            rate: 500,
            name: "t".into(),
            capacity: 0,
            queues: 1,
            keep: false,
            switchyard_args: Vec::new(),
            bin_dir: PathBuf::new(),
            out_dir: PathBuf::from("/out"),
        }
    }

    fn summary(kind: &str, first: &str, completed: u64, failures: Value) -> Value {
        json!({
            "kind": kind, "offered_calls": 500, "completed_calls": completed,
            "failed_calls": 500 - completed, "failures": failures,
            "latency_us": { first: { "count": completed, "p50_us": 210.0, "p99_us": 1300.0, "max_us": 4100.0 } },
            "files": { "hgrm": format!("{first}.hgrm"), "plot": "latency.svg", "summary": "summary.json" },
        })
    }

    #[test]
    fn the_report_reads_at_a_glance() {
        let sip = GenResult::from_summary(
            &summary("sip", "invite_200", 500, json!({"status_503": 0})),
            "invite_200",
            Path::new("/out/sip"),
        );
        let mgcp = GenResult::from_summary(
            &summary("mgcp", "crcx_200", 500, json!({})),
            "crcx_200",
            Path::new("/out/mgcp"),
        );
        let sy = DispatcherResult::from_stats(&json!({
            "dispatcher_cpu_ns": 5_000_000u64,
            "xdp": { "redirected": 2000, "passed": 3, "malformed": 0, "no_socket": 0,
                     "dropped_not_allowed": 4, "dropped_rate": 5 },
            "router": { "sip": 1000, "mgcp": 1000, "new_dialogs": 1000, "overload": 0,
                        "forwarded_per_processor": [600, 400] },
        }));
        let text = render(
            &cfg(),
            &[sip, mgcp],
            &sy,
            &[PathBuf::from("/out/switchyard.json")],
        );
        for needle in [
            "SIP calls          offered    500  completed    500  failed    0   INVITE→200 p50 210 µs  p99 1.3 ms  max 4.1 ms",
            "MGCP connections   offered    500  completed    500  failed    0   CRCX→200 p50",
            "dialogs per proc.  #0 60.0%  #1 40.0%",
            "XDP verdicts       2000 redirected, 3 passed (not ours) + 0 malformed + 0 without a socket to the kernel, 9 dropped (4 not allowed, 5 over rate)",
            "dispatcher CPU     5.00 µs per call",
            "files              /out/",
            "sip/   invite_200.hgrm latency.svg summary.json",
            "switchyard.json",
            "every call completed",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn failures_are_named() {
        let sip = GenResult::from_summary(
            &summary(
                "sip",
                "invite_200",
                480,
                json!({"status_503": 20, "timeout_bye": 0}),
            ),
            "invite_200",
            Path::new("/o"),
        );
        assert_eq!(sip.failures, vec![("status_503".to_string(), 20)]);
        let text = render(&cfg(), &[sip], &DispatcherResult::default(), &[]);
        assert!(text.contains("failed   20"), "{text}");
        assert!(text.contains("failures: status_503 20"), "{text}");
        assert!(text.contains("20 calls FAILED"), "{text}");
    }
}
