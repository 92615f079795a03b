//! `/metrics` for the dispatcher: the published [`Status`] as Prometheus text exposition.
//!
//! Why from the `Status`: the dispatcher thread already copies its counters into it every
//! publish round (see [`crate::status`]); a scrape renders that copy with a fresh registry
//! ([`processor::metrics::Exposition`]), so metrics cost the packet path nothing. Serve it
//! with [`metrics_http::MetricsServer`]:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use dispatcher_user::status::StatusCell;
//! let cell = Arc::new(StatusCell::default());
//! let c = Arc::clone(&cell);
//! let server = metrics_http::MetricsServer::start(
//!     "127.0.0.1:9464".parse().unwrap(),
//!     Arc::new(move || dispatcher_user::metrics::render(&c.get())),
//! )
//! .unwrap();
//! ```
//!
//! Every metric, its labels and meaning are listed in the README ("Metrics").
use processor::metrics::{Exposition, Labels};
use prometheus_client::registry::Unit;

use crate::{
    pool::Kind,
    status::{ProcessorStatus, State, Status},
};

pub use metrics_http::MetricsServer;
pub use processor::metrics::CONTENT_TYPE;

fn label(key: &'static str, v: impl ToString) -> Labels {
    vec![(key, v.to_string())]
}

fn per_processor<'a>(
    s: &'a Status,
    f: impl Fn(&ProcessorStatus) -> u64 + 'a,
) -> impl Iterator<Item = (Labels, u64)> + 'a {
    s.processors
        .iter()
        .map(move |p| (label("processor", p.id), f(p)))
}

/// Every routing decision, by the `decision` label value: each datagram the router handles
/// lands in exactly one of these (or in a drop reason).
pub fn decisions(s: &Status) -> [(&'static str, u64); 16] {
    let r = &s.router;
    [
        ("new_dialog", r.new_dialogs),
        ("retransmission", r.retransmissions),
        ("rerouted", r.rerouted),
        ("cancel", r.cancels),
        ("ack_affinity", r.acks_affinity),
        ("in_dialog", r.in_dialog),
        ("options_answered", r.options_answered),
        ("rejected_method", r.rejected_method),
        ("no_transaction", r.no_transaction),
        ("bad_tag", r.bad_tag),
        ("bad_request", r.bad_request),
        ("too_large", r.too_large),
        ("overload", r.overload),
        ("mgcp_stateless", r.mgcp_stateless),
        ("mgcp_retransmission", r.mgcp_retransmissions),
        ("mgcp_answered", r.mgcp_answered),
    ]
}

/// Dropped datagrams and frames, by the `reason` label value: the router's drops, the XDP
/// source guard's (xdp backend) and the handoffs the kernel or a queue refused.
pub fn drops(s: &Status) -> Vec<(&'static str, u64)> {
    let r = &s.router;
    let mut v = vec![
        ("empty", r.dropped_empty),
        ("response", r.dropped_response),
        ("unparseable", r.dropped_unparseable),
        ("ack", r.dropped_ack),
        ("reply_too_large", r.dropped_reply_too_large),
        ("push_failed", s.links.push_failed),
        ("lan_send_error", s.links.lan_errors),
    ];
    if let Some(x) = &s.xdp {
        v.push(("not_allowed", x.dropped_not_allowed));
        v.push(("rate", x.dropped_rate));
    }
    v
}

/// Renders `s` as Prometheus text format 0.0.4 ([`CONTENT_TYPE`]).
pub fn render(s: &Status) -> String {
    let mut e = Exposition::new();
    e.build_info();
    e.info(
        "backend",
        "Packet I/O backend the dispatcher runs (value 1)",
        label("backend", &s.backend),
    );
    e.gauge_in(
        "uptime",
        "Seconds since the dispatcher started",
        Unit::Seconds,
        s.uptime_s,
    );
    e.counter(
        "received",
        "Datagrams (udp backend) or frames (xdp backend) the dispatcher received",
        s.rx,
    );
    e.counter_in_int(
        "received",
        "Payload bytes of the SIP and MGCP datagrams the router handled",
        Unit::Bytes,
        s.router.bytes,
    );
    e.counters(
        "handled",
        "Datagrams the router handled, by protocol",
        [
            (label("protocol", "sip"), s.router.sip),
            (label("protocol", "mgcp"), s.router.mgcp),
        ],
    );
    e.counter_in(
        "dispatcher_cpu",
        "CPU time of the dispatcher thread",
        Unit::Seconds,
        s.dispatcher_cpu_ns as f64 / 1e9,
    );
    e.counters(
        "dispatcher_thread_datagrams",
        "Datagrams each dispatcher thread's router decided",
        s.threads
            .iter()
            .map(|t| (label("thread", t.index), t.datagrams)),
    );
    e.counters_in(
        "dispatcher_thread_cpu",
        "CPU time of each dispatcher thread",
        Unit::Seconds,
        s.threads
            .iter()
            .map(|t| (label("thread", t.index), t.cpu_ns as f64 / 1e9)),
    );
    e.counter(
        "capacity_raced",
        "Times a processor lost its last free units to another dispatcher thread and the next candidate was tried",
        s.router.capacity_raced,
    );
    e.counters(
        "router_decisions",
        "Routing decisions, one counter per decision",
        decisions(s)
            .into_iter()
            .map(|(d, v)| (label("decision", d), v)),
    );
    e.counters(
        "dropped",
        "Datagrams or frames dropped, by reason",
        drops(s).into_iter().map(|(d, v)| (label("reason", d), v)),
    );
    e.counter(
        "queue_full",
        "Handoffs that found a processor's queue full and moved on to another candidate",
        s.router.queue_full,
    );
    e.counter(
        "lan_sent",
        "Datagrams handed to the kernel for processors on other hosts",
        s.links.lan_sent,
    );
    e.counters(
        "config_reloads",
        "Configuration reloads, by result (failed: refused, the previous configuration kept running)",
        [
            (label("result", "ok"), s.reloads.ok),
            (label("result", "failed"), s.reloads.failed),
        ],
    );
    if let Some(x) = &s.xdp {
        e.counters(
            "xdp_verdicts",
            "Frames the XDP program saw, by verdict (each frame lands in exactly one)",
            [
                ("redirected", x.redirected),
                ("passed", x.passed),
                ("malformed", x.malformed),
                ("no_socket", x.no_socket),
                ("dropped_not_allowed", x.dropped_not_allowed),
                ("dropped_rate", x.dropped_rate),
            ]
            .into_iter()
            .map(|(d, v)| (label("verdict", d), v)),
        );
    }
    if let Some(l) = &s.lan {
        let lan: [(&str, &str, u64); 10] = [
            ("lan_reports", "Load reports accepted from processors on other hosts", l.reports),
            (
                "lan_reports_rejected_auth",
                "Load reports whose tag did not verify (wrong key or tampered)",
                l.rejected_auth,
            ),
            (
                "lan_reports_rejected_malformed",
                "Datagrams on the report port that are not a report of this version",
                l.rejected_malformed,
            ),
            (
                "lan_reports_rejected_unknown",
                "Valid reports from an address that is not a configured processor, or with the wrong id",
                l.rejected_unknown,
            ),
            (
                "lan_reports_rejected_stale",
                "Reports with a sequence number not above the last one (replays, reordering)",
                l.rejected_stale,
            ),
            ("lan_probes_sent", "OPTIONS probes sent to processors on other hosts", l.probes_sent),
            ("lan_probe_answers", "Answers to OPTIONS probes", l.probe_answers),
            (
                "lan_went_down",
                "Times a processor on another host was marked down",
                l.went_down,
            ),
            (
                "lan_came_up",
                "Times a processor on another host was marked up (first heard, or again)",
                l.came_up,
            ),
            (
                "lan_probes_failed",
                "OPTIONS probes unanswered or answered with a code outside the up codes",
                l.probes_failed,
            ),
        ];
        for (name, help, v) in lan {
            e.counter(name, help, v);
        }
    }
    render_processors(&mut e, s);
    e.render()
}

fn render_processors(e: &mut Exposition, s: &Status) {
    e.gauges(
        "processor_info",
        "Each configured processor: its address and kind (value 1)",
        s.processors.iter().map(|p| {
            let kind = match p.kind {
                Kind::Local => "local",
                Kind::Remote => "remote",
            };
            (
                vec![
                    ("processor", p.id.to_string()),
                    ("addr", p.addr.to_string()),
                    ("kind", kind.to_string()),
                ],
                1,
            )
        }),
    );
    e.gauges(
        "processor_up",
        "Whether the processor is in selection for new dialogs (state up)",
        per_processor(s, |p| u64::from(p.state == State::Up)),
    );
    e.gauges(
        "processor_healthy",
        "Whether the processor is healthy (heartbeat fresh, or up per its health mode), whatever its operator state",
        per_processor(s, |p| u64::from(p.alive)),
    );
    e.gauges(
        "processor_state",
        "The processor's state: 1 for the current one, 0 for the others",
        s.processors.iter().flat_map(|p| {
            State::ALL.into_iter().map(move |st| {
                (
                    vec![
                        ("processor", p.id.to_string()),
                        ("state", st.as_str().to_string()),
                    ],
                    u64::from(p.state == st),
                )
            })
        }),
    );
    e.gauges(
        "processor_units_in_use",
        "Session units in use on the processor",
        per_processor(s, |p| p.units_in_use),
    );
    e.gauges(
        "processor_capacity_units",
        "The processor's capacity in session units (0: unlimited)",
        per_processor(s, |p| u64::from(p.capacity)),
    );
    e.gauges(
        "processor_weight",
        "The processor's relative share of new dialogs",
        per_processor(s, |p| u64::from(p.weight)),
    );
    e.gauges(
        "processor_pending_invites",
        "New-INVITE transactions pending on the processor (local processors)",
        per_processor(s, |p| u64::from(p.pending_invites)),
    );
    e.gauges_in(
        "processor_last_heard_age",
        "Seconds since the processor's last heartbeat, load report or probe answer (absent: never heard)",
        Unit::Seconds,
        s.processors.iter().filter_map(|p| {
            p.last_heard_ms
                .map(|ms| (label("processor", p.id), ms as f64 / 1e3))
        }),
    );
    e.counters(
        "forwarded",
        "Messages handed to the processor (new dialogs, retransmissions, CANCEL, ACK, in-dialog)",
        per_processor(s, |p| p.forwarded),
    );
    e.counters(
        "new_dialogs",
        "New dialogs placed on the processor",
        per_processor(s, |p| p.new_dialogs),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Admin;

    #[test]
    fn renders_processor_series_and_every_decision() {
        let mut s = Status {
            backend: "udp".into(),
            rx: 10,
            ..Status::default()
        };
        s.router.new_dialogs = 4;
        s.router.mgcp_answered = 2;
        s.processors.push(ProcessorStatus {
            id: 7,
            addr: "10.0.0.7:5070".parse().unwrap(),
            kind: Kind::Remote,
            admin: Admin::Draining,
            alive: true,
            state: State::Draining,
            units_in_use: 3,
            capacity: 100,
            weight: 2,
            pending_invites: 1,
            forwarded: 55,
            new_dialogs: 4,
            last_heard_ms: Some(250),
        });
        for (index, datagrams) in [(0, 6), (1, 4)] {
            s.threads.push(crate::status::ThreadStatus {
                index,
                datagrams,
                cpu_ns: 500_000_000,
                ..Default::default()
            });
        }
        let t = render(&s);
        for line in [
            "switchyard_dispatcher_thread_datagrams_total{thread=\"0\"} 6",
            "switchyard_dispatcher_thread_datagrams_total{thread=\"1\"} 4",
            "switchyard_dispatcher_thread_cpu_seconds_total{thread=\"1\"} 0.5",
            "switchyard_received_total 10",
            "switchyard_processor_up{processor=\"7\"} 0",
            "switchyard_processor_healthy{processor=\"7\"} 1",
            "switchyard_processor_state{processor=\"7\",state=\"draining\"} 1",
            "switchyard_processor_state{processor=\"7\",state=\"up\"} 0",
            "switchyard_processor_weight{processor=\"7\"} 2",
            "switchyard_processor_last_heard_age_seconds{processor=\"7\"} 0.25",
            "switchyard_forwarded_total{processor=\"7\"} 55",
            "switchyard_processor_info{processor=\"7\",addr=\"10.0.0.7:5070\",kind=\"remote\"} 1",
            "switchyard_router_decisions_total{decision=\"new_dialog\"} 4",
            "switchyard_router_decisions_total{decision=\"mgcp_answered\"} 2",
            "switchyard_config_reloads_total{result=\"failed\"} 0",
        ] {
            assert!(t.lines().any(|l| l == line), "{line:?} missing in\n{t}");
        }
        let decisions = t
            .lines()
            .filter(|l| l.starts_with("switchyard_router_decisions_total{"))
            .count();
        assert_eq!(decisions, 16);
        // No XDP counters or LAN monitor on this Status: no such series.
        assert!(!t.contains("switchyard_xdp_verdicts_total"), "{t}");
        assert!(!t.contains("switchyard_lan_reports_total"), "{t}");
        assert!(!t.contains("reason=\"rate\""), "{t}");
    }
}
