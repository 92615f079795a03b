//! Messages shared by the criterion bench and `examples/compare.rs`.
#![allow(dead_code)]

/// A typical ~900 B INVITE with SDP, as a softphone behind one proxy sends it.
pub const INVITE: &[u8] = b"INVITE sip:+15551234567@media.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---77ba5c4a1e5c2b2d;rport\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK3f2a.8c1d0e9b.0;received=198.51.100.7\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:198.51.100.7;lr;ftag=as5e7c2a91>\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n\
To: <sip:+15551234567@media.example.com;user=phone>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=as5e7c2a91\r\n\
Call-ID: 3c26a1f46e0b5d7a8f2e9c1b4a6d8e0f@192.0.2.10\r\n\
CSeq: 102 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE, PRACK\r\n\
Supported: replaces, timer, 100rel\r\n\
X-Session-Size: 2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 247\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
b=AS:84\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// The dispatcher bench's ~950 B INVITE with SDP (`dispatcher-user/benches/decision.rs`).
pub const DISPATCH_INVITE: &[u8] = b"INVITE sip:service@198.18.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK-00000000-776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Service <sip:service@198.18.0.1:5060>\r\n\
From: Application <sip:app@198.18.0.2:5060>;tag=1928301774-0\r\n\
Call-ID: a84b4c76e66710-00000000@198.18.0.2\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:app@198.18.0.2:5060>\r\n\
User-Agent: switchyard-bench\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 192\r\n\
\r\n\
v=0\r\n\
o=- 2890844526 2890844526 IN IP4 198.18.0.2\r\n\
s=-\r\n\
c=IN IP4 198.18.0.2\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 97\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:97 iLBC/8000\r\n\
a=ptime:20\r\n";

/// The processor's 200 OK to it.
pub const OK200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---77ba5c4a1e5c2b2d;rport=5060;received=192.0.2.10\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK3f2a.8c1d0e9b.0;received=198.51.100.7\r\n\
Record-Route: <sip:198.51.100.7;lr;ftag=as5e7c2a91>\r\n\
To: <sip:+15551234567@media.example.com;user=phone>;tag=0003000000000000002a1b2c3d4e\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=as5e7c2a91\r\n\
Call-ID: 3c26a1f46e0b5d7a8f2e9c1b4a6d8e0f@192.0.2.10\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:p3@10.0.0.3:5071>\r\n\
Content-Length: 0\r\n\
\r\n";

/// An RFC 3435 style CRCX with SDP.
pub const CRCX: &[u8] = b"CRCX 1204 aaln/1@rgw-2567.whatever.net MGCP 1.0\r\n\
C: A3C47F21456789F0\r\n\
L: p:10, a:PCMU\r\n\
M: sendrecv\r\n\
X: 0123456789AD\r\n\
R: L/hd\r\n\
S: L/rg\r\n\
\r\n\
v=0\r\n\
o=- 25678 753849 IN IP4 128.96.41.1\r\n\
s=-\r\n\
c=IN IP4 128.96.41.1\r\n\
t=0 0\r\n\
m=audio 3456 RTP/AVP 0\r\n";

/// The corpus loader of the wire tests (`testdata/rfc4475/`, read via INDEX.tsv).
#[path = "../../tests/common/mod.rs"]
mod common;

/// The RFC 4475 `valid` messages, read via INDEX.tsv.
pub fn valid_corpus() -> Vec<Vec<u8>> {
    common::corpus()
        .into_iter()
        .filter(|(_, class, _)| class == "valid")
        .map(|(_, _, data)| data)
        .collect()
}

fn wire_sip(m: &[u8]) -> bool {
    wire::sip::Message::parse(std::hint::black_box(m), &wire::Limits::default()).is_ok()
}

fn wire_locate(m: &[u8]) -> bool {
    wire::sip::Message::locate(
        std::hint::black_box(m),
        &wire::Limits::default(),
        b"X-Session-Size",
    )
    .is_ok()
}

fn wire_locate_size(m: &[u8]) -> bool {
    wire::sip::Message::locate(
        std::hint::black_box(m),
        &wire::Limits::default(),
        b"X-Session-Size",
    )
    .is_ok_and(|l| {
        l.session_size(&wire::SessionSizeConfig::default())
            .is_some()
    })
}

fn wire_locate_routing(m: &[u8]) -> bool {
    thread_local! {
        static LOCATE: wire::sip::Locate =
            wire::sip::Locate::new(&wire::Limits::default(), b"X-Session-Size");
    }
    LOCATE.with(|l| {
        l.scan(std::hint::black_box(m), wire::sip::Scope::Routing)
            .is_ok()
    })
}

fn rsip_sip(m: &[u8]) -> bool {
    rsip::SipMessage::try_from(std::hint::black_box(m)).is_ok()
}

fn wire_mgcp(m: &[u8]) -> bool {
    wire::mgcp::Message::parse(std::hint::black_box(m), &wire::Limits::default()).is_ok()
}

/// Mean ns per call of `f` over all `msgs`, timed with `Instant` over enough iterations.
fn time_ns(msgs: &[&[u8]], f: fn(&[u8]) -> bool) -> f64 {
    let mut iters = 1u64;
    loop {
        let t = std::time::Instant::now();
        for _ in 0..iters {
            for m in msgs {
                std::hint::black_box(f(m));
            }
        }
        let el = t.elapsed();
        if el.as_millis() >= 300 {
            return el.as_nanos() as f64 / (iters as f64 * msgs.len() as f64);
        }
        iters *= 2;
    }
}

/// Prints `message | wire ns | rsip ns | ratio`, timing both parsers side by side.
pub fn print_table() {
    let corpus = valid_corpus();
    let corpus: Vec<&[u8]> = corpus.iter().map(|v| v.as_slice()).collect();
    let rows: [(&str, Vec<&[u8]>, u8); 12] = [
        ("INVITE+SDP (969 B)", vec![INVITE], SIP),
        ("INVITE+SDP locate", vec![INVITE], LOCATE),
        ("INVITE+SDP locate+size", vec![INVITE], LOCATE_SIZE),
        ("dispatch INVITE locate", vec![DISPATCH_INVITE], LOCATE),
        (
            "dispatch INVITE locate+size",
            vec![DISPATCH_INVITE],
            LOCATE_SIZE,
        ),
        (
            "dispatch INVITE locate route",
            vec![DISPATCH_INVITE],
            LOCATE_ROUTING,
        ),
        ("200 OK", vec![OK200], SIP),
        ("200 OK locate", vec![OK200], LOCATE),
        ("MGCP CRCX", vec![CRCX], MGCP),
        ("RFC 4475 valid set (per msg)", corpus.clone(), SIP),
        ("RFC 4475 valid locate", corpus.clone(), LOCATE),
        ("RFC 4475 valid locate route", corpus, LOCATE_ROUTING),
    ];
    println!();
    println!(
        "{:<30} | {:>10} | {:>10} | {:>7}",
        "message", "wire ns", "rsip ns", "ratio"
    );
    println!("{:-<30}-|-{:->10}-|-{:->10}-|-{:->7}", "", "", "", "");
    for (name, msgs, what) in rows {
        let f = match what {
            SIP => wire_sip,
            LOCATE => wire_locate,
            LOCATE_SIZE => wire_locate_size,
            LOCATE_ROUTING => wire_locate_routing,
            _ => wire_mgcp,
        };
        let w = time_ns(&msgs, f);
        if what == MGCP {
            println!("{name:<30} | {w:>10.1} | {:>10} | {:>7}", "n/a", "n/a");
        } else {
            let r = time_ns(&msgs, rsip_sip);
            println!("{name:<30} | {w:>10.1} | {r:>10.1} | {:>6.1}x", r / w);
        }
    }
}

const SIP: u8 = 0;
const MGCP: u8 = 2;
const LOCATE: u8 = 3;
const LOCATE_SIZE: u8 = 4;
const LOCATE_ROUTING: u8 = 5;
