//! `switchyard`: the dispatcher appliance's command line.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use dispatcher_user::{
    processors::ProcessorsConfig,
    route::{
        select::Policy, MarkPort, OptionsMode, OtherMode, RouterConfig, DEFAULT_AFFINITY_CAPACITY,
    },
    run::{run, Backend, RunConfig},
    xdp_shell::Idle,
};
use tracing_subscriber::EnvFilter;
use wire::SessionSizeConfig;
use xdp_io::{
    loader::{AttachMode, SourceGuard},
    prefix::Prefix,
    xsk::ZeroCopy,
};

/// Switchyard: a kernel-bypass dispatcher for SIP and MGCP session signalling.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the dispatcher until SIGINT/SIGTERM; prints counters on exit. SIGHUP reloads.
    Run(Box<RunArgs>),
    /// Talk to a running dispatcher over its control socket.
    Ctl(CtlArgs),
}

#[derive(clap::Args, Debug)]
struct CtlArgs {
    /// The dispatcher's control socket (its --ctl-socket).
    #[arg(long, default_value = dispatcher_user::run::DEFAULT_CTL_SOCKET, env = "SWITCHYARD_CTL_SOCKET")]
    socket: PathBuf,
    /// Print the reply as JSON (for scripts) instead of text.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(Subcommand, Debug)]
enum CtlCmd {
    /// Every processor: id, address, kind, state, units in use / capacity, weight, messages
    /// forwarded, new dialogs, time since last heard.
    List,
    /// No new dialogs for processor ID; retransmissions, CANCEL and in-dialog requests still
    /// reach it. `list` shows draining, then drained when it holds nothing.
    Drain { id: u16 },
    /// Take processor ID out of service, as if it were down.
    Disable { id: u16 },
    /// Put processor ID back in service (ends drain or disable).
    Enable { id: u16 },
    /// Add a processor on another host: `id=N,HOST:PORT[,capacity=N][,health=reports|options|none]`.
    Add { spec: String },
    /// Take processor ID out of the pool.
    Remove { id: u16 },
    /// Re-read the config file and apply the difference (as SIGHUP does).
    Reload,
    /// Every counter, as JSON.
    Stats,
    /// Exit 0 when running with at least one processor up, 1 otherwise (for BGP announcers and
    /// health checks).
    Health,
}

/// `switchyard ctl`: one request, the reply printed; exit 0 on success, 1 when the dispatcher
/// refused or is unhealthy, 2 when it could not be reached.
fn ctl(a: CtlArgs) -> std::process::ExitCode {
    use dispatcher_user::control::{list_table, socket::call, Request};
    let req = match a.cmd {
        CtlCmd::List => Request::List,
        CtlCmd::Drain { id } => Request::Drain { id },
        CtlCmd::Disable { id } => Request::Disable { id },
        CtlCmd::Enable { id } => Request::Enable { id },
        CtlCmd::Add { spec } => Request::Add { spec },
        CtlCmd::Remove { id } => Request::Remove { id },
        CtlCmd::Reload => Request::Reload,
        CtlCmd::Stats => Request::Stats,
        CtlCmd::Health => Request::Health,
    };
    let reply = match call(&a.socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard ctl: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    } else {
        match (&req, &reply.data) {
            (Request::List, Some(d)) => {
                match serde_json::from_value::<Vec<dispatcher_user::status::ProcessorStatus>>(
                    d.clone(),
                ) {
                    Ok(p) => print!("{}", list_table(&p)),
                    Err(_) => println!("{d}"),
                }
            }
            (Request::Stats, Some(d)) => {
                println!("{}", serde_json::to_string_pretty(d).unwrap_or_default())
            }
            _ if reply.ok => println!("{}", reply.message),
            _ => eprintln!("switchyard ctl: {}", reply.message),
        }
    }
    if reply.ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// I/O backend: xdp (XDP + AF_XDP on --iface), udp (plain sockets), auto (xdp when possible).
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// Interface to attach the XDP program to (xdp backend).
    #[arg(long)]
    iface: Option<String>,
    /// Well-known SIP address. The xdp backend steers UDP to this port on --iface.
    #[arg(long, default_value = "0.0.0.0:5060")]
    sip: SocketAddr,
    /// Well-known MGCP address (gateway port, RFC 3435).
    #[arg(long, default_value = "0.0.0.0:2427")]
    mgcp: SocketAddr,
    /// CPU core to pin the dispatcher thread to.
    #[arg(long)]
    core: Option<usize>,
    /// XDP attach mode; native falls back to generic (with a warning) if the driver refuses.
    #[arg(long, value_enum, default_value = "native")]
    xdp_mode: AttachMode,
    /// AF_XDP zero-copy: auto tries zero-copy then copy; on requires it; off forces copy.
    #[arg(long, value_enum, default_value = "auto")]
    zero_copy: ZeroCopy,
    /// Number of rx queues to serve, from queue 0 (default: all queues of --iface).
    #[arg(long)]
    queues: Option<u32>,
    /// What the dispatcher thread does when its rings are empty.
    #[arg(long, value_enum, default_value = "poll")]
    idle: Idle,
    /// Stop after this many seconds (default: run until signalled).
    #[arg(long)]
    duration: Option<f64>,
    /// Log a counters line every this many seconds while running (0: only at exit).
    #[arg(long, default_value_t = 0.0)]
    stats_interval: f64,
    /// Write every exit counter as JSON to this file (`-`: to stdout). A short summary goes to
    /// stderr in any case.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// Accept well-known-port datagrams only from this source prefix (repeatable; CIDR or a bare
    /// address). Others are dropped in XDP, unanswered, and counted in xdp.dropped_not_allowed.
    /// Once any prefix is given, both address families are restricted. Default: every source.
    #[arg(long = "allow-source", value_name = "CIDR")]
    allow_source: Vec<Prefix>,
    /// Per-source limit on well-known-port datagrams per second, enforced in XDP (0: off).
    /// Datagrams over it are dropped unanswered and counted in xdp.dropped_rate.
    #[arg(long, value_name = "N", default_value_t = 0)]
    source_rate: u32,
    /// Datagrams a source may send at once before --source-rate applies (default: 2 x rate).
    #[arg(long, value_name = "N")]
    source_burst: Option<u32>,
    /// Sources (repeatable; CIDR or a bare address) that --source-rate does not apply to.
    #[arg(long = "rate-exempt", value_name = "CIDR")]
    rate_exempt: Vec<Prefix>,
    /// Number of in-chassis processor threads.
    #[arg(long, default_value_t = 2)]
    processors: u16,
    /// Processor k listens on port START+k (SIP and MGCP), and names it in its answers.
    #[arg(long, value_name = "START", default_value_t = 5070)]
    processor_ports: u16,
    /// Address processors bind and name in Contact / endpoint ids (default: the --sip address,
    /// or 127.0.0.1 when that is 0.0.0.0).
    #[arg(long)]
    processor_ip: Option<std::net::IpAddr>,
    /// CPU cores for processor threads, comma-separated, used round-robin (default: unpinned).
    #[arg(long, value_delimiter = ',')]
    processor_cores: Vec<usize>,
    /// How new dialogs are spread: least-loaded, size-aware, round-robin, hash (Call-ID).
    #[arg(long, value_enum, default_value = "least-loaded")]
    policy: Policy,
    /// Capacity of each processor in session units (0: unlimited). Beyond it: 503 / 403.
    #[arg(long, default_value_t = 0)]
    capacity: u32,
    /// Most INVITE server transactions each processor keeps pending (answered, not yet
    /// acknowledged) at once: a new INVITE beyond it is answered 503 + Retry-After by the
    /// processor, and a processor at its cap is out of selection (503 from the dispatcher
    /// when all are). 0: unlimited.
    #[arg(long, default_value_t = processor::sip::DEFAULT_MAX_PENDING_INVITES)]
    max_pending_invites: u32,
    /// Fabric queue slots per processor; a full queue means the next candidate, or 503.
    #[arg(long, default_value_t = 4096)]
    queue_depth: usize,
    /// Claim 2: forwarded INVITE/CRCX carry the chosen processor's port (and Via received/rport).
    #[arg(long)]
    mark_port: bool,
    /// SIP header carrying the processor port with --mark-port.
    #[arg(long, default_value = "X-Switchyard-Port")]
    mark_header: String,
    /// MGCP extension parameter carrying the processor port with --mark-port.
    #[arg(long, default_value = "X-SY-Port")]
    mark_param: String,
    /// SIP header with an explicit session size (units); else derived from SDP; else 1.
    #[arg(long, default_value = "X-Session-Size")]
    session_size_header: String,
    /// MGCP extension parameter with an explicit session size.
    #[arg(long, default_value = "X-Size")]
    session_size_param: String,
    /// OPTIONS outside a dialog: answer here (200) or forward to a processor.
    #[arg(long, value_enum, default_value = "answer")]
    options: OptionsMode,
    /// Other out-of-dialog methods (REGISTER, MESSAGE, ...): reject (405/501) or forward.
    #[arg(long, value_enum, default_value = "reject")]
    other_methods: OtherMode,
    /// Retry-After seconds in the dispatcher's 503 answers.
    #[arg(long, default_value_t = 5)]
    retry_after: u32,
    /// Affinity table entries (INVITE transactions remembered for retransmissions/CANCEL/ACK).
    #[arg(long, default_value_t = DEFAULT_AFFINITY_CAPACITY)]
    affinity_capacity: usize,
    /// Affinity entry lifetime in seconds (≥ 64·T1 = 32 s plus margin).
    #[arg(long, default_value_t = 72)]
    affinity_ttl: u32,
    /// Processor answers with 180 Ringing before 200 OK.
    #[arg(long)]
    send_180: bool,
    /// Milliseconds the processor waits before answering 200 OK.
    #[arg(long, default_value_t = 0)]
    answer_delay_ms: u64,
    /// RTP port range processors allocate from, split evenly between them.
    #[arg(long, default_value_t = processor::deploy::DEFAULT_MEDIA_PORTS)]
    media_ports: processor::deploy::PortRange,
    /// File with the secret shared with processors that keys the MAC (SipHash-2-4, key derived
    /// with HMAC-SHA256) over the processor id in To-tags and MGCP connection ids; without it
    /// tags are not authenticated (a warning at start). `switchyard-processor` takes the same.
    #[arg(long, env = "SWITCHYARD_TAG_KEY_FILE")]
    tag_key_file: Option<PathBuf>,
    /// The secret being rotated out: tags minted under it are still accepted (new ones use
    /// --tag-key-file). Remove it once the longest dialog minted under it has ended.
    #[arg(long, env = "SWITCHYARD_TAG_KEY_PREVIOUS_FILE")]
    tag_key_previous_file: Option<PathBuf>,
    /// A processor on another host (repeatable; ids follow the local processors in this
    /// order): `HOST:PORT[,capacity=N][,health=reports|options|none][,fail=N][,ok=N][,up=CODES]`.
    /// `reports`: a switchyard-processor sending signed load reports; `options`: any SIP
    /// server, probed with OPTIONS (up after `ok` answers in `up`, default 2 and 200-299;
    /// down after `fail` failed probes, default 3; codes joined with `;` or `+`, e.g.
    /// `up=200-299;404`); `none`: always up (a SIP server that answers no OPTIONS).
    #[arg(long = "remote-processor", value_name = "SPEC")]
    remote_processors: Vec<dispatcher_user::lan::RemoteSpec>,
    /// Address remote processors send load reports to (OPTIONS answers come back here too).
    #[arg(long)]
    report_listen: Option<SocketAddr>,
    /// File with the key shared with remote processors (reports are HMAC-SHA256 signed).
    #[arg(long, env = "SWITCHYARD_REPORT_KEY_FILE")]
    report_key_file: Option<PathBuf>,
    /// A remote processor silent for this long is out of selection until it reports again.
    #[arg(long, default_value_t = 800)]
    report_timeout_ms: u64,
    /// OPTIONS probe interval for health=options processors.
    #[arg(long, default_value_t = 200)]
    probe_interval_ms: u64,
    /// Seed of the router's random choices (its own To-tags; power-of-two-choices only for a
    /// message without a Call-ID/transaction key); default:
    /// drawn at start. Fix it to make a run's decisions reproducible.
    #[arg(long)]
    seed: Option<u64>,
    /// Control socket for `switchyard ctl` (mode 0600) [default: /run/switchyard/ctl.sock;
    /// when the default cannot be bound, a warning and no socket].
    #[arg(long)]
    ctl_socket: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (default: off).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// Log filter (error, warn, info, debug, trace, or a tracing EnvFilter directive).
    #[arg(long, default_value = "info", env = "SWITCHYARD_LOG")]
    log_level: String,
}

/// A seed that differs between runs and between dispatchers started together: the wall clock's
/// nanoseconds mixed with the process id.
fn start_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Ctl(a) => Ok(ctl(a)),
        Cmd::Run(a) => {
            tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::try_new(&a.log_level)?)
                .with_target(false)
                .with_writer(std::io::stderr)
                .with_ansi(colour())
                .init();
            let tag_keys = processor::deploy::tag_keys_from_files(
                a.tag_key_file.as_deref(),
                a.tag_key_previous_file.as_deref(),
            )
            .map_err(anyhow::Error::msg)?;
            if tag_keys.is_unkeyed() {
                tracing::warn!("{}", processor::deploy::UNKEYED_WARNING);
            }
            if a.source_rate == 0 && a.source_burst.is_some() {
                anyhow::bail!("--source-burst needs --source-rate");
            }
            if a.source_rate == 0 && !a.rate_exempt.is_empty() {
                anyhow::bail!("--rate-exempt needs --source-rate");
            }
            let guard = SourceGuard {
                allow: a.allow_source,
                rate: a.source_rate,
                burst: a
                    .source_burst
                    .unwrap_or(a.source_rate.saturating_mul(2))
                    .max(1),
                exempt: a.rate_exempt,
            };
            run(
                RunConfig {
                    guard,
                    backend: a.backend,
                    iface: a.iface,
                    sip: a.sip,
                    mgcp: a.mgcp,
                    core: a.core,
                    xdp_mode: a.xdp_mode,
                    zero_copy: a.zero_copy,
                    queues: a.queues,
                    idle: a.idle,
                    duration: a.duration.map(Duration::from_secs_f64),
                    stats_json: a.stats_json,
                    stats_interval: (a.stats_interval > 0.0)
                        .then(|| Duration::from_secs_f64(a.stats_interval)),
                    router: RouterConfig {
                        policy: a.policy,
                        session_size: SessionSizeConfig {
                            sip_header: a.session_size_header.into_bytes(),
                            mgcp_param: a.session_size_param.into_bytes(),
                            ..SessionSizeConfig::default()
                        },
                        affinity_capacity: a.affinity_capacity,
                        affinity_ttl_s: a.affinity_ttl,
                        options: a.options,
                        other: a.other_methods,
                        retry_after_s: a.retry_after,
                        mark_port: a.mark_port.then_some(MarkPort {
                            sip_header: a.mark_header,
                            mgcp_param: a.mark_param,
                        }),
                        report_timeout_ns: a.report_timeout_ms.saturating_mul(1_000_000),
                        seed: a.seed.unwrap_or_else(start_seed),
                        tag_keys,
                        ..RouterConfig::default()
                    },
                    processors: ProcessorsConfig {
                        count: a.processors,
                        first_port: a.processor_ports,
                        ip: a.processor_ip,
                        capacity: a.capacity,
                        max_pending_invites: a.max_pending_invites,
                        queue_depth: a.queue_depth,
                        media_ports: a.media_ports,
                        answer_delay: Duration::from_millis(a.answer_delay_ms),
                        send_180: a.send_180,
                        cores: a.processor_cores,
                        remote: a.remote_processors,
                        report_listen: a.report_listen,
                        report_key_file: a.report_key_file,
                        probe_interval: Duration::from_millis(a.probe_interval_ms),
                    },
                    ctl_socket: a.ctl_socket,
                    metrics_listen: a.metrics_listen,
                },
                None,
            )
            .map(|()| std::process::ExitCode::SUCCESS)
        }
    }
}

/// Colour in logs only on a terminal, and never with `NO_COLOR` set (https://no-color.org):
/// logs redirected to a file or journal must not carry ANSI escapes.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
