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
    links::Dispatch,
    processors::{Processors, ProcessorsConfig},
    report::{AfXdpReport, ExitReport, RouterReport},
    route::RouterConfig,
    stats::Published,
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
    /// Core to pin the dispatcher thread to.
    pub core: Option<usize>,
    /// XDP attach mode.
    pub xdp_mode: AttachMode,
    /// Zero-copy request for AF_XDP.
    pub zero_copy: ZeroCopy,
    /// Number of rx queues to serve (default: all of the interface's).
    pub queues: Option<u32>,
    /// Idle strategy of the dispatcher thread.
    pub idle: Idle,
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
    /// The control socket `switchyard ctl` talks to (`--ctl-socket`).
    pub ctl_socket: PathBuf,
    /// Where to serve Prometheus metrics (`--metrics-listen`); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// The config file these settings came from (re-read on reload); `None`: flags only.
    pub config_file: Option<PathBuf>,
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

/// Runs until SIGINT/SIGTERM (or `duration`), then prints and writes the counters.
pub fn run(cfg: RunConfig) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
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
    let published = Arc::new(Published::default());
    let report = match backend {
        Backend::Xdp => run_xdp(&cfg, &stop, &published)?,
        Backend::Udp | Backend::Auto => run_udp(&cfg, &stop, &published)?,
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

/// Logs one counters line per `stats_interval` until `stop` is set (the main thread's job while
/// the dispatcher thread runs).
fn report_while_running(
    cfg: &RunConfig,
    stop: &AtomicBool,
    published: &Published,
    prog: Option<&XdpProgram>,
) {
    let Some(every) = cfg.stats_interval else {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    };
    let mut next = Instant::now() + every;
    let mut last = (Instant::now(), published.load());
    let mut last_xdp = prog.and_then(|p| p.counters().ok());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() < next {
            continue;
        }
        next += every;
        let now = (Instant::now(), published.load());
        let xdp = prog.and_then(|p| p.counters().ok());
        let pair = xdp.zip(last_xdp).or(xdp.map(|x| (x, Default::default())));
        let secs = now.0.duration_since(last.0).as_secs_f64();
        info!("counters: {}", now.1.rates_line(&last.1, secs, pair));
        last = now;
        last_xdp = xdp;
    }
}

/// CPU time this thread has used, ns (`CLOCK_THREAD_CPUTIME_ID`): the dispatcher's own cost,
/// reported at exit so CPU per call can be computed without sampling.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn pin(core: Option<usize>) {
    let Some(id) = core else { return };
    if core_affinity::set_for_current(core_affinity::CoreId { id }) {
        info!(core = id, "dispatcher thread pinned");
    } else {
        warn!(
            core = id,
            "could not pin the dispatcher thread (core does not exist?); running unpinned"
        );
    }
}

fn run_udp(
    cfg: &RunConfig,
    stop: &Arc<AtomicBool>,
    published: &Arc<Published>,
) -> anyhow::Result<ExitReport> {
    let listeners = vec![
        Listener::bind(cfg.sip, PortProto::Sip)
            .with_context(|| format!("binding SIP socket {}", cfg.sip))?,
        Listener::bind(cfg.mgcp, PortProto::Mgcp)
            .with_context(|| format!("binding MGCP socket {}", cfg.mgcp))?,
    ];
    let procs = Processors::start(&cfg.processors, processor_ip(cfg), &cfg.router)?;
    info!(
        sip = %listeners[0].local_addr(),
        mgcp = %listeners[1].local_addr(),
        processors = procs.len(),
        policy = ?cfg.router.policy,
        "udp backend listening"
    );
    let (router, links) = procs.router(&cfg.router, cfg.sip.ip())?;
    let mut core = Dispatch::new(router, links);
    let core_id = cfg.core;
    let stop2 = Arc::clone(stop);
    let pub2 = Arc::clone(published);
    let handle = std::thread::Builder::new()
        .name("dispatcher".into())
        .spawn(move || -> anyhow::Result<(Dispatch, UdpStats)> {
            pin(core_id);
            let mut stats = UdpStats::default();
            udp_shell::run(&listeners, &mut core, &stop2, &mut stats, &pub2)?;
            stats.cpu_ns = thread_cpu_ns();
            Ok((core, stats))
        })?;
    report_while_running(cfg, stop, published, None);
    let joined = handle
        .join()
        .map_err(|_| anyhow::anyhow!("dispatcher thread panicked"));
    let (processors, lan) = procs.stop();
    let (core, stats) = joined??;
    Ok(ExitReport {
        backend: "udp".into(),
        dispatcher_cpu_ns: stats.cpu_ns,
        udp: Some(stats),
        attach_mode: None,
        zero_copy: None,
        xdp: None,
        afxdp: None,
        router: RouterReport::new(&core),
        processors,
        lan,
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

fn run_xdp(
    cfg: &RunConfig,
    stop: &Arc<AtomicBool>,
    published: &Arc<Published>,
) -> anyhow::Result<ExitReport> {
    let iface = cfg
        .iface
        .clone()
        .context("--backend xdp needs --iface (the interface whose traffic to steer)")?;
    let port_list = [
        (cfg.sip.port(), PortProto::Sip),
        (cfg.mgcp.port(), PortProto::Mgcp),
    ];
    let Steering {
        program: prog,
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
    let procs = Processors::start(&cfg.processors, processor_ip(cfg), &cfg.router)?;
    let (router, links) = procs.router(&cfg.router, cfg.sip.ip())?;
    let mut core = Dispatch::new(router, links);
    let zc = queues.iter().all(XskQueue::zero_copy);
    info!(
        %iface,
        queues = nq,
        attach = ?mode,
        copy_mode = if zc { "zero-copy" } else { "copy" },
        sip_port = cfg.sip.port(),
        mgcp_port = cfg.mgcp.port(),
        processors = procs.len(),
        policy = ?cfg.router.policy,
        "xdp backend running"
    );
    let ports = PortTable(port_list.to_vec());
    let core_id = cfg.core;
    let idle = cfg.idle;
    let stop2 = Arc::clone(stop);
    let pub2 = Arc::clone(published);
    let handle = std::thread::Builder::new()
        .name("dispatcher".into())
        .spawn(move || {
            pin(core_id);
            let mut stats = XdpShellStats::default();
            xdp_shell::run(
                &mut queues,
                &ports,
                &mut core,
                idle,
                &stop2,
                &mut stats,
                &pub2,
            );
            stats.cpu_ns = thread_cpu_ns();
            for q in queues.iter_mut() {
                q.refresh_kernel_stats();
            }
            let qs: Vec<XskStats> = queues.iter().map(XskQueue::stats).collect();
            (core, stats, qs)
        })?;
    report_while_running(cfg, stop, published, Some(&prog));
    let joined = handle
        .join()
        .map_err(|_| anyhow::anyhow!("dispatcher thread panicked"));
    let x = prog.counters()?;
    drop(prog); // detaches
    let (processors, lan) = procs.stop();
    let (core, shell, qs) = joined?;
    Ok(ExitReport {
        backend: "xdp".into(),
        dispatcher_cpu_ns: shell.cpu_ns,
        udp: None,
        attach_mode: Some(format!("{mode:?}").to_lowercase()),
        zero_copy: Some(zc),
        xdp: Some(x),
        afxdp: Some(AfXdpReport::new(&qs, &shell)),
        router: RouterReport::new(&core),
        processors,
        lan,
    })
}
