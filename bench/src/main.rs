//! `switchyard-bench`: open-loop SIP/MGCP load generator, datagram blaster and receive sink.
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context};
use bench::{
    engine::{run_loop, Engine, LoopConfig, LoopResult, Share},
    hist::{parse_hgrm, Latency},
    mgcp::{MgcpCa, MgcpConfig},
    net::{Outbox, Sockets},
    plot::{svg_curves, Curve},
    report::{out_dir, RunReport},
    schedule::Schedule,
    sink::{self, SinkIdle, XdpSinkConfig},
    sip::{AckByeTo, SipConfig, SipUac},
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

/// Open-loop load generator for Switchyard (SIP UAC, MGCP call agent), a datagram blaster, and
/// a raw receive sink for measuring receive ceilings.
///
/// Call start times follow a fixed schedule (constant rate or linear ramp) whatever the
/// responses do, and latency is measured from each message's intended send time, so queueing
/// in the system under test shows up as latency (no coordinated omission).
#[derive(Parser, Debug)]
#[command(name = "switchyard-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// SIP UAC calls: INVITE → (100) → 200 → ACK → hold → BYE → 200.
    Sip(SipArgs),
    /// MGCP call agent: CRCX → 200 → MDCX → 200 → (hold) → DLCX → 250.
    Mgcp(MgcpArgs),
    /// INVITE-shaped datagrams at a rate, expecting nothing (feeds receive-ceiling runs).
    Blast(BlastArgs),
    /// Count datagrams only: the receive ceiling (UDP socket or raw AF_XDP loop).
    Sink(SinkArgs),
    /// Draw `.hgrm` files (as this tool or HdrHistogram writes them) into one latency SVG,
    /// one curve each: `plot --out cmp.svg --title T xdp=a/invite_200.hgrm udp=b/invite_200.hgrm`.
    Plot(PlotArgs),
}

#[derive(Args, Debug)]
struct PlotArgs {
    /// The SVG file to write.
    #[arg(long)]
    out: PathBuf,
    /// The plot's title (one line).
    #[arg(long, default_value = "latency by percentile")]
    title: String,
    /// Curves as NAME=PATH (NAME is the legend entry). A file without samples is skipped
    /// with a warning; it is an error if none has any.
    #[arg(required = true, value_name = "NAME=PATH")]
    curves: Vec<String>,
}

/// Options every generator shares.
#[derive(Args, Debug, Clone)]
struct Common {
    /// Destination of each call's first message (the dispatcher's well-known address).
    #[arg(long)]
    target: SocketAddr,
    /// Calls (or datagrams, for blast) started per second; with --ramp-to, the starting rate.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Length of the schedule in seconds (calls still in flight then get up to --timeout-ms
    /// plus the hold time to finish).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Ramp the rate linearly from --rate to this value over --duration.
    #[arg(long)]
    ramp_to: Option<f64>,
    /// Local IP of the source sockets (default: 127.0.0.1, or :: for an IPv6 target).
    #[arg(long)]
    local_ip: Option<IpAddr>,
    /// First local port (sockets use consecutive ports); 0 picks ephemeral ports.
    #[arg(long, default_value_t = 0)]
    local_port: u16,
    /// Number of source sockets (ports) per generator thread; calls are spread over them
    /// round-robin.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Generator threads, each with its own sockets and engine: thread i starts calls i,
    /// i + N, ... of the one schedule, so together they offer more than one core can send.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pin the generator threads to these CPU cores (comma-separated; thread i takes the
    /// i-th, round-robin).
    #[arg(long, value_delimiter = ',')]
    core: Vec<usize>,
    /// Output directory for the report files (default: target/bench/<timestamp>[-label]/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A label for this run, kept in the report (and in the default directory name).
    #[arg(long)]
    label: Option<String>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct SipArgs {
    #[command(flatten)]
    common: Common,
    /// Time between the ACK and the BYE, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    hold_ms: u64,
    /// Where ACK and BYE go: the 2xx Contact (as a real UA) or the INVITE's target.
    #[arg(long, value_enum, default_value_t = AckByeTo::Contact)]
    ack_bye_to: AckByeTo,
    /// SDP body size in bytes (padded with a= lines); 0 sends no body. Default: a minimal
    /// audio offer (~150 bytes).
    #[arg(long)]
    sdp_bytes: Option<usize>,
    /// Send `X-Session-Size: N` in every INVITE.
    #[arg(long)]
    session_size: Option<u32>,
    /// Calls in flight at most (preallocated slots); a call due while all are busy is not
    /// started and counts as a `no_slot` failure.
    #[arg(long, default_value_t = 262_144)]
    max_calls: u32,
    /// Give up on an INVITE or BYE transaction after this many ms (Timer B/F = 64·T1).
    #[arg(long, default_value_t = 32_000)]
    timeout_ms: u64,
    /// T1 in ms (retransmission base; RFC 3261 default 500).
    #[arg(long, default_value_t = 500)]
    t1_ms: u64,
}

#[derive(Args, Debug)]
struct MgcpArgs {
    #[command(flatten)]
    common: Common,
    /// Time between the MDCX answer and the DLCX, in milliseconds.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// Endpoint local name in the CRCX (the domain is the target's [ip]); `$` lets the
    /// gateway pick.
    #[arg(long, default_value = "ds/$")]
    endpoint: String,
    /// Send an SDP offer of this many bytes with the CRCX (default: none).
    #[arg(long)]
    sdp_bytes: Option<usize>,
    /// Send `X-Size: N` (session size) in every CRCX.
    #[arg(long)]
    session_size: Option<u32>,
    /// Calls in flight at most (preallocated slots).
    #[arg(long, default_value_t = 262_144)]
    max_calls: u32,
    /// Give up on a command after this many ms.
    #[arg(long, default_value_t = 32_000)]
    timeout_ms: u64,
    /// Initial retransmission timeout in ms (doubling, at most 4 s apart; RFC 3435 §3.5).
    #[arg(long, default_value_t = 200)]
    rto_ms: u64,
}

#[derive(Args, Debug)]
struct BlastArgs {
    #[command(flatten)]
    common: Common,
    /// Datagram size in bytes (an INVITE padded with an X-Pad header; at least the bare
    /// INVITE's size, ~450 bytes).
    #[arg(long)]
    bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SinkBackend {
    /// A UDP socket drained with recvmmsg (needs --bind).
    Udp,
    /// A raw AF_XDP loop behind Switchyard's XDP program (needs --iface, --port, root).
    Xdp,
}

#[derive(Args, Debug)]
struct SinkArgs {
    /// Receive path to measure.
    #[arg(long, value_enum, default_value_t = SinkBackend::Udp)]
    backend: SinkBackend,
    /// Address to bind (udp backend).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Interface whose traffic to steer (xdp backend).
    #[arg(long)]
    iface: Option<String>,
    /// UDP destination port steered to AF_XDP (xdp backend).
    #[arg(long)]
    port: Option<u16>,
    /// Serve rx queues 0..N (xdp backend; default: all of the interface's queues).
    #[arg(long)]
    queues: Option<u32>,
    /// XDP attach mode (xdp backend).
    #[arg(long, value_enum, default_value_t = xdp_io::loader::AttachMode::Native)]
    xdp_mode: xdp_io::loader::AttachMode,
    /// AF_XDP zero-copy request (xdp backend).
    #[arg(long, value_enum, default_value_t = xdp_io::xsk::ZeroCopy::Auto)]
    zero_copy: xdp_io::xsk::ZeroCopy,
    /// Sleep in poll() when idle, or busy-poll.
    #[arg(long, value_enum, default_value_t = SinkIdle::Poll)]
    idle: SinkIdle,
    /// How long to count, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Pin the receive thread to this CPU core.
    #[arg(long)]
    core: Option<usize>,
    /// Also write the JSON result to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn secs_ns(s: f64, what: &str) -> anyhow::Result<u64> {
    if !(s.is_finite() && s > 0.0 && s < 1e7) {
        bail!("{what} must be a positive number of seconds");
    }
    Ok((s * 1e9) as u64)
}

fn pin(core: Option<usize>) -> anyhow::Result<()> {
    if let Some(id) = core {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        if !ids.iter().any(|c| c.id == id) {
            bail!(
                "--core {id}: no such CPU (available: {:?})",
                ids.iter().map(|c| c.id).collect::<Vec<_>>()
            );
        }
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            bail!("--core {id}: could not pin the thread");
        }
    }
    Ok(())
}

struct Prepared {
    schedule: Schedule,
    /// One set of sockets per generator thread.
    socks: Vec<Sockets>,
}

impl Prepared {
    /// Every thread's local addresses, in thread order.
    fn locals(&self) -> Vec<SocketAddr> {
        self.socks
            .iter()
            .flat_map(|s| s.locals().iter().copied())
            .collect()
    }
}

fn prepare(c: &Common) -> anyhow::Result<Prepared> {
    if !(c.rate.is_finite() && c.rate >= 0.0) {
        bail!("--rate must be a non-negative number");
    }
    if let Some(r) = c.ramp_to {
        if !(r.is_finite() && r >= 0.0) {
            bail!("--ramp-to must be a non-negative number");
        }
    }
    if c.rate == 0.0 && c.ramp_to.unwrap_or(0.0) == 0.0 {
        bail!("--rate (or --ramp-to) must be above 0");
    }
    if c.sockets == 0 || c.sockets > 1024 {
        bail!("--sockets must be 1..=1024");
    }
    if c.threads == 0 || c.threads > 64 {
        bail!("--threads must be 1..=64");
    }
    if c.local_port != 0 && usize::from(c.local_port) + c.threads * c.sockets > 65_536 {
        bail!("--local-port + --threads x --sockets runs past port 65535");
    }
    let d = secs_ns(c.duration, "--duration")?;
    let schedule = Schedule::ramp(c.rate, c.ramp_to.unwrap_or(c.rate), d);
    let ip = c.local_ip.unwrap_or(match c.target {
        SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
        SocketAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    });
    if ip.is_ipv4() != c.target.is_ipv4() {
        bail!(
            "--local-ip {ip} and --target {} are different address families",
            c.target
        );
    }
    let mut socks = Vec::with_capacity(c.threads);
    for t in 0..c.threads {
        let port = if c.local_port == 0 {
            0
        } else {
            c.local_port + (t * c.sockets) as u16
        };
        socks.push(
            Sockets::bind(SocketAddr::new(ip, port), c.sockets, 16384)
                .with_context(|| format!("binding {} UDP sockets on {ip}", c.sockets))?,
        );
    }
    // Checked before the run: a bad --core fails at once, not inside a thread.
    for t in 0..c.threads {
        check_core(core_of(&c.core, t))?;
    }
    Ok(Prepared { schedule, socks })
}

/// The core generator thread `t` is pinned to: the `t`-th of `cores`, round-robin.
fn core_of(cores: &[usize], t: usize) -> Option<usize> {
    (!cores.is_empty()).then(|| cores[t % cores.len()])
}

fn check_core(core: Option<usize>) -> anyhow::Result<()> {
    if let Some(id) = core {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        if !ids.iter().any(|c| c.id == id) {
            bail!(
                "--core {id}: no such CPU (available: {:?})",
                ids.iter().map(|c| c.id).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}

fn common_json(c: &Common, p: &Prepared) -> serde_json::Value {
    json!({
        "target": c.target.to_string(),
        "rate": c.rate,
        "ramp_to": c.ramp_to,
        "duration_s": c.duration,
        "sockets": p.locals().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "threads": c.threads,
        "core": c.core,
    })
}

/// What `extract` reads from an engine: completed, failed, failures, retransmissions,
/// counters.
type Extracted = (
    u64,
    u64,
    serde_json::Value,
    serde_json::Value,
    serde_json::Value,
);

/// What one generator thread hands back.
struct ThreadRun<E> {
    engine: E,
    result: LoopResult,
    lag: Latency,
}

/// Runs one engine per generator thread (`engines[t]` over `p.socks[t]`, calls `t`, `t + N`,
/// ... of the schedule), merges what they measured and writes the report.
#[allow(clippy::too_many_arguments)]
fn drive<E: Engine + Send>(
    kind: &'static str,
    c: &Common,
    engines: Vec<E>,
    p: Prepared,
    msg_cap: usize,
    drain_ns: u64,
    mut config: serde_json::Value,
    extract: impl Fn(&E) -> Extracted,
) -> anyhow::Result<()> {
    let dir = out_dir(c.out.as_deref(), c.label.as_deref());
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating output directory {}", dir.display()))?;
    let n = p.socks.len();
    if engines.len() != n {
        bail!("internal: {} engines for {n} socket sets", engines.len());
    }
    if !c.quiet {
        eprintln!(
            "switchyard-bench {kind}: {} calls to {} from {n} thread(s) x {} socket(s), {:.0} -> {:.0}/s over {:.1} s",
            p.schedule.total(),
            c.target,
            c.sockets,
            p.schedule.rate,
            p.schedule.ramp_to,
            c.duration
        );
    }
    if let Some(o) = config.as_object_mut() {
        if let Some(cj) = common_json(c, &p).as_object() {
            o.extend(cj.clone());
        }
    }
    let schedule = p.schedule;
    let epoch = std::time::Instant::now();
    let runs: Vec<anyhow::Result<ThreadRun<E>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = engines
            .into_iter()
            .zip(p.socks)
            .enumerate()
            .map(|(t, (mut engine, mut socks))| {
                let cfg = LoopConfig {
                    schedule,
                    drain_ns,
                    // One progress line per run, from thread 0.
                    progress: !c.quiet && t == 0,
                    share: Share::of(t, n),
                };
                let core = core_of(&c.core, t);
                std::thread::Builder::new()
                    .name(format!("gen-{t}"))
                    .spawn_scoped(scope, move || -> anyhow::Result<ThreadRun<E>> {
                        pin(core)?;
                        let mut out = Outbox::new(512, msg_cap);
                        let mut lag = Latency::new("send_lag", "start lag");
                        let result =
                            run_loop(&mut engine, &mut socks, &mut out, &cfg, &mut lag, epoch);
                        Ok(ThreadRun {
                            engine,
                            result,
                            lag,
                        })
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a generator thread panicked"))),
                Err(e) => Err(anyhow::Error::new(e).context("starting a generator thread")),
            })
            .collect()
    });
    let runs: Vec<ThreadRun<E>> = runs.into_iter().collect::<anyhow::Result<_>>()?;
    let merged = merge_runs(&runs, &extract);
    let first = runs.first().context("no generator thread ran")?;
    let mut hists: Vec<Latency> = first.engine.histograms().into_iter().cloned().collect();
    let mut lag = first.lag.clone();
    for r in &runs[1..] {
        for (h, o) in hists.iter_mut().zip(r.engine.histograms()) {
            h.merge(o);
        }
        lag.merge(&r.lag);
    }
    let (result, (completed, failed, failures, retransmissions, counters)) = merged;
    let rep = RunReport {
        kind,
        label: c.label.clone(),
        config,
        schedule,
        result,
        completed,
        failed,
        failures,
        retransmissions,
        counters,
        hists: hists.iter().collect(),
        lag: &lag,
        process_cpu_ns: process_cpu_ns(),
    };
    let table = rep.write(&dir)?;
    use std::io::Write as _;
    // A closed stdout (`| head`) must not turn a finished run into a panic.
    let mut o = std::io::stdout().lock();
    let _ = write!(o, "{table}");
    let _ = writeln!(o, "output     {}", dir.display());
    Ok(())
}

/// Sums the threads' loop results and engine counters.
fn merge_runs<E>(
    runs: &[ThreadRun<E>],
    extract: &impl Fn(&E) -> Extracted,
) -> (LoopResult, Extracted) {
    let mut result = LoopResult::default();
    let mut acc: Extracted = (0, 0, json!({}), json!({}), json!({}));
    for r in runs {
        result.merge(&r.result);
        let (c, f, fl, rt, ct) = extract(&r.engine);
        acc.0 += c;
        acc.1 += f;
        bench::report::sum_json(&mut acc.2, &fl);
        bench::report::sum_json(&mut acc.3, &rt);
        bench::report::sum_json(&mut acc.4, &ct);
    }
    (result, acc)
}

/// This process's CPU time so far (user + system, every thread; `getrusage(RUSAGE_SELF)`).
fn process_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, exclusively borrowed rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

fn run_sip(a: SipArgs) -> anyhow::Result<()> {
    let p = prepare(&a.common)?;
    if a.timeout_ms == 0 || a.t1_ms == 0 {
        bail!("--timeout-ms and --t1-ms must be above 0");
    }
    let mut cfg = SipConfig::new(a.common.target, Vec::new());
    cfg.ack_bye_to = a.ack_bye_to;
    cfg.hold_ns = a.hold_ms * 1_000_000;
    cfg.sdp_bytes = a.sdp_bytes;
    cfg.session_size = a.session_size;
    cfg.max_calls = a.max_calls.max(1);
    cfg.timeout_ns = a.timeout_ms * 1_000_000;
    cfg.t1_ns = a.t1_ms * 1_000_000;
    let uacs = per_thread(&p, |locals, step| {
        let mut c = cfg.clone();
        c.locals = locals;
        c.index_step = step;
        // The slots are split too: --max-calls bounds the calls in flight of the run.
        c.max_calls = (cfg.max_calls / step as u32).max(1);
        SipUac::new(c)
    });
    let cap = uacs[0].msg_cap();
    let drain = (2 * a.timeout_ms + a.hold_ms + 1000) * 1_000_000;
    let config = json!({
        "hold_ms": a.hold_ms, "ack_bye_to": a.ack_bye_to, "sdp_bytes": a.sdp_bytes,
        "session_size": a.session_size, "max_calls": a.max_calls, "timeout_ms": a.timeout_ms,
        "t1_ms": a.t1_ms,
    });
    drive("sip", &a.common, uacs, p, cap, drain, config, |u| {
        let c = &u.counters;
        (
            c.completed,
            c.failures.calls(),
            serde_json::to_value(c.failures).unwrap_or_default(),
            serde_json::to_value(c.retransmissions).unwrap_or_default(),
            serde_json::to_value(c).unwrap_or_default(),
        )
    })
}

fn run_mgcp(a: MgcpArgs) -> anyhow::Result<()> {
    let p = prepare(&a.common)?;
    if a.timeout_ms == 0 || a.rto_ms == 0 {
        bail!("--timeout-ms and --rto-ms must be above 0");
    }
    let mut cfg = MgcpConfig::new(a.common.target, Vec::new());
    cfg.endpoint = a.endpoint.clone();
    cfg.hold_ns = a.hold_ms * 1_000_000;
    cfg.sdp_bytes = a.sdp_bytes;
    cfg.session_size = a.session_size;
    cfg.max_calls = a.max_calls.max(1);
    cfg.timeout_ns = a.timeout_ms * 1_000_000;
    cfg.rto_ns = a.rto_ms * 1_000_000;
    let cas = per_thread(&p, |locals, step| {
        let mut c = cfg.clone();
        c.locals = locals;
        c.index_step = step;
        c.max_calls = (cfg.max_calls / step as u32).max(1);
        MgcpCa::new(c)
    });
    let cap = cas[0].msg_cap();
    let drain = (3 * a.timeout_ms + a.hold_ms + 1000) * 1_000_000;
    let config = json!({
        "hold_ms": a.hold_ms, "endpoint": a.endpoint, "sdp_bytes": a.sdp_bytes,
        "session_size": a.session_size, "max_calls": a.max_calls, "timeout_ms": a.timeout_ms,
        "rto_ms": a.rto_ms,
    });
    drive("mgcp", &a.common, cas, p, cap, drain, config, |u| {
        let c = &u.counters;
        (
            c.completed,
            c.failures.calls(),
            serde_json::to_value(c.failures).unwrap_or_default(),
            serde_json::to_value(c.retransmissions).unwrap_or_default(),
            serde_json::to_value(c).unwrap_or_default(),
        )
    })
}

fn run_blast(a: BlastArgs) -> anyhow::Result<()> {
    let p = prepare(&a.common)?;
    let mut cfg = SipConfig::new(a.common.target, p.socks[0].locals().to_vec());
    cfg.blast = true;
    cfg.sdp_bytes = Some(0);
    let bare = SipUac::new(cfg.clone());
    let mut out = Outbox::new(1, bare.msg_cap());
    let mut b2 = bare;
    b2.start(0, 0, 0, &mut out);
    let base = out.iter().next().map(|m| m.2.len()).unwrap_or(0);
    if let Some(want) = a.bytes {
        if want > 65_000 {
            bail!("--bytes must fit a UDP datagram (at most 65000)");
        }
        if want < base + 9 {
            eprintln!(
                "note: --bytes {want} is below the bare INVITE ({base} bytes); sending {base}"
            );
        } else {
            cfg.pad_bytes = want - base;
        }
    }
    let uacs = per_thread(&p, |locals, step| {
        let mut c = cfg.clone();
        c.locals = locals;
        c.index_step = step;
        SipUac::new(c)
    });
    let cap = uacs[0].msg_cap();
    let config = json!({ "bytes": base + uac_pad(&a, base) });
    drive("blast", &a.common, uacs, p, cap, 0, config, |u| {
        let c = &u.counters;
        (
            c.completed,
            0,
            json!({}),
            json!({}),
            serde_json::to_value(c).unwrap_or_default(),
        )
    })
}

/// One engine per generator thread, made by `make(its local addresses, threads in all)`.
fn per_thread<E>(p: &Prepared, make: impl Fn(Vec<SocketAddr>, u64) -> E) -> Vec<E> {
    let step = p.socks.len() as u64;
    p.socks
        .iter()
        .map(|s| make(s.locals().to_vec(), step))
        .collect()
}

fn uac_pad(a: &BlastArgs, base: usize) -> usize {
    match a.bytes {
        Some(w) if w >= base + 9 => w - base,
        _ => 0,
    }
}

fn run_sink(a: SinkArgs) -> anyhow::Result<()> {
    let duration = Duration::from_nanos(secs_ns(a.duration, "--duration")?);
    pin(a.core)?;
    let r = match a.backend {
        SinkBackend::Udp => {
            let bind = a.bind.context("--backend udp needs --bind ADDR:PORT")?;
            sink::udp(bind, duration, a.idle)?
        }
        SinkBackend::Xdp => {
            let cfg = XdpSinkConfig {
                iface: a.iface.clone().context("--backend xdp needs --iface IF")?,
                port: a.port.context("--backend xdp needs --port P")?,
                queues: a.queues,
                mode: a.xdp_mode,
                zero_copy: a.zero_copy,
                idle: a.idle,
                duration,
            };
            sink::xdp(&cfg)?
        }
    };
    let text = serde_json::to_string_pretty(&r)?;
    {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    if let Some(p) = &a.json {
        if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn run_plot(a: PlotArgs) -> anyhow::Result<()> {
    let mut curves = Vec::new();
    for spec in &a.curves {
        let (name, path) = spec
            .split_once('=')
            .with_context(|| format!("{spec:?}: expected NAME=PATH"))?;
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let h = parse_hgrm(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("parsing {path}"))?;
        if h.total_count == 0 {
            eprintln!("switchyard-bench plot: warning: {path} has no samples; no {name} curve");
            continue;
        }
        curves.push(Curve::from_hgrm(name, &h));
    }
    if curves.is_empty() {
        bail!(
            "none of the histograms has samples; {} not written",
            a.out.display()
        );
    }
    let svg = svg_curves(&a.title, &curves).map_err(anyhow::Error::msg)?;
    if let Some(d) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&a.out, svg).with_context(|| format!("writing {}", a.out.display()))?;
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Sip(a) => run_sip(a),
        Cmd::Mgcp(a) => run_mgcp(a),
        Cmd::Blast(a) => run_blast(a),
        Cmd::Sink(a) => run_sink(a),
        Cmd::Plot(a) => run_plot(a),
    };
    if let Err(e) = r {
        eprintln!("switchyard-bench: error: {e:#}");
        std::process::exit(2);
    }
}
