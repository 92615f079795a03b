//! Sans-IO tests of every routing case, with real fabric queues (no mocks): what the router
//! decides is checked by reading what each processor's queue received.
use std::{net::SocketAddr, sync::atomic::Ordering, sync::Arc};

use dispatcher_common::PortProto;
use fabric::{channel, Consumer, LoadReport};

use super::*;

const SEC: u64 = 1_000_000_000;

struct Bed {
    router: Router,
    consumers: Vec<Consumer>,
    loads: Vec<Arc<LoadReport>>,
    reply: Vec<u8>,
    /// Processors heartbeat at every message (live threads do, at least every 100 ms).
    heartbeat: bool,
}

fn bed_with(n: usize, capacity: u32, queue: usize, cfg: RouterConfig) -> Bed {
    let mut members = Vec::new();
    let mut consumers = Vec::new();
    let mut loads = Vec::new();
    for k in 0..n {
        let (p, c) = channel(queue).unwrap();
        let load = LoadReport::new(capacity);
        load.heartbeat_ns.store(1, Ordering::Relaxed);
        members.push(Member::new(5070 + k as u16, capacity, p, Arc::clone(&load)));
        consumers.push(c);
        loads.push(load);
    }
    Bed {
        router: Router::new(cfg, members, 0),
        consumers,
        loads,
        reply: vec![0; REPLY_BYTES],
        heartbeat: true,
    }
}

fn bed(n: usize, policy: Policy) -> Bed {
    bed_with(
        n,
        0,
        64,
        RouterConfig {
            policy,
            ..RouterConfig::default()
        },
    )
}

fn src() -> SocketAddr {
    "198.18.0.2:5060".parse().unwrap()
}

impl Bed {
    fn send(&mut self, now: u64, proto: PortProto, payload: &[u8]) -> Action {
        if self.heartbeat {
            for l in &self.loads {
                l.heartbeat_ns.store(now, Ordering::Relaxed);
            }
        }
        let dst = if proto == PortProto::Sip {
            "198.18.0.1:5060"
        } else {
            "198.18.0.1:2427"
        };
        let a = self.router.handle(
            now,
            &Inbound {
                proto,
                src: src(),
                dst: dst.parse().unwrap(),
                payload,
            },
            &mut self.reply,
        );
        self.router.flush();
        a
    }

    fn sip(&mut self, now: u64, payload: &[u8]) -> Action {
        self.send(now, PortProto::Sip, payload)
    }

    fn reply_text(&self, a: Action) -> String {
        match a {
            Action::Reply(n) => String::from_utf8_lossy(&self.reply[..n]).into_owned(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Everything queued to processor k since the last call.
    fn drained(&mut self, k: usize) -> Vec<Vec<u8>> {
        let mut out = vec![];
        self.consumers[k].drain(usize::MAX, |s| {
            assert_eq!(s.src, src(), "the true source travels with the message");
            out.push(s.bytes().to_vec());
        });
        out
    }
}

fn invite(call: &str, branch: &str, extra: &str) -> Vec<u8> {
    format!(
        "INVITE sip:svc@198.18.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.0.2:5060;branch={branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:as@198.18.0.2>;tag=f-{call}\r\n\
To: <sip:svc@198.18.0.1>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:as@198.18.0.2:5060>\r\n{extra}\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn request(
    method: &str,
    call: &str,
    branch: &str,
    to_tag: Option<&str>,
    cseq_method: &str,
) -> Vec<u8> {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:svc@198.18.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.0.2:5060;branch={branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:as@198.18.0.2>;tag=f-{call}\r\n\
To: <sip:svc@198.18.0.1>{tag}\r\n\
Call-ID: {call}\r\n\
CSeq: 1 {cseq_method}\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn proc_tag(k: u16) -> String {
    let mut t = [0u8; 64];
    let n = wire::tag::encode(k, 0xfeed, &mut t).unwrap();
    String::from_utf8(t[..n].to_vec()).unwrap()
}

#[test]
fn new_invite_is_forwarded_verbatim() {
    let mut b = bed(3, Policy::RoundRobin);
    let inv = invite("c1", "z9hG4bK-1", "");
    assert_eq!(b.sip(SEC, &inv), Action::Forwarded(0));
    assert_eq!(b.drained(0), vec![inv]);
    assert_eq!(b.router.stats().new_dialogs, 1);
}

#[test]
fn retransmission_cancel_and_non2xx_ack_follow_the_invite() {
    let mut b = bed(3, Policy::RoundRobin);
    let inv = invite("c1", "z9hG4bK-1", "");
    assert_eq!(b.sip(SEC, &inv), Action::Forwarded(0));
    // Another dialog moves the round-robin cursor on.
    assert_eq!(
        b.sip(SEC, &invite("c2", "z9hG4bK-2", "")),
        Action::Forwarded(1)
    );
    // Retransmission within the window, CANCEL, and the ACK for the 487 all go to 0.
    assert_eq!(b.sip(2 * SEC, &inv), Action::Forwarded(0));
    let cancel = request("CANCEL", "c1", "z9hG4bK-1", None, "CANCEL");
    assert_eq!(b.sip(3 * SEC, &cancel), Action::Forwarded(0));
    let ack = request("ACK", "c1", "z9hG4bK-1", Some(&proc_tag(0)), "ACK");
    assert_eq!(b.sip(4 * SEC, &ack), Action::Forwarded(0));
    assert_eq!(b.drained(0).len(), 4);
    let s = b.router.stats();
    assert_eq!((s.retransmissions, s.cancels, s.acks_affinity), (1, 1, 1));
    // Past the affinity window (72 s) a retransmission is a new dialog again.
    assert_eq!(b.sip(80 * SEC, &inv), Action::Forwarded(2));
}

#[test]
fn cancel_without_invite_gets_481() {
    let mut b = bed(2, Policy::RoundRobin);
    let a = b.sip(SEC, &request("CANCEL", "zz", "z9hG4bK-9", None, "CANCEL"));
    let text = b.reply_text(a);
    assert!(text.starts_with("SIP/2.0 481 "), "{text}");
}

#[test]
fn in_dialog_requests_route_by_to_tag_without_state() {
    let mut b = bed(4, Policy::RoundRobin);
    for (method, k) in [("BYE", 2u16), ("INVITE", 3), ("INFO", 1), ("ACK", 3)] {
        let m = request(
            method,
            "never-seen",
            "z9hG4bK-new",
            Some(&proc_tag(k)),
            method,
        );
        assert_eq!(b.sip(SEC, &m), Action::Forwarded(k), "{method}");
    }
    assert_eq!(b.router.stats().in_dialog, 4);
    // A tag naming a processor that does not exist, or a forged checksum: 481.
    let bye = request("BYE", "x", "z9hG4bK-3", Some(&proc_tag(9)), "BYE");
    assert!({
        let a = b.sip(SEC, &bye);
        b.reply_text(a)
    }
    .starts_with("SIP/2.0 481"));
    let mut forged = proc_tag(1);
    forged.replace_range(27..28, if forged.ends_with('0') { "1" } else { "0" });
    let bye = request("BYE", "x", "z9hG4bK-4", Some(&forged), "BYE");
    assert!({
        let a = b.sip(SEC, &bye);
        b.reply_text(a)
    }
    .starts_with("SIP/2.0 481"));
}

#[test]
fn ack_for_our_own_answer_is_absorbed() {
    let mut b = bed(1, Policy::RoundRobin);
    let ack = request("ACK", "c", "z9hG4bK-5", Some("sy-0123456789abcdef"), "ACK");
    assert_eq!(b.sip(SEC, &ack), Action::Drop(DropReason::AckAbsorbed));
}

#[test]
fn options_answered_or_forwarded() {
    let mut b = bed(2, Policy::RoundRobin);
    let opt = request("OPTIONS", "o1", "z9hG4bK-o", None, "OPTIONS");
    let text = {
        let a = b.sip(SEC, &opt);
        b.reply_text(a)
    };
    assert!(text.starts_with("SIP/2.0 200 "), "{text}");
    assert!(text.contains("Allow: INVITE, ACK, CANCEL, BYE"));
    assert!(text.contains("Call-ID: o1\r\n") && text.contains(";tag=sy-"));
    let mut f = bed_with(
        2,
        0,
        8,
        RouterConfig {
            options: OptionsMode::Forward,
            policy: Policy::RoundRobin,
            ..RouterConfig::default()
        },
    );
    assert_eq!(f.sip(SEC, &opt), Action::Forwarded(0));
}

#[test]
fn other_methods_get_405_or_501() {
    let mut b = bed(1, Policy::RoundRobin);
    let reg = request("REGISTER", "r", "z9hG4bK-r", None, "REGISTER");
    assert!({
        let a = b.sip(SEC, &reg);
        b.reply_text(a)
    }
    .starts_with("SIP/2.0 405 "));
    let foo = request("FOO", "r2", "z9hG4bK-f", None, "FOO");
    let text = {
        let a = b.sip(SEC, &foo);
        b.reply_text(a)
    };
    assert!(
        text.starts_with("SIP/2.0 501 ") && text.contains("Allow:"),
        "{text}"
    );
}

#[test]
fn responses_are_dropped_and_garbage_gets_400_or_a_counted_drop() {
    let mut b = bed(1, Policy::RoundRobin);
    let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(b.sip(SEC, resp), Action::Drop(DropReason::Response));
    let mismatch = request("INVITE", "m", "z9hG4bK-m", None, "BYE");
    let text = {
        let a = b.sip(SEC, &mismatch);
        b.reply_text(a)
    };
    assert!(
        text.starts_with("SIP/2.0 400 CSeq method does not match"),
        "{text}"
    );
    assert_eq!(
        b.sip(SEC, b"\x00\x01garbage"),
        Action::Drop(DropReason::Unparseable)
    );
    assert_eq!(b.sip(SEC, b"\r\n\r\n"), Action::Drop(DropReason::Empty));
    let s = b.router.stats();
    assert_eq!(
        (
            s.dropped_response,
            s.bad_request,
            s.dropped_unparseable,
            s.dropped_empty
        ),
        (1, 1, 1, 1)
    );
    assert!(b.drained(0).is_empty(), "nothing reaches a processor");
}

#[test]
fn overload_is_answered_503_with_retry_after_and_recovers() {
    // Two processors of 2 units each; sessions of 1 unit.
    let mut b = bed_with(2, 2, 64, RouterConfig::default());
    for i in 0..4 {
        assert!(matches!(
            b.sip(SEC, &invite(&format!("c{i}"), &format!("z9hG4bK-{i}"), "")),
            Action::Forwarded(_)
        ));
    }
    let a = b.sip(SEC, &invite("c5", "z9hG4bK-5", ""));
    let text = b.reply_text(a);
    assert!(text.starts_with("SIP/2.0 503 "), "{text}");
    assert!(text.contains("Retry-After: 5\r\n"), "{text}");
    assert_eq!(b.router.stats().overload, 1);
    // Processor 1 reports a released session: there is room again.
    b.loads[1].released_units.fetch_add(1, Ordering::Relaxed);
    assert_eq!(
        b.sip(SEC, &invite("c6", "z9hG4bK-6", "")),
        Action::Forwarded(1)
    );
}

#[test]
fn size_aware_uses_the_announced_session_size() {
    let mut b = bed_with(
        2,
        10,
        64,
        RouterConfig {
            policy: Policy::SizeAware,
            ..RouterConfig::default()
        },
    );
    assert_eq!(
        b.sip(SEC, &invite("a", "z9hG4bK-a", "X-Session-Size: 8\r\n")),
        Action::Forwarded(0)
    );
    // 0 has 2 units free, 1 has 10: a size-5 session must go to 1, a size-3 one too.
    assert_eq!(
        b.sip(SEC, &invite("b", "z9hG4bK-b", "X-Session-Size: 5\r\n")),
        Action::Forwarded(1)
    );
    assert_eq!(
        b.sip(SEC, &invite("c", "z9hG4bK-c", "X-Session-Size: 3\r\n")),
        Action::Forwarded(1)
    );
    // Now 0 has 2 free, 1 has 2 free: size 3 fits nowhere.
    let a = b.sip(SEC, &invite("d", "z9hG4bK-d", "X-Session-Size: 3\r\n"));
    assert!(b.reply_text(a).starts_with("SIP/2.0 503"));
    assert_eq!(
        b.sip(SEC, &invite("e", "z9hG4bK-e", "X-Session-Size: 2\r\n")),
        Action::Forwarded(0)
    );
}

#[test]
fn full_queue_moves_to_the_next_candidate_then_503() {
    let mut b = bed_with(
        2,
        0,
        2,
        RouterConfig {
            policy: Policy::RoundRobin,
            ..RouterConfig::default()
        },
    );
    let mut ks = vec![];
    for i in 0..4 {
        match b.sip(SEC, &invite(&format!("q{i}"), &format!("z9hG4bK-q{i}"), "")) {
            Action::Forwarded(k) => ks.push(k),
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(ks, [0, 1, 0, 1]);
    let a = b.sip(SEC, &invite("q5", "z9hG4bK-q5", ""));
    let text = b.reply_text(a);
    assert!(text.starts_with("SIP/2.0 503"), "{text}");
    // Processor 0 drains its queue: new dialogs go there even though it is "its turn" for 1.
    b.drained(0);
    assert_eq!(
        b.sip(SEC, &invite("q6", "z9hG4bK-q6", "")),
        Action::Forwarded(0)
    );
}

#[test]
fn silent_processor_is_out_of_selection() {
    let mut b = bed(2, Policy::RoundRobin);
    b.heartbeat = false;
    // Processor 0 stopped reporting 5 s ago; 1 reports now.
    b.loads[1].heartbeat_ns.store(10 * SEC, Ordering::Relaxed);
    b.loads[0].heartbeat_ns.store(5 * SEC, Ordering::Relaxed);
    for i in 0..3 {
        assert_eq!(
            b.sip(
                10 * SEC,
                &invite(&format!("h{i}"), &format!("z9hG4bK-h{i}"), "")
            ),
            Action::Forwarded(1)
        );
    }
}

#[test]
fn mark_port_adds_the_processor_port_and_via_received() {
    let mut b = bed_with(
        2,
        0,
        8,
        RouterConfig {
            policy: Policy::RoundRobin,
            mark_port: Some(MarkPort {
                sip_header: "X-Switchyard-Port".into(),
                mgcp_param: "X-SY-Port".into(),
            }),
            ..RouterConfig::default()
        },
    );
    b.sip(SEC, &invite("m0", "z9hG4bK-m0", ""));
    assert_eq!(
        b.sip(SEC, &invite("m1", "z9hG4bK-m1", "")),
        Action::Forwarded(1)
    );
    let got = b.drained(1).pop().unwrap();
    let text = String::from_utf8(got.clone()).unwrap();
    assert!(text.contains("X-Switchyard-Port: 5071\r\n"), "{text}");
    let m = wire::sip::Message::parse(&got, &wire::Limits::default()).unwrap();
    assert_eq!(m.top_via().received(), Some(&b"198.18.0.2"[..]));
    assert_eq!(m.top_via().rport(), Some(Some(5060)));
    assert_eq!(m.header(b"X-Switchyard-Port"), Some(&b"5071"[..]));
}

#[test]
fn oversized_invite_gets_513() {
    let mut b = bed(1, Policy::RoundRobin);
    let big = invite(
        "big",
        "z9hG4bK-big",
        &format!("X-Pad: {}\r\n", "a".repeat(SLOT_BYTES)),
    );
    let a = b.sip(SEC, &big);
    let text = b.reply_text(a);
    assert!(text.starts_with("SIP/2.0 513 "), "{text}");
}

#[test]
fn affinity_eviction_is_counted() {
    let mut b = bed_with(
        2,
        0,
        1 << 12,
        RouterConfig {
            affinity_capacity: 8,
            ..RouterConfig::default()
        },
    );
    for i in 0..100 {
        b.sip(SEC, &invite(&format!("e{i}"), &format!("z9hG4bK-e{i}"), ""));
        b.drained(0);
        b.drained(1);
    }
    let (aff, bytes) = b.router.affinity();
    assert_eq!(aff.inserted, 100);
    assert!(aff.evicted >= 90, "{aff:?}");
    assert_eq!(bytes, 8 * 16);
}

// ---- MGCP ----

fn mgcp(b: &mut Bed, now: u64, msg: &str) -> Action {
    b.send(now, PortProto::Mgcp, msg.as_bytes())
}

#[test]
fn crcx_retransmission_and_stateless_followups() {
    let mut b = bed(3, Policy::RoundRobin);
    let crcx = "CRCX 1001 ds/ss7-2/1@mgw.example.net MGCP 1.0\r\nC: A3C47F21456789F0\r\nL: p:10, a:PCMU\r\nM: recvonly\r\n";
    assert_eq!(mgcp(&mut b, SEC, crcx), Action::Forwarded(0));
    assert_eq!(
        mgcp(
            &mut b,
            SEC,
            "CRCX 1002 ds/ss7-2/2@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\n"
        ),
        Action::Forwarded(1)
    );
    assert_eq!(
        mgcp(&mut b, 2 * SEC, crcx),
        Action::Forwarded(0),
        "retransmission follows"
    );
    // MDCX with a connection id processor 2 issued.
    let mdcx = format!(
        "MDCX 1003 ds/ss7-2/1@mgw MGCP 1.0\r\nC: 1\r\nI: {}\r\nM: sendrecv\r\n",
        proc_tag(2)
    );
    assert_eq!(mgcp(&mut b, SEC, &mdcx), Action::Forwarded(2));
    // DLCX naming processor 1's specific endpoint (its port) without a connection id.
    assert_eq!(
        mgcp(
            &mut b,
            SEC,
            "DLCX 1004 ds/ss7-2/1@[198.18.0.1]:5071 MGCP 1.0\r\nC: 1\r\n"
        ),
        Action::Forwarded(1)
    );
    let s = b.router.stats();
    assert_eq!(
        (s.new_dialogs, s.mgcp_retransmissions, s.mgcp_stateless),
        (2, 1, 2)
    );
}

#[test]
fn mgcp_answers_and_errors() {
    let mut b = bed(2, Policy::RoundRobin);
    let r = {
        let a = mgcp(&mut b, SEC, "MDCX 2001 ep@mgw MGCP 1.0\r\nI: 12345\r\n");
        b.reply_text(a)
    };
    assert!(r.starts_with("515 2001 "), "{r}");
    let r = {
        let a = mgcp(&mut b, SEC, "RQNT 2002 ep@mgw MGCP 1.0\r\nX: 1\r\n");
        b.reply_text(a)
    };
    assert!(r.starts_with("500 2002 "), "{r}");
    let r = {
        let a = mgcp(&mut b, SEC, "AUEP 2003 *@mgw MGCP 1.0\r\n");
        b.reply_text(a)
    };
    assert!(r.starts_with("200 2003 "), "{r}");
    let r = {
        let a = mgcp(&mut b, SEC, "ABCD 2004 ep@mgw MGCP 1.0\r\n");
        b.reply_text(a)
    };
    assert!(r.starts_with("504 2004 "), "{r}");
    let r = {
        let a = mgcp(&mut b, SEC, "CRCX 2005 ep@mgw MGCP 1.0\r\nM recvonly\r\n");
        b.reply_text(a)
    };
    assert!(r.starts_with("510 2005 "), "{r}");
    assert_eq!(
        mgcp(&mut b, SEC, "200 2006 OK\r\n"),
        Action::Drop(DropReason::Response)
    );
    assert_eq!(
        mgcp(&mut b, SEC, "\x01\x02"),
        Action::Drop(DropReason::Unparseable)
    );
}

#[test]
fn piggybacked_messages_are_routed_one_by_one() {
    let mut b = bed(2, Policy::RoundRobin);
    let dg = "CRCX 3001 a@mgw MGCP 1.0\r\nC: 9\r\nM: recvonly\r\n.\r\nAUEP 3002 *@mgw MGCP 1.0\r\n.\r\nCRCX 3003 b@mgw MGCP 1.0\r\nC: 8\r\nM: recvonly\r\n";
    let text = {
        let a = mgcp(&mut b, SEC, dg);
        b.reply_text(a)
    };
    assert!(text.starts_with("200 3002 "), "{text}");
    assert_eq!(b.drained(0).len(), 1);
    assert_eq!(b.drained(1).len(), 1);
}

#[test]
fn mgcp_overload_answers_403() {
    let mut b = bed_with(1, 1, 64, RouterConfig::default());
    assert_eq!(
        mgcp(
            &mut b,
            SEC,
            "CRCX 4001 a@mgw MGCP 1.0\r\nC: 1\r\nM: recvonly\r\n"
        ),
        Action::Forwarded(0)
    );
    let r = {
        let a = mgcp(
            &mut b,
            SEC,
            "CRCX 4002 b@mgw MGCP 1.0\r\nC: 2\r\nM: recvonly\r\n",
        );
        b.reply_text(a)
    };
    assert!(r.starts_with("403 4002 "), "{r}");
}

// ---- processors on other hosts ----

fn lan_bed(n: usize) -> (Router, Vec<UdpSocket>, Vec<Arc<LoadReport>>) {
    let mut members = vec![];
    let mut socks = vec![];
    let mut loads = vec![];
    for _ in 0..n {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let load = LoadReport::new(0);
        members.push(Member::remote(
            s.local_addr().unwrap(),
            0,
            Arc::clone(&load),
        ));
        socks.push(s);
        loads.push(load);
    }
    let fwd = forward::Forwarder::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
    let r = Router::new(
        RouterConfig {
            policy: Policy::RoundRobin,
            ..RouterConfig::default()
        },
        members,
        0,
    )
    .with_forwarder(fwd);
    (r, socks, loads)
}

use std::net::UdpSocket;

fn report(load: &LoadReport, now: u64, in_use: u64) {
    load.in_use_units.store(in_use, Ordering::Relaxed);
    load.heartbeat_ns.store(now, Ordering::Relaxed);
    load.reports.fetch_add(1, Ordering::Relaxed);
}

fn route(r: &mut Router, now: u64, proto: PortProto, payload: &[u8]) -> Action {
    let mut reply = vec![0; REPLY_BYTES];
    let a = r.handle(
        now,
        &Inbound {
            proto,
            src: src(),
            dst: "198.18.0.1:5060".parse().unwrap(),
            payload,
        },
        &mut reply,
    );
    r.flush();
    a
}

#[test]
fn remote_members_get_the_true_source_and_only_while_reporting() {
    let (mut r, socks, loads) = lan_bed(2);
    // Nobody reported yet: nothing is alive.
    assert!(matches!(
        route(&mut r, SEC, PortProto::Sip, &invite("l0", "z9hG4bK-l0", "")),
        Action::Reply(_)
    ));
    report(&loads[0], SEC, 0);
    report(&loads[1], SEC, 0);
    assert_eq!(
        route(&mut r, SEC, PortProto::Sip, &invite("l1", "z9hG4bK-l1", "")),
        Action::Forwarded(0)
    );
    let mut buf = [0u8; 4096];
    let n = socks[0].recv(&mut buf).unwrap();
    let m = wire::sip::Message::parse(&buf[..n], &wire::Limits::default()).unwrap();
    assert_eq!(
        m.top_via().received(),
        Some(&b"198.18.0.2"[..]),
        "processor can answer the source"
    );
    assert_eq!(m.top_via().rport(), Some(Some(5060)));
    // MGCP over the LAN carries X-SY-Src.
    let crcx = b"CRCX 77 a@mgw MGCP 1.0\r\nC: 1\r\nM: recvonly\r\n";
    assert_eq!(
        route(&mut r, SEC, PortProto::Mgcp, crcx),
        Action::Forwarded(1)
    );
    let n = socks[1].recv(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.contains("\r\nX-SY-Src: 198.18.0.2:5060\r\n"), "{text}");
    // Processor 0 goes silent: after the report timeout it is out of selection, and a
    // retransmission of its pending INVITE is placed on 1.
    report(&loads[1], 2 * SEC, 0);
    assert_eq!(
        route(
            &mut r,
            2 * SEC,
            PortProto::Sip,
            &invite("l1", "z9hG4bK-l1", "")
        ),
        Action::Forwarded(1)
    );
    assert_eq!(r.stats().rerouted, 1);
    for i in 0..4 {
        assert_eq!(
            route(
                &mut r,
                2 * SEC,
                PortProto::Sip,
                &invite(&format!("m{i}"), &format!("z9hG4bK-m{i}"), "")
            ),
            Action::Forwarded(1)
        );
    }
    // It reports again: it rejoins.
    report(&loads[0], 2 * SEC, 0);
    let ks: Vec<_> = (0..4)
        .map(|i| {
            route(
                &mut r,
                2 * SEC,
                PortProto::Sip,
                &invite(&format!("j{i}"), &format!("z9hG4bK-j{i}"), ""),
            )
        })
        .collect();
    assert!(ks.contains(&Action::Forwarded(0)), "{ks:?}");
    assert_eq!(r.forwarder_stats().unwrap().1, 0);
}

#[test]
fn remote_capacity_counts_reported_load_plus_our_pending() {
    let (mut r, _socks, loads) = lan_bed(1);
    r.members[0].capacity = 3;
    report(&loads[0], SEC, 2); // another dispatcher's sessions hold 2 units
    assert_eq!(
        route(&mut r, SEC, PortProto::Sip, &invite("c1", "z9hG4bK-c1", "")),
        Action::Forwarded(0)
    );
    assert!(
        matches!(
            route(&mut r, SEC, PortProto::Sip, &invite("c2", "z9hG4bK-c2", "")),
            Action::Reply(_)
        ),
        "2 + 1 pending = 3 = full"
    );
    // A new report says 1 unit in use (ours is counted in it now): room for 2 more.
    report(&loads[0], SEC, 1);
    assert_eq!(
        route(&mut r, SEC, PortProto::Sip, &invite("c3", "z9hG4bK-c3", "")),
        Action::Forwarded(0)
    );
    assert_eq!(
        route(&mut r, SEC, PortProto::Sip, &invite("c4", "z9hG4bK-c4", "")),
        Action::Forwarded(0)
    );
    assert!(matches!(
        route(&mut r, SEC, PortProto::Sip, &invite("c5", "z9hG4bK-c5", "")),
        Action::Reply(_)
    ));
}

#[test]
fn two_dispatchers_route_identically_without_shared_state() {
    // Same processor list, separate routers (separate queues, separate seeds and clocks).
    let cfg = || RouterConfig {
        policy: Policy::Hash,
        ..RouterConfig::default()
    };
    let mut a = bed_with(4, 0, 1 << 12, cfg());
    let mut b = bed_with(4, 0, 1 << 12, cfg());
    for i in 0..200 {
        let inv = invite(&format!("same-{i}"), &format!("z9hG4bK-s{i}"), "");
        assert_eq!(
            a.sip(SEC, &inv),
            b.sip(7 * SEC, &inv),
            "hash policy on Call-ID"
        );
        let k = (i % 4) as u16;
        let bye = request(
            "BYE",
            &format!("d{i}"),
            &format!("z9hG4bK-d{i}"),
            Some(&proc_tag(k)),
            "BYE",
        );
        assert_eq!(a.sip(SEC, &bye), Action::Forwarded(k));
        assert_eq!(b.sip(SEC, &bye), Action::Forwarded(k));
        let mdcx = format!(
            "MDCX {} ep@mgw MGCP 1.0\r\nC: 1\r\nI: {}\r\n",
            5000 + i,
            proc_tag(k)
        );
        assert_eq!(mgcp(&mut a, SEC, &mdcx), Action::Forwarded(k));
        assert_eq!(mgcp(&mut b, SEC, &mdcx), Action::Forwarded(k));
    }
}
