//! `switchyard-processor`: a processor on its own host (claims 4 and 12).
//!
//! Same SIP UAS and MGCP gateway as the in-chassis threads, listening on its own address. The
//! dispatcher forwards initial messages here over the LAN (with Via `received`/`rport`, or
//! `X-SY-Src` for MGCP, naming the true source) and this process answers the source directly;
//! later messages of each dialog come straight here. It reports its load to every dispatcher
//! given with `--report-to`, signed with the shared key, several times a second.
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use clap::Parser;
use fabric::{monotonic_ns, LoadReport};
use processor::{
    deploy::{tag_keys_from_files, Deployment, PortRange, DEFAULT_MEDIA_PORTS, UNKEYED_WARNING},
    metrics::{render_processor, ProcessorSnapshot},
    report::{Report, ReportKey},
    thread::LiveStats,
};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use wire::SessionSizeConfig;

/// A Switchyard processor on its own host: SIP UAS + MGCP gateway, reporting load over UDP.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on and to name in Contact / endpoint ids (SIP and MGCP).
    #[arg(long)]
    listen: SocketAddr,
    /// This processor's id: its index in the dispatchers' `--remote-processor` list (it is
    /// encoded in To-tags and connection ids, so every dispatcher routes in-dialog traffic
    /// here without shared state).
    #[arg(long)]
    id: u16,
    /// Number of processors in the dispatchers' list (bounds valid ids in tags).
    #[arg(long)]
    processors: u16,
    /// Dispatcher report listener(s) to send load reports to (repeatable).
    #[arg(long = "report-to", required = true)]
    report_to: Vec<SocketAddr>,
    /// File holding the shared report key (any bytes; trailing newline ignored).
    #[arg(long, env = "SWITCHYARD_REPORT_KEY_FILE")]
    report_key_file: PathBuf,
    /// Milliseconds between load reports.
    #[arg(long, default_value_t = 100)]
    report_interval_ms: u64,
    /// Dispatcher addresses trusted to relay MGCP with `X-SY-Src` (default: the --report-to IPs).
    #[arg(long = "relay")]
    relays: Vec<IpAddr>,
    /// Capacity in session units (0: unlimited).
    #[arg(long, default_value_t = 0)]
    capacity: u32,
    /// Most INVITE server transactions pending (answered, not yet acknowledged) at once; a new
    /// INVITE beyond it is answered 503 with Retry-After (0: unlimited).
    #[arg(long, default_value_t = processor::sip::DEFAULT_MAX_PENDING_INVITES)]
    max_pending_invites: u32,
    /// RTP ports, half for SIP and half for MGCP.
    #[arg(long, default_value_t = DEFAULT_MEDIA_PORTS)]
    media_ports: PortRange,
    /// File with the secret shared with the dispatchers that keys the MAC over the processor
    /// id in To-tags and MGCP connection ids (the dispatchers' `--tag-key-file`). Without it
    /// tags are not authenticated (a warning at start).
    #[arg(long, env = "SWITCHYARD_TAG_KEY_FILE")]
    tag_key_file: Option<PathBuf>,
    /// The secret being rotated out (the dispatchers' flag of the same name). A processor
    /// mints with --tag-key-file only and never verifies tags, so it only checks this file;
    /// it is accepted so every host of a deployment can be given the same settings.
    #[arg(long, env = "SWITCHYARD_TAG_KEY_PREVIOUS_FILE")]
    tag_key_previous_file: Option<PathBuf>,
    /// SIP header with an explicit session size (units), as the dispatchers' flag of the
    /// same name; else derived from SDP; else 1.
    #[arg(long, default_value = "X-Session-Size")]
    session_size_header: String,
    /// MGCP extension parameter with an explicit session size, as the dispatchers'.
    #[arg(long, default_value = "X-Size")]
    session_size_param: String,
    /// Send 180 Ringing before 200 OK.
    #[arg(long)]
    send_180: bool,
    /// Milliseconds before answering 200 OK.
    #[arg(long, default_value_t = 0)]
    answer_delay_ms: u64,
    /// CPU core to pin the processor thread to.
    #[arg(long)]
    core: Option<usize>,
    /// Serve Prometheus metrics (`GET /metrics`) and `GET /health` on this address
    /// (default: off).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Write counters as JSON here on exit.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// Log filter.
    #[arg(long, default_value = "info", env = "SWITCHYARD_LOG")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&a.log_level)?)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .init();
    if a.id >= a.processors {
        bail!("--id {} must be below --processors {}", a.id, a.processors);
    }
    let key = ReportKey::from_file(&a.report_key_file)
        .with_context(|| format!("reading --report-key-file {}", a.report_key_file.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let socket = UdpSocket::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    let report_socket = socket.try_clone()?;
    let load = LoadReport::new(a.capacity);
    let tag_keys = tag_keys_from_files(
        a.tag_key_file.as_deref(),
        a.tag_key_previous_file.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    if tag_keys.is_unkeyed() {
        warn!("{UNKEYED_WARNING}");
    }
    let deployment = Deployment {
        pool: a.processors,
        capacity: a.capacity,
        answer_delay: Duration::from_millis(a.answer_delay_ms),
        send_180: a.send_180,
        session_size: SessionSizeConfig {
            sip_header: a.session_size_header.clone().into_bytes(),
            mgcp_param: a.session_size_param.clone().into_bytes(),
            ..SessionSizeConfig::default()
        },
        tag_keys,
        max_pending_invites: a.max_pending_invites,
    };
    let mut cfg = deployment.processor(a.id, a.listen, a.media_ports);
    cfg.core = a.core;
    cfg.relays = if a.relays.is_empty() {
        a.report_to.iter().map(SocketAddr::ip).collect()
    } else {
        a.relays.clone()
    };
    let live = LiveStats::new();
    cfg.live = Some(Arc::clone(&live));
    let reports = Arc::new(AtomicU64::new(0));
    let report_errors = Arc::new(AtomicU64::new(0));
    let _metrics = match a.metrics_listen {
        Some(addr) => {
            let started = Instant::now();
            let (id, live, load, reports, errors) = (
                a.id,
                Arc::clone(&live),
                Arc::clone(&load),
                Arc::clone(&reports),
                Arc::clone(&report_errors),
            );
            let render = move || {
                let snap = ProcessorSnapshot {
                    id,
                    uptime_s: started.elapsed().as_secs_f64(),
                    stats: live.get(),
                    reports: reports.load(Ordering::Relaxed),
                    report_send_errors: errors.load(Ordering::Relaxed),
                    ..ProcessorSnapshot::default()
                };
                render_processor(&snap.with_load(&load))
            };
            let server = metrics_http::MetricsServer::start(addr, Arc::new(render))
                .with_context(|| format!("binding --metrics-listen {addr}"))?;
            info!(metrics = %server.local_addr(), "serving /metrics");
            Some(server)
        }
        None => None,
    };
    // Standalone: everything arrives on the socket; the queue stays empty.
    let (_producer, consumer) = fabric::channel(2)?;
    let handle =
        processor::thread::try_spawn(cfg, consumer, Arc::clone(&load), socket, Arc::clone(&stop))?;
    info!(listen = %a.listen, id = a.id, report_to = ?a.report_to, "processor running");

    let interval = Duration::from_millis(a.report_interval_ms.max(10));
    let mut seq = 0u64;
    let mut send_errors = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let r = Report {
            id: a.id,
            seq,
            sent_ns: monotonic_ns(),
            active: load.active.load(Ordering::Relaxed),
            capacity: a.capacity,
            units_in_use: load.in_use_units.load(Ordering::Relaxed),
            released_units: load.released_units.load(Ordering::Relaxed),
            rejected_units: load.rejected_units.load(Ordering::Relaxed),
            pending_invites: load.pending_invites.load(Ordering::Relaxed),
            max_pending_invites: a.max_pending_invites,
        };
        let bytes = r.encode(&key);
        for to in &a.report_to {
            if report_socket.send_to(&bytes, to).is_err() {
                send_errors += 1;
            }
        }
        reports.store(seq, Ordering::Relaxed);
        report_errors.store(send_errors, Ordering::Relaxed);
        std::thread::sleep(interval);
    }
    let stats = handle
        .join()
        .map_err(|_| anyhow::anyhow!("processor thread panicked"))?;
    if send_errors > 0 {
        warn!(send_errors, "some load reports could not be sent");
    }
    info!(?stats, reports = seq, "processor stopped");
    if let Some(path) = &a.stats_json {
        let v = processor::thread::StandaloneReport {
            reports: seq,
            report_send_errors: send_errors,
            stats,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&v)?)?;
    }
    Ok(())
}

/// Colour in logs only on a terminal, and never with `NO_COLOR` set (https://no-color.org):
/// logs redirected to a file or journal must not carry ANSI escapes.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
