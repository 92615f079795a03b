//! Several dispatchers behind ECMP (issue 15): two dispatcher hosts serve one anycast address,
//! each announcing it over BGP with BIRD 2 while `switchyard ctl health` passes
//! (`packaging/anycast/`), a BIRD router spreads flows over them, two processor hosts answer.
//! One test walks the whole life: both take a share; one is killed under load (withdrawal
//! time, what became of every call in the failure window, established dialogs completing
//! through the survivor); it is restarted and takes a share again; it loses its processors
//! and is withdrawn again.
//!
//! The dispatchers use the xdp backend on their `eth0`, the anycast address on `lo`.
mod common;

use std::{
    collections::{HashMap, HashSet},
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::Switchyard;
use xtask::testbed::{
    in_netns, AnycastTestbed, ANYCAST_APP_V4, ANYCAST_DISP_V4, ANYCAST_V4, PROC_V4,
};

struct Keys {
    report: PathBuf,
    tag: PathBuf,
}

fn start_processor(tb: &AnycastTestbed, k: usize, keys: &Keys) -> common::Proc {
    let child = AnycastTestbed::exec_in(&tb.proc_ns[k], common::processor_bin().to_str().unwrap())
        .args(["--listen", &format!("{}:5070", PROC_V4[k])])
        .args(["--id", &k.to_string(), "--processors", "2"])
        .args(["--report-to", &format!("{}:5062", ANYCAST_DISP_V4[0])])
        .args(["--report-to", &format!("{}:5062", ANYCAST_DISP_V4[1])])
        .args(["--report-interval-ms", "100"])
        .arg("--report-key-file")
        .arg(&keys.report)
        .arg("--tag-key-file")
        .arg(&keys.tag)
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting switchyard-processor");
    common::Proc(child)
}

/// Dispatcher `k`, identical on both hosts but for its own report address and control socket:
/// XDP on `eth0` steers the well-known ports (whatever the destination address, so the
/// anycast address on `lo` is served), its own answers leave from the anycast address.
fn start_dispatcher(tb: &AnycastTestbed, k: usize, keys: &Keys, tag: &str) -> Switchyard {
    let mut cmd =
        AnycastTestbed::exec_in(&tb.disp_ns[k], common::switchyard_bin().to_str().unwrap());
    cmd.args([
        "run",
        "--backend",
        "xdp",
        "--iface",
        "eth0",
        "--log-level",
        "warn",
    ])
    .args(["--sip", &format!("{ANYCAST_V4}:5060")])
    .args(["--mgcp", &format!("{ANYCAST_V4}:2427")])
    .args(["--processors", "0", "--policy", "hash"])
    .args(["--remote-processor", &format!("{}:5070", PROC_V4[0])])
    .args(["--remote-processor", &format!("{}:5070", PROC_V4[1])])
    .args(["--report-listen", &format!("{}:5062", ANYCAST_DISP_V4[k])])
    .arg("--report-key-file")
    .arg(&keys.report)
    .arg("--tag-key-file")
    .arg(&keys.tag)
    .arg("--ctl-socket")
    .arg(tb.ctl_socket(k));
    let mut sy = Switchyard::start(cmd, tag);
    let ns = tb.disp_ns[k].clone();
    sy.wait_until("the XDP program to be attached", || {
        Command::new("ip")
            .args(["-n", &ns, "-d", "link", "show", "dev", "eth0"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
            .unwrap_or(false)
    });
    sy
}

/// `switchyard ctl --json ARGS` against dispatcher `k`: (exit code, reply).
fn ctl(tb: &AnycastTestbed, k: usize, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(common::switchyard_bin())
        .arg("ctl")
        .arg("--socket")
        .arg(tb.ctl_socket(k))
        .arg("--json")
        .args(args)
        .output()
        .expect("switchyard ctl");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

/// New dialogs dispatcher `k` has placed (sum over processors, from `ctl list`).
fn new_dialogs(tb: &AnycastTestbed, k: usize) -> u64 {
    let (code, v) = ctl(tb, k, &["list"]);
    assert_eq!(code, 0, "ctl list on dispatcher {}: {v}", k + 1);
    v["data"]
        .as_array()
        .expect("list data")
        .iter()
        .map(|p| p["new_dialogs"].as_u64().unwrap_or(0))
        .sum()
}

/// Waits (at most `limit`) until the router's next hops for the anycast address are `want`;
/// returns how long it took.
fn wait_route(tb: &AnycastTestbed, want: &[&str], limit: Duration, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let hops = tb.anycast_next_hops();
        if hops == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: after {limit:?} the router's next hops are {hops:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The router's next hops since a time.
type RouteChanges = Vec<(Instant, Vec<String>)>;

/// Records every change of the router's next hops, with its time.
struct RouteWatch {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<RouteChanges>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RouteWatch {
    fn start(tb: &AnycastTestbed) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let names = AnycastTestbed::named(&tb.name);
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let mut last: Option<Vec<String>> = None;
            while !s.load(Ordering::Relaxed) {
                let hops = names.anycast_next_hops();
                if last.as_ref() != Some(&hops) {
                    l.lock().unwrap().push((Instant::now(), hops.clone()));
                    last = Some(hops);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> RouteChanges {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// One call of our UAC: INVITE to the anycast address (Timer A retransmissions until a
/// response), on 200 an ACK to the anycast address, after `hold` a BYE to the anycast address
/// (Timer E retransmissions until its 200). In-dialog requests carry the processor's To-tag,
/// so whichever dispatcher gets them routes them without state.
#[derive(Debug, Clone)]
struct Call {
    sock: usize,
    first_tx: Instant,
    inv_last: Instant,
    inv_tx: u32,
    proceeding: bool,
    established: Option<Instant>,
    to_tag: String,
    answered_by: Option<SocketAddr>,
    failed: Option<u16>,
    bye_due: Option<Instant>,
    bye_first: Option<Instant>,
    bye_last: Instant,
    bye_tx: u32,
    done: Option<Instant>,
}

fn invite(id: &str, me: SocketAddr) -> String {
    format!(
        "INVITE sip:svc@{ANYCAST_V4}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-i{id}\r\nMax-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f{id}\r\nTo: <sip:svc@{ANYCAST_V4}>\r\nCall-ID: {id}@anycast\r\nCSeq: 1 INVITE\r\nContact: <sip:uac@{me}>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn in_dialog(method: &str, id: &str, me: SocketAddr, to_tag: &str, cseq: u32) -> String {
    format!(
        "{method} sip:svc@{ANYCAST_V4}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}{id}\r\nMax-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f{id}\r\nTo: <sip:svc@{ANYCAST_V4}>;tag={to_tag}\r\nCall-ID: {id}@anycast\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
}

/// The app's UDP sockets: several per source address, so the router's L4 hash spreads them.
fn app_sockets(tb: &AnycastTestbed) -> Vec<UdpSocket> {
    in_netns(&tb.app_ns, || {
        let mut v = Vec::new();
        for a in ANYCAST_APP_V4 {
            for _ in 0..8 {
                let s = UdpSocket::bind((a, 0)).unwrap();
                s.set_nonblocking(true).unwrap();
                v.push(s);
            }
        }
        v
    })
    .unwrap()
}

/// Runs `n` calls named `{prefix}{i}` at `rate`/s, each held `hold`, call i on socket
/// i % sockets; `tick` is called every loop with the time since the start. Stops when every
/// call has ended (BYE answered or INVITE failed) or `limit` after the last call's start.
fn run_calls(
    socks: &[UdpSocket],
    prefix: &str,
    n: usize,
    rate: f64,
    hold: Duration,
    limit: Duration,
    mut tick: impl FnMut(Duration),
) -> Vec<Call> {
    let vip: SocketAddr = format!("{ANYCAST_V4}:5060").parse().unwrap();
    let me: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
    let mut calls: Vec<Call> = Vec::with_capacity(n);
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let spacing = Duration::from_secs_f64(1.0 / rate);
    let timer = |n: u32| Duration::from_millis(500 << n.min(3));
    loop {
        let now = Instant::now();
        tick(now - start);
        while calls.len() < n && now >= start + spacing * calls.len() as u32 {
            let i = calls.len();
            let s = i % socks.len();
            let id = format!("{prefix}{i}");
            socks[s]
                .send_to(invite(&id, me[s]).as_bytes(), vip)
                .unwrap();
            calls.push(Call {
                sock: s,
                first_tx: now,
                inv_last: now,
                inv_tx: 1,
                proceeding: false,
                established: None,
                to_tag: String::new(),
                answered_by: None,
                failed: None,
                bye_due: None,
                bye_first: None,
                bye_last: now,
                bye_tx: 0,
                done: None,
            });
        }
        // Timers: INVITE retransmissions (A), BYE when due and its retransmissions (E).
        for (i, c) in calls.iter_mut().enumerate() {
            let id = || format!("{prefix}{i}");
            let s = c.sock;
            if c.established.is_none() && c.failed.is_none() && !c.proceeding {
                if now - c.inv_last >= timer(c.inv_tx - 1) {
                    let id = id();
                    socks[s]
                        .send_to(invite(&id, me[s]).as_bytes(), vip)
                        .unwrap();
                    c.inv_last = now;
                    c.inv_tx += 1;
                }
            } else if c.done.is_none() && c.failed.is_none() {
                if let Some(due) = c.bye_due {
                    let send = if c.bye_tx == 0 {
                        now >= due
                    } else {
                        now - c.bye_last >= timer(c.bye_tx - 1)
                    };
                    if send {
                        let id = id();
                        let bye = in_dialog("BYE", &id, me[s], &c.to_tag, 2);
                        socks[s].send_to(bye.as_bytes(), vip).unwrap();
                        c.bye_first.get_or_insert(now);
                        c.bye_last = now;
                        c.bye_tx += 1;
                    }
                }
            }
        }
        let mut got = false;
        for (s, sock) in socks.iter().enumerate() {
            while let Ok((len, from)) = sock.recv_from(&mut buf) {
                got = true;
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                let Some(i) = header(&text, "Call-ID:")
                    .and_then(|c| c.strip_prefix(prefix))
                    .and_then(|c| c.split('@').next())
                    .and_then(|c| c.parse::<usize>().ok())
                    .filter(|&i| i < calls.len())
                else {
                    continue;
                };
                let code: u16 = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
                let cseq = header(&text, "CSeq:").unwrap_or("");
                let c = &mut calls[i];
                let id = format!("{prefix}{i}");
                if cseq.ends_with("INVITE") {
                    match code {
                        100..=199 => c.proceeding = true,
                        200..=299 => {
                            if c.established.is_none() {
                                c.established = Some(Instant::now());
                                c.answered_by = Some(from);
                                c.to_tag = header(&text, "To:")
                                    .and_then(|t| t.split(";tag=").nth(1))
                                    .unwrap_or("")
                                    .to_owned();
                                c.bye_due = Some(Instant::now() + hold);
                            }
                            // Every 2xx (also a retransmitted one: our ACK was lost) is ACKed,
                            // to the anycast address.
                            let ack = in_dialog("ACK", &id, me[s], &c.to_tag, 1);
                            sock.send_to(ack.as_bytes(), vip).unwrap();
                        }
                        _ => {
                            c.failed.get_or_insert(code);
                        }
                    }
                } else if cseq.ends_with("BYE") && code == 200 {
                    c.done.get_or_insert(Instant::now());
                }
            }
        }
        let all_started = calls.len() == n;
        if all_started && calls.iter().all(|c| c.done.is_some() || c.failed.is_some()) {
            break;
        }
        if all_started && now - calls[n - 1].first_tx > limit {
            break;
        }
        if !got {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    calls
}

fn outcome(c: &Call) -> &'static str {
    match (c.failed, c.established, c.done) {
        (Some(_), _, _) => "failed (final error response)",
        (None, None, _) => "no answer to the INVITE",
        (None, Some(_), None) => "established, BYE unanswered",
        (None, Some(_), Some(_)) if c.inv_tx > 1 || c.bye_tx > 1 => {
            "completed after retransmissions"
        }
        _ => "completed",
    }
}

fn tally<'a>(calls: impl Iterator<Item = &'a Call>) -> Vec<(&'static str, usize)> {
    let mut m: HashMap<&'static str, usize> = HashMap::new();
    for c in calls {
        *m.entry(outcome(c)).or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}

fn all_completed<'a>(calls: impl Iterator<Item = &'a Call>) -> bool {
    calls
        .into_iter()
        .all(|c| c.done.is_some() && c.failed.is_none())
}

fn key_file(name: &str, key: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("sy-any-{name}-{}", std::process::id()));
    std::fs::write(&p, key).unwrap();
    p
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
#[ignore = "needs root, netns, BIRD 2 and tshark: run `cargo xtask test`"]
fn two_dispatchers_behind_ecmp_share_fail_over_and_come_back() {
    common::require_root();
    let tb = AnycastTestbed::up(&common::tb_name("ac"), &common::switchyard_bin())
        .expect("anycast testbed (BIRD 2 is required: cargo xtask setup)");
    let keys = Keys {
        report: key_file("rk", "anycast-report-key\n"),
        tag: key_file("tk", "anycast-tag-key\n"),
    };
    let _p1 = start_processor(&tb, 0, &keys);
    let _p2 = start_processor(&tb, 1, &keys);
    let mut d1 = Some(start_dispatcher(&tb, 0, &keys, "ac-d1"));
    let d2 = start_dispatcher(&tb, 1, &keys, "ac-d2");
    let both = [ANYCAST_DISP_V4[0], ANYCAST_DISP_V4[1]];
    let only_d2 = [ANYCAST_DISP_V4[1]];
    // BGP sessions come up (connect retry 2 s), the watchers see both healthy.
    let t = wait_route(&tb, &both, Duration::from_secs(20), "initial announcement");
    println!("both dispatchers announced {} ms after start", ms(t));
    let socks = app_sockets(&tb);

    // 1. Both take a share of 2,000 calls; answers come from the processors straight to the
    //    app; which flows reached dispatcher 1 is learnt from a capture on its host.
    let cap_app = common::Capture::start(&tb.app_ns, "eth0", "ac-app");
    // (On the router's port towards dispatcher 1: pcap on the dispatcher host does not see
    // what XDP redirects.)
    let cap_d1 = common::Capture::start(&tb.router_ns, "b-d1", "ac-d1");
    const SHARE: usize = 2000;
    let calls = run_calls(
        &socks,
        "s",
        SHARE,
        400.0,
        Duration::ZERO,
        Duration::from_secs(10),
        |_| {},
    );
    let pcap_app = cap_app.stop();
    let pcap_d1 = cap_d1.stop();
    let (n1, n2) = (new_dialogs(&tb, 0), new_dialogs(&tb, 1));
    println!(
        "share: {SHARE} calls, dispatcher 1 placed {n1}, dispatcher 2 {n2}: {:?}",
        tally(calls.iter())
    );
    assert!(
        all_completed(calls.iter()),
        "share phase: {:?}",
        tally(calls.iter())
    );
    assert_eq!(n1 + n2, SHARE as u64, "every call placed once");
    assert!(
        n1 >= SHARE as u64 / 10 && n2 >= SHARE as u64 / 10,
        "both dispatchers take a share: {n1} / {n2}"
    );
    let procs = [PROC_V4[0], PROC_V4[1]];
    let oks = common::tshark_fields(
        &pcap_app,
        "sip.Status-Code == 200 && sip.CSeq.method == \"INVITE\"",
        &["ip.src", "udp.srcport"],
    );
    assert!(oks.len() >= SHARE, "{} INVITE 200s captured", oks.len());
    assert!(
        oks.iter()
            .all(|r| procs.contains(&r[0].as_str()) && r[1] == "5070"),
        "every 200 comes straight from a processor host"
    );
    let requests = common::tshark_fields(&pcap_app, "sip.Method", &["ip.dst"]);
    assert!(requests.len() >= 3 * SHARE);
    assert!(
        requests.iter().all(|r| r[0] == ANYCAST_V4),
        "every request goes to the anycast address"
    );
    let d1_flows: HashSet<String> = common::tshark_fields(
        &pcap_d1,
        &format!("sip.Method == \"INVITE\" && ip.dst == {ANYCAST_V4}"),
        &["ip.src", "udp.srcport"],
    )
    .into_iter()
    .map(|r| format!("{}:{}", r[0], r[1]))
    .collect();
    let on_d1: Vec<bool> = socks
        .iter()
        .map(|s| d1_flows.contains(&s.local_addr().unwrap().to_string()))
        .collect();
    println!(
        "flows: {} of {} app sockets hash to dispatcher 1",
        on_d1.iter().filter(|&&b| b).count(),
        socks.len()
    );
    assert!(on_d1.iter().any(|&b| b) && !on_d1.iter().all(|&b| b));
    // The dispatchers' own answers (OPTIONS is answered by the dispatcher) come from the
    // anycast address, through either host.
    let vip: SocketAddr = format!("{ANYCAST_V4}:5060").parse().unwrap();
    for want_d1 in [true, false] {
        let s = on_d1.iter().position(|&b| b == want_d1).unwrap();
        let me = socks[s].local_addr().unwrap();
        let opt = format!(
            "OPTIONS sip:{ANYCAST_V4} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-o{s}\r\nMax-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=o{s}\r\nTo: <sip:{ANYCAST_V4}>\r\nCall-ID: opt-{s}@anycast\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        socks[s].send_to(opt.as_bytes(), vip).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 2048];
        let from = loop {
            assert!(Instant::now() < deadline, "no answer to OPTIONS");
            match socks[s].recv_from(&mut buf) {
                Ok((n, from)) if buf[..n].starts_with(b"SIP/2.0 200") => break from,
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let host = if want_d1 { 1 } else { 2 };
        assert_eq!(
            from, vip,
            "dispatcher {host} answers from the anycast address"
        );
    }
    for f in [&pcap_app, &pcap_d1] {
        let _ = std::fs::remove_file(f);
    }

    // 2. Kill dispatcher 1 (SIGKILL, as a crash) 2 s into 1,500 calls at 250/s, each held 1 s.
    let watch = RouteWatch::start(&tb);
    let mut killed: Option<Instant> = None;
    const FAIL: usize = 1500;
    let calls = run_calls(
        &socks,
        "f",
        FAIL,
        250.0,
        Duration::from_secs(1),
        Duration::from_secs(15),
        |t| {
            if killed.is_none() && t >= Duration::from_secs(2) {
                drop(d1.take()); // Switchyard's drop: SIGKILL and reap
                killed = Some(Instant::now());
            }
        },
    );
    let changes = watch.stop();
    let killed = killed.expect("dispatcher 1 was killed");
    let withdrawn = changes
        .iter()
        .find(|(at, hops)| *at >= killed && hops == &only_d2)
        .map(|(at, _)| *at)
        .unwrap_or_else(|| panic!("route never withdrawn: {changes:?}"));
    let window = withdrawn - killed;
    println!("failover: route withdrawn {} ms after the kill", ms(window));
    // Documented: within the watcher interval (1 s) plus a check and a BGP update.
    assert!(
        window < Duration::from_millis(2500),
        "withdrawal took {} ms",
        ms(window)
    );
    let on_dead = |c: &&&Call| on_d1[c.sock];
    let established_before: Vec<&Call> = calls
        .iter()
        .filter(|c| c.established.is_some_and(|e| e < killed))
        .collect();
    let bye_after: Vec<&Call> = established_before
        .iter()
        .copied()
        .filter(|c| c.bye_first.is_some_and(|b| b >= killed))
        .collect();
    let survivor_byes = bye_after.iter().filter(on_dead).count();
    let in_window: Vec<&Call> = calls
        .iter()
        .filter(|c| c.first_tx < withdrawn && c.established.is_none_or(|e| e >= killed))
        .collect();
    let after: Vec<&Call> = calls.iter().filter(|c| c.first_tx >= withdrawn).collect();
    println!(
        "failover: {} dialogs established before the kill, {} of them BYE after it ({} on flows of the dead dispatcher, now through the survivor): {:?}",
        established_before.len(),
        bye_after.len(),
        survivor_byes,
        tally(bye_after.iter().copied())
    );
    println!(
        "failover: {} calls in the failure window (INVITE in flight or sent between kill and withdrawal), {} of them on the dead dispatcher's flows: {:?}",
        in_window.len(),
        in_window.iter().filter(on_dead).count(),
        tally(in_window.iter().copied())
    );
    // Each call of the window, in brief: how many INVITE / BYE transmissions it took and how
    // long from its first INVITE to the BYE's 200.
    let mut by_tx: HashMap<(u32, u32), (usize, Duration)> = HashMap::new();
    for c in &in_window {
        let e = by_tx.entry((c.inv_tx, c.bye_tx)).or_default();
        e.0 += 1;
        if let Some(d) = c.done {
            e.1 = e.1.max(d - c.first_tx);
        }
    }
    let mut by_tx: Vec<_> = by_tx.into_iter().collect();
    by_tx.sort();
    for ((inv, bye), (count, worst)) in by_tx {
        println!(
            "failover:   {count} window calls took {inv} INVITE and {bye} BYE transmission(s), done within {} ms of their first INVITE",
            ms(worst)
        );
    }
    println!(
        "failover: {} calls started after the withdrawal: {:?}",
        after.len(),
        tally(after.iter().copied())
    );
    assert!(
        survivor_byes > 0,
        "some established dialogs' BYEs had to take the survivor"
    );
    assert!(
        all_completed(established_before.iter().copied()),
        "dialogs established before the kill complete: {:?}",
        tally(established_before.iter().copied())
    );
    assert!(
        !after.is_empty() && all_completed(after.iter().copied()),
        "calls started after the withdrawal succeed: {:?}",
        tally(after.iter().copied())
    );
    assert!(
        all_completed(in_window.iter().copied()),
        "calls in the failure window recover by retransmission through the survivor: {:?}",
        tally(in_window.iter().copied())
    );

    // 3. Restart it: announced again, takes a share again.
    let restarted = Instant::now();
    let d1 = start_dispatcher(&tb, 0, &keys, "ac-d1b");
    let t = wait_route(&tb, &both, Duration::from_secs(10), "re-announcement");
    println!(
        "restart: announced again {} ms after the restart ({} ms of it waiting for the route)",
        ms(restarted.elapsed()),
        ms(t)
    );
    const BACK: usize = 600;
    let calls = run_calls(
        &socks,
        "r",
        BACK,
        300.0,
        Duration::ZERO,
        Duration::from_secs(10),
        |_| {},
    );
    let n1 = new_dialogs(&tb, 0);
    println!(
        "restart: dispatcher 1 placed {n1} of {BACK}: {:?}",
        tally(calls.iter())
    );
    assert!(all_completed(calls.iter()), "{:?}", tally(calls.iter()));
    assert!(
        n1 >= BACK as u64 / 10,
        "the restarted dispatcher takes a share: {n1}"
    );

    // 4. No processor up on dispatcher 1 (taken out of service there): health fails, the
    //    route is withdrawn; back in service: announced again.
    for id in ["0", "1"] {
        assert_eq!(ctl(&tb, 0, &["disable", id]).0, 0);
    }
    assert_eq!(
        ctl(&tb, 0, &["health"]).0,
        1,
        "no processor up is unhealthy"
    );
    let t = wait_route(
        &tb,
        &only_d2,
        Duration::from_secs(3),
        "withdrawal without processors",
    );
    println!(
        "no processors: withdrawn {} ms after the last was disabled",
        ms(t)
    );
    assert_eq!(ctl(&tb, 0, &["enable", "0"]).0, 0);
    let t = wait_route(
        &tb,
        &both,
        Duration::from_secs(3),
        "re-announcement with a processor",
    );
    println!("one processor back: announced again after {} ms", ms(t));

    let s1 = d1.stop();
    let s2 = d2.stop();
    println!(
        "dispatcher 2 at exit: new dialogs {}, rerouted {}; restarted dispatcher 1: new dialogs {}",
        s2.router.decisions.new_dialogs,
        s2.router.decisions.rerouted,
        s1.router.decisions.new_dialogs
    );
    let _ = std::fs::remove_file(&keys.report);
    let _ = std::fs::remove_file(&keys.tag);
}
