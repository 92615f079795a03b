use super::*;

const MS: u64 = 1_000_000;

fn target() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}
fn proc_() -> SocketAddr {
    "127.0.0.1:5070".parse().unwrap()
}

fn uac(hold_ms: u64) -> SipUac {
    let mut c = SipConfig::new(
        target(),
        vec![
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:40001".parse().unwrap(),
        ],
    );
    c.max_calls = 16;
    c.hold_ns = hold_ms * MS;
    SipUac::new(c)
}

fn sent(out: &Outbox) -> Vec<(usize, SocketAddr, String)> {
    out.iter()
        .map(|(s, d, b)| (s, d, String::from_utf8(b.to_vec()).unwrap()))
        .collect()
}

fn header<'a>(req: &'a str, name: &str) -> &'a str {
    req.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in {req}"))
}

/// A response to `req` as a UAS would build it.
fn respond(req: &str, code: u16, to_tag: Option<&str>, contact: Option<&str>) -> Vec<u8> {
    let mut s = format!("SIP/2.0 {code} Whatever\r\n");
    s += &format!("Via: {}\r\n", header(req, "Via"));
    s += &format!("From: {}\r\n", header(req, "From"));
    let to = header(req, "To");
    match to_tag {
        Some(t) if !to.contains("tag=") => s += &format!("To: {to};tag={t}\r\n"),
        _ => s += &format!("To: {to}\r\n"),
    }
    s += &format!("Call-ID: {}\r\n", header(req, "Call-ID"));
    s += &format!("CSeq: {}\r\n", header(req, "CSeq"));
    if let Some(c) = contact {
        s += &format!("Contact: <{c}>\r\n");
    }
    s += "Content-Length: 0\r\n\r\n";
    s.into_bytes()
}

#[test]
fn invite_is_valid_sip_with_encoded_call_id_and_sizes() {
    let mut c = SipConfig::new(target(), vec!["127.0.0.1:40000".parse().unwrap()]);
    c.sdp_bytes = Some(500);
    c.session_size = Some(3);
    let mut u = SipUac::new(c);
    let mut out = Outbox::new(4, u.msg_cap());
    assert!(u.start(0, 0, 0x1234, &mut out));
    let (_, dst, inv) = sent(&out).pop().unwrap();
    assert_eq!(dst, target());
    let m = Message::parse(inv.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.body().len(), 500);
    assert_eq!(m.content_length(), Some(500));
    assert_eq!(m.header(b"X-Session-Size"), Some(&b"3"[..]));
    let (slot, seq) = decode_call_id(m.call_id()).unwrap();
    assert_eq!(seq, 0x1234);
    assert_eq!(slot, 0);
    assert!(m.top_via().branch().unwrap().starts_with(b"z9hG4bK"));
    assert_eq!(m.session_size(&wire::SessionSizeConfig::default()), 3);
}

#[test]
fn sdp_padding_is_exact() {
    let ip: IpAddr = "10.1.2.3".parse().unwrap();
    let base = make_sdp(&ip, None).len();
    for want in [base + 6, base + 7, base + 83, base + 84, 1000, 4000] {
        assert_eq!(make_sdp(&ip, Some(want)).len(), want, "{want}");
    }
    assert!(make_sdp(&ip, Some(0)).is_empty());
    assert_eq!(make_sdp(&ip, Some(10)).len(), base);
}

#[test]
fn full_call_ack_and_bye_follow_contact() {
    let mut u = uac(1000);
    let mut out = Outbox::new(8, u.msg_cap());
    u.start(10 * MS, 5 * MS, 3, &mut out);
    let (sock, _, inv) = sent(&out).pop().unwrap();
    assert_eq!(sock, 1); // call 3 of 2 sockets
    out.clear();
    u.on_datagram(11 * MS, target(), &respond(&inv, 100, None, None), &mut out);
    assert!(out.is_empty());
    let ok = respond(
        &inv,
        200,
        Some("tt9"),
        Some("sip:p1@127.0.0.1:5070;transport=udp"),
    );
    u.on_datagram(15 * MS, proc_(), &ok, &mut out);
    let (sock, dst, ack) = sent(&out).pop().unwrap();
    assert_eq!((sock, dst), (1, proc_()));
    assert!(
        ack.starts_with("ACK sip:p1@127.0.0.1:5070;transport=udp SIP/2.0\r\n"),
        "{ack}"
    );
    assert!(header(&ack, "To").ends_with(";tag=tt9"));
    assert_eq!(header(&ack, "CSeq"), "1 ACK");
    assert_eq!(header(&ack, "Call-ID"), header(&inv, "Call-ID"));
    assert_ne!(
        header(&ack, "Via"),
        header(&inv, "Via"),
        "2xx ACK is a new transaction"
    );
    Message::parse(ack.as_bytes(), &Limits::default()).unwrap();
    out.clear();
    // Latencies from the intended time (5 ms), not the actual send (10 ms).
    assert_eq!(u.invite_100.hist.len(), 1);
    assert!(u
        .invite_100
        .hist
        .equivalent(u.invite_100.hist.max(), 6 * MS));
    assert!(u
        .invite_200
        .hist
        .equivalent(u.invite_200.hist.max(), 10 * MS));
    // Hold: no BYE before 1 s after the 200.
    u.on_timers(1014 * MS, &mut out);
    assert!(out.is_empty());
    // The generator is late: BYE latency counts from the intended 1015 ms.
    u.on_timers(1020 * MS, &mut out);
    let (_, dst, bye) = sent(&out).pop().unwrap();
    assert_eq!(dst, proc_());
    assert!(bye.starts_with("BYE sip:p1@127.0.0.1:5070;transport=udp SIP/2.0\r\n"));
    assert_eq!(header(&bye, "CSeq"), "2 BYE");
    Message::parse(bye.as_bytes(), &Limits::default()).unwrap();
    out.clear();
    u.on_datagram(
        1022 * MS,
        proc_(),
        &respond(&bye, 200, None, None),
        &mut out,
    );
    assert_eq!(u.counters.completed, 1);
    assert_eq!(u.in_flight(), 0);
    assert!(u.bye_200.hist.equivalent(u.bye_200.hist.max(), 7 * MS));
    assert_eq!(u.counters.failures, SipFailures::default());
    // A late duplicate 200 for the BYE is stale, not a failure.
    u.on_datagram(
        1023 * MS,
        proc_(),
        &respond(&bye, 200, None, None),
        &mut out,
    );
    assert_eq!(u.counters.stale_responses, 1);
}

#[test]
fn ack_bye_to_target_when_asked() {
    let mut c = SipConfig::new(target(), vec!["127.0.0.1:40000".parse().unwrap()]);
    c.ack_bye_to = AckByeTo::Target;
    let mut u = SipUac::new(c);
    let mut out = Outbox::new(8, u.msg_cap());
    u.start(0, 0, 0, &mut out);
    let (_, _, inv) = sent(&out).pop().unwrap();
    out.clear();
    let ok = respond(&inv, 200, Some("x"), Some("sip:p@127.0.0.1:5070"));
    u.on_datagram(MS, proc_(), &ok, &mut out);
    // hold 0: ACK and BYE at once, both to the target; the URI is still the Contact.
    let m = sent(&out);
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|(_, d, _)| *d == target()));
    assert!(m[0].2.starts_with("ACK sip:p@127.0.0.1:5070 "));
    assert!(m[1].2.starts_with("BYE "));
}

#[test]
fn invite_retransmits_on_timer_a_until_timer_b() {
    let mut u = uac(0);
    let mut out = Outbox::new(8, u.msg_cap());
    u.start(0, 0, 0, &mut out);
    let first = sent(&out).pop().unwrap().2;
    out.clear();
    let mut at = Vec::new();
    let mut t = 0;
    while t <= 33_000 * MS {
        u.on_timers(t, &mut out);
        for (_, d, s) in sent(&out) {
            assert_eq!(d, target());
            assert_eq!(s, first, "retransmission is byte-identical");
            at.push(t / MS);
        }
        out.clear();
        t += 10 * MS;
    }
    assert_eq!(at, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(u.counters.retransmissions.invite, 6);
    assert_eq!(u.counters.failures.timeout_invite, 1);
    assert_eq!(u.in_flight(), 0);
}

#[test]
fn provisional_stops_invite_retransmission() {
    let mut u = uac(0);
    let mut out = Outbox::new(8, u.msg_cap());
    u.start(0, 0, 0, &mut out);
    let inv = sent(&out).pop().unwrap().2;
    out.clear();
    u.on_timers(500 * MS, &mut out);
    assert_eq!(out.len(), 1);
    out.clear();
    u.on_datagram(
        600 * MS,
        target(),
        &respond(&inv, 100, None, None),
        &mut out,
    );
    for t in (600..5000).step_by(10) {
        u.on_timers(t * MS, &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(u.counters.retransmissions.invite, 1);
}

#[test]
fn bye_retransmits_capped_at_t2() {
    let mut u = uac(0);
    let mut out = Outbox::new(8, u.msg_cap());
    u.start(0, 0, 0, &mut out);
    let inv = sent(&out).pop().unwrap().2;
    out.clear();
    u.on_datagram(
        MS,
        proc_(),
        &respond(&inv, 200, Some("a"), Some("sip:127.0.0.1:5070")),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    out.clear();
    let mut at = Vec::new();
    let mut t = MS;
    while t <= 20_001 * MS {
        u.on_timers(t, &mut out);
        for (_, d, s) in sent(&out) {
            assert_eq!(d, proc_());
            assert!(s.starts_with("BYE "));
            at.push(t / MS);
        }
        out.clear();
        t += MS;
    }
    assert_eq!(at, vec![501, 1501, 3501, 7501, 11501, 15501, 19501]);
}

#[test]
fn retransmitted_2xx_gets_the_ack_again() {
    let mut u = uac(5000);
    let mut out = Outbox::new(8, u.msg_cap());
    u.start(0, 0, 0, &mut out);
    let inv = sent(&out).pop().unwrap().2;
    out.clear();
    let ok = respond(&inv, 200, Some("a"), Some("sip:127.0.0.1:5070"));
    u.on_datagram(MS, proc_(), &ok, &mut out);
    let ack1 = sent(&out).pop().unwrap().2;
    out.clear();
    u.on_datagram(501 * MS, proc_(), &ok, &mut out);
    let ack2 = sent(&out).pop().unwrap().2;
    assert_eq!(ack1, ack2);
    assert_eq!(u.counters.retransmissions.ack, 1);
    assert_eq!(u.invite_200.hist.len(), 1);
}

#[test]
fn matching_by_call_id_and_failures_by_kind() {
    let mut u = uac(0);
    let mut out = Outbox::new(16, u.msg_cap());
    for i in 0..5 {
        u.start(0, 0, i, &mut out);
    }
    let invs: Vec<String> = sent(&out).into_iter().map(|m| m.2).collect();
    out.clear();
    // Answer out of order: each response finds its own call.
    u.on_datagram(
        MS,
        target(),
        &respond(&invs[3], 503, Some("z"), None),
        &mut out,
    );
    let (_, dst, ack) = sent(&out).pop().unwrap();
    assert_eq!(dst, target());
    assert!(ack.starts_with("ACK sip:service@127.0.0.1:5060 "));
    assert_eq!(
        header(&ack, "Via"),
        header(&invs[3], "Via"),
        "non-2xx ACK: same branch"
    );
    out.clear();
    u.on_datagram(MS, target(), &respond(&invs[1], 486, None, None), &mut out);
    u.on_datagram(MS, target(), &respond(&invs[0], 500, None, None), &mut out);
    u.on_datagram(MS, target(), &respond(&invs[2], 603, None, None), &mut out);
    assert_eq!(out.len(), 3, "each non-2xx final is ACKed");
    out.clear();
    let f = u.counters.failures;
    assert_eq!(
        (f.status_503, f.status_4xx, f.status_5xx, f.status_6xx),
        (1, 1, 1, 1)
    );
    assert_eq!(u.in_flight(), 1);
    // Same slot, wrong sequence number: stale. Unknown Call-ID and requests: unexpected.
    let stale = invs[4].replace(&header(&invs[4], "Call-ID")[9..25], "00000000000000ff");
    u.on_datagram(MS, target(), &respond(&stale, 200, None, None), &mut out);
    assert_eq!(u.counters.stale_responses, 1);
    let alien = invs[4].replace(header(&invs[4], "Call-ID"), "abc@elsewhere");
    u.on_datagram(MS, target(), &respond(&alien, 200, None, None), &mut out);
    u.on_datagram(MS, target(), invs[4].as_bytes(), &mut out);
    u.on_datagram(MS, target(), b"\x00\x01 not sip", &mut out);
    assert_eq!(u.counters.failures.unexpected, 2);
    assert_eq!(u.counters.failures.unparseable, 1);
    assert!(out.is_empty());
    // The remaining call still completes.
    u.on_datagram(
        MS,
        proc_(),
        &respond(&invs[4], 200, Some("t"), Some("sip:127.0.0.1:5070")),
        &mut out,
    );
    let bye = sent(&out).pop().unwrap().2;
    out.clear();
    u.on_datagram(2 * MS, proc_(), &respond(&bye, 200, None, None), &mut out);
    assert_eq!(u.counters.completed, 1);
    assert_eq!(u.counters.failures.calls(), 4);
}

#[test]
fn slots_run_out_and_are_reused() {
    let mut c = SipConfig::new(target(), vec!["127.0.0.1:40000".parse().unwrap()]);
    c.max_calls = 2;
    let mut u = SipUac::new(c);
    let mut out = Outbox::new(8, u.msg_cap());
    assert!(u.start(0, 0, 0, &mut out));
    assert!(u.start(0, 0, 1, &mut out));
    assert!(!u.start(0, 0, 2, &mut out));
    assert_eq!(u.counters.failures.no_slot, 1);
    let inv0 = sent(&out)[0].2.clone();
    out.clear();
    u.on_datagram(MS, target(), &respond(&inv0, 404, None, None), &mut out);
    out.clear();
    assert!(u.start(2 * MS, 2 * MS, 3, &mut out));
    let inv3 = sent(&out).pop().unwrap().2;
    let (slot0, _) = decode_call_id(header(&inv0, "Call-ID").as_bytes()).unwrap();
    let (slot3, seq3) = decode_call_id(header(&inv3, "Call-ID").as_bytes()).unwrap();
    assert_eq!((slot0, slot3, seq3), (slot3, slot0, 3));
}

#[test]
fn contact_hostport_forms() {
    let a = |s: &str| uri_hostport(s.as_bytes());
    assert_eq!(a("sip:p@127.0.0.1:5070;transport=udp"), Some(proc_()));
    assert_eq!(a("sip:127.0.0.1:5070"), Some(proc_()));
    assert_eq!(a("sip:u@10.0.0.1"), Some("10.0.0.1:5060".parse().unwrap()));
    assert_eq!(
        a("sip:u@[2001:db8::1]:5080"),
        Some("[2001:db8::1]:5080".parse().unwrap())
    );
    assert_eq!(a("sip:u@host.example:5070"), None);
    assert_eq!(a(""), None);
}

#[test]
fn blast_sends_without_state() {
    let mut c = SipConfig::new(target(), vec!["127.0.0.1:40000".parse().unwrap()]);
    c.blast = true;
    c.pad_bytes = 300;
    let mut u = SipUac::new(c);
    let mut out = Outbox::new(8, u.msg_cap());
    for i in 0..3 {
        assert!(u.start(0, 0, i, &mut out));
    }
    assert_eq!(u.in_flight(), 0);
    assert_eq!(u.counters.completed, 3);
    let m = sent(&out);
    let p = Message::parse(m[0].2.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(p.method(), Some(Method::Invite));
    assert_eq!(p.header(b"X-Pad").unwrap().len(), 291);
    assert_eq!(u.next_timer(), None);
}

#[test]
fn in_call_request_bytes_are_pinned() {
    // Written out from the builders' format, so a change to the writer shows up here.
    let mut u = uac(0);
    let mut out = Outbox::new(8, u.msg_cap());
    u.start(0, 0, 3, &mut out);
    let (_, _, inv) = sent(&out).pop().unwrap();
    assert_eq!(
        inv,
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bK0000000000000003i;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=f0000000000000003\r\n\
         To: <sip:service@127.0.0.1:5060>\r\nCall-ID: 00000000.0000000000000003@bench\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:bench@127.0.0.1:40001>\r\n\
         Content-Type: application/sdp\r\nContent-Length: 114\r\n\r\n"
            .to_string()
            + &String::from_utf8(make_sdp(&"127.0.0.1".parse().unwrap(), None)).unwrap()
    );
    out.clear();
    let ok = respond(&inv, 200, Some("tt9"), Some("sip:p1@127.0.0.1:5070"));
    u.on_datagram(MS, proc_(), &ok, &mut out);
    let msgs = sent(&out);
    assert_eq!(
        msgs[0].2,
        "ACK sip:p1@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bK0000000000000003a;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=f0000000000000003\r\n\
         To: <sip:service@127.0.0.1:5060>;tag=tt9\r\nCall-ID: 00000000.0000000000000003@bench\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(msgs[1].2.starts_with(
        "BYE sip:p1@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bK0000000000000003b;rport\r\n"
    ));
    assert!(msgs[1].2.ends_with(
        ";tag=tt9\r\nCall-ID: 00000000.0000000000000003@bench\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ));
}
