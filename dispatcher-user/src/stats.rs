//! Counters the dispatcher thread publishes for the main thread's periodic report.
//!
//! The dispatcher thread owns its counters as plain integers (no atomics on the per-packet path)
//! and copies them here at most every [`PUBLISH_EVERY_NS`], with relaxed stores: a report may be
//! a few milliseconds stale, never torn per counter, and costs the hot path nothing per packet.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::route::RouterStats;

/// How often the dispatcher thread publishes (100 ms).
pub const PUBLISH_EVERY_NS: u64 = 100_000_000;

/// The published counters: one row per dispatcher thread, summed by [`Published::load`].
#[derive(Debug)]
pub struct Published {
    threads: Box<[ThreadCounters]>,
}

impl Default for Published {
    fn default() -> Self {
        Self::new(1)
    }
}

/// One dispatcher thread's row of [`Published`], on its own cache lines (each thread writes
/// only its own).
#[derive(Debug, Default)]
#[repr(align(128))]
struct ThreadCounters {
    sip: AtomicU64,
    mgcp: AtomicU64,
    forwarded: AtomicU64,
    answered: AtomicU64,
    overload: AtomicU64,
    dropped: AtomicU64,
    rx: AtomicU64,
}

/// A plain copy of [`Published`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// SIP datagrams seen by the core.
    pub sip: u64,
    /// MGCP datagrams seen by the core.
    pub mgcp: u64,
    /// New dialogs handed to processors.
    pub forwarded: u64,
    /// Requests the dispatcher answered itself (OPTIONS, 4xx, MGCP errors).
    pub answered: u64,
    /// Dialogs refused for overload (503 / 403 / 409).
    pub overload: u64,
    /// Datagrams dropped (all reasons).
    pub dropped: u64,
    /// Frames/datagrams the shell received.
    pub rx: u64,
}

impl Published {
    /// Stores dispatcher thread `thread`'s current counters.
    pub fn store(&self, thread: usize, r: &RouterStats, rx: u64) {
        let Some(t) = self.threads.get(thread) else {
            return;
        };
        t.sip.store(r.sip, Relaxed);
        t.mgcp.store(r.mgcp, Relaxed);
        t.forwarded.store(r.new_dialogs, Relaxed);
        t.answered.store(
            r.options_answered
                + r.rejected_method
                + r.no_transaction
                + r.bad_tag
                + r.bad_request
                + r.too_large
                + r.mgcp_answered,
            Relaxed,
        );
        t.overload.store(r.overload, Relaxed);
        t.dropped.store(
            r.dropped_empty
                + r.dropped_response
                + r.dropped_unparseable
                + r.dropped_ack
                + r.dropped_reply_too_large
                + r.dropped_removed,
            Relaxed,
        );
        t.rx.store(rx, Relaxed);
    }

    /// Reads the last published counters, summed over the threads.
    pub fn load(&self) -> Snapshot {
        let mut sum = Snapshot::default();
        for t in self.threads.iter() {
            sum.sip += t.sip.load(Relaxed);
            sum.mgcp += t.mgcp.load(Relaxed);
            sum.forwarded += t.forwarded.load(Relaxed);
            sum.answered += t.answered.load(Relaxed);
            sum.overload += t.overload.load(Relaxed);
            sum.dropped += t.dropped.load(Relaxed);
            sum.rx += t.rx.load(Relaxed);
        }
        sum
    }

    /// Rows for `threads` dispatcher threads (at least one).
    pub fn new(threads: usize) -> Self {
        Self {
            threads: (0..threads.max(1))
                .map(|_| ThreadCounters::default())
                .collect(),
        }
    }
}

/// Rate-limits publishing to once per [`PUBLISH_EVERY_NS`].
#[derive(Debug, Default)]
pub struct PublishTimer {
    last_ns: u64,
}

impl PublishTimer {
    /// True when it is time to publish again at `now_ns`.
    pub fn due(&mut self, now_ns: u64) -> bool {
        if now_ns.saturating_sub(self.last_ns) >= PUBLISH_EVERY_NS {
            self.last_ns = now_ns;
            true
        } else {
            false
        }
    }
}

impl Snapshot {
    /// The periodic `counters` log line: rates per second since `prev` (taken `secs` ago),
    /// then totals, on one line a person can read; `xdp` adds the program's verdicts as
    /// (now, then).
    pub fn rates_line(
        &self,
        prev: &Snapshot,
        secs: f64,
        xdp: Option<(xdp_io::loader::XdpCounters, xdp_io::loader::XdpCounters)>,
    ) -> String {
        let secs = secs.max(1e-3);
        let rate = |now: u64, then: u64| (now.saturating_sub(then) as f64 / secs).round() as u64;
        let mut line = format!(
            "{}/s in ({}/s SIP, {}/s MGCP), {}/s new dialogs, {}/s answered, {}/s overload, {}/s dropped; totals {} in, {} new, {} answered, {} overload, {} dropped",
            rate(self.rx, prev.rx),
            rate(self.sip, prev.sip),
            rate(self.mgcp, prev.mgcp),
            rate(self.forwarded, prev.forwarded),
            rate(self.answered, prev.answered),
            rate(self.overload, prev.overload),
            rate(self.dropped, prev.dropped),
            self.rx,
            self.forwarded,
            self.answered,
            self.overload,
            self.dropped,
        );
        if let Some((x, p)) = xdp {
            line.push_str(&format!(
                "; XDP {}/s redirected, {}/s passed, {}/s dropped by the source guard, {} malformed",
                rate(x.redirected, p.redirected),
                rate(x.passed, p.passed),
                rate(x.guard_dropped(), p.guard_dropped()),
                x.malformed
            ));
        }
        line
    }
}

/// CPU time the calling thread has used, ns: the dispatcher's own cost, published and
/// reported at exit so CPU per call can be computed without sampling.
pub use fabric::idle::thread_cpu_ns;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_line_gives_rates_then_totals() {
        let then = Snapshot {
            rx: 1000,
            sip: 600,
            mgcp: 400,
            forwarded: 900,
            ..Snapshot::default()
        };
        let now = Snapshot {
            rx: 3000,
            sip: 1800,
            mgcp: 1200,
            forwarded: 2700,
            dropped: 4,
            ..Snapshot::default()
        };
        let line = now.rates_line(&then, 2.0, None);
        assert!(
            line.starts_with("1000/s in (600/s SIP, 400/s MGCP), 900/s new dialogs, 0/s answered, 0/s overload, 2/s dropped; totals 3000 in, 2700 new"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let x = |redirected, dropped_rate| xdp_io::loader::XdpCounters {
            redirected,
            dropped_rate,
            dropped_not_allowed: 10,
            ..Default::default()
        };
        let line = now.rates_line(&then, 2.0, Some((x(3000, 4010), x(1000, 10))));
        assert!(
            line.ends_with("; XDP 1000/s redirected, 0/s passed, 2000/s dropped by the source guard, 0 malformed"),
            "{line}"
        );
    }
}
