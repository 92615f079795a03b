//! The XDP source guard end to end on the veth testbed: `--allow-source` drops (unanswered) what
//! comes from elsewhere while listed sources get their answers, and `--source-rate` turns a
//! flood from one source into XDP drops while exempt legitimate calls all complete. The app
//! namespace gets a second address, 198.18.0.3, for the unwanted sender. Needs root and the
//! built binaries (`switchyard-bench` too): run through `cargo xtask test`; the refusal of guard
//! flags that cannot work needs neither.
mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xtask::testbed::{self, in_netns, Testbed};

/// The unwanted sender's address, added to the app side of the testbed.
const OTHER_V4: &str = "198.18.0.3";

fn add_other_address(tb: &Testbed) {
    let st = Command::new("ip")
        .args(["-n", &tb.app_ns, "addr", "add", &format!("{OTHER_V4}/24")])
        .args(["dev", &tb.app_if])
        .status()
        .expect("ip addr add");
    assert!(st.success(), "adding {OTHER_V4} to {}", tb.app_if);
}

/// A UDP socket in the app namespace bound to `ip` (any port).
fn socket_at(tb: &Testbed, ip: &str) -> UdpSocket {
    let addr: SocketAddr = match ip.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V4(a) => (a, 0).into(),
        std::net::IpAddr::V6(a) => (a, 0).into(),
    };
    in_netns(&tb.app_ns, move || UdpSocket::bind(addr))
        .unwrap()
        .unwrap_or_else(|e| panic!("binding {ip}: {e}"))
}

/// A complete out-of-dialog INVITE from `me` that an in-chassis processor answers.
fn invite(i: u32, me: SocketAddr, to: SocketAddr) -> Vec<u8> {
    format!(
        "INVITE sip:svc@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-g{i}\r\nMax-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=g{i}\r\nTo: <sip:svc@{to}>\r\nCall-ID: guard-{i}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:uac@{me}>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The first datagram `sock` receives within `wait`, as text.
fn answer(sock: &UdpSocket, wait: Duration) -> Option<String> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    sock.recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
#[ignore = "needs root, netns and the eBPF object: run `cargo xtask test`"]
fn allow_list_drops_unlisted_sources_unanswered() {
    common::require_root();
    let tb = Testbed::up(&common::tb_name("ga"), 1).expect("testbed");
    add_other_address(&tb);
    let sy = common::xdp_switchyard(&tb, &["--allow-source", "198.18.0.2/32"], "ga");
    let sip4: SocketAddr = format!("{}:5060", testbed::DISP_V4).parse().unwrap();
    let sip6: SocketAddr = format!("[{}]:5060", testbed::DISP_V6).parse().unwrap();

    // Not listed: no answer within 1 s, for IPv4 and (a v4-only list) for IPv6.
    let other = socket_at(&tb, OTHER_V4);
    other
        .send_to(&invite(1, other.local_addr().unwrap(), sip4), sip4)
        .unwrap();
    let app6 = socket_at(&tb, testbed::APP_V6);
    app6.send_to(&invite(2, app6.local_addr().unwrap(), sip6), sip6)
        .unwrap();
    assert_eq!(answer(&other, Duration::from_secs(1)), None, "unlisted v4");
    assert_eq!(
        answer(&app6, Duration::from_millis(200)),
        None,
        "v6 under a v4 list"
    );

    // Listed: the processor answers.
    let app = socket_at(&tb, testbed::APP_V4);
    app.send_to(&invite(3, app.local_addr().unwrap(), sip4), sip4)
        .unwrap();
    let got = answer(&app, Duration::from_secs(2)).expect("the listed source is answered");
    assert!(
        got.starts_with("SIP/2.0 100") || got.starts_with("SIP/2.0 200"),
        "{got}"
    );

    let stats = sy.stop();
    let x = stats.xdp.expect("xdp counters");
    assert_eq!(x.dropped_not_allowed, 2, "{x:?}");
    assert_eq!(x.dropped_rate, 0, "{x:?}");
    assert_eq!(
        stats.router.decisions.sip, 1,
        "only the listed INVITE: {stats:?}"
    );
}

#[test]
#[ignore = "needs root, netns, the eBPF object and switchyard-bench: run `cargo xtask test`"]
fn rate_limit_drops_a_flood_and_spares_exempt_calls() {
    common::require_root();
    const RATE: u64 = 100;
    const BURST: u64 = 100;
    const FLOOD: u32 = 50_000;
    let tb = Testbed::up(&common::tb_name("gr"), 1).expect("testbed");
    add_other_address(&tb);
    let sy = common::xdp_switchyard(
        &tb,
        &[
            "--source-rate",
            &RATE.to_string(),
            "--source-burst",
            &BURST.to_string(),
            "--rate-exempt",
            "198.18.0.2/32",
        ],
        "gr",
    );
    let out = std::env::temp_dir().join(format!("sy-guard-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let started = Instant::now();
    let mut gen = Testbed::exec(&tb.app_ns, common::bench_bin().to_str().unwrap())
        .args(["sip", "--target", &format!("{}:5060", testbed::DISP_V4)])
        .args(["--local-ip", testbed::APP_V4, "--hold-ms", "100", "--quiet"])
        .args(["--rate", "1000", "--duration", "3", "--timeout-ms", "4000"])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting switchyard-bench");

    // The flood: distinct INVITEs from one source, as fast as the socket takes them, bounded
    // in count and in time.
    std::thread::sleep(Duration::from_millis(300));
    let flood = socket_at(&tb, OTHER_V4);
    let me = flood.local_addr().unwrap();
    let to: SocketAddr = format!("{}:5060", testbed::DISP_V4).parse().unwrap();
    let t0 = Instant::now();
    let mut sent = 0u64;
    for i in 0..FLOOD {
        if t0.elapsed() > Duration::from_secs(5) {
            break;
        }
        if flood.send_to(&invite(100_000 + i, me, to), to).is_ok() {
            sent += 1;
        }
    }
    let flood_s = t0.elapsed().as_secs_f64();

    let status = gen.wait().expect("waiting for switchyard-bench");
    std::thread::sleep(Duration::from_millis(300));
    let run_s = started.elapsed().as_secs_f64();
    let stats = sy.stop();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("bench summary.json"),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&out);
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let completed = n(&summary["completed_calls"]);
    let failed = n(&summary["failed_calls"]);
    // ACK and BYE go to the processor's Contact port: what the legitimate side sends to the
    // well-known port is its INVITEs, with their retransmissions.
    let legit = n(&summary["offered_calls"]) + n(&summary["retransmissions"]["invite"]);
    let x = stats.xdp.expect("xdp counters");
    let sip = stats.router.decisions.sip;
    eprintln!(
        "flood: {sent} INVITEs in {flood_s:.2} s ({:.0}/s), {} dropped over rate ({:.1}%); legit: {completed} calls completed, {failed} failed, {legit} INVITEs; router sip {sip}; xdp {x:?}",
        sent as f64 / flood_s,
        x.dropped_rate,
        100.0 * x.dropped_rate as f64 / sent.max(1) as f64
    );
    assert!(status.success(), "switchyard-bench exited with {status}");
    assert!(
        completed >= 2900,
        "{completed} legitimate calls completed (1,000/s for 3 s)"
    );
    assert_eq!(failed, 0, "legitimate (exempt) calls failed: {summary}");
    assert_eq!(x.dropped_not_allowed, 0, "{x:?}");
    assert!(
        x.dropped_rate * 10 >= sent * 9,
        "{} of {sent} flood datagrams dropped over rate",
        x.dropped_rate
    );
    // What reached the router: the legitimate INVITEs, plus the flood's bucket (the burst,
    // then the rate while the flood lasted), plus slack for timing and the CPUs' benign race.
    let bound = legit + BURST + (RATE as f64 * (flood_s + 0.1)).ceil() as u64 + 20;
    assert!(
        sip <= bound,
        "router saw {sip} SIP datagrams, bound {bound}"
    );
    assert!(run_s < 30.0, "took {run_s:.1} s");
}

/// Guard flags that cannot do what they say are refused at start, with the reason (no root
/// needed: nothing gets as far as loading the program).
#[test]
fn guard_flags_that_cannot_work_are_refused() {
    for (args, why) in [
        (
            &["--allow-source", "198.18.0.2/24"][..],
            "has host bits set beyond /24; did you mean 198.18.0.0/24?",
        ),
        (
            &["--allow-source", "198.18.0.0/33"][..],
            "longer than an IPv4 address",
        ),
        (
            &["--rate-exempt", "host.example"][..],
            "is not an IPv4 or IPv6 address",
        ),
        (
            &["--source-burst", "5"][..],
            "--source-burst needs --source-rate",
        ),
        (
            &["--rate-exempt", "::1"][..],
            "--rate-exempt needs --source-rate",
        ),
        (
            &["--allow-source", "10.0.0.0/8"][..],
            "enforced by the XDP program: use --backend xdp",
        ),
        (&["--source-rate", "10"][..], "enforced by the XDP program"),
    ] {
        let out = Command::new(common::switchyard_bin())
            .args(["run", "--backend", "udp", "--log-level", "error"])
            .args([
                "--sip",
                "127.0.0.1:0",
                "--mgcp",
                "127.0.0.1:1",
                "--processors",
                "0",
            ])
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .output()
            .expect("running switchyard");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// The allow-list is map contents: a reload (SIGHUP after editing the file) changes who is
/// answered, without reloading the XDP program or restarting anything.
#[test]
#[ignore = "needs root, netns and the eBPF object: run `cargo xtask test`"]
fn a_reload_changes_the_allow_list_in_place() {
    common::require_root();
    let tb = Testbed::up(&common::tb_name("gl"), 1).expect("testbed");
    add_other_address(&tb);
    let dir = std::env::temp_dir().join(format!("sy-guard-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switchyard.toml");
    let sock = dir.join("ctl.sock");
    std::fs::write(&file, format!("allow-source = [\"{OTHER_V4}/32\"]\n")).unwrap();
    let sy = common::xdp_switchyard(
        &tb,
        &[
            "--config",
            file.to_str().unwrap(),
            "--ctl-socket",
            sock.to_str().unwrap(),
        ],
        "gl",
    );
    let sip4: SocketAddr = format!("{}:5060", testbed::DISP_V4).parse().unwrap();
    let app = socket_at(&tb, testbed::APP_V4);
    let other = socket_at(&tb, OTHER_V4);
    let me = app.local_addr().unwrap();
    app.send_to(&invite(1, me, sip4), sip4).unwrap();
    assert_eq!(answer(&app, Duration::from_secs(1)), None, "not listed yet");

    std::fs::write(&file, "allow-source = [\"198.18.0.2/32\"]\n").unwrap();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(sy.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 2;
    let got = loop {
        app.send_to(&invite(i, me, sip4), sip4).unwrap();
        if let Some(a) = answer(&app, Duration::from_millis(300)) {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "still not answered after the reload"
        );
        i += 1;
    };
    assert!(
        got.starts_with("SIP/2.0 1") || got.starts_with("SIP/2.0 200"),
        "{got}"
    );
    other
        .send_to(&invite(100, other.local_addr().unwrap(), sip4), sip4)
        .unwrap();
    assert_eq!(
        answer(&other, Duration::from_secs(1)),
        None,
        "no longer listed"
    );
    let stats = sy.stop();
    let x = stats.xdp.expect("xdp counters");
    assert_eq!(x.dropped_not_allowed, u64::from(i), "{x:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
