//! Starts the in-chassis processor threads (claim 3) and hands the router their fabric queues
//! and load reports.
//!
//! Each local processor owns its entry's address for both SIP and MGCP: it receives initial
//! messages from its queue and the rest of its dialogs on that socket, and answers from it.
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
    lan::{Health, Lan, LanStats},
    links::{LinkedMember, Links},
    pool::{Kind, ProcessorEntry},
    report::ProcessorReport,
    route::{Router, RouterConfig},
};
use processor::report::ReportKey;

/// The processor pool (in-chassis threads, claim 3, and processors on other hosts, claim 4) and
/// the settings they share.
#[derive(Debug, Clone)]
pub struct ProcessorsConfig {
    /// Every processor, with its stable id (see [`crate::pool`]); local ones bind their `addr`.
    pub entries: Vec<ProcessorEntry>,
    /// Address local processors bind and name in their Contact / endpoint ids, as configured
    /// (`None`: derived from the SIP address); the entries already carry the resolved one.
    pub ip: Option<std::net::IpAddr>,
    /// Most new-INVITE transactions pending per processor (0: unlimited); the processors
    /// refuse beyond it and the router does not select a processor at it.
    pub max_pending_invites: u32,
    /// Fabric queue slots per processor.
    pub queue_depth: usize,
    /// RTP port range, split evenly between the local processors.
    pub media_ports: PortRange,
    /// Delay before the 200 OK (0: answer at once).
    pub answer_delay: Duration,
    /// Send 180 Ringing before the 200 OK.
    pub send_180: bool,
    /// CPU cores to pin processor threads to, round-robin (empty: unpinned).
    pub cores: Vec<usize>,
    /// Where remote processors send their load reports (and OPTIONS answers come back).
    pub report_listen: Option<SocketAddr>,
    /// The shared report key file.
    pub report_key_file: Option<PathBuf>,
    /// OPTIONS probe interval for `health=options` processors.
    pub probe_interval: Duration,
    /// Coalescing delay of the processor threads under load, ns (0: off); see
    /// [`fabric::coalesce`].
    pub coalesce_ns: u64,
}

/// The running processor threads, and the listener for processors on other hosts.
pub struct Processors {
    /// Per dispatcher thread, its view of every processor (by id).
    members: Mutex<Option<Vec<Vec<Option<LinkedMember>>>>>,
    handles: Vec<(usize, SocketAddr, JoinHandle<ProcessorStats>)>,
    stop: Arc<AtomicBool>,
    lan: Option<Lan>,
}

impl Processors {
    /// Binds and starts the local processors (each on its entry's address) and the listener
    /// for the remote ones. `_ip` is kept for the callers; the entries carry their addresses.
    /// Each local processor gets one fabric queue per dispatcher thread (`threads` ≥ 1), so no
    /// queue ever has two producers; its thread drains them all ([`fabric::fan_in`]).
    pub fn start(
        cfg: &ProcessorsConfig,
        _ip: IpAddr,
        router: &RouterConfig,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let threads = threads.max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let mut entries: Vec<&ProcessorEntry> = cfg.entries.iter().collect();
        entries.sort_by_key(|e| e.id);
        if entries.len() > crate::route::select::MAX_PROCESSORS {
            anyhow::bail!(
                "at most {} processors",
                crate::route::select::MAX_PROCESSORS
            );
        }
        for w in entries.windows(2) {
            if w[0].id == w[1].id {
                anyhow::bail!("processor id {} is given twice", w[0].id);
            }
        }
        let pool = entries.last().map_or(0, |e| e.id + 1);
        let n_local = u16::try_from(entries.iter().filter(|e| e.kind == Kind::Local).count())
            .unwrap_or(u16::MAX);
        let deployment = Deployment {
            pool,
            capacity: 0,
            answer_delay: cfg.answer_delay,
            send_180: cfg.send_180,
            session_size: router.session_size.clone(),
            tag_keys: router.tag_keys,
            max_pending_invites: cfg.max_pending_invites,
        };
        // Indexed by id; ids no processor has stay `None` (ids are stable names, see `pool`).
        let mut members: Vec<Vec<Option<LinkedMember>>> = (0..threads)
            .map(|_| {
                let mut v = Vec::new();
                v.resize_with(usize::from(pool), || None);
                v
            })
            .collect();
        let mut handles = Vec::new();
        let mut remote = Vec::new();
        let mut k: u16 = 0;
        for e in entries {
            if e.kind == Kind::Remote {
                remote.push((usize::from(e.id), e.clone()));
                continue;
            }
            let (id, addr) = (e.id, e.addr);
            let socket = UdpSocket::bind(addr)
                .with_context(|| format!("binding processor {id} on {addr}"))?;
            let (producers, consumer) =
                fabric::fan_in(threads, cfg.queue_depth).context("creating the fabric queues")?;
            let load = LoadReport::new(e.capacity);
            let media = cfg.media_ports.share(n_local, k).with_context(|| {
                format!(
                    "--media-ports {} is too small for {n_local} processors (each needs {} ports)",
                    cfg.media_ports,
                    processor::deploy::MIN_MEDIA_PORTS
                )
            })?;
            let mut pc = deployment.processor(id, addr, media);
            pc.sip.capacity_units = e.capacity;
            pc.mgcp.capacity_units = e.capacity;
            pc.coalesce_ns = cfg.coalesce_ns;
            pc.core = (!cfg.cores.is_empty()).then(|| cfg.cores[usize::from(k) % cfg.cores.len()]);
            let handle = processor::thread::try_spawn(
                pc,
                consumer,
                Arc::clone(&load),
                socket,
                Arc::clone(&stop),
            )
            .with_context(|| format!("starting processor thread {id}"))?;
            for (t, producer) in producers.into_iter().enumerate() {
                let mut member =
                    LinkedMember::local(addr.port(), e.capacity, producer, Arc::clone(&load));
                member.spec.max_pending = cfg.max_pending_invites;
                member.spec.addr = addr;
                member.spec.weight = e.weight;
                members[t][usize::from(id)] = Some(member);
            }
            handles.push((usize::from(id), addr, handle));
            k += 1;
        }
        if n_local > 0 {
            info!(count = n_local, first = %handles[0].1, "processors started");
        }
        let lan = Self::start_lan(cfg, router, &remote, &mut members)?;
        if members[0].iter().all(Option::is_none) {
            warn!("no processors: every new dialog will be answered 503 / 403");
        }
        Ok(Self {
            members: Mutex::new(Some(members)),
            handles,
            stop,
            lan,
        })
    }

    /// Fills in the remote members (at their ids) and starts their report listener: when some
    /// are configured, or when `--report-listen` is given with none (so processors on other
    /// hosts can be watched at runtime, [`Lan::watch`]).
    fn start_lan(
        cfg: &ProcessorsConfig,
        router: &RouterConfig,
        remote: &[(usize, ProcessorEntry)],
        members: &mut [Vec<Option<LinkedMember>>],
    ) -> anyhow::Result<Option<Lan>> {
        if remote.is_empty() && cfg.report_listen.is_none() {
            return Ok(None);
        }
        let listen = cfg.report_listen.context(
            "--remote-processor needs --report-listen (where processors send load reports)",
        )?;
        let needs_key = remote.iter().any(|(_, e)| e.health.mode == Health::Reports);
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
        for (index, e) in remote {
            let load = LoadReport::new(e.capacity);
            board.push((*index, e.remote_spec(), Arc::clone(&load)));
            for m in members.iter_mut() {
                m[*index] = Some(LinkedMember::remote_entry(e, Arc::clone(&load)));
            }
        }
        info!(remote = remote.len(), report_listen = %listen, "processors on other hosts configured");
        Ok(Some(Lan::start(
            sock,
            key,
            board,
            cfg.probe_interval,
            Duration::from_nanos(router.report_timeout_ns),
        )?))
    }

    /// One router per dispatcher thread over these processors, each with the links that carry
    /// out its handoffs (its own fabric queue producers, and its own LAN forwarding socket,
    /// bound on `ip`, any port, so processors on other hosts can be added at runtime).
    pub fn routers(&self, cfg: &RouterConfig, ip: IpAddr) -> anyhow::Result<Vec<(Router, Links)>> {
        let mut out = Vec::new();
        for members in self.members()? {
            let sock = UdpSocket::bind(SocketAddr::new(ip, 0))
                .context("binding the LAN forwarding socket")?;
            let forwarder = Some(Forwarder::new(sock)?);
            let links = Links::new(members, forwarder, cfg, fabric::monotonic_ns());
            let mut router = Router::new(cfg.clone(), Vec::new());
            for (id, spec) in links.specs_by_id() {
                router.set_member(id, spec);
            }
            out.push((router, links));
        }
        Ok(out)
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

    /// Each dispatcher thread's view of the processors; can be taken once.
    pub fn members(&self) -> anyhow::Result<Vec<Vec<Option<LinkedMember>>>> {
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
            .map(|(id, addr, h)| ProcessorReport {
                id,
                addr,
                stats: h.join().ok(),
            })
            .collect();
        (reports, lan)
    }
}
