//! What `switchyard run` reports when it stops: every counter of every part, as serde types.
//! Written as JSON by `--stats-json` and read back by the end-to-end tests (and scripts) through
//! the same types, so a renamed or dropped counter is a compile error, not a silent `null`.
//!
//! This module only gathers what the parts count; it must not count anything itself.
use crate::route::RouterStats;

/// What `switchyard run` reports when it stops (`--stats-json`): every counter, typed, so the
/// binary, its tests and scripts read one definition instead of untyped JSON keys.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Each dispatcher thread's share (`router`, `afxdp`/`udp` and `dispatcher_cpu_ns` are
    /// their sums).
    #[serde(default)]
    pub dispatcher_threads: Vec<ThreadReport>,
}

/// One dispatcher thread at exit.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadReport {
    /// Its index (0 to `--dispatcher-threads` − 1).
    pub index: usize,
    /// The core it was pinned to (`None`: unpinned).
    pub core: Option<usize>,
    /// The rx queues it served (xdp backend; empty for udp).
    pub queues: Vec<u32>,
    /// Datagrams its router decided.
    pub datagrams: u64,
    /// Its CPU time, ns.
    pub cpu_ns: u64,
    /// New dialogs it placed.
    pub new_dialogs: u64,
}

impl ThreadReport {
    /// Thread `index`'s row from its router's report.
    pub fn new(
        index: usize,
        core: Option<usize>,
        queues: Vec<u32>,
        cpu_ns: u64,
        r: &RouterReport,
    ) -> Self {
        Self {
            index,
            core,
            queues,
            datagrams: r.decisions.sip + r.decisions.mgcp,
            cpu_ns,
            new_dialogs: r.decisions.new_dialogs,
        }
    }
}

/// AF_XDP counters summed over the served queues, and what the shell could not hand on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AfXdpReport {
    /// The rings: `rx_frames`, `rx_bytes`, `tx_frames`, `tx_full`, `fill_short`,
    /// `kernel_rx_dropped` (flattened).
    #[serde(flatten)]
    pub rings: xdp_io::xsk::XskStats,
    /// Frames that were not a readable UDP datagram, datagrams to a port that is not
    /// configured, replies that could not be queued for transmit (`cpu_ns` is the top level's
    /// `dispatcher_cpu_ns`).
    #[serde(flatten)]
    pub shell: crate::xdp_shell::XdpShellStats,
}

impl AfXdpReport {
    /// Sums `queues` and adds the shell's own counters.
    pub fn new(queues: &[xdp_io::xsk::XskStats], shell: &crate::xdp_shell::XdpShellStats) -> Self {
        Self {
            rings: queues.iter().copied().sum(),
            shell: *shell,
        }
    }
}

/// The router's decisions, its affinity table and the handoffs carried out.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

impl RouterReport {
    /// Adds another dispatcher thread's report (each has its own router and affinity table).
    pub fn add(&mut self, o: &Self) {
        self.decisions.add(&o.decisions);
        self.affinity.stats.add(&o.affinity.stats);
        self.affinity.memory_bytes += o.affinity.memory_bytes;
        if self.forwarded_per_processor.len() < o.forwarded_per_processor.len() {
            self.forwarded_per_processor
                .resize(o.forwarded_per_processor.len(), 0);
        }
        for (a, b) in self
            .forwarded_per_processor
            .iter_mut()
            .zip(&o.forwarded_per_processor)
        {
            *a += b;
        }
        self.links.add(&o.links);
    }
}

/// Affinity table counters and its memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

impl ExitReport {
    /// Datagrams the router decided.
    pub fn datagrams(&self) -> u64 {
        self.router.decisions.sip + self.router.decisions.mgcp
    }

    /// A few aligned lines a person reads at a glance (the full counters are `--stats-json`'s):
    /// what arrived, what was handed over, answered and dropped and why, each processor's
    /// share, and the dispatcher's CPU. `elapsed_s` is how long it ran.
    pub fn summary(&self, elapsed_s: f64) -> String {
        use std::fmt::Write as _;
        let r = &self.router.decisions;
        let mut o = String::new();
        let mode = match (&self.attach_mode, self.zero_copy) {
            (Some(a), Some(zc)) => {
                format!(
                    " ({a} attach, {} mode)",
                    if zc { "zero-copy" } else { "copy" }
                )
            }
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "switchyard ran {elapsed_s:.1} s on the {} backend{mode}",
            self.backend
        );
        let mut line = |label: &str, text: String| {
            let _ = writeln!(o, "  {label:<12} {text}");
        };
        let mut received = format!(
            "{} datagrams: {} SIP, {} MGCP",
            self.datagrams(),
            r.sip,
            r.mgcp
        );
        if let Some(x) = &self.xdp {
            let _ = write!(
                received,
                "; XDP verdicts: {} redirected, {} passed, {} malformed, {} without a socket, {} dropped not allowed, {} dropped over rate",
                x.redirected,
                x.passed,
                x.malformed,
                x.no_socket,
                x.dropped_not_allowed,
                x.dropped_rate
            );
        }
        line("received", received);
        line(
            "handed over",
            format!(
                "{} new dialogs, {} retransmissions ({} re-placed), {} CANCEL, {} ACK, {} in-dialog, {} MGCP by connection/endpoint, {} MGCP retransmissions",
                r.new_dialogs,
                r.retransmissions,
                r.rerouted,
                r.cancels,
                r.acks_affinity,
                r.in_dialog,
                r.mgcp_stateless,
                r.mgcp_retransmissions
            ),
        );
        line(
            "answered",
            format!(
                "{} OPTIONS, {} 405/501, {} no transaction (481/515/500), {} forged tags (481/515), {} malformed (400/510), {} too large (513), {} overload (503/403/409), {} MGCP by the dispatcher",
                r.options_answered,
                r.rejected_method,
                r.no_transaction,
                r.bad_tag,
                r.bad_request,
                r.too_large,
                r.overload,
                r.mgcp_answered
            ),
        );
        line(
            "dropped",
            format!(
                "{} keep-alives, {} responses, {} unparseable, {} ACKs absorbed, {} replies too large, {} queue full, {} for removed processors",
                r.dropped_empty,
                r.dropped_response,
                r.dropped_unparseable,
                r.dropped_ack,
                r.dropped_reply_too_large,
                r.queue_full,
                r.dropped_removed
            ),
        );
        let total: u64 = self.router.forwarded_per_processor.iter().sum();
        let shares: Vec<String> = self
            .router
            .forwarded_per_processor
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let pct = if total > 0 {
                    100.0 * n as f64 / total as f64
                } else {
                    0.0
                };
                format!("#{k} {n} ({pct:.1}%)")
            })
            .collect();
        let mut shares = if shares.is_empty() {
            "none".to_string()
        } else {
            shares.join("  ")
        };
        let refused: u64 = self
            .processors
            .iter()
            .filter_map(|p| p.stats.map(|s| s.sip.overload_503))
            .sum();
        if refused > 0 {
            let _ = write!(
                shares,
                "; {refused} INVITEs refused 503 at --max-pending-invites"
            );
        }
        line("processors", shares);
        if let Some(l) = &self.lan {
            line(
                "remote",
                format!(
                    "{} load reports, {} refused, {} went down",
                    l.reports,
                    l.rejected_auth + l.rejected_malformed + l.rejected_unknown + l.rejected_stale,
                    l.went_down
                ),
            );
        }
        let n = self.datagrams().max(1);
        line(
            "dispatcher",
            format!(
                "{:.1} ms of CPU, {:.2} µs per datagram",
                self.dispatcher_cpu_ns as f64 / 1e6,
                self.dispatcher_cpu_ns as f64 / n as f64 / 1e3
            ),
        );
        if self.dispatcher_threads.len() > 1 {
            for t in &self.dispatcher_threads {
                let queues = if t.queues.is_empty() {
                    String::new()
                } else {
                    format!(" (queues {:?})", t.queues)
                };
                line(
                    &format!("  thread {}", t.index),
                    format!(
                        "{} datagrams{queues}, {} new dialogs, {:.1} ms of CPU{}",
                        t.datagrams,
                        t.new_dialogs,
                        t.cpu_ns as f64 / 1e6,
                        if t.datagrams > 0 {
                            format!(
                                ", {:.2} µs per datagram",
                                t.cpu_ns as f64 / t.datagrams as f64 / 1e3
                            )
                        } else {
                            String::new()
                        }
                    ),
                );
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_decision_group_and_each_processors_share() {
        let mut r = ExitReport {
            backend: "xdp".into(),
            attach_mode: Some("native".into()),
            zero_copy: Some(false),
            dispatcher_cpu_ns: 2_000_000,
            ..ExitReport::default()
        };
        r.router.decisions.sip = 300;
        r.router.decisions.mgcp = 100;
        r.router.decisions.new_dialogs = 390;
        r.router.decisions.overload = 7;
        r.router.decisions.dropped_response = 3;
        r.router.forwarded_per_processor = vec![300, 100];
        r.xdp = Some(xdp_io::loader::XdpCounters {
            redirected: 400,
            passed: 5,
            dropped_not_allowed: 11,
            dropped_rate: 12,
            ..Default::default()
        });
        let text = r.summary(2.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "switchyard ran 2.0 s on the xdp backend (native attach, copy mode)"
        );
        for (label, needle) in [
            ("received", "400 datagrams: 300 SIP, 100 MGCP"),
            (
                "received",
                "XDP verdicts: 400 redirected, 5 passed, 0 malformed, 0 without a socket, 11 dropped not allowed, 12 dropped over rate",
            ),
            ("handed over", "390 new dialogs"),
            ("answered", "7 overload (503/403/409)"),
            ("dropped", "3 responses"),
            ("processors", "#0 300 (75.0%)  #1 100 (25.0%)"),
            ("dispatcher", "2.0 ms of CPU, 5.00 µs per datagram"),
        ] {
            let l = lines
                .iter()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("no {label} line in\n{text}"));
            assert!(l.contains(needle), "{l}");
            assert_eq!(l.find(char::is_alphabetic), Some(2), "labels aligned: {l}");
        }
        // Every value starts in the same column.
        for l in &lines[1..] {
            let b = l.as_bytes();
            assert!(b.len() > 15 && b[14] == b' ' && b[15] != b' ', "{l:?}");
        }
        assert!(
            !text.contains("max-pending"),
            "nothing refused, nothing said"
        );
        // INVITEs the processors refused at their pending cap are named on their line.
        let mut st = processor::thread::ProcessorStats::default();
        st.sip.overload_503 = 4;
        r.processors = (0..2)
            .map(|id| ProcessorReport {
                id,
                addr: "127.0.0.1:5070".parse().unwrap(),
                stats: Some(st),
            })
            .collect();
        let text = r.summary(2.0);
        assert!(
            text.contains(
                "#0 300 (75.0%)  #1 100 (25.0%); 8 INVITEs refused 503 at --max-pending-invites"
            ),
            "{text}"
        );
    }
}
