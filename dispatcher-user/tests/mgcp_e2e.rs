//! MGCP dispatch end to end (claims 6 and 14): a call agent runs CRCX → MDCX → DLCX sequences.
//! The CRCX goes to the well-known gateway port 2427; the processor answers from its own port,
//! naming it in the specific endpoint id (`Z: name@[ip]:port`) and in a connection id (`I:`)
//! that encodes the processor. Variant 1 sends MDCX/DLCX to the port named in the answer;
//! variant 2 sends them to 2427 and the dispatcher routes them by the connection id.
//! UDP backend on loopback, XDP backend on the testbed veth with a tshark capture.
mod common;

use std::{
    collections::HashMap,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    time::{Duration, Instant},
};

use xtask::testbed::{self, in_netns, Testbed};

const SEQUENCES: u32 = 2000;
const WINDOW: u32 = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Crcx,
    Mdcx,
    Dlcx,
}

struct Seq {
    step: Step,
    /// Call id (`C:`), fixed for the whole sequence.
    call: u32,
    tid: u32,
    sent_at: Instant,
    first_sent: Instant,
    tries: u32,
    conn: String,
    endpoint: String,
    proc_addr: Option<SocketAddr>,
}

/// What a run of the call agent saw.
#[derive(Debug, Default)]
struct Outcome {
    completed: u32,
    failures: Vec<String>,
    /// Where MDCX/DLCX were sent (destination ports).
    followup_ports: HashMap<u16, u32>,
    crcx_latency_us: Vec<u64>,
    retransmissions: u32,
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
}

/// Runs the call agent on `sock` against the gateway at `gw`; `to_gateway` sends MDCX/DLCX to
/// `gw` instead of the processor port named in the CRCX answer; transaction ids start at
/// `first_tid`. Bounded: 60 s at most.
fn call_agent(sock: &UdpSocket, gw: SocketAddr, to_gateway: bool, first_tid: u32) -> Outcome {
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut out = Outcome::default();
    let mut inflight: HashMap<u32, Seq> = HashMap::new();
    let mut next_seq = 0u32;
    // Transaction ids must not repeat within T-HIST (RFC 3435 §3.5.6): a repeat is a
    // retransmission and gets the stored answer.
    let mut next_tid = first_tid;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    let send = |seq: &Seq, out: &mut Outcome| {
        let (msg, dst) = match seq.step {
            Step::Crcx => (
                format!("CRCX {} {}@mgw.test MGCP 1.0\r\nC: call{}\r\nL: p:20, a:PCMU\r\nM: recvonly\r\n", seq.tid, seq.endpoint, seq.call),
                gw,
            ),
            Step::Mdcx | Step::Dlcx => {
                let dst = if to_gateway { gw } else { seq.proc_addr.unwrap() };
                let verb = if seq.step == Step::Mdcx { "MDCX" } else { "DLCX" };
                let extra = if seq.step == Step::Mdcx { "M: sendrecv\r\n" } else { "" };
                *out.followup_ports.entry(dst.port()).or_default() += 1;
                (
                    format!("{verb} {} {} MGCP 1.0\r\nC: call{}\r\nI: {}\r\n{extra}", seq.tid, seq.endpoint, seq.call, seq.conn),
                    dst,
                )
            }
        };
        sock.send_to(msg.as_bytes(), dst).unwrap();
    };
    while out.completed + (out.failures.len() as u32) < SEQUENCES && Instant::now() < deadline {
        while (inflight.len() as u32) < WINDOW && next_seq < SEQUENCES {
            next_tid += 1;
            let now = Instant::now();
            let s = Seq {
                step: Step::Crcx,
                call: next_tid,
                tid: next_tid,
                sent_at: now,
                first_sent: now,
                tries: 1,
                conn: String::new(),
                endpoint: format!("aaln/{}", next_seq % 512),
                proc_addr: None,
            };
            send(&s, &mut out);
            inflight.insert(next_tid, s);
            next_seq += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let mut words = text.split_whitespace();
                let code: u16 = words.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                let tid: u32 = words.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                let Some(mut seq) = inflight.remove(&tid) else {
                    continue;
                };
                let want = if seq.step == Step::Dlcx { 250 } else { 200 };
                if code != want {
                    out.failures
                        .push(format!("{:?} tid {tid}: got {code}: {text}", seq.step));
                    continue;
                }
                match seq.step {
                    Step::Crcx => {
                        out.crcx_latency_us
                            .push(seq.first_sent.elapsed().as_micros() as u64);
                        let conn = field(&text, "I:").unwrap_or_default().to_owned();
                        let z = field(&text, "Z:").unwrap_or_default();
                        // Z: name@[ip]:port names the processor's own port.
                        let port: Option<u16> =
                            z.rsplit_once("]:").and_then(|(_, p)| p.parse().ok());
                        if conn.is_empty() || port != Some(from.port()) {
                            out.failures.push(format!(
                                "CRCX answer without I: or with Z: not naming {from}: {text}"
                            ));
                            continue;
                        }
                        seq.conn = conn;
                        seq.endpoint = z.to_owned();
                        seq.proc_addr = Some(from);
                        seq.step = Step::Mdcx;
                    }
                    Step::Mdcx => seq.step = Step::Dlcx,
                    Step::Dlcx => {
                        out.completed += 1;
                        continue;
                    }
                }
                next_tid += 1;
                seq.tid = next_tid;
                seq.tries = 1;
                seq.sent_at = Instant::now();
                seq.first_sent = seq.sent_at;
                send(&seq, &mut out);
                inflight.insert(next_tid, seq);
            }
            Err(_) => {
                // RFC 3435 §3.5.5: retransmit the same transaction after a timeout, doubling.
                let now = Instant::now();
                let mut dead = vec![];
                for (tid, seq) in inflight.iter_mut() {
                    let wait = Duration::from_millis(200 << seq.tries.min(4));
                    if now - seq.sent_at > wait {
                        if seq.tries >= 5 {
                            dead.push(*tid);
                        } else {
                            seq.tries += 1;
                            seq.sent_at = now;
                            out.retransmissions += 1;
                            send(seq, &mut out);
                        }
                    }
                }
                for tid in dead {
                    let s = inflight.remove(&tid).unwrap();
                    out.failures
                        .push(format!("{:?} tid {tid} timed out", s.step));
                }
            }
        }
    }
    out
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v.get(((v.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or(0)
}

fn check(out: &mut Outcome, what: &str) {
    assert!(
        out.failures.is_empty() && out.completed == SEQUENCES,
        "{what}: {} completed, {} failures, first: {:?}",
        out.completed,
        out.failures.len(),
        out.failures.iter().take(5).collect::<Vec<_>>()
    );
    let (p50, p99) = (
        percentile(&mut out.crcx_latency_us, 0.5),
        percentile(&mut out.crcx_latency_us, 0.99),
    );
    // Printed for the record (cargo test -- --nocapture); not asserted: timings are noisy.
    println!(
        "{what}: {SEQUENCES} sequences, CRCX→200 p50 {p50} µs, p99 {p99} µs, {} retransmissions",
        out.retransmissions
    );
}

#[test]
fn mgcp_sequences_over_udp_backend_both_variants() {
    let (sy, ports) = common::udp_switchyard(&[], "mgcp-udp");
    let (mgcp, procs) = (ports.mgcp, ports.procs);
    let gw: SocketAddr = ([127, 0, 0, 1], mgcp).into();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = Instant::now();
    let mut direct = call_agent(&sock, gw, false, 1000);
    let secs = t0.elapsed().as_secs_f64();
    check(&mut direct, "udp, follow-ups to the processor port");
    println!("udp: {:.0} sequences/s", f64::from(SEQUENCES) / secs);
    assert!(
        direct
            .followup_ports
            .keys()
            .all(|p| *p == procs || *p == procs + 1),
        "{:?}",
        direct.followup_ports
    );
    let mut via_gw = call_agent(&sock, gw, true, 100_000);
    check(&mut via_gw, "udp, follow-ups to 2427");
    let stats = sy.stop();
    let r = &stats.router.decisions;
    assert_eq!(r.new_dialogs, u64::from(2 * SEQUENCES), "{stats:?}");
    assert_eq!(
        r.mgcp_stateless,
        u64::from(2 * SEQUENCES),
        "variant 2's MDCX+DLCX routed by connection id: {stats:?}"
    );
    let created: u64 = stats
        .processors
        .iter()
        .map(|p| {
            p.stats
                .expect("processor thread ran")
                .mgcp
                .connections_created
        })
        .sum();
    let deleted: u64 = stats
        .processors
        .iter()
        .map(|p| {
            p.stats
                .expect("processor thread ran")
                .mgcp
                .connections_deleted
        })
        .sum();
    assert_eq!(
        (created, deleted),
        (2 * u64::from(SEQUENCES), 2 * u64::from(SEQUENCES)),
        "{stats:?}"
    );
}

#[test]
#[ignore = "needs root, netns and tshark: run `cargo xtask test`"]
fn mgcp_sequences_over_xdp_backend_with_capture() {
    common::require_root();
    let tb = Testbed::up(&common::tb_name("mx"), 1).expect("testbed");
    let sy = common::xdp_switchyard(&tb, &[], "mgcp-xdp");
    let cap = common::Capture::start(&tb.app_ns, &tb.app_if, "mgcp-xdp");

    let sock = in_netns(&tb.app_ns, || UdpSocket::bind((testbed::APP_V4, 2727)))
        .unwrap()
        .unwrap();
    let gw: SocketAddr = format!("{}:2427", testbed::DISP_V4).parse().unwrap();
    let t0 = Instant::now();
    let mut direct = call_agent(&sock, gw, false, 1000);
    let secs = t0.elapsed().as_secs_f64();
    check(&mut direct, "xdp, follow-ups to the processor port");
    println!("xdp: {:.0} sequences/s", f64::from(SEQUENCES) / secs);
    let mut via_gw = call_agent(&sock, gw, true, 100_000);
    check(&mut via_gw, "xdp, follow-ups to 2427");
    let pcap = cap.stop();
    let stats = sy.stop();
    assert_eq!(
        stats.router.decisions.new_dialogs,
        u64::from(2 * SEQUENCES),
        "{stats:?}"
    );

    let fields = |filter: &str, f: &str| -> Vec<String> {
        common::tshark_fields(&pcap, filter, &[f])
            .into_iter()
            .map(|mut r| r.swap_remove(0))
            .collect()
    };
    let mgcp_packets = fields("mgcp", "frame.number");
    assert!(
        mgcp_packets.len() >= 6 * 2 * SEQUENCES as usize,
        "tshark decodes MGCP: {} packets",
        mgcp_packets.len()
    );
    let malformed = fields(
        "_ws.malformed || _ws.expert.severity >= 8388608",
        "frame.number",
    );
    assert!(
        malformed.is_empty(),
        "tshark found malformed packets: {malformed:?}"
    );
    // Variant 1's MDCX/DLCX went to processor ports; every 2xx came from one.
    let followups = fields(
        "mgcp.req.verb == \"MDCX\" || mgcp.req.verb == \"DLCX\"",
        "udp.dstport",
    );
    let to_proc = followups
        .iter()
        .filter(|p| *p == "5070" || *p == "5071")
        .count();
    let to_gw = followups.iter().filter(|p| *p == "2427").count();
    assert_eq!(
        (to_proc, to_gw),
        (2 * SEQUENCES as usize, 2 * SEQUENCES as usize)
    );
    let answers = fields("mgcp.rsp", "udp.srcport");
    assert!(
        answers.iter().all(|p| p == "5070" || p == "5071"),
        "an MGCP answer did not come from a processor port"
    );
    let _ = std::fs::remove_file(PathBuf::from(&pcap));
}
