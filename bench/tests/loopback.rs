//! Loopback runs of the generator against tiny in-test servers (no root needed).
use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use bench::{
    engine::{run_loop, LoopConfig},
    hist::{parse_hgrm, Latency},
    mgcp::{MgcpCa, MgcpConfig},
    net::{Outbox, Sockets},
    schedule::Schedule,
};

fn header<'a>(req: &'a str, name: &str) -> &'a str {
    req.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or("")
}

fn respond(req: &str, code: u16, contact: Option<SocketAddr>) -> String {
    let to = header(req, "To");
    let to = if to.contains("tag=") {
        to.to_string()
    } else {
        format!("{to};tag=uas1")
    };
    let mut s = format!(
        "SIP/2.0 {code} X\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        header(req, "Via"),
        header(req, "From"),
        header(req, "Call-ID"),
        header(req, "CSeq")
    );
    if let Some(c) = contact {
        s += &format!("Contact: <sip:proc@{c}>\r\n");
    }
    s + "Content-Length: 0\r\n\r\n"
}

/// A UAS: `wk` answers INVITE with 100 + 200 (Contact: `own`); `own` answers BYE with 200.
struct Uas {
    wk: SocketAddr,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Uas {
    fn start() -> Uas {
        let wk = UdpSocket::bind("127.0.0.1:0").unwrap();
        let own = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (wk_addr, own_addr) = (wk.local_addr().unwrap(), own.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for (sock, is_wk) in [(wk, true), (own, false)] {
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let (stop, acks) = (stop.clone(), acks.clone());
            threads.push(thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, src)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if is_wk && req.starts_with("INVITE ") {
                        sock.send_to(respond(&req, 100, None).as_bytes(), src)
                            .unwrap();
                        sock.send_to(respond(&req, 200, Some(own_addr)).as_bytes(), src)
                            .unwrap();
                    } else if !is_wk && req.starts_with("ACK ") {
                        acks.fetch_add(1, Ordering::Relaxed);
                    } else if !is_wk && req.starts_with("BYE ") {
                        sock.send_to(respond(&req, 200, None).as_bytes(), src)
                            .unwrap();
                    } else {
                        panic!(
                            "UAS got unexpected {req:?} on {}",
                            if is_wk { "wk" } else { "own" }
                        );
                    }
                }
            }));
        }
        Uas {
            wk: wk_addr,
            stop,
            acks,
            threads,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

#[test]
fn sip_generator_against_loopback_uas() {
    let uas = Uas::start();
    let dir = std::env::temp_dir().join(format!("switchyard-bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-bench"))
        .args([
            "sip",
            "--target",
            &uas.wk.to_string(),
            "--rate",
            "50",
            "--duration",
            "2",
        ])
        .args([
            "--hold-ms",
            "100",
            "--sockets",
            "2",
            "--quiet",
            "--label",
            "loopback",
        ])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    let acks = uas.acks.load(Ordering::Relaxed);
    uas.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("INVITE→200"), "{stdout}");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(j["offered_calls"], 100, "{j:#}");
    assert_eq!(j["completed_calls"], 100, "{j:#}");
    assert_eq!(j["failed_calls"], 0, "{j:#}");
    assert_eq!(j["unfinished_calls"], 0);
    assert_eq!(acks, 100, "every ACK went to the Contact socket");
    for k in [
        "timeout_invite",
        "timeout_bye",
        "status_503",
        "unparseable",
        "unexpected",
    ] {
        assert_eq!(j["failures"][k], 0, "{k}");
    }
    assert_eq!(j["latency_us"]["invite_200"]["count"], 100);
    assert_eq!(j["latency_us"]["invite_100"]["count"], 100);
    assert_eq!(j["latency_us"]["bye_200"]["count"], 100);
    assert!(j["latency_us"]["invite_200"]["p50_us"].as_f64().unwrap() > 0.0);
    let h = parse_hgrm(&std::fs::read_to_string(dir.join("invite_200.hgrm")).unwrap()).unwrap();
    assert_eq!(h.total_count, 100);
    assert!(!h.lines.is_empty());
    let svg = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
    assert!(svg.contains("<svg"));
    assert!(dir.join("report.txt").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mgcp_call_agent_against_loopback_gateway() {
    let gw = UdpSocket::bind("127.0.0.1:0").unwrap();
    let own = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (gw_addr, own_addr) = (gw.local_addr().unwrap(), own.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (sock, is_gw) in [(gw, true), (own, false)] {
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = stop.clone();
        threads.push(thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut n_conn = 0;
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, src)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let mut f = req.split_whitespace();
                let (verb, tid) = (f.next().unwrap(), f.next().unwrap());
                let ans = match (is_gw, verb) {
                    (true, "CRCX") => {
                        n_conn += 1;
                        // Answer from the processor's own port, as a processor does.
                        own_send(
                            &own_addr,
                            src,
                            &format!(
                            "200 {tid} OK\r\nI: c{n_conn}\r\nZ: ds/1@[127.0.0.1]:{}\r\n\r\nv=0\r\n",
                            own_addr.port()
                        ),
                        );
                        continue;
                    }
                    (false, "MDCX") => format!("200 {tid} OK\r\n"),
                    (false, "DLCX") => format!("250 {tid} OK\r\n"),
                    other => panic!("gateway got {other:?}"),
                };
                sock.send_to(ans.as_bytes(), src).unwrap();
            }
        }));
    }
    let mut socks = Sockets::bind("127.0.0.1:0".parse().unwrap(), 2, 4096).unwrap();
    let mut ca = MgcpCa::new({
        let mut c = MgcpConfig::new(gw_addr, socks.locals().to_vec());
        c.hold_ns = 50_000_000;
        c
    });
    let mut out = Outbox::new(256, ca.msg_cap());
    let mut lag = Latency::new("send_lag", "lag");
    let cfg = LoopConfig {
        schedule: Schedule::constant(100.0, 1_000_000_000),
        drain_ns: 5_000_000_000,
        progress: false,
        share: bench::engine::Share::ALL,
    };
    let r = run_loop(
        &mut ca,
        &mut socks,
        &mut out,
        &cfg,
        &mut lag,
        std::time::Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(r.offered, 100);
    assert_eq!(r.unfinished, 0);
    assert_eq!(ca.counters.completed, 100, "{:?}", ca.counters);
    assert_eq!(ca.counters.failures.calls(), 0, "{:?}", ca.counters);
    assert_eq!(ca.crcx_200.hist.len(), 100);
    assert_eq!(ca.dlcx_250.hist.len(), 100);
}

/// Sends the CRCX answer from another socket than the command's destination: the call agent
/// must then take the MDCX/DLCX destination from the `Z:` endpoint, not the answer's source.
fn own_send(_own: &SocketAddr, to: SocketAddr, msg: &str) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(msg.as_bytes(), to).unwrap();
}
