//! Property tests: generated valid messages scan and round-trip their fields; arbitrary
//! mutations never panic (and whatever scans can be rewritten without panicking).

mod common;

use proptest::prelude::*;
use wire::sip::{InsertAt, Message, ResponseSpec};
use wire::{mgcp, Limits, SessionSizeConfig};

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,24}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z0-9]{1,8}){0,3}",
        "192\\.0\\.2\\.[0-9]{1,3}"
    ]
}

#[derive(Debug, Clone)]
struct Gen {
    method: &'static str,
    call_id: String,
    seq: u32,
    branch: String,
    host: String,
    port: Option<u16>,
    from_tag: String,
    to_tag: Option<String>,
    compact: bool,
    lf_only: bool,
    body: Vec<u8>,
    max_forwards: u8,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        prop::sample::select(vec![
            "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "FOO",
        ]),
        "[A-Za-z0-9.!%*_+`'~()<>:/\\[\\]?{}-]{1,40}(@[a-z0-9.]{1,20})?",
        0u32..(1 << 31),
        token(),
        host(),
        prop::option::of(any::<u16>()),
        token(),
        prop::option::of(token()),
        (any::<bool>(), any::<bool>()),
        prop::collection::vec(any::<u8>(), 0..200),
        any::<u8>(),
    )
        .prop_map(
            |(
                method,
                call_id,
                seq,
                branch,
                host,
                port,
                from_tag,
                to_tag,
                (compact, lf_only),
                body,
                max_forwards,
            )| Gen {
                method,
                call_id,
                seq,
                branch: format!("z9hG4bK{branch}"),
                host,
                port,
                from_tag,
                to_tag,
                compact,
                lf_only,
                body,
                max_forwards,
            },
        )
}

fn render(g: &Gen) -> Vec<u8> {
    let nl = if g.lf_only { "\n" } else { "\r\n" };
    let (v, f, t, i, l) = if g.compact {
        ("v", "f", "t", "i", "l")
    } else {
        ("Via", "From", "To", "Call-ID", "Content-Length")
    };
    let port = g.port.map(|p| format!(":{p}")).unwrap_or_default();
    let to_tag = g
        .to_tag
        .as_ref()
        .map(|t| format!(";tag={t}"))
        .unwrap_or_default();
    let mut m = format!(
        "{m} sip:user@{h} SIP/2.0{nl}{v}: SIP/2.0/UDP {h}{port};branch={b};rport{nl}{f}: \"Al\" <sip:a@{h}>;tag={ft}{nl}{t}: <sip:user@{h}>{tt}{nl}{i}: {cid}{nl}CSeq: {seq} {m}{nl}Max-Forwards: {mf}{nl}{l}: {bl}{nl}{nl}",
        m = g.method, h = g.host, b = g.branch, ft = g.from_tag, tt = to_tag, cid = g.call_id, seq = g.seq,
        mf = g.max_forwards, bl = g.body.len()
    )
    .into_bytes();
    m.extend_from_slice(&g.body);
    m
}

/// Exercises every accessor and rewrite; the point is that none of them panics.
fn exercise(m: &Message<'_>) {
    let _ = (
        m.kind(),
        m.call_id(),
        m.cseq(),
        m.top_via(),
        m.from(),
        m.to(),
        m.contact(),
    );
    let _ = (
        m.max_forwards(),
        m.content_length(),
        m.body(),
        m.via_count(),
        m.missing_mandatory(),
    );
    let _ = m.header(b"X-Anything");
    let _ = m.session_size(&SessionSizeConfig::default());
    let mut out = [0u8; 4096];
    let _ = m.write_with_received(b"192.0.2.1", Some(5060), &mut out);
    let _ = m.write_with_header(
        b"X-Processor-Port: 5071",
        InsertAt::AfterStartLine,
        &mut out,
    );
    let _ = m.write_with_header(
        b"X-Processor-Port: 5071",
        InsertAt::BeforeBlankLine,
        &mut out,
    );
    let _ = m.write_with_to_tag(b"abc", &mut out);
    let _ = m.write_response(
        &ResponseSpec {
            to_tag: Some(b"t"),
            ..ResponseSpec::new(200)
        },
        &mut out,
    );
    let _ = m.write_response(&ResponseSpec::new(100), &mut out[..40]);
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decimal_equals_display(n in prop_oneof![any::<u64>(), 0u64..1000, Just(u64::MAX), (0u32..20).prop_map(|e| 10u64.pow(e)), (1u32..20).prop_map(|e| 10u64.pow(e) - 1)]) {
        let mut tmp = [0u8; 20];
        let want = n.to_string();
        prop_assert_eq!(wire::out::decimal(n, &mut tmp), want.as_bytes());
    }

    #[test]
    fn generated_sip_round_trips(g in gen()) {
        let bytes = render(&g);
        let m = Message::parse(&bytes, &Limits::default()).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(m.call_id(), g.call_id.as_bytes());
        prop_assert_eq!(m.cseq().seq, g.seq);
        prop_assert_eq!(m.cseq().method.as_bytes(), g.method.as_bytes());
        prop_assert_eq!(m.top_via().branch(), Some(g.branch.as_bytes()));
        prop_assert_eq!(m.top_via().sent_by(), (g.host.as_bytes(), g.port));
        prop_assert_eq!(m.top_via().rport(), Some(None));
        prop_assert_eq!(m.from().unwrap().tag, Some(g.from_tag.as_bytes()));
        prop_assert_eq!(m.to().unwrap().tag, g.to_tag.as_deref().map(str::as_bytes));
        prop_assert_eq!(m.max_forwards(), Some(g.max_forwards));
        prop_assert_eq!(m.body(), &g.body[..]);
        // Rewrites keep the fields.
        let mut out = vec![0u8; bytes.len() + 256];
        let n = m.write_with_received(b"203.0.113.9", Some(40000), &mut out).unwrap();
        let r = Message::parse(&out[..n], &Limits::default()).unwrap();
        prop_assert_eq!(r.top_via().received(), Some(&b"203.0.113.9"[..]));
        prop_assert_eq!(r.top_via().rport(), Some(Some(40000)));
        prop_assert_eq!(r.call_id(), m.call_id());
        prop_assert_eq!(r.body(), m.body());
        if m.is_request() {
            let n = m.write_response(&ResponseSpec { to_tag: Some(b"x1"), ..ResponseSpec::new(180) }, &mut out).unwrap();
            let r = Message::parse(&out[..n], &Limits::default()).unwrap();
            prop_assert_eq!(r.cseq(), m.cseq());
            prop_assert_eq!(r.top_via().branch(), m.top_via().branch());
            prop_assert_eq!(r.to().unwrap().tag, Some(g.to_tag.as_deref().map(str::as_bytes).unwrap_or(b"x1")));
        }
    }

    #[test]
    fn mutated_sip_never_panics(g in gen(), ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8)) {
        let bytes = mutate(&render(&g), &ops);
        if let Ok(m) = Message::parse(&bytes, &Limits::default()) {
            exercise(&m);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = Message::parse(&bytes, &Limits::default()) {
            exercise(&m);
        }
        for part in mgcp::split_piggybacked(&bytes) {
            let _ = mgcp::Message::parse(part, &Limits::default()).map(|m| m.session_size(&SessionSizeConfig::default()));
        }
        let _ = wire::tag::decode(&wire::tag::TagKeys::UNKEYED, &bytes, 100);
    }

    #[test]
    fn mutated_mgcp_never_panics(tid in 1u32..999_999_999, ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..8)) {
        let base = format!("CRCX {tid} aaln/1@[10.0.0.1]:2427 MGCP 1.0 NCS 1.0\r\nC: A3C4\r\nX-Size: 2\r\n\r\nv=0\r\nm=audio 4 RTP/AVP 0\r\n.\r\n200 {tid} OK\r\nI: 1\r\n");
        if ops.is_empty() {
            let parts: Vec<_> = mgcp::split_piggybacked(base.as_bytes()).collect();
            prop_assert_eq!(parts.len(), 2);
            let m = mgcp::Message::parse(parts[0], &Limits::default()).unwrap();
            prop_assert_eq!(m.tid(), tid);
            prop_assert_eq!(m.session_size(&SessionSizeConfig::default()), 2);
        }
        let bytes = mutate(base.as_bytes(), &ops);
        for part in mgcp::split_piggybacked(&bytes) {
            if let Ok(m) = mgcp::Message::parse(part, &Limits::default()) {
                let _ = (m.kind(), m.params().count(), m.sdp(), m.param(b'C'));
            }
        }
    }

    /// The splitter equals the plain model (walk every line, split at one holding only `.`),
    /// and `param` (one indexed load) equals a search of every parameter line, on datagrams
    /// built from pieces that make separators and near-misses likely.
    #[test]
    fn mgcp_split_and_param_match_models(pieces in prop::collection::vec(prop::sample::select(vec![
        ".", "\r\n", "\n", "\r", ".\r\n", "\n.", ". ", "..", "CRCX 1 a@b MGCP 1.0", "C: 1", "c: 2",
        "I: x", "X-Size: 3", "z2: q", "v=0", "\r\n\r\n", "200 1 OK", "K: 1",
    ]), 0..24)) {
        let bytes = pieces.concat().into_bytes();
        let got: Vec<&[u8]> = mgcp::split_piggybacked(&bytes).collect();
        prop_assert_eq!(got, split_by_lines(&bytes));
        for part in mgcp::split_piggybacked(&bytes) {
            if let Ok(m) = mgcp::Message::parse(part, &Limits::default()) {
                for name in [b'C', b'c', b'I', b'K', b'Z', b'X', b'2', b'-'] {
                    let linear = m.params().find(|p| p.name.eq_ignore_ascii_case(&[name])).map(|p| p.value);
                    prop_assert_eq!(m.param(name), linear);
                }
            }
        }
    }

    #[test]
    fn tags_round_trip(id in any::<u16>(), nonce in any::<u64>(), key in any::<[u8; 16]>(), other in any::<[u8; 16]>(), bound in any::<u16>()) {
        use wire::tag::{TagError, TagKey, TagKeys};
        let (key, other) = (TagKey::from_bytes(key), TagKey::from_bytes(other));
        let mut buf = [0u8; 32];
        let n = wire::tag::encode(&key, id, nonce, &mut buf).unwrap();
        let expect = if id < bound { Ok(id) } else { Err(TagError::IdOutOfRange(id)) };
        prop_assert_eq!(wire::tag::decode(&TagKeys::single(key), &buf[..n], bound), expect);
        let rotating = TagKeys { current: other, previous: Some(key) };
        prop_assert_eq!(wire::tag::decode(&rotating, &buf[..n], bound), expect);
        if other != key {
            prop_assert_eq!(wire::tag::decode(&TagKeys::single(other), &buf[..n], bound), Err(TagError::BadMac));
        }
    }
}

#[test]
fn corpus_mutations_never_panic() {
    for (_, _, data) in common::corpus() {
        // Every truncation of every torture message.
        for cut in 0..=data.len() {
            if let Ok(m) = Message::parse(&data[..cut], &Limits::default()) {
                exercise(&m);
            }
        }
    }
}

/// The splitter's model: every line in turn, a line equal to `.` (CRLF or LF stripped) ends a
/// segment; segments of only CR/LF are skipped.
fn split_by_lines(buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let mut pos = 0;
        let (seg, next) = loop {
            match rest[pos..].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let lf = pos + i;
                    let end = if lf > pos && rest[lf - 1] == b'\r' {
                        lf - 1
                    } else {
                        lf
                    };
                    if &rest[pos..end] == b"." {
                        break (&rest[..pos], &rest[lf + 1..]);
                    }
                    pos = lf + 1;
                }
                None => {
                    if &rest[pos..] == b"." {
                        break (&rest[..pos], &[][..]);
                    }
                    break (rest, &[][..]);
                }
            }
        };
        rest = next;
        if !seg.iter().all(|&b| b == b'\r' || b == b'\n') {
            out.push(seg);
        }
    }
    out
}
