//! The dispatcher's control side for processors on other hosts (claims 4, 7, 12, 15): a thread
//! that receives their signed load reports, or probes third-party processors (any SIP server:
//! SIPp, FreeSWITCH, ...) with OPTIONS, and keeps each one's [`LoadReport`] current. The
//! dispatcher thread only reads those atomics (into its snapshot); it never waits on this thread.
//!
//! The rules (which report counts, when a processor is up or down, when to probe) are the pure
//! state machine in [`health`], driven with a fake clock in its tests; this module is the thin
//! socket loop around it.
pub mod health;
use std::{
    collections::HashMap,
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        mpsc::{self, Receiver, Sender},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use fabric::{monotonic_ns, LoadReport};
use processor::report::ReportKey;
use tracing::{debug, info, warn};

use self::health::{Event, HealthMonitor, Reason, Watched};

/// How a remote processor proves it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Signed load reports (a `switchyard-processor`).
    Reports,
    /// Answers to SIP OPTIONS (a third-party SIP server); capacity comes from configuration.
    Options,
    /// None: always up unless the operator disables it (a SIP server that answers no OPTIONS,
    /// such as SIPp's UAS); capacity comes from configuration.
    None,
}

impl std::str::FromStr for Health {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reports" => Ok(Self::Reports),
            "options" => Ok(Self::Options),
            "none" => Ok(Self::None),
            _ => Err(format!("health {s:?}: reports, options or none")),
        }
    }
}

impl Health {
    /// The name used in configuration (`reports`, `options`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            Health::Reports => "reports",
            Health::Options => "options",
            Health::None => "none",
        }
    }
}

/// Health checking of one processor: the signal, and (for OPTIONS) which answers count as up
/// and how many in a row change the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    /// The signal.
    pub mode: Health,
    /// Consecutive failed probes (no answer, or an answer outside `up`) that take an up
    /// processor down (`health = options`).
    pub fail: u32,
    /// Consecutive good answers that bring a down processor up (`health = options`).
    pub ok: u32,
    /// Status codes that count as up, as inclusive ranges (default: 200-299).
    pub up: Vec<(u16, u16)>,
}

impl HealthSpec {
    /// Defaults for `mode`: fail=3, ok=2, up=2xx.
    pub fn new(mode: Health) -> Self {
        Self {
            mode,
            fail: 3,
            ok: 2,
            up: vec![(200, 299)],
        }
    }
}

impl HealthSpec {
    /// Whether `code` counts as up.
    pub fn is_up_code(&self, code: u16) -> bool {
        self.up.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }

    /// Parses up codes: codes and inclusive ranges separated by `,`, `;` or `+`
    /// (`200-299;404`). On the `--remote-processor` flag, whose options are comma-separated,
    /// use `;` or `+`.
    pub fn parse_up(s: &str) -> Result<Vec<(u16, u16)>, String> {
        let code = |c: &str| -> Result<u16, String> {
            match c.trim().parse::<u16>() {
                Ok(n) if (100..=699).contains(&n) => Ok(n),
                _ => Err(format!(
                    "up codes {s:?}: {c:?} is not a status code (100-699)"
                )),
            }
        };
        let ranges = s
            .split([',', ';', '+'])
            .map(|part| match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (code(lo)?, code(hi)?);
                    if lo > hi {
                        return Err(format!("up codes {s:?}: empty range {part:?}"));
                    }
                    Ok((lo, hi))
                }
                None => code(part).map(|c| (c, c)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ranges)
    }
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self::new(Health::Reports)
    }
}

/// One processor on another host, as configured with `--remote-processor SPEC` (or
/// `switchyard ctl add SPEC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Its stable id; `None`: the next one after the processors before it.
    pub id: Option<u16>,
    /// Its SIP/MGCP address.
    pub addr: SocketAddr,
    /// Capacity in units (0: as it reports / unlimited).
    pub capacity: u32,
    /// Relative share of new dialogs (1..=1000).
    pub weight: u32,
    /// Health signal and thresholds.
    pub health: HealthSpec,
}

impl RemoteSpec {
    /// A spec for `addr` with the defaults (no id, capacity 0, weight 1, health=reports).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            id: None,
            addr,
            capacity: 0,
            weight: 1,
            health: HealthSpec::default(),
        }
    }
}

/// The options a SPEC takes, for error messages.
const SPEC_SYNTAX: &str = "[id=N,]HOST:PORT[,capacity=N][,weight=N][,health=reports|options|none][,fail=N][,ok=N][,up=CODES]";

/// Parses status code ranges: `200-299,486` (each code 100..=699; a range low-high).
pub fn parse_codes(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |c: &str| -> Result<u16, String> {
        match c.trim().parse::<u16>() {
            Ok(n) if (100..=699).contains(&n) => Ok(n),
            _ => Err(format!("{c:?} is not a status code (100..699)")),
        }
    };
    let mut out = Vec::new();
    for item in s.split(',') {
        let r = match item.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => {
                let c = code(item)?;
                (c, c)
            }
        };
        if r.0 > r.1 {
            return Err(format!("{item:?}: range is backwards"));
        }
        out.push(r);
    }
    Ok(out)
}

/// Writes code ranges back as [`parse_codes`] reads them.
pub fn format_codes(up: &[(u16, u16)]) -> String {
    up.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl std::str::FromStr for RemoteSpec {
    type Err = String;

    /// `[id=N,]HOST:PORT[,capacity=N][,weight=N][,health=reports|options|none][,fail=N][,ok=N][,up=CODES]`.
    /// `up` takes codes and ranges separated by commas (`up=200-299,486`): the items after
    /// `up=` that are not `key=value` are more codes.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut addr: Option<SocketAddr> = None;
        let mut spec = RemoteSpec::new(SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut up: Option<String> = None;
        let num = |k: &str, v: &str| -> Result<u32, String> {
            v.parse::<u32>().map_err(|e| format!("{s}: {k}: {e}"))
        };
        for (i, p) in s.split(',').enumerate() {
            match p.split_once('=') {
                None if addr.is_none() && (i == 0 || spec.id.is_some() && i == 1) => {
                    addr = Some(p.parse().map_err(|e| format!("{s}: address {p:?}: {e}"))?);
                }
                None if up.is_some() && addr.is_some() => {
                    let codes = up.get_or_insert_with(String::new);
                    codes.push(',');
                    codes.push_str(p);
                }
                Some(("id", v)) if i == 0 => {
                    let id = v.parse::<u16>().map_err(|e| format!("{s}: id: {e}"))?;
                    if id >= crate::pool::MAX_ID {
                        return Err(format!(
                            "{s}: id {id}: must be below {}",
                            crate::pool::MAX_ID
                        ));
                    }
                    spec.id = Some(id);
                }
                _ if addr.is_none() => {
                    return Err(format!("{s}: expected {SPEC_SYNTAX}"));
                }
                Some(("capacity", v)) => spec.capacity = num("capacity", v)?,
                Some(("weight", v)) => {
                    spec.weight = num("weight", v)?;
                    if !(1..=1000).contains(&spec.weight) {
                        return Err(format!("{s}: weight {v}: must be 1..=1000"));
                    }
                }
                Some(("health", v)) => {
                    spec.health.mode = match v {
                        "reports" => Health::Reports,
                        "options" => Health::Options,
                        "none" => Health::None,
                        _ => {
                            return Err(format!(
                                "{s}: health={v}: expected reports, options or none"
                            ))
                        }
                    }
                }
                Some((k @ ("fail" | "ok"), v)) => {
                    let n = num(k, v)?;
                    if n == 0 {
                        return Err(format!("{s}: {k}=0: must be at least 1"));
                    }
                    *if k == "fail" {
                        &mut spec.health.fail
                    } else {
                        &mut spec.health.ok
                    } = n;
                }
                Some(("up", v)) => up = Some(v.to_owned()),
                _ => {
                    return Err(format!(
                        "{s}: unknown option {p:?} (expected {SPEC_SYNTAX})"
                    ))
                }
            }
        }
        spec.addr = addr.ok_or_else(|| format!("{s}: no HOST:PORT (expected {SPEC_SYNTAX})"))?;
        if let Some(codes) = up {
            spec.health.up = HealthSpec::parse_up(&codes).map_err(|e| format!("{s}: up: {e}"))?;
        }
        Ok(spec)
    }
}

/// Counters of the report listener.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LanStats {
    /// Reports accepted.
    pub reports: u64,
    /// Reports whose tag did not verify (wrong key or tampered).
    pub rejected_auth: u64,
    /// Datagrams that are not a report of this version (length, magic, version).
    pub rejected_malformed: u64,
    /// Valid reports from an address that is not a configured processor, or with the wrong id.
    pub rejected_unknown: u64,
    /// Reports with a sequence number not above the last one (replays, reordering).
    pub rejected_stale: u64,
    /// OPTIONS probes sent.
    pub probes_sent: u64,
    /// Answers to probes.
    pub probe_answers: u64,
    /// Probes that failed (no answer, or an answer outside the up codes).
    pub probes_failed: u64,
    /// Transitions to up (first report, or `ok` good answers in a row); not counting
    /// `health = none` processors, which are up from the start.
    pub came_up: u64,
    /// Transitions to down (silent past the report timeout, or `fail` failed probes in a row).
    pub went_down: u64,
}

/// A change of the watched set, sent to the running listener.
enum Cmd {
    /// Watch (or re-watch) processor `id` with its board entry.
    Watch(usize, RemoteSpec, Arc<LoadReport>),
    /// Stop watching processor `id`.
    Unwatch(usize),
    /// New address / health settings for processor `id` (its state is kept when the mode is
    /// the same).
    SetSpec(usize, RemoteSpec),
}

/// The running listener.
pub struct Lan {
    handle: JoinHandle<LanStats>,
    stop: Arc<AtomicBool>,
    cmds: Sender<Cmd>,
    stats: Arc<Mutex<LanStats>>,
}

impl Lan {
    /// Starts the listener on `sock`. `members` are `(processor id, spec, load)` of the remote
    /// processors (none is fine: add them later with [`Lan::watch`]); `probe_every` paces
    /// OPTIONS probes; a `reports` processor silent for `report_timeout`, or an OPTIONS probe
    /// unanswered that long, counts as a failure.
    pub fn start(
        sock: UdpSocket,
        key: ReportKey,
        members: Vec<(usize, RemoteSpec, Arc<LoadReport>)>,
        probe_every: Duration,
        report_timeout: Duration,
    ) -> std::io::Result<Self> {
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let mut loads = HashMap::new();
        let mut watched = Vec::new();
        for (id, spec, load) in members {
            watched.push(watched_of(id, &spec));
            prepare(&spec, &load);
            loads.insert(id, load);
        }
        let monitor = HealthMonitor::new(
            watched,
            key,
            probe_every.as_nanos() as u64,
            report_timeout.as_nanos() as u64,
            sock.local_addr().ok(),
        );
        let (cmds, rx) = mpsc::channel();
        let stats = Arc::new(Mutex::new(LanStats::default()));
        let stats2 = Arc::clone(&stats);
        info!(listen = ?sock.local_addr().ok(), processors = loads.len(), "load report listener running");
        let handle = std::thread::Builder::new()
            .name("lan-reports".into())
            .spawn(move || {
                run(
                    &sock,
                    monitor,
                    Shell {
                        loads,
                        cmds: rx,
                        stats: stats2,
                    },
                    &stop2,
                )
            })?;
        Ok(Self {
            handle,
            stop,
            cmds,
            stats,
        })
    }

    /// Starts watching processor `id` (a runtime `add`): its initial state is announced and, for
    /// `health = options`, it is probed from the next round; `load` is its entry on the load
    /// board (the router's). Watching an id already watched replaces it. Returns false when the
    /// listener has stopped.
    pub fn watch(&self, id: usize, spec: RemoteSpec, load: Arc<LoadReport>) -> bool {
        self.cmds.send(Cmd::Watch(id, spec, load)).is_ok()
    }

    /// Stops watching processor `id` (a runtime `remove`): no more probes, and its reports are
    /// refused as unknown. Returns false when the listener has stopped.
    pub fn unwatch(&self, id: usize) -> bool {
        self.cmds.send(Cmd::Unwatch(id)).is_ok()
    }

    /// Changes processor `id`'s address or health settings (a reload): with the same mode its
    /// up/down state is kept; a new mode starts from that mode's initial state (announced
    /// again). An id not watched is ignored (use [`Lan::watch`]). Returns false when the
    /// listener has stopped.
    pub fn set_spec(&self, id: usize, spec: RemoteSpec) -> bool {
        self.cmds.send(Cmd::SetSpec(id, spec)).is_ok()
    }

    /// The counters now (published by the listener thread every loop, at most ~20 ms old).
    pub fn stats(&self) -> LanStats {
        self.stats.lock().map_or_else(|e| *e.into_inner(), |s| *s)
    }

    /// Stops the listener; returns its counters.
    pub fn stop(self) -> LanStats {
        self.stop.store(true, Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

fn watched_of(id: usize, spec: &RemoteSpec) -> Watched {
    Watched {
        id,
        addr: spec.addr,
        health: spec.health.clone(),
    }
}

/// A board entry as a newly watched processor starts: `health = none` processors are up with
/// no heartbeat ("never heard from"); the others down until they prove themselves.
fn prepare(spec: &RemoteSpec, load: &LoadReport) {
    load.up.store(spec.health.mode == Health::None, Relaxed);
}

/// What the listener thread owns besides the socket and the monitor.
struct Shell {
    loads: HashMap<usize, Arc<LoadReport>>,
    cmds: Receiver<Cmd>,
    stats: Arc<Mutex<LanStats>>,
}

impl Shell {
    /// Applies pending membership changes.
    fn drain_cmds(&mut self, monitor: &mut HealthMonitor) {
        while let Ok(cmd) = self.cmds.try_recv() {
            match cmd {
                Cmd::Watch(id, spec, load) => {
                    info!(processor = id, addr = %spec.addr, health = ?spec.health.mode, "remote processor watched");
                    monitor.add(watched_of(id, &spec));
                    load.up.store(monitor.is_up(id), Relaxed);
                    self.loads.insert(id, load);
                }
                Cmd::Unwatch(id) => {
                    self.loads.remove(&id);
                    if monitor.remove(id) {
                        info!(processor = id, "remote processor no longer watched");
                    }
                }
                Cmd::SetSpec(id, spec) => {
                    let Some(load) = self.loads.get(&id) else {
                        warn!(
                            processor = id,
                            "health settings for a processor not watched: ignored"
                        );
                        continue;
                    };
                    monitor.update(watched_of(id, &spec));
                    load.up.store(monitor.is_up(id), Relaxed);
                }
            }
        }
    }

    fn publish(&self, monitor: &HealthMonitor) {
        if let Ok(mut s) = self.stats.lock() {
            *s = monitor.stats();
        }
    }
}

/// The socket loop: membership changes, datagrams and the clock into the monitor, its events
/// onto the load board and the wire, its counters out.
fn run(
    sock: &UdpSocket,
    mut monitor: HealthMonitor,
    mut shell: Shell,
    stop: &AtomicBool,
) -> LanStats {
    let mut buf = [0u8; 2048];
    let mut events = Vec::new();
    while !stop.load(Relaxed) {
        shell.drain_cmds(&mut monitor);
        monitor.poll(monotonic_ns(), &mut events);
        apply(sock, &shell.loads, &mut events);
        shell.publish(&monitor);
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                warn!(error = %e, "report socket error");
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        monitor.on_datagram(monotonic_ns(), from, &buf[..n], &mut events);
        apply(sock, &shell.loads, &mut events);
    }
    shell.publish(&monitor);
    monitor.stats()
}

/// Carries out the monitor's events: the board, the wire, and one log event per transition.
fn apply(sock: &UdpSocket, loads: &HashMap<usize, Arc<LoadReport>>, events: &mut Vec<Event>) {
    for ev in events.drain(..) {
        match ev {
            Event::Report { id, report, now } => {
                let Some(load) = loads.get(&id) else { continue };
                load.active.store(report.active, Relaxed);
                load.in_use_units.store(report.units_in_use, Relaxed);
                load.released_units.store(report.released_units, Relaxed);
                load.rejected_units.store(report.rejected_units, Relaxed);
                load.capacity_units.store(report.capacity, Relaxed);
                load.pending_invites.store(report.pending_invites, Relaxed);
                load.max_pending_invites
                    .store(report.max_pending_invites, Relaxed);
                load.heartbeat_ns.store(now, Relaxed);
                load.reports.fetch_add(1, Relaxed);
            }
            Event::ProbeAnswered { id, now } => {
                let Some(load) = loads.get(&id) else { continue };
                load.heartbeat_ns.store(now, Relaxed);
                load.reports.fetch_add(1, Relaxed);
            }
            Event::Up { id, addr, reason } => {
                if let Some(load) = loads.get(&id) {
                    load.up.store(true, Relaxed);
                }
                info!(processor = id, %addr, %reason, "remote processor up");
            }
            Event::Down { id, addr, reason } => {
                if let Some(load) = loads.get(&id) {
                    load.up.store(false, Relaxed);
                }
                if matches!(
                    reason,
                    Reason::AwaitingReport | Reason::AwaitingAnswer { .. }
                ) {
                    // Its initial state, not a failure.
                    info!(processor = id, %addr, %reason, "remote processor down");
                } else {
                    warn!(processor = id, %addr, %reason, "remote processor down");
                }
            }
            Event::Probe { to, bytes } => {
                if sock.send_to(&bytes, to).is_err() {
                    debug!(%to, "OPTIONS probe not sent");
                }
            }
            Event::Rejected { from, why } if why.starts_with("authentication") => {
                warn!(%from, why, "load report refused");
            }
            Event::Rejected { from, why } => {
                debug!(%from, why, "datagram on the report port not accepted");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use processor::report::Report;

    #[test]
    fn spec_parses() {
        let s: RemoteSpec = "198.18.0.11:5070,capacity=40,health=options"
            .parse()
            .unwrap();
        assert_eq!(
            (s.addr.port(), s.capacity, s.health.clone()),
            (5070, 40, HealthSpec::new(Health::Options))
        );
        let s: RemoteSpec = "127.0.0.1:5070,health=options,fail=4,ok=1,up=200-299;404+486"
            .parse()
            .unwrap();
        assert_eq!(
            s.health,
            HealthSpec {
                mode: Health::Options,
                fail: 4,
                ok: 1,
                up: vec![(200, 299), (404, 404), (486, 486)],
            }
        );
        let s: RemoteSpec = "127.0.0.1:5070,health=none".parse().unwrap();
        assert_eq!(s.health.mode, Health::None);
        for bad in [
            "198.18.0.11:5070,foo=1",
            "nonsense",
            "127.0.0.1:5070,health=ping",
            "127.0.0.1:5070,fail=0",
            "127.0.0.1:5070,ok=x",
            "127.0.0.1:5070,up=2xx",
            "127.0.0.1:5070,up=299-200",
            "127.0.0.1:5070,up=99",
        ] {
            assert!(bad.parse::<RemoteSpec>().is_err(), "{bad}");
        }
        assert_eq!(
            HealthSpec::parse_up("200-299,404").unwrap(),
            vec![(200, 299), (404, 404)]
        );
    }

    #[test]
    fn members_are_watched_and_unwatched_while_it_runs() {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let proc_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let key = ReportKey::new(b"k2");
        let lan = Lan::start(
            listener,
            key.clone(),
            vec![],
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .unwrap();
        let spec = |health: &str| -> RemoteSpec {
            format!("{},health={health}", proc_sock.local_addr().unwrap())
                .parse()
                .unwrap()
        };
        let load = LoadReport::new(0);
        let none = LoadReport::new(0);
        assert!(lan.watch(1, spec("reports"), Arc::clone(&load)));
        assert!(lan.watch(
            2,
            "127.0.0.1:9,health=none".parse().unwrap(),
            Arc::clone(&none)
        ));
        let r = |seq| Report {
            id: 1,
            seq,
            ..Report::default()
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(none.up.load(Relaxed), "health=none: up at once");
        assert_eq!(none.heartbeat_ns.load(Relaxed), 0, "and never heard from");
        proc_sock.send_to(&r(1).encode(&key), to).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        assert!(load.up.load(Relaxed));
        assert_eq!(lan.stats().reports, 1, "live counters");
        // Same mode, new settings: still up.
        assert!(lan.set_spec(1, spec("reports")));
        std::thread::sleep(Duration::from_millis(100));
        assert!(load.up.load(Relaxed));
        // A new mode starts over: down until the OPTIONS probes are answered.
        assert!(lan.set_spec(1, spec("options")));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!load.up.load(Relaxed));
        assert!(lan.set_spec(1, spec("reports")));
        assert!(lan.unwatch(1));
        std::thread::sleep(Duration::from_millis(100));
        proc_sock.send_to(&r(2).encode(&key), to).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let st = lan.stop();
        assert_eq!((st.reports, st.rejected_unknown), (1, 1), "{st:?}");
    }

    #[test]
    fn reports_update_the_board_and_bad_ones_are_counted() {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let proc_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let key = ReportKey::new(b"k1");
        let load = LoadReport::new(0);
        let spec = RemoteSpec::new(proc_sock.local_addr().unwrap());
        let lan = Lan::start(
            listener,
            key.clone(),
            vec![(3, spec, Arc::clone(&load))],
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        let r = |seq, in_use| Report {
            id: 3,
            seq,
            units_in_use: in_use,
            capacity: 50,
            ..Report::default()
        };
        proc_sock.send_to(&r(1, 7).encode(&key), to).unwrap();
        proc_sock
            .send_to(&r(2, 9).encode(&ReportKey::new(b"wrong")), to)
            .unwrap();
        proc_sock.send_to(&r(1, 11).encode(&key), to).unwrap(); // replay
        proc_sock.send_to(b"garbage", to).unwrap();
        proc_sock
            .send_to(&Report { id: 4, ..r(5, 1) }.encode(&key), to)
            .unwrap();
        stranger.send_to(&r(9, 1).encode(&key), to).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let st = lan.stop();
        assert_eq!(
            (
                st.reports,
                st.rejected_auth,
                st.rejected_stale,
                st.rejected_malformed,
                st.rejected_unknown
            ),
            (1, 1, 1, 1, 2),
            "{st:?}"
        );
        assert_eq!(load.in_use_units.load(Relaxed), 7);
        assert_eq!(load.capacity_units.load(Relaxed), 50);
        assert!(load.heartbeat_ns.load(Relaxed) > 0);
        assert!(load.up.load(Relaxed), "a valid report brings it up");
    }
}
