//! `cargo run --release -p wire --example profile -- [invite|ok|crcx|locate|locate-size|locate-route|locate-dispatch|locate-dispatch-route] [iters]`: parses one
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
