//! Agreement tests for the scanner's fast paths: each one may only answer where the general
//! parser accepts, with the same value (compared through `Debug`, which shows every field), and
//! must otherwise leave the answer, errors and offsets included, to the general parser.
//! Inputs come from generators biased towards the shapes the fast paths take, mixed with bytes
//! that break them (LWS, quotes, commas, brackets, CR/LF), plus the RFC 4475 corpus lines.

use proptest::prelude::*;

use super::{
    header_line, header_line_general, known_header_line, name_addr, params, start_line, uri, via,
    HeaderId, Line,
};
use crate::scan::{find, find_in, find_short, line_at, line_at_short};

/// Header values cut out of the RFC 4475 corpus (every line after a colon), and its start lines.
fn corpus_lines() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/rfc4475");
    let mut values = vec![];
    let mut starts = vec![];
    let entries = std::fs::read_dir(dir).expect("RFC 4475 corpus present");
    for e in entries.flatten() {
        let data = std::fs::read(e.path()).unwrap_or_default();
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if i == 0 {
                starts.push(line.to_vec());
            }
            if let Some(c) = line.iter().position(|&b| b == b':') {
                let v = &line[c + 1..];
                let s = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
                values.push(v[s..].to_vec());
            }
        }
    }
    assert!(values.len() > 200, "corpus too small: {}", values.len());
    (values, starts)
}

fn check_name_addr(v: &[u8]) {
    for list in [false, true] {
        let general = name_addr::parse_value_general(v, 0, v.len(), list);
        let fast = name_addr::parse_value(v, 0, v.len(), list);
        assert_eq!(
            format!("{fast:?}"),
            format!("{general:?}"),
            "{:?}",
            String::from_utf8_lossy(v)
        );
    }
}

fn check_via(v: &[u8]) {
    let general = via::parse_list_general(v, 0, v.len());
    let fast = via::parse_list(v, 0, v.len());
    assert_eq!(
        format!("{fast:?}"),
        format!("{general:?}"),
        "{:?}",
        String::from_utf8_lossy(v)
    );
}

fn check_start(l: &[u8]) {
    let general = start_line::parse_general(l, 0, l.len());
    let fast = start_line::parse(l, 0, l.len());
    assert_eq!(
        format!("{fast:?}"),
        format!("{general:?}"),
        "{:?}",
        String::from_utf8_lossy(l)
    );
}

fn check_uri(u: &[u8]) {
    for h in [false, true] {
        assert_eq!(
            uri::check(u, h),
            uri::check_reference(u, h),
            "{:?} {h}",
            String::from_utf8_lossy(u)
        );
    }
}

fn check_params(v: &[u8]) {
    let mut seen_fast = vec![];
    let fast = params::parse_simple(v, 0, v.len(), |p| seen_fast.push(format!("{p:?}")));
    let mut seen = vec![];
    let general = params::parse(v, 0, v.len(), true, |p| seen.push(format!("{p:?}")));
    if let Some(end) = fast {
        assert_eq!(general, Ok((end, None)), "{:?}", String::from_utf8_lossy(v));
        assert_eq!(seen_fast, seen);
    }
}

fn check_search(s: &[u8]) {
    for n in [b'\n', b'>', b'@', 0u8, 0xff] {
        assert_eq!(find_short(s, n), memchr::memchr(n, s));
        for start in [0, 1, 7, 9] {
            assert_eq!(find_in(s, start, s.len(), n), find(s, start, s.len(), n));
            assert_eq!(line_at_short(s, start), line_at(s, start));
        }
    }
}

#[test]
fn fast_paths_agree_on_the_corpus() {
    let (values, starts) = corpus_lines();
    let mut via_fast = 0;
    let mut na_fast = 0;
    for v in &values {
        check_name_addr(v);
        check_via(v);
        check_params(v);
        check_search(v);
        check_header_line(v);
        if let Some(close) = v.iter().position(|&b| b == b'>') {
            check_uri(&v[1.min(close)..close]);
        }
        via_fast += usize::from(via::parse_list(v, 0, v.len()).is_ok());
        na_fast += usize::from(name_addr::parse_value(v, 0, v.len(), false).is_ok());
    }
    for l in &starts {
        check_start(l);
        if let Some(sp) = l.iter().position(|&b| b == b' ') {
            let rest = &l[sp + 1..];
            let e = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            check_uri(&rest[..e]);
        }
    }
    assert!(
        via_fast > 20 && na_fast > 20,
        "corpus exercises the parsers"
    );
    // Every line start of every corpus message, for the line framing.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/rfc4475");
    for e in std::fs::read_dir(dir)
        .expect("RFC 4475 corpus present")
        .flatten()
    {
        let data = std::fs::read(e.path()).unwrap_or_default();
        for (i, _) in data.iter().enumerate().filter(|(_, &b)| b == b'\n') {
            for max_line in [4096, 40] {
                let ls = i + 1;
                check_known(&data, ls, max_line);
                let fast = header_line(&data, ls, max_line);
                let general = header_line_general(&data, ls, max_line);
                assert_eq!(format!("{fast:?}"), format!("{general:?}"));
            }
        }
    }
}

/// Bytes that steer the scanners into and out of their fast paths.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9.]{1,6}",
        1 => "[A-Z]{1,3}",
        2 => prop::sample::select(vec![
            "<", ">", ";", "=", ":", "@", "?", ",", " ", "\t", "\"", "\\", "/", "[", "]", "\r\n ",
            "sip:", "SIP/2.0", "tag", "branch", "rport", "received", "*", "%", "+", "-", "\u{7f}",
            "\u{0}", "é", "z9hG4bK",
        ]).prop_map(str::to_string),
    ]
}

fn soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(piece(), 0..16).prop_map(|v| v.concat().into_bytes())
}

fn name_addr_like() -> impl Strategy<Value = Vec<u8>> {
    (
        "<(sip|sips|tel|x-y\\.z|1a)?:?[a-z0-9@.:;=?%]{0,14}>",
        prop::collection::vec(
            "(;[a-z]{1,4}(=[a-z0-9.:]{0,4})?|;tag=[a-z0-9]{0,5}|;tag)",
            0..4,
        ),
        soup(),
        any::<bool>(),
    )
        .prop_map(|(a, p, tail, with_tail)| {
            let mut v = a.into_bytes();
            v.extend(p.concat().into_bytes());
            if with_tail {
                v.extend(tail);
            }
            v
        })
}

fn via_like() -> impl Strategy<Value = Vec<u8>> {
    (
        "(SIP|x)?/(2\\.0)?/(UDP|TCP|)( |  |\t)?",
        "([a-z0-9.-]{0,10}|\\[[0-9a-f:]{0,6}\\])(:[0-9]{0,6})?",
        prop::collection::vec(
            "(;branch=z9hG4bK[a-z0-9]{0,4}|;rport(=[0-9]{0,6})?|;received=[0-9.]{0,8}|;[a-z]{1,3}(=[a-z]{0,2})?)",
            0..4,
        ),
        soup(),
        any::<bool>(),
    )
        .prop_map(|(s, h, p, tail, with_tail)| {
            let mut v = format!("{s}{h}").into_bytes();
            v.extend(p.concat().into_bytes());
            if with_tail {
                v.extend(tail);
            }
            v
        })
}

fn start_like() -> impl Strategy<Value = Vec<u8>> {
    (
        "(INVITE|ACK|BYE|FOO-1|SIP/|)",
        "( |  |)",
        "(sip|sips|tel)?:?[a-z0-9@.:;=?<%]{0,12}",
        "( |  |)",
        "(SIP/2\\.0|sip/2\\.0|SIP/2\\.1|SIP/2\\.0 |)",
        soup(),
        any::<bool>(),
    )
        .prop_map(|(m, s1, u, s2, v, tail, with_tail)| {
            let mut l = format!("{m}{s1}{u}{s2}{v}").into_bytes();
            if with_tail {
                l.extend(tail);
            }
            l
        })
}

/// `known_header_line` may only answer what `header_line` frames, with the name's class.
fn check_known(buf: &[u8], ls: usize, max_line: usize) {
    if let Some((id, ne, vs, ve, nx)) = known_header_line(buf, ls, max_line) {
        match header_line(buf, ls, max_line) {
            Ok(Line::Header {
                ne: n,
                vs: s,
                ve: e,
                next,
            }) => {
                assert_eq!(
                    (n, s, e, next),
                    (ne, vs, ve, nx),
                    "{:?}",
                    String::from_utf8_lossy(buf)
                );
            }
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
        assert_eq!(HeaderId::classify_token(&buf[ls..ne]), id);
        assert_ne!(id, HeaderId::Other);
    }
}

fn check_header_line(buf: &[u8]) {
    for ls in [0, 1, 3] {
        for max_line in [4096, 12] {
            check_known(buf, ls, max_line);
            let fast = header_line(buf, ls, max_line);
            let general = header_line_general(buf, ls, max_line);
            assert_eq!(
                format!("{fast:?}"),
                format!("{general:?}"),
                "{:?} at {ls}",
                String::from_utf8_lossy(buf)
            );
        }
    }
}

fn header_block() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => "[A-Za-z-]{1,8}(:|: |:  | :|\t:|)[a-z0-9 <>;=@.\t]{0,12}( |\t|)(\r\n|\n|\r|)( |\t|)".prop_map(String::into_bytes),
            3 => (
                prop::sample::select(vec![
                    "Via", "v", "VIA", "From", "f", "To", "t", "Call-ID", "CALL-id", "i", "CSeq",
                    "Contact", "m", "Max-Forwards", "Content-Length", "l", "Content-Type",
                    "Record-Route", "Call\rID", "Call-I\r", "Max-Forwards-", "Via ", "X-Via",
                ]),
                "(:|: |:  | :|)[a-z0-9 <>;=@.\t]{0,12}( |\t|)(\r\n|\n|\r|)( |\t|)",
            )
                .prop_map(|(n, rest)| format!("{n}{rest}").into_bytes()),
            1 => soup(),
        ],
        1..5,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn header_line_fast_path_agrees(b in header_block()) {
        check_header_line(&b);
    }

    #[test]
    fn name_addr_fast_path_agrees(v in prop_oneof![name_addr_like(), soup()]) {
        check_name_addr(&v);
        check_params(&v);
    }

    #[test]
    fn via_fast_path_agrees(v in prop_oneof![via_like(), soup()]) {
        check_via(&v);
        check_params(&v);
    }

    #[test]
    fn start_line_fast_path_agrees(l in prop_oneof![start_like(), soup()]) {
        check_start(&l);
    }

    #[test]
    fn uri_check_agrees(u in prop_oneof![
        "(sip|sips|SIP|tel|x+y.z|1a|)(:|)[a-z0-9@.:;=?<>\"% \t\u{7f}é]{0,20}".prop_map(String::into_bytes),
        soup(),
        prop::collection::vec(any::<u8>(), 0..40),
    ]) {
        check_uri(&u);
    }

    #[test]
    fn short_searches_agree(s in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'>'), Just(b'@'), any::<u8>()], 0..70)) {
        check_search(&s);
    }
}

/// `Message::parse` with every fast path and with none (the reference): the same view or the
/// same error, offsets included.
fn check_message(buf: &[u8]) {
    let limits = crate::Limits::default();
    let fast = format!("{:?}", super::Message::parse(buf, &limits));
    super::GENERAL_ONLY.with(|g| g.set(true));
    let general = format!("{:?}", super::Message::parse(buf, &limits));
    super::GENERAL_ONLY.with(|g| g.set(false));
    assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(buf));
}

#[test]
fn messages_parse_alike_with_and_without_fast_paths() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/rfc4475");
    let mut n = 0;
    for e in std::fs::read_dir(dir)
        .expect("RFC 4475 corpus present")
        .flatten()
    {
        let data = std::fs::read(e.path()).unwrap_or_default();
        check_message(&data);
        // Truncations, and bytes that steer the fast paths (two per offset, in rotation, to
        // keep the debug-build run short), at every offset.
        const STEER: [u8; 8] = [b' ', b':', b'\r', b'\n', b'<', b';', b'"', b'\t'];
        for i in 0..data.len() {
            check_message(&data[..i]);
            for b in [STEER[i % 8], STEER[(i + 3) % 8]] {
                let mut m = data.clone();
                m[i] = b;
                check_message(&m);
            }
        }
        n += 1;
    }
    assert!(n > 30, "corpus messages: {n}");
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        start_like(),
        prop::collection::vec(
            prop_oneof![
                3 => via_like().prop_map(|v| [b"Via: ".to_vec(), v].concat()),
                3 => name_addr_like().prop_map(|v| [b"To: ".to_vec(), v].concat()),
                2 => name_addr_like().prop_map(|v| [b"f:".to_vec(), v].concat()),
                1 => name_addr_like().prop_map(|v| [b"Contact:  ".to_vec(), v].concat()),
                2 => "(Call-ID|i|CSeq|Max-Forwards|Content-Length|l|X-A)(:|: | :)[0-9a-zA-Z@. ]{0,10}"
                    .prop_map(String::into_bytes),
                1 => soup(),
            ],
            0..8,
        ),
        prop::sample::select(vec!["\r\n", "\n"]),
        prop::collection::vec(any::<u8>(), 0..10),
    )
        .prop_map(|(start, headers, eol, body)| {
            let mut m = start;
            for h in headers {
                m.extend_from_slice(eol.as_bytes());
                m.extend(h);
            }
            m.extend_from_slice(eol.as_bytes());
            m.extend_from_slice(b"CSeq: 1 INVITE");
            m.extend_from_slice(eol.as_bytes());
            m.extend_from_slice(eol.as_bytes());
            m.extend(body);
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_messages_parse_alike_with_and_without_fast_paths(m in message()) {
        check_message(&m);
    }
}
