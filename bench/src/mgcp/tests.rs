//! The call agent with a fake clock: every datagram it would send is inspected.
use super::*;

fn ca(timeout_ms: u64) -> MgcpCa {
    let mut c = MgcpConfig::new(
        "127.0.0.1:2427".parse().unwrap(),
        vec!["127.0.0.1:40000".parse().unwrap()],
    );
    c.max_calls = 8;
    c.timeout_ns = timeout_ms * 1_000_000;
    MgcpCa::new(c)
}

fn sent(out: &Outbox) -> Vec<(SocketAddr, String)> {
    out.iter()
        .map(|(_, d, b)| (d, String::from_utf8(b.to_vec()).unwrap()))
        .collect()
}

fn tid_of(s: &str) -> u32 {
    s.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const MS: u64 = 1_000_000;

#[test]
fn transaction_ids_do_not_repeat_when_one_slot_is_reused() {
    // LIFO slot reuse puts every call on slot 0; ids must still be unique (RFC 3435
    // §3.2.1.2), or the gateway answers a new command from its history.
    let mut c = MgcpConfig::new(
        "127.0.0.1:2427".parse().unwrap(),
        vec!["127.0.0.1:40000".parse().unwrap()],
    );
    c.max_calls = 262_144; // the default: ~3,800 ids per slot before a naive counter wraps
    let mut a = MgcpCa::new(c);
    let mut seen = std::collections::HashSet::new();
    for i in 0..300_000u32 {
        let tid = a.new_tid(i % 2);
        assert!((1..=999_999_999).contains(&tid));
        assert!(seen.insert(tid), "tid {tid} repeated after {i} commands");
        assert_eq!(a.slot_of_tid(tid), Some(i % 2));
    }
}

#[test]
fn full_call_follows_z_endpoint() {
    let mut ca = ca(10_000);
    let mut out = Outbox::new(16, 2048);
    let gw: SocketAddr = "127.0.0.1:2427".parse().unwrap();
    let proc_: SocketAddr = "127.0.0.1:5071".parse().unwrap();
    assert!(ca.start(0, 0, 7, &mut out));
    let m = sent(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].0, gw);
    assert!(m[0].1.starts_with("CRCX "), "{}", m[0].1);
    assert!(m[0].1.contains(" ds/$@[127.0.0.1] MGCP 1.0\r\n"));
    assert!(Message::parse(m[0].1.as_bytes(), &Limits::default()).is_ok());
    let tid = tid_of(&m[0].1);
    out.clear();
    // 200 from the processor port, piggybacked with junk-free provisional first.
    let resp = format!(
        "100 {tid} pending\r\n.\r\n200 {tid} OK\r\nI: abc123\r\nZ: ds/1@[127.0.0.1]:5071\r\n\r\nv=0\r\n"
    );
    ca.on_datagram(2 * MS, proc_, resp.as_bytes(), &mut out);
    let m = sent(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].0, proc_);
    assert!(m[0].1.starts_with("MDCX "));
    assert!(m[0].1.contains(" ds/1@[127.0.0.1]:5071 MGCP 1.0\r\n"));
    assert!(m[0].1.contains("I: abc123\r\n"));
    assert!(Message::parse(m[0].1.as_bytes(), &Limits::default()).is_ok());
    let tid2 = tid_of(&m[0].1);
    assert_ne!(tid, tid2);
    out.clear();
    // A duplicate CRCX answer is stale now.
    ca.on_datagram(3 * MS, proc_, resp.as_bytes(), &mut out);
    assert!(out.is_empty());
    assert_eq!(ca.counters.stale_responses, 2);
    ca.on_datagram(
        4 * MS,
        proc_,
        format!("200 {tid2} OK\r\n").as_bytes(),
        &mut out,
    );
    let m = sent(&out);
    assert!(m[0].1.starts_with("DLCX "));
    assert_eq!(m[0].0, proc_);
    let tid3 = tid_of(&m[0].1);
    out.clear();
    ca.on_datagram(
        5 * MS,
        proc_,
        format!("250 {tid3} OK\r\n").as_bytes(),
        &mut out,
    );
    assert_eq!(ca.counters.completed, 1);
    assert_eq!(ca.in_flight(), 0);
    assert_eq!(ca.crcx_200.hist.len(), 1);
    assert_eq!(ca.mdcx_200.hist.len(), 1);
    assert_eq!(ca.dlcx_250.hist.len(), 1);
    assert_eq!(ca.counters.failures, MgcpFailures::default());
}

#[test]
fn retransmits_same_tid_doubling_then_times_out() {
    let mut ca = ca(3000);
    let mut out = Outbox::new(16, 2048);
    ca.start(0, 0, 0, &mut out);
    let tid = tid_of(&sent(&out)[0].1);
    out.clear();
    let mut at = Vec::new();
    let mut t = 0;
    while t <= 3100 * MS {
        ca.on_timers(t, &mut out);
        for (_, s) in sent(&out) {
            assert_eq!(tid_of(&s), tid);
            at.push(t / MS);
        }
        out.clear();
        t += MS;
    }
    // 200, +400, +800, +1600 (= 3000: the timeout wins at 3000).
    assert_eq!(at, vec![200, 600, 1400]);
    assert_eq!(ca.counters.failures.timeout_crcx, 1);
    assert_eq!(ca.counters.retransmissions.crcx, 3);
    assert_eq!(ca.in_flight(), 0);
}

#[test]
fn error_codes_by_kind_and_provisional_stops_rtx() {
    let mut ca = ca(10_000);
    let mut out = Outbox::new(16, 2048);
    let gw: SocketAddr = "127.0.0.1:2427".parse().unwrap();
    for i in 0..4 {
        ca.start(0, 0, i, &mut out);
    }
    let tids: Vec<u32> = sent(&out).iter().map(|(_, s)| tid_of(s)).collect();
    out.clear();
    ca.on_datagram(
        MS,
        gw,
        format!("409 {} overload\r\n", tids[0]).as_bytes(),
        &mut out,
    );
    ca.on_datagram(
        MS,
        gw,
        format!("510 {} bad\r\n", tids[1]).as_bytes(),
        &mut out,
    );
    ca.on_datagram(
        MS,
        gw,
        format!("101 {} queued\r\n", tids[2]).as_bytes(),
        &mut out,
    );
    ca.on_datagram(MS, gw, b"garbage", &mut out);
    ca.on_datagram(
        MS,
        gw,
        b"CRCX 5 x@y MGCP 1.0\r\nC: 1\r\nM: recvonly\r\n",
        &mut out,
    );
    let f = ca.counters.failures;
    assert_eq!(
        (f.overload, f.code_5xx, f.unparseable, f.unexpected),
        (1, 1, 1, 1)
    );
    ca.on_timers(250 * MS, &mut out);
    // Only the call without any answer is retransmitted.
    let m = sent(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(tid_of(&m[0].1), tids[3]);
}

#[test]
fn endpoint_addresses() {
    assert_eq!(
        endpoint_addr(b"ds/1@[10.0.0.2]:5071"),
        Some("10.0.0.2:5071".parse().unwrap())
    );
    assert_eq!(endpoint_addr(b"ds/1@[10.0.0.2]"), None);
    assert_eq!(endpoint_addr(b"ds/1@gw.example"), None);
    assert_eq!(
        endpoint_addr(b"a@[::1]:7"),
        Some("[::1]:7".parse().unwrap())
    );
}
