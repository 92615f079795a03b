//! Prometheus exposition: a small builder over `prometheus-client`, and what
//! `switchyard-processor --metrics-listen` serves.
//!
//! Why a fresh registry per scrape: the counters live elsewhere (the processor thread's
//! [`crate::thread::LiveStats`], the dispatcher's published `Status`) as plain integers, copied
//! off the hot path. A scrape builds a [`Registry`] from that copy, encodes it and drops it, so
//! nothing on the per-message path knows metrics exist. The builder is shared with the
//! dispatcher (which depends on this crate) so both binaries name and encode metrics one way.
use std::sync::atomic::{AtomicU64, Ordering};

use fabric::LoadReport;
use prometheus_client::{
    encoding::prometheus_text,
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::{Registry, Unit},
};

use crate::thread::ProcessorStats;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// The `Content-Type` of what [`Exposition::render`] produces (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// One scrape's metrics, every name prefixed `switchyard_`. Counters get `_total` appended
/// and the unit (`_seconds`, `_bytes`) before it, per the Prometheus naming conventions; each
/// `help` is the `# HELP` text (a period is appended).
pub struct Exposition {
    reg: Registry,
}

impl Default for Exposition {
    fn default() -> Self {
        Self::new()
    }
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self {
            reg: Registry::with_prefix("switchyard"),
        }
    }

    /// An exposition whose every series carries `labels` (e.g. the processor id).
    pub fn with_labels(labels: Labels) -> Self {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (std::borrow::Cow::Borrowed(k), std::borrow::Cow::Owned(v)));
        Self {
            reg: Registry::with_prefix_and_labels("switchyard", labels),
        }
    }

    /// A counter `switchyard_<name>_total`.
    pub fn counter(&mut self, name: &str, help: &str, v: u64) {
        let c: Counter<u64> = Counter::default();
        c.inc_by(v);
        self.reg.register(name, help, c);
    }

    /// A counter in `unit` (`switchyard_<name>_<unit>_total`).
    pub fn counter_in(&mut self, name: &str, help: &str, unit: Unit, v: f64) {
        let c: Counter<f64, AtomicU64> = Counter::default();
        c.inc_by(v);
        self.reg.register_with_unit(name, help, unit, c);
    }

    /// A whole-numbered counter in `unit` (bytes): `switchyard_<name>_<unit>_total`.
    pub fn counter_in_int(&mut self, name: &str, help: &str, unit: Unit, v: u64) {
        let c: Counter<u64> = Counter::default();
        c.inc_by(v);
        self.reg.register_with_unit(name, help, unit, c);
    }

    /// A gauge `switchyard_<name>`.
    pub fn gauge(&mut self, name: &str, help: &str, v: u64) {
        let g: Gauge<u64, AtomicU64> = Gauge::default();
        g.set(v);
        self.reg.register(name, help, g);
    }

    /// A gauge in `unit` (`switchyard_<name>_<unit>`).
    pub fn gauge_in(&mut self, name: &str, help: &str, unit: Unit, v: f64) {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(v);
        self.reg.register_with_unit(name, help, unit, g);
    }

    /// A labelled counter family (`switchyard_<name>_total{...}`); nothing when `rows` is empty.
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let f: Family<Labels, Counter<u64>> = Family::default();
        let mut any = false;
        for (labels, v) in rows {
            f.get_or_create(&labels).inc_by(v);
            any = true;
        }
        if any {
            self.reg.register(name, help, f);
        }
    }

    /// A labelled gauge family (`switchyard_<name>{...}`); nothing when `rows` is empty.
    pub fn gauges(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let f: Family<Labels, Gauge<u64, AtomicU64>> = Family::default();
        let mut any = false;
        for (labels, v) in rows {
            f.get_or_create(&labels).set(v);
            any = true;
        }
        if any {
            self.reg.register(name, help, f);
        }
    }

    /// A labelled gauge family in `unit` (`switchyard_<name>_<unit>{...}`); nothing when
    /// `rows` is empty.
    pub fn gauges_in(
        &mut self,
        name: &str,
        help: &str,
        unit: Unit,
        rows: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        let f: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
        let mut any = false;
        for (labels, v) in rows {
            f.get_or_create(&labels).set(v);
            any = true;
        }
        if any {
            self.reg.register_with_unit(name, help, unit, f);
        }
    }

    /// A labelled counter family in `unit` (`switchyard_<name>_<unit>_total{...}`); nothing
    /// when `rows` is empty.
    pub fn counters_in(
        &mut self,
        name: &str,
        help: &str,
        unit: Unit,
        rows: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        let f: Family<Labels, Counter<f64, AtomicU64>> = Family::default();
        let mut any = false;
        for (labels, v) in rows {
            f.get_or_create(&labels).inc_by(v);
            any = true;
        }
        if any {
            self.reg.register_with_unit(name, help, unit, f);
        }
    }

    /// An info metric `switchyard_<name>_info{labels} 1`.
    pub fn info(&mut self, name: &str, help: &str, labels: Labels) {
        self.reg.register(name, help, Info::new(labels));
    }

    /// `switchyard_build_info{version}`: which build is running.
    pub fn build_info(&mut self) {
        self.info(
            "build",
            "Switchyard build running (value 1)",
            vec![("version", env!("CARGO_PKG_VERSION").to_string())],
        );
    }

    /// The text exposition (Prometheus text format 0.0.4, [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.reg);
        out
    }
}

/// What a standalone processor shows, read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessorSnapshot {
    /// Its id.
    pub id: u16,
    /// Seconds since start.
    pub uptime_s: f64,
    /// The thread's counters (from [`crate::thread::LiveStats`]).
    pub stats: ProcessorStats,
    /// Load reports sent (each to every dispatcher).
    pub reports: u64,
    /// Load reports the kernel refused.
    pub report_send_errors: u64,
    /// Sessions active.
    pub active: u32,
    /// Units held by active sessions.
    pub units_in_use: u64,
    /// Capacity in units (0: unlimited).
    pub capacity: u32,
    /// New-INVITE transactions pending.
    pub pending_invites: u32,
    /// Units released by ended sessions, ever.
    pub released_units: u64,
    /// Units of sessions refused or failed before they started, ever.
    pub rejected_units: u64,
}

impl ProcessorSnapshot {
    /// Reads the load board's gauges into `self`.
    pub fn with_load(mut self, load: &LoadReport) -> Self {
        self.active = load.active.load(Ordering::Relaxed);
        self.units_in_use = load.in_use_units.load(Ordering::Relaxed);
        self.capacity = load.capacity_units.load(Ordering::Relaxed);
        self.pending_invites = load.pending_invites.load(Ordering::Relaxed);
        self.released_units = load.released_units.load(Ordering::Relaxed);
        self.rejected_units = load.rejected_units.load(Ordering::Relaxed);
        self
    }
}

/// The processor's exposition: every series labelled `processor="<id>"`.
pub fn render_processor(s: &ProcessorSnapshot) -> String {
    let mut e = Exposition::with_labels(vec![("processor", s.id.to_string())]);
    e.build_info();
    e.gauge_in(
        "processor_uptime",
        "Seconds since the processor started",
        Unit::Seconds,
        s.uptime_s,
    );
    e.gauge(
        "processor_active_dialogs",
        "SIP dialogs and MGCP connections active now",
        u64::from(s.active),
    );
    e.gauge(
        "processor_units_in_use",
        "Session units held by active sessions",
        s.units_in_use,
    );
    e.gauge(
        "processor_capacity_units",
        "Capacity in session units (0: unlimited)",
        u64::from(s.capacity),
    );
    e.gauge(
        "processor_pending_invites",
        "New-INVITE server transactions answered and not yet acknowledged",
        u64::from(s.pending_invites),
    );
    e.gauge(
        "processor_pending_invites_max",
        "Most new-INVITE transactions pending at once since start (high-water mark)",
        s.stats.sip.pending_invites_max,
    );
    e.counter(
        "processor_released_units",
        "Session units released by ended sessions",
        s.released_units,
    );
    e.counter(
        "processor_rejected_units",
        "Session units of sessions refused or failed before they started",
        s.rejected_units,
    );
    e.counter(
        "processor_reports_sent",
        "Load reports sent (one per interval, to every dispatcher)",
        s.reports,
    );
    e.counter(
        "processor_report_send_errors",
        "Load reports the kernel refused",
        s.report_send_errors,
    );
    let st = &s.stats;
    let io: [(&str, &str, u64); 10] = [
        (
            "processor_queue_messages",
            "Messages taken from the fabric queue (in-chassis handoffs)",
            st.queue_messages,
        ),
        (
            "processor_received",
            "Datagrams received on the processor's own socket",
            st.socket_messages,
        ),
        ("processor_sent", "Datagrams sent", st.sent),
        (
            "processor_send_errors",
            "Sends that failed (socket buffer full, unreachable)",
            st.send_errors,
        ),
        (
            "processor_receive_errors",
            "Receive errors other than would-block",
            st.recv_errors,
        ),
        (
            "processor_sleeps",
            "Times the processor thread went idle and slept",
            st.sleeps,
        ),
        (
            "processor_parks",
            "Times the processor thread parked in ppoll until woken (the same as sleeps)",
            st.parks,
        ),
        (
            "processor_wakeups",
            "Parks ended by work (the queue's eventfd or the socket), not by a timeout",
            st.wakeups,
        ),
        (
            "processor_coalesced_sleeps",
            "Timed sleeps taken under load instead of a park (--coalesce-us)",
            st.coalesced_sleeps,
        ),
        (
            "processor_syscalls",
            "System calls the processor thread made",
            st.syscalls,
        ),
    ];
    for (name, help, v) in io {
        e.counter(name, help, v);
    }
    let sip = &st.sip;
    let sip_counters: [(&str, &str, u64); 16] = [
        (
            "processor_sip_dialogs_started",
            "INVITEs accepted (dialog created)",
            sip.dialogs_started,
        ),
        (
            "processor_sip_dialogs_confirmed",
            "Dialogs whose 2xx was acknowledged",
            sip.dialogs_confirmed,
        ),
        (
            "processor_sip_dialogs_ended",
            "Dialogs ended for any reason (BYE, CANCEL, Timer H)",
            sip.dialogs_ended,
        ),
        (
            "processor_sip_timeouts",
            "Dialogs torn down because the 2xx was never acknowledged (Timer H)",
            sip.timeouts,
        ),
        (
            "processor_sip_cancels",
            "INVITEs cancelled before their final response (487 sent)",
            sip.cancels,
        ),
        (
            "processor_sip_rejected",
            "New INVITEs refused (503 or 4xx before a dialog existed)",
            sip.rejected,
        ),
        (
            "processor_sip_overload_503",
            "New INVITEs answered 503 with Retry-After because too many were pending",
            sip.overload_503,
        ),
        (
            "processor_sip_not_found_481",
            "481 responses (unknown dialog or transaction)",
            sip.not_found_481,
        ),
        (
            "processor_sip_bad_request_400",
            "400 responses to malformed requests",
            sip.bad_request_400,
        ),
        (
            "processor_sip_dropped",
            "Malformed SIP datagrams that could not be answered",
            sip.dropped,
        ),
        (
            "processor_sip_retransmissions_sent",
            "Responses retransmitted by Timer G",
            sip.retransmissions_sent,
        ),
        (
            "processor_sip_retransmissions_absorbed",
            "Request retransmissions answered from a transaction",
            sip.retransmissions_absorbed,
        ),
        (
            "processor_sip_ignored",
            "ACKs, responses and other SIP messages that needed no answer and matched nothing",
            sip.ignored,
        ),
        (
            "processor_sip_write_errors",
            "SIP responses that did not fit the output buffer",
            sip.write_errors,
        ),
        (
            "processor_sip_table_full_503",
            "SIP requests answered 503 because the fixed-size transaction or dialog table was full",
            sip.table_full_503,
        ),
        (
            "processor_sip_table_full_dropped",
            "SIP state not kept because its fixed-size table was full (lingering INVITE transaction ended early, non-INVITE answer not cached)",
            sip.table_full_dropped,
        ),
    ];
    for (name, help, v) in sip_counters {
        e.counter(name, help, v);
    }
    let m = &st.mgcp;
    let mgcp_counters: [(&str, &str, u64); 14] = [
        (
            "processor_mgcp_commands",
            "MGCP commands executed (retransmissions excluded)",
            m.commands,
        ),
        (
            "processor_mgcp_connections_created",
            "MGCP connections created by CRCX",
            m.connections_created,
        ),
        (
            "processor_mgcp_connections_deleted",
            "MGCP connections deleted by DLCX",
            m.connections_deleted,
        ),
        (
            "processor_mgcp_retransmissions_absorbed",
            "Retransmitted MGCP commands answered from the history",
            m.retransmissions_absorbed,
        ),
        (
            "processor_mgcp_retransmissions_sent",
            "MGCP final responses retransmitted while waiting for 000",
            m.retransmissions_sent,
        ),
        (
            "processor_mgcp_provisional_sent",
            "MGCP 100 provisional responses sent",
            m.provisional_sent,
        ),
        (
            "processor_mgcp_response_acks",
            "MGCP 000 response acknowledgements received",
            m.response_acks,
        ),
        (
            "processor_mgcp_errors",
            "MGCP error responses (4xx/5xx) sent",
            m.errors,
        ),
        (
            "processor_mgcp_malformed",
            "Malformed MGCP commands answered 510/511/528",
            m.malformed,
        ),
        (
            "processor_mgcp_dropped",
            "MGCP datagrams or segments dropped (no transaction id, stray responses)",
            m.dropped,
        ),
        (
            "processor_mgcp_write_errors",
            "MGCP responses that did not fit the output buffer",
            m.write_errors,
        ),
        (
            "processor_mgcp_history_full",
            "MGCP commands answered 409 without being executed: the fixed-size transaction history was full and nothing could be evicted",
            m.history_full,
        ),
        (
            "processor_mgcp_history_evicted",
            "MGCP history entries evicted, oldest first, before T-HIST to make room for a new command",
            m.history_evicted,
        ),
        (
            "processor_mgcp_connections_full",
            "MGCP CRCXs answered 502 because the fixed-size connection table was full",
            m.connections_full,
        ),
    ];
    for (name, help, v) in mgcp_counters {
        e.counter(name, help, v);
    }
    e.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_follow_the_conventions() {
        let mut e = Exposition::new();
        e.counter("x", "An x", 3);
        e.counter_in("cpu", "CPU", Unit::Seconds, 1.5);
        e.gauge("g", "A g", 7);
        e.counters("c", "Cs", [(vec![("reason", "a".to_string())], 2)]);
        e.gauges("empty", "Nothing", []);
        e.build_info();
        let t = e.render();
        for line in [
            "# HELP switchyard_x_total An x.",
            "# TYPE switchyard_x_total counter",
            "switchyard_x_total 3",
            "switchyard_cpu_seconds_total 1.5",
            "# TYPE switchyard_g gauge",
            "switchyard_g 7",
            "switchyard_c_total{reason=\"a\"} 2",
        ] {
            assert!(t.lines().any(|l| l == line), "{line:?} missing in\n{t}");
        }
        assert!(t.contains("switchyard_build_info{version=\""), "{t}");
        assert!(!t.contains("empty"), "{t}");
    }

    #[test]
    fn processor_exposition_has_its_counters() {
        let mut s = ProcessorSnapshot {
            id: 3,
            reports: 12,
            active: 5,
            units_in_use: 9,
            pending_invites: 2,
            ..ProcessorSnapshot::default()
        };
        s.stats.sip.dialogs_started = 40;
        s.stats.mgcp.commands = 8;
        s.stats.sip.table_full_503 = 6;
        s.stats.coalesced_sleeps = 11;
        s.stats.sip.table_full_dropped = 7;
        s.stats.mgcp.history_full = 4;
        s.stats.mgcp.connections_full = 1;
        s.stats.sent = 100;
        let t = render_processor(&s);
        for line in [
            "switchyard_processor_sip_dialogs_started_total{processor=\"3\"} 40",
            "switchyard_processor_mgcp_commands_total{processor=\"3\"} 8",
            "switchyard_processor_sip_table_full_503_total{processor=\"3\"} 6",
            "switchyard_processor_coalesced_sleeps_total{processor=\"3\"} 11",
            "switchyard_processor_sip_table_full_dropped_total{processor=\"3\"} 7",
            "switchyard_processor_mgcp_history_full_total{processor=\"3\"} 4",
            "switchyard_processor_mgcp_connections_full_total{processor=\"3\"} 1",
            "switchyard_processor_sent_total{processor=\"3\"} 100",
            "switchyard_processor_reports_sent_total{processor=\"3\"} 12",
            "switchyard_processor_active_dialogs{processor=\"3\"} 5",
            "switchyard_processor_units_in_use{processor=\"3\"} 9",
            "switchyard_processor_pending_invites{processor=\"3\"} 2",
        ] {
            assert!(t.lines().any(|l| l == line), "{line:?} missing in\n{t}");
        }
    }
}
