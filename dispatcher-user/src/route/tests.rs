//! Sans-IO tests of every routing case, with in-memory fakes and a fake clock: processors are
//! plain queues of what the router handed them, their load and liveness a hand-built
//! [`Snapshot`], and the clock a number. What the router decides is checked by reading what
//! each fake queue received, exactly as the shell would have pushed it.
use std::{collections::VecDeque, net::SocketAddr};

use dispatcher_common::PortProto;

use super::*;
use wire::tag::{TagKey, TagKeys};

const SEC: u64 = 1_000_000_000;

struct Bed {
    router: Router,
    specs: Vec<MemberSpec>,
    /// What each processor's queue holds: (source the message travels with, bytes).
    queues: Vec<VecDeque<(SocketAddr, Vec<u8>)>>,
    queue_cap: usize,
    /// In-chassis processors: last heartbeat and units released (their load board).
    heartbeats: Vec<u64>,
    released: Vec<u64>,
    /// In-chassis processors: pending new-INVITE transactions they report.
    pending: Vec<u32>,
    /// Processors on other hosts: what their health monitor and reports say.
    remote: Vec<MemberView>,
    out: Output,
    epoch: u64,
    /// Processors heartbeat at every message (live threads do, at least every 100 ms).
    heartbeat: bool,
}

fn bed_of(specs: Vec<MemberSpec>, queue: usize, cfg: RouterConfig) -> Bed {
    let n = specs.len();
    Bed {
        router: Router::new(cfg, specs.clone()),
        specs,
        queues: vec![VecDeque::new(); n],
        queue_cap: queue,
        heartbeats: vec![1; n],
        released: vec![0; n],
        pending: vec![0; n],
        remote: vec![MemberView::remote(false, 0, 0, 0); n],
        out: Output::new(),
        epoch: 0,
        heartbeat: true,
    }
}

fn bed_with(n: usize, capacity: u32, queue: usize, cfg: RouterConfig) -> Bed {
    let specs = (0..n)
        .map(|k| MemberSpec::local(5070 + k as u16, capacity))
        .collect();
    bed_of(specs, queue, cfg)
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
    /// The snapshot the shell would build now.
    fn snapshot(&mut self, now: u64) -> Snapshot {
        self.epoch += 1;
        let timeout = self.router.config().heartbeat_timeout_ns;
        let members = (0..self.specs.len())
            .map(|k| {
                if self.specs[k].remote {
                    self.remote[k]
                } else {
                    MemberView {
                        alive: local_alive(now, 0, self.heartbeats[k], timeout),
                        released_units: self.released[k],
                        queue_free: self.queue_cap - self.queues[k].len(),
                        queue_capacity: self.queue_cap,
                        pending_invites: self.pending[k],
                        ..MemberView::default()
                    }
                }
            })
            .collect();
        Snapshot {
            epoch: self.epoch,
            members,
        }
    }

    fn send(&mut self, now: u64, proto: PortProto, payload: &[u8]) -> Decision {
        if self.heartbeat {
            self.heartbeats.iter_mut().for_each(|h| *h = now);
        }
        let dst = if proto == PortProto::Sip {
            "198.18.0.1:5060"
        } else {
            "198.18.0.1:2427"
        };
        let msg = Inbound {
            proto,
            src: src(),
            dst: dst.parse().unwrap(),
            payload,
        };
        let snap = self.snapshot(now);
        let d = self.router.handle(now, &msg, &snap, &mut self.out);
        // Carry out the handoffs as the shell does; the router promised room.
        for h in self.out.handoffs() {
            let q = &mut self.queues[usize::from(h.to)];
            assert!(q.len() < self.queue_cap, "handed to a full queue");
            q.push_back((msg.src, self.out.bytes(h, payload).to_vec()));
        }
        match d {
            Decision::Reply(n) => assert_eq!(self.out.reply().map(<[u8]>::len), Some(n)),
            _ => assert!(self.out.reply().is_none()),
        }
        d
    }

    fn sip(&mut self, now: u64, payload: &[u8]) -> Decision {
        self.send(now, PortProto::Sip, payload)
    }

    fn reply_text(&self, a: Decision) -> String {
        match a {
            Decision::Reply(_) => {
                String::from_utf8_lossy(self.out.reply().expect("a reply")).into_owned()
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Everything queued to processor k since the last call.
    fn drained(&mut self, k: usize) -> Vec<Vec<u8>> {
        self.queues[k]
            .drain(..)
            .map(|(s, bytes)| {
                assert_eq!(s, src(), "the true source travels with the message");
                bytes
            })
            .collect()
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
    let n = wire::tag::encode(&wire::tag::TagKey::UNKEYED, k, 0xfeed, &mut t).unwrap();
    String::from_utf8(t[..n].to_vec()).unwrap()
}

#[test]
fn new_invite_is_forwarded_verbatim() {
    let mut b = bed(3, Policy::RoundRobin);
    let inv = invite("c1", "z9hG4bK-1", "");
    assert_eq!(b.sip(SEC, &inv), Decision::Hand(0));
    assert_eq!(b.drained(0), vec![inv]);
    assert_eq!(b.router.stats().new_dialogs, 1);
}

#[test]
fn retransmission_cancel_and_non2xx_ack_follow_the_invite() {
    let mut b = bed(3, Policy::RoundRobin);
    let inv = invite("c1", "z9hG4bK-1", "");
    assert_eq!(b.sip(SEC, &inv), Decision::Hand(0));
    // Another dialog moves the round-robin cursor on.
    assert_eq!(
        b.sip(SEC, &invite("c2", "z9hG4bK-2", "")),
        Decision::Hand(1)
    );
    // Retransmission within the window, CANCEL, and the ACK for the 487 all go to 0.
    assert_eq!(b.sip(2 * SEC, &inv), Decision::Hand(0));
    let cancel = request("CANCEL", "c1", "z9hG4bK-1", None, "CANCEL");
    assert_eq!(b.sip(3 * SEC, &cancel), Decision::Hand(0));
    let ack = request("ACK", "c1", "z9hG4bK-1", Some(&proc_tag(0)), "ACK");
    assert_eq!(b.sip(4 * SEC, &ack), Decision::Hand(0));
    assert_eq!(b.drained(0).len(), 4);
    let s = b.router.stats();
    assert_eq!((s.retransmissions, s.cancels, s.acks_affinity), (1, 1, 1));
    // Past the affinity window (72 s) a retransmission is a new dialog again.
    assert_eq!(b.sip(80 * SEC, &inv), Decision::Hand(2));
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
        assert_eq!(b.sip(SEC, &m), Decision::Hand(k), "{method}");
    }
    assert_eq!(b.router.stats().in_dialog, 4);
    // A tag naming a processor that does not exist (no_transaction), or a corrupted MAC
    // (bad_tag): 481 either way.
    let bye = request("BYE", "x", "z9hG4bK-3", Some(&proc_tag(9)), "BYE");
    assert!({
        let a = b.sip(SEC, &bye);
        b.reply_text(a)
    }
    .starts_with("SIP/2.0 481"));
    assert_eq!(b.router.stats().no_transaction, 1);
    let mut forged = proc_tag(1);
    forged.replace_range(31..32, if forged.ends_with('0') { "1" } else { "0" });
    let bye = request("BYE", "x", "z9hG4bK-4", Some(&forged), "BYE");
    assert!({
        let a = b.sip(SEC, &bye);
        b.reply_text(a)
    }
    .starts_with("SIP/2.0 481"));
    assert_eq!(b.router.stats().bad_tag, 1);
}

#[test]
fn ack_for_our_own_answer_is_absorbed() {
    let mut b = bed(1, Policy::RoundRobin);
    let ack = request("ACK", "c", "z9hG4bK-5", Some("sy-0123456789abcdef"), "ACK");
    assert_eq!(b.sip(SEC, &ack), Decision::Drop(DropReason::AckAbsorbed));
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
    assert_eq!(f.sip(SEC, &opt), Decision::Hand(0));
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
    assert_eq!(b.sip(SEC, resp), Decision::Drop(DropReason::Response));
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
        Decision::Drop(DropReason::Unparseable)
    );
    assert_eq!(b.sip(SEC, b"\r\n\r\n"), Decision::Drop(DropReason::Empty));
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
            Decision::Hand(_)
        ));
    }
    let a = b.sip(SEC, &invite("c5", "z9hG4bK-5", ""));
    let text = b.reply_text(a);
    assert!(text.starts_with("SIP/2.0 503 "), "{text}");
    assert!(text.contains("Retry-After: 5\r\n"), "{text}");
    assert_eq!(b.router.stats().overload, 1);
    // Processor 1 reports a released session: there is room again.
    b.released[1] += 1;
    assert_eq!(
        b.sip(SEC, &invite("c6", "z9hG4bK-6", "")),
        Decision::Hand(1)
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
        Decision::Hand(0)
    );
    // 0 has 2 units free, 1 has 10: a size-5 session must go to 1, a size-3 one too.
    assert_eq!(
        b.sip(SEC, &invite("b", "z9hG4bK-b", "X-Session-Size: 5\r\n")),
        Decision::Hand(1)
    );
    assert_eq!(
        b.sip(SEC, &invite("c", "z9hG4bK-c", "X-Session-Size: 3\r\n")),
        Decision::Hand(1)
    );
    // Now 0 has 2 free, 1 has 2 free: size 3 fits nowhere.
    let a = b.sip(SEC, &invite("d", "z9hG4bK-d", "X-Session-Size: 3\r\n"));
    assert!(b.reply_text(a).starts_with("SIP/2.0 503"));
    assert_eq!(
        b.sip(SEC, &invite("e", "z9hG4bK-e", "X-Session-Size: 2\r\n")),
        Decision::Hand(0)
    );
}

/// The size travels with the handoff: what size-aware assigned, and 1 for a policy that does
/// not size (least-loaded over in-chassis processors without capacity), whose scan then stops
/// after the routing headers: a bad Content-Length after them is still handed over (the
/// processor answers it 400), where a sizing scan answers 400 itself.
#[test]
fn handoffs_carry_the_assigned_units_and_unsized_policies_scan_only_routing_headers() {
    let sized = |b: &mut Bed, extra: &str, call: &str| {
        let d = b.sip(SEC, &invite(call, &format!("z9hG4bK-{call}"), extra));
        let units = b.out.handoffs().first().and_then(|h| h.units);
        (d, units)
    };
    let mut aware = bed_with(
        2,
        10,
        64,
        RouterConfig {
            policy: Policy::SizeAware,
            ..RouterConfig::default()
        },
    );
    let (d, units) = sized(&mut aware, "X-Session-Size: 4\r\n", "s1");
    assert!(matches!(d, Decision::Hand(_)));
    assert_eq!(units, Some(4));

    let mut ll = bed(2, Policy::LeastLoaded);
    let (d, units) = sized(&mut ll, "X-Session-Size: 4\r\n", "l1");
    assert!(matches!(d, Decision::Hand(_)));
    assert_eq!(
        units,
        Some(1),
        "least-loaded without capacities counts dialogs"
    );
    // A retransmission follows the transaction and starts nothing.
    let (d2, units) = sized(&mut ll, "X-Session-Size: 4\r\n", "l1");
    assert_eq!(d2, d);
    assert_eq!(units, None);
    // In-dialog requests start nothing either.
    let bye = request("BYE", "l1", "z9hG4bK-bye", Some(&proc_tag(0)), "BYE");
    assert_eq!(ll.sip(SEC, &bye), Decision::Hand(0));
    assert_eq!(ll.out.handoffs()[0].units, None);

    // A bad Content-Length after the routing headers: only a whole-section scan reads it.
    let broken = "Content-Length: many\r\n";
    let (d, units) = sized(&mut ll, broken, "l2");
    assert!(matches!(d, Decision::Hand(_)), "{d:?}");
    assert_eq!(units, Some(1));
    let (d, _) = sized(&mut aware, broken, "s2");
    assert!(
        aware.reply_text(d).starts_with("SIP/2.0 400"),
        "a sizing scan reads the whole section"
    );

    // MGCP: a new connection carries its size too (the `X-Size` parameter).
    let crcx = "CRCX 2001 ds/ss7-2/1@mgw MGCP 1.0\r\nC: c1\r\nX-Size: 3\r\nM: sendrecv\r\n";
    assert!(matches!(mgcp(&mut aware, SEC, crcx), Decision::Hand(_)));
    assert_eq!(aware.out.handoffs()[0].units, Some(3));
    assert!(matches!(mgcp(&mut ll, SEC, crcx), Decision::Hand(_)));
    assert_eq!(ll.out.handoffs()[0].units, Some(1));
    let mdcx = "MDCX 2002 ds/ss7-2/1@mgw MGCP 1.0\r\nC: c1\r\nI: 1\r\n";
    mgcp(&mut ll, SEC, mdcx);
    assert!(ll.out.handoffs().iter().all(|h| h.units.is_none()));
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
            Decision::Hand(k) => ks.push(k),
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
        Decision::Hand(0)
    );
}

#[test]
fn silent_processor_is_out_of_selection() {
    let mut b = bed(2, Policy::RoundRobin);
    b.heartbeat = false;
    // Processor 0 stopped reporting 5 s ago; 1 reports now.
    b.heartbeats[1] = 10 * SEC;
    b.heartbeats[0] = 5 * SEC;
    for i in 0..3 {
        assert_eq!(
            b.sip(
                10 * SEC,
                &invite(&format!("h{i}"), &format!("z9hG4bK-h{i}"), "")
            ),
            Decision::Hand(1)
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
        Decision::Hand(1)
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

fn mgcp(b: &mut Bed, now: u64, msg: &str) -> Decision {
    b.send(now, PortProto::Mgcp, msg.as_bytes())
}

#[test]
fn crcx_retransmission_and_stateless_followups() {
    let mut b = bed(3, Policy::RoundRobin);
    let crcx = "CRCX 1001 ds/ss7-2/1@mgw.example.net MGCP 1.0\r\nC: A3C47F21456789F0\r\nL: p:10, a:PCMU\r\nM: recvonly\r\n";
    assert_eq!(mgcp(&mut b, SEC, crcx), Decision::Hand(0));
    assert_eq!(
        mgcp(
            &mut b,
            SEC,
            "CRCX 1002 ds/ss7-2/2@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\n"
        ),
        Decision::Hand(1)
    );
    assert_eq!(
        mgcp(&mut b, 2 * SEC, crcx),
        Decision::Hand(0),
        "retransmission follows"
    );
    // MDCX with a connection id processor 2 issued.
    let mdcx = format!(
        "MDCX 1003 ds/ss7-2/1@mgw MGCP 1.0\r\nC: 1\r\nI: {}\r\nM: sendrecv\r\n",
        proc_tag(2)
    );
    assert_eq!(mgcp(&mut b, SEC, &mdcx), Decision::Hand(2));
    // DLCX naming processor 1's specific endpoint (its port) without a connection id.
    assert_eq!(
        mgcp(
            &mut b,
            SEC,
            "DLCX 1004 ds/ss7-2/1@[198.18.0.1]:5071 MGCP 1.0\r\nC: 1\r\n"
        ),
        Decision::Hand(1)
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
        Decision::Drop(DropReason::Response)
    );
    assert_eq!(
        mgcp(&mut b, SEC, "\x01\x02"),
        Decision::Drop(DropReason::Unparseable)
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
        Decision::Hand(0)
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

fn lan_bed(n: usize) -> Bed {
    let specs = (0..n)
        .map(|k| MemberSpec::remote(SocketAddr::from(([198, 18, 0, 11 + k as u8], 5070)), 0))
        .collect();
    bed_of(
        specs,
        64,
        RouterConfig {
            policy: Policy::RoundRobin,
            ..RouterConfig::default()
        },
    )
}

/// A load report from remote processor `k` arrived (its health monitor says up).
fn report(b: &mut Bed, k: usize, in_use: u64) {
    let v = &mut b.remote[k];
    *v = MemberView::remote(true, in_use, v.reports + 1, 0);
}

#[test]
fn remote_members_get_the_true_source_and_only_while_up() {
    let mut b = lan_bed(2);
    // Nobody reported yet: nothing is alive.
    assert!(matches!(
        b.sip(SEC, &invite("l0", "z9hG4bK-l0", "")),
        Decision::Reply(_)
    ));
    report(&mut b, 0, 0);
    report(&mut b, 1, 0);
    assert_eq!(
        b.sip(SEC, &invite("l1", "z9hG4bK-l1", "")),
        Decision::Hand(0)
    );
    let got = b.drained(0);
    let m = wire::sip::Message::parse(&got[0], &wire::Limits::default()).unwrap();
    assert_eq!(
        m.top_via().received(),
        Some(&b"198.18.0.2"[..]),
        "processor can answer the source"
    );
    assert_eq!(m.top_via().rport(), Some(Some(5060)));
    // MGCP over the LAN carries X-SY-Src.
    let crcx = b"CRCX 77 a@mgw MGCP 1.0\r\nC: 1\r\nM: recvonly\r\n";
    assert_eq!(b.send(SEC, PortProto::Mgcp, crcx), Decision::Hand(1));
    let got = b.drained(1);
    let text = String::from_utf8_lossy(&got[0]);
    assert!(text.contains("\r\nX-SY-Src: 198.18.0.2:5060\r\n"), "{text}");
    // Processor 0's health monitor says down: it is out of selection, and a retransmission
    // of its pending INVITE is placed on 1.
    b.remote[0].alive = false;
    assert_eq!(
        b.sip(2 * SEC, &invite("l1", "z9hG4bK-l1", "")),
        Decision::Hand(1)
    );
    assert_eq!(b.router.stats().rerouted, 1);
    for i in 0..4 {
        assert_eq!(
            b.sip(
                2 * SEC,
                &invite(&format!("m{i}"), &format!("z9hG4bK-m{i}"), "")
            ),
            Decision::Hand(1)
        );
    }
    // It reports again: it rejoins.
    report(&mut b, 0, 0);
    let ks: Vec<_> = (0..4)
        .map(|i| {
            b.sip(
                2 * SEC,
                &invite(&format!("j{i}"), &format!("z9hG4bK-j{i}"), ""),
            )
        })
        .collect();
    assert!(ks.contains(&Decision::Hand(0)), "{ks:?}");
}

#[test]
fn remote_capacity_counts_reported_load_plus_our_pending() {
    let mut b = bed_of(
        vec![MemberSpec::remote("198.18.0.11:5070".parse().unwrap(), 3)],
        64,
        RouterConfig {
            policy: Policy::RoundRobin,
            ..RouterConfig::default()
        },
    );
    report(&mut b, 0, 2); // another dispatcher's sessions hold 2 units
    assert_eq!(
        b.sip(SEC, &invite("c1", "z9hG4bK-c1", "")),
        Decision::Hand(0)
    );
    assert!(
        matches!(
            b.sip(SEC, &invite("c2", "z9hG4bK-c2", "")),
            Decision::Reply(_)
        ),
        "2 + 1 pending = 3 = full"
    );
    // A new report says 1 unit in use (ours is counted in it now): room for 2 more.
    report(&mut b, 0, 1);
    assert_eq!(
        b.sip(SEC, &invite("c3", "z9hG4bK-c3", "")),
        Decision::Hand(0)
    );
    assert_eq!(
        b.sip(SEC, &invite("c4", "z9hG4bK-c4", "")),
        Decision::Hand(0)
    );
    assert!(matches!(
        b.sip(SEC, &invite("c5", "z9hG4bK-c5", "")),
        Decision::Reply(_)
    ));
}

#[test]
fn piggybacked_handoffs_carry_their_own_segment() {
    let mut b = bed(2, Policy::RoundRobin);
    let two = b"CRCX 81 a@mgw MGCP 1.0\r\nC: 1\r\nM: recvonly\r\n.\r\nCRCX 82 b@mgw MGCP 1.0\r\nC: 2\r\nM: recvonly\r\n";
    assert_eq!(b.send(SEC, PortProto::Mgcp, two), Decision::Hand(1));
    let (q0, q1) = (b.drained(0), b.drained(1));
    assert!(
        q0[0].starts_with(b"CRCX 81 "),
        "{:?}",
        String::from_utf8_lossy(&q0[0])
    );
    assert!(
        q1[0].starts_with(b"CRCX 82 "),
        "{:?}",
        String::from_utf8_lossy(&q1[0])
    );
}

#[test]
fn a_fixed_seed_makes_decisions_reproducible() {
    let cfg = || RouterConfig {
        policy: Policy::LeastLoaded,
        seed: 42,
        ..RouterConfig::default()
    };
    let mut a = bed_with(4, 0, 1 << 12, cfg());
    let mut b = bed_with(4, 0, 1 << 12, cfg());
    for i in 0..100 {
        let inv = invite(&format!("seed-{i}"), &format!("z9hG4bK-sd{i}"), "");
        assert_eq!(a.sip(SEC, &inv), b.sip(SEC, &inv));
    }
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
        assert_eq!(a.sip(SEC, &bye), Decision::Hand(k));
        assert_eq!(b.sip(SEC, &bye), Decision::Hand(k));
        let mdcx = format!(
            "MDCX {} ep@mgw MGCP 1.0\r\nC: 1\r\nI: {}\r\n",
            5000 + i,
            proc_tag(k)
        );
        assert_eq!(mgcp(&mut a, SEC, &mdcx), Decision::Hand(k));
        assert_eq!(mgcp(&mut b, SEC, &mdcx), Decision::Hand(k));
    }
}

#[test]
fn least_loaded_weighs_the_same_pair_on_every_dispatcher() {
    // Different seeds (two dispatchers), the same load view (the same messages in the same
    // order): the same choice for every INVITE, so a retransmission that reaches the other
    // dispatcher (its flow moved) finds the original processor while the views agree.
    let cfg = |seed| RouterConfig {
        policy: Policy::LeastLoaded,
        seed,
        ..RouterConfig::default()
    };
    let mut a = bed_with(4, 0, 1 << 12, cfg(1));
    let mut b = bed_with(4, 0, 1 << 12, cfg(987_654_321));
    let mut used = [0u32; 4];
    for i in 0..200 {
        let inv = invite(&format!("ll-{i}"), &format!("z9hG4bK-ll{i}"), "");
        let d = a.sip(SEC, &inv);
        assert_eq!(d, b.sip(SEC, &inv), "INVITE {i}");
        if let Decision::Hand(k) = d {
            used[k as usize] += 1;
        }
    }
    assert!(
        used.iter().all(|&n| n > 20),
        "still spread by load: {used:?}"
    );
}

fn keyed_bed(tag_keys: TagKeys) -> Bed {
    bed_with(
        4,
        0,
        64,
        RouterConfig {
            tag_keys,
            ..RouterConfig::default()
        },
    )
}

fn keyed_tag(key: &TagKey, id: u16, nonce: u64) -> String {
    let mut t = [0u8; 64];
    let n = wire::tag::encode(key, id, nonce, &mut t).unwrap();
    String::from_utf8(t[..n].to_vec()).unwrap()
}

fn bye_with(tag: &str, i: u32) -> Vec<u8> {
    request(
        "BYE",
        &format!("k{i}"),
        &format!("z9hG4bK-k{i}"),
        Some(tag),
        "BYE",
    )
}

/// Every decision counted exactly once (MGCP answers also count in `mgcp_answered`).
fn decisions(s: &RouterStats) -> u64 {
    s.new_dialogs
        + s.retransmissions
        + s.cancels
        + s.acks_affinity
        + s.in_dialog
        + s.options_answered
        + s.rejected_method
        + s.no_transaction
        + s.bad_tag
        + s.bad_request
        + s.too_large
        + s.overload
        + s.dropped_empty
        + s.dropped_response
        + s.dropped_unparseable
        + s.dropped_ack
        + s.dropped_reply_too_large
        + s.dropped_removed
        + s.mgcp_stateless
        + s.mgcp_retransmissions
}

#[test]
fn keyed_tags_route_forged_ones_get_481_and_bad_tag_foreign_ones_no_transaction() {
    let key = processor::deploy::tag_key(b"shared secret");
    let mut b = keyed_bed(TagKeys::single(key));
    assert_eq!(
        b.sip(SEC, &bye_with(&keyed_tag(&key, 3, 0xfeed), 0)),
        Decision::Hand(3)
    );
    let wrong = processor::deploy::tag_key(b"shared secret2");
    // Right format, wrong MAC: unkeyed, another key, a flipped MAC bit, an id changed
    // without fixing the MAC. None reaches a processor; each counts in bad_tag.
    let mut flipped = keyed_tag(&key, 3, 0xfeed);
    flipped.replace_range(20..21, if &flipped[20..21] == "a" { "b" } else { "a" });
    let mut other_id = keyed_tag(&key, 3, 0xfeed);
    other_id.replace_range(3..4, "2");
    let forged = [
        keyed_tag(&TagKey::UNKEYED, 3, 0xfeed),
        keyed_tag(&wrong, 3, 0xfeed),
        flipped,
        other_id,
    ];
    for (i, f) in forged.iter().enumerate() {
        let a = b.sip(SEC, &bye_with(f, i as u32 + 1));
        assert!(b.reply_text(a).starts_with("SIP/2.0 481"), "{f}");
    }
    assert_eq!(b.router.stats().bad_tag, 4);
    // A forged ACK is dropped (never answered), counted the same way.
    let ack = request("ACK", "k9", "z9hG4bK-k9", Some(&forged[1]), "ACK");
    assert_eq!(b.sip(SEC, &ack), Decision::Drop(DropReason::BadTag));
    assert_eq!(b.router.stats().bad_tag, 5);
    // Not in the processor-tag format at all (a foreign UA's tag, a v1 tag): as before.
    for (i, t) in ["1928301774", "000c00000000deadbeef52fa4dc9"]
        .iter()
        .enumerate()
    {
        let a = b.sip(SEC, &bye_with(t, i as u32 + 20));
        assert!(b.reply_text(a).starts_with("SIP/2.0 481"), "{t}");
    }
    let s = b.router.stats();
    assert_eq!((s.bad_tag, s.no_transaction, s.in_dialog), (5, 2, 1));
    assert_eq!(decisions(&s), 8, "one counter per decision: {s:?}");
    assert_eq!(
        b.drained(3).len(),
        1,
        "only the keyed tag reached processor 3"
    );
    for k in [0, 1, 2] {
        assert!(b.drained(k).is_empty());
    }
}

#[test]
fn the_previous_key_is_accepted_until_it_is_removed() {
    let old = processor::deploy::tag_key(b"old secret");
    let new = processor::deploy::tag_key(b"new secret");
    let old_tag = keyed_tag(&old, 2, 7);
    let new_tag = keyed_tag(&new, 1, 8);
    // Before the rotation: only the old key.
    let mut before = keyed_bed(TagKeys::single(old));
    assert_eq!(before.sip(SEC, &bye_with(&old_tag, 0)), Decision::Hand(2));
    // During: new current, old previous; both route.
    let mut during = keyed_bed(TagKeys {
        current: new,
        previous: Some(old),
    });
    assert_eq!(during.sip(SEC, &bye_with(&old_tag, 1)), Decision::Hand(2));
    assert_eq!(during.sip(SEC, &bye_with(&new_tag, 2)), Decision::Hand(1));
    let mdcx = format!("MDCX 3001 ep@mgw MGCP 1.0\r\nC: 1\r\nI: {old_tag}\r\n");
    assert_eq!(mgcp(&mut during, SEC, &mdcx), Decision::Hand(2));
    assert_eq!(during.router.stats().bad_tag, 0);
    // After the previous key is removed: old tags are refused as forged.
    let mut after = keyed_bed(TagKeys::single(new));
    let a = after.sip(SEC, &bye_with(&old_tag, 3));
    assert!(after.reply_text(a).starts_with("SIP/2.0 481"));
    assert_eq!(after.sip(SEC, &bye_with(&new_tag, 4)), Decision::Hand(1));
    let r = {
        let a = mgcp(&mut after, SEC, &mdcx);
        after.reply_text(a)
    };
    assert!(r.starts_with("515 3001 "), "{r}");
    let s = after.router.stats();
    assert_eq!((s.bad_tag, s.in_dialog), (2, 1));
    assert!(
        after.drained(2).is_empty(),
        "nothing reached the old tags' processor"
    );
}

#[test]
fn mgcp_bad_connection_id_gets_515_and_is_never_routed_even_by_port() {
    let key = processor::deploy::tag_key(b"shared secret");
    let mut b = keyed_bed(TagKeys::single(key));
    let good = keyed_tag(&key, 2, 1);
    let mdcx =
        |tid: u32, ep: &str, i: &str| format!("MDCX {tid} {ep} MGCP 1.0\r\nC: 1\r\nI: {i}\r\n");
    assert_eq!(
        mgcp(&mut b, SEC, &mdcx(4001, "ep@mgw", &good)),
        Decision::Hand(2)
    );
    let mut forged = good.clone();
    forged.replace_range(0..4, "0001");
    for (tid, ep) in [(4002, "ep@mgw"), (4003, "ep@[198.18.0.1]:5071")] {
        let r = {
            let a = mgcp(&mut b, SEC, &mdcx(tid, ep, &forged));
            b.reply_text(a)
        };
        assert!(r.starts_with(&format!("515 {tid} ")), "{r}");
    }
    // A connection id not in the processor-tag format: as before (515, no_transaction when
    // no endpoint port names a processor).
    let r = {
        let a = mgcp(&mut b, SEC, &mdcx(4004, "ep@mgw", "12345"));
        b.reply_text(a)
    };
    assert!(r.starts_with("515 4004 "), "{r}");
    let s = b.router.stats();
    assert_eq!((s.bad_tag, s.no_transaction, s.mgcp_stateless), (2, 1, 1));
    assert_eq!(
        b.drained(1).len(),
        0,
        "the forged id's processor saw nothing"
    );
    assert_eq!(b.drained(2).len(), 1);
}

/// Two in-chassis processors with a pending-INVITE cap of 3 each.
fn pending_bed(options: OptionsMode) -> Bed {
    let specs = (0..2)
        .map(|k| MemberSpec {
            max_pending: 3,
            ..MemberSpec::local(5070 + k as u16, 0)
        })
        .collect();
    bed_of(
        specs,
        64,
        RouterConfig {
            policy: Policy::RoundRobin,
            options,
            ..RouterConfig::default()
        },
    )
}

#[test]
fn a_processor_at_its_pending_invite_cap_is_skipped() {
    let mut b = pending_bed(OptionsMode::Forward);
    b.pending[0] = 3;
    for i in 0..4 {
        let inv = invite(&format!("c{i}"), &format!("z9hG4bK-{i}"), "");
        assert_eq!(b.sip(SEC, &inv), Decision::Hand(1), "INVITE {i}");
    }
    // Below the cap by one: it takes one again.
    b.pending[0] = 2;
    assert_eq!(
        b.sip(SEC, &invite("c9", "z9hG4bK-9", "")),
        Decision::Hand(0)
    );
    // The cap gates new INVITEs only: a forwarded OPTIONS still reaches a capped processor.
    b.pending = vec![3, 3];
    let opt = request("OPTIONS", "o1", "z9hG4bK-o1", None, "OPTIONS");
    assert!(matches!(b.sip(SEC, &opt), Decision::Hand(_)));
    let st = b.router.stats();
    assert_eq!((st.new_dialogs, st.overload), (6, 0));
    assert_eq!(decisions(&st), 6);
}

#[test]
fn every_processor_at_its_pending_cap_means_503_from_the_dispatcher_until_one_drains() {
    let mut b = pending_bed(OptionsMode::Answer);
    b.pending = vec![3, 3];
    for i in 0..3 {
        let a = b.sip(SEC, &invite(&format!("c{i}"), &format!("z9hG4bK-{i}"), ""));
        let text = b.reply_text(a);
        assert!(text.starts_with("SIP/2.0 503 "), "{text}");
        assert!(text.contains("Retry-After: 5\r\n"), "{text}");
    }
    assert!(b.queues.iter().all(VecDeque::is_empty), "nothing handed");
    assert_eq!(b.router.stats().overload, 3);
    // Processor 1's pending falls below its cap (ACKs, Timer H): selected again, and the
    // retransmission of a refused INVITE is a new INVITE that now gets through.
    b.pending[1] = 1;
    assert_eq!(
        b.sip(2 * SEC, &invite("c0", "z9hG4bK-0", "")),
        Decision::Hand(1)
    );
    let st = b.router.stats();
    assert_eq!((st.new_dialogs, st.overload), (1, 3));
    assert_eq!(decisions(&st), 4, "every decision has exactly one counter");
}

#[test]
fn invites_handed_since_the_snapshot_count_toward_the_cap() {
    // One snapshot for a whole batch: the router adds what it handed since.
    let mut b = pending_bed(OptionsMode::Answer);
    b.pending = vec![2, 2];
    let snap = b.snapshot(SEC);
    let mut handed = [0; 2];
    let mut refused = 0;
    for i in 0..4 {
        let inv = invite(&format!("c{i}"), &format!("z9hG4bK-{i}"), "");
        let msg = Inbound {
            proto: PortProto::Sip,
            src: src(),
            dst: "198.18.0.1:5060".parse().unwrap(),
            payload: &inv,
        };
        match b.router.handle(SEC, &msg, &snap, &mut b.out) {
            Decision::Hand(k) => handed[usize::from(k)] += 1,
            Decision::Reply(_) => refused += 1,
            d => panic!("{d:?}"),
        }
    }
    assert_eq!((handed, refused), ([1, 1], 2));
    assert_eq!(b.router.stats().overload, 2);
}

// --- The pool changing while the router runs (reload, `ctl`) ---

#[test]
fn a_draining_processor_gets_no_new_dialogs_but_keeps_its_transactions_and_dialogs() {
    let mut b = bed(3, Policy::RoundRobin);
    let inv = invite("d1", "z9hG4bK-d1", "");
    let Decision::Hand(k) = b.sip(SEC, &inv) else {
        panic!("placed")
    };
    b.drained(usize::from(k));
    assert!(b.router.set_admin(k, crate::pool::Admin::Draining));
    // New dialogs go elsewhere, every one of them.
    for i in 0..30 {
        let d = b.sip(SEC, &invite(&format!("n{i}"), &format!("z9hG4bK-n{i}"), ""));
        assert!(matches!(d, Decision::Hand(j) if j != k), "{d:?}");
    }
    // The INVITE's retransmission and its CANCEL still reach it, and so does an in-dialog
    // request carrying its tag.
    assert_eq!(b.sip(SEC, &inv), Decision::Hand(k));
    let cancel = request("CANCEL", "d1", "z9hG4bK-d1", None, "CANCEL");
    assert_eq!(b.sip(SEC, &cancel), Decision::Hand(k));
    let bye = request("BYE", "d1", "z9hG4bK-d1b", Some(&proc_tag(k)), "BYE");
    assert_eq!(b.sip(SEC, &bye), Decision::Hand(k));
    // Enabled again, it is back in the rotation.
    b.router.set_admin(k, crate::pool::Admin::Active);
    let mut got = false;
    for i in 0..6 {
        got |= b.sip(SEC, &invite(&format!("e{i}"), &format!("z9hG4bK-e{i}"), ""))
            == Decision::Hand(k);
    }
    assert!(got, "an enabled processor is selected again");
}

#[test]
fn a_disabled_processor_is_treated_as_down() {
    let mut b = bed(2, Policy::RoundRobin);
    let inv = invite("x1", "z9hG4bK-x1", "");
    let Decision::Hand(k) = b.sip(SEC, &inv) else {
        panic!("placed")
    };
    b.router.set_admin(k, crate::pool::Admin::Disabled);
    // Its INVITE retransmission is placed afresh on the other one, like a dead processor's.
    let other = 1 - k;
    assert_eq!(b.sip(SEC, &inv), Decision::Hand(other));
    assert_eq!(b.router.stats().rerouted, 1);
    // Everything new goes to the other.
    for i in 0..5 {
        let d = b.sip(SEC, &invite(&format!("y{i}"), &format!("z9hG4bK-y{i}"), ""));
        assert_eq!(d, Decision::Hand(other));
    }
    // Both disabled: the dispatcher answers 503 itself.
    b.router.set_admin(other, crate::pool::Admin::Disabled);
    let d = b.sip(SEC, &invite("z", "z9hG4bK-z", ""));
    assert!(b.reply_text(d).starts_with("SIP/2.0 503 "));
}

#[test]
fn a_removed_processor_gets_nothing_and_its_id_is_not_reused_by_accident() {
    let mut b = bed(3, Policy::RoundRobin);
    let inv = invite("r1", "z9hG4bK-r1", "");
    let Decision::Hand(k) = b.sip(SEC, &inv) else {
        panic!("placed")
    };
    b.router.remove_member(k);
    let before = decisions(&b.router.stats());
    // In-dialog requests naming it get 481; its CANCEL is dropped and counted.
    let bye = request("BYE", "r1", "z9hG4bK-r1b", Some(&proc_tag(k)), "BYE");
    let d = b.sip(SEC, &bye);
    assert!(b.reply_text(d).starts_with("SIP/2.0 481 "));
    let cancel = request("CANCEL", "r1", "z9hG4bK-r1", None, "CANCEL");
    assert_eq!(b.sip(SEC, &cancel), Decision::Drop(DropReason::Removed));
    assert_eq!(b.router.stats().dropped_removed, 1);
    // Its INVITE retransmission is placed on a processor still in the pool.
    assert!(matches!(b.sip(SEC, &inv), Decision::Hand(j) if j != k));
    for i in 0..9 {
        let d = b.sip(SEC, &invite(&format!("q{i}"), &format!("z9hG4bK-q{i}"), ""));
        assert!(matches!(d, Decision::Hand(j) if j != k));
    }
    assert_eq!(
        decisions(&b.router.stats()) - before,
        12,
        "each decision counted exactly once"
    );
}

#[test]
fn a_processor_added_at_runtime_takes_new_dialogs_at_its_own_id() {
    let mut b = bed(2, Policy::RoundRobin);
    // Id 4: ids 2 and 3 stay empty.
    let spec = MemberSpec::local(5074, 0);
    b.router.set_member(4, spec);
    b.specs.resize(5, MemberSpec::local(0, 0));
    b.specs[4] = spec;
    b.queues.resize(5, VecDeque::new());
    b.heartbeats.resize(5, 1);
    b.released.resize(5, 0);
    b.pending.resize(5, 0);
    b.remote.resize(5, MemberView::default());
    // Slots 2 and 3 have no processor: the snapshot shows them not alive (as `Links` does).
    b.heartbeats[2] = 0;
    b.heartbeats[3] = 0;
    b.heartbeat = false;
    let mut per = [0u32; 5];
    for i in 0..30 {
        let now = SEC + i;
        b.heartbeats[0] = now;
        b.heartbeats[1] = now;
        b.heartbeats[4] = now;
        let d = b.sip(now, &invite(&format!("a{i}"), &format!("z9hG4bK-a{i}"), ""));
        let Decision::Hand(k) = d else {
            panic!("{d:?}")
        };
        per[usize::from(k)] += 1;
    }
    assert_eq!(per, [10, 10, 0, 0, 10]);
    // Its tag routes in-dialog requests to it; a tag naming an empty slot gets 481.
    let bye = request("BYE", "a0", "z9hG4bK-b", Some(&proc_tag(4)), "BYE");
    assert_eq!(b.sip(2 * SEC, &bye), Decision::Hand(4));
    let bye3 = request("BYE", "a1", "z9hG4bK-b3", Some(&proc_tag(3)), "BYE");
    let d = b.sip(2 * SEC, &bye3);
    assert!(b.reply_text(d).starts_with("SIP/2.0 481 "));
}

#[test]
fn reconfigure_keeps_the_affinity_table() {
    let mut b = bed(3, Policy::RoundRobin);
    let inv = invite("k1", "z9hG4bK-k1", "");
    let Decision::Hand(k) = b.sip(SEC, &inv) else {
        panic!("placed")
    };
    b.router.reconfigure(RouterConfig {
        policy: Policy::Hash,
        retry_after_s: 9,
        ..RouterConfig::default()
    });
    assert_eq!(b.router.config().policy, Policy::Hash);
    assert_eq!(
        b.sip(SEC, &inv),
        Decision::Hand(k),
        "a retransmission after the reload still finds its processor"
    );
    let cancel = request("CANCEL", "k1", "z9hG4bK-k1", None, "CANCEL");
    assert_eq!(b.sip(SEC, &cancel), Decision::Hand(k));
}

#[test]
fn a_remote_processor_at_its_reported_pending_cap_is_skipped_until_it_reports_room() {
    let mut b = lan_bed(2);
    let cap_report = |b: &mut Bed, k: usize, pending: u32| {
        let v = &mut b.remote[k];
        *v = MemberView {
            pending_invites: pending,
            reported_max_pending: 3,
            ..MemberView::remote(true, 0, v.reports + 1, 0)
        };
    };
    cap_report(&mut b, 0, 2);
    cap_report(&mut b, 1, 3);
    // Processor 1 is at its cap: everything goes to 0, which takes one more before its own
    // cap (2 reported + 1 handed since the report) is reached; then the dispatcher answers.
    let d = b.sip(SEC, &invite("p0", "z9hG4bK-p0", ""));
    assert_eq!(d, Decision::Hand(0));
    let d = b.sip(SEC, &invite("p1", "z9hG4bK-p1", ""));
    assert!(
        b.reply_text(d).starts_with("SIP/2.0 503 "),
        "both at the cap"
    );
    // A new report from 1 with room brings it back.
    cap_report(&mut b, 1, 0);
    assert_eq!(
        b.sip(SEC, &invite("p2", "z9hG4bK-p2", "")),
        Decision::Hand(1)
    );
}

/// Two routers (two dispatcher threads) over the same processors, sharing their boards.
fn shared_pair(capacity: u32) -> (Bed, Bed, Vec<std::sync::Arc<fabric::LoadReport>>) {
    let specs = vec![
        MemberSpec::local(5070, capacity),
        MemberSpec::local(5071, capacity),
    ];
    let cfg = RouterConfig {
        policy: Policy::LeastLoaded,
        ..RouterConfig::default()
    };
    let boards: Vec<_> = (0..2).map(|_| fabric::LoadReport::new(capacity)).collect();
    let mut a = bed_of(specs.clone(), 4096, cfg.clone());
    let mut b = bed_of(specs, 4096, cfg);
    for (k, board) in boards.iter().enumerate() {
        a.router.share_units(k as u16, std::sync::Arc::clone(board));
        b.router.share_units(k as u16, std::sync::Arc::clone(board));
    }
    (a, b, boards)
}

#[test]
fn two_threads_sharing_the_board_never_overshoot_a_capacity() {
    let (mut a, mut b, boards) = shared_pair(5);
    let mut handed = [0u32; 2];
    let mut refused = 0;
    for i in 0..30 {
        let bed = if i % 2 == 0 { &mut a } else { &mut b };
        match bed.sip(SEC, &invite(&format!("s{i}"), &format!("z9hG4bK-s{i}"), "")) {
            Decision::Hand(k) => handed[usize::from(k)] += 1,
            Decision::Reply(_) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        handed,
        [5, 5],
        "each thread alone would have placed 5 per processor"
    );
    assert_eq!(refused, 20);
    for board in &boards {
        assert_eq!(
            board
                .assigned_units
                .load(std::sync::atomic::Ordering::Relaxed),
            5
        );
    }
    assert_eq!(
        a.router.stats().new_dialogs + b.router.stats().new_dialogs,
        10
    );
    // Processor 0 releases 3 (both threads' snapshots show it): 3 more fit, from either.
    a.released[0] = 3;
    b.released[0] = 3;
    let mut more = 0;
    for i in 30..40 {
        let bed = if i % 2 == 0 { &mut b } else { &mut a };
        if bed.sip(SEC, &invite(&format!("s{i}"), &format!("z9hG4bK-s{i}"), ""))
            == Decision::Hand(0)
        {
            more += 1;
        }
    }
    assert_eq!(more, 3);
}

#[test]
fn racing_threads_place_exactly_the_capacity() {
    // Real concurrency: two threads race for the same units; exactly the capacity is placed.
    let (a, b, boards) = shared_pair(100);
    let run = |mut bed: Bed, tag: &'static str| {
        std::thread::spawn(move || {
            let mut n = 0u32;
            for i in 0..2_000 {
                let call = format!("{tag}{i}");
                if let Decision::Hand(_) =
                    bed.sip(SEC, &invite(&call, &format!("z9hG4bK-{call}"), ""))
                {
                    n += 1;
                }
            }
            (n, bed.router.stats().capacity_raced)
        })
    };
    let (ta, tb) = (run(a, "a"), run(b, "b"));
    let (na, ra) = ta.join().unwrap();
    let (nb, rb) = tb.join().unwrap();
    assert_eq!(
        na + nb,
        200,
        "threads placed {na} + {nb} (raced {ra} + {rb})"
    );
    for board in &boards {
        assert_eq!(
            board
                .assigned_units
                .load(std::sync::atomic::Ordering::Relaxed),
            100
        );
    }
}
