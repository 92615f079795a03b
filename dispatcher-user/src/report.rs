//! What `switchyard run` reports when it stops: every counter of every part, as serde types.
//! Written as JSON by `--stats-json` and read back by the end-to-end tests (and scripts) through
//! the same types, so a renamed or dropped counter is a compile error, not a silent `null`.
//!
//! This module only gathers what the parts count; it must not count anything itself.
use crate::route::RouterStats;

/// What `switchyard run` reports when it stops (`--stats-json`): every counter, typed, so the
/// binary, its tests and scripts read one definition instead of untyped JSON keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitReport {
    /// `udp` or `xdp`.
    pub backend: String,
    /// CPU time of the dispatcher thread, ns.
    pub dispatcher_cpu_ns: u64,
    /// The UDP shell's counters (udp backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<crate::udp_shell::UdpStats>,
    /// How the XDP program was attached: `native` or `generic` (xdp backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_mode: Option<String>,
    /// Whether every AF_XDP socket ran zero-copy (xdp backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_copy: Option<bool>,
    /// The XDP program's verdict counters (xdp backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<xdp_io::loader::XdpCounters>,
    /// AF_XDP rings and the shell, summed over queues (xdp backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub afxdp: Option<AfXdpReport>,
    /// Every routing decision.
    pub router: RouterReport,
    /// Each in-chassis processor, by id.
    pub processors: Vec<ProcessorReport>,
    /// The health monitor of processors on other hosts, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan: Option<crate::lan::LanStats>,
}

/// AF_XDP counters summed over the served queues, and what the shell could not hand on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AfXdpReport {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted (the dispatcher's own replies).
    pub tx_frames: u64,
    /// Replies that found the tx ring full.
    pub tx_full: u64,
    /// Times the fill ring could not be refilled completely.
    pub fill_short: u64,
    /// Frames the kernel dropped for want of rx ring space.
    pub kernel_rx_dropped: u64,
    /// Frames that were not a readable UDP datagram.
    pub bad_frames: u64,
    /// Datagrams to a port that is not configured.
    pub unknown_port: u64,
    /// Replies that could not be queued for transmit.
    pub reply_not_sent: u64,
}

impl AfXdpReport {
    /// Sums `queues` and adds the shell's own counters.
    pub fn new(queues: &[xdp_io::xsk::XskStats], shell: &crate::xdp_shell::XdpShellStats) -> Self {
        let sum = |f: fn(&xdp_io::xsk::XskStats) -> u64| queues.iter().map(f).sum::<u64>();
        Self {
            rx_frames: sum(|s| s.rx_frames),
            rx_bytes: sum(|s| s.rx_bytes),
            tx_frames: sum(|s| s.tx_frames),
            tx_full: sum(|s| s.tx_full),
            fill_short: sum(|s| s.fill_short),
            kernel_rx_dropped: sum(|s| s.kernel_rx_dropped),
            bad_frames: shell.bad_frames,
            unknown_port: shell.unknown_port,
            reply_not_sent: shell.reply_not_sent,
        }
    }
}

/// The router's decisions, its affinity table and the handoffs carried out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouterReport {
    /// One counter per decision (flattened: `router.sip`, `router.new_dialogs`, ...).
    #[serde(flatten)]
    pub decisions: RouterStats,
    /// The INVITE transaction table.
    pub affinity: AffinityReport,
    /// Messages handed to each processor, by id.
    pub forwarded_per_processor: Vec<u64>,
    /// Carrying out handoffs (fabric pushes, LAN sends).
    pub links: crate::links::LinkStats,
}

impl RouterReport {
    /// The report of `core` as it stands.
    pub fn new(core: &crate::links::Dispatch) -> Self {
        let (stats, memory_bytes) = core.router.affinity();
        Self {
            decisions: core.router.stats(),
            affinity: AffinityReport {
                stats,
                memory_bytes,
            },
            forwarded_per_processor: core.router.members().iter().map(|m| m.forwarded).collect(),
            links: core.links.stats(),
        }
    }
}

/// Affinity table counters and its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AffinityReport {
    /// Inserts, evictions, hits, misses.
    #[serde(flatten)]
    pub stats: crate::route::affinity::AffinityStats,
    /// Bytes the table holds.
    pub memory_bytes: usize,
}

/// One in-chassis processor at exit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessorReport {
    /// Its id.
    pub id: usize,
    /// Where it listened.
    pub addr: std::net::SocketAddr,
    /// Its counters; `None` when its thread panicked.
    pub stats: Option<processor::thread::ProcessorStats>,
}
