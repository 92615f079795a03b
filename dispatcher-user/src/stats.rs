//! Counters the dispatcher thread publishes for the main thread's periodic report.
//!
//! The dispatcher thread owns its counters as plain integers (no atomics on the per-packet path)
//! and copies them here at most every [`PUBLISH_EVERY_NS`], with relaxed stores: a report may be
//! a few milliseconds stale, never torn per counter, and costs the hot path nothing per packet.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::route::RouterStats;

/// How often the dispatcher thread publishes (100 ms).
pub const PUBLISH_EVERY_NS: u64 = 100_000_000;

/// The published snapshot.
#[derive(Debug, Default)]
pub struct Published {
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
    /// Stores the dispatcher thread's current counters.
    pub fn store(&self, r: &RouterStats, rx: u64) {
        self.sip.store(r.sip, Relaxed);
        self.mgcp.store(r.mgcp, Relaxed);
        self.forwarded.store(r.new_dialogs, Relaxed);
        self.answered.store(
            r.options_answered
                + r.rejected_method
                + r.no_transaction
                + r.bad_request
                + r.too_large
                + r.mgcp_answered,
            Relaxed,
        );
        self.overload.store(r.overload, Relaxed);
        self.dropped.store(
            r.dropped_empty
                + r.dropped_response
                + r.dropped_unparseable
                + r.dropped_ack
                + r.dropped_reply_too_large,
            Relaxed,
        );
        self.rx.store(rx, Relaxed);
    }

    /// Reads the last published counters.
    pub fn load(&self) -> Snapshot {
        Snapshot {
            sip: self.sip.load(Relaxed),
            mgcp: self.mgcp.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            answered: self.answered.load(Relaxed),
            overload: self.overload.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            rx: self.rx.load(Relaxed),
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
