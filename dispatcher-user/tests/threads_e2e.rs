//! Several dispatcher threads (`--dispatcher-threads 2`), end to end, on both backends:
//!
//! - xdp on a veth testbed with 2 rx queues (and 2 app-side tx queues, so flows spread by their
//!   hash): traffic from many source ports reaches both threads, and the generator completes
//!   ≥ 2,000 calls with 0 failures;
//! - held INVITEs (the processor answers after a delay) from many sources, sent from both CPUs:
//!   every retransmission, CANCEL and ACK for the 487 lands on the processor that got the
//!   INVITE, though each is sent from the other CPU than the INVITE was;
//! - capacity C per processor shared by 2 threads: more than 2C concurrent INVITEs, the
//!   dispatcher answers the excess 503 itself and no processor ever holds more than C (the
//!   documented bound for units is 0);
//! - udp (an SO_REUSEPORT group steered by source): the same on loopback.
//!
//! The tests in this file run one at a time (a lock): each is a load on a 2-core box.
//! Root tests need `cargo xtask test` (or `cargo test -p dispatcher-user --test threads_e2e --
//! --ignored --test-threads 1` as root).
mod common;

use std::{
    collections::{HashMap, HashSet},
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use dispatcher_user::report::ExitReport;
use xtask::testbed::{self, in_netns, Testbed};

/// The dispatcher threads of every test here.
const THREADS: usize = 2;

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time in this binary (they load both cores).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pins the calling thread to `cpu` (modulo the CPUs there are).
fn pin_to(cpu: usize) {
    let n = std::thread::available_parallelism().map_or(1, usize::from);
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get a
    // valid pointer and the set's size; pid 0 is the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % n, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity to CPU {}: {}",
        cpu % n,
        std::io::Error::last_os_error()
    );
}

/// `switchyard run --backend xdp` on `tb` with 2 dispatcher threads pinned to cores 0 and 1.
fn xdp_threads(tb: &Testbed, extra: &[&str], tag: &str) -> common::Switchyard {
    let mut args = vec!["--dispatcher-threads", "2", "--dispatcher-cores", "0,1"];
    args.extend_from_slice(extra);
    common::xdp_switchyard(tb, &args, tag)
}

/// `switchyard run --backend udp` on loopback with 2 dispatcher threads.
fn udp_threads(extra: &[&str], tag: &str) -> (common::Switchyard, common::UdpPorts) {
    let mut args = vec!["--dispatcher-threads", "2", "--dispatcher-cores", "0,1"];
    args.extend_from_slice(extra);
    common::udp_switchyard(&args, tag)
}

/// A 2-queue veth testbed; fails loudly when the app side did not get 2 tx queues (every
/// datagram would then land on rx queue 0, i.e. on one thread).
fn two_queue_testbed(tag: &str) -> Testbed {
    let tb = Testbed::up(&common::tb_name(tag), 2).expect("testbed");
    // sysfs shows the namespace it was mounted in: `ip netns exec` mounts the app's. A tx-N
    // folder per real tx queue.
    let out = Testbed::exec(&tb.app_ns, "ls")
        .arg(format!("/sys/class/net/{}/queues", tb.app_if))
        .output()
        .expect("ls in the app namespace");
    let tx = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|q| q.starts_with("tx-"))
        .count();
    assert!(
        tx >= 2,
        "the app-side veth has {tx} tx queue(s): Testbed::up must give it as many as the dispatcher side has rx queues"
    );
    tb
}

/// Checks the per-thread rows: one per thread, each thread decided datagrams and placed new
/// dialogs, no thread took less than `min_share` of the datagrams, and the rows add up to the
/// summed counters. `queues`: the xdp backend's queue split (thread t serves queue t).
/// `each_places`: every thread placed a new dialog; not so under a shared capacity, where one
/// thread may use up every unit before the other's first INVITE (it then answers 503s).
fn assert_both_threads(
    stats: &ExitReport,
    min_share: f64,
    queues: bool,
    each_places: bool,
    what: &str,
) {
    let t = &stats.dispatcher_threads;
    assert_eq!(t.len(), THREADS, "{what}: one row per thread: {t:?}");
    let total: u64 = t.iter().map(|r| r.datagrams).sum();
    assert_eq!(
        total,
        stats.datagrams(),
        "{what}: per-thread datagrams add up to the router's: {t:?}"
    );
    assert_eq!(
        t.iter().map(|r| r.new_dialogs).sum::<u64>(),
        stats.router.decisions.new_dialogs,
        "{what}: per-thread new dialogs add up: {t:?}"
    );
    for (i, r) in t.iter().enumerate() {
        assert_eq!(r.index, i, "{what}: {t:?}");
        assert!(
            r.datagrams > 0 && (r.new_dialogs > 0 || !each_places),
            "{what}: thread {i} got nothing (a veth with one tx queue, an RSS/reuseport hash that ignores ports?): {t:?}"
        );
        assert!(
            r.datagrams as f64 >= min_share * total as f64,
            "{what}: thread {i} decided only {} of {total} datagrams: {t:?}",
            r.datagrams
        );
        assert!(r.cpu_ns > 0, "{what}: thread {i} used no CPU: {t:?}");
        if queues {
            assert_eq!(
                r.queues,
                vec![i as u32],
                "{what}: thread t serves queue t: {t:?}"
            );
        } else {
            assert!(
                r.queues.is_empty(),
                "{what}: udp threads serve no queue: {t:?}"
            );
        }
    }
    let cores: Vec<_> = t.iter().map(|r| r.core).collect();
    assert_eq!(cores, [Some(0), Some(1)], "{what}: --dispatcher-cores 0,1");
}

/// Runs the generator (`switchyard-bench sip`) from `ns` (None: this namespace): 2 threads on
/// cores 0 and 1, 32 source sockets each, `rate` calls/s for `secs`; returns its summary.
fn generator(
    ns: Option<&str>,
    target: SocketAddr,
    local_ip: &str,
    rate: u32,
    secs: u32,
) -> serde_json::Value {
    let bench = common::bench_bin();
    let out: PathBuf = std::env::temp_dir().join(format!(
        "sy-threads-gen-{}-{}",
        target.port(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = match ns {
        Some(ns) => Testbed::exec(ns, bench.to_str().unwrap()),
        None => Command::new(&bench),
    };
    let st = cmd
        .args([
            "sip",
            "--target",
            &target.to_string(),
            "--local-ip",
            local_ip,
        ])
        .args([
            "--quiet",
            "--threads",
            "2",
            "--core",
            "0,1",
            "--sockets",
            "32",
        ])
        .args(["--rate", &rate.to_string(), "--duration", &secs.to_string()])
        .args(["--hold-ms", "0", "--timeout-ms", "4000"])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("running switchyard-bench");
    let text = std::fs::read_to_string(out.join("summary.json"))
        .unwrap_or_else(|e| panic!("switchyard-bench ({st}) wrote no summary.json: {e}"));
    let _ = std::fs::remove_dir_all(&out);
    assert!(st.success(), "switchyard-bench exited with {st}");
    serde_json::from_str(&text).unwrap()
}

/// At least 2,000 calls completed, none failed.
fn assert_calls_clean(summary: &serde_json::Value, stats: &ExitReport, what: &str) {
    let n = |k: &str| summary[k].as_u64().unwrap_or(u64::MAX);
    let (completed, failed) = (n("completed_calls"), n("failed_calls"));
    assert!(
        completed >= 2000 && failed == 0,
        "{what}: {completed} calls completed, {failed} failed ({}); router {:?}",
        summary["failures"],
        stats.router.decisions
    );
    let r = &stats.router.decisions;
    assert_eq!(r.new_dialogs, n("offered_calls"), "{what}: {r:?}");
    assert_eq!(
        (r.no_transaction, r.overload, r.rerouted),
        (0, 0, 0),
        "{what}: {r:?}"
    );
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.split("\r\n")
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

/// A request of call `i` (`method` with CSeq 1, the INVITE's branch; `to_tag` for the ACK).
fn request(
    method: &str,
    tag: &str,
    i: usize,
    me: SocketAddr,
    target: SocketAddr,
    to_tag: &str,
) -> String {
    let ip = target.ip();
    format!(
        "{method} sip:svc@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}{i}\r\nMax-Forwards: 70\r\nFrom: <sip:t{i}@{me}>;tag=f{i}\r\nTo: <sip:svc@{ip}>{to_tag}\r\nCall-ID: {tag}-{i}@threads\r\nCSeq: 1 {method}\r\nContact: <sip:t{i}@{me}>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn send(sock: &UdpSocket, msg: &str, to: SocketAddr) {
    loop {
        match sock.send_to(msg.as_bytes(), to) {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) => panic!("send to {to}: {e}"),
        }
    }
}

/// One response as the UAC saw it.
#[derive(Debug, Clone)]
struct Response {
    /// Where it came from.
    from: SocketAddr,
    /// Status code.
    code: u16,
    /// The CSeq method it answers.
    method: String,
    /// Its To-tag.
    to_tag: Option<String>,
    /// Its Retry-After seconds.
    retry: Option<u32>,
}

/// Every response one call got, in arrival order.
#[derive(Debug, Default, Clone)]
struct CallLog {
    responses: Vec<Response>,
}

impl CallLog {
    /// Distinct final status codes answering the INVITE.
    fn invite_finals(&self) -> HashSet<u16> {
        self.responses
            .iter()
            .filter(|r| r.code >= 200 && r.method == "INVITE")
            .map(|r| r.code)
            .collect()
    }

    /// The first final response to `method`.
    fn final_of(&self, method: &str) -> Option<&Response> {
        self.responses
            .iter()
            .find(|r| r.code >= 200 && r.method == method)
    }
}

/// Reads every socket (non-blocking) until `done(logs)` or `until`; ACKs each 487 (same
/// branch, the 487's To-tag) to `target` once.
fn collect(
    socks: &[UdpSocket],
    tag: &str,
    target: SocketAddr,
    until: Instant,
    done: impl Fn(&[CallLog]) -> bool,
) -> Vec<CallLog> {
    let mut logs = vec![CallLog::default(); socks.len()];
    let mut acked = vec![false; socks.len()];
    let mut buf = [0u8; 4096];
    for s in socks {
        s.set_nonblocking(true).unwrap();
    }
    while Instant::now() < until && !done(&logs) {
        let mut any = false;
        for (i, s) in socks.iter().enumerate() {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                any = true;
                let text = String::from_utf8_lossy(&buf[..n]);
                let Some(code) = text.get(8..11).and_then(|c| c.parse::<u16>().ok()) else {
                    continue;
                };
                let method = header(&text, "CSeq")
                    .and_then(|c| c.split_whitespace().nth(1))
                    .unwrap_or("")
                    .to_owned();
                let to_tag = header(&text, "To")
                    .and_then(|t| t.split(";tag=").nth(1))
                    .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned());
                let retry = header(&text, "Retry-After").and_then(|v| v.parse().ok());
                if code == 487 && method == "INVITE" && !acked[i] {
                    acked[i] = true;
                    let me = s.local_addr().unwrap();
                    let t = format!(";tag={}", to_tag.as_deref().unwrap_or(""));
                    send(s, &request("ACK", tag, i, me, target, &t), target);
                }
                logs[i].responses.push(Response {
                    from,
                    code,
                    method,
                    to_tag,
                    retry,
                });
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    logs
}

/// The processor id a processor-minted To-tag carries (its first 4 hex digits).
fn tag_processor(tag: &str) -> Option<u16> {
    u16::from_str_radix(tag.get(..4)?, 16).ok()
}

/// What [`held_invites`] sent.
struct Held {
    logs: Vec<CallLog>,
    cancelled: Vec<bool>,
}

/// The held scenario: call i's INVITE sent from CPU i % 2 over socket i, its retransmission
/// (300 ms later) and, for every third call, its CANCEL (600 ms) from the other CPU; the
/// processors answer after `--answer-delay-ms 1500`. Collects every response, ACKing the 487s.
fn held_invites(socks: Vec<UdpSocket>, target: SocketAddr, tag: &'static str) -> Held {
    let n = socks.len();
    let cancelled: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let start = Instant::now();
    let senders: Vec<_> = (0..2)
        .map(|cpu| {
            let socks: Vec<(usize, UdpSocket)> = socks
                .iter()
                .enumerate()
                .map(|(i, s)| (i, s.try_clone().unwrap()))
                .collect();
            let cancelled = cancelled.clone();
            std::thread::spawn(move || {
                pin_to(cpu);
                let at = |ms: u64| {
                    if let Some(w) =
                        (start + Duration::from_millis(ms)).checked_duration_since(Instant::now())
                    {
                        std::thread::sleep(w);
                    }
                };
                for (i, s) in socks.iter().filter(|(i, _)| i % 2 == cpu) {
                    let me = s.local_addr().unwrap();
                    send(s, &request("INVITE", tag, *i, me, target, ""), target);
                }
                at(300);
                for (i, s) in socks.iter().filter(|(i, _)| i % 2 != cpu) {
                    let me = s.local_addr().unwrap();
                    send(s, &request("INVITE", tag, *i, me, target, ""), target);
                }
                at(600);
                for (i, s) in socks.iter().filter(|(i, _)| i % 2 != cpu && cancelled[*i]) {
                    let me = s.local_addr().unwrap();
                    send(s, &request("CANCEL", tag, *i, me, target, ""), target);
                }
            })
        })
        .collect();
    let c2 = cancelled.clone();
    let logs = collect(
        &socks,
        tag,
        target,
        start + Duration::from_secs(8),
        move |logs| {
            logs.iter().zip(&c2).all(|(l, &c)| {
                let inv = l.final_of("INVITE").is_some();
                if c {
                    inv && l.final_of("CANCEL").is_some()
                } else {
                    inv
                }
            })
        },
    );
    for s in senders {
        s.join().expect("sender thread");
    }
    // Late 200 retransmissions (Timer G) change nothing; the ACKs for the 487s are out.
    std::thread::sleep(Duration::from_millis(300));
    Held { logs, cancelled }
}

/// Every held call was answered by one processor only: all its responses came from one
/// processor port (`proc_port(id)` for the id in its final's To-tag), its INVITE got exactly
/// one final (487 when cancelled, else 200), its CANCEL a 200; and the counters say every
/// retransmission, CANCEL and 487-ACK followed its INVITE's affinity entry on its thread.
fn assert_held(h: &Held, stats: &ExitReport, proc_port: impl Fn(u16) -> u16, what: &str) {
    let n = h.logs.len() as u64;
    let n_cancel = h.cancelled.iter().filter(|&&c| c).count() as u64;
    let mut per_proc = HashMap::<u16, u64>::new();
    for (i, (l, &c)) in h.logs.iter().zip(&h.cancelled).enumerate() {
        let finals = l.invite_finals();
        let want = if c { 487 } else { 200 };
        assert_eq!(
            finals,
            HashSet::from([want]),
            "{what}: call {i} (cancelled: {c}) INVITE finals: {l:?}"
        );
        let fin = l.final_of("INVITE").unwrap();
        let id = fin
            .to_tag
            .as_deref()
            .and_then(tag_processor)
            .unwrap_or_else(|| panic!("{what}: call {i}: final without a processor tag: {l:?}"));
        *per_proc.entry(id).or_default() += 1;
        let sources: HashSet<SocketAddr> = l.responses.iter().map(|r| r.from).collect();
        assert_eq!(
            sources.len(),
            1,
            "{what}: call {i} answered from several places (a retransmission or CANCEL reached another processor): {l:?}"
        );
        assert_eq!(
            fin.from.port(),
            proc_port(id),
            "{what}: call {i}: answers come from processor {id}'s port: {l:?}"
        );
        if c {
            assert_eq!(
                l.final_of("CANCEL").map(|r| r.code),
                Some(200),
                "{what}: call {i}'s CANCEL: {l:?}"
            );
        }
    }
    assert!(
        per_proc.len() == 2,
        "{what}: both processors got calls: {per_proc:?}"
    );
    let r = &stats.router.decisions;
    assert_eq!(
        r.new_dialogs, n,
        "{what}: a retransmission placed again is a new dialog: {r:?}"
    );
    assert_eq!(
        r.retransmissions, n,
        "{what}: every retransmission followed its INVITE: {r:?}"
    );
    assert_eq!(
        r.cancels, n_cancel,
        "{what}: every CANCEL followed its INVITE: {r:?}"
    );
    assert_eq!(
        r.acks_affinity, n_cancel,
        "{what}: every ACK for a 487 followed its INVITE (not its To-tag): {r:?}"
    );
    assert_eq!(
        (r.no_transaction, r.in_dialog, r.rerouted, r.overload),
        (0, 0, 0, 0),
        "{what}: {r:?}"
    );
    let procs: Vec<_> = stats
        .processors
        .iter()
        .map(|p| p.stats.expect("processor thread panicked").sip)
        .collect();
    let sum = |f: fn(&processor::sip::UasStats) -> u64| procs.iter().map(f).sum::<u64>();
    assert_eq!(
        sum(|s| s.dialogs_started),
        n,
        "{what}: one dialog per call: {procs:?}"
    );
    assert_eq!(sum(|s| s.cancels), n_cancel, "{what}: {procs:?}");
    assert_eq!(
        sum(|s| s.not_found_481),
        0,
        "{what}: no CANCEL/ACK met a processor without its INVITE: {procs:?}"
    );
    assert_eq!(
        sum(|s| s.retransmissions_absorbed),
        n,
        "{what}: each INVITE retransmission was absorbed by the transaction it belongs to: {procs:?}"
    );
    for (k, s) in procs.iter().enumerate() {
        assert_eq!(
            s.dialogs_started,
            per_proc.get(&(k as u16)).copied().unwrap_or(0),
            "{what}: processor {k}'s dialogs are the calls its tag answered: {procs:?}"
        );
    }
}

/// The capacity scenario's answers: each call's final code, its Retry-After and its source.
struct Burst {
    finals: Vec<Option<(u16, Option<u32>, SocketAddr)>>,
}

/// `socks.len()` new INVITEs at once, half from each CPU, never acknowledged or ended; waits
/// (the processors answer after the answer delay) until each has a final answer or 8 s pass.
fn invite_burst(socks: Vec<UdpSocket>, target: SocketAddr, tag: &'static str) -> Burst {
    let start = Instant::now();
    let senders: Vec<_> = (0..2)
        .map(|cpu| {
            let socks: Vec<(usize, UdpSocket)> = socks
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == cpu)
                .map(|(i, s)| (i, s.try_clone().unwrap()))
                .collect();
            std::thread::spawn(move || {
                pin_to(cpu);
                for (i, s) in &socks {
                    let me = s.local_addr().unwrap();
                    send(s, &request("INVITE", tag, *i, me, target, ""), target);
                }
            })
        })
        .collect();
    let logs = collect(
        &socks,
        tag,
        target,
        start + Duration::from_secs(8),
        |logs| logs.iter().all(|l| l.final_of("INVITE").is_some()),
    );
    for s in senders {
        s.join().expect("sender thread");
    }
    Burst {
        finals: logs
            .iter()
            .map(|l| l.final_of("INVITE").map(|r| (r.code, r.retry, r.from)))
            .collect(),
    }
}

/// More than 2C INVITEs against 2 processors of capacity C: exactly 2C got a 200 (from a
/// processor), the rest a 503 from the dispatcher (its Retry-After, its address), and no
/// processor ever held more than C dialogs or refused one itself.
fn assert_capacity(b: &Burst, stats: &ExitReport, cap: u64, target: SocketAddr, what: &str) {
    let n = b.finals.len() as u64;
    let missing = b.finals.iter().filter(|f| f.is_none()).count();
    assert_eq!(missing, 0, "{what}: {missing} INVITEs got no final answer");
    let finals: Vec<_> = b.finals.iter().flatten().collect();
    let ok = finals.iter().filter(|f| f.0 == 200).count() as u64;
    let busy: Vec<_> = finals.iter().filter(|f| f.0 == 503).collect();
    let r = &stats.router.decisions;
    let procs: Vec<_> = stats
        .processors
        .iter()
        .map(|p| p.stats.expect("processor thread panicked").sip)
        .collect();
    let summary = format!(
        "{n} INVITEs: {ok} × 200, {} × 503; router new_dialogs {}, overload {}; processors' dialogs_started {:?}, rejected {:?}; threads {:?}",
        busy.len(),
        r.new_dialogs,
        r.overload,
        procs.iter().map(|s| s.dialogs_started).collect::<Vec<_>>(),
        procs.iter().map(|s| s.rejected).collect::<Vec<_>>(),
        stats.dispatcher_threads
    );
    eprintln!("{what}: {summary}");
    assert_eq!(
        ok + busy.len() as u64,
        n,
        "{what}: only 200 and 503: {summary}"
    );
    assert!(
        busy.iter().all(|f| f.1 == Some(3) && f.2 == target),
        "{what}: every 503 is the dispatcher's (Retry-After 3, from {target}): {summary}"
    );
    assert_eq!(r.overload, busy.len() as u64, "{what}: {summary}");
    assert_eq!(
        r.new_dialogs, ok,
        "{what}: only admitted INVITEs reached a processor: {summary}"
    );
    for (k, s) in procs.iter().enumerate() {
        // Nothing ended (no ACK, BYE or CANCEL; Timer H is 32 s): started = held at once.
        assert_eq!(s.dialogs_ended, 0, "{what}: {summary}");
        assert!(
            s.dialogs_started <= cap,
            "{what}: processor {k} held {} dialogs, over its capacity {cap} (the documented bound is 0 units): {summary}",
            s.dialogs_started
        );
        // The processor's own refusals (`rejected`, the counter behind its LoadReport's
        // rejected_units): the dispatcher never handed it more than it had room for.
        assert_eq!(
            (s.rejected, s.overload_503),
            (0, 0),
            "{what}: processor {k}: {summary}"
        );
    }
    // Refused INVITEs leave room for later ones, so the pool ends full: a race between the
    // threads may refuse one early (a reservation undone), never admit one too many.
    assert_eq!(ok, 2 * cap, "{what}: the pool fills exactly: {summary}");
}

/// `n` UDP sockets bound to `ip` port 0 in namespace `ns`.
fn sockets_in(ns: &str, ip: &'static str, n: usize) -> Vec<UdpSocket> {
    in_netns(ns, move || {
        (0..n)
            .map(|_| UdpSocket::bind((ip, 0)).expect("bind a source socket"))
            .collect::<Vec<_>>()
    })
    .unwrap()
}

fn loopback_sockets(n: usize) -> Vec<UdpSocket> {
    (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind a source socket"))
        .collect()
}

#[test]
#[ignore = "needs root, netns, the eBPF object and the built switchyard-bench: run `cargo xtask test`"]
fn xdp_two_queues_two_threads_calls_from_many_ports_reach_both_threads() {
    let _serial = serial();
    common::require_root();
    let tb = two_queue_testbed("ta");
    let sy = xdp_threads(&tb, &[], "ta");
    let target: SocketAddr = format!("{}:5060", testbed::DISP_V4).parse().unwrap();
    let summary = generator(Some(&tb.app_ns), target, testbed::APP_V4, 500, 5);
    let stats = sy.stop();
    eprintln!(
        "xdp, 2 threads: {} calls completed; threads {:?}",
        summary["completed_calls"], stats.dispatcher_threads
    );
    assert_calls_clean(&summary, &stats, "xdp, 2 threads");
    assert_both_threads(&stats, 0.1, true, true, "xdp, 2 threads");
    let rx = stats.afxdp.expect("afxdp counters").rings.rx_frames;
    assert_eq!(rx, stats.datagrams(), "every frame decided: {stats:?}");
}

#[test]
#[ignore = "needs root, netns and the eBPF object: run `cargo xtask test`"]
fn xdp_two_threads_held_invites_keep_their_processor() {
    let _serial = serial();
    common::require_root();
    let tb = two_queue_testbed("tb");
    let sy = xdp_threads(&tb, &["--answer-delay-ms", "1500"], "tb");
    let target: SocketAddr = format!("{}:5060", testbed::DISP_V4).parse().unwrap();
    let socks = sockets_in(&tb.app_ns, testbed::APP_V4, 96);
    let held = held_invites(socks, target, "hx");
    let stats = sy.stop();
    assert_held(&held, &stats, |id| 5070 + id, "xdp, 2 threads, held");
    assert_both_threads(&stats, 0.1, true, true, "xdp, 2 threads, held");
}

#[test]
#[ignore = "needs root, netns and the eBPF object: run `cargo xtask test`"]
fn xdp_two_threads_never_place_more_than_capacity_on_a_processor() {
    let _serial = serial();
    common::require_root();
    const CAP: u64 = 20;
    let tb = two_queue_testbed("tc");
    let sy = xdp_threads(
        &tb,
        &[
            "--capacity",
            &CAP.to_string(),
            "--answer-delay-ms",
            "1000",
            "--retry-after",
            "3",
        ],
        "tc",
    );
    let target: SocketAddr = format!("{}:5060", testbed::DISP_V4).parse().unwrap();
    let socks = sockets_in(&tb.app_ns, testbed::APP_V4, 160);
    let burst = invite_burst(socks, target, "cx");
    let stats = sy.stop();
    assert_capacity(&burst, &stats, CAP, target, "xdp, 2 threads, capacity");
    assert_both_threads(&stats, 0.1, true, false, "xdp, 2 threads, capacity");
}

#[test]
#[ignore = "needs the built switchyard-bench; a 5-second load run: run `cargo xtask test`"]
fn udp_two_threads_calls_from_many_ports_reach_both_threads() {
    let _serial = serial();
    let (sy, ports) = udp_threads(&[], "td");
    let target: SocketAddr = format!("127.0.0.1:{}", ports.sip).parse().unwrap();
    let summary = generator(None, target, "127.0.0.1", 500, 5);
    let stats = sy.stop();
    eprintln!(
        "udp, 2 threads: {} calls completed; threads {:?}",
        summary["completed_calls"], stats.dispatcher_threads
    );
    assert_calls_clean(&summary, &stats, "udp, 2 threads");
    assert_both_threads(&stats, 0.1, false, true, "udp, 2 threads");
}

#[test]
fn udp_two_threads_held_invites_keep_their_processor() {
    let _serial = serial();
    let (sy, ports) = udp_threads(&["--answer-delay-ms", "1500"], "te");
    let target: SocketAddr = format!("127.0.0.1:{}", ports.sip).parse().unwrap();
    let held = held_invites(loopback_sockets(96), target, "hu");
    let stats = sy.stop();
    let base = ports.procs;
    assert_held(&held, &stats, |id| base + id, "udp, 2 threads, held");
    assert_both_threads(&stats, 0.1, false, true, "udp, 2 threads, held");
}

#[test]
fn udp_two_threads_never_place_more_than_capacity_on_a_processor() {
    let _serial = serial();
    const CAP: u64 = 20;
    let (sy, ports) = udp_threads(
        &[
            "--capacity",
            &CAP.to_string(),
            "--answer-delay-ms",
            "1000",
            "--retry-after",
            "3",
        ],
        "tf",
    );
    let target: SocketAddr = format!("127.0.0.1:{}", ports.sip).parse().unwrap();
    let burst = invite_burst(loopback_sockets(160), target, "cu");
    let stats = sy.stop();
    assert_capacity(&burst, &stats, CAP, target, "udp, 2 threads, capacity");
    assert_both_threads(&stats, 0.1, false, false, "udp, 2 threads, capacity");
}
