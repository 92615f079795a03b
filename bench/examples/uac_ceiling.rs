//! The generator's user-space cost per call, without sockets: drives the SIP UAC state machine
//! through whole calls (INVITE, 100, 200 → ACK + BYE, 200) with canned responses and reports
//! calls/s on one core. Compare with `blast` (kernel send path) to see where the limit is.
//!
//! `cargo run --release -p bench --example uac_ceiling [calls]`
use std::time::Instant;

use bench::{
    engine::Engine,
    net::Outbox,
    sip::{SipConfig, SipUac},
};

fn header<'a>(req: &'a str, name: &str) -> &'a str {
    req.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or("")
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let target = "127.0.0.1:5060".parse().unwrap();
    let locals = vec!["127.0.0.1:40000".parse().unwrap()];
    let mut u = SipUac::new(SipConfig::new(target, locals));
    let mut out = Outbox::new(8, u.msg_cap());
    // Canned responses per call are rebuilt from the INVITE (outside the timed part would
    // need storage per call; instead patch the Call-ID/branch digits in place).
    u.start(0, 0, 0, &mut out);
    let inv = String::from_utf8(out.iter().next().unwrap().2.to_vec()).unwrap();
    out.clear();
    let resp = |code: u16, cseq: &str, contact: bool| {
        let mut s = format!(
            "SIP/2.0 {code} OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=abc\r\nCall-ID: {}\r\nCSeq: {cseq}\r\n",
            header(&inv, "Via"),
            header(&inv, "From"),
            header(&inv, "To"),
            header(&inv, "Call-ID")
        );
        if contact {
            s += "Contact: <sip:p@127.0.0.1:5070>\r\n";
        }
        (s + "Content-Length: 0\r\n\r\n").into_bytes()
    };
    // Finish call 0 so slot 0 is free again; every call then reuses slot 0 (same Call-ID
    // prefix), and only the 16 sequence digits change.
    let (mut r100, mut r200, mut rbye) = (
        resp(100, "1 INVITE", false),
        resp(200, "1 INVITE", true),
        resp(200, "2 BYE", false),
    );
    let patch = |buf: &mut Vec<u8>, seq: u64| {
        let cid = buf.windows(9).position(|w| w == b"Call-ID: ").unwrap() + 9 + 9;
        let hex = format!("{seq:016x}");
        buf[cid..cid + 16].copy_from_slice(hex.as_bytes());
    };
    let run =
        |u: &mut SipUac, out: &mut Outbox, seq: u64, r100: &[u8], r200: &[u8], rbye: &[u8]| {
            u.start(seq, seq, seq, out);
            u.on_datagram(seq, target, r100, out);
            u.on_datagram(seq, target, r200, out);
            u.on_datagram(seq, target, rbye, out);
            out.clear();
        };
    out.clear();
    u.on_datagram(0, target, &r100, &mut out);
    u.on_datagram(0, target, &r200, &mut out);
    u.on_datagram(0, target, &rbye, &mut out);
    out.clear();
    let t = Instant::now();
    for seq in 1..=calls {
        patch(&mut r100, seq);
        patch(&mut r200, seq);
        patch(&mut rbye, seq);
        run(&mut u, &mut out, seq, &r100, &r200, &rbye);
    }
    let el = t.elapsed().as_secs_f64();
    let c = &u.counters;
    assert_eq!(c.completed, calls + 1, "{c:?}");
    println!(
        "{calls} calls in {el:.2} s: {:.0} calls/s on one core ({:.2} µs per call: build 3 messages, parse 3 responses)",
        calls as f64 / el,
        el * 1e6 / calls as f64
    );
}
