//! Gateway behaviour per verb and error code, the transaction history and piggybacking.
use std::{sync::atomic::Ordering, time::Duration};

use super::*;

const MS: u64 = 1_000_000;

fn cfg() -> GatewayConfig {
    let mut c = GatewayConfig::new(5, 8, "10.0.0.2:5071".parse().unwrap());
    c.media_ports = (30000, 30003);
    c.tag_key = crate::deploy::tag_key(b"gateway test secret");
    c
}

fn ca() -> SocketAddr {
    "192.0.2.20:2727".parse().unwrap()
}

struct Resp {
    dst: SocketAddr,
    text: String,
}

impl Resp {
    fn code(&self) -> u16 {
        self.text
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or(999)
    }
    fn tid(&self) -> u32 {
        self.text
            .split([' ', '\r'])
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    }
    fn param(&self, name: &str) -> Option<&str> {
        self.text
            .split("\r\n")
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(": ").or(r.strip_prefix(":")))
            })
    }
}

fn send_from(gw: &mut Gateway, now: u64, src: SocketAddr, msg: &str) -> Vec<Resp> {
    let mut out = Outbox::new();
    gw.on_message(now, src, msg.as_bytes(), &mut out);
    out.iter()
        .map(|(dst, b)| Resp {
            dst,
            text: String::from_utf8_lossy(b).into_owned(),
        })
        .collect()
}

fn send(gw: &mut Gateway, now: u64, msg: &str) -> Vec<Resp> {
    send_from(gw, now, ca(), msg)
}

fn one(gw: &mut Gateway, msg: &str) -> Resp {
    let mut r = send(gw, 0, msg);
    assert_eq!(r.len(), 1, "{msg}");
    r.remove(0)
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.30\r\ns=-\r\nc=IN IP4 192.0.2.30\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn crcx(tid: u32, call: &str) -> String {
    format!("CRCX {tid} aaln/$@gw.example MGCP 1.0\r\nC: {call}\r\nL: p:20, a:PCMU\r\nM: recvonly\r\nN: ca@192.0.2.20:2727\r\n")
}

/// CRCX; returns (connection id, specific endpoint).
fn open(gw: &mut Gateway, tid: u32, call: &str) -> (String, String) {
    let r = one(gw, &crcx(tid, call));
    assert_eq!(r.code(), 200, "{}", r.text);
    (
        r.param("I").unwrap().to_string(),
        r.param("Z").unwrap().to_string(),
    )
}

#[test]
fn crcx_answers_processor_tagged_connection_endpoint_and_sdp() {
    let mut gw = Gateway::new(cfg());
    let r = one(&mut gw, &crcx(100, "A3C47F21456789F0"));
    assert_eq!((r.code(), r.tid(), r.dst), (200, 100, ca()));
    let i = r.param("I").unwrap();
    assert!(i.len() <= 32 && i.bytes().all(|b| b.is_ascii_hexdigit()));
    let keys = wire::tag::TagKeys::single(crate::deploy::tag_key(b"gateway test secret"));
    assert_eq!(wire::tag::decode(&keys, i.as_bytes(), 8), Ok(5));
    let other = wire::tag::TagKeys::single(crate::deploy::tag_key(b"another secret"));
    assert_eq!(
        wire::tag::decode(&other, i.as_bytes(), 8),
        Err(wire::tag::TagError::BadMac),
        "minted under the configured key"
    );
    let z = r.param("Z").unwrap();
    assert!(
        z.starts_with("aaln/") && z.ends_with("@[10.0.0.2]:5071"),
        "{z}"
    );
    assert!(!z.contains('$'));
    assert!(r.text.contains("\r\n\r\nv=0\r\n"));
    assert!(r.text.contains("m=audio 30000 RTP/AVP 0\r\n"));
    assert!(r.text.contains("a=recvonly\r\n") && r.text.contains("a=ptime:20\r\n"));
    assert_eq!(gw.active_connections(), 1);
    assert_eq!(gw.load().active.load(Ordering::Relaxed), 1);
    // The Z endpoint parses with wire and names the processor's port.
    let cmd = format!("AUEP 101 {z} MGCP 1.0\r\n");
    let m = wire::mgcp::Message::parse(cmd.as_bytes(), &Limits::default()).unwrap();
    let Kind::Command { endpoint, .. } = m.kind() else {
        panic!()
    };
    assert_eq!(endpoint.port, Some(5071));
}

#[test]
fn crcx_with_remote_sdp_answers_it() {
    let mut gw = Gateway::new(cfg());
    let r = one(
        &mut gw,
        &format!("CRCX 1 ds/1@gw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\n\r\n{SDP}"),
    );
    assert_eq!(r.code(), 200);
    assert_eq!(r.param("Z"), Some("ds/1@[10.0.0.2]:5071"));
    assert!(
        r.text.contains("m=audio 30000 RTP/AVP 0\r\na=sendrecv\r\n"),
        "{}",
        r.text
    );
}

#[test]
fn crcx_errors() {
    let mut gw = Gateway::new(cfg());
    assert_eq!(
        one(&mut gw, "CRCX 1 a@gw MGCP 1.0\r\nM: recvonly\r\n").code(),
        516
    );
    assert_eq!(one(&mut gw, "CRCX 2 a@gw MGCP 1.0\r\nC: 1\r\n").code(), 510);
    assert_eq!(
        one(&mut gw, "CRCX 3 a@gw MGCP 1.0\r\nC: 1\r\nM: sideways\r\n").code(),
        517
    );
    assert_eq!(
        one(
            &mut gw,
            "CRCX 4 a@gw MGCP 1.0\r\nC: 1\r\nM: recvonly\r\nL: a:AMR\r\n"
        )
        .code(),
        532
    );
    assert_eq!(
        one(&mut gw, "CRCX 5 a/*@gw MGCP 1.0\r\nC: 1\r\nM: recvonly\r\n").code(),
        510
    );
    open(&mut gw, 6, "1");
    open(&mut gw, 7, "2");
    let r = one(&mut gw, &crcx(8, "3"));
    assert_eq!(r.code(), 502, "ports exhausted");
    assert_eq!(gw.load().rejected_units.load(Ordering::Relaxed), 6);
    assert_eq!(gw.load().released_units.load(Ordering::Relaxed), 6);
    assert_eq!(gw.stats().errors, 6);
}

#[test]
fn mdcx_updates_mode_and_sdp_and_checks_ids() {
    let mut gw = Gateway::new(cfg());
    let (i, z) = open(&mut gw, 1, "C1");
    let r = one(
        &mut gw,
        &format!("MDCX 2 {z} MGCP 1.0\r\nC: c1\r\nI: {i}\r\nM: sendrecv\r\n\r\n{SDP}"),
    );
    assert_eq!(r.code(), 200, "{}", r.text);
    assert!(r.text.contains("a=sendrecv\r\n") && r.text.contains(" 2 IN IP4 10.0.0.2"));
    assert!(r.text.contains("m=audio 30000 "));
    let upper = i.to_ascii_uppercase();
    assert_eq!(
        one(
            &mut gw,
            &format!("MDCX 3 {z} MGCP 1.0\r\nI: {upper}\r\nM: inactive\r\n")
        )
        .code(),
        200,
        "ids are case-insensitive"
    );
    assert_eq!(
        one(
            &mut gw,
            &format!("MDCX 4 {z} MGCP 1.0\r\nI: ffff\r\nM: inactive\r\n")
        )
        .code(),
        515
    );
    assert_eq!(
        one(
            &mut gw,
            &format!("MDCX 5 {z} MGCP 1.0\r\nC: other\r\nI: {i}\r\n")
        )
        .code(),
        516
    );
    assert_eq!(
        one(
            &mut gw,
            &format!("MDCX 6 {z} MGCP 1.0\r\nI: {i}\r\nM: nope\r\n")
        )
        .code(),
        517
    );
    assert_eq!(
        one(&mut gw, &format!("MDCX 7 {z} MGCP 1.0\r\nM: sendrecv\r\n")).code(),
        515
    );
}

#[test]
fn dlcx_by_connection_call_and_endpoint() {
    let mut gw = Gateway::new(cfg());
    let (i, z) = open(&mut gw, 1, "c1");
    let r = one(
        &mut gw,
        &format!("DLCX 2 {z} MGCP 1.0\r\nC: c1\r\nI: {i}\r\n"),
    );
    assert_eq!(r.code(), 250);
    assert_eq!(
        r.param("P"),
        Some("PS=0, OS=0, PR=0, OR=0, PL=0, JI=0, LA=0")
    );
    assert_eq!(gw.active_connections(), 0);
    assert_eq!(gw.load().released_units.load(Ordering::Relaxed), 1);
    assert_eq!(gw.load().active.load(Ordering::Relaxed), 0);
    assert_eq!(
        one(&mut gw, &format!("DLCX 3 {z} MGCP 1.0\r\nI: {i}\r\n")).code(),
        515
    );
    // By call id: 516 when unknown.
    let (_, z2) = open(&mut gw, 4, "c2");
    assert_eq!(
        one(&mut gw, &format!("DLCX 5 {z2} MGCP 1.0\r\nC: nosuch\r\n")).code(),
        516
    );
    assert_eq!(
        one(&mut gw, &format!("DLCX 6 {z2} MGCP 1.0\r\nC: C2\r\n")).code(),
        250
    );
    assert_eq!(gw.active_connections(), 0);
    // By endpoint wildcard: everything.
    open(&mut gw, 7, "c3");
    open(&mut gw, 8, "c4");
    let r = one(&mut gw, "DLCX 9 aaln/*@gw MGCP 1.0\r\n");
    assert_eq!(r.code(), 250);
    assert_eq!(gw.active_connections(), 0);
    assert_eq!(gw.stats().connections_deleted, 4);
    // Ports came back.
    open(&mut gw, 10, "c5");
}

#[test]
fn audit_and_notification_requests() {
    let mut gw = Gateway::new(cfg());
    let (i, z) = open(&mut gw, 1, "c1");
    let r = one(
        &mut gw,
        &format!("AUCX 2 {z} MGCP 1.0\r\nI: {i}\r\nF: C,N,L,M,LC,P\r\n"),
    );
    assert_eq!(r.code(), 200);
    assert_eq!(r.param("C"), Some("c1"));
    assert_eq!(r.param("M"), Some("recvonly"));
    assert_eq!(r.param("N"), Some("ca@192.0.2.20:2727"));
    assert_eq!(r.param("L"), Some("a:PCMU, p:20"));
    assert!(r.param("P").is_some() && r.text.contains("m=audio 30000 "));
    assert_eq!(
        one(&mut gw, &format!("AUCX 3 {z} MGCP 1.0\r\nI: 1234\r\n")).code(),
        515
    );
    let r = one(&mut gw, &format!("AUEP 4 {z} MGCP 1.0\r\nF: I,N,A\r\n"));
    assert_eq!(r.code(), 200);
    assert_eq!(r.param("I"), Some(i.as_str()));
    assert!(r.param("A").unwrap().contains("PCMU"));
    assert_eq!(
        one(&mut gw, "RQNT 5 aaln/1@gw MGCP 1.0\r\nX: 0123\r\nR: hd\r\n").code(),
        200
    );
    assert_eq!(
        one(&mut gw, "EPCF 6 aaln/1@gw MGCP 1.0\r\nB: e:mu\r\n").code(),
        200
    );
}

#[test]
fn unknown_verb_and_malformed_commands() {
    let mut gw = Gateway::new(cfg());
    assert_eq!(one(&mut gw, "ABCD 1 a@gw MGCP 1.0\r\n").code(), 504);
    assert_eq!(one(&mut gw, "NTFY 2 a@gw MGCP 1.0\r\n").code(), 504);
    let r = one(&mut gw, "CRCX 3 a@gw MGCP 1.0\r\nM recvonly\r\n");
    assert_eq!((r.code(), r.tid()), (510, 3));
    assert!(r.text.contains("malformed parameter line"), "{}", r.text);
    assert_eq!(
        one(&mut gw, "CRCX 4 a@gw MGCP 1.0\r\nQQ: 1\r\n").code(),
        511
    );
    assert_eq!(one(&mut gw, "CRCX 5 a@gw MGCP 2.0\r\n").code(), 528);
    assert!(send(&mut gw, 0, "CRCX x a@gw MGCP 1.0\r\n").is_empty());
    assert!(send(&mut gw, 0, "\u{1}\u{2}").is_empty());
    assert!(
        send(&mut gw, 0, "200 77 OK\r\n").is_empty(),
        "stray responses are not answered"
    );
    assert_eq!(gw.stats().malformed, 3);
}

#[test]
fn retransmitted_command_replays_response_without_reexecuting() {
    let mut c = cfg();
    c.media_ports = (30000, 30100);
    let mut gw = Gateway::new(c);
    let a = one(&mut gw, &crcx(10, "c1"));
    let b = one(&mut gw, &crcx(10, "c1"));
    assert_eq!(a.text, b.text);
    assert_eq!(gw.active_connections(), 1);
    assert_eq!(gw.stats().retransmissions_absorbed, 1);
    // Same tid from another call agent is a different transaction.
    let c = send_from(
        &mut gw,
        0,
        "192.0.2.21:2727".parse().unwrap(),
        &crcx(10, "c1"),
    );
    assert_eq!(c[0].code(), 200);
    assert_ne!(c[0].param("I"), a.param("I"));
    // After T-HIST the history is gone: the tid would be executed again.
    let mut out = Outbox::new();
    gw.on_timer(31_000 * MS, &mut out);
    assert!(out.is_empty());
    assert_eq!(gw.next_deadline(), None);
    let d = send(&mut gw, 31_000 * MS, &crcx(10, "c1"));
    assert_ne!(d[0].param("I"), a.param("I"));
    assert_eq!(gw.active_connections(), 3);
}

#[test]
fn k_parameter_releases_history() {
    let mut gw = Gateway::new(cfg());
    one(&mut gw, &crcx(10, "c1"));
    one(&mut gw, "RQNT 11 aaln/1@gw MGCP 1.0\r\nX: 1\r\n");
    // K acknowledges 10-11: a later reuse of tid 10 is a new command.
    one(
        &mut gw,
        "RQNT 12 aaln/1@gw MGCP 1.0\r\nK: 10-11\r\nX: 1\r\n",
    );
    let r = one(&mut gw, &crcx(10, "c1"));
    assert_eq!(r.code(), 200);
    assert_eq!(gw.active_connections(), 2);
    assert_eq!(gw.stats().retransmissions_absorbed, 0);
}

#[test]
fn delayed_answer_sends_100_then_final_until_000() {
    let mut c = cfg();
    c.answer_delay = Duration::from_millis(50);
    let mut gw = Gateway::new(c);
    let r = one(&mut gw, &crcx(10, "c1"));
    assert_eq!(r.code(), 100);
    // Retransmission while pending: the 100 again.
    assert_eq!(send(&mut gw, 10 * MS, &crcx(10, "c1"))[0].code(), 100);
    assert_eq!(gw.next_deadline(), Some(50 * MS));
    let mut out = Outbox::new();
    gw.on_timer(50 * MS, &mut out);
    let finals: Vec<_> = out
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(finals.len(), 1);
    assert!(
        finals[0].starts_with("200 10 OK\r\n") && finals[0].contains("\r\nK: \r\n"),
        "{}",
        finals[0]
    );
    out.clear();
    gw.on_timer(250 * MS, &mut out);
    assert_eq!(out.len(), 1, "retransmitted until acknowledged");
    out.clear();
    assert!(send(&mut gw, 260 * MS, "000 10\r\n").is_empty());
    gw.on_timer(10_000 * MS, &mut out);
    assert!(out.is_empty());
    assert_eq!(gw.stats().response_acks, 1);
    // Retransmitted command after the final: the final again.
    assert_eq!(send(&mut gw, 11_000 * MS, &crcx(10, "c1"))[0].code(), 200);
}

#[test]
fn piggybacked_commands_are_each_answered() {
    let mut gw = Gateway::new(cfg());
    let (i, z) = open(&mut gw, 1, "c1");
    let dg = format!("MDCX 2 {z} MGCP 1.0\r\nI: {i}\r\nM: sendrecv\r\n.\r\nRQNT 3 {z} MGCP 1.0\r\nX: 1\r\n.\r\nDLCX 4 {z} MGCP 1.0\r\nI: {i}\r\n");
    let r = send(&mut gw, 0, &dg);
    assert_eq!(
        r.iter().map(|x| (x.code(), x.tid())).collect::<Vec<_>>(),
        [(200, 2), (200, 3), (250, 4)]
    );
    assert_eq!(gw.active_connections(), 0);
}

#[test]
fn shared_load_report_with_sip() {
    let load = LoadReport::new(50);
    let mut gw = Gateway::with_load(cfg(), Arc::clone(&load));
    let r = one(
        &mut gw,
        "CRCX 1 a@gw MGCP 1.0\r\nC: 1\r\nM: recvonly\r\nX-Size: 4\r\n",
    );
    assert_eq!(r.code(), 200);
    assert_eq!(load.active.load(Ordering::Relaxed), 1);
    let i = r.param("I").unwrap();
    one(&mut gw, &format!("DLCX 2 a@gw MGCP 1.0\r\nI: {i}\r\n"));
    assert_eq!(load.released_units.load(Ordering::Relaxed), 4);
    assert_eq!(load.active.load(Ordering::Relaxed), 0);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut gw = Gateway::new(cfg());
    let base = format!(
        "{}.\r\nMDCX 2 a@gw MGCP 1.0\r\nI: 1\r\nK: 1-3\r\n\r\n{SDP}",
        crcx(1, "c1")
    )
    .into_bytes();
    let mut out = Outbox::new();
    let mut x: u64 = 99;
    for i in 0..3000u64 {
        let mut m = base.clone();
        for _ in 0..(i % 5 + 1) {
            x = mix(x.wrapping_add(i));
            let pos = (x as usize) % m.len();
            m[pos] = (x >> 40) as u8;
        }
        gw.on_message(i * MS, ca(), &m, &mut out);
        gw.on_timer(i * MS, &mut out);
        out.clear();
    }
}

#[test]
fn a_full_history_evicts_its_oldest_entries_first() {
    // 4 ports: the history is its minimum size.
    let mut gw = Gateway::new(cfg());
    let n = MIN_HISTORY as u32;
    for tid in 1..=n {
        let r = send(
            &mut gw,
            0,
            &format!("RQNT {tid} aaln/1@gw MGCP 1.0\r\nX: 1\r\n"),
        );
        assert_eq!(r[0].code(), 200);
    }
    // Full: a new command runs, and the oldest entry (tid 1) makes room.
    let r = one(&mut gw, &crcx(n + 1, "c1"));
    assert_eq!((r.code(), r.tid()), (200, n + 1), "{}", r.text);
    assert_eq!(gw.active_connections(), 1);
    assert_eq!(gw.stats().history_evicted, 1);
    assert_eq!(gw.stats().history_full, 0);
    // Newer entries still answer from the history; the evicted one is executed again.
    let commands = gw.stats().commands;
    let again = one(&mut gw, "RQNT 7 aaln/1@gw MGCP 1.0\r\nX: 1\r\n");
    assert_eq!(again.code(), 200);
    assert_eq!(gw.stats().retransmissions_absorbed, 1);
    assert_eq!(gw.stats().commands, commands, "answered from the history");
    let first = one(&mut gw, "RQNT 1 aaln/1@gw MGCP 1.0\r\nX: 1\r\n");
    assert_eq!(first.code(), 200);
    assert_eq!(gw.stats().commands, commands + 1, "evicted: executed again");
    assert_eq!(
        gw.stats().history_evicted,
        2,
        "and it evicted tid 2 in turn"
    );
    // Entries freed by K: are skipped in the eviction order: after releasing 3..=10 (room for
    // eight), seven more commands fit with at most one eviction (for the K: command's own).
    one(&mut gw, "RQNT 3 aaln/1@gw MGCP 1.0\r\nK: 3-10\r\nX: 1\r\n");
    let evicted = gw.stats().history_evicted;
    for tid in 0..7 {
        let r = one(
            &mut gw,
            &format!("RQNT {} aaln/1@gw MGCP 1.0\r\nX: 1\r\n", n + 10 + tid),
        );
        assert_eq!(r.code(), 200);
    }
    assert!(
        gw.stats().history_evicted <= evicted + 1,
        "{:?}",
        gw.stats()
    );
    // T-HIST expiry empties it entirely.
    let mut out = Outbox::new();
    gw.on_timer(31_000 * MS, &mut out);
    assert_eq!(gw.next_deadline(), None);
}

#[test]
fn delayed_final_retransmits_doubling_until_000() {
    let mut c = cfg();
    c.answer_delay = Duration::from_millis(100);
    let mut gw = Gateway::new(c);
    let r = send(&mut gw, 0, &crcx(20, "c1"));
    assert_eq!(r[0].code(), 100);
    let mut times = vec![];
    let mut out = Outbox::new();
    while let Some(t) = gw.next_deadline() {
        if t > 2_000 * MS {
            break;
        }
        gw.on_timer(t, &mut out);
        if !out.is_empty() {
            times.push(t / MS);
        }
        out.clear();
    }
    // Final at 100 ms, then 200, 400, 800 ms later.
    assert_eq!(times, [100, 300, 700, 1500]);
    send(&mut gw, 1_600 * MS, "000 20 OK\r\n");
    gw.on_timer(10_000 * MS, &mut out);
    assert!(out.is_empty(), "acknowledged: no more retransmissions");
}

#[test]
fn a_call_with_several_connections_keeps_its_chain_through_deletions() {
    let mut c = cfg();
    c.media_ports = (30000, 30019);
    let mut gw = Gateway::new(c);
    let (a, z) = open(&mut gw, 1, "X1");
    let (b, _) = open(&mut gw, 2, "x1");
    let (d, _) = open(&mut gw, 3, "X1");
    let (y, zy) = open(&mut gw, 4, "Y1");
    assert_eq!(gw.active_connections(), 4);
    // The middle of X1's chain (b), by id; then the rest of X1 by call id.
    let r = one(
        &mut gw,
        &format!("DLCX 5 {z} MGCP 1.0\r\nC: X1\r\nI: {b}\r\n"),
    );
    assert_eq!(r.code(), 250);
    let r = one(&mut gw, "DLCX 6 aaln/*@gw MGCP 1.0\r\nC: x1\r\n");
    assert_eq!(r.code(), 250);
    assert_eq!(r.param("P"), None, "two deleted: no connection parameters");
    assert_eq!(gw.active_connections(), 1);
    for (tid, id) in [(7, &a), (8, &d)] {
        let r = one(&mut gw, &format!("MDCX {tid} {z} MGCP 1.0\r\nI: {id}\r\n"));
        assert_eq!(r.code(), 515, "deleted");
    }
    assert_eq!(
        one(&mut gw, "DLCX 9 aaln/*@gw MGCP 1.0\r\nC: X1\r\n").code(),
        516,
        "the call is gone"
    );
    // Y1 is untouched and still found by call id, and listed alone by AUEP.
    let r = one(&mut gw, &format!("AUEP 10 {zy} MGCP 1.0\r\nF: I\r\n"));
    assert_eq!(r.param("I"), Some(y.as_str()));
    let r = one(&mut gw, "DLCX 11 aaln/*@gw MGCP 1.0\r\nC: Y1\r\n");
    assert_eq!((r.code(), r.param("P").is_some()), (250, true));
    assert_eq!(gw.active_connections(), 0);
    // Deleting the head first leaves the tail reachable by call id.
    let (h1, zh) = open(&mut gw, 12, "H");
    let (h2, _) = open(&mut gw, 13, "H");
    let newest = one(&mut gw, &format!("DLCX 14 {zh} MGCP 1.0\r\nI: {h2}\r\n"));
    assert_eq!(newest.code(), 250);
    let r = one(&mut gw, "DLCX 15 aaln/*@gw MGCP 1.0\r\nC: H\r\n");
    assert_eq!((r.code(), r.param("P").is_some()), (250, true));
    assert_eq!(
        one(&mut gw, &format!("AUCX 16 {zh} MGCP 1.0\r\nI: {h1}\r\n")).code(),
        515
    );
    assert_eq!(gw.stats().connections_deleted, 6);
}

#[test]
fn a_full_connection_table_answers_502_and_counts_it() {
    let mut c = cfg();
    c.media_ports = (30000, 30019);
    let mut gw = Gateway::new(c);
    // A table smaller than the port range (capacity is normally the port count).
    gw.conns = Slab::with_capacity(1);
    gw.conn_index = Table::with_capacity(1);
    let (i, z) = open(&mut gw, 1, "c1");
    let r = one(&mut gw, &crcx(2, "c2"));
    assert_eq!(r.code(), 502, "{}", r.text);
    assert_eq!(gw.stats().connections_full, 1);
    assert_eq!(gw.ports.available(), 9, "no port taken by the refused CRCX");
    one(&mut gw, &format!("DLCX 3 {z} MGCP 1.0\r\nI: {i}\r\n"));
    assert_eq!(open(&mut gw, 4, "c2").0.len(), i.len(), "room again");
}

#[test]
fn ids_that_hash_alike_must_also_match_exactly() {
    let mut gw = Gateway::new(cfg());
    let (i, z) = open(&mut gw, 1, "c1");
    // Point another id's key at the live slot: the stored id still has to match.
    let slot = gw
        .conn_index
        .get(&id_key(&gw.hasher, i.as_bytes()))
        .unwrap();
    gw.conn_index
        .insert(id_key(&gw.hasher, b"0123"), slot)
        .unwrap();
    assert_eq!(
        one(&mut gw, &format!("MDCX 2 {z} MGCP 1.0\r\nI: 0123\r\n")).code(),
        515
    );
    // Same for a call id.
    let head = gw.call_index.get(&id_key(&gw.hasher, b"c1")).unwrap();
    gw.call_index
        .insert(id_key(&gw.hasher, b"other"), head)
        .unwrap();
    assert_eq!(
        one(&mut gw, "DLCX 3 aaln/*@gw MGCP 1.0\r\nC: other\r\n").code(),
        516
    );
    assert_eq!(gw.active_connections(), 1);
}

mod lowercase {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// The word-at-a-time lowercasing equals `to_ascii_lowercase`, for every byte value
        /// and length (ids are compared and hashed lowercased, so a difference would lose a
        /// connection).
        #[test]
        fn lower_into_equals_to_ascii_lowercase(v in proptest::collection::vec(
            prop_oneof![any::<u8>(), b'@'..=b'[', b'`'..=b'{', 0x80u8..=0xff], 0..40)) {
            let mut out = Vec::new();
            super::lower_into(&mut out, &v);
            prop_assert_eq!(out, v.to_ascii_lowercase());
        }
    }
}
