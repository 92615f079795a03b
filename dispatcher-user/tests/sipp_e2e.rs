//! SIP dispatch end to end with a real peer: SIPp (Debian `sip-tester`) as the application
//! server's UAC, Switchyard with in-chassis processor threads as the far end.
//!
//! - UDP backend on loopback and XDP backend on the testbed veth;
//! - `testdata/sipp/uac-follow-contact.xml` (ACK and BYE go to the Contact = a processor port)
//!   and SIPp's built-in `-sn uac` (ACK and BYE go to the well-known port and are routed by the
//!   processor id in the To-tag);
//! - ≥ 2,000 calls, 0 failed, 0 unexpected messages; on the veth a capture (tshark) shows the
//!   ACK/BYE of the first scenario going to processor ports and the 200s coming from them;
//! - overload: capped processors, excess INVITEs get 503 with Retry-After, none times out.
mod common;

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xtask::testbed::{self, Testbed};

const CALLS: u64 = 2000;

/// `testdata/sipp/uac-follow-contact.xml`, checked in with the repository.
fn follow_contact() -> PathBuf {
    let p = Path::new(common::TESTDATA).join("sipp/uac-follow-contact.xml");
    assert!(p.exists(), "SIPp scenario missing: {}", p.display());
    p
}

/// Runs SIPp to completion (bounded by -timeout); returns its exit status and the stats file.
fn run_sipp(mut cmd: Command, tag: &str) -> (std::process::ExitStatus, PathBuf) {
    let dir = std::env::temp_dir().join(format!("sy-sipp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let stf = dir.join("stats.csv");
    cmd.current_dir(&dir)
        .args(["-m", &CALLS.to_string(), "-r", "400", "-l", "400"])
        .args([
            "-buff_size",
            "4194304",
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
        ])
        .args(["-trace_stat", "-fd", "1", "-trace_err"])
        .arg("-stf")
        .arg(&stf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = cmd.status().expect("running sipp");
    (status, stf)
}

fn assert_sipp_clean(status: std::process::ExitStatus, stf: &Path, what: &str) {
    let (ok, failed, unexpected) = common::sipp_totals(stf);
    let errs = std::fs::read_dir(stf.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        status.success() && ok == CALLS && failed == 0 && unexpected == 0,
        "{what}: sipp {status}, {ok} successful, {failed} failed, {unexpected} unexpected\n{}",
        errs.lines().take(30).collect::<Vec<_>>().join("\n")
    );
}

#[test]
#[ignore = "needs SIPp (cargo xtask setup): run `cargo xtask test`"]
fn sipp_follow_contact_over_udp_backend() {
    common::require_sipp();
    let scenario = follow_contact();
    let (sy, ports) = common::udp_switchyard(&[], "fc-udp");
    let (sip, procs) = (ports.sip, ports.procs);
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(&scenario)
        .arg(format!("127.0.0.1:{sip}"))
        .args(["-i", "127.0.0.1"]);
    let (status, stf) = run_sipp(cmd, "fc-udp");
    let stats = sy.stop();
    assert_sipp_clean(status, &stf, "follow-contact over udp");
    let r = &stats.router.decisions;
    assert_eq!(r.new_dialogs, CALLS, "{stats:?}");
    assert_eq!(
        r.in_dialog, 0,
        "ACK/BYE must bypass the dispatcher: {stats:?}"
    );
    let byes: u64 = stats
        .processors
        .iter()
        .map(|p| p.stats.expect("processor thread ran").sip.dialogs_ended)
        .sum();
    assert_eq!(
        byes, CALLS,
        "every BYE reached a processor port {procs}..: {stats:?}"
    );
}

#[test]
#[ignore = "needs SIPp (cargo xtask setup): run `cargo xtask test`"]
fn sipp_builtin_uac_over_udp_backend() {
    common::require_sipp();
    let (sy, ports) = common::udp_switchyard(&[], "uac-udp");
    let sip = ports.sip;
    let mut cmd = Command::new("sipp");
    cmd.args(["-sn", "uac"])
        .arg(format!("127.0.0.1:{sip}"))
        .args(["-i", "127.0.0.1"]);
    let (status, stf) = run_sipp(cmd, "uac-udp");
    let stats = sy.stop();
    assert_sipp_clean(status, &stf, "built-in uac over udp");
    let r = &stats.router.decisions;
    assert_eq!(r.new_dialogs, CALLS, "{stats:?}");
    // ACK and BYE of every call came to the well-known port and were routed by To-tag.
    assert_eq!(r.in_dialog, 2 * CALLS, "{stats:?}");
}

#[test]
#[ignore = "needs root, netns, SIPp and tshark: run `cargo xtask test`"]
fn sipp_over_xdp_backend_with_capture() {
    common::require_root();
    common::require_sipp();
    let tb = Testbed::up(&common::tb_name("sx"), 1).expect("testbed");
    let scenario = follow_contact();

    // Scenario 1: follow Contact, with a capture on the application server's side.
    let sy = common::xdp_switchyard(&tb, &[], "sx1");
    let cap = common::Capture::start(&tb.app_ns, &tb.app_if, "sx1");
    let mut cmd = Testbed::exec(&tb.app_ns, "sipp");
    cmd.arg("-sf")
        .arg(&scenario)
        .arg(format!("{}:5060", testbed::DISP_V4))
        .args(["-i", testbed::APP_V4, "-p", "5060"]);
    let (status, stf) = run_sipp(cmd, "sx1");
    let pcap = cap.stop();
    let stats = sy.stop();
    assert_sipp_clean(status, &stf, "follow-contact over xdp");
    assert_eq!(stats.router.decisions.new_dialogs, CALLS, "{stats:?}");
    assert_eq!(stats.router.decisions.in_dialog, 0, "{stats:?}");
    assert_eq!(
        stats.afxdp.unwrap().rings.rx_frames,
        CALLS,
        "only the INVITEs reach the AF_XDP socket: {stats:?}"
    );

    let processor_ports = ["5070", "5071"];
    let acks_byes = common::tshark_fields(
        &pcap,
        "sip.Method == \"ACK\" || sip.Method == \"BYE\"",
        &["udp.dstport"],
    );
    assert_eq!(
        acks_byes.len(),
        2 * CALLS as usize,
        "capture holds every ACK and BYE"
    );
    assert!(
        acks_byes
            .iter()
            .all(|r| processor_ports.contains(&r[0].as_str())),
        "an ACK/BYE went somewhere other than a processor port"
    );
    let invites = common::tshark_fields(&pcap, "sip.Method == \"INVITE\"", &["udp.dstport"]);
    assert!(invites.iter().all(|r| r[0] == "5060") && invites.len() >= CALLS as usize);
    let oks = common::tshark_fields(
        &pcap,
        "sip.Status-Code == 200 && sip.CSeq.method == \"INVITE\"",
        &["udp.srcport"],
    );
    assert!(oks.len() >= CALLS as usize);
    assert!(
        oks.iter().all(|r| processor_ports.contains(&r[0].as_str())),
        "a 200 OK did not come straight from a processor port"
    );
    let malformed = common::tshark_fields(
        &pcap,
        "_ws.malformed || _ws.expert.severity >= 8388608",
        &["frame.number"],
    );
    assert!(
        malformed.is_empty(),
        "tshark found malformed packets: {malformed:?}"
    );
    let _ = std::fs::remove_file(&pcap);

    // Scenario 2: built-in UAC, ACK/BYE to the well-known port, over AF_XDP, with keyed tags
    // (--tag-key-file): every in-dialog request must still find its processor.
    let key = std::env::temp_dir().join(format!("sy-sipp-tagkey-{}", std::process::id()));
    std::fs::write(&key, b"sipp e2e tag secret\n").unwrap();
    let key_arg = key.to_str().unwrap().to_owned();
    let sy = common::xdp_switchyard(&tb, &["--tag-key-file", &key_arg], "sx2");
    let mut cmd = Testbed::exec(&tb.app_ns, "sipp");
    cmd.args(["-sn", "uac"])
        .arg(format!("{}:5060", testbed::DISP_V4))
        .args(["-i", testbed::APP_V4, "-p", "5060"]);
    let (status, stf) = run_sipp(cmd, "sx2");
    let stats = sy.stop();
    let _ = std::fs::remove_file(&key);
    assert_sipp_clean(status, &stf, "built-in uac over xdp");
    assert_eq!(stats.router.decisions.in_dialog, 2 * CALLS, "{stats:?}");
    assert_eq!(stats.router.decisions.no_transaction, 0, "{stats:?}");
    assert_eq!(
        stats.router.decisions.bad_tag, 0,
        "every minted tag verified: {stats:?}"
    );
}

#[test]
fn overload_gets_503_with_retry_after_and_nothing_times_out() {
    // 2 processors × 10 units, calls never hang up: exactly 20 dialogs fit.
    let (sy, ports) =
        common::udp_switchyard_logged(&["--capacity", "10", "--retry-after", "7"], "ovl");
    let sip = ports.sip;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    const N: usize = 60;
    for i in 0..N {
        let msg = format!(
            "INVITE sip:svc@127.0.0.1:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ovl{i}\r\nMax-Forwards: 70\r\nFrom: <sip:ovl@{me}>;tag=ovl{i}\r\nTo: <sip:svc@127.0.0.1>\r\nCall-ID: ovl-{i}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:ovl@{me}>\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), ("127.0.0.1", sip)).unwrap();
    }
    // Collect final answers per Call-ID until every INVITE has one (or 5 s pass).
    let mut finals = std::collections::HashMap::<String, String>::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while finals.len() < N && Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let code: u16 = text[8..11].parse().unwrap();
        if code < 200 {
            continue;
        }
        let call = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap()
            .trim()
            .to_owned();
        if code == 503 {
            assert!(
                text.contains("\r\nRetry-After: 7\r\n"),
                "503 without Retry-After: {text}"
            );
        }
        finals.insert(call, text);
    }
    let (stats, stderr) = sy.stop_with_stderr();
    // Started without --tag-key-file: the operator is told.
    assert!(
        stderr.contains("tags are not authenticated"),
        "no unkeyed warning: {stderr}"
    );
    assert_eq!(
        finals.len(),
        N,
        "every INVITE got a final answer (no timeouts): {stats:?}"
    );
    let ok = finals
        .values()
        .filter(|t| t.starts_with("SIP/2.0 200"))
        .count();
    let busy = finals
        .values()
        .filter(|t| t.starts_with("SIP/2.0 503"))
        .count();
    assert_eq!((ok, busy), (20, N - 20), "{stats:?}");
    assert_eq!(stats.router.decisions.overload, (N - 20) as u64);
}

/// Reads datagrams on `sock` until one starts with `prefix` (5 s at most).
fn recv_starting(sock: &UdpSocket, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with(prefix) {
            return text;
        }
    }
    panic!("no {prefix:?} within 5 s");
}

#[test]
fn forged_to_tag_bye_gets_481_and_reaches_no_processor() {
    // A keyed deployment: one real call, then BYEs whose To-tag has the processor-tag format
    // but a MAC the dispatcher's key does not produce, sent to the well-known port.
    let key = std::env::temp_dir().join(format!("sy-forged-tagkey-{}", std::process::id()));
    std::fs::write(&key, b"forged tag e2e secret\n").unwrap();
    let key_arg = key.to_str().unwrap().to_owned();
    let (sy, ports) = common::udp_switchyard_logged(&["--tag-key-file", &key_arg], "forged");
    let sip = ports.sip;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let req = |method: &str, branch: &str, to_tag: &str, cseq: u32| {
        format!(
            "{method} sip:svc@127.0.0.1:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{branch}\r\nMax-Forwards: 70\r\nFrom: <sip:fg@{me}>;tag=fg1\r\nTo: <sip:svc@127.0.0.1>{to_tag}\r\nCall-ID: forged-1@test\r\nCSeq: {cseq} {method}\r\nContact: <sip:fg@{me}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    sock.send_to(req("INVITE", "inv", "", 1).as_bytes(), ("127.0.0.1", sip))
        .unwrap();
    let ok = recv_starting(&sock, "SIP/2.0 200");
    let tag = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split(";tag=").nth(1))
        .expect("200 carries a To-tag")
        .trim()
        .to_owned();
    assert_eq!(tag.len(), wire::tag::TAG_LEN, "{tag}");
    sock.send_to(
        req("ACK", "ack", &format!(";tag={tag}"), 1).as_bytes(),
        ("127.0.0.1", sip),
    )
    .unwrap();
    // Forgeries: the same id and nonce under another key, and the real tag naming the other
    // processor (id changed, MAC kept).
    let id: u16 = u16::from_str_radix(&tag[..4], 16).unwrap();
    let nonce = u64::from_str_radix(&tag[4..16], 16).unwrap();
    let mut other_key = [0u8; wire::tag::TAG_LEN];
    let wrong = processor::deploy::tag_key(b"not the deployment's secret");
    wire::tag::encode(&wrong, id, nonce, &mut other_key).unwrap();
    let other_key = String::from_utf8(other_key.to_vec()).unwrap();
    let other_id = format!("{:04x}{}", 1 - id, &tag[4..]);
    for (i, forged) in [other_key, other_id].iter().enumerate() {
        sock.send_to(
            req("BYE", &format!("forged{i}"), &format!(";tag={forged}"), 2).as_bytes(),
            ("127.0.0.1", sip),
        )
        .unwrap();
        let r = recv_starting(&sock, "SIP/2.0 ");
        assert!(r.starts_with("SIP/2.0 481 "), "{forged}: {r}");
    }
    // The real BYE still ends the call at its processor.
    sock.send_to(
        req("BYE", "bye", &format!(";tag={tag}"), 2).as_bytes(),
        ("127.0.0.1", sip),
    )
    .unwrap();
    let r = recv_starting(&sock, "SIP/2.0 ");
    assert!(
        r.starts_with("SIP/2.0 200 ") && r.contains("CSeq: 2 BYE"),
        "{r}"
    );
    let (stats, stderr) = sy.stop_with_stderr();
    let _ = std::fs::remove_file(&key);
    let d = &stats.router.decisions;
    assert_eq!(d.bad_tag, 2, "{stats:?}");
    assert_eq!((d.new_dialogs, d.in_dialog, d.no_transaction), (1, 2, 0));
    assert_eq!(
        stats.router.forwarded_per_processor.iter().sum::<u64>(),
        3,
        "INVITE, ACK and the real BYE only: {stats:?}"
    );
    assert!(!stderr.contains("tags are not authenticated"), "{stderr}");
}
