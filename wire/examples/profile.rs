//! `cargo run --release -p wire --example profile -- [invite|ok|call|crcx|locate|locate-size|locate-route|locate-dispatch|locate-dispatch-route] [iters]`: parses one
//! benchmark message in a loop, for `valgrind --tool=callgrind` instruction counts.

#[path = "../benches/support/messages.rs"]
mod messages;

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "invite".into());
    let iters: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let limits = wire::Limits::default();
    let session = wire::SessionSizeConfig::default();
    let locator = wire::sip::Locate::new(&limits, &session.sip_header);
    let mut ok = 0u32;
    if which == "call" {
        // The three requests of one `processor` example call (`sip_calls`), parsed once each.
        let msgs = call_messages();
        for _ in 0..iters {
            for m in &msgs {
                ok += wire::sip::Message::parse(black_box(m), &limits).is_ok() as u32;
            }
        }
        println!("{which}: {ok}/{} ok", iters * 3);
        return;
    }
    for _ in 0..iters {
        ok += match which.as_str() {
            "ok" => wire::sip::Message::parse(black_box(messages::OK200), &limits).is_ok(),
            "locate" => wire::sip::Message::locate(
                black_box(messages::INVITE),
                &limits,
                &session.sip_header,
            )
            .is_ok(),
            "locate-size" => locator
                .scan(black_box(messages::INVITE), wire::sip::Scope::Complete)
                .is_ok_and(|l| l.session_size(&session).is_some()),
            "locate-route" => locator
                .scan(black_box(messages::INVITE), wire::sip::Scope::Routing)
                .is_ok(),
            "locate-dispatch" => locator
                .scan(
                    black_box(messages::DISPATCH_INVITE),
                    wire::sip::Scope::Complete,
                )
                .is_ok_and(|l| l.session_size(&session).is_some()),
            "locate-dispatch-route" => locator
                .scan(
                    black_box(messages::DISPATCH_INVITE),
                    wire::sip::Scope::Routing,
                )
                .is_ok(),
            "crcx" => wire::mgcp::Message::parse(black_box(messages::CRCX), &limits).is_ok(),
            _ => wire::sip::Message::parse(black_box(messages::INVITE), &limits).is_ok(),
        } as u32;
    }
    println!("{which}: {ok}/{iters} ok");
}

/// INVITE, ACK and BYE as `processor/examples/sip_calls.rs` writes them for call 12345.
fn call_messages() -> [Vec<u8>; 3] {
    let sdp = "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";
    let i = 12345;
    let call = format!("call{i}@192.0.2.10");
    let head = |m: &str, br: &str, to: &str, seq: u32, body: &str| {
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{m} sip:svc@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK{br}\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.10>;tag=f{i}\r\nTo: <sip:svc@10.0.0.1>{to}\r\nCall-ID: {call}\r\nCSeq: {seq} {m}\r\nContact: <sip:a@192.0.2.10:5070>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let to = ";tag=0003000000000000002a1b2c3d4e";
    [
        head("INVITE", &format!("i{i}"), "", 1, sdp),
        head("ACK", &format!("a{i}"), to, 1, ""),
        head("BYE", &format!("b{i}"), to, 2, ""),
    ]
}
