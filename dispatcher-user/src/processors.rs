//! Starts the in-chassis processor threads (claim 3) and hands the router their fabric queues
//! and load reports.
//!
//! Processor k owns `ip:(first_port + k)` for both SIP and MGCP: it receives initial messages
//! from its queue and the rest of its dialogs on that socket, and answers from it.
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use fabric::LoadReport;
use processor::{
    deploy::{Deployment, PortRange},
    thread::ProcessorStats,
};
use tracing::{info, warn};

use crate::{
    forward::Forwarder,
    lan::{Health, Lan, LanStats, RemoteSpec},
    links::{LinkedMember, Links},
    report::ProcessorReport,
    route::{Router, RouterConfig},
};
use processor::report::ReportKey;

/// In-chassis processor threads (claim 3): how many, where they listen, what they can take.
#[derive(Debug, Clone)]
pub struct ProcessorsConfig {
    /// Number of processor threads.
    pub count: u16,
    /// Processor k listens on `ip:(first_port + k)`, where ip is the SIP address's (or, when
    /// that is unspecified, the interface's first IPv4 address / 127.0.0.1).
    pub first_port: u16,
    /// Address processors bind and name in their Contact / endpoint ids; `None`: derived.
    pub ip: Option<std::net::IpAddr>,
    /// Capacity of each processor in session units (0: unlimited).
    pub capacity: u32,
    /// Most new-INVITE transactions pending per processor (0: unlimited); the processors
    /// refuse beyond it and the router does not select a processor at it.
    pub max_pending_invites: u32,
    /// Fabric queue slots per processor.
    pub queue_depth: usize,
    /// RTP port range, split evenly between processors.
    pub media_ports: PortRange,
    /// Delay before the 200 OK (0: answer at once).
    pub answer_delay: Duration,
    /// Send 180 Ringing before the 200 OK.
    pub send_180: bool,
    /// CPU cores to pin processor threads to, round-robin (empty: unpinned).
    pub cores: Vec<usize>,
    /// Processors on other hosts, after the local ones in the pool (ids count on from
    /// `count`).
    pub remote: Vec<RemoteSpec>,
    /// Where remote processors send their load reports (and OPTIONS answers come back).
    pub report_listen: Option<SocketAddr>,
    /// The shared report key file.
    pub report_key_file: Option<PathBuf>,
    /// OPTIONS probe interval for `health=options` processors.
    pub probe_interval: Duration,
}

/// The running processor threads, and the listener for processors on other hosts.
pub struct Processors {
    members: Mutex<Option<Vec<LinkedMember>>>,
    handles: Vec<(SocketAddr, JoinHandle<ProcessorStats>)>,
    stop: Arc<AtomicBool>,
    lan: Option<Lan>,
}

impl Processors {
    /// Binds and starts `cfg.count` processors on `ip`.
    pub fn start(
        cfg: &ProcessorsConfig,
        ip: IpAddr,
        router: &RouterConfig,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let n = cfg.count;
        let total = usize::from(n) + cfg.remote.len();
        if total > crate::route::select::MAX_PROCESSORS {
            anyhow::bail!(
                "at most {} processors",
                crate::route::select::MAX_PROCESSORS
            );
        }
        let deployment = Deployment {
            pool: u16::try_from(total).unwrap_or(u16::MAX),
            capacity: cfg.capacity,
            answer_delay: cfg.answer_delay,
            send_180: cfg.send_180,
            session_size: router.session_size.clone(),
            tag_keys: router.tag_keys,
            max_pending_invites: cfg.max_pending_invites,
        };
        let mut members = Vec::new();
        let mut handles = Vec::new();
        for k in 0..n {
            let port = cfg
                .first_port
                .checked_add(k)
                .context("--processor-ports + --processors exceeds 65535")?;
            let addr = SocketAddr::new(ip, port);
            let socket = UdpSocket::bind(addr).with_context(|| {
                format!("binding processor {k} on {addr} (see --processor-ports)")
            })?;
            let (producer, consumer) =
                fabric::channel(cfg.queue_depth).context("creating the fabric queue")?;
            let load = LoadReport::new(cfg.capacity);
            let media = cfg.media_ports.share(n, k).with_context(|| {
                format!(
                    "--media-ports {} is too small for {n} processors (each needs {} ports)",
                    cfg.media_ports,
                    processor::deploy::MIN_MEDIA_PORTS
                )
            })?;
            let mut pc = deployment.processor(k, addr, media);
            pc.core = (!cfg.cores.is_empty()).then(|| cfg.cores[usize::from(k) % cfg.cores.len()]);
            let handle = processor::thread::try_spawn(
                pc,
                consumer,
                Arc::clone(&load),
                socket,
                Arc::clone(&stop),
            )
            .with_context(|| format!("starting processor thread {k}"))?;
            let mut member = LinkedMember::local(port, cfg.capacity, producer, load);
            member.spec.max_pending = cfg.max_pending_invites;
            members.push(member);
            handles.push((addr, handle));
        }
        if n > 0 {
            info!(count = n, first = %handles[0].0, capacity = cfg.capacity, "processors started");
        }
        let lan = Self::start_lan(cfg, router, &mut members)?;
        if members.is_empty() {
            warn!("no processors: every new dialog will be answered 503 / 403");
        }
        Ok(Self {
            members: Mutex::new(Some(members)),
            handles,
            stop,
            lan,
        })
    }

    /// Adds the remote members (ids after the local ones) and starts their report listener:
    /// when some are configured, or when `--report-listen` is given with none (so processors
    /// on other hosts can be watched at runtime, [`Lan::watch`]).
    fn start_lan(
        cfg: &ProcessorsConfig,
        router: &RouterConfig,
        members: &mut Vec<LinkedMember>,
    ) -> anyhow::Result<Option<Lan>> {
        if cfg.remote.is_empty() && cfg.report_listen.is_none() {
            return Ok(None);
        }
        let listen = cfg.report_listen.context(
            "--remote-processor needs --report-listen (where processors send load reports)",
        )?;
        let needs_key = cfg.remote.iter().any(|r| r.health.mode == Health::Reports);
        let key = match (&cfg.report_key_file, needs_key) {
            (Some(path), _) => ReportKey::from_file(path)
                .with_context(|| format!("reading --report-key-file {}", path.display()))?,
            (None, false) => ReportKey::new(b"unused: options probing only"),
            (None, true) => anyhow::bail!(
                "--remote-processor with load reports needs --report-key-file (the key shared with the processors)"
            ),
        };
        let sock =
            UdpSocket::bind(listen).with_context(|| format!("binding --report-listen {listen}"))?;
        let mut board = Vec::new();
        for spec in &cfg.remote {
            let load = LoadReport::new(spec.capacity);
            board.push((members.len(), spec.clone(), Arc::clone(&load)));
            members.push(LinkedMember::remote(spec.addr, spec.capacity, load));
        }
        info!(remote = cfg.remote.len(), report_listen = %listen, "processors on other hosts configured");
        Ok(Some(Lan::start(
            sock,
            key,
            board,
            cfg.probe_interval,
            Duration::from_nanos(router.report_timeout_ns),
        )?))
    }

    /// The router over these processors and the links that carry out its handoffs, with a
    /// LAN forwarding socket (bound on `ip`, any port) when some are remote.
    pub fn router(&self, cfg: &RouterConfig, ip: IpAddr) -> anyhow::Result<(Router, Links)> {
        // Always bound (one socket), so processors on other hosts can be added at runtime.
        let sock =
            UdpSocket::bind(SocketAddr::new(ip, 0)).context("binding the LAN forwarding socket")?;
        let forwarder = Some(Forwarder::new(sock)?);
        let links = Links::new(self.members()?, forwarder, cfg, fabric::monotonic_ns());
        Ok((Router::new(cfg.clone(), links.specs()), links))
    }

    /// The LAN health monitor, when it runs (to watch / unwatch processors on other hosts and
    /// read its live counters).
    pub fn lan(&self) -> Option<&Lan> {
        self.lan.as_ref()
    }

    /// The health monitor of processors on other hosts, for adding and removing them at
    /// runtime (`None` without `--report-listen`).
    pub fn watcher(&self) -> Option<&dyn crate::control::Watcher> {
        self.lan.as_ref().map(|l| l as &dyn crate::control::Watcher)
    }

    /// Number of processors.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The router's view of the processors; can be taken once.
    pub fn members(&self) -> anyhow::Result<Vec<LinkedMember>> {
        self.members
            .lock()
            .map_err(|_| anyhow::anyhow!("processor list poisoned"))?
            .take()
            .context("processor members already taken")
    }

    /// Stops the threads (after the dispatcher has stopped) and returns their counters, and
    /// the LAN health monitor's when processors on other hosts were configured.
    pub fn stop(self) -> (Vec<ProcessorReport>, Option<LanStats>) {
        let lan = self.lan.map(Lan::stop);
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reports = self
            .handles
            .into_iter()
            .enumerate()
            .map(|(id, (addr, h))| ProcessorReport {
                id,
                addr,
                stats: h.join().ok(),
            })
            .collect();
        (reports, lan)
    }
}
