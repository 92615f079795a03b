//! What the running dispatcher shows the operator: the [`Status`] that `switchyard ctl list` /
//! `ctl stats` print and `/metrics` renders.
//!
//! Why a published value rather than reads of live state: the dispatcher thread owns its
//! counters as plain integers (no atomics on the per-packet path). Every
//! [`crate::stats::PUBLISH_EVERY_NS`] it copies them, with each processor's view, into a fresh
//! [`Status`] and swaps it into the [`StatusCell`] (a `try_lock`: if a reader holds the cell at
//! that moment the dispatcher skips this round rather than wait). Readers (the control socket,
//! the metrics server) clone the `Arc` and never touch the hot path. The control thread adds
//! what only it knows (the XDP program's counters, the health monitor's, reload results).
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use crate::{
    lan::LanStats,
    links::LinkStats,
    pool::{Admin, Kind},
    route::RouterStats,
};

/// A processor's state as `ctl list` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// In selection.
    Up,
    /// Not heard from (heartbeat, report or probe): out of selection.
    Down,
    /// Drained by the operator and still holding sessions.
    Draining,
    /// Drained by the operator and holding nothing: safe to stop or remove.
    Drained,
    /// Disabled by the operator.
    Disabled,
}

impl State {
    /// Every state, for gauges with one series per state.
    pub const ALL: [State; 5] = [
        State::Up,
        State::Down,
        State::Draining,
        State::Drained,
        State::Disabled,
    ];

    /// The state of a processor with operator state `admin`, healthy or not (`alive`), holding
    /// `in_use` units and `pending` INVITE transactions.
    pub fn of(admin: Admin, alive: bool, in_use: u64, pending: u32) -> Self {
        match admin {
            Admin::Disabled => State::Disabled,
            Admin::Draining if in_use == 0 && pending == 0 => State::Drained,
            Admin::Draining => State::Draining,
            Admin::Active if alive => State::Up,
            Admin::Active => State::Down,
        }
    }

    /// Its name in `ctl list` and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Draining => "draining",
            State::Drained => "drained",
            State::Disabled => "disabled",
        }
    }
}

/// One processor, as the dispatcher thread last saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessorStatus {
    /// Stable id.
    pub id: u16,
    /// Its address.
    pub addr: SocketAddr,
    /// Local thread or remote host.
    pub kind: Kind,
    /// Operator state.
    pub admin: Admin,
    /// Health: heartbeat fresh (local) or up per its health mode (remote).
    pub alive: bool,
    /// The state `ctl list` shows.
    pub state: State,
    /// Session units in use (assigned − released for local ones, reported + assigned since
    /// the last report for remote ones).
    pub units_in_use: u64,
    /// Capacity in units (0: unlimited).
    pub capacity: u32,
    /// Relative share of new dialogs.
    pub weight: u32,
    /// New-INVITE transactions pending (local processors).
    pub pending_invites: u32,
    /// Messages handed to it (new dialogs, retransmissions, CANCEL, ACK, in-dialog).
    pub forwarded: u64,
    /// New dialogs placed on it.
    pub new_dialogs: u64,
    /// Milliseconds since its last heartbeat, report or probe answer (`None`: never).
    pub last_heard_ms: Option<u64>,
}

/// Results of configuration reloads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reloads {
    /// Applied.
    pub ok: u64,
    /// Refused (the file did not validate); the previous configuration kept running.
    pub failed: u64,
}

/// Everything the operator can read while it runs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// `udp` or `xdp`.
    pub backend: String,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Datagrams (udp) or frames (xdp) the shell received.
    pub rx: u64,
    /// CPU time of the dispatcher thread, ns.
    pub dispatcher_cpu_ns: u64,
    /// Every routing decision.
    pub router: RouterStats,
    /// Handoff counters.
    pub links: LinkStats,
    /// Each processor, by id.
    pub processors: Vec<ProcessorStatus>,
    /// XDP verdict counters (xdp backend; read by the control thread from the program's map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<xdp_io::loader::XdpCounters>,
    /// The health monitor of processors on other hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan: Option<LanStats>,
    /// Configuration reloads.
    pub reloads: Reloads,
    /// Each dispatcher thread's share (the fields above are their sums).
    #[serde(default)]
    pub threads: Vec<ThreadStatus>,
}

/// One dispatcher thread's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadStatus {
    /// Its index (`--dispatcher-threads`: 0 to N-1).
    pub index: usize,
    /// Datagrams (udp) or frames (xdp) its shell received.
    pub rx: u64,
    /// Datagrams its router decided.
    pub datagrams: u64,
    /// New dialogs it placed.
    pub new_dialogs: u64,
    /// Its CPU time, ns.
    pub cpu_ns: u64,
}

impl Status {
    /// Adds another dispatcher thread's status into this one: counters sum; a processor's
    /// units in use come from the board every thread shares, so the larger (newer) value
    /// stands, and its forwarded and new-dialog counts sum.
    fn add_thread(&mut self, o: &Status) {
        if self.backend.is_empty() {
            self.backend.clone_from(&o.backend);
        }
        self.rx += o.rx;
        self.dispatcher_cpu_ns += o.dispatcher_cpu_ns;
        self.router.add(&o.router);
        self.links.add(&o.links);
        for p in &o.processors {
            match self.processors.iter_mut().find(|q| q.id == p.id) {
                Some(q) => {
                    q.forwarded += p.forwarded;
                    q.new_dialogs += p.new_dialogs;
                    q.units_in_use = q.units_in_use.max(p.units_in_use);
                    q.pending_invites = q.pending_invites.max(p.pending_invites);
                }
                None => self.processors.push(p.clone()),
            }
        }
    }
}

/// Where each dispatcher thread publishes its [`Status`] (one [`StatusCell`] per thread, so
/// no thread ever waits for another) and where the control side reads their sum.
#[derive(Debug)]
pub struct StatusBoard(Vec<StatusCell>);

impl Default for StatusBoard {
    fn default() -> Self {
        Self::new(1)
    }
}

impl StatusBoard {
    /// A board for `threads` dispatcher threads (at least one).
    pub fn new(threads: usize) -> Self {
        Self((0..threads.max(1)).map(|_| StatusCell::default()).collect())
    }

    /// Publishes thread `thread`'s status (see [`StatusCell::try_publish`]).
    pub fn try_publish(&self, thread: usize, s: Status) -> bool {
        self.0.get(thread).is_some_and(|c| c.try_publish(s))
    }

    /// Every thread's status summed, with one [`ThreadStatus`] row per thread.
    pub fn get(&self) -> Arc<Status> {
        if self.0.len() == 1 {
            let s = self.0[0].get();
            if s.threads.is_empty() {
                let mut s = (*s).clone();
                s.threads = vec![ThreadStatus::of(0, &s)];
                return Arc::new(s);
            }
            return s;
        }
        let mut sum = Status::default();
        for (i, c) in self.0.iter().enumerate() {
            let s = c.get();
            sum.add_thread(&s);
            sum.threads.push(ThreadStatus::of(i, &s));
        }
        Arc::new(sum)
    }
}

impl ThreadStatus {
    /// Thread `index`'s row, from its own status.
    fn of(index: usize, s: &Status) -> Self {
        Self {
            index,
            rx: s.rx,
            datagrams: s.router.sip + s.router.mgcp,
            new_dialogs: s.router.new_dialogs,
            cpu_ns: s.dispatcher_cpu_ns,
        }
    }
}

impl Status {
    /// Healthy = at least one processor up: what `switchyard ctl health` and `/health` answer
    /// (a load balancer's or a BGP announcer's check), with the words they print.
    pub fn health(&self) -> (bool, String) {
        let up = self
            .processors
            .iter()
            .filter(|p| p.state == State::Up)
            .count();
        let n = self.processors.len();
        if up > 0 {
            (true, format!("healthy: {up} of {n} processors up"))
        } else {
            (false, format!("unhealthy: none of {n} processors up"))
        }
    }
}

/// Where the dispatcher thread publishes its [`Status`] and readers take it from.
#[derive(Debug, Default)]
pub struct StatusCell(Mutex<Arc<Status>>);

impl StatusCell {
    /// Replaces the published value unless a reader holds the cell right now (the dispatcher
    /// thread never waits; it publishes again next round). Returns whether it was stored.
    pub fn try_publish(&self, s: Status) -> bool {
        match self.0.try_lock() {
            Ok(mut g) => {
                *g = Arc::new(s);
                true
            }
            Err(_) => false,
        }
    }

    /// The last published value.
    pub fn get(&self) -> Arc<Status> {
        match self.0.lock() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(id: u16, units: u64, forwarded: u64) -> ProcessorStatus {
        ProcessorStatus {
            id,
            addr: "127.0.0.1:5070".parse().unwrap(),
            kind: Kind::Local,
            admin: Admin::Active,
            alive: true,
            state: State::Up,
            units_in_use: units,
            capacity: 0,
            weight: 1,
            pending_invites: 0,
            forwarded,
            new_dialogs: forwarded,
            last_heard_ms: None,
        }
    }

    #[test]
    fn the_board_sums_the_threads_and_keeps_one_row_each() {
        let board = StatusBoard::new(2);
        for (t, (rx, units, fwd)) in [(10, 3, 7), (5, 4, 2)].into_iter().enumerate() {
            let mut s = Status {
                backend: "xdp".into(),
                rx,
                dispatcher_cpu_ns: 1_000,
                processors: vec![processor(0, units, fwd)],
                ..Status::default()
            };
            s.router.sip = rx;
            s.router.new_dialogs = fwd;
            assert!(board.try_publish(t, s));
        }
        let s = board.get();
        assert_eq!((s.rx, s.dispatcher_cpu_ns, s.router.sip), (15, 2_000, 15));
        assert_eq!(s.backend, "xdp");
        assert_eq!(s.processors.len(), 1);
        let p = &s.processors[0];
        assert_eq!(p.forwarded, 9, "each thread's handoffs add up");
        assert_eq!(
            p.units_in_use, 4,
            "one shared board: the newest reading, not a sum"
        );
        let rows: Vec<_> = s.threads.iter().map(|t| (t.index, t.datagrams)).collect();
        assert_eq!(rows, [(0, 10), (1, 5)]);
        assert!(!board.try_publish(2, Status::default()), "no such thread");
    }
}
