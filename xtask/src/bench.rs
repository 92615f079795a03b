//! `cargo xtask bench`: every stage of the load benchmark in one invocation, on the veth
//! testbed, so that the numbers that matter are ratios measured side by side in one run:
//!
//! 1. receive ceilings: a raw AF_XDP loop and a raw `recvmmsg` loop that only count, busy-
//!    polling, fed by the generator's `blast` at the offered rate from two threads (one sending
//!    thread limited the old ceiling below the dispatcher it was meant to bound);
//! 2. Switchyard (`--backend xdp`, then `--backend udp`) fed the same blast: how many datagrams
//!    per second the dispatcher receives and decides (every one a new INVITE dialog);
//! 3. Switchyard on each backend under full SIP calls (INVITE → 100 → 200 → ACK → BYE → 200,
//!    ACK/BYE to the processor's Contact) and under MGCP CRCX → MDCX → DLCX: achieved rate,
//!    failures, latency, and the dispatcher thread's CPU per call.
//!
//! Every row also carries what each stage cost per call: the generator's CPU and syscalls (its
//! `summary.json`), the processors' CPU (their threads in `/proc`), the whole box's busy CPU
//! (`/proc/stat`) and the processors' parks and syscalls where they report them.
//!
//! Everything lands in `target/bench/<timestamp>/` (one folder per stage with the generator's
//! `.hgrm`, `summary.json`, `report.txt` and `latency.svg`; the dispatcher's exit counters; and
//! `bench.json`, `table.txt` and `combined-invite.svg`, the SIP stages' INVITE→200 curves of
//! both backends in one plot drawn by `switchyard-bench plot`, for the whole run).
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
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
    /// The ladder: calls/s of each step of the SIP call stage (empty: no ladder).
    pub ladder: Vec<u64>,
    /// Seconds per ladder step.
    pub ladder_seconds: u64,
    /// A ladder step passes with 0 failed calls and INVITE→200 p99 at most this (ms).
    pub p99_ms: f64,
    /// The peer to run side by side with Switchyard (None: no peer stage).
    pub peer: Option<Peer>,
    /// Calls/s of the peer stage's single-rate runs (Switchyard xdp and udp with remote
    /// processors, then the peer, one run each); None: no such runs, only the ladders.
    pub peer_rate: Option<u64>,
    /// The peer's ladder (calls/s): the peer at each rate, lowest first, until a step
    /// collapses ([`step_collapsed`]); empty: no peer ladder.
    pub peer_ladder: Vec<u64>,
    /// Switchyard's ladder in the peer stage (xdp, the same remote processors), run
    /// interleaved with the peer's, rate by rate; see [`switchyard_peer_ladder`].
    pub peer_switchyard_ladder: Vec<u64>,
    /// Seconds of each run of the peer stage (single-rate runs and ladder steps).
    pub peer_seconds: u64,
    /// Generator threads in the call stages; the blasts of the ceiling and blast stages use
    /// at least [`BLAST_THREADS`].
    pub gen_threads: usize,
    /// Dispatcher thread counts of the threads stage (`--dispatcher-threads 1,2`): the blast
    /// and the SIP call stage, each backend, once per count, on a testbed with as many rx
    /// queues as the largest count. `[1]` (the default) runs no threads stage.
    pub dispatcher_threads: Vec<usize>,
    /// Seconds of each run of the threads stage.
    pub threads_seconds: u64,
    /// Extra flags for every `switchyard run` the bench starts, after its own.
    pub switchyard_args: Vec<String>,
}

/// Source sockets per generator thread in the threads stage: enough source ports that the
/// flow hash (veth tx queue, so rx queue; the reuseport program) spreads them evenly over the
/// dispatcher threads (4, the generator's default, leaves a lopsided split likely).
pub const THREADS_STAGE_SOCKETS: usize = 32;

/// The cores of the threads stage's `n` dispatcher threads on a box of `ncpu` cores: thread
/// 0 on core 1 (the dispatcher's core in every other stage), the next on core 0, and so on
/// round-robin. On the 2-core box the second thread shares core 0 with the generator.
pub fn dispatcher_cores(n: usize, ncpu: usize) -> Vec<usize> {
    let ncpu = ncpu.max(1);
    (0..n.max(1)).map(|i| (1 + i) % ncpu).collect()
}

/// The stage name of a threads-stage run: `threads 2 xdp (blast; cores 1,0 shared)`;
/// `shared` when one of `cores` is also a generator core.
pub fn threads_stage_name(
    n: usize,
    backend: &str,
    what: &str,
    cores: &[usize],
    shared: bool,
) -> String {
    let cores_s = cores
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "threads {n} {backend} ({what}; core{} {cores_s}{})",
        if cores.len() == 1 { "" } else { "s" },
        if shared { " shared" } else { "" }
    )
}

/// Per-thread figures of a threads-stage row from Switchyard's exit report
/// (`dispatcher_threads`: index, core, queues, datagrams, cpu_ns, new_dialogs): each row with
/// its CPU per datagram and its share of the datagrams added. Empty when the report has none.
pub fn per_thread(sy: &Value) -> Vec<Value> {
    let Some(threads) = sy["dispatcher_threads"].as_array() else {
        return Vec::new();
    };
    let total: f64 = threads.iter().map(|t| num(t, &["datagrams"])).sum();
    threads
        .iter()
        .map(|t| {
            let d = num(t, &["datagrams"]);
            let mut r = t.clone();
            r["cpu_ns_per_datagram"] = json!(num(t, &["cpu_ns"]) / d.max(1.0));
            r["share"] = json!(d / total.max(1.0));
            r
        })
        .collect()
}

/// Generator threads at least in the blasts that feed the ceiling and blast stages: one
/// thread's `sendmmsg` (which on a veth also does the receiver's softirq work) is what limited
/// the old "ceiling", so the raw loop never ran out of work and the ratio against it exceeded 1.
pub const BLAST_THREADS: usize = 2;

/// `--threads` and `--core` arguments of a generator with `threads` threads: thread 0 on core
/// 0 (the generator's), further threads round-robin over cores 0 and 1, i.e. also on the
/// dispatcher side's core: a 2-core box has no third one, and offering more than the box can
/// take is the point.
pub fn gen_thread_args(threads: usize) -> Vec<String> {
    let threads = threads.max(1);
    let cores = if threads == 1 { "0" } else { "0,1" };
    vec![
        "--threads".into(),
        threads.to_string(),
        "--core".into(),
        cores.into(),
    ]
}

/// Another SIP dispatcher, run in front of the same processors in the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Kamailio (Debian `kamailio`) with its `dispatcher` module.
    Kamailio,
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
    /// The child's PID while it runs.
    fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

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

/// The flooding source of the flood stage, added to the app side of the testbed.
const FLOOD_V4: &str = "198.18.0.3";
/// Datagrams/s the flood stage lets one source through the XDP guard.
const FLOOD_LIMIT: u32 = 100;

/// Runs the whole benchmark; returns the output folder and its whole-run files.
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
        let (mut c, threads) = if from == testbed::APP_V4 {
            let c = Testbed::exec(&tb.app_ns, gen.to_str().unwrap_or_default());
            (c, cfg.gen_threads.max(BLAST_THREADS))
        } else {
            // The flood source is one thread at SCHED_IDLE: it is background, not the
            // measured load. Sending a datagram through a veth costs the sender ~9 µs of
            // kernel time (skb, UDP/IP, the peer's XDP run in its softirq), which a flood
            // arriving on a NIC would not cost this box; at normal priority it takes half of
            // core 0 from the call generator, and what the stage then measures is the
            // generator falling behind. At SCHED_IDLE it sends with every cycle the
            // generator leaves (the kernel preempts it between datagrams of a sendmmsg),
            // and the row reports the rate it reached (`flood_sent_per_s`).
            let mut c = Testbed::exec(&tb.app_ns, "chrt");
            c.args(["--idle", "0", gen.to_str().unwrap_or_default()]);
            (c, 1)
        };
        c.args(["blast", "--target", target, "--local-ip", from, "--quiet"])
            .args(gen_thread_args(threads))
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
        // Busy-polling (`--idle spin`): a receive ceiling must not pay for wake-ups the loop
        // under test may avoid.
        sink.args([
            "sink",
            "--backend",
            backend,
            "--idle",
            "spin",
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
        let c0 = CpuSample::now(None, &[]);
        blast(&dir, &disp_sip)?;
        let c1 = CpuSample::now(None, &[]);
        let st = child.wait()?;
        if !st.success() {
            bail!("sink ({backend}) failed: {st}");
        }
        let j = read_json(&json_path)?;
        let g = read_json(&dir.join("summary.json")).ok();
        let mut row = json!({
            "stage": format!("ceiling {backend}"),
            "offered": blast_offered(g.as_ref(), cfg.blast_rate),
            "received_per_s": num(&j, &["datagrams"]) / blast_span(g.as_ref(), secs),
            "raw": j,
        });
        add_costs(
            &mut row,
            num(&j, &["datagrams"]),
            g.as_ref(),
            c1.since(&c0),
            None,
        );
        rows.push(row);
    }

    // `processors`: in-chassis processor threads (0 with `--remote-processor`s in `extra`).
    // The dispatcher and its processors share core 1 and leave core 0 to the generator: with
    // only `--core 1`, `switchyard run` pins its processors to the cores the dispatcher leaves,
    // i.e. onto the generator's core 0, where generator and processors starve each other (the
    // 30,000/s call stages collapsed that way: 50-140k failed calls, 0 with this layout).
    let start_switchyard_in =
        |backend: &str, dir: &Path, processors: u16, extra: &[&str]| -> anyhow::Result<Killer> {
            let mut args = vec!["--core", "1"];
            if processors > 0 {
                args.extend_from_slice(&["--processor-cores", "1"]);
            }
            args.extend_from_slice(extra);
            start_switchyard_on(&tb, &sy, cfg, backend, dir, processors, &args)
        };

    let start_switchyard_with = |backend: &str, dir: &Path, extra: &[&str]| {
        start_switchyard_in(backend, dir, cfg.processors, extra)
    };
    let start_switchyard = |backend: &str, dir: &Path| start_switchyard_with(backend, dir, &[]);

    // 2. Switchyard under the same blast.
    for backend in ["xdp", "udp"] {
        eprintln!("bench: switchyard {backend}, blast of new INVITEs");
        let dir = out.join(format!("route-{backend}"));
        std::fs::create_dir_all(&dir)?;
        let k = start_switchyard(backend, &dir)?;
        let pid = k.pid();
        let c0 = CpuSample::now(pid, &[]);
        blast(&dir, &disp_sip)?;
        let c1 = CpuSample::now(pid, &[]);
        std::thread::sleep(Duration::from_millis(500));
        k.stop()?;
        let s = read_json(&dir.join("switchyard.json"))?;
        let g = read_json(&dir.join("summary.json")).ok();
        let handled = num(&s, &["router", "sip"]);
        let mut row = json!({
            "stage": format!("switchyard {backend} (blast)"),
            "offered": blast_offered(g.as_ref(), cfg.blast_rate),
            "received_per_s": handled / blast_span(g.as_ref(), secs),
            "forwarded": num(&s, &["router", "new_dialogs"]),
            "overload_503": num(&s, &["router", "overload"]),
            "dispatcher_cpu_ns_per_msg": num(&s, &["dispatcher_cpu_ns"]) / handled.max(1.0),
            "raw": s,
        });
        add_costs(
            &mut row,
            handled,
            g.as_ref(),
            c1.since(&c0),
            Some(&in_chassis(&s)),
        );
        rows.push(row);
    }

    let calls_at =
        |kind: &str, target: &str, label: &str, dir: &Path, rate: u64, secs: u64| -> Command {
            let mut g = Testbed::exec(&tb.app_ns, gen.to_str().unwrap_or_default());
            g.args([
                kind,
                "--target",
                target,
                "--local-ip",
                testbed::APP_V4,
                "--quiet",
            ])
            .args(gen_thread_args(cfg.gen_threads))
            .args(["--rate", &rate.to_string(), "--duration", &secs.to_string()])
            .args(["--hold-ms", "0", "--timeout-ms", "4000", "--label", label])
            .arg("--out")
            .arg(dir)
            .stdout(Stdio::null());
            g
        };
    let calls = |kind: &str, target: &str, label: &str, dir: &Path| -> Command {
        calls_at(kind, target, label, dir, cfg.call_rate, secs)
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
            let pid = k.pid();
            let mut g = calls(kind, proto_target, &format!("{kind}-{backend}"), &dir);
            if kind == "sip" {
                invite_hgrms.push((backend, dir.join("invite_200.hgrm")));
            }
            let c0 = CpuSample::now(pid, &[]);
            let st = g.status()?;
            let c1 = CpuSample::now(pid, &[]);
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
            let mut row = json!({
                "stage": format!("switchyard {backend} ({kind} calls)"),
                "offered": num(&g, &["offered_cps"]),
                "achieved_per_s": num(&g, &["achieved_cps"]),
                "failed": num(&g, &["failed_calls"]),
                "p50_us": num(&g, &["latency_us", first, "p50_us"]),
                "p99_us": num(&g, &["latency_us", first, "p99_us"]),
                "dispatcher_cpu_ns_per_call": num(&s, &["dispatcher_cpu_ns"]) / calls,
                "generator": g,
                "switchyard": s,
            });
            let done = num(&g, &["completed_calls"]);
            add_costs(
                &mut row,
                done,
                Some(&g),
                c1.since(&c0),
                Some(&in_chassis(&s)),
            );
            rows.push(row);
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
        let pid = k.pid();
        let mut flood = blast_from(&flood_dir, &disp_sip, FLOOD_V4)?
            .spawn()
            .context("starting the flood")?;
        let c0 = CpuSample::now(pid, &[]);
        let st = calls("sip", &disp_sip, "sip-xdp-flood", &dir).status()?;
        let c1 = CpuSample::now(pid, &[]);
        let fst = flood.wait()?;
        if !st.success() || !fst.success() {
            bail!("generator under flood failed: calls {st}, flood {fst}");
        }
        k.stop()?;
        let s = read_json(&dir.join("switchyard.json"))?;
        let g = read_json(&dir.join("summary.json"))?;
        let f = read_json(&flood_dir.join("summary.json"))?;
        let calls_n = num(&s, &["router", "new_dialogs"]).max(1.0);
        let mut row = json!({
            "stage": "switchyard xdp (sip + flood)",
            "offered": num(&g, &["offered_cps"]),
            "achieved_per_s": num(&g, &["achieved_cps"]),
            "failed": num(&g, &["failed_calls"]),
            "p50_us": num(&g, &["latency_us", "invite_200", "p50_us"]),
            "p99_us": num(&g, &["latency_us", "invite_200", "p99_us"]),
            "dispatcher_cpu_ns_per_call": num(&s, &["dispatcher_cpu_ns"]) / calls_n,
            "flood_offered_per_s": cfg.blast_rate,
            "flood_sent_per_s": num(&f, &["sent_cps"]),
            "flood_dropped_in_xdp_per_s": num(&s, &["xdp", "dropped_rate"]) / secs as f64,
            "generator": g,
            "switchyard": s,
        });
        let done = num(&g, &["completed_calls"]);
        add_costs(
            &mut row,
            done,
            Some(&g),
            c1.since(&c0),
            Some(&in_chassis(&s)),
        );
        rows.push(row);
        invite_hgrms.push(("xdp + flood", dir.join("invite_200.hgrm")));
    }

    // 5. The ladder: the SIP call stage at each rate, on each backend; the knee is the highest
    // rate with no failed call and INVITE→200 p99 within the bound.
    let mut knees = serde_json::Map::new();
    if !cfg.ladder.is_empty() {
        for backend in ["xdp", "udp"] {
            let mut steps = Vec::new();
            for &rate in &cfg.ladder {
                eprintln!(
                    "bench: ladder, switchyard {backend}, sip calls at {rate}/s for {} s",
                    cfg.ladder_seconds
                );
                let dir = out.join(format!("ladder-{backend}-{rate}"));
                std::fs::create_dir_all(&dir)?;
                let k = start_switchyard(backend, &dir)?;
                let pid = k.pid();
                let label = format!("ladder-{backend}-{rate}");
                let c0 = CpuSample::now(pid, &[]);
                let st =
                    calls_at("sip", &disp_sip, &label, &dir, rate, cfg.ladder_seconds).status()?;
                let c1 = CpuSample::now(pid, &[]);
                if !st.success() {
                    bail!("generator (ladder {backend} {rate}/s) failed: {st}");
                }
                k.stop()?;
                let s = read_json(&dir.join("switchyard.json"))?;
                let g = read_json(&dir.join("summary.json"))?;
                let mut row = call_row(&format!("ladder {backend} {rate}/s (sip calls)"), &g, &s);
                let done = num(&g, &["completed_calls"]);
                add_costs(
                    &mut row,
                    done,
                    Some(&g),
                    c1.since(&c0),
                    Some(&in_chassis(&s)),
                );
                let (failed, p99) = (num(&row, &["failed"]), num(&row, &["p99_us"]));
                let pass = step_passes(failed, p99, cfg.p99_ms);
                row["ladder_rate"] = json!(rate);
                row["passes"] = json!(pass);
                steps.push((rate, failed, p99));
                rows.push(row);
            }
            knees.insert(
                format!("ladder_knee_{backend}_calls_per_s"),
                knee(&steps, cfg.p99_ms).map_or_else(
                    || {
                        json!(format!(
                            "none (no step had 0 failed and p99 <= {} ms)",
                            cfg.p99_ms
                        ))
                    },
                    |r| json!(r),
                ),
            );
        }
    }

    // 6. The peer: Kamailio's dispatcher and Switchyard in front of the same remote processors
    // (`switchyard-processor` processes in the dispatcher namespace), the same generator: a
    // ladder of each, interleaved rate by rate, and (`--peer-rate`) single-rate runs of
    // Switchyard on both backends and Kamailio.
    let mut peer_ladders = serde_json::Map::new();
    let mut peer_ladder_ratios = serde_json::Map::new();
    if let Some(Peer::Kamailio) = cfg.peer {
        let kamailio = kamailio_binary()?;
        let proc_bin = bin("switchyard-processor");
        if !proc_bin.exists() {
            bail!(
                "{} is missing (build with `cargo build --release -p processor`)",
                proc_bin.display()
            );
        }
        let psecs = cfg.peer_seconds;
        let n = cfg.processors.max(1);
        let report = format!("{}:5062", testbed::DISP_V4);
        let proc_addrs: Vec<String> = (0..n)
            .map(|i| format!("{}:{}", testbed::DISP_V4, PEER_PROCESSOR_PORT + i))
            .collect();
        let start_processors = |dir: &Path, key: &Path| -> anyhow::Result<Vec<Killer>> {
            let mut ps = Vec::new();
            for (i, addr) in proc_addrs.iter().enumerate() {
                let mut c = Testbed::exec(&tb.disp_ns, proc_bin.to_str().unwrap_or_default());
                c.args(["--listen", addr, "--id", &i.to_string()])
                    .args(["--processors", &n.to_string(), "--report-to", &report])
                    .args(["--report-interval-ms", "100", "--core", "1"])
                    // Errors only: not the warning that tags are unauthenticated (as in the
                    // other stages, no tag key is used).
                    .args(["--log-level", "error"])
                    .arg("--report-key-file")
                    .arg(key)
                    .arg("--stats-json")
                    .arg(dir.join(format!("processor-{i}.json")))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null());
                ps.push(Killer(Some(
                    c.spawn().context("starting switchyard-processor")?,
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
            Ok(ps)
        };
        let stop_processors = |ps: Vec<Killer>| {
            for p in ps {
                if let Err(e) = p.stop() {
                    eprintln!("bench: warning: switchyard-processor: {e:#}");
                }
            }
        };
        let peer_dir = out.join("peer");
        std::fs::create_dir_all(&peer_dir)?;
        let key = peer_dir.join("report.key");
        std::fs::write(&key, "switchyard bench report key\n")?;
        let key_s = key.to_str().unwrap_or_default().to_owned();
        let version = kamailio_version(&kamailio)?;
        let modules = kamailio_modules(&kamailio);
        // One run of Switchyard (`backend`) with the remote processors at `rate`: its row.
        let sy_run = |backend: &str, rate: u64, dir: &Path, stage: &str| -> anyhow::Result<Value> {
            eprintln!(
                "bench: peer, switchyard {backend} with {n} remote processors, sip calls at {rate}/s for {psecs} s"
            );
            std::fs::create_dir_all(dir)?;
            let ps = start_processors(dir, &key)?;
            let mut extra: Vec<&str> = Vec::new();
            for a in &proc_addrs {
                extra.extend(["--remote-processor", a.as_str()]);
            }
            extra.extend(["--report-listen", &report, "--report-key-file", &key_s]);
            let k = start_switchyard_in(backend, dir, 0, &extra)?;
            let pid = k.0.as_ref().map_or(0, Child::id);
            let remote = pids(&ps);
            let cpu0 = group_cpu_ns(pid, false);
            let c0 = CpuSample::now(None, &remote);
            let label = format!("peer-switchyard-{backend}-{rate}");
            let st = calls_at("sip", &disp_sip, &label, dir, rate, psecs).status()?;
            let c1 = CpuSample::now(None, &remote);
            let cpu1 = group_cpu_ns(pid, false);
            if !st.success() {
                bail!("generator (peer stage, switchyard {backend} {rate}/s) failed: {st}");
            }
            k.stop()?;
            stop_processors(ps);
            let s = read_json(&dir.join("switchyard.json"))?;
            let g = read_json(&dir.join("summary.json"))?;
            let mut row = call_row(stage, &g, &s);
            row["process_cpu_ns_per_call"] =
                json!(cpu1.saturating_sub(cpu0) as f64 / num(&g, &["completed_calls"]).max(1.0));
            row["remote_processors"] = json!(n);
            let done = num(&g, &["completed_calls"]);
            let remote_stats = remote_stats(dir, n);
            add_costs(&mut row, done, Some(&g), c1.since(&c0), Some(&remote_stats));
            Ok(row)
        };
        // One run of Kamailio in front of the same processors at `rate`: its row.
        let kam_run = |rate: u64, dir: &Path, stage: &str| -> anyhow::Result<Value> {
            eprintln!(
                "bench: peer, kamailio dispatcher with the same {n} processors, sip calls at {rate}/s for {psecs} s"
            );
            std::fs::create_dir_all(dir)?;
            let list = dir.join("dispatcher.list");
            std::fs::write(&list, dispatcher_list(&proc_addrs))?;
            let cfg_path = dir.join("kamailio.cfg");
            let listen = format!("{}:{KAMAILIO_PORT}", testbed::DISP_V4);
            std::fs::write(
                &cfg_path,
                kamailio_cfg(&listen, &list, KAMAILIO_CHILDREN, &modules),
            )?;
            let ps = start_processors(dir, &key)?;
            let kam = Kamailio::start(&tb.disp_ns, &kamailio, dir, &cfg_path)?;
            let remote = pids(&ps);
            let cpu0 = group_cpu_ns(kam.pid, true);
            let c0 = CpuSample::now(None, &remote);
            let label = format!("peer-kamailio-{rate}");
            let st = calls_at("sip", &listen, &label, dir, rate, psecs).status()?;
            let c1 = CpuSample::now(None, &remote);
            let cpu1 = group_cpu_ns(kam.pid, true);
            let procs = group_pids(kam.pid).len();
            kam.stop()?;
            stop_processors(ps);
            if !st.success() {
                bail!("generator (peer stage, kamailio {rate}/s) failed: {st}");
            }
            let g = read_json(&dir.join("summary.json"))?;
            let completed = num(&g, &["completed_calls"]).max(1.0);
            let per_call = cpu1.saturating_sub(cpu0) as f64 / completed;
            let mut row = json!({
                "stage": stage,
                "offered": num(&g, &["offered_cps"]),
                "achieved_per_s": num(&g, &["achieved_cps"]),
                "failed": num(&g, &["failed_calls"]),
                "p50_us": num(&g, &["latency_us", "invite_200", "p50_us"]),
                "p99_us": num(&g, &["latency_us", "invite_200", "p99_us"]),
                "dispatcher_cpu_ns_per_call": per_call,
                "process_cpu_ns_per_call": per_call,
                "kamailio_cpu_ns": cpu1.saturating_sub(cpu0),
                "kamailio_processes": procs,
                "kamailio_version": version,
                "remote_processors": n,
                "generator": g,
            });
            let remote_stats = remote_stats(dir, n);
            let done = num(&g, &["completed_calls"]);
            add_costs(&mut row, done, Some(&g), c1.since(&c0), Some(&remote_stats));
            Ok(row)
        };
        if let Some(rate) = cfg.peer_rate {
            for backend in ["xdp", "udp"] {
                let stage = format!("switchyard {backend} (sip calls, remote processors)");
                let dir = peer_dir.join(format!("switchyard-{backend}"));
                rows.push(sy_run(backend, rate, &dir, &stage)?);
            }
            rows.push(kam_run(
                rate,
                &peer_dir.join("kamailio"),
                "kamailio (sip calls)",
            )?);
        }
        // The ladders, interleaved rate by rate (Kamailio then Switchyard at each), so that
        // whatever else the box is doing at the time weighs on both alike; each stops after
        // its first collapsed step.
        let kam_rates = ladder_rates(&cfg.peer_ladder);
        let sy_rates = ladder_rates(&cfg.peer_switchyard_ladder);
        if !kam_rates.is_empty() || !sy_rates.is_empty() {
            let mut kam_steps: Vec<PeerStep> = Vec::new();
            let mut sy_steps: Vec<PeerStep> = Vec::new();
            let (mut kam_stop, mut sy_stop): (Option<String>, Option<String>) = (None, None);
            for rate in ladder_rates(&[kam_rates.clone(), sy_rates.clone()].concat()) {
                for who in ["kamailio", "switchyard xdp"] {
                    let (rates, steps, stop) = if who == "kamailio" {
                        (&kam_rates, &mut kam_steps, &mut kam_stop)
                    } else {
                        (&sy_rates, &mut sy_steps, &mut sy_stop)
                    };
                    if !rates.contains(&rate) || stop.is_some() {
                        continue;
                    }
                    let mut row = if who == "kamailio" {
                        let dir = peer_dir.join(format!("ladder-kamailio-{rate}"));
                        kam_run(rate, &dir, &format!("peer kamailio {rate}/s (sip calls)"))?
                    } else {
                        let dir = peer_dir.join(format!("ladder-switchyard-xdp-{rate}"));
                        let stage = format!("peer switchyard xdp {rate}/s (remote processors)");
                        sy_run("xdp", rate, &dir, &stage)?
                    };
                    let (failed, p99) = (num(&row, &["failed"]), num(&row, &["p99_us"]));
                    row["peer_ladder"] = json!(who);
                    row["ladder_rate"] = json!(rate);
                    row["passes"] = json!(step_passes(failed, p99, cfg.p99_ms));
                    let offered = num(&row, &["generator", "offered_calls"]);
                    if step_collapsed(failed, offered) {
                        let above: Vec<String> = rates
                            .iter()
                            .filter(|&&r| r > rate)
                            .map(u64::to_string)
                            .collect();
                        let why = format!(
                            "{rate}/s collapsed ({failed} of {offered} calls failed){}",
                            if above.is_empty() {
                                String::new()
                            } else {
                                format!(", not run: {}", above.join(","))
                            }
                        );
                        eprintln!("bench: peer ladder, {who}: {why}");
                        *stop = Some(why);
                    }
                    steps.extend(PeerStep::from_row(&row));
                    rows.push(row);
                }
            }
            peer_ladders.insert(
                "kamailio".into(),
                ladder_summary(&kam_steps, cfg.p99_ms, kam_stop.as_deref()),
            );
            peer_ladders.insert(
                "switchyard xdp".into(),
                ladder_summary(&sy_steps, cfg.p99_ms, sy_stop.as_deref()),
            );
            peer_ladder_ratios = peer_ratios(&kam_steps, &sy_steps, "switchyard_xdp", cfg.p99_ms);
        }
    }
    drop(tb);

    // 7. Dispatcher threads: blast and SIP calls, each backend, once per thread count.
    let thread_ratios = if cfg.dispatcher_threads.iter().any(|&n| n != 1) {
        threads_stage(cfg, &out, &sy, &gen, &mut rows)?
    } else {
        serde_json::Map::new()
    };

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
        "flood_sent_over_offered": get("switchyard xdp (sip + flood)", "flood_sent_per_s") / get("switchyard xdp (sip + flood)", "flood_offered_per_s"),
    });
    let mut ratios = ratios;
    if let Some(m) = ratios.as_object_mut() {
        m.extend(knees);
        m.extend(thread_ratios);
        m.extend(peer_ladder_ratios);
        if cfg.peer.is_some() && cfg.peer_rate.is_some() {
            let k = "kamailio (sip calls)";
            for b in ["xdp", "udp"] {
                let sy = format!("switchyard {b} (sip calls, remote processors)");
                let q = |num_stage: &str, den_stage: &str, key: &str| {
                    json!(get(num_stage, key) / get(den_stage, key))
                };
                m.insert(
                    format!("kamailio_over_switchyard_{b}_dispatcher_cpu_per_call"),
                    q(k, &sy, "dispatcher_cpu_ns_per_call"),
                );
                m.insert(
                    format!("kamailio_over_switchyard_{b}_process_cpu_per_call"),
                    q(k, &sy, "process_cpu_ns_per_call"),
                );
                m.insert(
                    format!("switchyard_{b}_over_kamailio_achieved"),
                    q(&sy, k, "achieved_per_s"),
                );
                m.insert(
                    format!("kamailio_over_switchyard_{b}_p99"),
                    q(k, &sy, "p99_us"),
                );
            }
        } else if cfg.peer.is_none() {
            m.insert("peer".into(), json!("not run (--peer kamailio)"));
        }
    }
    let peer_ladders = Value::Object(peer_ladders);
    let mut table = render(&rows, &ratios);
    if !cfg.switchyard_args.is_empty() {
        table.push_str(&format!(
            "every switchyard run also had: {}\n",
            cfg.switchyard_args.join(" ")
        ));
    }
    table.push_str(&render_peer(&peer_ladders, cfg.p99_ms));
    table.push_str(&render_threads(&rows));
    println!("{table}");
    let mut files = vec![out.join("table.txt"), out.join("bench.json")];
    std::fs::write(&files[0], &table)?;
    std::fs::write(
        &files[1],
        serde_json::to_vec_pretty(&json!({
            "quick": cfg.quick,
            "switchyard_args": cfg.switchyard_args,
            "stages": rows,
            "ratios": ratios,
            "peer_ladders": peer_ladders,
        }))?,
    )?;
    let title = format!(
        "sip calls, INVITE→200 by backend: {}/s offered for {secs} s → {disp_sip}",
        cfg.call_rate
    );
    if let Some(p) = combined_plot(&gen, &out.join(COMBINED_INVITE), &title, &invite_hgrms) {
        println!("combined plot: {}", p.display());
        files.push(p);
    }
    // Every stage must have produced numbers (the only thing --quick asserts). A peer ladder
    // step that collapsed may have completed nothing: its failed count is its number.
    for r in &rows {
        let v = r
            .get("received_per_s")
            .or_else(|| r.get("achieved_per_s"))
            .and_then(Value::as_f64);
        let collapsed = r.get("peer_ladder").is_some() && num(r, &["failed"]) > 0.0;
        if !v.is_some_and(|x| x.is_finite() && (x > 0.0 || (collapsed && x == 0.0))) {
            bail!("stage {} produced no numbers: {r}", r["stage"]);
        }
    }
    Ok(BenchRun { dir: out, files })
}

/// Starts `switchyard run` in `tb`'s dispatcher namespace on the testbed's well-known
/// addresses with `processors` in-chassis processors and the bench's policy, writing its exit
/// report to `dir`, then `extra` flags (pinning, remote processors); waits 1.5 s for it to come
/// up.
fn start_switchyard_on(
    tb: &Testbed,
    sy: &Path,
    cfg: &BenchConfig,
    backend: &str,
    dir: &Path,
    processors: u16,
    extra: &[&str],
) -> anyhow::Result<Killer> {
    let mut c = Testbed::exec(&tb.disp_ns, sy.to_str().unwrap_or_default());
    c.args(["run", "--backend", backend])
        .args(["--sip", &format!("{}:5060", testbed::DISP_V4)])
        .args(["--mgcp", &format!("{}:2427", testbed::DISP_V4)])
        .args([
            "--processors",
            &processors.to_string(),
            "--policy",
            &cfg.policy,
        ])
        .args(["--log-level", "warn"])
        .arg("--stats-json")
        .arg(dir.join("switchyard.json"))
        .stdout(Stdio::null());
    if backend == "xdp" {
        c.args(["--iface", &tb.disp_if]);
    }
    c.args(extra);
    c.args(&cfg.switchyard_args);
    let child = c.spawn().context("starting switchyard")?;
    std::thread::sleep(Duration::from_millis(1500));
    Ok(Killer(Some(child)))
}

/// The threads stage: a testbed of its own with as many rx queues (and app-side tx queues,
/// so flows spread by their hash) as the largest thread count; for each count N, the blast and
/// the SIP call stage on each backend with `--dispatcher-threads N` and
/// [`dispatcher_cores`]. Pushes its rows and returns its ratios: each count against the first,
/// decided datagrams/s (calls/s) and dispatcher CPU per datagram (per call), plus a note that
/// on a 2-core box the generator shares the cores.
fn threads_stage(
    cfg: &BenchConfig,
    out: &Path,
    sy: &Path,
    gen: &Path,
    rows: &mut Vec<Value>,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let counts = &cfg.dispatcher_threads;
    let queues = counts.iter().copied().max().unwrap_or(1).max(2);
    let tb = Testbed::up(&crate::testbed::unique_name("bt"), queues as u32)?;
    let ncpu = std::thread::available_parallelism().map_or(2, usize::from);
    let secs = cfg.threads_seconds.max(1);
    let disp_sip = format!("{}:5060", testbed::DISP_V4);
    let blast_threads = cfg.gen_threads.max(BLAST_THREADS);
    let gen_cores = |threads: usize| -> Vec<usize> {
        if threads <= 1 {
            vec![0]
        } else {
            vec![0, 1]
        }
    };
    let start = |backend: &str, dir: &Path, n: usize, cores: &[usize]| -> anyhow::Result<Killer> {
        let cores_s = cores
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let n_s = n.to_string();
        let mut args = vec!["--dispatcher-threads", &n_s, "--dispatcher-cores", &cores_s];
        // As in the other stages, processors share the dispatcher cores while those leave the
        // generator's core 0 alone; once they hold every core the processors run unpinned.
        if !cores.contains(&0) {
            args.extend_from_slice(&["--processor-cores", &cores_s]);
        }
        start_switchyard_on(&tb, sy, cfg, backend, dir, cfg.processors, &args)
    };
    let generator = |kind: &str, dir: &Path, threads: usize, rate: u64| -> Command {
        let mut g = Testbed::exec(&tb.app_ns, gen.to_str().unwrap_or_default());
        g.args([
            kind,
            "--target",
            &disp_sip,
            "--local-ip",
            testbed::APP_V4,
            "--quiet",
        ])
        .args(gen_thread_args(threads))
        .args(["--sockets", &THREADS_STAGE_SOCKETS.to_string()])
        .args(["--rate", &rate.to_string(), "--duration", &secs.to_string()])
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null());
        if kind == "sip" {
            g.args(["--hold-ms", "0", "--timeout-ms", "4000"]);
        }
        g
    };
    for &n in counts {
        let cores = dispatcher_cores(n, ncpu);
        for (what, kind) in [("blast", "blast"), ("sip calls", "sip")] {
            for backend in ["xdp", "udp"] {
                let (threads, rate) = if kind == "blast" {
                    (blast_threads, cfg.blast_rate)
                } else {
                    (cfg.gen_threads, cfg.call_rate)
                };
                let shared = cores.iter().any(|c| gen_cores(threads).contains(c));
                let stage = threads_stage_name(n, backend, what, &cores, shared);
                eprintln!("bench: {stage}, {rate}/s offered for {secs} s");
                let dir = out.join(format!("threads-{n}-{kind}-{backend}"));
                std::fs::create_dir_all(&dir)?;
                let k = start(backend, &dir, n, &cores)?;
                let pid = k.pid();
                let c0 = CpuSample::now(pid, &[]);
                let st = generator(kind, &dir, threads, rate).status()?;
                let c1 = CpuSample::now(pid, &[]);
                if !st.success() {
                    bail!("generator ({stage}) failed: {st}");
                }
                std::thread::sleep(Duration::from_millis(500));
                k.stop()?;
                let s = read_json(&dir.join("switchyard.json"))?;
                let g = read_json(&dir.join("summary.json")).ok();
                let threads_rows = per_thread(&s);
                if threads_rows.len() != n {
                    bail!(
                        "{stage}: switchyard reported {} dispatcher_threads rows for --dispatcher-threads {n} (a binary without per-thread counters?)",
                        threads_rows.len()
                    );
                }
                let procs = in_chassis(&s);
                let mut row = if kind == "blast" {
                    let handled = num(&s, &["router", "sip"]);
                    let mut row = json!({
                        "stage": stage,
                        "offered": blast_offered(g.as_ref(), rate),
                        "received_per_s": handled / blast_span(g.as_ref(), secs),
                        "forwarded": num(&s, &["router", "new_dialogs"]),
                        "overload_503": num(&s, &["router", "overload"]),
                        "dispatcher_cpu_ns_per_msg": num(&s, &["dispatcher_cpu_ns"]) / handled.max(1.0),
                        "raw": s,
                    });
                    add_costs(&mut row, handled, g.as_ref(), c1.since(&c0), Some(&procs));
                    row
                } else {
                    let g = g.context("the generator wrote no summary.json")?;
                    let mut row = call_row(&stage, &g, &s);
                    let done = num(&g, &["completed_calls"]);
                    add_costs(&mut row, done, Some(&g), c1.since(&c0), Some(&procs));
                    row
                };
                row["dispatcher_threads"] = json!(n);
                row["dispatcher_cores"] = json!(cores);
                row["cores_shared_with_generator"] = json!(shared);
                row["threads_kind"] = json!(kind);
                row["threads_backend"] = json!(backend);
                row["per_thread"] = json!(threads_rows);
                rows.push(row);
            }
        }
    }
    drop(tb);
    let find = |n: usize, kind: &str, backend: &str| {
        rows.iter().find(|r| {
            r["dispatcher_threads"] == json!(n)
                && r["threads_kind"] == kind
                && r["threads_backend"] == backend
        })
    };
    let mut m = serde_json::Map::new();
    let base = counts[0];
    for &n in counts.iter().skip(1).filter(|&&n| n != base) {
        for backend in ["xdp", "udp"] {
            for (kind, rate_key, cpu_key, name) in [
                (
                    "blast",
                    "received_per_s",
                    "dispatcher_cpu_ns_per_msg",
                    "blast_datagrams_per_s",
                ),
                (
                    "sip",
                    "achieved_per_s",
                    "dispatcher_cpu_ns_per_call",
                    "sip_calls_per_s",
                ),
            ] {
                let (Some(a), Some(b)) = (find(n, kind, backend), find(base, kind, backend)) else {
                    continue;
                };
                m.insert(
                    format!("threads_{n}_over_{base}_{backend}_{name}"),
                    json!(num(a, &[rate_key]) / num(b, &[rate_key])),
                );
                let per = if kind == "blast" { "datagram" } else { "call" };
                m.insert(
                    format!("threads_{n}_over_{base}_{backend}_{kind}_dispatcher_cpu_per_{per}"),
                    json!(num(a, &[cpu_key]) / num(b, &[cpu_key])),
                );
            }
        }
    }
    if ncpu <= 2 {
        m.insert(
            "threads_note".into(),
            json!(format!(
                "{ncpu} cores: the generator, the processors and the dispatcher threads share them (\"shared\": a dispatcher core is also a generator core), so the rate ratio is bound by the box; the per-thread CPU per datagram (below the table) is what predicts scaling on a bigger one"
            )),
        );
    }
    Ok(m)
}

/// The threads stage's per-thread lines under the table: for each of its rows, each thread's
/// core, datagrams, share and CPU per datagram. Empty without a threads stage.
fn render_threads(rows: &[Value]) -> String {
    let mut t = String::new();
    for r in rows.iter().filter(|r| r.get("per_thread").is_some()) {
        if t.is_empty() {
            t.push_str("\ndispatcher threads (CPU per datagram each thread decided):\n");
        }
        t.push_str(&format!("  {}\n", r["stage"].as_str().unwrap_or("?")));
        for th in r["per_thread"].as_array().into_iter().flatten() {
            let core = th["core"]
                .as_u64()
                .map_or("-".to_owned(), |c| c.to_string());
            t.push_str(&format!(
                "    thread {} core {core:>2}: {:>10.0} datagrams ({:>4.1} %), {:>7.2} µs CPU per datagram\n",
                th["index"].as_u64().unwrap_or(0),
                num(th, &["datagrams"]),
                100.0 * num(th, &["share"]),
                num(th, &["cpu_ns_per_datagram"]) * 1e-3,
            ));
        }
    }
    t
}

/// What a blast actually offered per second (`offered_cps` of its `summary.json`: below
/// `--blast-rate` when the generator fell behind its schedule), else the rate asked for.
fn blast_offered(g: Option<&Value>, asked: u64) -> f64 {
    g.map(|g| num(g, &["offered_cps"]))
        .filter(|x| x.is_finite() && *x > 0.0)
        .unwrap_or(asked as f64)
}

/// The seconds a blast's datagrams were sent over: the stage length, or the generator's send
/// span when it fell behind and sent for longer. Rates received are divided by this, so that a
/// late generator does not make a receiver look faster than what it was sent.
pub fn blast_span(g: Option<&Value>, secs: u64) -> f64 {
    let span = g.map_or(0.0, |g| num(g, &["send_span_s"]));
    let secs = secs as f64;
    if span.is_finite() && span > secs {
        span
    } else {
        secs
    }
}

/// A call stage's row from the generator's `summary.json` and Switchyard's exit counters.
fn call_row(stage: &str, g: &Value, s: &Value) -> Value {
    let calls = num(s, &["router", "new_dialogs"]).max(1.0);
    json!({
        "stage": stage,
        "offered": num(g, &["offered_cps"]),
        "achieved_per_s": num(g, &["achieved_cps"]),
        "failed": num(g, &["failed_calls"]),
        "p50_us": num(g, &["latency_us", "invite_200", "p50_us"]),
        "p99_us": num(g, &["latency_us", "invite_200", "p99_us"]),
        "dispatcher_cpu_ns_per_call": num(s, &["dispatcher_cpu_ns"]) / calls,
        "generator": g,
        "switchyard": s,
    })
}

/// A ladder step passes with no failed call and INVITE→200 p99 within `p99_ms`.
pub fn step_passes(failed: f64, p99_us: f64, p99_ms: f64) -> bool {
    failed == 0.0 && p99_us.is_finite() && p99_us <= p99_ms * 1000.0
}

/// The knee of a ladder: the highest rate among its steps `(rate, failed calls, p99 µs)` that
/// passes ([`step_passes`]); None when none does.
pub fn knee(steps: &[(u64, f64, f64)], p99_ms: f64) -> Option<u64> {
    steps
        .iter()
        .filter(|(_, failed, p99)| step_passes(*failed, *p99, p99_ms))
        .map(|(rate, _, _)| *rate)
        .max()
}

/// A peer-stage ladder step *collapsed* (its ladder stops there) when more than this fraction
/// of the calls it offered failed. A proxy past its knee only gets worse at higher rates, and
/// each collapsed step costs its full length plus the generator's 4 s timeout, so the rates
/// above it are skipped instead of run.
pub const COLLAPSE_FAILED_FRACTION: f64 = 0.01;

/// Whether a step in which `failed` of the `offered` calls failed collapsed: more than
/// [`COLLAPSE_FAILED_FRACTION`] of them failed, or there is no figure to go on (nothing
/// offered, or a count missing), which is no reason to go on climbing either.
pub fn step_collapsed(failed: f64, offered: f64) -> bool {
    if !(offered.is_finite() && offered > 0.0 && failed.is_finite()) {
        return true;
    }
    failed > COLLAPSE_FAILED_FRACTION * offered
}

/// A ladder's rates as run: increasing, without repeats or 0. A ladder that stops at its
/// first collapsed step has to climb, whatever order the rates were given in.
pub fn ladder_rates(rates: &[u64]) -> Vec<u64> {
    let mut r: Vec<u64> = rates.iter().copied().filter(|&x| x > 0).collect();
    r.sort_unstable();
    r.dedup();
    r
}

/// Switchyard's ladder in the peer stage: every rate of the peer's ladder (so that there is a
/// same-rate comparison at each) and of the main ladder, and, when `reach` is set and neither
/// goes above the peer's top rate, 2× and 3× that top as well: a Switchyard knee capped at
/// the highest rate Kamailio was offered would only say "at least that". Empty when the
/// peer's ladder is (`--peer-ladder 0`): there is nothing to set it beside.
pub fn switchyard_peer_ladder(peer: &[u64], main: &[u64], reach: bool) -> Vec<u64> {
    let Some(&top) = ladder_rates(peer).last() else {
        return Vec::new();
    };
    let mut r = ladder_rates(&[peer, main].concat());
    if reach && r.last().is_some_and(|&m| m <= top) {
        r.extend([2 * top, 3 * top]);
    }
    r
}

/// One step of a peer-stage ladder: the figures its knee and ratios come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerStep {
    /// Calls/s offered.
    pub rate: u64,
    /// Failed calls.
    pub failed: f64,
    /// INVITE → 200 p99, µs.
    pub p99_us: f64,
    /// Completed calls/s.
    pub achieved_per_s: f64,
    /// Dispatcher CPU per completed call, ns: Switchyard's dispatcher thread, or all of
    /// Kamailio's processes (all of Kamailio is the dispatcher).
    pub dispatcher_cpu_ns: f64,
    /// The whole dispatcher process's CPU per completed call, ns (the like-for-like figure).
    pub process_cpu_ns: f64,
    /// The whole box's busy CPU per completed call, ns (NaN when unknown).
    pub box_cpu_ns: f64,
}

impl PeerStep {
    /// The step of a ladder row (`ladder_rate`, `failed`, `p99_us`, `achieved_per_s`,
    /// `dispatcher_cpu_ns_per_call`, `process_cpu_ns_per_call`, `box_cpu_ns_per_call`); None
    /// without a `ladder_rate`. Missing figures are NaN, which never passes.
    pub fn from_row(row: &Value) -> Option<Self> {
        Some(PeerStep {
            rate: row.get("ladder_rate")?.as_u64()?,
            failed: num(row, &["failed"]),
            p99_us: num(row, &["p99_us"]),
            achieved_per_s: num(row, &["achieved_per_s"]),
            dispatcher_cpu_ns: num(row, &["dispatcher_cpu_ns_per_call"]),
            process_cpu_ns: num(row, &["process_cpu_ns_per_call"]),
            box_cpu_ns: num(row, &["box_cpu_ns_per_call"]),
        })
    }

    fn passes(&self, p99_ms: f64) -> bool {
        step_passes(self.failed, self.p99_us, p99_ms)
    }
}

/// The step at a ladder's knee ([`knee`]); None when no step passes.
pub fn knee_step(steps: &[PeerStep], p99_ms: f64) -> Option<PeerStep> {
    let t: Vec<(u64, f64, f64)> = steps.iter().map(|s| (s.rate, s.failed, s.p99_us)).collect();
    let k = knee(&t, p99_ms)?;
    steps.iter().find(|s| s.rate == k).copied()
}

/// Whether `knee` is the highest rate the ladder ran: the real knee may be higher, so it
/// (and a ratio over it) is a lower bound.
pub fn knee_is_lower_bound(steps: &[PeerStep], knee: u64) -> bool {
    steps.iter().map(|s| s.rate).max() == Some(knee)
}

/// The highest rate at which both ladders have a passing step: where a same-rate comparison of
/// CPU per call means something (a step that failed calls did less work per offered call).
pub fn highest_common_pass(
    a: &[PeerStep],
    b: &[PeerStep],
    p99_ms: f64,
) -> Option<(PeerStep, PeerStep)> {
    a.iter()
        .filter(|x| x.passes(p99_ms))
        .filter_map(|x| {
            b.iter()
                .find(|y| y.rate == x.rate && y.passes(p99_ms))
                .map(|y| (*x, *y))
        })
        .max_by_key(|(x, _)| x.rate)
}

/// One ladder's summary for `bench.json` (`peer_ladders`) and the lines under the table: the
/// rates run, the knee (null when none), whether it is a lower bound, the figures at the knee,
/// and `stopped` (why the ladder stopped early, null when it did not).
pub fn ladder_summary(steps: &[PeerStep], p99_ms: f64, stopped: Option<&str>) -> Value {
    let k = knee_step(steps, p99_ms);
    json!({
        "rates_run": steps.iter().map(|s| s.rate).collect::<Vec<_>>(),
        "knee_calls_per_s": k.map(|s| s.rate),
        "knee_is_lower_bound": k.is_some_and(|s| knee_is_lower_bound(steps, s.rate)),
        "at_knee": k.map(|s| json!({
            "p99_us": s.p99_us,
            "achieved_per_s": s.achieved_per_s,
            "dispatcher_cpu_ns_per_call": s.dispatcher_cpu_ns,
            "process_cpu_ns_per_call": s.process_cpu_ns,
            "box_cpu_ns_per_call": s.box_cpu_ns,
        })),
        "stopped": stopped,
    })
}

/// The peer ladders' ratios, Kamailio's steps `kam` against Switchyard's `sy` (`sy_key`, e.g.
/// `switchyard_xdp`, names Switchyard's side in the keys); each ratio is > 1 where Switchyard
/// does better:
/// - `peer_knee_kamailio_calls_per_s`, `peer_knee_<sy>_calls_per_s`: each one's knee (a
///   sentence when it has none);
/// - `<sy>_knee_over_kamailio_knee`: the knees' ratio;
/// - `kamailio_at_knee_over_<sy>_at_knee_{dispatcher,process}_cpu_per_call`: CPU per call of
///   each one *at its own knee*, Kamailio's over Switchyard's;
/// - `peer_same_rate_calls_per_s` and `kamailio_over_<sy>_{dispatcher_cpu_per_call,
///   process_cpu_per_call,p99}_at_same_rate`: the same-rate comparison at the highest rate
///   both pass;
/// - `<who>_knee_note`: when a knee is the highest rate its ladder ran (a lower bound, so the
///   knee ratio is one too when it is Switchyard's and an upper one when Kamailio's).
pub fn peer_ratios(
    kam: &[PeerStep],
    sy: &[PeerStep],
    sy_key: &str,
    p99_ms: f64,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    let none = |who: &str| {
        json!(format!(
            "none (no {who} step had 0 failed and p99 <= {p99_ms} ms)"
        ))
    };
    let (kk, sk) = (knee_step(kam, p99_ms), knee_step(sy, p99_ms));
    m.insert(
        "peer_knee_kamailio_calls_per_s".into(),
        kk.map_or_else(|| none("kamailio"), |s| json!(s.rate)),
    );
    m.insert(
        format!("peer_knee_{sy_key}_calls_per_s"),
        sk.map_or_else(|| none(&sy_key.replace('_', " ")), |s| json!(s.rate)),
    );
    match (kk, sk) {
        (Some(k), Some(s)) => {
            m.insert(
                format!("{sy_key}_knee_over_kamailio_knee"),
                json!(s.rate as f64 / k.rate as f64),
            );
            m.insert(
                format!("kamailio_at_knee_over_{sy_key}_at_knee_dispatcher_cpu_per_call"),
                json!(k.dispatcher_cpu_ns / s.dispatcher_cpu_ns),
            );
            m.insert(
                format!("kamailio_at_knee_over_{sy_key}_at_knee_process_cpu_per_call"),
                json!(k.process_cpu_ns / s.process_cpu_ns),
            );
        }
        _ => {
            m.insert(
                format!("{sy_key}_knee_over_kamailio_knee"),
                json!("not computed: a ladder has no knee"),
            );
        }
    }
    for (who, steps, k) in [("kamailio", kam, kk), (sy_key, sy, sk)] {
        if let Some(k) = k.filter(|k| knee_is_lower_bound(steps, k.rate)) {
            m.insert(
                format!("{who}_knee_note"),
                json!(format!(
                    "passed the highest rate it was offered ({}/s): its knee is at least that",
                    k.rate
                )),
            );
        }
    }
    match highest_common_pass(kam, sy, p99_ms) {
        Some((k, s)) => {
            m.insert("peer_same_rate_calls_per_s".into(), json!(k.rate));
            m.insert(
                format!("kamailio_over_{sy_key}_dispatcher_cpu_per_call_at_same_rate"),
                json!(k.dispatcher_cpu_ns / s.dispatcher_cpu_ns),
            );
            m.insert(
                format!("kamailio_over_{sy_key}_process_cpu_per_call_at_same_rate"),
                json!(k.process_cpu_ns / s.process_cpu_ns),
            );
            m.insert(
                format!("kamailio_over_{sy_key}_p99_at_same_rate"),
                json!(k.p99_us / s.p99_us),
            );
        }
        None => {
            m.insert(
                "peer_same_rate_calls_per_s".into(),
                json!("none (no rate at which both passed)"),
            );
        }
    }
    m
}

/// The peer ladders' lines under the table, from `peer_ladders` (name → [`ladder_summary`]):
/// each one's knee and CPU per call at it. Empty without peer ladders.
fn render_peer(ladders: &Value, p99_ms: f64) -> String {
    let Some(m) = ladders.as_object().filter(|m| !m.is_empty()) else {
        return String::new();
    };
    let mut t = format!(
        "\npeer ladders (knee: highest rate with 0 failed and p99 <= {p99_ms} ms; CPU µs per completed call at each one's own knee):\n"
    );
    for (name, l) in m {
        let rates = l["rates_run"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(",");
        t.push_str(&format!("  {name:<16} "));
        match l["knee_calls_per_s"].as_u64() {
            Some(k) => {
                let a = &l["at_knee"];
                let us = |key: &str| {
                    let x = num(a, &[key]) * 1e-3;
                    if x.is_finite() {
                        format!("{x:.2}")
                    } else {
                        "-".into()
                    }
                };
                t.push_str(&format!(
                    "knee {k:>6}/s{}: p99 {:.2} ms, disp {}, process {}, box {}",
                    if l["knee_is_lower_bound"] == json!(true) {
                        " (its top rate: at least)"
                    } else {
                        ""
                    },
                    num(a, &["p99_us"]) * 1e-3,
                    us("dispatcher_cpu_ns_per_call"),
                    us("process_cpu_ns_per_call"),
                    us("box_cpu_ns_per_call"),
                ));
            }
            None => t.push_str("no knee (no step passed)"),
        }
        t.push_str(&format!("; ran {rates}"));
        if let Some(why) = l["stopped"].as_str() {
            t.push_str(&format!("; stopped: {why}"));
        }
        t.push('\n');
    }
    t
}

/// First port of the peer stage's remote processors (on the dispatcher namespace's address).
pub const PEER_PROCESSOR_PORT: u16 = 5070;
/// Kamailio's SIP port in the peer stage (its own, not Switchyard's 5060).
pub const KAMAILIO_PORT: u16 = 5080;
/// Kamailio's UDP worker processes: one per core of the 2-core box.
pub const KAMAILIO_CHILDREN: u32 = 2;

/// The `kamailio` program: on PATH or in /usr/sbin (`cargo xtask setup` installs the Debian
/// package); an error saying so when it is not there.
fn kamailio_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("kamailio"))
        .find(|p| p.is_file())
        .context(
            "the peer stage needs Kamailio and `kamailio` is not installed: run `cargo xtask setup` \
             (it installs the Debian package `kamailio`), or `apt-get install kamailio`",
        )
}

/// `kamailio -v`'s first line (`version: kamailio 5.6.3 (x86_64/linux) ...`).
fn kamailio_version(kamailio: &Path) -> anyhow::Result<String> {
    let out = Command::new(kamailio)
        .arg("-v")
        .output()
        .with_context(|| format!("running {} -v", kamailio.display()))?;
    if !out.status.success() {
        bail!("{} -v failed: {}", kamailio.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Kamailio's module folder: the Debian multiarch path beside the binary's prefix.
fn kamailio_modules(kamailio: &Path) -> PathBuf {
    let prefix = kamailio
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/usr"));
    let lib = prefix.join("lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("kamailio/modules"))
        .find(|p| p.join("dispatcher.so").is_file())
        .unwrap_or_else(|| lib.join("x86_64-linux-gnu/kamailio/modules"))
}

/// The dispatcher module's list: every processor in set 1.
pub fn dispatcher_list(processors: &[String]) -> String {
    processors.iter().map(|a| format!("1 sip:{a}\n")).collect()
}

/// The peer stage's Kamailio configuration: stateful forwarding (`tm`) of each initial request
/// to a processor of set 1 picked round-robin by `ds_select_dst` (algorithm 4), no
/// `record_route`, so ACK and BYE go straight to the processor's Contact as with Switchyard; no
/// probing, no DNS, UDP only, `children` workers.
pub fn kamailio_cfg(listen: &str, list_file: &Path, children: u32, modules: &Path) -> String {
    format!(
        r#"#!KAMAILIO
# Written by `cargo xtask bench` (peer stage): Kamailio's dispatcher module in front of the
# same switchyard-processor instances Switchyard uses in this run.
debug=-1
log_stderror=yes
fork=yes
children={children}
auto_aliases=no
dns=no
rev_dns=no
disable_tcp=yes
enable_sctp=no
listen=udp:{listen}
mpath="{modules}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "dispatcher.so"

modparam("dispatcher", "list_file", "{list}")
modparam("dispatcher", "ds_ping_interval", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    # In-dialog requests go to the Contact (no Record-Route); relay any that come here.
    if (has_totag()) {{
        t_relay();
        exit;
    }}
    if (!ds_select_dst("1", "4")) {{
        sl_send_reply("503", "No Destination");
        exit;
    }}
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
"#,
        modules = modules.display(),
        list = list_file.display(),
    )
}

/// Kamailio run in the foreground (`-DD -E`) in its own process group, so that it and the
/// processes it forks can be accounted for and stopped without touching anything else.
struct Kamailio {
    child: Option<Child>,
    /// The main process (also the process group).
    pid: u32,
}

impl Kamailio {
    fn start(ns: &str, kamailio: &Path, dir: &Path, cfg: &Path) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let check = Command::new(kamailio)
            .arg("-c")
            .arg("-f")
            .arg(cfg)
            .output()
            .context("running kamailio -c")?;
        if !check.status.success() {
            bail!(
                "kamailio refuses {}: {}",
                cfg.display(),
                String::from_utf8_lossy(&check.stderr).trim()
            );
        }
        let log = std::fs::File::create(dir.join("kamailio.log"))?;
        let pid_file = dir.join("kamailio.pid");
        // Everything on the dispatcher side runs on core 1, as Switchyard and the processors.
        let mut c = Testbed::exec(ns, "taskset");
        c.args(["-c", "1"])
            .arg(kamailio)
            .args(["-DD", "-E", "-m", "512", "-M", "16", "-f"])
            .arg(cfg)
            .arg("-P")
            .arg(&pid_file)
            .arg("-Y")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = c.spawn().context("starting kamailio")?;
        let pid = child.id();
        let mut k = Kamailio {
            child: Some(child),
            pid,
        };
        std::thread::sleep(Duration::from_millis(1500));
        if let Some(c) = k.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                k.child = None;
                let log = std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                bail!(
                    "kamailio exited at start ({st}); the end of {}:\n{}",
                    dir.join("kamailio.log").display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if written.trim() != pid.to_string() {
            eprintln!(
                "bench: warning: kamailio's pid file says {:?}, its process is {pid}",
                written.trim()
            );
        }
        Ok(k)
    }

    /// SIGTERM (Kamailio stops its children and exits), waited for; then SIGKILL to its
    /// process group if anything is left.
    fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let mut done = None;
        for _ in 0..200 {
            if let Some(s) = c.try_wait()? {
                done = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_group(self.pid);
        let _ = c.wait();
        match done {
            Some(_) => Ok(()),
            None => bail!("kamailio did not stop within 10 s of SIGTERM"),
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            kill_group(self.pid);
            let _ = c.wait();
        }
    }
}

/// SIGKILL to the processes left in process group `pgid` (one we made with `process_group(0)`).
fn kill_group(pgid: u32) {
    if !group_pids(pgid).is_empty() {
        // SAFETY: signalling a process group we created (its leader is our child).
        unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (state is `[0]`, ppid `[1]`,
/// pgrp `[2]`, utime `[11]`, stime `[12]`).
pub fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .map_or("", |i| &stat[i + 1..])
        .split_whitespace()
        .collect()
}

/// The PIDs whose process group is `pgid`.
fn group_pids(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| stat_fields(&s).get(2) == Some(&pgid.to_string().as_str()))
        })
        .collect()
}

/// CPU time (ns) used so far by every thread of process `pid` (user + system): each thread's
/// `schedstat` run time, else its `stat` utime + stime in clock ticks.
fn process_cpu_ns(pid: u32) -> u64 {
    let tick = clock_tick();
    threads_cpu_ns(pid, |_| true, tick)
}

/// CPU time (ns) of the threads of process `pid` whose name (`comm`) `keep` accepts.
fn threads_cpu_ns(pid: u32, keep: impl Fn(&str) -> bool, tick: u64) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| keep(c.trim_end()))
        })
        .map(|t| {
            let p = t.path();
            if let Some(ns) = std::fs::read_to_string(p.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                return ns;
            }
            std::fs::read_to_string(p.join("stat")).map_or(0, |s| {
                let f = stat_fields(&s);
                let ticks: u64 = [11, 12]
                    .iter()
                    .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
                    .sum();
                ticks * 1_000_000_000 / tick
            })
        })
        .sum()
}

fn clock_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as u64,
        _ => 100,
    }
}

/// What `/proc/stat`'s first line says about all CPUs together, in ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoxTimes {
    /// Busy: user, nice, system, irq and softirq (not idle, iowait or steal; guest time is
    /// already in user).
    pub busy_ns: u64,
    /// Steal: time the hypervisor ran something else while one of our vCPUs wanted to run.
    /// Not ours, so not in `busy_ns`; a stage with much of it ran on a contended host.
    pub steal_ns: u64,
    /// Idle and iowait. Unlike the busy fields, which the kernel samples at each tick (and
    /// which threads that wake thousands of times a second, in step with timers, can alias
    /// by a factor of ten either way), a tickless kernel measures idle time exactly, so the
    /// stages take the box's busy time as what the CPUs could run minus idle and steal.
    pub idle_ns: u64,
}

/// Parses `/proc/stat`'s `cpu` line ([`BoxTimes`]); None when the line is not there.
pub fn box_times(proc_stat: &str, tick: u64) -> Option<BoxTimes> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if f.len() < 4 {
        return None;
    }
    let ns = |t: u64| t * 1_000_000_000 / tick.max(1);
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| f.get(i)).sum();
    let idle: u64 = [3, 4].iter().filter_map(|&i| f.get(i)).sum();
    Some(BoxTimes {
        busy_ns: ns(busy),
        steal_ns: ns(f.get(7).copied().unwrap_or(0)),
        idle_ns: ns(idle),
    })
}

/// The number of CPUs `/proc/stat` lists (`cpuN` lines), at least 1.
pub fn stat_cpus(proc_stat: &str) -> u64 {
    let n = proc_stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    (n as u64).max(1)
}

/// Monotonic time, ns since the first call (only differences are used).
fn monotonic_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// CPU counters read at the start and at the end of a stage's measured period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// All CPUs' busy time, ns: in a sample, `/proc/stat`'s tick-sampled busy fields
    /// ([`BoxTimes::busy_ns`]); after [`CpuSample::since`], the period's CPU capacity less
    /// its idle and steal time (see [`BoxTimes::idle_ns`] for why).
    pub box_ns: u64,
    /// All CPUs' idle and iowait time (`/proc/stat`), ns.
    pub idle_ns: u64,
    /// All CPUs' steal time (`/proc/stat`), ns.
    pub steal_ns: u64,
    /// Monotonic clock, ns (after [`CpuSample::since`]: the period's length).
    pub wall_ns: u64,
    /// CPUs of the machine.
    pub cpus: u64,
    /// The processors' CPU time: in-chassis `processor-*` threads of Switchyard plus every
    /// thread of the remote `switchyard-processor` processes, ns.
    pub processors_ns: u64,
}

impl CpuSample {
    /// Reads the counters now: `switchyard` is the dispatcher process whose `processor-*`
    /// threads count, `remote` the PIDs of remote processor processes.
    fn now(switchyard: Option<u32>, remote: &[u32]) -> Self {
        let tick = clock_tick();
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let times = box_times(&stat, tick).unwrap_or_default();
        let inside = switchyard.map_or(0, |p| {
            threads_cpu_ns(p, |c| c.starts_with("processor-"), tick)
        });
        let outside: u64 = remote.iter().map(|&p| process_cpu_ns(p)).sum();
        CpuSample {
            box_ns: times.busy_ns,
            idle_ns: times.idle_ns,
            steal_ns: times.steal_ns,
            wall_ns: monotonic_ns(),
            cpus: stat_cpus(&stat),
            processors_ns: inside + outside,
        }
    }

    /// What was used between `start` and this sample.
    pub fn since(&self, start: &CpuSample) -> CpuSample {
        let wall_ns = self.wall_ns.saturating_sub(start.wall_ns);
        let idle_ns = self.idle_ns.saturating_sub(start.idle_ns);
        let steal_ns = self.steal_ns.saturating_sub(start.steal_ns);
        CpuSample {
            box_ns: wall_ns
                .saturating_mul(self.cpus.max(1))
                .saturating_sub(idle_ns.saturating_add(steal_ns)),
            idle_ns,
            steal_ns,
            wall_ns,
            cpus: self.cpus,
            processors_ns: self.processors_ns.saturating_sub(start.processors_ns),
        }
    }

    /// Steal as a percentage of what the CPUs could have run over the period; None for an
    /// empty period.
    pub fn steal_pct(&self) -> Option<f64> {
        let cap = self.wall_ns as f64 * self.cpus.max(1) as f64;
        (cap > 0.0).then(|| 100.0 * self.steal_ns as f64 / cap)
    }
}

/// The PIDs of running children.
fn pids(ks: &[Killer]) -> Vec<u32> {
    ks.iter().filter_map(Killer::pid).collect()
}

/// The in-chassis processors' stats objects from Switchyard's exit counters.
fn in_chassis(sy: &Value) -> Vec<Value> {
    sy["processors"]
        .as_array()
        .map(|a| a.iter().map(|p| p["stats"].clone()).collect())
        .unwrap_or_default()
}

/// The remote processors' exit counters (`processor-<i>.json`, flattened stats) in `dir`; a
/// missing file leaves its processor out (its counters are then unknown, see
/// [`sum_counter`]).
fn remote_stats(dir: &Path, n: u16) -> Vec<Value> {
    (0..n)
        .map(|i| read_json(&dir.join(format!("processor-{i}.json"))).unwrap_or(Value::Null))
        .collect()
}

/// The sum of counter `key` over `stats`; None (unknown, not 0) when there are none or any of
/// them lacks it (a processor binary older than the counter).
pub fn sum_counter(stats: &[Value], key: &str) -> Option<f64> {
    if stats.is_empty() {
        return None;
    }
    stats.iter().map(|s| s.get(key)?.as_f64()).sum()
}

/// Adds the per-call cost columns to a stage's row: the generator's CPU and syscalls (from
/// its `summary.json`), the processors' and the whole box's CPU over the stage, and the
/// processors' parks, wake-ups and syscalls where they report them; each divided by `calls`
/// (completed calls, or datagrams for the blast and ceiling stages). An unknown figure is
/// left out (shown `-`), never 0.
fn add_costs(
    row: &mut Value,
    calls: f64,
    gen: Option<&Value>,
    cpu: CpuSample,
    processors: Option<&[Value]>,
) {
    let calls = if calls.is_finite() && calls > 0.0 {
        calls
    } else {
        return;
    };
    let per = |x: f64| json!(x / calls);
    if let Some(g) = gen {
        let cost = &g["generator"];
        if let (Some(cpu), Some(n)) = (cost["loop_cpu_ns"].as_f64(), cost["calls"].as_f64()) {
            row["generator_cpu_ns_per_call"] = json!(cpu / n.max(1.0));
        }
        if let (Some(sc), Some(n)) = (cost["syscalls"].as_f64(), cost["calls"].as_f64()) {
            row["generator_syscalls_per_call"] = json!(sc / n.max(1.0));
        }
    }
    row["box_cpu_ns_per_call"] = per(cpu.box_ns as f64);
    if let Some(p) = cpu.steal_pct() {
        row["steal_pct"] = json!(p);
    }
    if let Some(ps) = processors {
        if !ps.is_empty() {
            row["processors_cpu_ns_per_call"] = per(cpu.processors_ns as f64);
        }
        for key in ["parks", "wakeups", "syscalls"] {
            if let Some(x) = sum_counter(ps, key) {
                row[format!("processor_{key}_per_call")] = per(x);
            }
        }
    }
}

/// CPU time (ns) of process `pid`, and with `group` of every process in its process group
/// (Kamailio's main process and the workers and timers it forks).
fn group_cpu_ns(pid: u32, group: bool) -> u64 {
    if group {
        group_pids(pid).into_iter().map(process_cpu_ns).sum()
    } else {
        process_cpu_ns(pid)
    }
}

/// The table's columns after the stage name: header, width, the row key(s) read (first
/// present wins), scale and decimals.
const COLUMNS: &[(&str, usize, &[&str], f64, usize)] = &[
    ("offered/s", 10, &["offered"], 1.0, 0),
    (
        "achieved/s",
        11,
        &["achieved_per_s", "received_per_s"],
        1.0,
        0,
    ),
    ("failed", 7, &["failed"], 1.0, 0),
    ("p50 µs", 8, &["p50_us"], 1.0, 0),
    ("p99 µs", 8, &["p99_us"], 1.0, 0),
    ("gen", 7, &["generator_cpu_ns_per_call"], 1e-3, 1),
    (
        "disp",
        7,
        &["dispatcher_cpu_ns_per_call", "dispatcher_cpu_ns_per_msg"],
        1e-3,
        2,
    ),
    ("procs", 7, &["processors_cpu_ns_per_call"], 1e-3, 1),
    ("box", 7, &["box_cpu_ns_per_call"], 1e-3, 1),
    ("sy proc", 8, &["process_cpu_ns_per_call"], 1e-3, 2),
    ("gen sc", 7, &["generator_syscalls_per_call"], 1.0, 2),
    ("parks", 6, &["processor_parks_per_call"], 1.0, 2),
    ("proc sc", 7, &["processor_syscalls_per_call"], 1.0, 2),
    ("steal%", 7, &["steal_pct"], 1.0, 1),
];

/// The steal share (`steal%`) above which the table says the host was contended.
pub const STEAL_NOTE_PCT: f64 = 5.0;

/// A note naming the stage with the most steal when that is at least [`STEAL_NOTE_PCT`]: on a
/// virtual machine a vCPU the hypervisor deschedules for milliseconds shows up as
/// milliseconds of latency, so such a row's tail says more about the host than about the code.
fn steal_note(rows: &[Value]) -> Option<String> {
    let (stage, pct) = rows
        .iter()
        .filter_map(|r| Some((r["stage"].as_str()?, r.get("steal_pct")?.as_f64()?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (pct >= STEAL_NOTE_PCT).then(|| {
        format!(
            "note: the hypervisor stole up to {pct:.0}% of the CPUs' time ({stage}; steal% column): \
             p99s and knees of rows with steal measure the host as much as Switchyard"
        )
    })
}

fn render(rows: &[Value], ratios: &Value) -> String {
    let mut t = String::new();
    t.push_str(&format!("{:<48}", ""));
    for (h, w, _, _, _) in COLUMNS {
        let label = match *h {
            "gen" => "CPU µs",
            "disp" => "per call",
            "gen sc" => "per call",
            _ => "",
        };
        t.push_str(&format!(" {label:>w$}"));
    }
    t.push('\n');
    t.push_str(&format!("{:<48}", "stage"));
    for (h, w, _, _, _) in COLUMNS {
        t.push_str(&format!(" {h:>w$}"));
    }
    t.push('\n');
    for r in rows {
        t.push_str(&format!("{:<48}", r["stage"].as_str().unwrap_or("?")));
        for (_, w, keys, scale, prec) in COLUMNS {
            let v = keys
                .iter()
                .find_map(|k| r.get(*k).and_then(Value::as_f64))
                .filter(|x| x.is_finite());
            let cell = v.map_or("-".to_owned(), |x| format!("{:.prec$}", x * scale));
            t.push_str(&format!(" {cell:>w$}"));
        }
        t.push('\n');
    }
    if let Some(note) = steal_note(rows) {
        t.push_str(&format!("\n{note}\n"));
    }
    t.push_str("\nratios (side by side, same run):\n");
    if let Some(m) = ratios.as_object() {
        for (k, v) in m {
            match v.as_f64() {
                Some(x) => t.push_str(&format!("  {k:<52} {x:.2}\n")),
                None => t.push_str(&format!("  {k:<52} {}\n", v.as_str().unwrap_or("-"))),
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knee_is_the_highest_passing_rate() {
        let steps = [
            (500, 0.0, 800.0),
            (1_000, 0.0, 3_900.0),
            (2_000, 0.0, 4_100.0),
            (4_000, 3.0, 900.0),
        ];
        assert_eq!(knee(&steps, 4.0), Some(1_000));
        assert_eq!(knee(&steps, 5.0), Some(2_000));
        assert_eq!(knee(&steps, 0.5), None);
        // Out of order, and a pass above a failing step still counts (highest passing rate).
        assert_eq!(
            knee(&[(3_000, 0.0, 10.0), (1_000, 1.0, 10.0)], 4.0),
            Some(3_000)
        );
        assert!(!step_passes(0.0, f64::NAN, 4.0));
        assert!(step_passes(0.0, 4_000.0, 4.0));
        assert!(knee(&[], 4.0).is_none());
    }

    fn step(rate: u64, failed: f64, p99_us: f64, disp_us: f64, proc_us: f64) -> PeerStep {
        PeerStep {
            rate,
            failed,
            p99_us,
            achieved_per_s: rate as f64,
            dispatcher_cpu_ns: disp_us * 1e3,
            process_cpu_ns: proc_us * 1e3,
            box_cpu_ns: f64::NAN,
        }
    }

    #[test]
    fn a_ladder_climbs_and_stops_after_more_than_one_percent_failed() {
        assert_eq!(
            ladder_rates(&[5_000, 1_000, 0, 5_000, 2_500]),
            [1_000, 2_500, 5_000]
        );
        assert!(ladder_rates(&[]).is_empty());
        // 1 % exactly is still a (failing, not collapsed) step; above it the ladder stops.
        assert!(!step_collapsed(0.0, 10_000.0));
        assert!(!step_collapsed(100.0, 10_000.0));
        assert!(step_collapsed(101.0, 10_000.0));
        // No figure to go on is no reason to climb either.
        assert!(step_collapsed(0.0, 0.0));
        assert!(step_collapsed(0.0, f64::NAN));
        assert!(step_collapsed(f64::NAN, 1_000.0));
    }

    #[test]
    fn switchyards_peer_ladder_reaches_above_kamailios_top() {
        let peer = [1_000, 2_500, 5_000, 7_500, 10_000];
        // Nothing above Kamailio's top: 2x and 3x it are added (not under --quick).
        assert_eq!(
            switchyard_peer_ladder(&peer, &[], true),
            [1_000, 2_500, 5_000, 7_500, 10_000, 20_000, 30_000]
        );
        assert_eq!(switchyard_peer_ladder(&peer, &[], false), peer);
        // The main ladder already goes higher: its rates, merged, nothing invented.
        assert_eq!(
            switchyard_peer_ladder(&[5_000, 1_000], &[15_000, 5_000], true),
            [1_000, 5_000, 15_000]
        );
        assert_eq!(
            switchyard_peer_ladder(&[500, 1_000], &[500, 1_000], false),
            [500, 1_000]
        );
        assert!(switchyard_peer_ladder(&[], &[], true).is_empty());
        // No peer ladder (`--peer-ladder 0`): no Switchyard one either.
        assert!(switchyard_peer_ladder(&[0], &[3_000], true).is_empty());
    }

    #[test]
    fn peer_steps_come_from_ladder_rows() {
        let row = json!({
            "stage": "peer kamailio 5000/s (sip calls)", "ladder_rate": 5000, "failed": 0.0,
            "p99_us": 3_000.0, "achieved_per_s": 4_990.0, "dispatcher_cpu_ns_per_call": 130_000.0,
            "process_cpu_ns_per_call": 130_000.0, "box_cpu_ns_per_call": 400_000.0,
        });
        let s = PeerStep::from_row(&row).unwrap();
        assert_eq!((s.rate, s.failed, s.p99_us), (5_000, 0.0, 3_000.0));
        assert_eq!((s.dispatcher_cpu_ns, s.box_cpu_ns), (130_000.0, 400_000.0));
        assert!(PeerStep::from_row(&json!({"stage": "switchyard xdp (sip calls)"})).is_none());
        // A row without its p99 never passes.
        let bare = PeerStep::from_row(&json!({"ladder_rate": 100, "failed": 0})).unwrap();
        assert!(bare.p99_us.is_nan());
        assert!(knee_step(&[bare], 4.0).is_none());
    }

    #[test]
    fn peer_ratios_compare_each_at_its_own_knee_and_at_the_highest_common_pass() {
        let kam = [
            step(1_000, 0.0, 900.0, 150.0, 150.0),
            step(2_500, 0.0, 3_000.0, 130.0, 130.0),
            // Passes on failures but not on p99: above the knee.
            step(5_000, 0.0, 8_000.0, 131.0, 131.0),
            step(7_500, 900.0, 4_000_000.0, 200.0, 200.0),
        ];
        let sy = [
            step(1_000, 0.0, 300.0, 20.0, 21.0),
            step(2_500, 0.0, 400.0, 10.0, 11.0),
            step(5_000, 0.0, 500.0, 5.0, 6.0),
            step(20_000, 0.0, 3_500.0, 2.6, 2.6),
            step(30_000, 5.0, 9_000.0, 2.0, 2.0),
        ];
        let m = peer_ratios(&kam, &sy, "switchyard_xdp", 4.0);
        assert_eq!(m["peer_knee_kamailio_calls_per_s"], json!(2_500));
        assert_eq!(m["peer_knee_switchyard_xdp_calls_per_s"], json!(20_000));
        assert_eq!(m["switchyard_xdp_knee_over_kamailio_knee"], json!(8.0));
        // 130 µs at Kamailio's knee over 2.6 µs at Switchyard's.
        let at_knees = m["kamailio_at_knee_over_switchyard_xdp_at_knee_dispatcher_cpu_per_call"]
            .as_f64()
            .unwrap();
        assert!((at_knees - 50.0).abs() < 1e-9, "{at_knees}");
        // Same rate: 2,500/s is the highest both pass (5,000 fails Kamailio's p99).
        assert_eq!(m["peer_same_rate_calls_per_s"], json!(2_500));
        assert_eq!(
            m["kamailio_over_switchyard_xdp_dispatcher_cpu_per_call_at_same_rate"],
            json!(13.0)
        );
        assert_eq!(
            m["kamailio_over_switchyard_xdp_p99_at_same_rate"],
            json!(7.5)
        );
        // Neither knee is the top of its ladder: no lower-bound note.
        assert!(m.get("switchyard_xdp_knee_note").is_none());
        assert!(m.get("kamailio_knee_note").is_none());

        // Switchyard passes its top rate: its knee is a lower bound, and says so.
        let m = peer_ratios(&kam, &sy[..4], "switchyard_xdp", 4.0);
        assert!(m["switchyard_xdp_knee_note"]
            .as_str()
            .unwrap()
            .contains("20000/s"));
        let h = highest_common_pass(&kam, &sy, 4.0).unwrap();
        assert_eq!((h.0.rate, h.1.rate), (2_500, 2_500));

        // Kamailio passes nothing: no knee ratios, no same-rate pair, sentences instead.
        let dead = [step(1_000, 50.0, 900.0, 150.0, 150.0)];
        let m = peer_ratios(&dead, &sy, "switchyard_xdp", 4.0);
        assert!(m["peer_knee_kamailio_calls_per_s"]
            .as_str()
            .unwrap()
            .starts_with("none"));
        assert!(m["switchyard_xdp_knee_over_kamailio_knee"].is_string());
        assert!(m["peer_same_rate_calls_per_s"].is_string());
        assert!(m
            .get("kamailio_at_knee_over_switchyard_xdp_at_knee_process_cpu_per_call")
            .is_none());
    }

    #[test]
    fn peer_ladder_summaries_render_under_the_table() {
        let sy = [
            step(1_000, 0.0, 300.0, 20.0, 21.0),
            step(2_000, 0.0, 400.0, 10.0, 11.0),
        ];
        let kam = [
            step(1_000, 0.0, 900.0, 150.0, 150.0),
            step(2_000, 30.0, 9_000.0, 140.0, 140.0),
        ];
        let ks = ladder_summary(
            &kam,
            4.0,
            Some("2000/s collapsed (30 of 2000 calls failed)"),
        );
        assert_eq!(ks["knee_calls_per_s"], json!(1_000));
        assert_eq!(ks["knee_is_lower_bound"], json!(false));
        assert_eq!(ks["rates_run"], json!([1_000, 2_000]));
        assert_eq!(
            ks["at_knee"]["dispatcher_cpu_ns_per_call"],
            json!(150_000.0)
        );
        let ss = ladder_summary(&sy, 4.0, None);
        assert_eq!(ss["knee_is_lower_bound"], json!(true));
        assert_eq!(ss["stopped"], Value::Null);
        assert_eq!(
            ladder_summary(&[], 4.0, None)["knee_calls_per_s"],
            Value::Null
        );
        let t = render_peer(&json!({"kamailio": ks, "switchyard xdp": ss}), 4.0);
        assert!(
            t.contains("kamailio         knee   1000/s: p99 0.90 ms, disp 150.00, process 150.00, box -; ran 1000,2000; stopped: 2000/s collapsed"),
            "{t}"
        );
        assert!(
            t.contains("switchyard xdp   knee   2000/s (its top rate: at least): p99 0.40 ms, disp 10.00, process 11.00"),
            "{t}"
        );
        let none = ladder_summary(&[step(500, 1.0, 1.0, 1.0, 1.0)], 4.0, None);
        assert!(render_peer(&json!({ "kamailio": none }), 4.0).contains("no knee"));
        assert!(render_peer(&json!({}), 4.0).is_empty());
    }

    #[test]
    fn kamailio_cfg_dispatches_round_robin_without_record_route() {
        let list = Path::new("/tmp/stage/dispatcher.list");
        let cfg = kamailio_cfg("198.18.0.1:5080", list, 2, Path::new("/usr/lib/m"));
        assert!(cfg.starts_with("#!KAMAILIO\n"));
        assert!(cfg.contains("listen=udp:198.18.0.1:5080\n"));
        assert!(cfg.contains("children=2\n"));
        assert!(cfg.contains("mpath=\"/usr/lib/m\"\n"));
        assert!(
            cfg.contains(r#"modparam("dispatcher", "list_file", "/tmp/stage/dispatcher.list")"#)
        );
        assert!(cfg.contains(r#"ds_select_dst("1", "4")"#));
        assert!(cfg.contains("t_relay()"));
        assert!(!cfg.contains("record_route("));
        assert!(!cfg.contains("loadmodule \"rr.so\""));
        assert_eq!(
            dispatcher_list(&["198.18.0.1:5070".into(), "198.18.0.1:5071".into()]),
            "1 sip:198.18.0.1:5070\n1 sip:198.18.0.1:5071\n"
        );
    }

    #[test]
    fn stat_fields_skip_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (kam (udp) x) S 4240 4240 4240 0 -1 4194560 1 0 0 0 17 5 0 0 20 0 1";
        let f = stat_fields(stat);
        assert_eq!(f[0], "S");
        assert_eq!(f[1], "4240");
        assert_eq!(f[2], "4240");
        assert_eq!((f[11], f[12]), ("17", "5"));
        assert!(stat_fields("garbage").is_empty());
    }

    #[test]
    fn box_busy_time_counts_everything_but_idle_iowait_and_steal() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let stat = "cpu  100 2 30 5000 40 1 7 3 9 0\ncpu0 50 1 15 2500 20 0 3 1 0 0\n\
                    cpu1 50 1 15 2500 20 1 4 2 9 0\nintr 1\n";
        let t = box_times(stat, 100).unwrap();
        assert_eq!(t.busy_ns, 140 * 10_000_000);
        assert_eq!(t.steal_ns, 3 * 10_000_000);
        assert_eq!(t.idle_ns, 5040 * 10_000_000);
        assert_eq!(stat_cpus(stat), 2);
        assert_eq!(box_times("cpu0 1 2 3 4\n", 100), None);
        assert_eq!(box_times("", 100), None);
        assert_eq!(stat_cpus(""), 1);
        let here = std::fs::read_to_string("/proc/stat").unwrap();
        assert!(box_times(&here, clock_tick()).unwrap().busy_ns > 0);
    }

    #[test]
    fn the_table_names_a_contended_host() {
        let quiet = json!({"stage": "a", "steal_pct": 1.0});
        let busy = json!({"stage": "b", "steal_pct": 31.4});
        assert!(!render(std::slice::from_ref(&quiet), &json!({})).contains("note:"));
        let t = render(&[quiet, busy, json!({"stage": "c"})], &json!({}));
        assert!(t.contains("stole up to 31% of the CPUs' time (b;"), "{t}");
    }

    #[test]
    fn steal_is_a_share_of_what_the_cpus_could_run() {
        let start = CpuSample {
            steal_ns: 1_000,
            wall_ns: 5_000_000_000,
            cpus: 2,
            ..CpuSample::default()
        };
        let end = CpuSample {
            steal_ns: 1_000 + 500_000_000,
            wall_ns: 6_000_000_000,
            cpus: 2,
            ..CpuSample::default()
        };
        let d = end.since(&start);
        assert_eq!(d.wall_ns, 1_000_000_000);
        assert_eq!(d.steal_pct(), Some(25.0));
        assert_eq!(CpuSample::default().steal_pct(), None);
        let mut row = json!({"stage": "x"});
        add_costs(&mut row, 10.0, None, d, None);
        assert_eq!(row["steal_pct"], json!(25.0));
    }

    #[test]
    fn a_counter_one_processor_lacks_is_unknown_not_zero() {
        let new = json!({"parks": 10, "syscalls": 40});
        let old = json!({"sent": 5});
        assert_eq!(
            sum_counter(&[new.clone(), new.clone()], "parks"),
            Some(20.0)
        );
        assert_eq!(sum_counter(&[new.clone(), old], "parks"), None);
        assert_eq!(sum_counter(&[], "parks"), None);
        let mut row = json!({"stage": "x"});
        let cpu = CpuSample {
            box_ns: 3_000_000,
            processors_ns: 1_000_000,
            ..CpuSample::default()
        };
        let g = json!({"generator": {"loop_cpu_ns": 500_000.0, "calls": 100, "syscalls": 700}});
        add_costs(&mut row, 100.0, Some(&g), cpu, Some(&[new.clone(), new]));
        assert_eq!(row["box_cpu_ns_per_call"], json!(30_000.0));
        assert_eq!(row["processors_cpu_ns_per_call"], json!(10_000.0));
        assert_eq!(row["generator_cpu_ns_per_call"], json!(5_000.0));
        assert_eq!(row["generator_syscalls_per_call"], json!(7.0));
        assert_eq!(row["processor_parks_per_call"], json!(0.2));
        assert!(row.get("processor_wakeups_per_call").is_none());
        let table = render(&[row], &json!({}));
        let line = table.lines().nth(2).unwrap();
        let cells: Vec<&str> = line.split_whitespace().collect();
        // stage, offered, achieved, failed, p50, p99, gen, disp, procs, box, sy proc, gen sc,
        // parks, proc sc, steal% (unknown: an empty period).
        assert_eq!(
            cells,
            [
                "x", "-", "-", "-", "-", "-", "5.0", "-", "10.0", "30.0", "-", "7.00", "0.20",
                "0.80", "-"
            ]
        );
        let mut none = json!({"stage": "y"});
        add_costs(&mut none, 0.0, None, cpu, None);
        assert!(none.get("box_cpu_ns_per_call").is_none());
    }

    #[test]
    fn processor_stats_come_from_switchyard_or_the_remote_files() {
        let sy = json!({"processors": [
            {"id": 0, "stats": {"parks": 3, "sent": 9}},
            {"id": 1, "stats": {"parks": 4, "sent": 1}},
        ]});
        let ps = in_chassis(&sy);
        assert_eq!(sum_counter(&ps, "parks"), Some(7.0));
        assert!(in_chassis(&json!({})).is_empty());
        let dir = std::env::temp_dir().join(format!("xtask-remote-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("processor-0.json"),
            r#"{"reports": 1, "parks": 5}"#,
        )
        .unwrap();
        // processor-1.json is missing: the sum over both is unknown.
        let rs = remote_stats(&dir, 2);
        assert_eq!(rs.len(), 2);
        assert_eq!(sum_counter(&rs[..1], "parks"), Some(5.0));
        assert_eq!(sum_counter(&rs, "parks"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_late_blast_divides_by_its_send_span() {
        let late = json!({"send_span_s": 4.5, "offered_cps": 200_000.0});
        assert_eq!(blast_span(Some(&late), 3), 4.5);
        assert_eq!(blast_span(Some(&json!({"send_span_s": 2.99})), 3), 3.0);
        assert_eq!(blast_span(None, 3), 3.0);
        assert_eq!(blast_offered(Some(&late), 300_000), 200_000.0);
        assert_eq!(blast_offered(None, 300_000), 300_000.0);
    }

    #[test]
    fn blast_threads_spread_over_both_cores() {
        assert_eq!(gen_thread_args(1), ["--threads", "1", "--core", "0"]);
        assert_eq!(gen_thread_args(0), ["--threads", "1", "--core", "0"]);
        assert_eq!(gen_thread_args(2), ["--threads", "2", "--core", "0,1"]);
        let a = CpuSample {
            box_ns: 10,
            idle_ns: 60,
            steal_ns: 2,
            wall_ns: 100,
            cpus: 2,
            processors_ns: 4,
        };
        let b = CpuSample {
            box_ns: 25,
            idle_ns: 90,
            steal_ns: 7,
            wall_ns: 150,
            cpus: 2,
            processors_ns: 3,
        };
        // 100 ns of capacity over 50 ns on 2 CPUs, 30 of them idle and 5 stolen: 65 busy
        // (the tick-sampled busy fields said 15).
        assert_eq!(
            b.since(&a),
            CpuSample {
                box_ns: 65,
                idle_ns: 30,
                steal_ns: 5,
                wall_ns: 50,
                cpus: 2,
                processors_ns: 0
            }
        );
    }

    #[test]
    fn threads_stage_cores_names_and_per_thread_rows() {
        assert_eq!(dispatcher_cores(1, 2), [1]);
        assert_eq!(dispatcher_cores(2, 2), [1, 0]);
        assert_eq!(dispatcher_cores(3, 2), [1, 0, 1]);
        assert_eq!(dispatcher_cores(2, 8), [1, 2]);
        assert_eq!(dispatcher_cores(0, 0), [0]);
        assert_eq!(
            threads_stage_name(1, "xdp", "blast", &[1], false),
            "threads 1 xdp (blast; core 1)"
        );
        assert_eq!(
            threads_stage_name(2, "udp", "sip calls", &[1, 0], true),
            "threads 2 udp (sip calls; cores 1,0 shared)"
        );
        let sy = json!({"dispatcher_threads": [
            {"index": 0, "core": 1, "queues": [0], "datagrams": 300, "cpu_ns": 600_000, "new_dialogs": 300},
            {"index": 1, "core": 0, "queues": [1], "datagrams": 100, "cpu_ns": 300_000, "new_dialogs": 100},
        ]});
        let rows = per_thread(&sy);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["cpu_ns_per_datagram"], json!(2_000.0));
        assert_eq!(rows[1]["cpu_ns_per_datagram"], json!(3_000.0));
        assert_eq!(rows[0]["share"], json!(0.75));
        assert!(per_thread(&json!({})).is_empty());
        let row =
            json!({"stage": "2 dispatcher threads xdp (blast; cores 1,0)", "per_thread": rows});
        let text = render_threads(&[json!({"stage": "other"}), row]);
        assert!(
            text.contains("dispatcher threads (CPU per datagram"),
            "{text}"
        );
        assert!(
            text.contains("thread 0 core  1:        300 datagrams (75.0 %),    2.00 µs"),
            "{text}"
        );
        assert!(
            text.contains("thread 1 core  0:        100 datagrams (25.0 %),    3.00 µs"),
            "{text}"
        );
        assert!(render_threads(&[json!({"stage": "other"})]).is_empty());
    }

    #[test]
    fn our_own_process_has_cpu_time() {
        let me = std::process::id();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let a = process_cpu_ns(me);
        assert!(a > 0);
        assert!(group_cpu_ns(me, false) >= a);
    }

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
