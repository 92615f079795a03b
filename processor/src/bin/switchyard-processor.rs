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
    config_file,
    deploy::{tag_keys_from_files, Deployment, PortRange, DEFAULT_MEDIA_PORTS, UNKEYED_WARNING},
    metrics::{render_processor, ProcessorSnapshot},
    report::{Report, ReportKey},
    thread::LiveStats,
};
use serde::Deserialize;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use wire::SessionSizeConfig;

/// A Switchyard processor on its own host: SIP UAS + MGCP gateway, reporting load over UDP.
///
/// Every flag is also a key of the `--config` file (same name without `--`; `relay` and
/// `report-to` are arrays); a flag given overrides the file's key.
#[derive(Parser, Deserialize, Debug, Default)]
#[command(name = "switchyard-processor", version, about)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Args {
    /// TOML file with these settings as keys (see packaging/switchyard-processor.toml); flags
    /// given here override its keys.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on and to name in Contact / endpoint ids (SIP and MGCP). Required.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// This processor's id, as the dispatchers' pool names it (`id` of its `[[processor]]`
    /// table, or its place in their `--remote-processor` list); it is encoded in To-tags and
    /// connection ids, so every dispatcher routes in-dialog traffic here without shared state.
    /// Required.
    #[arg(long)]
    id: Option<u16>,
    /// Size of the dispatchers' pool (highest id + 1; bounds valid ids in tags). Required.
    #[arg(long)]
    processors: Option<u16>,
    /// Dispatcher report listener(s) to send load reports to (repeatable). Required.
    #[arg(long = "report-to")]
    #[serde(default)]
    report_to: Vec<SocketAddr>,
    /// File holding the shared report key (any bytes; trailing newline ignored). Required.
    #[arg(long, env = "SWITCHYARD_REPORT_KEY_FILE")]
    report_key_file: Option<PathBuf>,
    /// Milliseconds between load reports. [default: 100]
    #[arg(long)]
    report_interval_ms: Option<u64>,
    /// Dispatcher addresses trusted to relay MGCP with `X-SY-Src` (default: the --report-to IPs).
    #[arg(long = "relay")]
    #[serde(default, rename = "relay")]
    relays: Vec<IpAddr>,
    /// Capacity in session units (0: unlimited). [default: 0]
    #[arg(long)]
    capacity: Option<u32>,
    /// Most INVITE server transactions pending (answered, not yet acknowledged) at once; a new
    /// INVITE beyond it is answered 503 with Retry-After (0: unlimited). [default: 8192]
    #[arg(long)]
    max_pending_invites: Option<u32>,
    /// Under load, sleep up to this many µs between rounds instead of parking until woken, so
    /// one wake-up serves a batch (0: park and be woken per datagram). [default: 500]
    #[arg(long)]
    coalesce_us: Option<u64>,
    /// RTP ports, half for SIP and half for MGCP. [default: 20000-59999]
    #[arg(long)]
    #[serde(default, deserialize_with = "de_parse")]
    media_ports: Option<PortRange>,
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
    /// same name; else derived from SDP; else 1. [default: X-Session-Size]
    #[arg(long)]
    session_size_header: Option<String>,
    /// MGCP extension parameter with an explicit session size, as the dispatchers'.
    /// [default: X-Size]
    #[arg(long)]
    session_size_param: Option<String>,
    /// Send 180 Ringing before 200 OK.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(rename = "send-180")]
    send_180: Option<bool>,
    /// Milliseconds before answering 200 OK. [default: 0]
    #[arg(long)]
    answer_delay_ms: Option<u64>,
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
    /// Log filter. [default: info]
    #[arg(long, env = "SWITCHYARD_LOG")]
    log_level: Option<String>,
}

/// The settings after flags over file over defaults.
struct Settings {
    listen: SocketAddr,
    id: u16,
    processors: u16,
    report_to: Vec<SocketAddr>,
    report_key_file: PathBuf,
    report_interval_ms: u64,
    relays: Vec<IpAddr>,
    capacity: u32,
    max_pending_invites: u32,
    coalesce_us: u64,
    media_ports: PortRange,
    tag_key_file: Option<PathBuf>,
    tag_key_previous_file: Option<PathBuf>,
    session_size_header: String,
    session_size_param: String,
    send_180: bool,
    answer_delay_ms: u64,
    core: Option<usize>,
    stats_json: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    log_level: String,
}

impl Args {
    /// Reads `--config` (if given) and merges these flags over it.
    fn settings(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --config {}", path.display()))?;
                toml::from_str::<Args>(&text)
                    .map_err(|e| anyhow::anyhow!(config_file::describe(&e, &text, path)))?
            }
            None => Args::default(),
        };
        self.merge(file)
    }

    /// These flags over `file`'s keys over the defaults.
    fn merge(self, file: Args) -> anyhow::Result<Settings> {
        let f = self;
        let need =
            |what: &str| anyhow::anyhow!("--{what} (or key `{what}` in --config) is required");
        let s = Settings {
            listen: f.listen.or(file.listen).ok_or_else(|| need("listen"))?,
            id: f.id.or(file.id).ok_or_else(|| need("id"))?,
            processors: f
                .processors
                .or(file.processors)
                .ok_or_else(|| need("processors"))?,
            report_to: or_file(f.report_to, file.report_to),
            report_key_file: f
                .report_key_file
                .or(file.report_key_file)
                .ok_or_else(|| need("report-key-file"))?,
            report_interval_ms: f
                .report_interval_ms
                .or(file.report_interval_ms)
                .unwrap_or(100),
            relays: or_file(f.relays, file.relays),
            capacity: f.capacity.or(file.capacity).unwrap_or(0),
            max_pending_invites: f
                .max_pending_invites
                .or(file.max_pending_invites)
                .unwrap_or(processor::sip::DEFAULT_MAX_PENDING_INVITES),
            coalesce_us: f
                .coalesce_us
                .or(file.coalesce_us)
                .unwrap_or(fabric::coalesce::DEFAULT_DELAY_NS / 1_000),
            media_ports: f
                .media_ports
                .or(file.media_ports)
                .unwrap_or(DEFAULT_MEDIA_PORTS),
            tag_key_file: f.tag_key_file.or(file.tag_key_file),
            tag_key_previous_file: f.tag_key_previous_file.or(file.tag_key_previous_file),
            session_size_header: f
                .session_size_header
                .or(file.session_size_header)
                .unwrap_or_else(|| "X-Session-Size".into()),
            session_size_param: f
                .session_size_param
                .or(file.session_size_param)
                .unwrap_or_else(|| "X-Size".into()),
            send_180: f.send_180.or(file.send_180).unwrap_or(false),
            answer_delay_ms: f.answer_delay_ms.or(file.answer_delay_ms).unwrap_or(0),
            core: f.core.or(file.core),
            stats_json: f.stats_json.or(file.stats_json),
            metrics_listen: f.metrics_listen.or(file.metrics_listen),
            log_level: f
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
        };
        if s.report_to.is_empty() {
            return Err(need("report-to"));
        }
        if s.id >= s.processors {
            bail!("--id {} must be below --processors {}", s.id, s.processors);
        }
        Ok(s)
    }
}

/// The flag's list when given, else the file's.
fn or_file<T>(flag: Vec<T>, file: Vec<T>) -> Vec<T> {
    if flag.is_empty() {
        file
    } else {
        flag
    }
}

/// Deserializes a [`std::str::FromStr`] value from a string.
fn de_parse<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse().settings()?;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&a.log_level)?)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .init();
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
    cfg.coalesce_ns = a.coalesce_us.saturating_mul(1_000);
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

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../packaging/switchyard-processor.toml");

    fn file(text: &str) -> Args {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn shipped_example_parses() {
        let s = Args::default().merge(file(EXAMPLE)).unwrap();
        assert_eq!((s.id, s.processors, s.report_to.len()), (2, 3, 1));
        assert_eq!(
            s.max_pending_invites,
            processor::sip::DEFAULT_MAX_PENDING_INVITES
        );
        assert_eq!(s.media_ports, DEFAULT_MEDIA_PORTS);
        assert_eq!(s.report_interval_ms, 100);
    }

    #[test]
    fn flags_override_the_file() {
        let flags = Args::try_parse_from([
            "p",
            "--id",
            "0",
            "--report-to",
            "10.9.9.9:5062",
            "--send-180",
            "--capacity",
            "5",
        ])
        .unwrap();
        let s = flags.merge(file(EXAMPLE)).unwrap();
        assert_eq!((s.id, s.capacity, s.send_180), (0, 5, true));
        assert_eq!(
            s.report_to,
            ["10.9.9.9:5062".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(s.listen, file(EXAMPLE).listen.unwrap());
    }

    #[test]
    fn errors_name_line_and_key() {
        let text = "listen = \"127.0.0.1:5070\"\nrport-to = []\n";
        let e = toml::from_str::<Args>(text).unwrap_err();
        let m = config_file::describe(&e, text, std::path::Path::new("p.toml"));
        assert!(
            m.starts_with("p.toml:2:1: key `rport-to`: unknown field"),
            "{m}"
        );
        let m = Args::default()
            .merge(file("id = 1\n"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            m.contains("--listen (or key `listen` in --config) is required"),
            "{m}"
        );
        let text = "listen = \"127.0.0.1:5070\"\nid = 3\nprocessors = 3\nreport-to = [\"127.0.0.1:1\"]\nreport-key-file = \"/k\"\n";
        let m = Args::default().merge(file(text)).err().unwrap().to_string();
        assert!(m.contains("must be below"), "{m}");
    }
}
