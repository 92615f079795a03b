//! `switchyard-processor --metrics-listen`: the real binary on loopback, scraped over HTTP,
//! checked with `promtool check metrics` (`cargo xtask setup` installs it), and its counters
//! equal to the `--stats-json` it writes at exit. Needs no root.
use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn scrape(addr: SocketAddr) -> Option<String> {
    match metrics_http::request(addr, "GET", "/metrics") {
        Ok((200, _, body)) => Some(body),
        _ => None,
    }
}

/// The value of the sample line starting with `series ` (`None`: absent).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn processor_serves_promtool_clean_metrics_matching_its_exit_counters() {
    let dir = std::env::temp_dir().join(format!("sy-proc-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("report.key");
    std::fs::write(&key, "metrics-test-key\n").unwrap();
    let stats = dir.join("stats.json");
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let listen = sip.local_addr().unwrap();
    drop(sip);
    let reports = UdpSocket::bind("127.0.0.1:0").unwrap();
    let metrics = free_tcp();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-processor"))
        .args([
            "--listen",
            &listen.to_string(),
            "--id",
            "2",
            "--processors",
            "4",
        ])
        .args(["--report-to", &reports.local_addr().unwrap().to_string()])
        .arg("--report-key-file")
        .arg(&key)
        .args(["--metrics-listen", &metrics.to_string(), "--capacity", "50"])
        .arg("--stats-json")
        .arg(&stats)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting switchyard-processor");
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(t) = scrape(metrics) {
            break t;
        }
        assert!(Instant::now() < deadline, "no /metrics on {metrics}");
        std::thread::sleep(Duration::from_millis(50));
    };
    metrics_http::promtool_check(&first).unwrap();
    assert_eq!(
        value(
            &first,
            "switchyard_processor_capacity_units{processor=\"2\"}"
        ),
        Some(50.0),
        "{first}"
    );

    // Three calls set up (INVITE answered 200, never ACKed: the transactions stay pending).
    let uac = UdpSocket::bind("127.0.0.1:0").unwrap();
    uac.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = uac.local_addr().unwrap();
    for i in 0..3 {
        let inv = format!(
            "INVITE sip:svc@{listen} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-m{i}\r\nMax-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=m{i}\r\nTo: <sip:svc@{listen}>\r\nCall-ID: metrics-{i}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:uac@{me}>\r\nContent-Length: 0\r\n\r\n"
        );
        uac.send_to(inv.as_bytes(), listen).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = uac.recv_from(&mut buf).expect("an answer to the INVITE");
            if buf[..n].starts_with(b"SIP/2.0 200") {
                break;
            }
        }
    }
    let started = "switchyard_processor_sip_dialogs_started_total{processor=\"2\"}";
    let live = loop {
        let t = scrape(metrics).expect("/metrics");
        if value(&t, started) == Some(3.0) {
            break t;
        }
        assert!(Instant::now() < deadline, "dialogs never showed:\n{t}");
        std::thread::sleep(Duration::from_millis(50));
    };
    metrics_http::promtool_check(&live).unwrap();
    assert_eq!(
        value(
            &live,
            "switchyard_processor_active_dialogs{processor=\"2\"}"
        ),
        Some(3.0),
        "{live}"
    );
    assert_eq!(
        value(
            &live,
            "switchyard_processor_pending_invites{processor=\"2\"}"
        ),
        Some(3.0),
        "{live}"
    );
    assert!(
        value(
            &live,
            "switchyard_processor_reports_sent_total{processor=\"2\"}"
        ) > Some(0.0),
        "{live}"
    );
    let (code, _, body) = metrics_http::request(metrics, "GET", "/health").unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    // Quiet now: what a scrape shows is what the process reports at exit. (Retransmissions of
    // the unacknowledged 200s keep `sent` moving, so compare the dialog counters.)
    let last = scrape(metrics).expect("/metrics");
    // SAFETY: signalling the child this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let exit: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    for (field, metric) in [
        ("dialogs_started", "sip_dialogs_started"),
        ("rejected", "sip_rejected"),
        ("not_found_481", "sip_not_found_481"),
    ] {
        assert_eq!(
            value(
                &last,
                &format!("switchyard_processor_{metric}_total{{processor=\"2\"}}")
            ),
            exit["sip"][field].as_f64(),
            "{field}: {last}"
        );
    }
    assert_eq!(
        value(
            &last,
            "switchyard_processor_mgcp_commands_total{processor=\"2\"}"
        ),
        exit["mgcp"]["commands"].as_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
