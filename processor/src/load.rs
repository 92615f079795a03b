//! Load accounting shared by the SIP UAS and the MGCP gateway of one processor (claim 7).
//!
//! The dispatcher assigns each new session its size in units; the processor reports back
//! monotonic counters so the dispatcher can compute units in use without races.
use std::sync::{atomic::Ordering, Arc};

use fabric::LoadReport;

/// Handle on a processor's [`LoadReport`]; cheap to clone, shared by its state machines.
#[derive(Debug, Clone)]
pub struct LoadAccount {
    report: Arc<LoadReport>,
}

impl LoadAccount {
    /// Wraps the shared report.
    pub fn new(report: Arc<LoadReport>) -> Self {
        Self { report }
    }

    /// The shared report.
    pub fn report(&self) -> &Arc<LoadReport> {
        &self.report
    }

    /// A session became active.
    pub fn started(&self, units: u32) {
        self.report.active.fetch_add(1, Ordering::Relaxed);
        self.report
            .in_use_units
            .fetch_add(u64::from(units), Ordering::Relaxed);
    }

    /// An active session ended normally: its units go back (out of the in-use gauge, into
    /// the released counter).
    pub fn ended(&self, units: u32) {
        let _ = self
            .report
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                Some(a.saturating_sub(1))
            });
        let _ = self
            .report
            .in_use_units
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(u64::from(units)))
            });
        self.report
            .released_units
            .fetch_add(u64::from(units), Ordering::Relaxed);
    }

    /// An active session failed before it was established (CANCEL, ...): released and
    /// counted as rejected.
    pub fn failed(&self, units: u32) {
        self.ended(units);
        self.report
            .rejected_units
            .fetch_add(u64::from(units), Ordering::Relaxed);
    }

    /// A session was refused before it became active (never counted in `active`).
    pub fn rejected(&self, units: u32) {
        self.report
            .released_units
            .fetch_add(u64::from(units), Ordering::Relaxed);
        self.report
            .rejected_units
            .fetch_add(u64::from(units), Ordering::Relaxed);
    }

    /// Publishes the pending new-INVITE transaction count (a gauge).
    pub fn pending_invites(&self, n: u32) {
        self.report.pending_invites.store(n, Ordering::Relaxed);
    }

    /// Records the processor clock as its heartbeat.
    pub fn heartbeat(&self, now_ns: u64) {
        self.report.heartbeat_ns.store(now_ns, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_use_is_a_gauge_released_and_rejected_are_counters() {
        let a = LoadAccount::new(LoadReport::new(0));
        a.started(3);
        a.started(2);
        a.ended(3);
        a.failed(2);
        a.rejected(4);
        let r = a.report();
        assert_eq!(
            r.in_use_units.load(Ordering::Relaxed),
            0,
            "what remote dispatchers read"
        );
        assert_eq!(r.active.load(Ordering::Relaxed), 0);
        assert_eq!(r.released_units.load(Ordering::Relaxed), 9);
        assert_eq!(r.rejected_units.load(Ordering::Relaxed), 6);
    }
}
