//! The control plane of a running dispatcher: the control socket's commands (`switchyard ctl`),
//! configuration reloads (SIGHUP or `ctl reload`), operator events, and the periodic counters
//! line. It runs on the main thread while the dispatcher thread forwards.
//!
//! Why this split: every change to the pool or the routing configuration is decided here, off
//! the hot path, and reaches the dispatcher thread as a [`Command`] it applies between two
//! receive batches. The dispatcher thread never stops, waits or takes a lock for it, and it
//! owns everything a reload must keep: the affinity table (so retransmissions and CANCELs of
//! pending INVITEs still find their processor), what it assigned each processor, and every
//! counter. What the operator sees comes back the other way, as the [`Status`] the dispatcher
//! thread publishes.
//!
//! Reload is all or nothing: a file that does not validate, or that asks for something only a
//! restart can do (a new in-chassis processor thread), is refused with the reason, counted in
//! `reloads.failed`, and the running configuration stays as it was. Keys that only take effect
//! at start (addresses, backend, queues, the affinity table's size, ...) are kept as they were
//! and named in a warning.
pub mod pool;
pub mod socket;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use fabric::LoadReport;
use tracing::{error, info, warn};
use xdp_io::loader::{SourceGuard, XdpProgram};

use self::pool::{Change, Entries, Overlay};
use crate::{
    lan::Health,
    links::{Command, ControlSender, LinkedMember},
    pool::{Admin, Kind, ProcessorEntry},
    route::{MemberSpec, RouterConfig},
    stats::Published,
    status::{Reloads, State, Status, StatusBoard, StatusCell},
};

/// A command from `switchyard ctl`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Every processor and its state.
    List,
    /// No new dialogs for a processor; its transactions and dialogs still reach it.
    Drain {
        /// Processor id.
        id: u16,
    },
    /// Out of service, as if down.
    Disable {
        /// Processor id.
        id: u16,
    },
    /// Back in service (ends drain or disable).
    Enable {
        /// Processor id.
        id: u16,
    },
    /// Adds a processor on another host: `id=N,HOST:PORT[,capacity=N][,weight=N][,health=...]`.
    Add {
        /// The spec, as `--remote-processor` takes it (with `id=` required).
        spec: String,
    },
    /// Takes a processor out of the pool.
    Remove {
        /// Processor id.
        id: u16,
    },
    /// Re-reads the config file and applies the difference.
    Reload,
    /// Every counter, as JSON.
    Stats,
    /// Healthy = running with at least one processor up (for BGP announcers and load
    /// balancer checks).
    Health,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    /// Done (or, for `health`, healthy).
    pub ok: bool,
    /// What happened, in words.
    pub message: String,
    /// The data asked for (`list`: processors; `stats`: the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl Reply {
    /// Success with a message.
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            message: message.into(),
            data: None,
        }
    }

    /// Failure with the reason.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            data: None,
        }
    }
}

/// Starts, stops and re-specs the health watching of processors on other hosts (the LAN
/// monitor implements it).
pub trait Watcher {
    /// Watch processor `entry` (remote) whose board is `load`.
    fn watch(&self, entry: &ProcessorEntry, load: Arc<LoadReport>);
    /// Stop watching processor `id`.
    fn unwatch(&self, id: u16);
    /// Its health settings changed.
    fn update(&self, entry: &ProcessorEntry);
    /// The monitor's counters now.
    fn stats(&self) -> crate::lan::LanStats;
}

impl Watcher for crate::lan::Lan {
    fn watch(&self, entry: &ProcessorEntry, load: Arc<LoadReport>) {
        crate::lan::Lan::watch(self, usize::from(entry.id), entry.remote_spec(), load);
    }

    fn unwatch(&self, id: u16) {
        crate::lan::Lan::unwatch(self, usize::from(id));
    }

    fn update(&self, entry: &ProcessorEntry) {
        self.set_spec(usize::from(entry.id), entry.remote_spec());
    }

    fn stats(&self) -> crate::lan::LanStats {
        crate::lan::Lan::stats(self)
    }
}

/// What a reload may change, taken from a resolved configuration.
#[derive(Debug, Clone)]
pub struct Reloadable {
    /// The routing configuration.
    pub router: RouterConfig,
    /// The XDP source guard.
    pub guard: SourceGuard,
    /// The pool, by id.
    pub entries: Entries,
    /// The pending-INVITE cap the router applies per in-chassis processor.
    pub max_pending_invites: u32,
    /// Every setting that only takes effect at start, rendered for comparison.
    pub restart_only: Vec<(&'static str, String)>,
    /// Seconds between counters lines (0: none).
    pub stats_interval: Option<Duration>,
    /// Whether a report key was given (processors with `health=reports` need it).
    pub report_keyed: bool,
}

/// Produces the configuration anew from its sources (the file, re-read, and the flags).
pub type ReloadFn = Box<dyn Fn() -> anyhow::Result<Reloadable>>;

/// The control loop's state.
pub struct Controller<'a> {
    sender: ControlSender,
    status: Arc<StatusBoard>,
    published: Arc<Published>,
    watcher: Option<&'a dyn Watcher>,
    program: Option<&'a mut XdpProgram>,
    reload: Option<ReloadFn>,
    backend: &'static str,
    started: Instant,
    /// The configuration last applied from the sources.
    applied: Reloadable,
    /// The pool as the file (and flags) last said.
    file: Entries,
    overlay: Overlay,
    /// The pool running now.
    running: Entries,
    /// Boards of processors added after start (kept so the monitor and the router share one).
    reloads: Reloads,
    last_states: BTreeMap<u16, State>,
    /// The status with the control side's additions, for readers on other threads (the
    /// metrics server), refreshed every [`VIEW_EVERY`].
    view: Arc<StatusCell>,
}

/// How often the control loop refreshes [`Controller::view`] (reading the XDP counters is a
/// map lookup per counter and CPU: a few syscalls, not worth doing per scrape request thread).
const VIEW_EVERY: Duration = Duration::from_millis(250);

impl<'a> Controller<'a> {
    /// A controller over a dispatcher started with `initial`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        initial: Reloadable,
        sender: ControlSender,
        status: Arc<StatusBoard>,
        published: Arc<Published>,
        watcher: Option<&'a dyn Watcher>,
        program: Option<&'a mut XdpProgram>,
        reload: Option<ReloadFn>,
        backend: &'static str,
    ) -> Self {
        Self {
            sender,
            status,
            published,
            watcher,
            program,
            reload,
            backend,
            started: Instant::now(),
            file: initial.entries.clone(),
            running: initial.entries.clone(),
            applied: initial,
            overlay: Overlay::default(),
            reloads: Reloads::default(),
            last_states: BTreeMap::new(),
            view: Arc::new(StatusCell::default()),
        }
    }

    /// The full status as the control loop last refreshed it (for other threads).
    pub fn view(&self) -> Arc<StatusCell> {
        Arc::clone(&self.view)
    }

    /// Runs until `stop`: serves control requests from `requests`, reloads on `hup`, logs
    /// operator events and the periodic counters line.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        hup: &AtomicBool,
        requests: &mpsc::Receiver<socket::Pending>,
    ) {
        let mut next_line = self.applied.stats_interval.map(|d| Instant::now() + d);
        let mut last = (Instant::now(), self.published.load());
        let mut last_xdp = self.xdp_counters();
        let mut next_view = Instant::now();
        while !stop.load(Relaxed) {
            if Instant::now() >= next_view {
                next_view += VIEW_EVERY;
                self.view.try_publish(self.status());
            }
            match requests.recv_timeout(Duration::from_millis(50)) {
                Ok(p) => {
                    let reply = self.handle(&p.request);
                    let _ = p.reply.send(reply);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if hup.swap(false, Relaxed) {
                info!("SIGHUP: reloading the configuration");
                let r = self.reload();
                if !r.ok {
                    error!("{}", r.message);
                }
            }
            self.events();
            // A reload may turn the counters line on or off.
            match (self.applied.stats_interval, next_line) {
                (None, Some(_)) => next_line = None,
                (Some(every), None) => {
                    next_line = Some(Instant::now() + every);
                    last = (Instant::now(), self.published.load());
                }
                _ => {}
            }
            if let (Some(at), Some(every)) = (next_line, self.applied.stats_interval) {
                if Instant::now() < at {
                    continue;
                }
                next_line = Some(at + every);
                let now = (Instant::now(), self.published.load());
                let xdp = self.xdp_counters();
                let pair = xdp.zip(last_xdp).or(xdp.map(|x| (x, Default::default())));
                let secs = now.0.duration_since(last.0).as_secs_f64();
                info!("counters: {}", now.1.rates_line(&last.1, secs, pair));
                last = now;
                last_xdp = xdp;
            }
        }
    }

    fn xdp_counters(&self) -> Option<xdp_io::loader::XdpCounters> {
        self.program.as_ref().and_then(|p| p.counters().ok())
    }

    /// The published status with what only the control side knows added.
    pub fn status(&self) -> Status {
        let mut s = (*self.status.get()).clone();
        s.backend = self.backend.to_owned();
        s.uptime_s = self.started.elapsed().as_secs_f64();
        s.xdp = self.xdp_counters();
        s.lan = self.watcher.map(Watcher::stats);
        s.reloads = self.reloads;
        // The operator's last word, even if the dispatcher thread has not published since.
        for p in &mut s.processors {
            p.admin = self.overlay.admin(p.id);
            p.state = State::of(p.admin, p.alive, p.units_in_use, p.pending_invites);
        }
        s.processors.retain(|p| self.running.contains_key(&p.id));
        s
    }

    /// Answers one request.
    pub fn handle(&mut self, req: &Request) -> Reply {
        match req {
            Request::List => {
                let s = self.status();
                let mut r = Reply::ok(format!("{} processors", s.processors.len()));
                r.data = serde_json::to_value(&s.processors).ok();
                r
            }
            Request::Stats => {
                let mut r = Reply::ok("counters");
                r.data = serde_json::to_value(self.status()).ok();
                r
            }
            Request::Health => {
                let (ok, words) = self.status().health();
                if ok {
                    Reply::ok(words)
                } else {
                    Reply::error(words)
                }
            }
            Request::Drain { id } => self.set_admin(*id, Admin::Draining),
            Request::Disable { id } => self.set_admin(*id, Admin::Disabled),
            Request::Enable { id } => self.set_admin(*id, Admin::Active),
            Request::Add { spec } => self.add(spec),
            Request::Remove { id } => self.remove(*id),
            Request::Reload => self.reload(),
        }
    }

    fn set_admin(&mut self, id: u16, admin: Admin) -> Reply {
        if !self.running.contains_key(&id) {
            return Reply::error(format!("no processor {id} (see `switchyard ctl list`)"));
        }
        self.overlay.set_admin(id, admin);
        self.sender.send(Command::SetAdmin { id, admin });
        let units = self
            .status
            .get()
            .processors
            .iter()
            .find(|p| p.id == id)
            .map_or(0, |p| p.units_in_use);
        let msg = match admin {
            Admin::Draining => format!(
                "processor {id} draining: no new dialogs; its {units} units in use end normally; `ctl list` shows drained when none are left"
            ),
            Admin::Disabled => format!(
                "processor {id} disabled: out of selection as if down (in-dialog requests still reach it)"
            ),
            Admin::Active => format!("processor {id} enabled: back in selection when healthy"),
        };
        match admin {
            Admin::Active => info!(processor = id, "processor enabled"),
            Admin::Draining => info!(processor = id, units_in_use = units, "processor draining"),
            Admin::Disabled => warn!(processor = id, "processor disabled"),
        }
        Reply::ok(msg)
    }

    fn add(&mut self, spec: &str) -> Reply {
        let entry = match parse_add_spec(spec) {
            Ok(e) => e,
            Err(e) => return Reply::error(format!("add: {e}")),
        };
        let id = entry.id;
        if self.running.contains_key(&id) {
            return Reply::error(format!(
                "add: processor id {id} is in use (remove it first, or pick another id)"
            ));
        }
        if let Err(e) = self.start_remote(&entry, self.overlay.admin(id)) {
            return Reply::error(format!("add: {e}"));
        }
        self.overlay.removed.remove(&id);
        if self.file.get(&id) != Some(&entry) {
            self.overlay.added.insert(id, entry.clone());
        }
        self.running.insert(id, entry.clone());
        info!(processor = id, addr = %entry.addr, capacity = entry.capacity, weight = entry.weight, health = ?entry.health.mode, "processor added");
        Reply::ok(format!("processor {id} added at {}", entry.addr))
    }

    /// Puts a remote processor in the pool: its board, its link, its health watch.
    fn start_remote(&self, entry: &ProcessorEntry, admin: Admin) -> Result<(), String> {
        self.check_remote(entry)?;
        let load = LoadReport::new(entry.capacity);
        if entry.health.mode == Health::None {
            load.up.store(true, Relaxed);
        }
        self.sender.send(Command::Insert {
            id: entry.id,
            member: LinkedMember::remote_entry(entry, Arc::clone(&load)),
            admin,
        });
        if let Some(w) = self.watcher {
            w.watch(entry, load);
        }
        Ok(())
    }

    /// Whether this dispatcher can run `entry` as a processor added after start.
    fn check_remote(&self, entry: &ProcessorEntry) -> Result<(), String> {
        if entry.kind != Kind::Remote {
            return Err(format!(
                "processor {}: in-chassis processors are threads started with the dispatcher; adding or moving one needs a restart",
                entry.id
            ));
        }
        if entry.health.mode != Health::None && self.watcher.is_none() {
            return Err(format!(
                "processor {}: health={} needs the report listener (start with --report-listen), or use health=none",
                entry.id,
                entry.health.mode.name()
            ));
        }
        if entry.health.mode == Health::Reports && !self.applied.report_keyed {
            return Err(format!(
                "processor {}: health=reports needs the report key (start with --report-key-file), or use health=options or none",
                entry.id
            ));
        }
        Ok(())
    }

    fn remove(&mut self, id: u16) -> Reply {
        let Some(entry) = self.running.remove(&id) else {
            return Reply::error(format!("no processor {id} (see `switchyard ctl list`)"));
        };
        self.stop_member(&entry);
        if self.overlay.added.remove(&id).is_none() {
            self.overlay.removed.insert(id);
        }
        self.overlay.admin.remove(&id);
        Reply::ok(format!(
            "processor {id} removed: no new dialogs; messages naming it are answered 481 or dropped"
        ))
    }

    fn stop_member(&self, entry: &ProcessorEntry) {
        self.sender.send(Command::Remove { id: entry.id });
        match entry.kind {
            Kind::Remote => {
                if let Some(w) = self.watcher {
                    w.unwatch(entry.id);
                }
                info!(processor = entry.id, addr = %entry.addr, "processor removed");
            }
            Kind::Local => warn!(
                processor = entry.id,
                addr = %entry.addr,
                "in-chassis processor removed from the pool; its thread stays idle until the dispatcher restarts"
            ),
        }
    }

    /// Re-reads the sources and applies the difference (all or nothing).
    pub fn reload(&mut self) -> Reply {
        let Some(reload) = &self.reload else {
            return Reply::error(
                "reload: switchyard was started without --config; nothing to re-read",
            );
        };
        let next = match reload() {
            Ok(n) => n,
            Err(e) => {
                self.reloads.failed += 1;
                return Reply::error(format!(
                    "reload refused, the running configuration is unchanged: {e:#}"
                ));
            }
        };
        let (overlay, dropped) = pool::rebase(&self.file, &next.entries, &self.overlay);
        let wanted = pool::effective(&next.entries, &overlay);
        let changes = pool::diff(&self.running, &wanted);
        // Refuse what only a restart can do, before changing anything.
        for c in &changes {
            let refused = match c {
                Change::Add(e) | Change::Replace(e) if e.kind == Kind::Local => Some(e.id),
                Change::Replace(e)
                    if self
                        .running
                        .get(&e.id)
                        .is_some_and(|r| r.kind == Kind::Local) =>
                {
                    Some(e.id)
                }
                _ => None,
            };
            if let Some(id) = refused {
                self.reloads.failed += 1;
                return Reply::error(format!(
                    "reload refused, the running configuration is unchanged: processor {id}: in-chassis processors are threads started with the dispatcher; adding one or changing its kind or address needs a restart"
                ));
            }
            if let Change::Add(e) | Change::Replace(e) = c {
                if let Err(why) = self.check_remote(e) {
                    self.reloads.failed += 1;
                    return Reply::error(format!(
                        "reload refused, the running configuration is unchanged: {why}"
                    ));
                }
            }
        }
        if let Err(e) = self.apply_guard(&next.guard) {
            self.reloads.failed += 1;
            return Reply::error(format!(
                "reload refused, the running configuration is unchanged: {e}"
            ));
        }
        let mut summary = String::new();
        let mut router = next.router.clone();
        router.seed = self.applied.router.seed;
        self.sender.send(Command::Reconfigure(Box::new(router)));
        for c in &changes {
            match c {
                Change::Remove(id) => {
                    if let Some(e) = self.running.remove(id) {
                        self.stop_member(&e);
                    }
                    let _ = write!(summary, " removed {id};");
                }
                Change::Add(e) => {
                    // Checked above: remote, with a watcher where needed.
                    let _ = self.start_remote(e, overlay.admin(e.id));
                    info!(processor = e.id, addr = %e.addr, "processor added");
                    self.running.insert(e.id, e.clone());
                    let _ = write!(summary, " added {};", e.id);
                }
                Change::Replace(e) => {
                    if let Some(old) = self.running.remove(&e.id) {
                        self.stop_member(&old);
                    }
                    let _ = self.start_remote(e, overlay.admin(e.id));
                    info!(processor = e.id, addr = %e.addr, "processor replaced");
                    self.running.insert(e.id, e.clone());
                    let _ = write!(summary, " replaced {};", e.id);
                }
                Change::Update(e) => {
                    let mut spec = match e.kind {
                        Kind::Local => MemberSpec::local(e.addr.port(), e.capacity),
                        Kind::Remote => MemberSpec::remote(e.addr, e.capacity),
                    };
                    spec.addr = e.addr;
                    spec.weight = e.weight;
                    if e.kind == Kind::Local {
                        spec.max_pending = next.max_pending_invites;
                    }
                    self.sender.send(Command::SetSpec { id: e.id, spec });
                    if e.kind == Kind::Remote {
                        if let Some(w) = self.watcher {
                            w.update(e);
                        }
                    }
                    info!(
                        processor = e.id,
                        capacity = e.capacity,
                        weight = e.weight,
                        "processor settings changed"
                    );
                    self.running.insert(e.id, e.clone());
                    let _ = write!(summary, " changed {};", e.id);
                }
            }
        }
        // Operator states: what the kept overlay says, for every processor now running.
        for id in self.running.keys() {
            self.sender.send(Command::SetAdmin {
                id: *id,
                admin: overlay.admin(*id),
            });
        }
        if !dropped.is_empty() {
            info!(processors = ?dropped, "the file changed these processors: their runtime changes (drain, disable, add, remove) gave way to the file");
        }
        let restart: Vec<&str> = self
            .applied
            .restart_only
            .iter()
            .zip(&next.restart_only)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0)
            .collect();
        if !restart.is_empty() {
            warn!(keys = ?restart, "these settings only take effect at start: they keep their running values until a restart");
        }
        self.overlay = overlay;
        self.file = next.entries.clone();
        let mut applied = next;
        applied.restart_only = std::mem::take(&mut self.applied.restart_only);
        applied.router.seed = self.applied.router.seed;
        self.applied = applied;
        self.reloads.ok += 1;
        let msg = format!(
            "reloaded:{}{}",
            if summary.is_empty() {
                " no processor changes;".to_owned()
            } else {
                summary
            },
            if restart.is_empty() {
                String::new()
            } else {
                format!(" needs a restart to apply: {}", restart.join(", "))
            }
        );
        info!("{msg}");
        Reply::ok(msg)
    }

    /// Writes a changed source guard into the XDP program's maps (no program reload).
    fn apply_guard(&mut self, g: &SourceGuard) -> Result<(), String> {
        let old = &self.applied.guard;
        if old.allow == g.allow
            && old.rate == g.rate
            && old.burst == g.burst
            && old.exempt == g.exempt
        {
            return Ok(());
        }
        let Some(prog) = self.program.as_deref_mut() else {
            return Err(
                "allow-source, source-rate and rate-exempt are enforced by the XDP program: the udp backend cannot apply them"
                    .into(),
            );
        };
        prog.set_allow_list(&g.allow)
            .map_err(|e| format!("allow-source: {e}"))?;
        prog.set_rate_exempt(&g.exempt)
            .map_err(|e| format!("rate-exempt: {e}"))?;
        prog.set_rate_limit(g.rate, g.burst)
            .map_err(|e| format!("source-rate: {e}"))?;
        info!(
            allow = g.allow.len(),
            rate = g.rate,
            burst = g.burst,
            exempt = g.exempt.len(),
            "XDP source guard updated"
        );
        Ok(())
    }

    /// Logs transitions the operator must hear of: drained, and in-chassis processors going
    /// up or down (remote ones are logged by their health monitor, with the reason).
    fn events(&mut self) {
        let s = self.status.get();
        for p in &s.processors {
            let prev = self.last_states.insert(p.id, p.state);
            if prev == Some(p.state) {
                continue;
            }
            match (prev, p.state) {
                (None, st) => {
                    info!(processor = p.id, addr = %p.addr, kind = ?p.kind, state = st.as_str(), "processor state at start")
                }
                (_, State::Drained) => info!(
                    processor = p.id,
                    "processor drained: no sessions left; safe to stop or remove"
                ),
                (_, State::Down) if p.kind == Kind::Local => warn!(
                    processor = p.id,
                    "in-chassis processor down: heartbeat stale"
                ),
                (Some(State::Down), State::Up) if p.kind == Kind::Local => {
                    info!(processor = p.id, "in-chassis processor up")
                }
                _ => {}
            }
        }
    }
}

/// `ctl add`'s spec: what `--remote-processor` takes, with `id=N` required.
fn parse_add_spec(spec: &str) -> Result<ProcessorEntry, String> {
    let r: crate::lan::RemoteSpec = spec.parse()?;
    let id = r
        .id
        .ok_or_else(|| format!("{spec:?}: give the processor's id first: id=N,HOST:PORT[,...]"))?;
    Ok(ProcessorEntry::remote(id, &r))
}

/// Renders `ctl list` as a table.
pub fn list_table(procs: &[crate::status::ProcessorStatus]) -> String {
    let mut out = String::from(
        "ID  ADDRESS                 KIND    STATE     UNITS/CAP      WEIGHT  FORWARDED   NEW DIALOGS  LAST HEARD\n",
    );
    for p in procs {
        let cap = if p.capacity == 0 {
            "-".to_owned()
        } else {
            p.capacity.to_string()
        };
        let heard = p
            .last_heard_ms
            .map_or_else(|| "never".to_owned(), |ms| format!("{ms} ms ago"));
        let _ = writeln!(
            out,
            "{:<3} {:<23} {:<7} {:<9} {:<14} {:<7} {:<11} {:<12} {}",
            p.id,
            p.addr.to_string(),
            match p.kind {
                Kind::Local => "local",
                Kind::Remote => "remote",
            },
            p.state.as_str(),
            format!("{}/{}", p.units_in_use, cap),
            p.weight,
            p.forwarded,
            p.new_dialogs,
            heard
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, rc::Rc};

    use super::*;
    use crate::{lan::HealthSpec, links::control_channel};

    fn entry(id: u16, port: u16) -> ProcessorEntry {
        ProcessorEntry {
            id,
            kind: Kind::Remote,
            addr: format!("198.18.0.10:{port}").parse().unwrap(),
            capacity: 10,
            weight: 1,
            health: HealthSpec::new(Health::None),
        }
    }

    fn reloadable(entries: &[ProcessorEntry]) -> Reloadable {
        Reloadable {
            router: RouterConfig::default(),
            guard: SourceGuard::default(),
            entries: entries.iter().map(|e| (e.id, e.clone())).collect(),
            max_pending_invites: 0,
            restart_only: vec![("sip", "0.0.0.0:5060".into())],
            stats_interval: None,
            report_keyed: false,
        }
    }

    /// A controller whose "file" is `file` (the test edits it between reloads), and the
    /// dispatcher thread's end of its channel.
    fn controller(
        file: &Rc<RefCell<Reloadable>>,
    ) -> (Controller<'static>, crate::links::ControlInbox) {
        let (tx, inbox) = control_channel();
        let f2 = Rc::clone(file);
        let c = Controller::new(
            file.borrow().clone(),
            tx,
            Arc::new(StatusBoard::default()),
            Arc::new(Published::default()),
            None,
            None,
            Some(Box::new(move || Ok(f2.borrow().clone()))),
            "udp",
        );
        (c, inbox)
    }

    /// What the commands did to the pool: (inserted ids, removed ids, admin changes).
    fn summarise(cmds: Vec<Command>) -> (Vec<u16>, Vec<u16>, Vec<(u16, Admin)>) {
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for c in cmds {
            match c {
                Command::Insert { id, .. } => out.0.push(id),
                Command::Remove { id } => out.1.push(id),
                Command::SetAdmin { id, admin } if admin != Admin::Active => {
                    out.2.push((id, admin))
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn ctl_changes_survive_a_reload_until_the_file_changes_their_processor() {
        let file = Rc::new(RefCell::new(reloadable(&[entry(0, 5070), entry(1, 5071)])));
        let (mut c, inbox) = controller(&file);
        // Runtime: drain 0, add 5, remove 1.
        assert!(c.handle(&Request::Drain { id: 0 }).ok);
        let r = c.handle(&Request::Add {
            spec: "id=5,198.18.0.10:5075,capacity=3,health=none".into(),
        });
        assert!(r.ok, "{r:?}");
        assert!(c.handle(&Request::Remove { id: 1 }).ok);
        assert!(
            !c.handle(&Request::Add {
                spec: "id=5,198.18.0.10:5099,health=none".into()
            })
            .ok,
            "id in use"
        );
        assert!(
            !c.handle(&Request::Add {
                spec: "198.18.0.10:5099,health=none".into()
            })
            .ok,
            "no id"
        );
        assert!(
            !c.handle(&Request::Add {
                spec: "id=6,198.18.0.10:5099".into()
            })
            .ok,
            "health=reports needs a key"
        );
        assert_eq!(
            summarise(inbox.take_all()),
            (vec![5], vec![1], vec![(0, Admin::Draining)])
        );

        // A reload whose file changes nothing about 0, 1 or 5 (it adds 2): all kept.
        *file.borrow_mut() = reloadable(&[entry(0, 5070), entry(1, 5071), entry(2, 5072)]);
        let r = c.handle(&Request::Reload);
        assert!(r.ok, "{r:?}");
        let (ins, rem, admin) = summarise(inbox.take_all());
        assert_eq!(
            (ins, rem),
            (vec![2], vec![]),
            "only 2 is new; 1 stays removed, 5 stays"
        );
        assert_eq!(admin, [(0, Admin::Draining)], "0 is still draining");
        assert_eq!(c.running.keys().copied().collect::<Vec<_>>(), [0, 2, 5]);

        // The file now changes 0 (capacity) and defines 5 itself: the file wins for both.
        let mut e0 = entry(0, 5070);
        e0.capacity = 99;
        *file.borrow_mut() = reloadable(&[e0, entry(1, 5071), entry(2, 5072), entry(5, 5095)]);
        let r = c.handle(&Request::Reload);
        assert!(r.ok, "{r:?}");
        let (ins, rem, admin) = summarise(inbox.take_all());
        assert_eq!((ins, rem), (vec![5], vec![5]), "5 replaced by the file's");
        assert!(
            admin.is_empty(),
            "0's drain gave way to the file: {admin:?}"
        );
        assert_eq!(c.running[&5].addr.port(), 5095);
        assert!(
            !c.running.contains_key(&1),
            "1's removal is kept: the file did not change 1"
        );

        // A file that fails is refused and counted; nothing is sent.
        let f3 = Rc::clone(&file);
        c.reload = Some(Box::new(move || {
            let _ = &f3;
            anyhow::bail!("t.toml:3:1: key `processor[0].id`: bad")
        }));
        let r = c.handle(&Request::Reload);
        assert!(!r.ok && r.message.contains("unchanged"), "{r:?}");
        assert!(inbox.take_all().is_empty());
        assert_eq!(c.status().reloads, Reloads { ok: 2, failed: 1 });
    }

    #[test]
    fn a_reload_that_needs_a_restart_is_refused_whole() {
        let mut local = entry(0, 5070);
        local.kind = Kind::Local;
        let file = Rc::new(RefCell::new(reloadable(&[local.clone()])));
        let (mut c, inbox) = controller(&file);
        let mut local1 = local.clone();
        local1.id = 1;
        local1.addr = "198.18.0.10:5071".parse().unwrap();
        *file.borrow_mut() = reloadable(&[local, local1, entry(3, 5073)]);
        let r = c.handle(&Request::Reload);
        assert!(!r.ok && r.message.contains("needs a restart"), "{r:?}");
        assert!(
            inbox.take_all().is_empty(),
            "nothing applied, not even remote 3"
        );
    }
}
