//! Drives `N` SIP calls (INVITE→200, ACK, BYE→200) through one [`Uas`] in-process with a fake
//! clock (1 ms per call, timers run), for instruction counts under callgrind:
//! `valgrind --tool=callgrind target/release/examples/sip_calls 12000` minus the same with
//! 2000, divided by 10000, is the cost of one steady-state call. A second argument `sized`
//! passes the session size as the dispatcher would (`Uas::on_message_sized`); a third, the
//! clock step per call in µs (default 1000), makes lingering transactions and cached answers
//! expire within the run (e.g. 5000: 12,000 calls span 60 s, past 64·T1).
use std::net::SocketAddr;

use processor::{
    outbox::Outbox,
    sip::{Uas, UasConfig},
};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let sized = std::env::args().nth(2).is_some_and(|a| a == "sized");
    let step_ns: u64 = std::env::args()
        .nth(3)
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(1000)
        * 1000;
    let contact: SocketAddr = "10.0.0.2:5071".parse().expect("literal address");
    let uac: SocketAddr = "192.0.2.10:5070".parse().expect("literal address");
    let mut uas = Uas::new(UasConfig::new(1, 4, contact));
    let mut out = Outbox::new();
    let mut buf = Vec::with_capacity(2048);
    let mut tag = Vec::with_capacity(64);
    let sdp = "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";
    let mut now = 1_000_000_000u64;
    for i in 0..n {
        let call = format!("call{i}@192.0.2.10");
        let head = |buf: &mut Vec<u8>, m: &str, br: &str, to: &str, seq: u32, body: &str| {
            buf.clear();
            let ct = if body.is_empty() {
                ""
            } else {
                "Content-Type: application/sdp\r\n"
            };
            buf.extend_from_slice(format!(
                "{m} sip:svc@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK{br}\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.10>;tag=f{i}\r\nTo: <sip:svc@10.0.0.1>{to}\r\nCall-ID: {call}\r\nCSeq: {seq} {m}\r\nContact: <sip:a@192.0.2.10:5070>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ).as_bytes());
        };
        head(&mut buf, "INVITE", &format!("i{i}"), "", 1, sdp);
        let units = sized.then_some(1);
        uas.on_message_sized(now, uac, &buf, units, &mut out);
        tag.clear();
        for (_, b) in out.iter() {
            if b.starts_with(b"SIP/2.0 200") {
                let s = String::from_utf8_lossy(b);
                if let Some(t) = s
                    .split("\r\n")
                    .find(|l| l.starts_with("To:"))
                    .and_then(|l| l.split(";tag=").nth(1))
                {
                    tag.extend_from_slice(t.as_bytes());
                }
            }
        }
        out.clear();
        let to = format!(";tag={}", String::from_utf8_lossy(&tag));
        now += 300_000;
        head(&mut buf, "ACK", &format!("a{i}"), &to, 1, "");
        uas.on_message(now, uac, &buf, &mut out);
        now += 300_000;
        head(&mut buf, "BYE", &format!("b{i}"), &to, 2, "");
        uas.on_message(now, uac, &buf, &mut out);
        out.clear();
        now += step_ns.saturating_sub(600_000).max(1);
        uas.on_timer(now, &mut out);
        out.clear();
    }
    let s = uas.stats();
    assert_eq!(s.dialogs_ended, n, "every call completed");
    println!("{n} calls, {} active", uas.active_dialogs());
}
