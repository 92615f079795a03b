//! Processors as the router sees them: a fixed [`MemberSpec`] each, the [`Snapshot`] of their
//! load and liveness the shell passes in, and the router's own accounting on top.
//!
//! Why a snapshot rather than reading the load board directly: the board is shared memory that
//! processor threads and the LAN health monitor write at any time. The shell reads it once per
//! receive batch into one plain value, so every decision in a batch sees one consistent view,
//! the router stays deterministic (tests build snapshots by hand, with a fake clock), and the
//! hot path reads no cache line another core is writing. What the router assigned since the
//! snapshot was taken is its own knowledge and is added on top: a queue the router filled in
//! this batch is full even if the snapshot still shows room.
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{atomic::Ordering::Relaxed, Arc},
};

use super::select::MemberState;
use crate::pool::Admin;

/// What the router needs to know about a processor: set when it joins the pool, changed only by
/// the operator (reload, `ctl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberSpec {
    /// The processor's own port (what claim 2 writes into the message).
    pub port: u16,
    /// Its address (for the operator's views; routing uses only `port` and the shell's link).
    pub addr: SocketAddr,
    /// Relative share of new dialogs (≥ 1; see [`super::select`]).
    pub weight: u32,
    /// Its capacity in session units (0: unlimited, or for remote ones: as it reports).
    pub capacity: u32,
    /// Whether it is on another host (reached over the LAN, with the true source relayed).
    pub remote: bool,
    /// Most new-INVITE transactions it holds pending before it refuses more (its
    /// `--max-pending-invites`; 0: unlimited, and always for remote ones, which do not
    /// report the count). At the cap it is out of selection for new INVITEs.
    pub max_pending: u32,
}

impl MemberSpec {
    /// A processor thread in this chassis listening on `port`.
    pub fn local(port: u16, capacity: u32) -> Self {
        Self {
            port,
            addr: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            weight: 1,
            capacity,
            remote: false,
            max_pending: 0,
        }
    }

    /// A processor on another host at `addr`.
    pub fn remote(addr: SocketAddr, capacity: u32) -> Self {
        Self {
            port: addr.port(),
            addr,
            weight: 1,
            capacity,
            remote: true,
            max_pending: 0,
        }
    }
}

/// One processor's load and liveness at one moment, as the shell read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberView {
    /// In selection: heartbeat fresh (in-chassis) or health up (remote).
    pub alive: bool,
    /// Units released by ended or refused sessions, ever (in-chassis processors count these;
    /// units in use = units assigned − released).
    pub released_units: u64,
    /// Units in use as the processor last reported them (remote processors, which several
    /// dispatchers may share, so their own gauge is the truth).
    pub reported_in_use: u64,
    /// Reports accepted so far (the router notices a new report by this changing).
    pub reports: u64,
    /// Capacity the processor reports (used when the configured one is 0).
    pub reported_capacity: u32,
    /// Free slots in its fabric queue when the snapshot was taken (`usize::MAX` for remote).
    pub queue_free: usize,
    /// Slots in its fabric queue (`usize::MAX` for remote).
    pub queue_capacity: usize,
    /// New-INVITE transactions it reported pending (in-chassis: its thread's gauge; remote:
    /// its last load report's).
    pub pending_invites: u32,
    /// The cap on them a processor on another host reports (0: unlimited or not reported).
    pub reported_max_pending: u32,
}

impl MemberView {
    /// A remote processor's view: `up` as its health monitor says, and its last report.
    pub fn remote(up: bool, reported_in_use: u64, reports: u64, reported_capacity: u32) -> Self {
        Self {
            alive: up,
            released_units: 0,
            reported_in_use,
            reports,
            reported_capacity,
            queue_free: usize::MAX,
            queue_capacity: usize::MAX,
            pending_invites: 0,
            reported_max_pending: 0,
        }
    }
}

/// The liveness rule for in-chassis processors: alive while the last heartbeat (or, before the
/// first, the dispatcher's start `origin_ns`: threads start with the process) is younger than
/// `timeout_ns`.
pub fn local_alive(now_ns: u64, origin_ns: u64, heartbeat_ns: u64, timeout_ns: u64) -> bool {
    now_ns.saturating_sub(heartbeat_ns.max(origin_ns)) < timeout_ns
}

/// Every processor's view, index = processor id; `epoch` changes with every refresh so the
/// router knows when to forget what it handed since the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Bumped by each refresh.
    pub epoch: u64,
    /// One view per processor, in processor order.
    pub members: Vec<MemberView>,
}

/// The view of a processor the snapshot does not cover: unknown, not alive
/// (`MemberView::default()`).
const UNKNOWN_VIEW: MemberView = MemberView {
    alive: false,
    released_units: 0,
    reported_in_use: 0,
    reports: 0,
    reported_capacity: 0,
    queue_free: 0,
    queue_capacity: 0,
    pending_invites: 0,
    reported_max_pending: 0,
};

impl Snapshot {
    /// Processor `k`'s view, by reference (the hot path reads a few fields of it), or the
    /// unknown one when the snapshot has none.
    #[inline]
    pub fn view(&self, k: usize) -> &MemberView {
        self.members.get(k).unwrap_or(&UNKNOWN_VIEW)
    }

    /// A snapshot of `n` processors, all unknown (not alive).
    pub fn new(n: usize) -> Self {
        Self {
            epoch: 0,
            members: vec![MemberView::default(); n],
        }
    }
}

/// A processor slot in the router (index = processor id): its spec, the operator's state, and
/// what the router has assigned it. A slot whose processor was removed stays, not `present`, so
/// ids never move.
#[derive(Debug, Clone)]
pub struct Member {
    /// As configured.
    pub spec: MemberSpec,
    /// In the pool. A removed processor's slot is kept (ids are stable) but never selected or
    /// routed to.
    pub present: bool,
    /// Operator state (`ctl drain/disable/enable`).
    pub admin: Admin,
    /// Units this router assigned to it, ever (monotonic).
    pub assigned_units: u64,
    /// The units every dispatcher thread's router assigned to it together
    /// ([`fabric::LoadReport::assigned_units`]), when several threads share the processor;
    /// `None`: this router is the only one and `assigned_units` is the whole truth.
    shared: Option<Arc<fabric::LoadReport>>,
    /// Messages handed to it.
    pub forwarded: u64,
    /// New dialogs placed on it.
    pub new_dialogs: u64,
    /// Messages handed to it since the snapshot of epoch `epoch` (they occupy queue slots the
    /// snapshot still shows free).
    handed: usize,
    /// New INVITEs among them: transactions it will hold that the snapshot's pending count
    /// does not show yet.
    invites_handed: u32,
    epoch: u64,
    /// `reports` when last looked at, and `assigned_units` and `invites_assigned` then
    /// (remote members).
    seen_reports: u64,
    assigned_at_report: u64,
    invites_assigned: u64,
    invites_at_report: u64,
}

impl Member {
    pub(super) fn new(spec: MemberSpec) -> Self {
        Self {
            spec,
            present: true,
            admin: Admin::Active,
            assigned_units: 0,
            shared: None,
            forwarded: 0,
            new_dialogs: 0,
            handed: 0,
            invites_handed: 0,
            epoch: u64::MAX,
            seen_reports: 0,
            assigned_at_report: 0,
            invites_assigned: 0,
            invites_at_report: 0,
        }
    }

    /// An empty slot (an id no processor has).
    pub(super) fn absent() -> Self {
        Self {
            present: false,
            ..Self::new(MemberSpec::local(0, 0))
        }
    }

    /// Forgets per-snapshot counts when a new snapshot arrives, and for a remote member notes
    /// a new load report: what was assigned until then is in it. Called before every change to
    /// the accounting ([`Member::handed`], [`Member::handed_invite`], [`Member::assign`]), so
    /// that [`Member::state`] can be a pure read of the same numbers.
    pub(super) fn refresh(&mut self, epoch: u64, v: &MemberView) {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.handed = 0;
            self.invites_handed = 0;
        }
        if self.spec.remote && v.reports != self.seen_reports {
            self.seen_reports = v.reports;
            self.assigned_at_report = self.total_assigned();
            self.invites_at_report = self.invites_assigned;
        }
    }

    /// Records one message handed to it (after [`Member::refresh`]).
    pub(super) fn handed(&mut self) {
        self.handed += 1;
        self.forwarded += 1;
    }

    /// Records that the message last handed ([`Member::handed`]) was a new INVITE.
    pub(super) fn handed_invite(&mut self) {
        self.invites_handed = self.invites_handed.saturating_add(1);
        self.invites_assigned += 1;
    }

    /// Shares the accounting of every dispatcher thread through `board` (see
    /// [`Member::try_assign`]).
    pub(super) fn share(&mut self, board: Arc<fabric::LoadReport>) {
        self.shared = Some(board);
    }

    /// Units assigned to it by every router that shares it (just this one's without a board).
    #[inline]
    fn total_assigned(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(self.assigned_units, |b| b.assigned_units.load(Relaxed))
    }

    /// Records `units` assigned to it with a new dialog, whatever its capacity (a dialog that
    /// names its processor).
    pub(super) fn assign(&mut self, units: u32) {
        self.assigned_units += u64::from(units);
        if let Some(b) = &self.shared {
            b.assigned_units.fetch_add(u64::from(units), Relaxed);
        }
    }

    /// Assigns `units` unless that takes an in-chassis processor over its capacity, counting
    /// what other dispatcher threads assigned meanwhile: the reservation is one atomic add on
    /// the shared board, so of two threads racing for the last units exactly one gets them
    /// (every read-modify-write of one atomic sees the previous one, whatever the ordering),
    /// and the other gives them back and tries another processor. `released` is the
    /// snapshot's, at most as new as the truth, so the check only errs on the safe side.
    /// The sum of threads never exceeds a capacity. False: nothing was assigned.
    pub(super) fn try_assign(&mut self, units: u32, released: u64) -> bool {
        let u = u64::from(units);
        match &self.shared {
            Some(b) if !self.spec.remote && self.spec.capacity > 0 => {
                let before = b.assigned_units.fetch_add(u, Relaxed);
                if (before + u).saturating_sub(released) > u64::from(self.spec.capacity) {
                    b.assigned_units.fetch_sub(u, Relaxed);
                    return false;
                }
                self.assigned_units += u;
                true
            }
            _ => {
                self.assign(units);
                true
            }
        }
    }

    /// Takes back an assignment that could not be handed over (its queue was full).
    pub(super) fn unassign(&mut self, units: u32) {
        self.assigned_units -= u64::from(units);
        if let Some(b) = &self.shared {
            b.assigned_units.fetch_sub(u64::from(units), Relaxed);
        }
    }

    /// In the pool and not disabled: its transactions and dialogs are routed to it (a draining
    /// one too; only new dialogs avoid it, see [`Member::selectable`]).
    pub fn in_service(&self) -> bool {
        self.present && self.admin != Admin::Disabled
    }

    /// May get new dialogs (health aside).
    pub fn selectable(&self) -> bool {
        self.present && self.admin == Admin::Active
    }

    /// Whether its queue has no room for one more message: [`Member::state`]'s `depth >=
    /// queue_capacity`, without the rest of the state (the push path's only question).
    #[inline]
    pub(super) fn queue_full(&self, epoch: u64, v: &MemberView) -> bool {
        // A remote member's queue is the LAN: never full here (depth 0, capacity MAX).
        if self.spec.remote {
            return false;
        }
        let handed = if self.epoch == epoch { self.handed } else { 0 };
        v.queue_capacity
            .saturating_sub(v.queue_free)
            .saturating_add(handed)
            >= v.queue_capacity
    }

    /// The selector's view: the snapshot plus the router's own accounting. A pure read (what
    /// [`Member::refresh`] would reset reads as reset), so the selector can evaluate only the
    /// members it samples, as often as it likes, without a per-decision pass over all of them.
    #[inline]
    pub(super) fn state(&self, epoch: u64, v: &MemberView) -> MemberState {
        let fresh = self.epoch == epoch;
        let handed = if fresh { self.handed } else { 0 };
        let invites_handed = if fresh { self.invites_handed } else { 0 };
        let depth = v
            .queue_capacity
            .saturating_sub(v.queue_free)
            .saturating_add(handed);
        if self.spec.remote {
            // What we assigned since its last report is added to what it reported (nothing
            // yet when the report is one we have not looked at).
            let (units_since, invites_since) = if v.reports == self.seen_reports {
                (
                    self.total_assigned()
                        .saturating_sub(self.assigned_at_report),
                    (self.invites_assigned - self.invites_at_report) as u32,
                )
            } else {
                (0, 0)
            };
            let capacity = if self.spec.capacity > 0 {
                self.spec.capacity
            } else {
                v.reported_capacity
            };
            MemberState {
                in_use: v.reported_in_use + units_since,
                capacity,
                depth: 0,
                queue_capacity: usize::MAX,
                alive: v.alive && self.in_service(),
                weight: self.spec.weight.max(1),
                // Its last report plus the INVITEs we handed it since: like units, so that
                // the cap holds between two reports.
                pending: v.pending_invites.saturating_add(invites_since),
                max_pending: v.reported_max_pending,
            }
        } else {
            MemberState {
                in_use: self.total_assigned().saturating_sub(v.released_units),
                capacity: self.spec.capacity,
                depth,
                queue_capacity: v.queue_capacity,
                alive: v.alive && self.in_service(),
                weight: self.spec.weight.max(1),
                pending: v.pending_invites.saturating_add(invites_handed),
                max_pending: self.spec.max_pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_rule_counts_from_start_until_the_first_beat() {
        let sec = 1_000_000_000;
        assert!(local_alive(sec / 2, 0, 0, sec), "fresh process");
        assert!(!local_alive(2 * sec, 0, 0, sec), "never beat");
        assert!(local_alive(10 * sec, 0, 9 * sec + 1, sec));
        assert!(!local_alive(10 * sec, 0, 9 * sec, sec));
    }

    #[test]
    fn handed_messages_fill_the_queue_until_the_next_snapshot() {
        let mut m = Member::new(MemberSpec::local(5070, 0));
        let v = MemberView {
            alive: true,
            queue_free: 2,
            queue_capacity: 4,
            ..MemberView::default()
        };
        assert_eq!(m.state(1, &v).depth, 2);
        m.refresh(1, &v);
        m.handed();
        m.handed();
        assert_eq!(m.state(1, &v).depth, 4, "full: nothing more fits");
        assert_eq!(m.state(2, &v).depth, 2, "a new snapshot counts afresh");
    }

    #[test]
    fn the_unknown_view_is_the_default() {
        assert_eq!(UNKNOWN_VIEW, MemberView::default());
        assert_eq!(Snapshot::new(1).view(5), &MemberView::default());
    }

    #[test]
    fn queue_full_agrees_with_the_state() {
        for remote in [false, true] {
            let spec = if remote {
                MemberSpec::remote("192.0.2.1:5060".parse().unwrap(), 0)
            } else {
                MemberSpec::local(5070, 0)
            };
            let mut m = Member::new(spec);
            for (free, cap) in [
                (2usize, 4usize),
                (0, 4),
                (4, 4),
                (0, 0),
                (5, 4),
                (usize::MAX, usize::MAX),
            ] {
                let v = MemberView {
                    alive: true,
                    queue_free: free,
                    queue_capacity: cap,
                    ..MemberView::default()
                };
                for epoch in [1, 2] {
                    for _ in 0..3 {
                        let s = m.state(epoch, &v);
                        assert_eq!(
                            m.queue_full(epoch, &v),
                            s.depth >= s.queue_capacity,
                            "remote {remote}, free {free}, cap {cap}, epoch {epoch}"
                        );
                        m.refresh(1, &v);
                        m.handed();
                    }
                }
            }
        }
    }
}
