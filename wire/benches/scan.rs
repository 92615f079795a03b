//! `cargo bench -p wire`: criterion timings of the SIP and MGCP scanners against rsip, then a
//! side-by-side `message | wire ns | rsip ns | ratio` table (same process, same machine).

use criterion::{criterion_group, Criterion};
use std::hint::black_box;
use wire::Limits;

#[path = "support/messages.rs"]
mod messages;
use messages::*;

fn benches(c: &mut Criterion) {
    let limits = Limits::default();
    let corpus = valid_corpus();
    let mut g = c.benchmark_group("scan");
    g.bench_function("wire/invite", |b| {
        b.iter(|| wire::sip::Message::parse(black_box(INVITE), &limits).is_ok())
    });
    let locate = wire::sip::Locate::new(&limits, b"X-Session-Size");
    g.bench_function("wire/invite-locate-routing", |b| {
        b.iter(|| {
            locate
                .scan(black_box(INVITE), wire::sip::Scope::Routing)
                .is_ok()
        })
    });
    g.bench_function("rsip/invite", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(INVITE)).is_ok())
    });
    g.bench_function("wire/200ok", |b| {
        b.iter(|| wire::sip::Message::parse(black_box(OK200), &limits).is_ok())
    });
    g.bench_function("rsip/200ok", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(OK200)).is_ok())
    });
    g.bench_function("wire/crcx", |b| {
        b.iter(|| wire::mgcp::Message::parse(black_box(CRCX), &limits).is_ok())
    });
    g.bench_function("wire/rfc4475-valid", |b| {
        b.iter(|| {
            corpus
                .iter()
                .filter(|m| wire::sip::Message::parse(black_box(m), &limits).is_ok())
                .count()
        })
    });
    g.bench_function("rsip/rfc4475-valid", |b| {
        b.iter(|| {
            corpus
                .iter()
                .filter(|m| rsip::SipMessage::try_from(black_box(m.as_slice())).is_ok())
                .count()
        })
    });
    let cfg = wire::SessionSizeConfig::default();
    let m = wire::sip::Message::parse(INVITE, &limits).unwrap();
    let mut out = [0u8; 2048];
    g.bench_function("wire/invite-session-size", |b| {
        b.iter(|| black_box(&m).session_size(&cfg))
    });
    g.bench_function("wire/invite-received-rewrite", |b| {
        b.iter(|| {
            black_box(&m)
                .write_with_received(b"192.0.2.10", Some(5060), &mut out)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    print_table();
}
