//! Processors on other hosts (claims 4 and 12): a dispatcher forwarding over the LAN to
//! `switchyard-processor` processes, load reports over UDP with a shared key, and failure
//! detection. Hosts are network namespaces on a bridge (`xtask::testbed::LanTestbed`).
mod common;

use std::{
    collections::HashMap,
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::Switchyard;
use processor::report::{Report, ReportKey};
use xtask::testbed::{self, in_netns, LanTestbed, PROC_V4};

fn key_file(tag: &str, key: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("sy-key-{tag}-{}", std::process::id()));
    std::fs::write(&p, key).unwrap();
    p
}

fn start_processor(ns: &str, ip: &str, id: u16, key: &Path) -> common::Proc {
    let child = LanTestbed::exec_in(ns, common::processor_bin().to_str().unwrap())
        .args([
            "--listen",
            &format!("{ip}:5070"),
            "--id",
            &id.to_string(),
            "--processors",
            "2",
        ])
        .args([
            "--report-to",
            &format!("{}:5062", testbed::DISP_V4),
            "--report-interval-ms",
            "100",
        ])
        .arg("--report-key-file")
        .arg(key)
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting switchyard-processor");
    common::Proc(child)
}

fn start_dispatcher(tb: &LanTestbed, backend: &str, key: &Path, tag: &str) -> Switchyard {
    let mut cmd = LanTestbed::exec_in(&tb.disp_ns, common::switchyard_bin().to_str().unwrap());
    cmd.args(["run", "--backend", backend, "--log-level", "warn"])
        .args(["--sip", &format!("{}:5060", testbed::DISP_V4)])
        .args(["--mgcp", &format!("{}:2427", testbed::DISP_V4)])
        .args(["--processors", "0"])
        .args(["--remote-processor", &format!("{}:5070", PROC_V4[0])])
        .args(["--remote-processor", &format!("{}:5070", PROC_V4[1])])
        .args(["--report-listen", &format!("{}:5062", testbed::DISP_V4)])
        .arg("--report-key-file")
        .arg(key);
    if backend == "xdp" {
        cmd.args(["--iface", "eth0"]);
    }
    let mut sy = Switchyard::start(cmd, tag);
    if backend == "xdp" {
        sy.wait_until("attach", || {
            tb.disp_link_details().unwrap().contains("prog/xdp")
        });
    }
    // Processors report every 100 ms; give them a few rounds to be in selection.
    std::thread::sleep(Duration::from_millis(800));
    sy
}

fn capture(ns: &str, tag: &str) -> common::Capture {
    common::Capture::start(ns, "eth0", tag)
}

#[test]
#[ignore = "needs root, netns, SIPp and tshark: run `cargo xtask test`"]
fn sipp_through_the_dispatcher_to_processors_on_other_hosts() {
    common::require_root();
    let tb = LanTestbed::up(&common::tb_name("ln")).expect("LAN testbed");
    let key = key_file("ln", "lan-test-key\n");
    let _p1 = start_processor(&tb.proc_ns[0], PROC_V4[0], 0, &key);
    let _p2 = start_processor(&tb.proc_ns[1], PROC_V4[1], 1, &key);
    let sy = start_dispatcher(&tb, "xdp", &key, "ln");
    let cap = capture(&tb.app_ns, "ln");
    let dir = std::env::temp_dir().join(format!("sy-lan-sipp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = Path::new(common::TESTDATA).join("sipp/uac-follow-contact.xml");
    let status = LanTestbed::exec_in(&tb.app_ns, "sipp")
        .current_dir(&dir)
        .arg("-sf")
        .arg(&scenario)
        .arg(format!("{}:5060", testbed::DISP_V4))
        .args([
            "-i",
            testbed::APP_V4,
            "-p",
            "5060",
            "-m",
            "2000",
            "-r",
            "400",
            "-l",
            "400",
        ])
        .args([
            "-buff_size",
            "4194304",
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp");
    let pcap = cap.stop();
    let stats = sy.stop();
    assert!(
        status.success(),
        "SIPp reported failed calls: {status}; {stats:?}"
    );
    assert_eq!(stats.router.decisions.new_dialogs, 2000, "{stats:?}");
    let per = &stats.router.forwarded_per_processor;
    assert!(
        per.iter().all(|&n| n > 0),
        "both hosts got dialogs: {per:?}"
    );
    let lan = stats.lan.expect("lan stats");
    assert!(lan.reports > 10 && lan.rejected_auth == 0, "{lan:?}");

    // The app server's view: INVITEs to the dispatcher; 200 OKs straight from the processor
    // hosts; ACK and BYE straight to them.
    let procs = [PROC_V4[0], PROC_V4[1]];
    let oks = common::tshark_fields(
        &pcap,
        "sip.Status-Code == 200 && sip.CSeq.method == \"INVITE\"",
        &["ip.src", "udp.srcport"],
    );
    assert!(oks.len() >= 2000);
    assert!(
        oks.iter()
            .all(|r| procs.contains(&r[0].as_str()) && r[1] == "5070"),
        "a 200 did not come from a processor host"
    );
    let inbound = common::tshark_fields(
        &pcap,
        "sip.Method == \"ACK\" || sip.Method == \"BYE\"",
        &["ip.dst"],
    );
    assert_eq!(inbound.len(), 4000);
    assert!(
        inbound.iter().all(|r| procs.contains(&r[0].as_str())),
        "an ACK/BYE went to the dispatcher"
    );
    let invites = common::tshark_fields(&pcap, "sip.Method == \"INVITE\"", &["ip.dst"]);
    assert!(invites.iter().all(|r| r[0] == testbed::DISP_V4));
    let _ = std::fs::remove_file(&pcap);
    let _ = std::fs::remove_file(&key);
}

/// Our own UAC, so every outcome is accounted for: INVITE (retransmitted at T1 doubling until a
/// response), then on 200 an ACK and a BYE to the Contact.
#[derive(Default, Debug)]
struct CallLog {
    sent_at: HashMap<u32, Instant>,
    last_tx: HashMap<u32, (Instant, u32)>,
    ok_from: HashMap<u32, SocketAddr>,
    busy: u32,
    bye_ok: HashMap<u32, bool>,
}

fn invite(i: u32, me: SocketAddr) -> String {
    format!(
        "INVITE sip:svc@{d}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-f{i}\r\nMax-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f{i}\r\nTo: <sip:svc@{d}>\r\nCall-ID: fail-{i}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:uac@{me}>\r\nContent-Length: 0\r\n\r\n",
        d = testbed::DISP_V4
    )
}

fn in_dialog(method: &str, i: u32, me: SocketAddr, to_tag: &str, cseq: u32) -> String {
    format!(
        "{method} sip:svc@{d} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}{i}\r\nMax-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f{i}\r\nTo: <sip:svc@{d}>;tag={to_tag}\r\nCall-ID: fail-{i}@test\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        d = testbed::DISP_V4
    )
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
}

#[test]
#[ignore = "needs root, netns and tshark: run `cargo xtask test`"]
fn killing_a_processor_host_takes_it_out_of_selection() {
    common::require_root();
    let tb = LanTestbed::up(&common::tb_name("lk")).expect("LAN testbed");
    let key = key_file("lk", "kill-test-key");
    let mut p1 = Some(start_processor(&tb.proc_ns[0], PROC_V4[0], 0, &key));
    let _p2 = start_processor(&tb.proc_ns[1], PROC_V4[1], 1, &key);
    let sy = start_dispatcher(&tb, "udp", &key, "lk");
    let cap = capture(&tb.proc_ns[0], "lk");
    let sock = in_netns(&tb.app_ns, || UdpSocket::bind((testbed::APP_V4, 5060)))
        .unwrap()
        .unwrap();
    sock.set_nonblocking(true).unwrap();
    let me = sock.local_addr().unwrap();
    let disp: SocketAddr = format!("{}:5060", testbed::DISP_V4).parse().unwrap();
    let mut log = CallLog::default();
    let start = Instant::now();
    let mut killed_at: Option<(Instant, f64)> = None;
    const CALLS: u32 = 1200; // 200/s for 6 s
    let mut buf = [0u8; 4096];
    let mut next = 0u32;
    while start.elapsed() < Duration::from_secs(20) {
        let t = start.elapsed();
        while next < CALLS && t >= Duration::from_millis(u64::from(next) * 5) {
            sock.send_to(invite(next, me).as_bytes(), disp).unwrap();
            log.sent_at.insert(next, Instant::now());
            log.last_tx.insert(next, (Instant::now(), 0));
            next += 1;
        }
        if killed_at.is_none() && t >= Duration::from_secs(2) {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            drop(p1.take()); // SIGKILL the processor host's process
            killed_at = Some((Instant::now(), wall));
        }
        // Retransmit unanswered INVITEs (Timer A: 500 ms doubling), as a real UAC does.
        for (i, (at, n)) in log.last_tx.iter_mut() {
            if !log.ok_from.contains_key(i)
                && at.elapsed() > Duration::from_millis(500 << (*n).min(3))
            {
                sock.send_to(invite(*i, me).as_bytes(), disp).unwrap();
                *at = Instant::now();
                *n += 1;
            }
        }
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let Some(id) = header(&text, "Call-ID:")
                    .and_then(|c| c.strip_prefix("fail-"))
                    .and_then(|c| c.split('@').next())
                    .and_then(|c| c.parse::<u32>().ok())
                else {
                    continue;
                };
                let code: u16 = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
                let cseq = header(&text, "CSeq:").unwrap_or("");
                if cseq.ends_with("INVITE") && code == 200 && !log.ok_from.contains_key(&id) {
                    let to_tag = header(&text, "To:")
                        .and_then(|t| t.split(";tag=").nth(1))
                        .unwrap_or("")
                        .to_owned();
                    log.ok_from.insert(id, from);
                    log.last_tx.remove(&id);
                    sock.send_to(in_dialog("ACK", id, me, &to_tag, 1).as_bytes(), from)
                        .unwrap();
                    sock.send_to(in_dialog("BYE", id, me, &to_tag, 2).as_bytes(), from)
                        .unwrap();
                    log.bye_ok.insert(id, false);
                } else if cseq.ends_with("INVITE") && code == 503 {
                    log.busy += 1;
                    log.last_tx.remove(&id);
                } else if cseq.ends_with("BYE") && code == 200 {
                    log.bye_ok.insert(id, true);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_micros(200)),
        }
        if next == CALLS && log.last_tx.is_empty() && start.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let pcap = cap.stop();
    let stats = sy.stop();
    let (_, kill_wall) = killed_at.expect("processor was killed");
    assert!(
        log.last_tx.is_empty(),
        "{} INVITEs never got a final answer: {stats:?}",
        log.last_tx.len()
    );
    assert_eq!(log.ok_from.len() as u32 + log.busy, CALLS, "{stats:?}");
    let p2: SocketAddr = format!("{}:5070", PROC_V4[1]).parse().unwrap();
    let lost: Vec<_> = log
        .bye_ok
        .iter()
        .filter(|(i, ok)| !**ok && log.ok_from[*i] == p2)
        .collect();
    assert!(
        lost.is_empty(),
        "calls on the surviving host must complete: {lost:?}"
    );

    // The dead host's wire: when did the last INVITE reach it?
    let times = common::tshark_fields(
        &pcap,
        "sip.Method == \"INVITE\" && ip.dst == 198.18.0.11",
        &["frame.time_epoch"],
    );
    let last = times
        .iter()
        .filter_map(|r| r[0].parse::<f64>().ok())
        .fold(0.0, f64::max);
    let detect = last - kill_wall;
    println!("failure detection: last INVITE reached the dead host {:.0} ms after the kill (report timeout 800 ms)", detect * 1000.0);
    // Report timeout 800 ms after the last report (≤ the kill), plus scheduling slack on a
    // loaded CI machine.
    assert!(
        detect < 1.2,
        "an INVITE reached the dead host {detect:.3} s after it died"
    );
    println!(
        "INVITE retransmissions rerouted off the dead host: {}",
        stats.router.decisions.rerouted
    );
    let _ = std::fs::remove_file(&pcap);
    let _ = std::fs::remove_file(&key);
}

#[test]
fn load_reports_with_a_bad_key_or_body_are_rejected_and_counted() {
    let fake_proc = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake_proc
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let paddr = fake_proc.local_addr().unwrap();
    let free = || {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (sip, mgcp, rep) = (free(), free(), free());
    let key = key_file("bk", "the-right-key");
    let mut cmd = Command::new(common::switchyard_bin());
    cmd.args([
        "run",
        "--backend",
        "udp",
        "--log-level",
        "error",
        "--processors",
        "0",
    ])
    .args([
        "--sip",
        &format!("127.0.0.1:{sip}"),
        "--mgcp",
        &format!("127.0.0.1:{mgcp}"),
    ])
    .args(["--remote-processor", &paddr.to_string()])
    .args(["--report-listen", &format!("127.0.0.1:{rep}")])
    .arg("--report-key-file")
    .arg(&key);
    let mut sy = Switchyard::start(cmd, "bk");
    sy.wait_until("the report socket", || {
        UdpSocket::bind(("127.0.0.1", rep)).is_err()
    });
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = ua.local_addr().unwrap();
    let inv = |i: u32| {
        format!("INVITE sip:svc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-bk{i}\r\nMax-Forwards: 70\r\nFrom: <sip:u@{me}>;tag=b{i}\r\nTo: <sip:svc@127.0.0.1>\r\nCall-ID: bk{i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    };
    let mut buf = [0u8; 4096];
    // A report signed with the wrong key, and a malformed one: the processor stays dead.
    let r = |seq| Report {
        id: 0,
        seq,
        capacity: 10,
        ..Report::default()
    };
    fake_proc
        .send_to(
            &r(1).encode(&ReportKey::new(b"wrong-key")),
            ("127.0.0.1", rep),
        )
        .unwrap();
    fake_proc
        .send_to(b"SYLR but not really a report", ("127.0.0.1", rep))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ua.send_to(inv(1).as_bytes(), ("127.0.0.1", sip)).unwrap();
    let n = ua.recv(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 503"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A correct report: now it is in selection and gets the next INVITE, with Via received.
    fake_proc
        .send_to(
            &r(2).encode(&ReportKey::new(b"the-right-key")),
            ("127.0.0.1", rep),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ua.send_to(inv(2).as_bytes(), ("127.0.0.1", sip)).unwrap();
    let n = fake_proc.recv(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.starts_with("INVITE ")
            && text.contains(&format!(";received=127.0.0.1;rport={}", me.port())),
        "{text}"
    );
    let stats = sy.stop();
    let lan = stats.lan.expect("lan stats");
    assert_eq!(lan.rejected_auth, 1, "{lan:?}");
    assert_eq!(lan.rejected_malformed, 1, "{lan:?}");
    assert_eq!(lan.reports, 1, "{lan:?}");
    let _ = std::fs::remove_file(&key);
}
