//! Counters the dispatcher thread publishes for the main thread's periodic report.
//!
//! The dispatcher thread owns its counters as plain integers (no atomics on the per-packet path)
//! and copies them here at most every [`PUBLISH_EVERY_NS`], with relaxed stores: a report may be
//! a few milliseconds stale, never torn per counter, and costs the hot path nothing per packet.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::core::CoreStats;

/// How often the dispatcher thread publishes (100 ms).
pub const PUBLISH_EVERY_NS: u64 = 100_000_000;

/// The published snapshot.
#[derive(Debug, Default)]
pub struct Published {
    sip: AtomicU64,
    mgcp: AtomicU64,
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
    /// Datagrams the core dropped (all reasons).
    pub dropped: u64,
    /// Frames/datagrams the shell received.
    pub rx: u64,
}

impl Published {
    /// Stores the dispatcher thread's current counters.
    pub fn store(&self, core: &CoreStats, rx: u64) {
        self.sip.store(core.sip, Relaxed);
        self.mgcp.store(core.mgcp, Relaxed);
        self.dropped
            .store(core.dropped_not_routed + core.dropped_empty, Relaxed);
        self.rx.store(rx, Relaxed);
    }

    /// Reads the last published counters.
    pub fn load(&self) -> Snapshot {
        Snapshot {
            sip: self.sip.load(Relaxed),
            mgcp: self.mgcp.load(Relaxed),
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
