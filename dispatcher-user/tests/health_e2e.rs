//! Health modes of processors on other hosts, end to end on loopback (issue 12):
//!
//! - `health=none`: SIPp's built-in UAS, which answers no OPTIONS and sends no load reports,
//!   is a usable processor: it is up from the start and completes calls;
//! - `health=options,fail=3,ok=2`: a processor whose OPTIONS answers turn to 503 leaves
//!   selection after exactly 3 of them (the dispatcher answers new INVITEs 503 itself), and
//!   rejoins after exactly 2 good answers; the transitions are logged with their reason and
//!   counted.
mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering::SeqCst},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::Switchyard;

/// `switchyard run --backend udp` on loopback with no local processor and the given
/// `--remote-processor` spec; returns it once its sockets are bound, and its SIP port.
fn dispatcher(remote: &str, extra: &[&str], tag: &str) -> (Switchyard, u16) {
    let (sip, mgcp, rep) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let mut cmd = Command::new(common::switchyard_bin());
    cmd.args(["run", "--backend", "udp", "--processors", "0"])
        .args(["--sip", &format!("127.0.0.1:{sip}")])
        .args(["--mgcp", &format!("127.0.0.1:{mgcp}")])
        .args(["--remote-processor", remote])
        .args(["--report-listen", &format!("127.0.0.1:{rep}")])
        .args(extra)
        .stderr(Stdio::piped());
    let mut sy = Switchyard::start(cmd, tag);
    let bound = |port: u16| UdpSocket::bind(("127.0.0.1", port)).is_err();
    sy.wait_until("the sockets to be bound", || bound(sip) && bound(rep));
    (sy, sip)
}

#[test]
#[ignore = "needs SIPp (cargo xtask setup): run `cargo xtask test`"]
fn sipp_uas_as_a_health_none_processor_completes_calls() {
    assert!(
        Command::new("sipp").arg("-v").output().is_ok(),
        "SIPp is required (Debian sip-tester): run `cargo xtask setup`"
    );
    const CALLS: u64 = 200;
    let (uas, uac) = (common::free_port(), common::free_port());
    let dir = std::env::temp_dir().join(format!("sy-health-none-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // SIPp's built-in UAS answers to the source of the request (the dispatcher's forwarding
    // socket), not to the Via; `-rsa` sends its answers to the UAC instead, as a Via-following
    // server would. It answers no OPTIONS: only health=none makes it usable.
    let _uas = common::Proc(
        Command::new("sipp")
            .current_dir(&dir)
            .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas.to_string()])
            .args(["-rsa", &format!("127.0.0.1:{uac}"), "-nostdin"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sipp -sn uas"),
    );
    let (sy, sip) = dispatcher(
        &format!("127.0.0.1:{uas},health=none"),
        &["--log-level", "info"],
        "hn",
    );
    std::thread::sleep(Duration::from_millis(300));
    // The UAC sends its INVITEs to the dispatcher and follows the 200's Contact (the UAS) for
    // ACK and BYE, as `sipp_e2e`'s follow-contact runs do: the UAS's To-tags are its own, so
    // in-dialog requests cannot be routed by the dispatcher (built-in `-sn uac` would send
    // them there and get 481).
    let stf = dir.join("stats.csv");
    let status = Command::new("sipp")
        .current_dir(&dir)
        .arg("-sf")
        .arg(Path::new(common::TESTDATA).join("sipp/uac-follow-contact.xml"))
        .arg(format!("127.0.0.1:{sip}"))
        .args(["-i", "127.0.0.1", "-p", &uac.to_string()])
        .args(["-m", &CALLS.to_string(), "-r", "50", "-l", "200"])
        .args(["-nostdin", "-timeout", "30s", "-timeout_error"])
        .args(["-trace_stat", "-fd", "1", "-trace_err"])
        .arg("-stf")
        .arg(&stf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running sipp -sf uac-follow-contact.xml");
    let (stats, log) = sy.stop_with_stderr();
    let (ok, failed, _) = common::sipp_totals(&stf);
    assert!(
        status.success() && ok == CALLS && failed == 0,
        "sipp {status}: {ok} successful, {failed} failed; {stats:?}\n{log}"
    );
    let d = &stats.router.decisions;
    assert_eq!(d.new_dialogs, CALLS, "{stats:?}");
    assert_eq!(
        stats.router.forwarded_per_processor,
        vec![CALLS],
        "{stats:?}"
    );
    let lan = stats.lan.expect("lan stats");
    assert_eq!(
        (lan.probes_sent, lan.reports, lan.went_down),
        (0, 0, 0),
        "health=none: no probes, no reports, never down: {lan:?}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("remote processor up") && l.contains("health=none: always up")),
        "the initial state is logged at start:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A SIP server on loopback that answers OPTIONS with 200 or 503 (as `healthy` says), counts
/// its answers, and records the Call-IDs of the INVITEs it receives (never answering them).
struct Responder {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    answered_200: Arc<AtomicU32>,
    answered_503: Arc<AtomicU32>,
    invites: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    })
}

impl Responder {
    fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut r = Self {
            addr: sock.local_addr().unwrap(),
            healthy: Arc::new(AtomicBool::new(true)),
            answered_200: Arc::default(),
            answered_503: Arc::default(),
            invites: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        let (healthy, ok, bad, invites, stop) = (
            Arc::clone(&r.healthy),
            Arc::clone(&r.answered_200),
            Arc::clone(&r.answered_503),
            Arc::clone(&r.invites),
            Arc::clone(&r.stop),
        );
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.starts_with("OPTIONS ") {
                    let (code, counter) = if healthy.load(SeqCst) {
                        ("200 OK", &ok)
                    } else {
                        ("503 Service Unavailable", &bad)
                    };
                    let mut answer = format!("SIP/2.0 {code}\r\n");
                    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
                        if let Some(line) = header(&msg, h) {
                            answer.push_str(line);
                            answer.push_str("\r\n");
                        }
                    }
                    answer.push_str("Content-Length: 0\r\n\r\n");
                    let _ = sock.send_to(answer.as_bytes(), from);
                    counter.fetch_add(1, SeqCst);
                } else if msg.starts_with("INVITE ") {
                    let id = header(&msg, "Call-ID")
                        .and_then(|l| l.split_once(':'))
                        .map_or("", |(_, v)| v.trim())
                        .to_owned();
                    invites.lock().unwrap().push(id);
                }
            }
        });
        r.thread = Some(thread);
        r
    }

    fn got_invite(&self, call_id: &str) -> bool {
        self.invites.lock().unwrap().iter().any(|c| c == call_id)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits (at most 5 s) until `counter` reaches `n`.
fn wait_count(counter: &AtomicU32, n: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter.load(SeqCst) < n {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A UA sending INVITEs to the dispatcher.
struct Ua {
    sock: UdpSocket,
    disp: SocketAddr,
}

impl Ua {
    /// Sends INVITE `call_id`; returns where it went: `true` when the responder received it,
    /// `false` when the dispatcher answered 503 itself (within 1 s either way).
    fn invite_reaches(&self, r: &Responder, call_id: &str) -> bool {
        let me = self.sock.local_addr().unwrap();
        let inv = format!("INVITE sip:svc@{d} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:u@{me}>;tag={call_id}\r\nTo: <sip:svc@{d}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", d = self.disp);
        self.sock.send_to(inv.as_bytes(), self.disp).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if r.got_invite(call_id) {
                return true;
            }
            if let Ok(n) = self.sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.starts_with("SIP/2.0 503") && text.contains(call_id) {
                    return false;
                }
            }
        }
        panic!("INVITE {call_id}: neither forwarded nor answered 503 within 1 s");
    }
}

#[test]
fn options_503_takes_a_processor_out_after_fail_probes_and_ok_answers_bring_it_back() {
    let r = Responder::start();
    let (sy, sip) = dispatcher(
        &format!("{},capacity=100,health=options,fail=3,ok=2", r.addr),
        &["--probe-interval-ms", "150", "--log-level", "info"],
        "h503",
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let ua = Ua {
        sock,
        disp: SocketAddr::from(([127, 0, 0, 1], sip)),
    };
    // Down until it has proven itself: 2 good answers.
    wait_count(&r.answered_200, 2, "2 answered probes");
    std::thread::sleep(Duration::from_millis(60));
    assert!(ua.invite_reaches(&r, "a1"), "up after ok=2 good answers");

    // 503s: still selected after 2 of them, out after the 3rd.
    r.healthy.store(false, SeqCst);
    wait_count(&r.answered_503, 2, "2 probes answered 503");
    assert!(
        ua.invite_reaches(&r, "b2"),
        "2 failed probes of fail=3: still up"
    );
    wait_count(&r.answered_503, 3, "3 probes answered 503");
    std::thread::sleep(Duration::from_millis(60));
    assert!(
        !ua.invite_reaches(&r, "b3"),
        "out of selection after 3 probes answered 503"
    );

    // 200s again: still out after 1, back after the 2nd.
    let base = r.answered_200.load(SeqCst);
    r.healthy.store(true, SeqCst);
    wait_count(&r.answered_200, base + 1, "a good answer");
    assert!(
        !ua.invite_reaches(&r, "c1"),
        "1 good answer of ok=2: still down"
    );
    wait_count(&r.answered_200, base + 2, "2 good answers");
    std::thread::sleep(Duration::from_millis(60));
    assert!(ua.invite_reaches(&r, "c2"), "back after 2 good answers");

    let (stats, log) = sy.stop_with_stderr();
    let lan = stats.lan.expect("lan stats");
    assert_eq!((lan.came_up, lan.went_down), (2, 1), "{lan:?}");
    assert!(lan.probes_failed >= 3 && lan.probe_answers >= 7, "{lan:?}");
    assert_eq!(stats.router.forwarded_per_processor, vec![3], "{stats:?}");
    for want in [
        "down until 2 OPTIONS probe(s) in a row are answered",
        "probe answered 200 OK (2 in a row)",
        "probe answered 503 Service Unavailable (3 failed probe(s) in a row)",
    ] {
        assert!(log.contains(want), "no event {want:?} in the log:\n{log}");
    }
    let down = log
        .lines()
        .find(|l| l.contains("3 failed probe(s) in a row"))
        .unwrap();
    assert!(
        down.contains("WARN") && down.contains(&r.addr.to_string()),
        "the down event names the processor and is a warning: {down}"
    );
}
