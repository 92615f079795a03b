//! `Locate` / `Message::locate`: whenever `Message::parse` accepts, every scope of `locate`
//! accepts too and agrees on every field it exposes; it never panics on any bytes; the
//! one-pass SDP sizing equals `session_size::from_sdp`.

mod common;
use common::corpus;

use proptest::prelude::*;
use wire::sip::locate::sdp_units;
use wire::sip::{InsertAt, Kind, Locate, Message, Scope};

const MARK: &[u8] = b"X-Switchyard-Port: 5071";
use wire::{session_size, Limits, SessionSizeConfig};

const SCOPES: [Scope; 3] = [Scope::Complete, Scope::Routing, Scope::CompleteForInvite];

/// Checks every scope against `parse`; returns whether `parse` accepted.
fn check_with(data: &[u8], limits: &Limits, session: &[u8]) -> Result<bool, String> {
    let full = Message::parse(data, limits);
    let cfg = SessionSizeConfig {
        sip_header: session.to_vec(),
        ..SessionSizeConfig::default()
    };
    let loc = Locate::new(limits, session);
    let convenience = Message::locate(data, limits, session);
    for scope in SCOPES {
        let got = loc.scan(data, scope);
        if scope == Scope::Complete {
            match (&got, &convenience) {
                (Ok(a), Ok(b)) if format!("{a:?}") == format!("{b:?}") => {}
                (Err(a), Err(b)) if a == b => {}
                _ => {
                    return Err(format!(
                        "Message::locate differs: {got:?} vs {convenience:?}"
                    ))
                }
            }
        }
        let m = match (&full, got) {
            (Ok(m), Ok(l)) => (m, l),
            (Ok(_), Err(e)) => {
                return Err(format!("{scope:?}: parse accepts, locate rejects: {e}"))
            }
            (Err(_), Ok(l)) => {
                // Whatever locate accepted, the relay rewrite answers without panicking.
                let mut out = [0u8; 4096];
                let _ = l.write_relayed(b"198.18.0.2", Some(5060), Some(MARK), &mut out);
                continue;
            }
            (Err(_), Err(_)) => continue,
        };
        let (m, l) = m;
        // The one-scan relay rewrite equals the full view's (body cut at Content-Length only
        // in a complete scan, so a routing scan's copy may carry trailing bytes).
        {
            let (mut a, mut b) = ([0u8; 8192], [0u8; 8192]);
            let la = l.write_relayed(b"198.18.0.2", Some(5060), Some(MARK), &mut a);
            let lb = m.write_relayed(
                b"198.18.0.2",
                Some(5060),
                Some((MARK, InsertAt::AfterStartLine)),
                &mut b,
            );
            match (la, lb) {
                (Ok(x), Ok(y)) if a[..x].starts_with(&b[..y]) => {}
                (Err(e1), Err(e2)) if e1 == e2 => {}
                other => return Err(format!("{scope:?}: relay rewrites differ: {other:?}")),
            }
        }
        let status = match m.kind() {
            Kind::Response { code, .. } => Some(code),
            Kind::Request { .. } => None,
        };
        let mut diffs = vec![];
        macro_rules! same {
            ($a:expr, $b:expr) => {
                if $a != $b {
                    diffs.push(format!("{}: {:?} vs {:?}", stringify!($b), $a, $b));
                }
            };
        }
        same!(m.method(), l.method());
        same!(m.is_request(), l.is_request());
        same!(status, l.status());
        same!(m.call_id(), l.call_id());
        same!(m.from().is_some(), l.has_from());
        same!(m.from().and_then(|f| f.tag), l.from_tag());
        same!(m.to().is_some(), l.has_to());
        same!(m.to().and_then(|t| t.tag), l.to_tag());
        same!(m.top_via().branch(), l.branch());
        same!(m.cseq().method, l.cseq_method());
        let complete = match scope {
            Scope::Complete => true,
            Scope::Routing => false,
            Scope::CompleteForInvite => m.method() == Some(wire::sip::Method::Invite),
        };
        if complete {
            same!(true, l.is_complete());
            same!(m.header(session), l.session_size_header());
            same!(m.content_type(), l.content_type());
            same!(Some(m.body()), l.body());
            same!(Some(m.session_size(&cfg)), l.session_size(&cfg));
        } else {
            same!(None::<u32>, l.session_size(&cfg));
        }
        if !diffs.is_empty() {
            return Err(format!("{scope:?}: {}", diffs.join("; ")));
        }
    }
    Ok(full.is_ok())
}

fn check(data: &[u8], limits: &Limits) -> Result<bool, String> {
    check_with(data, limits, b"X-Session-Size")
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
        for session in [&b"Subject"[..], b"s", b"Content-Type", b"x-size", b""] {
            check_with(&data, &limits, session).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for cut in 0..=data.len() {
            check(&data[..cut], &limits).unwrap_or_else(|e| panic!("{name}[..{cut}]: {e}"));
        }
    }
    assert!(valid > 0);
}

#[test]
fn locates_the_typical_invite() {
    let inv = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060 ; Branch = z9hG4bK-1 ;rport, SIP/2.0/UDP p;branch=z9hG4bK-2\r\n\
Via: SIP/2.0/UDP q;branch=z9hG4bK-3\r\n\
f: \"A;tag=no <x>\" <sip:a@example.com;tag=no>;x=\"y;tag=no\";TAG=yes\r\n\
To: sip:bob@example.com\r\n\
i:  call-1@host \r\n\
CSeq: 1 INVITE\r\n\
X-Session-Size: 3\r\n\
c: application/sdp\r\n\
l: 4\r\n\r\nv=0\r\ntrailing";
    let l = Message::locate(inv, &Limits::default(), b"X-Session-Size").unwrap();
    assert_eq!(l.method(), Some(wire::sip::Method::Invite));
    assert_eq!(l.branch(), Some(&b"z9hG4bK-1"[..]));
    assert_eq!(l.from_tag(), Some(&b"yes"[..]));
    assert!(l.has_to());
    assert_eq!(l.to_tag(), None);
    assert_eq!(l.call_id(), b"call-1@host");
    assert_eq!(l.body(), Some(&b"v=0\r"[..]));
    assert_eq!(l.session_size(&SessionSizeConfig::default()), Some(3));
    check(inv, &Limits::default()).unwrap();
    // Routing scope stops after CSeq: a missing blank line goes unnoticed.
    let cut = &inv[..inv.len() - 30];
    let r = Locate::new(&Limits::default(), b"X-Session-Size")
        .scan(cut, Scope::Routing)
        .unwrap();
    assert_eq!(r.call_id(), b"call-1@host");
    assert!(!r.is_complete());
    assert!(Message::locate(cut, &Limits::default(), b"X-Session-Size").is_err());
}

#[test]
fn rejects_what_it_needs_to() {
    let limits = Limits::default();
    let kind = |m: &[u8]| {
        Message::locate(m, &limits, b"X-Session-Size")
            .err()
            .map(|e| e.kind)
    };
    use wire::sip::SipErrorKind as K;
    let ok = "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 2 BYE\r\n\r\n";
    assert_eq!(kind(ok.as_bytes()), None);
    assert_eq!(kind(b""), Some(K::Empty));
    assert_eq!(kind(b"\r\n\r\n"), Some(K::Empty));
    assert_eq!(kind(b"BYE sip:a@b SIP/2.0"), Some(K::Truncated));
    assert_eq!(
        kind(ok.replace("CSeq: 2 BYE", "CSeq: 2 INVITE").as_bytes()),
        Some(K::CSeqMethodMismatch)
    );
    assert_eq!(
        kind(ok.replace("CSeq: 2 BYE\r\n", "").as_bytes()),
        Some(K::MissingHeader("CSeq"))
    );
    assert_eq!(
        kind(ok.replace("Via", "X-Via").as_bytes()),
        Some(K::MissingHeader("Via"))
    );
    assert_eq!(
        kind(ok.replace("SIP/2.0\r", "SIP/3.0\r").as_bytes()),
        Some(K::StartLine)
    );
    assert_eq!(kind(b"SIP/2.0 99 x\r\n\r\n"), Some(K::StatusCode));
    assert_eq!(kind(b"SIP/2.1 200 OK\r\n\r\n"), Some(K::Version));
    assert_eq!(
        kind(
            ok.replace("\r\n\r\n", "\r\nFrom: \"x <sip:a@b>\r\n\r\n")
                .as_bytes()
        ),
        Some(K::NameAddr("From"))
    );
    assert_eq!(
        kind(ok.replace("\r\n\r\n", "\r\nl: 5\r\n\r\n").as_bytes()),
        Some(K::ContentLengthTooLarge)
    );
    assert_eq!(
        kind(ok.replace("\r\n\r\n", "\r\nCall-ID x\r\n\r\n").as_bytes()),
        Some(K::HeaderLine)
    );
    let tight = Limits {
        max_headers: 1,
        ..Limits::default()
    };
    assert_eq!(
        Message::locate(ok.as_bytes(), &tight, b"")
            .map_err(|e| e.kind)
            .err(),
        Some(K::TooManyHeaders)
    );
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
                [b'\r', b'\n', b' ', b';', b',', b':', b'"', b'<', b'>', b'='][byte as usize % 10],
            ),
        }
    }
    v
}

#[derive(Debug, Clone)]
struct Gen {
    method: &'static str,
    response: bool,
    compact: bool,
    lf: bool,
    fold: bool,
    branch: String,
    from: u8,
    tag: String,
    to_tag: Option<String>,
    param_case: bool,
    lws: bool,
    session: Option<u32>,
    sdp: bool,
    body: Vec<u8>,
    order: Vec<usize>,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        (
            prop::sample::select(vec!["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "FOO"]),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            "[A-Za-z0-9.!%*_+`'~-]{1,24}",
            0u8..4,
            "[A-Za-z0-9.!%*_+`'~-]{1,24}",
            prop::option::of("[A-Za-z0-9.!%*_+`'~-]{1,24}"),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop::option::of(0u32..20),
            any::<bool>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                sdp_body().prop_map(|s| s.into_bytes()),
            ],
            Just((0..9).collect::<Vec<usize>>()).prop_shuffle(),
        ),
    )
        .prop_map(
            |(
                (method, response, compact, lf, fold),
                (branch, from, tag, to_tag, param_case, lws),
                (session, sdp, body, order),
            )| Gen {
                method,
                response,
                compact,
                lf,
                fold,
                branch,
                from,
                tag,
                to_tag,
                param_case,
                lws,
                session,
                sdp,
                body,
                order,
            },
        )
}

fn build(g: &Gen) -> Vec<u8> {
    let nl = if g.lf { "\n" } else { "\r\n" };
    let (v, f, t, i, l, c) = if g.compact {
        ("v", "f", "t", "i", "l", "c")
    } else {
        (
            "Via",
            "From",
            "To",
            "Call-ID",
            "Content-Length",
            "Content-Type",
        )
    };
    let (semi, eq) = if g.lws { (" ; ", " = ") } else { (";", "=") };
    let (tagp, branchp) = if g.param_case {
        ("TaG", "BRANCH")
    } else {
        ("tag", "branch")
    };
    let fold = if g.fold {
        format!("{nl} \t")
    } else {
        " ".into()
    };
    let from = match g.from {
        0 => format!(
            "\"Al;tag=x <y>\" <sip:a@example.com;tag=uri>{semi}{tagp}{eq}{}",
            g.tag
        ),
        1 => format!(
            "sip:a@example.com{semi}x=\"a;tag=q\"{semi}{tagp}{eq}{}",
            g.tag
        ),
        2 => format!(
            "Alice Smith{fold}<sip:a@example.com>{semi}{tagp}{eq}{}",
            g.tag
        ),
        _ => format!("<sip:a@example.com>;{tagp};{tagp}{eq}{};{tagp}", g.tag),
    };
    let to_tag = g
        .to_tag
        .as_ref()
        .map(|t| format!("{semi}{tagp}{eq}{t}"))
        .unwrap_or_default();
    let mut headers = vec![
        format!(
            "{v}: SIP/2.0/UDP [2001:db8::1]:5060{semi}received=[::1]{semi}{branchp}{eq}z9hG4bK{}{semi}rport,{fold}SIP/2.0/UDP q;branch=later",
            g.branch
        ),
        format!("{v}: SIP/2.0/TCP p.example;branch=z9hG4bKsecond"),
        format!("{f}: {from}"),
        format!("{t}: <sip:user@example.com>{to_tag}"),
        format!("{i}: {}@h", g.branch),
        format!("CSeq:{fold}7 {}", g.method),
        "Max-Forwards: 70".into(),
        g.session
            .map(|s| format!("X-Session-Size: {s}"))
            .unwrap_or_else(|| "Subject: none".into()),
        format!(
            "{c}: {}",
            if g.sdp {
                "Application/SDP; charset=x"
            } else {
                "text/plain"
            }
        ),
    ];
    headers = g.order.iter().map(|&k| headers[k].clone()).collect();
    let start = if g.response {
        "SIP/2.0 180 Ringing".to_string()
    } else {
        format!("{} sip:user@example.com SIP/2.0", g.method)
    };
    let mut m = format!("{start}{nl}");
    for h in headers {
        m.push_str(&h);
        m.push_str(nl);
    }
    m.push_str(&format!("{l}: {}{nl}{nl}", g.body.len()));
    let mut m = m.into_bytes();
    m.extend_from_slice(&g.body);
    m
}

fn sdp_body() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        (
            prop::sample::select(vec!["audio", "video", "AUDIO", "application", ""]),
            prop::sample::select(vec!["0", "49170", "49170/2", "x", "70000", "5/", ""]),
            prop::sample::select(vec![" RTP/AVP 0", " RTP/AVP", " ", ""]),
        )
            .prop_map(|(m, p, r)| format!("m={m} {p}{r}")),
        (
            prop::sample::select(vec!["AS", "as", "CT", ""]),
            prop::sample::select(vec![":84", ": 64 ", ":0", ":99999999999", ":x", "84", ":"]),
        )
            .prop_map(|(m, v)| format!("b={m}{v}")),
        "[a-z]=[ -~]{0,20}",
        Just("m=audio 49170 RTP/AVP 0 8".to_string()),
    ];
    (
        prop::collection::vec(line, 0..8),
        prop::sample::select(vec!["\r\n", "\n", "\r"]),
        any::<bool>(),
    )
        .prop_map(|(ls, nl, end)| {
            let mut s = ls.join(nl);
            if end {
                s.push_str(nl);
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn generated_messages_agree(
        g in gen(),
        ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..6),
    ) {
        let base = build(&g);
        prop_assert!(check(&base, &Limits::default()).map_err(TestCaseError::fail)?,
            "base message rejected by parse: {}", String::from_utf8_lossy(&base));
        let m = mutate(&base, &ops);
        check(&m, &Limits::default()).map_err(TestCaseError::fail)?;
        let tight = Limits { max_message_size: 300, max_headers: 5, max_header_line: 60 };
        check(&m, &tight).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes, &Limits::default()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn sdp_units_equal_from_sdp(body in sdp_body(), noise in prop::collection::vec(any::<u8>(), 0..32)) {
        for cfg in [
            SessionSizeConfig::default(),
            SessionSizeConfig { kbps_per_unit: 0, audio_units: 2, video_units: 0, ..SessionSizeConfig::default() },
            SessionSizeConfig { kbps_per_unit: 1, other_units: u32::MAX, ..SessionSizeConfig::default() },
        ] {
            prop_assert_eq!(sdp_units(body.as_bytes(), &cfg), session_size::from_sdp(body.as_bytes(), &cfg));
            let mut b = body.clone().into_bytes();
            b.extend_from_slice(&noise);
            prop_assert_eq!(sdp_units(&b, &cfg), session_size::from_sdp(&b, &cfg));
            prop_assert_eq!(sdp_units(&noise, &cfg), session_size::from_sdp(&noise, &cfg));
        }
    }
}
