//! Wires a backend, the core and the dispatcher thread together for `switchyard run`.
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use dispatcher_common::PortProto;
use tracing::{info, warn};

use xdp_io::{
    loader::{AttachMode, SourceGuard, XdpProgram},
    xsk::{XskConfig, XskQueue, XskStats, ZeroCopy},
    Steering, SteeringConfig,
};

use crate::{
    control::{pool::Entries, socket::CtlSocket, Controller, ReloadFn, Reloadable},
    links::{control_channels, Dispatch},
    processors::{Processors, ProcessorsConfig},
    report::ThreadReport,
    report::{AfXdpReport, ExitReport, RouterReport},
    route::RouterConfig,
    stats::Published,
    status::StatusBoard,
    udp_shell::{self, Listener, UdpStats},
    xdp_shell::{self, Idle, PortTable, XdpShellStats},
};

/// Which I/O shell feeds the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// XDP when an interface is given and the process may load BPF, else UDP (says which).
    Auto,
    /// XDP program + AF_XDP sockets on `--iface`.
    Xdp,
    /// Plain UDP sockets with recvmmsg; no privileges needed.
    Udp,
}

/// Everything `switchyard run` needs; built from the command line.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Requested backend.
    pub backend: Backend,
    /// Interface for the XDP backend.
    pub iface: Option<String>,
    /// Well-known SIP address.
    pub sip: SocketAddr,
    /// Well-known MGCP address.
    pub mgcp: SocketAddr,
    /// Dispatcher threads (0: auto; see [`dispatcher_threads`]).
    pub dispatcher_threads: usize,
    /// Cores to pin the dispatcher threads to, thread i on `[i % len]` (empty: unpinned).
    pub dispatcher_cores: Vec<usize>,
    /// XDP attach mode.
    pub xdp_mode: AttachMode,
    /// Zero-copy request for AF_XDP.
    pub zero_copy: ZeroCopy,
    /// Number of rx queues to serve (default: all of the interface's).
    pub queues: Option<u32>,
    /// Idle strategy of the dispatcher thread.
    pub idle: Idle,
    /// Coalescing delay under load, ns (0: wake per datagram); see [`fabric::coalesce`].
    pub coalesce_ns: u64,
    /// Stop by itself after this long (for tests and scripted runs).
    pub duration: Option<Duration>,
    /// Where to write the exit counters as JSON.
    pub stats_json: Option<PathBuf>,
    /// Log a counters line this often (`None`: only at exit).
    pub stats_interval: Option<Duration>,
    /// The XDP source guard (allow-list, per-source rate limit); xdp backend only.
    pub guard: SourceGuard,
    /// The routing core's configuration.
    pub router: RouterConfig,
    /// The processors to start (local threads) and watch (remote ones).
    pub processors: ProcessorsConfig,
    /// The control socket `switchyard ctl` talks to (`--ctl-socket`). Failing to bind the
    /// default path ([`DEFAULT_CTL_SOCKET`]) is only a warning.
    pub ctl_socket: PathBuf,
    /// Where to serve Prometheus metrics (`--metrics-listen`); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// The config file these settings came from (re-read on reload); `None`: flags only.
    pub config_file: Option<PathBuf>,
}

pub use crate::config::DEFAULT_CTL_SOCKET;

/// Builds the configuration anew from its sources on reload (`None`: started without a file).
pub type Reloader = Option<Box<dyn Fn() -> anyhow::Result<RunConfig>>>;

impl RunConfig {
    /// What a reload may change, from this configuration.
    pub fn reloadable(&self) -> Reloadable {
        let p = &self.processors;
        let entries: Entries = p.entries.iter().map(|e| (e.id, e.clone())).collect();
        let restart_only = vec![
            ("backend", format!("{:?}", self.backend)),
            ("iface", format!("{:?}", self.iface)),
            ("sip", self.sip.to_string()),
            ("mgcp", self.mgcp.to_string()),
            ("dispatcher-threads", self.dispatcher_threads.to_string()),
            ("dispatcher-cores", format!("{:?}", self.dispatcher_cores)),
            ("xdp-mode", format!("{:?}", self.xdp_mode)),
            ("zero-copy", format!("{:?}", self.zero_copy)),
            ("queues", format!("{:?}", self.queues)),
            ("idle", format!("{:?}", self.idle)),
            ("coalesce-us", (self.coalesce_ns / 1_000).to_string()),
            (
                "affinity-capacity",
                self.router.affinity_capacity.to_string(),
            ),
            ("affinity-ttl", self.router.affinity_ttl_s.to_string()),
            ("processor-ip", format!("{:?}", p.ip)),
            ("processor-cores", format!("{:?}", p.cores)),
            ("queue-depth", p.queue_depth.to_string()),
            ("media-ports", p.media_ports.to_string()),
            ("send-180", p.send_180.to_string()),
            ("answer-delay-ms", format!("{:?}", p.answer_delay)),
            ("report-listen", format!("{:?}", p.report_listen)),
            ("report-key-file", format!("{:?}", p.report_key_file)),
            ("probe-interval-ms", format!("{:?}", p.probe_interval)),
            ("ctl-socket", format!("{:?}", self.ctl_socket)),
            ("metrics-listen", format!("{:?}", self.metrics_listen)),
            ("stats-json", format!("{:?}", self.stats_json)),
        ];
        Reloadable {
            router: self.router.clone(),
            guard: self.guard.clone(),
            entries,
            max_pending_invites: p.max_pending_invites,
            restart_only,
            stats_interval: self.stats_interval,
            report_keyed: p.report_key_file.is_some(),
        }
    }
}

/// Picks the backend for `auto`, saying why.
pub fn resolve_backend(cfg: &RunConfig) -> Backend {
    match cfg.backend {
        Backend::Auto => {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            match (&cfg.iface, root) {
                (Some(_), true) => {
                    info!("backend auto: using xdp (interface given, running as root)");
                    Backend::Xdp
                }
                (None, _) => {
                    info!("backend auto: using udp (no --iface given)");
                    Backend::Udp
                }
                (Some(_), false) => {
                    warn!("backend auto: using udp (not root: cannot load XDP programs)");
                    Backend::Udp
                }
            }
        }
        b => b,
    }
}

/// Runs until SIGINT/SIGTERM (or `duration`), then prints and writes the counters. SIGHUP
/// (and `ctl reload`) rebuild the configuration with `reloader` and apply the difference.
pub fn run(cfg: RunConfig, reloader: Reloader) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("installing the SIGHUP handler")?;
    let ctl = Control {
        hup,
        reload: reloader.map(|f| -> ReloadFn { Box::new(move || f().map(|c| c.reloadable())) }),
    };
    if cfg.sip.port() == cfg.mgcp.port() {
        bail!(
            "--sip and --mgcp must use different ports (both are {})",
            cfg.sip.port()
        );
    }
    let backend = resolve_backend(&cfg);
    if backend != Backend::Xdp && (cfg.guard.is_active() || !cfg.guard.exempt.is_empty()) {
        bail!("--allow-source, --source-rate and --rate-exempt are enforced by the XDP program: use --backend xdp with --iface (as root)");
    }
    if let Some(d) = cfg.duration {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let started = Instant::now();
    let report = match backend {
        Backend::Xdp => run_xdp(&cfg, &stop, ctl)?,
        Backend::Udp | Backend::Auto => run_udp(&cfg, &stop, ctl)?,
    };
    let elapsed = started.elapsed().as_secs_f64();
    info!(
        elapsed_s = format_args!("{elapsed:.1}"),
        "switchyard stopped"
    );
    eprint!("{}", report.summary(elapsed));
    match &cfg.stats_json {
        Some(path) if path.as_os_str() == "-" => {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Some(path) => std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?,
        None => {}
    }
    Ok(())
}

/// What the control loop needs besides the configuration.
struct Control {
    hup: Arc<AtomicBool>,
    reload: Option<ReloadFn>,
}

/// Opens the control socket: the given path must work; the default one may fail (another
/// instance holds it, or no permission for /run/switchyard), with a warning.
fn open_ctl_socket(
    cfg: &RunConfig,
    tx: std::sync::mpsc::Sender<crate::control::socket::Pending>,
) -> anyhow::Result<Option<CtlSocket>> {
    let path = cfg.ctl_socket.as_path();
    match CtlSocket::start(path, tx) {
        Ok(s) => Ok(Some(s)),
        Err(e) if path == std::path::Path::new(DEFAULT_CTL_SOCKET) => {
            warn!("no control socket (`switchyard ctl` will not reach this instance): {e:#}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `/health`: 200 while at least one processor is up, else 503 (what a load balancer or a BGP
/// announcer's check wants), with the same words as `switchyard ctl health`.
fn health_answer(s: &crate::status::Status) -> (u16, String) {
    if s.backend.is_empty() {
        return (503, "starting\n".to_owned());
    }
    let (ok, words) = s.health();
    (if ok { 200 } else { 503 }, words + "\n")
}

/// Serves the control socket, reloads and the periodic counters until `stop`.
#[allow(clippy::too_many_arguments)]
fn control_loop(
    cfg: &RunConfig,
    stop: &AtomicBool,
    published: &Arc<Published>,
    status: &Arc<StatusBoard>,
    sender: crate::links::ControlSender,
    watcher: Option<&dyn crate::control::Watcher>,
    program: Option<&mut XdpProgram>,
    ctl: Control,
    backend: &'static str,
) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let socket = open_ctl_socket(cfg, tx)?;
    if let Some(s) = &socket {
        info!(path = %s.path().display(), "control socket listening");
    }
    let mut controller = Controller::new(
        cfg.reloadable(),
        sender,
        Arc::clone(status),
        Arc::clone(published),
        watcher,
        program,
        ctl.reload,
        backend,
    );
    let metrics = match cfg.metrics_listen {
        Some(addr) => {
            let view = controller.view();
            let view2 = controller.view();
            let server = crate::metrics::MetricsServer::with_health(
                addr,
                Arc::new(move || crate::metrics::render(&view.get())),
                Arc::new(move || health_answer(&view2.get())),
            )
            .with_context(|| format!("serving metrics on --metrics-listen {addr}"))?;
            info!(listen = %server.local_addr(), "metrics at /metrics, health at /health");
            Some(server)
        }
        None => None,
    };
    controller.run(stop, &ctl.hup, &rx);
    drop(metrics);
    Ok(())
}

/// How many dispatcher threads to run: as configured, else (0, auto) one per served queue
/// capped by the cores given (`cores`, else the CPUs this process may run on, `cpus`: more
/// threads than CPUs would only take turns); never more than `queues` (a thread with no queue
/// would only idle), and at least one. `queues` is `None` for the udp backend (auto: one).
pub fn dispatcher_threads(
    configured: usize,
    cores: &[usize],
    cpus: usize,
    queues: Option<usize>,
) -> usize {
    let n = match (configured, queues) {
        (0, Some(q)) if !cores.is_empty() => q.min(cores.len()),
        (0, Some(q)) => q.min(cpus.max(1)),
        (0, None) => 1,
        (n, _) => n,
    };
    match queues {
        Some(q) if n > q => {
            warn!(
                threads = n,
                queues = q,
                "more dispatcher threads than rx queues served: running one per queue"
            );
            q.max(1)
        }
        _ => n.max(1),
    }
}

/// The CPUs this process may run on (its affinity mask and cgroup quota).
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The cores the processor threads are pinned to: `--processor-cores` as given; else, when
/// the dispatcher threads are pinned, every other core of the machine (so processors never
/// share a dispatcher's core); else none (unpinned). When the dispatcher cores are all the
/// machine has, the processors stay unpinned, with a warning.
fn processor_cores(cfg: &ProcessorsConfig, dispatcher_cores: &[usize]) -> Vec<usize> {
    if !cfg.cores.is_empty() || dispatcher_cores.is_empty() {
        return cfg.cores.clone();
    }
    let all: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let rest: Vec<usize> = all
        .into_iter()
        .filter(|c| !dispatcher_cores.contains(c))
        .collect();
    let local = cfg
        .entries
        .iter()
        .filter(|e| e.kind == crate::pool::Kind::Local)
        .count();
    if rest.is_empty() {
        warn!("the dispatcher threads are pinned to every core: processor threads run unpinned");
    } else if local > rest.len() {
        // Several processors on one core time-share it while the dispatcher cores may idle:
        // on a 2-core box `--core 1` alone leaves the processors core 0 (the bench's
        // generator core once; its 30,000/s stages collapsed).
        warn!(
            processors = local,
            cores = ?rest,
            "more processor threads than the cores the dispatcher threads leave: they share \
             them; --processor-cores chooses (it may include the dispatcher cores)"
        );
    } else {
        info!(cores = ?rest, "processor threads pinned to the cores the dispatcher threads do not use");
    }
    rest
}

/// Starts the processors with their cores resolved ([`processor_cores`]).
fn start_processors(cfg: &RunConfig, threads: usize) -> anyhow::Result<Processors> {
    let mut pc = cfg.processors.clone();
    pc.cores = processor_cores(&pc, &cfg.dispatcher_cores);
    Processors::start(&pc, processor_ip(cfg), &cfg.router, threads)
}

/// The core dispatcher thread `index` is pinned to, if any.
fn core_of(cores: &[usize], index: usize) -> Option<usize> {
    (!cores.is_empty()).then(|| cores[index % cores.len()])
}

fn pin(core: Option<usize>, index: usize) {
    let Some(id) = core else { return };
    if core_affinity::set_for_current(core_affinity::CoreId { id }) {
        info!(core = id, thread = index, "dispatcher thread pinned");
    } else {
        warn!(
            core = id,
            thread = index,
            "could not pin the dispatcher thread (core does not exist?); running unpinned"
        );
    }
}

/// The dispatcher thread's name: `dispatcher` alone, `dispatcher-I` of several.
fn thread_name(index: usize, threads: usize) -> String {
    if threads == 1 {
        "dispatcher".into()
    } else {
        format!("dispatcher-{index}")
    }
}

/// One router per thread over the processors, each with its control inbox and row in the
/// status board.
fn dispatches(
    procs: &Processors,
    cfg: &RunConfig,
    threads: usize,
) -> anyhow::Result<(crate::links::ControlSender, Arc<StatusBoard>, Vec<Dispatch>)> {
    let routers = procs.routers(&cfg.router, cfg.sip.ip())?;
    let (sender, inboxes) = control_channels(threads);
    let board = Arc::new(StatusBoard::new(threads));
    let cores = routers
        .into_iter()
        .zip(inboxes)
        .enumerate()
        .map(|(t, ((router, links), inbox))| {
            Dispatch::new(router, links)
                .on_thread(t)
                .with_control(inbox, Arc::clone(&board))
        })
        .collect();
    Ok((sender, board, cores))
}

fn run_udp(cfg: &RunConfig, stop: &Arc<AtomicBool>, ctl: Control) -> anyhow::Result<ExitReport> {
    let threads = dispatcher_threads(cfg.dispatcher_threads, &cfg.dispatcher_cores, cpus(), None);
    let sip = Listener::group(cfg.sip, PortProto::Sip, threads)
        .with_context(|| format!("binding SIP socket {}", cfg.sip))?;
    let mgcp = Listener::group(cfg.mgcp, PortProto::Mgcp, threads)
        .with_context(|| format!("binding MGCP socket {}", cfg.mgcp))?;
    let procs = start_processors(cfg, threads)?;
    info!(
        sip = %sip[0].local_addr(),
        mgcp = %mgcp[0].local_addr(),
        threads,
        processors = procs.len(),
        policy = ?cfg.router.policy,
        "udp backend listening"
    );
    let (sender, status, cores) = dispatches(&procs, cfg, threads)?;
    let published = &Arc::new(Published::new(threads));
    let mut handles = Vec::new();
    for (t, ((mut core, s), m)) in cores.into_iter().zip(sip).zip(mgcp).enumerate() {
        let listeners = vec![s, m];
        let core_id = core_of(&cfg.dispatcher_cores, t);
        let coalesce_ns = cfg.coalesce_ns;
        let stop2 = Arc::clone(stop);
        let pub2 = Arc::clone(published);
        let handle = std::thread::Builder::new()
            .name(thread_name(t, threads))
            .spawn(move || -> anyhow::Result<(Dispatch, UdpStats)> {
                pin(core_id, t);
                let mut stats = UdpStats::default();
                udp_shell::run(
                    &listeners,
                    &mut core,
                    coalesce_ns,
                    &stop2,
                    &mut stats,
                    &pub2,
                )?;
                stats.cpu_ns = crate::stats::thread_cpu_ns();
                Ok((core, stats))
            })?;
        handles.push((t, core_id, handle));
    }
    let looped = control_loop(
        cfg,
        stop,
        published,
        &status,
        sender,
        procs.watcher(),
        None,
        ctl,
        "udp",
    );
    stop.store(true, Ordering::Relaxed);
    let mut joined = Vec::new();
    for (t, core_id, h) in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("dispatcher thread {t} panicked"));
        joined.push((t, core_id, r));
    }
    let (processors, lan) = procs.stop();
    looped?;
    let mut udp = UdpStats::default();
    let mut router = RouterReport::default();
    let mut rows = Vec::new();
    for (t, core_id, r) in joined {
        let (core, stats) = r??;
        let report = RouterReport::new(&core);
        rows.push(ThreadReport::new(
            t,
            core_id,
            Vec::new(),
            stats.cpu_ns,
            &report,
        ));
        router.add(&report);
        udp.add(&stats);
    }
    Ok(ExitReport {
        backend: "udp".into(),
        dispatcher_cpu_ns: udp.cpu_ns,
        udp: Some(udp),
        attach_mode: None,
        zero_copy: None,
        xdp: None,
        afxdp: None,
        router,
        processors,
        lan,
        dispatcher_threads: rows,
    })
}

/// The address processors bind: `--processor-ip`, else the SIP address's, else loopback.
fn processor_ip(cfg: &RunConfig) -> std::net::IpAddr {
    match cfg.processors.ip {
        Some(ip) => ip,
        None if !cfg.sip.ip().is_unspecified() => cfg.sip.ip(),
        None => std::net::Ipv4Addr::LOCALHOST.into(),
    }
}

fn run_xdp(cfg: &RunConfig, stop: &Arc<AtomicBool>, ctl: Control) -> anyhow::Result<ExitReport> {
    let iface = cfg
        .iface
        .clone()
        .context("--backend xdp needs --iface (the interface whose traffic to steer)")?;
    let port_list = [
        (cfg.sip.port(), PortProto::Sip),
        (cfg.mgcp.port(), PortProto::Mgcp),
    ];
    let Steering {
        program: mut prog,
        mut queues,
        mode,
    } = Steering::open(&SteeringConfig {
        iface: &iface,
        ports: &port_list,
        queues: cfg.queues,
        xsk: XskConfig {
            zero_copy: cfg.zero_copy,
            ..XskConfig::default()
        },
        mode: cfg.xdp_mode,
        guard: cfg.guard.clone(),
    })
    .context("setting up XDP steering")?;
    if cfg.guard.is_active() {
        let list = |l: &[xdp_io::prefix::Prefix]| {
            l.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        info!(
            allow = %if cfg.guard.allow.is_empty() { "any".to_owned() } else { list(&cfg.guard.allow) },
            rate = cfg.guard.rate,
            burst = cfg.guard.burst,
            exempt = %list(&cfg.guard.exempt),
            "XDP source guard set"
        );
    }
    let nq = queues.len();
    let threads = dispatcher_threads(
        cfg.dispatcher_threads,
        &cfg.dispatcher_cores,
        cpus(),
        Some(nq),
    );
    let procs = start_processors(cfg, threads)?;
    let (sender, status, cores) = dispatches(&procs, cfg, threads)?;
    let published = &Arc::new(Published::new(threads));
    let zc = queues.iter().all(XskQueue::zero_copy);
    info!(
        %iface,
        queues = nq,
        threads,
        attach = ?mode,
        copy_mode = if zc { "zero-copy" } else { "copy" },
        sip_port = cfg.sip.port(),
        mgcp_port = cfg.mgcp.port(),
        processors = procs.len(),
        policy = ?cfg.router.policy,
        "xdp backend running"
    );
    // Thread t serves the queues i with i % threads == t: disjoint, and spread evenly.
    let mut shares: Vec<Vec<XskQueue>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, q) in queues.drain(..).enumerate() {
        shares[i % threads].push(q);
    }
    let mut handles = Vec::new();
    for (t, (mut core, mut mine)) in cores.into_iter().zip(shares).enumerate() {
        let ports = PortTable(port_list.to_vec());
        let core_id = core_of(&cfg.dispatcher_cores, t);
        let idle = cfg.idle;
        let coalesce_ns = cfg.coalesce_ns;
        let stop2 = Arc::clone(stop);
        let pub2 = Arc::clone(published);
        let ids: Vec<u32> = mine.iter().map(XskQueue::queue).collect();
        info!(thread = t, queues = ?ids, "dispatcher thread serves");
        let handle = std::thread::Builder::new()
            .name(thread_name(t, threads))
            .spawn(move || {
                pin(core_id, t);
                let mut stats = XdpShellStats::default();
                xdp_shell::run(
                    &mut mine,
                    &ports,
                    &mut core,
                    idle,
                    coalesce_ns,
                    &stop2,
                    &mut stats,
                    &pub2,
                );
                stats.cpu_ns = crate::stats::thread_cpu_ns();
                for q in mine.iter_mut() {
                    q.refresh_kernel_stats();
                }
                let qs: Vec<XskStats> = mine.iter().map(XskQueue::stats).collect();
                (core, stats, qs)
            })?;
        handles.push((t, core_id, ids, handle));
    }
    let looped = control_loop(
        cfg,
        stop,
        published,
        &status,
        sender,
        procs.watcher(),
        Some(&mut prog),
        ctl,
        "xdp",
    );
    stop.store(true, Ordering::Relaxed);
    let mut joined = Vec::new();
    for (t, core_id, ids, h) in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("dispatcher thread {t} panicked"));
        joined.push((t, core_id, ids, r));
    }
    let x = prog.counters()?;
    drop(prog); // detaches
    let (processors, lan) = procs.stop();
    looped?;
    let mut shell = XdpShellStats::default();
    let mut rings = Vec::new();
    let mut router = RouterReport::default();
    let mut rows = Vec::new();
    for (t, core_id, ids, r) in joined {
        let (core, stats, qs) = r?;
        let report = RouterReport::new(&core);
        rows.push(ThreadReport::new(t, core_id, ids, stats.cpu_ns, &report));
        router.add(&report);
        shell.add(&stats);
        rings.extend(qs);
    }
    Ok(ExitReport {
        backend: "xdp".into(),
        dispatcher_cpu_ns: shell.cpu_ns,
        udp: None,
        attach_mode: Some(format!("{mode:?}").to_lowercase()),
        zero_copy: Some(zc),
        xdp: Some(x),
        afxdp: Some(AfXdpReport::new(&rings, &shell)),
        router,
        processors,
        lan,
        dispatcher_threads: rows,
    })
}

#[cfg(test)]
mod thread_tests {
    use super::dispatcher_threads;

    #[test]
    fn auto_is_one_thread_per_queue_capped_by_the_cores_given() {
        assert_eq!(dispatcher_threads(0, &[], 8, Some(4)), 4);
        assert_eq!(
            dispatcher_threads(0, &[], 2, Some(16)),
            2,
            "capped by the CPUs"
        );
        assert_eq!(dispatcher_threads(0, &[2, 3], 8, Some(4)), 2);
        assert_eq!(dispatcher_threads(0, &[1, 2, 3], 8, Some(2)), 2);
        assert_eq!(
            dispatcher_threads(0, &[], 8, None),
            1,
            "udp: one unless asked"
        );
        assert_eq!(dispatcher_threads(0, &[], 8, Some(0)), 1);
    }

    #[test]
    fn an_explicit_count_holds_but_never_exceeds_the_queues() {
        assert_eq!(
            dispatcher_threads(2, &[], 1, Some(4)),
            2,
            "as asked, even past the CPUs"
        );
        assert_eq!(
            dispatcher_threads(3, &[], 8, None),
            3,
            "udp: one socket each"
        );
        assert_eq!(
            dispatcher_threads(4, &[], 8, Some(2)),
            2,
            "a thread without a queue idles"
        );
    }
}
