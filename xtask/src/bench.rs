//! `cargo xtask bench`: every stage of the load benchmark in one invocation, on the veth
//! testbed, so that the numbers that matter are ratios measured side by side in one run:
//!
//! 1. receive ceilings: a raw AF_XDP loop and a raw `recvmmsg` loop that only count, fed by the
//!    generator's `blast` at the offered rate;
//! 2. Switchyard (`--backend xdp`, then `--backend udp`) fed the same blast: how many datagrams
//!    per second the dispatcher receives and decides (every one a new INVITE dialog);
//! 3. Switchyard on each backend under full SIP calls (INVITE → 100 → 200 → ACK → BYE → 200,
//!    ACK/BYE to the processor's Contact) and under MGCP CRCX → MDCX → DLCX: achieved rate,
//!    failures, latency, and the dispatcher thread's CPU per call.
//!
//! Everything lands in `target/bench/<timestamp>/` (one folder per stage with the generator's
//! `.hgrm`, `summary.json`, `report.txt` and `latency.svg`; the dispatcher's exit counters; and
//! `bench.json`, `table.txt` and `combined-invite.svg`, the SIP stages' INVITE→200 curves of
//! both backends in one plot drawn by `switchyard-bench plot`, for the whole run).
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::testbed::{self, Testbed};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Short run for CI (asserts only that every stage produced numbers).
    pub quick: bool,
    /// Datagrams/s offered in the ceiling and blast stages.
    pub blast_rate: u64,
    /// Calls/s offered in the call stages.
    pub call_rate: u64,
    /// Seconds per stage.
    pub seconds: u64,
    /// Processor threads.
    pub processors: u16,
    /// Selection policy.
    pub policy: String,
    /// Release binaries.
    pub bin_dir: PathBuf,
    /// Output root (`target/bench`).
    pub out_root: PathBuf,
}

struct Killer(Option<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

impl Killer {
    /// SIGINT and wait (bounded): the clean stop that makes Switchyard write its counters.
    fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut c) = self.0.take() else {
            return Ok(());
        };
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        for _ in 0..200 {
            if let Some(s) = c.try_wait()? {
                if !s.success() {
                    bail!("process exited with {s}");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        let _ = c.wait();
        bail!("process did not stop within 10 s of SIGINT")
    }
}

fn read_json(p: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    cur.as_f64().unwrap_or(f64::NAN)
}

/// What a run left behind.
#[derive(Debug, Clone)]
pub struct BenchRun {
    /// The run's folder (`target/bench/<stamp>`).
    pub dir: PathBuf,
    /// The whole-run files in it: `table.txt`, `bench.json`, `combined-invite.svg` (when
    /// written).
    pub files: Vec<PathBuf>,
}

/// The combined INVITE→200 plot's file name, beside `table.txt`.
pub const COMBINED_INVITE: &str = "combined-invite.svg";

/// The `switchyard-bench plot` arguments drawing `curves` (legend name, `.hgrm` path) into
/// `out`; a curve whose file is missing (its stage failed) is left out with a warning. None
/// when no file is there at all.
pub fn plot_args(out: &Path, title: &str, curves: &[(&str, PathBuf)]) -> Option<Vec<OsString>> {
    let mut args: Vec<OsString> = vec!["plot".into(), "--title".into(), title.into()];
    args.push("--out".into());
    args.push(out.into());
    let mut any = false;
    for (name, path) in curves {
        if path.is_file() {
            let mut a = OsString::from(format!("{name}="));
            a.push(path);
            args.push(a);
            any = true;
        } else {
            eprintln!(
                "bench: warning: no histogram {} (stage failed?); no {name} curve in {}",
                path.display(),
                out.display()
            );
        }
    }
    any.then_some(args)
}

/// Draws the combined plot with the generator's `plot` subcommand; a failure is a warning
/// (the numbers in `table.txt` stand without it). Returns the file when written.
fn combined_plot(
    gen: &Path,
    out: &Path,
    title: &str,
    curves: &[(&str, PathBuf)],
) -> Option<PathBuf> {
    let args = plot_args(out, title, curves)?;
    match std::process::Command::new(gen).args(&args).status() {
        Ok(st) if st.success() => Some(out.to_path_buf()),
        Ok(st) => {
            eprintln!(
                "bench: warning: {} not written ({gen:?} plot: {st})",
                out.display()
            );
            None
        }
        Err(e) => {
            eprintln!(
                "bench: warning: {} not written ({gen:?}: {e})",
                out.display()
            );
            None
        }
    }
}

/// Runs the whole benchmark; returns the output folder and its whole-run files.
/// The flooding source of the flood stage, added to the app side of the testbed.
const FLOOD_V4: &str = "198.18.0.3";
/// Datagrams/s the flood stage lets one source through the XDP guard.
const FLOOD_LIMIT: u32 = 100;

pub fn run(cfg: &BenchConfig) -> anyhow::Result<BenchRun> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let out = cfg
        .out_root
        .join(format!("{stamp}{}", if cfg.quick { "-quick" } else { "" }));
    std::fs::create_dir_all(&out)?;
    let tb = Testbed::up(&crate::testbed::unique_name("bn"), 1)?;
    let bin = |name: &str| cfg.bin_dir.join(name);
    let sy = bin("switchyard");
    let gen = bin("switchyard-bench");
    for b in [&sy, &gen] {
        if !b.exists() {
            bail!(
                "{} is missing (build with `cargo build --release`)",
                b.display()
            );
        }
    }
    let secs = cfg.seconds;
    let disp_sip = format!("{}:5060", testbed::DISP_V4);
    let disp_mgcp = format!("{}:2427", testbed::DISP_V4);
    let mut rows: Vec<Value> = Vec::new();
    // The SIP call stages' INVITE→200 histograms, by backend, for the combined plot.
    let mut invite_hgrms: Vec<(&str, PathBuf)> = Vec::new();

    // The generator runs on core 0, everything on the dispatcher side on core 1.
    let blast_from = |dir: &Path, target: &str, from: &str| -> anyhow::Result<Command> {
        let mut c = Testbed::exec(&tb.app_ns, gen.to_str().unwrap_or_default());
        c.args([
            "blast",
            "--target",
            target,
            "--local-ip",
            from,
            "--core",
            "0",
            "--quiet",
        ])
        .args([
            "--rate",
            &cfg.blast_rate.to_string(),
            "--duration",
            &secs.to_string(),
        ])
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null());
        Ok(c)
    };
    let blast = |dir: &Path, target: &str| -> anyhow::Result<()> {
        let st = blast_from(dir, target, testbed::APP_V4)?.status()?;
        if !st.success() {
            bail!("blast failed: {st}");
        }
        Ok(())
    };

    // 1. Ceilings.
    for backend in ["xdp", "udp"] {
        eprintln!(
            "bench: ceiling, raw {backend} receive loop, {} datagrams/s offered for {secs} s",
            cfg.blast_rate
        );
        let dir = out.join(format!("ceiling-{backend}"));
        std::fs::create_dir_all(&dir)?;
        let json_path = dir.join("sink.json");
        let mut sink = Testbed::exec(&tb.disp_ns, gen.to_str().unwrap_or_default());
        sink.args([
            "sink",
            "--backend",
            backend,
            "--core",
            "1",
            "--duration",
            &(secs + 3).to_string(),
        ])
        .arg("--json")
        .arg(&json_path)
        .stdout(Stdio::null());
        if backend == "xdp" {
            sink.args(["--iface", &tb.disp_if, "--port", "5060"]);
        } else {
            sink.args(["--bind", &disp_sip]);
        }
        let mut child = sink.spawn().context("starting the sink")?;
        std::thread::sleep(Duration::from_millis(1500));
        blast(&dir, &disp_sip)?;
        let st = child.wait()?;
        if !st.success() {
            bail!("sink ({backend}) failed: {st}");
        }
        let j = read_json(&json_path)?;
        rows.push(json!({
            "stage": format!("ceiling {backend}"),
            "offered": cfg.blast_rate,
            "received_per_s": num(&j, &["datagrams"]) / secs as f64,
            "raw": j,
        }));
    }

    let start_switchyard_with =
        |backend: &str, dir: &Path, extra: &[&str]| -> anyhow::Result<Killer> {
            let mut c = Testbed::exec(&tb.disp_ns, sy.to_str().unwrap_or_default());
            c.args([
                "run",
                "--backend",
                backend,
                "--sip",
                &disp_sip,
                "--mgcp",
                &disp_mgcp,
            ])
            .args([
                "--processors",
                &cfg.processors.to_string(),
                "--policy",
                &cfg.policy,
            ])
            .args(["--core", "1", "--log-level", "warn"])
            .arg("--stats-json")
            .arg(dir.join("switchyard.json"))
            .stdout(Stdio::null());
            if backend == "xdp" {
                c.args(["--iface", &tb.disp_if]);
            }
            c.args(extra);
            let child = c.spawn().context("starting switchyard")?;
            std::thread::sleep(Duration::from_millis(1500));
            Ok(Killer(Some(child)))
        };

    let start_switchyard = |backend: &str, dir: &Path| start_switchyard_with(backend, dir, &[]);

    // 2. Switchyard under the same blast.
    for backend in ["xdp", "udp"] {
        eprintln!("bench: switchyard {backend}, blast of new INVITEs");
        let dir = out.join(format!("route-{backend}"));
        std::fs::create_dir_all(&dir)?;
        let k = start_switchyard(backend, &dir)?;
        blast(&dir, &disp_sip)?;
        std::thread::sleep(Duration::from_millis(500));
        k.stop()?;
        let s = read_json(&dir.join("switchyard.json"))?;
        let handled = num(&s, &["router", "sip"]);
        rows.push(json!({
            "stage": format!("switchyard {backend} (blast)"),
            "offered": cfg.blast_rate,
            "received_per_s": handled / secs as f64,
            "forwarded": num(&s, &["router", "new_dialogs"]),
            "overload_503": num(&s, &["router", "overload"]),
            "dispatcher_cpu_ns_per_msg": num(&s, &["dispatcher_cpu_ns"]) / handled.max(1.0),
            "raw": s,
        }));
    }

    let calls = |kind: &str, target: &str, label: &str, dir: &Path| -> Command {
        let mut g = Testbed::exec(&tb.app_ns, gen.to_str().unwrap_or_default());
        g.args([
            kind,
            "--target",
            target,
            "--local-ip",
            testbed::APP_V4,
            "--core",
            "0",
            "--quiet",
        ])
        .args([
            "--rate",
            &cfg.call_rate.to_string(),
            "--duration",
            &secs.to_string(),
        ])
        .args(["--hold-ms", "0", "--timeout-ms", "4000", "--label", label])
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null());
        g
    };

    // 3. Full calls, SIP then MGCP.
    for (kind, proto_target) in [("sip", &disp_sip), ("mgcp", &disp_mgcp)] {
        for backend in ["xdp", "udp"] {
            eprintln!(
                "bench: switchyard {backend}, {kind} calls at {}/s for {secs} s",
                cfg.call_rate
            );
            let dir = out.join(format!("{kind}-{backend}"));
            std::fs::create_dir_all(&dir)?;
            let k = start_switchyard(backend, &dir)?;
            let mut g = calls(kind, proto_target, &format!("{kind}-{backend}"), &dir);
            if kind == "sip" {
                invite_hgrms.push((backend, dir.join("invite_200.hgrm")));
            }
            let st = g.status()?;
            if !st.success() {
                bail!("generator ({kind}, {backend}) failed: {st}");
            }
            k.stop()?;
            let s = read_json(&dir.join("switchyard.json"))?;
            let g = read_json(&dir.join("summary.json"))?;
            let first = if kind == "sip" {
                "invite_200"
            } else {
                "crcx_200"
            };
            let calls = num(&s, &["router", "new_dialogs"]).max(1.0);
            rows.push(json!({
                "stage": format!("switchyard {backend} ({kind} calls)"),
                "offered": num(&g, &["offered_cps"]),
                "achieved_per_s": num(&g, &["achieved_cps"]),
                "failed": num(&g, &["failed_calls"]),
                "p50_us": num(&g, &["latency_us", first, "p50_us"]),
                "p99_us": num(&g, &["latency_us", first, "p99_us"]),
                "dispatcher_cpu_ns_per_call": num(&s, &["dispatcher_cpu_ns"]) / calls,
                "generator": g,
                "switchyard": s,
            }));
        }
    }
    // 4. SIP calls from an exempt source while another source floods the well-known port at
    // the blast rate, limited per source in XDP (xdp backend: the guard lives there).
    {
        eprintln!(
            "bench: switchyard xdp, sip calls at {}/s while {FLOOD_V4} floods at {}/s (limited to {FLOOD_LIMIT}/s in XDP)",
            cfg.call_rate, cfg.blast_rate
        );
        let st = Command::new("ip")
            .args(["-n", &tb.app_ns, "addr", "add", &format!("{FLOOD_V4}/24")])
            .args(["dev", &tb.app_if])
            .status()?;
        if !st.success() {
            bail!("adding the flood source {FLOOD_V4}: {st}");
        }
        let dir = out.join("sip-xdp-flood");
        let flood_dir = dir.join("flood");
        std::fs::create_dir_all(&flood_dir)?;
        let limit = FLOOD_LIMIT.to_string();
        let k = start_switchyard_with(
            "xdp",
            &dir,
            &["--source-rate", &limit, "--rate-exempt", testbed::APP_V4],
        )?;
        let mut flood = blast_from(&flood_dir, &disp_sip, FLOOD_V4)?
            .spawn()
            .context("starting the flood")?;
        let st = calls("sip", &disp_sip, "sip-xdp-flood", &dir).status()?;
        let fst = flood.wait()?;
        if !st.success() || !fst.success() {
            bail!("generator under flood failed: calls {st}, flood {fst}");
        }
        k.stop()?;
        let s = read_json(&dir.join("switchyard.json"))?;
        let g = read_json(&dir.join("summary.json"))?;
        let calls_n = num(&s, &["router", "new_dialogs"]).max(1.0);
        rows.push(json!({
            "stage": "switchyard xdp (sip + flood)",
            "offered": num(&g, &["offered_cps"]),
            "achieved_per_s": num(&g, &["achieved_cps"]),
            "failed": num(&g, &["failed_calls"]),
            "p50_us": num(&g, &["latency_us", "invite_200", "p50_us"]),
            "p99_us": num(&g, &["latency_us", "invite_200", "p99_us"]),
            "dispatcher_cpu_ns_per_call": num(&s, &["dispatcher_cpu_ns"]) / calls_n,
            "flood_offered_per_s": cfg.blast_rate,
            "flood_dropped_in_xdp_per_s": num(&s, &["xdp", "dropped_rate"]) / secs as f64,
            "generator": g,
            "switchyard": s,
        }));
        invite_hgrms.push(("xdp + flood", dir.join("invite_200.hgrm")));
    }
    drop(tb);

    let get = |stage: &str, key: &str| -> f64 {
        rows.iter()
            .find(|r| r["stage"] == stage)
            .map(|r| num(r, &[key]))
            .unwrap_or(f64::NAN)
    };
    let ratios = json!({
        "switchyard_xdp_over_afxdp_ceiling": get("switchyard xdp (blast)", "received_per_s") / get("ceiling xdp", "received_per_s"),
        "switchyard_udp_over_recvmmsg_ceiling": get("switchyard udp (blast)", "received_per_s") / get("ceiling udp", "received_per_s"),
        "xdp_over_udp_blast": get("switchyard xdp (blast)", "received_per_s") / get("switchyard udp (blast)", "received_per_s"),
        "xdp_over_udp_sip_calls": get("switchyard xdp (sip calls)", "achieved_per_s") / get("switchyard udp (sip calls)", "achieved_per_s"),
        "sip_calls_flood_over_clean": get("switchyard xdp (sip + flood)", "achieved_per_s") / get("switchyard xdp (sip calls)", "achieved_per_s"),
        "sip_p99_flood_over_clean": get("switchyard xdp (sip + flood)", "p99_us") / get("switchyard xdp (sip calls)", "p99_us"),
        "dispatcher_cpu_per_call_flood_over_clean": get("switchyard xdp (sip + flood)", "dispatcher_cpu_ns_per_call") / get("switchyard xdp (sip calls)", "dispatcher_cpu_ns_per_call"),
        "peer": "not run (Kamailio comparison not implemented in this bench; see README)",
    });
    let table = render(&rows, &ratios);
    println!("{table}");
    let mut files = vec![out.join("table.txt"), out.join("bench.json")];
    std::fs::write(&files[0], &table)?;
    std::fs::write(
        &files[1],
        serde_json::to_vec_pretty(
            &json!({ "quick": cfg.quick, "stages": rows, "ratios": ratios }),
        )?,
    )?;
    let title = format!(
        "sip calls, INVITE→200 by backend: {}/s offered for {secs} s → {disp_sip}",
        cfg.call_rate
    );
    if let Some(p) = combined_plot(&gen, &out.join(COMBINED_INVITE), &title, &invite_hgrms) {
        println!("combined plot: {}", p.display());
        files.push(p);
    }
    // Every stage must have produced numbers (the only thing --quick asserts).
    for r in &rows {
        let v = r
            .get("received_per_s")
            .or_else(|| r.get("achieved_per_s"))
            .and_then(Value::as_f64);
        if !v.is_some_and(|x| x.is_finite() && x > 0.0) {
            bail!("stage {} produced no numbers: {r}", r["stage"]);
        }
    }
    Ok(BenchRun { dir: out, files })
}

fn render(rows: &[Value], ratios: &Value) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "{:<30} {:>10} {:>12} {:>8} {:>10} {:>10} {:>14}\n",
        "stage", "offered/s", "achieved/s", "failed", "p50 µs", "p99 µs", "disp CPU/call"
    ));
    for r in rows {
        let f = |k: &str| r.get(k).and_then(Value::as_f64);
        let cell = |v: Option<f64>, prec: usize| {
            v.filter(|x| x.is_finite())
                .map_or("-".to_owned(), |x| format!("{x:.prec$}"))
        };
        let achieved = f("achieved_per_s").or(f("received_per_s"));
        let cpu = f("dispatcher_cpu_ns_per_call")
            .or(f("dispatcher_cpu_ns_per_msg"))
            .map(|ns| ns / 1000.0);
        t.push_str(&format!(
            "{:<30} {:>10} {:>12} {:>8} {:>10} {:>10} {:>12} µs\n",
            r["stage"].as_str().unwrap_or("?"),
            cell(f("offered"), 0),
            cell(achieved, 0),
            cell(f("failed"), 0),
            cell(f("p50_us"), 0),
            cell(f("p99_us"), 0),
            cell(cpu, 2),
        ));
    }
    t.push_str("\nratios (side by side, same run):\n");
    if let Some(m) = ratios.as_object() {
        for (k, v) in m {
            match v.as_f64() {
                Some(x) => t.push_str(&format!("  {k:<40} {x:.2}\n")),
                None => t.push_str(&format!("  {k:<40} {}\n", v.as_str().unwrap_or("-"))),
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_args_leave_out_missing_histograms() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-args-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sip-xdp")).unwrap();
        let xdp = dir.join("sip-xdp/invite_200.hgrm");
        std::fs::write(&xdp, "").unwrap();
        let udp = dir.join("sip-udp/invite_200.hgrm");
        let out = dir.join(COMBINED_INVITE);
        let curves = [("xdp", xdp.clone()), ("udp", udp.clone())];
        let args = plot_args(&out, "T", &curves).unwrap();
        let want: Vec<OsString> = vec![
            "plot".into(),
            "--title".into(),
            "T".into(),
            "--out".into(),
            out.clone().into(),
            format!("xdp={}", xdp.display()).into(),
        ];
        assert_eq!(args, want);
        assert!(plot_args(&out, "T", &[("udp", udp)]).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
