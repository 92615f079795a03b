//! `Message::parse_routing` / `RoutingView`: whenever `Message::parse` accepts, it accepts too
//! and agrees on every field it exposes (it validates a subset, so if it rejects, `parse`
//! rejects too); it never panics.

mod common;
use common::corpus;

use proptest::prelude::*;
use wire::sip::{Message, RoutingView};
use wire::{Limits, SessionSizeConfig};

/// Whenever `parse` accepts, `parse_routing` accepts with identical fields; whenever
/// `parse_routing` rejects, `parse` rejects. Returns whether `parse` accepted.
fn check(data: &[u8], limits: &Limits) -> Result<bool, String> {
    let full = Message::parse(data, limits);
    let fast = Message::parse_routing(data, limits);
    let cfg = SessionSizeConfig::default();
    match (&full, &fast) {
        (Ok(m), Ok(r)) => {
            let same = m.kind() == r.kind()
                && m.method() == r.method()
                && m.is_request() == r.is_request()
                && m.as_bytes() == r.as_bytes()
                && m.call_id() == r.call_id()
                && m.cseq() == r.cseq()
                && m.top_via() == r.top_via()
                && m.from() == r.from()
                && m.to() == r.to()
                && m.content_length() == r.content_length()
                && m.content_type() == r.content_type()
                && m.body() == r.body()
                && m.header(b"X-Session-Size") == r.session_size_header()
                && m.session_size(&cfg) == r.session_size(&cfg);
            if same {
                Ok(true)
            } else {
                Err(format!("fields differ: {m:?} vs {r:?}"))
            }
        }
        (Ok(_), Err(e)) => Err(format!("parse accepts, parse_routing rejects: {e}")),
        (Err(_), Ok(_)) => Ok(false),
        (Err(_), Err(_)) => Ok(false),
    }
}

#[test]
fn agrees_with_parse_on_rfc4475() {
    let limits = Limits::default();
    let mut valid = 0;
    for (name, class, data) in corpus() {
        let accepted = check(&data, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        if class == "valid" {
            assert!(accepted, "{name}: valid message rejected by parse");
            valid += 1;
        }
        // Every truncation too.
        for cut in 0..=data.len() {
            check(&data[..cut], &limits).unwrap_or_else(|e| panic!("{name}[..{cut}]: {e}"));
        }
    }
    assert!(valid > 0);
}

#[test]
fn routing_never_fails_before_parse() {
    // parse_routing checks a subset of parse's rules in the same order, so on a message both
    // reject it cannot fail at an earlier offset than parse does.
    for (name, _class, data) in corpus() {
        if let (Err(a), Err(b)) = (
            Message::parse(&data, &Limits::default()),
            Message::parse_routing(&data, &Limits::default()),
        ) {
            if a.at <= b.at {
                continue;
            }
            panic!("{name}: parse fails at {a}, parse_routing earlier at {b}");
        }
    }
}

#[test]
fn session_header_name_is_configurable() {
    let m = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCSeq: 1 OPTIONS\r\nx-size: 7\r\nX-Session-Size: 3\r\n\r\n";
    let r = RoutingView::parse(m, &Limits::default(), b"X-Size").unwrap();
    assert_eq!(r.session_size_header(), Some(&b"7"[..]));
    let r = Message::parse_routing(m, &Limits::default()).unwrap();
    assert_eq!(r.session_size_header(), Some(&b"3"[..]));
    assert_eq!(r.session_size(&SessionSizeConfig::default()), 3);
}

fn mutate(base: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(op, pos, byte) in ops {
        let p = if v.is_empty() { 0 } else { pos % (v.len() + 1) };
        match op % 4 {
            0 if p < v.len() => v[p] ^= byte | 1,
            1 => v.truncate(p),
            2 => v.insert(p, byte),
            _ => v.insert(
                p,
                [b'\r', b'\n', b' ', b';', b',', b':', b'"', b'<'][byte as usize % 8],
            ),
        }
    }
    v
}

fn base_message(
    method: &str,
    compact: bool,
    nl: &str,
    branch: &str,
    tag: &str,
    body: &[u8],
) -> Vec<u8> {
    let (v, f, t, i, l) = if compact {
        ("v", "f", "t", "i", "l")
    } else {
        ("Via", "From", "To", "Call-ID", "Content-Length")
    };
    let mut m = format!(
        "{method} sip:user@example.com SIP/2.0{nl}{v}: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch};rport{nl}{v}: SIP/2.0/TCP p.example;branch=z9hG4bKp, SIP/2.0/UDP q{nl}{f}: \"Al\" <sip:a@example.com>;tag={tag}{nl}{t}: <sip:user@example.com>{nl}{i}: {branch}@h{nl}CSeq: 7 {method}{nl}Max-Forwards: 70{nl}Contact: <sip:a@192.0.2.1>{nl}X-Session-Size: 2{nl}Content-Type: application/sdp{nl}{l}: {}{nl}{nl}",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_messages_agree(
        method in prop::sample::select(vec!["INVITE", "ACK", "BYE", "OPTIONS", "FOO"]),
        compact in any::<bool>(),
        lf in any::<bool>(),
        branch in "[A-Za-z0-9.!%*_+`'~-]{1,24}",
        tag in "[A-Za-z0-9.!%*_+`'~-]{1,24}",
        body in prop::collection::vec(any::<u8>(), 0..64),
        ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..6),
    ) {
        let nl = if lf { "\n" } else { "\r\n" };
        let base = base_message(method, compact, nl, &branch, &tag, &body);
        prop_assert!(check(&base, &Limits::default()).map_err(TestCaseError::fail)?);
        let m = mutate(&base, &ops);
        check(&m, &Limits::default()).map_err(TestCaseError::fail)?;
        let tight = Limits { max_message_size: 300, max_headers: 5, max_header_line: 60 };
        check(&m, &tight).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes, &Limits::default()).map_err(TestCaseError::fail)?;
    }
}
