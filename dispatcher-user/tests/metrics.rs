//! `/metrics`: a rich [`Status`] rendered, served over loopback by the real server, and
//! passed through `promtool check metrics` (Debian package `prometheus`; `cargo xtask setup`
//! installs it). Needs no root: it runs in every `cargo test`.
use std::sync::Arc;

use dispatcher_user::{
    lan::LanStats,
    metrics::{self, MetricsServer},
    pool::{Admin, Kind},
    status::{ProcessorStatus, Reloads, State, Status, StatusCell},
};
use xdp_io::loader::XdpCounters;

fn processor(id: u16, kind: Kind, admin: Admin, alive: bool) -> ProcessorStatus {
    let units_in_use = u64::from(id) * 3;
    let pending = u32::from(id % 2);
    ProcessorStatus {
        id,
        addr: format!("192.0.2.{}:{}", id + 1, 5070 + id).parse().unwrap(),
        kind,
        admin,
        alive,
        state: State::of(admin, alive, units_in_use, pending),
        units_in_use,
        capacity: 500,
        weight: u32::from(id) + 1,
        pending_invites: pending,
        forwarded: 1000 + u64::from(id),
        new_dialogs: 100 + u64::from(id),
        last_heard_ms: (id != 4).then_some(40 * u64::from(id)),
    }
}

/// Every field non-zero and distinct where it can be, every state present.
fn rich() -> Status {
    let mut s = Status {
        backend: "xdp".into(),
        uptime_s: 3723.5,
        rx: 987_654,
        dispatcher_cpu_ns: 12_345_678_901,
        processors: vec![
            processor(0, Kind::Local, Admin::Active, true),
            processor(1, Kind::Local, Admin::Active, false),
            processor(2, Kind::Remote, Admin::Draining, true),
            processor(3, Kind::Remote, Admin::Disabled, true),
            processor(4, Kind::Remote, Admin::Draining, false),
        ],
        xdp: Some(XdpCounters {
            redirected: 900_000,
            passed: 1_200,
            malformed: 3,
            no_socket: 4,
            dropped_not_allowed: 55,
            dropped_rate: 66,
        }),
        lan: Some(LanStats {
            reports: 7000,
            rejected_auth: 1,
            rejected_malformed: 2,
            rejected_unknown: 3,
            rejected_stale: 4,
            probes_sent: 50,
            probe_answers: 49,
            went_down: 1,
            came_up: 3,
            probes_failed: 4,
        }),
        reloads: Reloads { ok: 3, failed: 1 },
        ..Status::default()
    };
    // processor 4 holds nothing: drained.
    s.processors[4].units_in_use = 0;
    s.processors[4].pending_invites = 0;
    s.processors[4].state = State::of(Admin::Draining, false, 0, 0);
    let r = &mut s.router;
    let mut n = 0u64;
    for f in [
        &mut r.sip,
        &mut r.mgcp,
        &mut r.bytes,
        &mut r.new_dialogs,
        &mut r.retransmissions,
        &mut r.rerouted,
        &mut r.cancels,
        &mut r.acks_affinity,
        &mut r.in_dialog,
        &mut r.options_answered,
        &mut r.rejected_method,
        &mut r.no_transaction,
        &mut r.bad_tag,
        &mut r.bad_request,
        &mut r.too_large,
        &mut r.overload,
        &mut r.queue_full,
        &mut r.dropped_empty,
        &mut r.dropped_response,
        &mut r.dropped_unparseable,
        &mut r.dropped_ack,
        &mut r.dropped_reply_too_large,
        &mut r.mgcp_stateless,
        &mut r.mgcp_retransmissions,
        &mut r.mgcp_answered,
    ] {
        n += 1;
        *f = 10_000 + n;
    }
    s.links.push_failed = 5;
    s.links.lan_sent = 4321;
    s.links.lan_errors = 6;
    s
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "{line:?} missing in\n{text}"
    );
}

#[test]
fn rich_status_renders_every_metric() {
    let s = rich();
    let t = metrics::render(&s);
    has(&t, "switchyard_received_total 987654");
    has(
        &t,
        &format!("switchyard_received_bytes_total {}", s.router.bytes),
    );
    has(&t, "switchyard_dispatcher_cpu_seconds_total 12.345678901");
    has(&t, "switchyard_uptime_seconds 3723.5");
    has(&t, "switchyard_config_reloads_total{result=\"ok\"} 3");
    has(&t, "switchyard_config_reloads_total{result=\"failed\"} 1");
    has(&t, "switchyard_backend_info{backend=\"xdp\"} 1");
    assert!(t.contains("switchyard_build_info{version=\""), "{t}");
    for (d, v) in metrics::decisions(&s) {
        has(
            &t,
            &format!("switchyard_router_decisions_total{{decision=\"{d}\"}} {v}"),
        );
    }
    for (r, v) in metrics::drops(&s) {
        has(
            &t,
            &format!("switchyard_dropped_total{{reason=\"{r}\"}} {v}"),
        );
    }
    has(&t, "switchyard_dropped_total{reason=\"not_allowed\"} 55");
    has(&t, "switchyard_dropped_total{reason=\"rate\"} 66");
    has(
        &t,
        "switchyard_xdp_verdicts_total{verdict=\"redirected\"} 900000",
    );
    has(
        &t,
        "switchyard_xdp_verdicts_total{verdict=\"dropped_rate\"} 66",
    );
    has(&t, "switchyard_lan_reports_total 7000");
    has(&t, "switchyard_lan_went_down_total 1");
    has(&t, "switchyard_lan_came_up_total 3");
    has(&t, "switchyard_lan_probes_failed_total 4");
    has(&t, "switchyard_lan_sent_total 4321");
    for p in &s.processors {
        let id = p.id;
        has(
            &t,
            &format!(
                "switchyard_forwarded_total{{processor=\"{id}\"}} {}",
                p.forwarded
            ),
        );
        has(
            &t,
            &format!(
                "switchyard_new_dialogs_total{{processor=\"{id}\"}} {}",
                p.new_dialogs
            ),
        );
        has(
            &t,
            &format!(
                "switchyard_processor_units_in_use{{processor=\"{id}\"}} {}",
                p.units_in_use
            ),
        );
        has(
            &t,
            &format!("switchyard_processor_capacity_units{{processor=\"{id}\"}} 500"),
        );
        has(
            &t,
            &format!(
                "switchyard_processor_weight{{processor=\"{id}\"}} {}",
                p.weight
            ),
        );
        has(
            &t,
            &format!(
                "switchyard_processor_pending_invites{{processor=\"{id}\"}} {}",
                p.pending_invites
            ),
        );
        let up = u8::from(p.state == State::Up);
        has(
            &t,
            &format!("switchyard_processor_up{{processor=\"{id}\"}} {up}"),
        );
        for st in State::ALL {
            let v = u8::from(p.state == st);
            has(
                &t,
                &format!(
                    "switchyard_processor_state{{processor=\"{id}\",state=\"{}\"}} {v}",
                    st.as_str()
                ),
            );
        }
    }
    // Every state is somebody's.
    let states: Vec<State> = s.processors.iter().map(|p| p.state).collect();
    for st in State::ALL {
        assert!(states.contains(&st), "{st:?} not exercised: {states:?}");
    }
    has(
        &t,
        "switchyard_processor_info{processor=\"2\",addr=\"192.0.2.3:5072\",kind=\"remote\"} 1",
    );
    has(
        &t,
        "switchyard_processor_last_heard_age_seconds{processor=\"1\"} 0.04",
    );
    assert!(
        !t.contains("switchyard_processor_last_heard_age_seconds{processor=\"4\"}"),
        "{t}"
    );
}

#[test]
fn promtool_accepts_rich_and_empty_status() {
    metrics_http::promtool_check(&metrics::render(&rich())).unwrap();
    metrics_http::promtool_check(&metrics::render(&Status::default())).unwrap();
}

#[test]
fn served_over_http_from_the_status_cell() {
    let cell = Arc::new(StatusCell::default());
    let c = Arc::clone(&cell);
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(move || metrics::render(&c.get())),
    )
    .unwrap();
    let a = server.local_addr();
    let (code, _, body) = metrics_http::request(a, "GET", "/metrics").unwrap();
    assert_eq!(code, 200);
    has(&body, "switchyard_received_total 0");
    // A later publish shows in the next scrape.
    assert!(cell.try_publish(rich()));
    let (code, head, body) = metrics_http::request(a, "GET", "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(head.contains(metrics::CONTENT_TYPE), "{head}");
    has(&body, "switchyard_received_total 987654");
    metrics_http::promtool_check(&body).unwrap();
    server.stop();
}
