//! UAS behaviour with a fake clock: every datagram it would send is inspected.
use std::{sync::atomic::Ordering, time::Duration};

use super::*;

const MS: u64 = 1_000_000;
const UAC: &str = "192.0.2.10:5070";

fn cfg() -> UasConfig {
    let mut c = UasConfig::new(3, 8, "10.0.0.2:5071".parse().unwrap());
    c.media_ports = (20000, 20003);
    c.tag_key = crate::deploy::tag_key(b"uas test secret");
    c
}

fn src() -> SocketAddr {
    UAC.parse().unwrap()
}

const OFFER: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

/// Builds a request; `to_tag` adds `;tag=` to To, `extra` are header lines.
fn req(
    method: &str,
    branch: &str,
    call: &str,
    to_tag: Option<&str>,
    seq: u32,
    extra: &str,
    body: &str,
) -> String {
    let cseq_method = method;
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "{method} sip:svc@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.10>;tag=from{call}\r\nTo: <sip:svc@10.0.0.1>{tag}\r\nCall-ID: {call}\r\nCSeq: {seq} {cseq_method}\r\nContact: <sip:a@192.0.2.10:5070>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn invite(branch: &str, call: &str) -> String {
    req("INVITE", branch, call, None, 1, "", OFFER)
}

struct Sent {
    dst: SocketAddr,
    text: String,
}

impl Sent {
    fn code(&self) -> u16 {
        self.text
            .get(8..11)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.text
            .split("\r\n")
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
    }
    fn to_tag(&self) -> String {
        let to = self.header("To").unwrap();
        to.split(";tag=").nth(1).unwrap().to_string()
    }
}

fn drain(out: &mut Outbox) -> Vec<Sent> {
    let v = out
        .iter()
        .map(|(dst, b)| Sent {
            dst,
            text: String::from_utf8_lossy(b).into_owned(),
        })
        .collect();
    out.clear();
    v
}

fn send(uas: &mut Uas, now: u64, msg: &str) -> Vec<Sent> {
    let mut out = Outbox::new();
    uas.on_message(now, src(), msg.as_bytes(), &mut out);
    drain(&mut out)
}

fn tick(uas: &mut Uas, now: u64) -> Vec<Sent> {
    let mut out = Outbox::new();
    uas.on_timer(now, &mut out);
    drain(&mut out)
}

fn codes(v: &[Sent]) -> Vec<u16> {
    v.iter().map(Sent::code).collect()
}

/// Runs the clock from deadline to deadline until `until`, returning (time, sent) pairs.
fn run_until(uas: &mut Uas, until: u64) -> Vec<(u64, Sent)> {
    let mut got = vec![];
    while let Some(t) = uas.next_deadline() {
        if t > until {
            break;
        }
        for s in tick(uas, t) {
            got.push((t, s));
        }
    }
    got
}

/// INVITE + ACK; returns the To-tag.
fn establish(uas: &mut Uas, call: &str) -> (String, Sent) {
    let r = send(uas, 0, &invite(call, call));
    let ok = r.into_iter().find(|s| s.code() == 200).unwrap();
    let tag = ok.to_tag();
    assert!(send(
        uas,
        MS,
        &req("ACK", &format!("{call}ack"), call, Some(&tag), 1, "", "")
    )
    .is_empty());
    (tag, ok)
}

#[test]
fn invite_is_answered_200_without_100_with_contact_tag_and_sdp() {
    let mut uas = Uas::new(cfg());
    let r = send(&mut uas, 0, &invite("b1", "c1"));
    assert_eq!(codes(&r), [200]);
    assert!(r.iter().all(|s| s.dst == src()));
    // Answered at once: no 100 Trying (RFC 3261 §17.2.1 needs one only when the final
    // response waits over 200 ms); the 200 itself stops the INVITE retransmissions.
    let ok = &r[0];
    assert_eq!(ok.header("Contact"), Some("<sip:proc@10.0.0.2:5071>"));
    assert_eq!(ok.header("CSeq"), Some("1 INVITE"));
    assert_eq!(ok.header("Call-ID"), Some("c1"));
    assert_eq!(
        ok.header("Via"),
        Some("SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKb1")
    );
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    assert!(
        ok.text.contains("m=audio 20000 RTP/AVP 0\r\n"),
        "{}",
        ok.text
    );
    assert!(ok.text.contains("c=IN IP4 10.0.0.2\r\n"));
    let tag = ok.to_tag();
    assert_eq!(
        wire::tag::decode(
            &wire::tag::TagKeys::single(crate::deploy::tag_key(b"uas test secret")),
            tag.as_bytes(),
            8
        ),
        Ok(3),
        "To-tag names processor 3, under the configured key"
    );
    assert_eq!(
        wire::tag::decode(&wire::tag::TagKeys::UNKEYED, tag.as_bytes(), 8),
        Err(wire::tag::TagError::BadMac)
    );
    assert_eq!(uas.stats().dialogs_started, 1);
    assert_eq!(uas.load().active.load(Ordering::Relaxed), 1);
}

#[test]
fn timer_g_doubles_to_t2_and_timer_h_tears_down() {
    let mut uas = Uas::new(cfg());
    let r = send(&mut uas, 0, &invite("b1", "c1"));
    assert_eq!(codes(&r), [200]);
    let got = run_until(&mut uas, 40_000 * MS);
    let times: Vec<u64> = got.iter().map(|(t, _)| t / MS).collect();
    assert_eq!(
        times,
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(got
        .iter()
        .all(|(_, s)| s.code() == 200 && s.text == r[0].text));
    let st = uas.stats();
    assert_eq!(
        (st.timeouts, st.dialogs_ended, st.retransmissions_sent),
        (1, 1, 10)
    );
    assert_eq!(uas.active_dialogs(), 0);
    assert_eq!(uas.free_media_ports(), 2);
    assert_eq!(uas.load().active.load(Ordering::Relaxed), 0);
    assert_eq!(uas.load().released_units.load(Ordering::Relaxed), 1);
    assert_eq!(uas.next_deadline(), None, "nothing left to do");
    // A late ACK matches nothing and is not answered.
    let tag = r[0].to_tag();
    assert!(send(
        &mut uas,
        41_000 * MS,
        &req("ACK", "a", "c1", Some(&tag), 1, "", "")
    )
    .is_empty());
}

#[test]
fn ack_stops_retransmissions_and_confirms() {
    let mut uas = Uas::new(cfg());
    let r = send(&mut uas, 0, &invite("b1", "c1"));
    let got = run_until(&mut uas, 600 * MS);
    assert_eq!(got.len(), 1, "one retransmission at T1");
    let tag = r[0].to_tag();
    assert!(send(
        &mut uas,
        700 * MS,
        &req("ACK", "ack1", "c1", Some(&tag), 1, "", "")
    )
    .is_empty());
    assert!(run_until(&mut uas, 100_000 * MS).is_empty());
    assert_eq!(uas.stats().dialogs_confirmed, 1);
    assert_eq!(uas.active_dialogs(), 1, "confirmed dialog stays until BYE");
    // A retransmitted ACK is absorbed silently.
    assert!(send(
        &mut uas,
        800 * MS,
        &req("ACK", "ack1", "c1", Some(&tag), 1, "", "")
    )
    .is_empty());
}

#[test]
fn invite_retransmission_resends_last_response_without_new_dialog() {
    let mut uas = Uas::new(cfg());
    let first = send(&mut uas, 0, &invite("b1", "c1"));
    let again = send(&mut uas, 100 * MS, &invite("b1", "c1"));
    assert_eq!(codes(&again), [200]);
    assert_eq!(again[0].text, first[0].text);
    assert_eq!(uas.stats().dialogs_started, 1);
    assert_eq!(uas.stats().retransmissions_absorbed, 1);
    assert_eq!(uas.active_dialogs(), 1);
}

#[test]
fn cancel_before_final_gives_487_and_frees_everything() {
    let mut c = cfg();
    c.answer_delay = Duration::from_secs(2);
    c.send_180 = true;
    let mut uas = Uas::new(c);
    let r = send(
        &mut uas,
        0,
        &req(
            "INVITE",
            "b1",
            "c1",
            None,
            1,
            "X-Session-Size: 5\r\n",
            OFFER,
        ),
    );
    assert_eq!(codes(&r), [100, 180]);
    let tag = r[1].to_tag();
    assert_eq!(r[1].header("Contact"), Some("<sip:proc@10.0.0.2:5071>"));
    // INVITE retransmission while proceeding: the 180 again.
    assert_eq!(codes(&send(&mut uas, 50 * MS, &invite("b1", "c1"))), [180]);
    let r = send(
        &mut uas,
        100 * MS,
        &req("CANCEL", "b1", "c1", None, 1, "", ""),
    );
    assert_eq!(codes(&r), [200, 487]);
    assert_eq!(r[0].header("CSeq"), Some("1 CANCEL"));
    assert_eq!(r[1].header("CSeq"), Some("1 INVITE"));
    assert_eq!(
        r[0].to_tag(),
        tag,
        "CANCEL answered with the INVITE's To-tag"
    );
    assert_eq!(r[1].to_tag(), tag);
    let st = *uas.stats();
    assert_eq!((st.cancels, st.dialogs_ended), (1, 1));
    assert_eq!(uas.free_media_ports(), 2);
    let load = uas.load();
    assert_eq!(load.active.load(Ordering::Relaxed), 0);
    assert_eq!(load.released_units.load(Ordering::Relaxed), 5);
    assert_eq!(load.rejected_units.load(Ordering::Relaxed), 5);
    // The 487 is retransmitted until its ACK, then nothing more (and no 200 ever).
    let got = run_until(&mut uas, 700 * MS);
    assert_eq!(got.iter().map(|(_, s)| s.code()).collect::<Vec<_>>(), [487]);
    assert!(send(
        &mut uas,
        800 * MS,
        &req("ACK", "b1", "c1", Some(&tag), 1, "", "")
    )
    .is_empty());
    assert!(run_until(&mut uas, 60_000 * MS).is_empty());
    assert_eq!(uas.next_deadline(), None);
    // CANCEL retransmission: same 200.
}

#[test]
fn cancel_after_final_only_answers_the_cancel() {
    let mut uas = Uas::new(cfg());
    let r = send(&mut uas, 0, &invite("b1", "c1"));
    assert_eq!(codes(&r), [200]);
    let c = send(
        &mut uas,
        10 * MS,
        &req("CANCEL", "b1", "c1", None, 1, "", ""),
    );
    assert_eq!(codes(&c), [200]);
    assert_eq!(c[0].header("CSeq"), Some("1 CANCEL"));
    assert_eq!(uas.stats().cancels, 0);
    assert_eq!(uas.active_dialogs(), 1);
    // Retransmitted CANCEL gets the same answer.
    let again = send(
        &mut uas,
        20 * MS,
        &req("CANCEL", "b1", "c1", None, 1, "", ""),
    );
    assert_eq!(again[0].text, c[0].text);
}

#[test]
fn cancel_for_unknown_transaction_is_481() {
    let mut uas = Uas::new(cfg());
    let r = send(&mut uas, 0, &req("CANCEL", "nope", "c9", None, 1, "", ""));
    assert_eq!(codes(&r), [481]);
    assert_eq!(uas.stats().not_found_481, 1);
}

#[test]
fn reinvite_keeps_media_port_and_bumps_sdp_version() {
    let mut uas = Uas::new(cfg());
    let (tag, ok) = establish(&mut uas, "c1");
    let r = send(
        &mut uas,
        5 * MS,
        &req("INVITE", "re1", "c1", Some(&tag), 2, "", OFFER),
    );
    assert_eq!(codes(&r), [200]);
    assert_eq!(r[0].to_tag(), tag);
    assert!(r[0].text.contains("m=audio 20000 "), "{}", r[0].text);
    assert!(ok.text.contains(" 1 IN IP4 10.0.0.2") && r[0].text.contains(" 2 IN IP4 10.0.0.2"));
    assert_eq!(r[0].header("Contact"), Some("<sip:proc@10.0.0.2:5071>"));
    assert!(send(
        &mut uas,
        6 * MS,
        &req("ACK", "re1ack", "c1", Some(&tag), 2, "", "")
    )
    .is_empty());
    assert!(
        run_until(&mut uas, 100_000 * MS).is_empty(),
        "ACK stopped Timer G"
    );
    assert_eq!(uas.stats().dialogs_started, 1);
    assert_eq!(uas.active_dialogs(), 1);
}

#[test]
fn bye_frees_the_port_for_reuse_and_exhaustion_is_503() {
    let mut c = cfg();
    c.media_ports = (20000, 20001);
    let mut uas = Uas::new(c);
    let (tag, ok) = establish(&mut uas, "c1");
    assert!(ok.text.contains("m=audio 20000 "));
    let r = send(&mut uas, 2 * MS, &invite("b2", "c2"));
    assert_eq!(codes(&r), [503]);
    assert_eq!(r[0].header("Retry-After"), Some("1"));
    let t503 = r[0].to_tag();
    assert!(send(
        &mut uas,
        3 * MS,
        &req("ACK", "b2", "c2", Some(&t503), 1, "", "")
    )
    .is_empty());
    let bye = req("BYE", "bye1", "c1", Some(&tag), 2, "", "");
    let r = send(&mut uas, 4 * MS, &bye);
    assert_eq!(codes(&r), [200]);
    assert_eq!(r[0].header("CSeq"), Some("2 BYE"));
    // BYE retransmission: same response, nothing freed twice.
    let again = send(&mut uas, 5 * MS, &bye);
    assert_eq!(again[0].text, r[0].text);
    assert_eq!(uas.stats().dialogs_ended, 1);
    let (_, ok3) = establish(&mut uas, "c3");
    assert!(ok3.text.contains("m=audio 20000 "), "port reused");
    let st = uas.stats();
    assert_eq!((st.rejected, st.dialogs_started), (1, 2));
    let load = uas.load();
    assert_eq!(load.rejected_units.load(Ordering::Relaxed), 1);
    assert_eq!(load.released_units.load(Ordering::Relaxed), 2);
    assert_eq!(load.active.load(Ordering::Relaxed), 1);
}

#[test]
fn requests_for_unknown_dialogs_get_481() {
    let mut uas = Uas::new(cfg());
    let r = send(
        &mut uas,
        0,
        &req("BYE", "x1", "c1", Some("deadbeef"), 2, "", ""),
    );
    assert_eq!(codes(&r), [481]);
    let r = send(&mut uas, 0, &req("INFO", "x2", "c1", None, 2, "", ""));
    assert_eq!(codes(&r), [481]);
    let r = send(
        &mut uas,
        0,
        &req("INVITE", "x3", "c1", Some("deadbeef"), 2, "", OFFER),
    );
    assert_eq!(codes(&r), [481]);
    // Right tag, wrong Call-ID.
    let (tag, _) = establish(&mut uas, "c2");
    let r = send(
        &mut uas,
        0,
        &req("BYE", "x4", "other", Some(&tag), 2, "", ""),
    );
    assert_eq!(codes(&r), [481]);
    assert_eq!(uas.stats().not_found_481, 4);
}

#[test]
fn in_dialog_options_info_update() {
    let mut uas = Uas::new(cfg());
    let (tag, _) = establish(&mut uas, "c1");
    let r = send(
        &mut uas,
        0,
        &req("OPTIONS", "o1", "c1", Some(&tag), 2, "", ""),
    );
    assert_eq!(codes(&r), [200]);
    assert!(r[0].header("Allow").unwrap().contains("BYE"));
    assert_eq!(
        codes(&send(
            &mut uas,
            0,
            &req("INFO", "i1", "c1", Some(&tag), 3, "", "")
        )),
        [200]
    );
    let r = send(
        &mut uas,
        0,
        &req("UPDATE", "u1", "c1", Some(&tag), 4, "", OFFER),
    );
    assert_eq!(codes(&r), [200]);
    assert!(r[0].text.contains("m=audio 20000 "));
    assert_eq!(
        codes(&send(
            &mut uas,
            0,
            &req("FOO", "f1", "c1", Some(&tag), 5, "", "")
        )),
        [501]
    );
}

#[test]
fn out_of_dialog_options_and_unknown_methods() {
    let mut uas = Uas::new(cfg());
    let r = send(&mut uas, 0, &req("OPTIONS", "o1", "c1", None, 1, "", ""));
    assert_eq!(codes(&r), [200]);
    assert!(r[0].header("Allow").is_some() && r[0].header("Accept").is_some());
    assert!(r[0].to_tag().len() == wire::tag::TAG_LEN);
    let r = send(&mut uas, 0, &req("REGISTER", "r1", "c1", None, 1, "", ""));
    assert_eq!(codes(&r), [405]);
    assert!(r[0].header("Allow").is_some());
    let r = send(&mut uas, 0, &req("FROB", "f1", "c1", None, 1, "", ""));
    assert_eq!(codes(&r), [501]);
    assert!(r[0].header("Allow").is_some());
}

#[test]
fn malformed_requests_get_400_citing_the_error_or_are_dropped() {
    let mut uas = Uas::new(cfg());
    let bad = invite("b1", "c1").replace("CSeq: 1 INVITE", "CSeq: x INVITE");
    let r = send(&mut uas, 0, &bad);
    assert_eq!(codes(&r), [400]);
    assert!(
        r[0].text
            .starts_with("SIP/2.0 400 Bad Request (malformed CSeq header)\r\n"),
        "{}",
        r[0].text
    );
    assert_eq!(r[0].header("Call-ID"), Some("c1"));
    assert_eq!(r[0].dst, src());
    let missing = invite("b2", "c2").replace("Max-Forwards: 70\r\n", "");
    let r = send(&mut uas, 0, &missing);
    assert_eq!(codes(&r), [400]);
    assert!(r[0]
        .text
        .starts_with("SIP/2.0 400 Missing Max-Forwards Header\r\n"));
    assert!(send(&mut uas, 0, "\u{1}\u{2}garbage").is_empty());
    assert!(send(&mut uas, 0, "").is_empty());
    let st = uas.stats();
    assert_eq!((st.bad_request_400, st.dropped), (2, 2));
    assert_eq!(uas.active_dialogs(), 0);
}

#[test]
fn unsupported_uri_scheme_is_416() {
    let mut uas = Uas::new(cfg());
    let m = invite("b1", "c1").replace("INVITE sip:svc@10.0.0.1:5060", "INVITE tel:+15551234");
    assert_eq!(codes(&send(&mut uas, 0, &m)), [416]);
    assert_eq!(uas.active_dialogs(), 0);
}

#[test]
fn responses_follow_via_received_and_rport() {
    let mut uas = Uas::new(cfg());
    let m = invite("b1", "c1").replace(
        "192.0.2.10:5070;branch",
        "10.9.9.9:5070;received=198.51.100.7;rport=7000;branch",
    );
    let r = send(&mut uas, 0, &m);
    assert_eq!(codes(&r), [200]);
    let want: SocketAddr = "198.51.100.7:7000".parse().unwrap();
    assert!(r.iter().all(|s| s.dst == want));
    // Timer G retransmissions too.
    assert!(run_until(&mut uas, 600 * MS)
        .iter()
        .all(|(_, s)| s.dst == want));
    // rport without value: the packet source port.
    let m = invite("b2", "c2").replace("192.0.2.10:5070;branch", "10.9.9.9:5070;rport;branch");
    let r = send(&mut uas, 0, &m);
    assert!(
        r.iter().all(|s| s.dst == src()),
        "{:?}",
        r.iter().map(|s| s.dst).collect::<Vec<_>>()
    );
}

#[test]
fn ringing_precedes_ok_and_delayed_answer_fires_on_time() {
    let mut c = cfg();
    c.send_180 = true;
    let mut uas = Uas::new(c.clone());
    assert_eq!(
        codes(&send(&mut uas, 0, &invite("b1", "c1"))),
        [100, 180, 200]
    );
    c.answer_delay = Duration::from_millis(300);
    let mut uas = Uas::new(c);
    assert_eq!(codes(&send(&mut uas, 0, &invite("b1", "c1"))), [100, 180]);
    assert_eq!(uas.next_deadline(), Some(300 * MS));
    let r = tick(&mut uas, 300 * MS);
    assert_eq!(codes(&r), [200]);
    assert_eq!(
        uas.next_deadline(),
        Some(800 * MS),
        "Timer G after the delayed 200"
    );
}

#[test]
fn load_report_tracks_sessions_and_their_sizes() {
    let load = LoadReport::new(100);
    let mut uas = Uas::with_load(cfg(), Arc::clone(&load));
    let r = send(
        &mut uas,
        0,
        &req(
            "INVITE",
            "b1",
            "c1",
            None,
            1,
            "X-Session-Size: 3\r\n",
            OFFER,
        ),
    );
    let tag = r[0].to_tag();
    send(&mut uas, 0, &invite("b2", "c2"));
    assert_eq!(load.active.load(Ordering::Relaxed), 2);
    send(&mut uas, 0, &req("ACK", "a1", "c1", Some(&tag), 1, "", ""));
    send(&mut uas, 0, &req("BYE", "y1", "c1", Some(&tag), 2, "", ""));
    assert_eq!(load.active.load(Ordering::Relaxed), 1);
    assert_eq!(load.released_units.load(Ordering::Relaxed), 3);
    assert_eq!(load.rejected_units.load(Ordering::Relaxed), 0);
    assert_eq!(load.capacity_units.load(Ordering::Relaxed), 100);
}

#[test]
fn responses_and_stray_acks_are_ignored() {
    let mut uas = Uas::new(cfg());
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(send(&mut uas, 0, resp).is_empty());
    assert!(send(&mut uas, 0, &req("ACK", "zz", "c1", Some("abc"), 1, "", "")).is_empty());
    assert_eq!(uas.stats().ignored, 2);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut uas = Uas::new(cfg());
    let base = invite("b1", "c1").into_bytes();
    let mut out = Outbox::new();
    let mut x: u64 = 0x1234_5678;
    for i in 0..3000u64 {
        let mut m = base.clone();
        for _ in 0..(i % 7 + 1) {
            x = mix(x.wrapping_add(i));
            let pos = (x as usize) % m.len();
            m[pos] = (x >> 32) as u8;
        }
        m.truncate(m.len() - (x as usize % 40));
        uas.on_message(i * MS, src(), &m, &mut out);
        uas.on_timer(i * MS, &mut out);
        out.clear();
    }
    // Whatever happened, accounting is consistent.
    let st = uas.stats();
    assert_eq!(
        st.dialogs_started - st.dialogs_ended,
        uas.active_dialogs() as u64
    );
}

fn capped(cap: u32) -> Uas {
    let mut c = cfg();
    c.media_ports = (20000, 20019);
    c.max_pending_invites = cap;
    Uas::new(c)
}

#[test]
fn pending_invite_cap_answers_503_with_retry_after_and_holds_nothing() {
    let mut uas = capped(2);
    let r1 = send(&mut uas, 0, &invite("b1", "c1"));
    let r2 = send(&mut uas, MS, &invite("b2", "c2"));
    assert_eq!((codes(&r1), codes(&r2)), (vec![200], vec![200]));
    assert_eq!(uas.pending_invites(), 2);
    let r3 = send(&mut uas, 2 * MS, &invite("b3", "c3"));
    assert_eq!(codes(&r3), [503], "no 100: nothing is started");
    assert_eq!(r3[0].header("Retry-After"), Some("1"));
    assert_eq!(r3[0].header("CSeq"), Some("1 INVITE"));
    assert!(!r3[0].to_tag().is_empty());
    let st = *uas.stats();
    assert_eq!(
        (st.overload_503, st.rejected, st.dialogs_started),
        (1, 1, 2)
    );
    assert_eq!(uas.active_dialogs(), 2, "no dialog for the refused INVITE");
    assert_eq!(uas.pending_invites(), 2, "no transaction either");
    // Its units go back as rejected, as for the media-port 503.
    let load = uas.load();
    assert_eq!(load.rejected_units.load(Ordering::Relaxed), 1);
    assert_eq!(load.released_units.load(Ordering::Relaxed), 1);
    assert_eq!(load.active.load(Ordering::Relaxed), 2);
    // Stateless: the ACK of the 503 matches nothing, a retransmission of the refused INVITE
    // is refused afresh, and no timer ever retransmits the 503.
    let t503 = r3[0].to_tag();
    assert!(send(
        &mut uas,
        3 * MS,
        &req("ACK", "b3", "c3", Some(&t503), 1, "", "")
    )
    .is_empty());
    assert_eq!(codes(&send(&mut uas, 4 * MS, &invite("b3", "c3"))), [503]);
    assert_eq!(uas.stats().overload_503, 2);
    let later = run_until(&mut uas, 600 * MS);
    assert!(
        later.iter().all(|(_, s)| s.code() == 200),
        "only the accepted 2xx retransmit"
    );
    assert_eq!(uas.stats().pending_invites_max, 2);
}

#[test]
fn retransmissions_of_accepted_invites_are_answered_at_the_cap() {
    let mut uas = capped(2);
    let r1 = send(&mut uas, 0, &invite("b1", "c1"));
    send(&mut uas, MS, &invite("b2", "c2"));
    let again = send(&mut uas, 2 * MS, &invite("b1", "c1"));
    assert_eq!(codes(&again), [200]);
    assert_eq!(again[0].text, r1[0].text, "from the transaction");
    let st = uas.stats();
    assert_eq!((st.overload_503, st.retransmissions_absorbed), (0, 1));
}

#[test]
fn an_ack_or_timer_h_makes_room_under_the_cap() {
    let mut uas = capped(2);
    let r1 = send(&mut uas, 0, &invite("b1", "c1"));
    send(&mut uas, MS, &invite("b2", "c2"));
    assert_eq!(codes(&send(&mut uas, 2 * MS, &invite("b3", "c3"))), [503]);
    // The ACK of c1's 2xx ends its pending transaction: room for one more.
    let tag1 = r1[0].to_tag();
    assert!(send(
        &mut uas,
        3 * MS,
        &req("ACK", "a1", "c1", Some(&tag1), 1, "", "")
    )
    .is_empty());
    assert_eq!(uas.pending_invites(), 1);
    assert_eq!(codes(&send(&mut uas, 4 * MS, &invite("b4", "c4"))), [200]);
    assert_eq!(codes(&send(&mut uas, 5 * MS, &invite("b5", "c5"))), [503]);
    // Timer H (64·T1 = 32 s) ends c2's and c4's unacknowledged transactions.
    run_until(&mut uas, 33_000 * MS);
    assert_eq!(uas.pending_invites(), 0);
    assert_eq!(uas.stats().timeouts, 2);
    assert_eq!(
        codes(&send(&mut uas, 33_001 * MS, &invite("b6", "c6"))),
        [200]
    );
    let st = uas.stats();
    assert_eq!((st.overload_503, st.pending_invites_max), (2, 2));
}

#[test]
fn non_2xx_answers_count_as_pending_until_acknowledged() {
    // A 503 for want of media ports retransmits until its ACK: it holds a slot too.
    let mut c = cfg();
    c.media_ports = (20000, 20001);
    c.max_pending_invites = 2;
    let mut uas = Uas::new(c);
    let (_, _) = establish(&mut uas, "c1");
    let r = send(&mut uas, 2 * MS, &invite("b2", "c2"));
    assert_eq!(codes(&r), [503]);
    assert_eq!(uas.pending_invites(), 1);
    let t503 = r[0].to_tag();
    send(
        &mut uas,
        3 * MS,
        &req("ACK", "b2", "c2", Some(&t503), 1, "", ""),
    );
    assert_eq!(uas.pending_invites(), 0);
    // Unlimited (0) never refuses.
    let mut c = cfg();
    c.media_ports = (20000, 20199);
    c.max_pending_invites = 0;
    let mut open = Uas::new(c);
    for i in 0..50 {
        let b = format!("u{i}");
        assert_eq!(codes(&send(&mut open, i * MS, &invite(&b, &b))), [200]);
    }
    assert_eq!(open.pending_invites(), 50);
    assert_eq!(open.stats().overload_503, 0);
}

#[test]
fn bye_before_the_ack_releases_the_pending_slot() {
    let mut uas = capped(1);
    let r = send(&mut uas, 0, &invite("b1", "c1"));
    let tag = r[0].to_tag();
    assert_eq!(codes(&send(&mut uas, MS, &invite("b2", "c2"))), [503]);
    let bye = req("BYE", "bye1", "c1", Some(&tag), 2, "", "");
    assert_eq!(codes(&send(&mut uas, 2 * MS, &bye)), [200]);
    assert_eq!(uas.pending_invites(), 0);
    assert_eq!(codes(&send(&mut uas, 3 * MS, &invite("b3", "c3"))), [200]);
}

#[test]
fn a_full_transaction_table_answers_503_until_timer_h_frees_it() {
    // Two media ports (2 dialogs) and a cap of 2: room for 4 live INVITE transactions.
    let mut c = cfg();
    c.max_pending_invites = 2;
    let mut uas = Uas::new(c);
    // 481s to re-INVITEs for unknown dialogs are kept (for their ACK) but are not pending.
    for i in 0..4 {
        let b = format!("re{i}");
        let r = send(&mut uas, 0, &req("INVITE", &b, &b, Some("nope"), 1, "", ""));
        assert_eq!(codes(&r), [481]);
    }
    assert_eq!(uas.pending_invites(), 0);
    let r = send(&mut uas, MS, &invite("b1", "c1"));
    assert_eq!(codes(&r), [503]);
    assert_eq!(r[0].header("Retry-After"), Some("1"));
    let st = *uas.stats();
    assert_eq!((st.table_full_503, st.overload_503, st.rejected), (1, 1, 1));
    assert_eq!(uas.active_dialogs(), 0);
    // A fifth 481 still goes out, but is not kept.
    let r = send(
        &mut uas,
        MS,
        &req("INVITE", "re5", "re5", Some("x"), 1, "", ""),
    );
    assert_eq!(codes(&r), [481]);
    assert_eq!(uas.stats().table_full_dropped, 1);
    // Timer H (64·T1) ends the four: room again.
    run_until(&mut uas, 33_000 * MS);
    assert_eq!(
        codes(&send(&mut uas, 33_000 * MS, &invite("b2", "c2"))),
        [200]
    );
}

#[test]
fn timer_j_keeps_a_non_invite_answer_for_64_t1() {
    let mut uas = Uas::new(cfg());
    let (tag, _) = establish(&mut uas, "c1");
    let bye = req("BYE", "bye1", "c1", Some(&tag), 2, "", "");
    let first = send(&mut uas, 2 * MS, &bye);
    assert_eq!(codes(&first), [200]);
    // A retransmitted BYE within Timer J gets the same 200, not a 481.
    let again = send(&mut uas, 31_000 * MS, &bye);
    assert_eq!(codes(&again), [200]);
    assert_eq!(again[0].text, first[0].text);
    // After 64·T1 the cache is gone; the dialog too: 481.
    run_until(&mut uas, 32_003 * MS);
    assert_eq!(codes(&send(&mut uas, 32_003 * MS, &bye)), [481]);
}

#[test]
fn an_acknowledged_invite_lingers_then_is_forgotten() {
    let mut uas = Uas::new(cfg());
    let (tag, _) = establish(&mut uas, "c1");
    // Within the linger (Timer L, until 64·T1 after the 2xx): absorbed, nothing sent.
    assert!(send(&mut uas, 10_000 * MS, &invite("c1", "c1")).is_empty());
    assert_eq!(uas.stats().dialogs_started, 1);
    // A CANCEL then still gets the INVITE's To-tag (§9.2).
    let c = send(
        &mut uas,
        10_001 * MS,
        &req("CANCEL", "c1", "c1", None, 1, "", ""),
    );
    assert_eq!(codes(&c), [200]);
    assert_eq!(c[0].to_tag(), tag);
    assert_eq!(uas.stats().cancels, 0, "nothing to cancel");
    // After it, the same branch is a new transaction.
    run_until(&mut uas, 33_000 * MS);
    assert_eq!(
        codes(&send(&mut uas, 33_000 * MS, &invite("c1", "c1"))),
        [200]
    );
    assert_eq!(uas.stats().dialogs_started, 2);
}

#[test]
fn a_sized_invite_uses_the_dispatchers_units() {
    let load = LoadReport::new(100);
    let mut uas = Uas::with_load(cfg(), Arc::clone(&load));
    let mut out = Outbox::new();
    uas.on_message_sized(0, src(), invite("b1", "c1").as_bytes(), Some(7), &mut out);
    assert_eq!(codes(&drain(&mut out)), [200]);
    assert_eq!(load.in_use_units.load(Ordering::Relaxed), 7);
}
