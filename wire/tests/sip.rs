//! SIP scanner, rewrite, response-builder, tag and session-size unit tests.

use wire::sip::{Body, HeaderId, InsertAt, Kind, Message, Method, ResponseSpec, SipErrorKind};
use wire::{tag, Limits, SessionSizeConfig, WriteError};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Record-Route: <sip:p1.example.com;lr>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 139\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
m=video 0 RTP/AVP 31\r\n\
b=AS:200\r\n";

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse(b, &Limits::default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

#[test]
fn invite_fields() {
    assert_eq!(
        INVITE.len() - INVITE.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
        139
    );
    let m = parse(INVITE);
    assert_eq!(
        m.kind(),
        Kind::Request {
            method: Method::Invite,
            uri: b"sip:bob@biloxi.example.com"
        }
    );
    assert_eq!(m.call_id(), b"a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(m.cseq().seq, 314159);
    assert_eq!(m.cseq().method, Method::Invite);
    let via = m.top_via();
    assert_eq!(via.transport(), b"UDP");
    assert_eq!(
        via.sent_by(),
        (&b"pc33.atlanta.example.com"[..], Some(5060))
    );
    assert_eq!(via.branch(), Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(via.rport(), Some(None));
    assert_eq!(via.received(), None);
    assert_eq!(m.via_count(), 2);
    assert_eq!(m.from().unwrap().tag, Some(&b"1928301774"[..]));
    assert_eq!(m.from().unwrap().display, Some(&b"Alice"[..]));
    assert_eq!(m.to().unwrap().tag, None);
    assert_eq!(m.to().unwrap().uri, b"sip:bob@biloxi.example.com");
    assert_eq!(
        m.contact().unwrap().uri,
        b"sip:alice@pc33.atlanta.example.com"
    );
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.content_length(), Some(139));
    assert!(m.has_sdp_body());
    assert!(m.has_record_route());
    assert!(!m.has_route());
    assert_eq!(m.missing_mandatory(), None);
    assert_eq!(m.body().len(), 139);
    // audio 1 + video rejected (port 0) + ceil(200/64) = 4 -> 5
    assert_eq!(m.session_size(&SessionSizeConfig::default()), 5);
}

#[test]
fn compact_forms() {
    let cases: &[(&[u8], HeaderId, &[u8])] = &[
        (b"i", HeaderId::CallId, b"Call-ID"),
        (b"v", HeaderId::Via, b"Via"),
        (b"f", HeaderId::From, b"From"),
        (b"t", HeaderId::To, b"To"),
        (b"m", HeaderId::Contact, b"Contact"),
        (b"l", HeaderId::ContentLength, b"Content-Length"),
        (b"c", HeaderId::ContentType, b"Content-Type"),
        (b"k", HeaderId::Supported, b"Supported"),
        (b"s", HeaderId::Subject, b"Subject"),
        (b"e", HeaderId::ContentEncoding, b"Content-Encoding"),
        (b"o", HeaderId::Event, b"Event"),
        (b"r", HeaderId::ReferTo, b"Refer-To"),
    ];
    for (short, id, long) in cases {
        assert_eq!(HeaderId::classify(short), *id);
        assert_eq!(HeaderId::classify(&short.to_ascii_uppercase()), *id);
        assert_eq!(HeaderId::classify(long), *id);
        assert_eq!(HeaderId::classify(&long.to_ascii_lowercase()), *id);
    }
    let msg =
        b"SUBSCRIBE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:c@d>;tag=1\r\n\
t: sip:a@b\r\ni: cid1\r\nCSeq: 1 SUBSCRIBE\r\nm: <sip:c@h>\r\nk: timer\r\ns: hi\r\ne: gzip\r\n\
o: presence\r\nr: <sip:x@y>\r\nc: text/plain\r\nl: 2\r\n\r\nok";
    let m = parse(msg);
    assert_eq!(m.call_id(), b"cid1");
    assert_eq!(m.from().unwrap().tag, Some(&b"1"[..]));
    assert_eq!(m.to().unwrap().uri, b"sip:a@b");
    assert_eq!(m.contact().unwrap().uri, b"sip:c@h");
    assert_eq!(m.content_length(), Some(2));
    assert_eq!(m.body(), b"ok");
    for (name, val) in [
        (&b"Supported"[..], &b"timer"[..]),
        (b"Subject", b"hi"),
        (b"Content-Encoding", b"gzip"),
        (b"Event", b"presence"),
        (b"Refer-To", b"<sip:x@y>"),
        (b"Content-Type", b"text/plain"),
        (b"call-id", b"cid1"),
        (b"I", b"cid1"),
    ] {
        assert_eq!(
            m.header(name),
            Some(val),
            "{}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn folding_and_multi_values() {
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1,\r\n SIP/2.0/TCP h2:5070\r\n\t;branch=z9hG4bK2\r\n\
Via: SIP/2.0/UDP h3;branch=z9hG4bK3\r\nTo:\r\n <sip:a@b>\r\nFrom: <sip:c@d>\r\n ;tag=77\r\nCall-ID: x\r\nCSeq: 2\r\n OPTIONS\r\n\
Max-Forwards: 70\r\n\r\n";
    let m = parse(msg);
    assert_eq!(m.top_via().sent_by(), (&b"h1"[..], None));
    assert_eq!(m.via_count(), 3);
    assert_eq!(m.header_count(b"via"), 2);
    assert_eq!(m.from().unwrap().tag, Some(&b"77"[..]));
    assert_eq!(m.cseq().seq, 2);
    assert_eq!(m.to().unwrap().uri, b"sip:a@b");
}

#[test]
fn rejects() {
    let l = Limits::default();
    let cases: &[(&[u8], SipErrorKind)] = &[
        (b"", SipErrorKind::Empty),
        (
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n",
            SipErrorKind::Truncated,
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\n bad\r\n\r\n",
            SipErrorKind::HeaderLine,
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nNoColon\r\n\r\n",
            SipErrorKind::HeaderLine,
        ),
        (b"SIP/2.0 99 x\r\n\r\n", SipErrorKind::StatusCode),
        (
            b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n",
            SipErrorKind::MissingHeader("Via"),
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
            SipErrorKind::MissingHeader("CSeq"),
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nMax-Forwards: 256\r\n\r\n",
            SipErrorKind::MaxForwards,
        ),
    ];
    for (msg, kind) in cases {
        let e = Message::parse(msg, &l)
            .err()
            .unwrap_or_else(|| panic!("accepted {msg:?}"));
        assert_eq!(e.kind, *kind, "{}", String::from_utf8_lossy(msg));
        assert!(!e.to_string().is_empty());
    }
    let tight = Limits {
        max_message_size: 10,
        ..Limits::default()
    };
    assert_eq!(
        Message::parse(INVITE, &tight).unwrap_err().kind,
        SipErrorKind::TooLarge
    );
    let few = Limits {
        max_headers: 3,
        ..Limits::default()
    };
    assert_eq!(
        Message::parse(INVITE, &few).unwrap_err().kind,
        SipErrorKind::TooManyHeaders
    );
    let short = Limits {
        max_header_line: 20,
        ..Limits::default()
    };
    assert_eq!(
        Message::parse(INVITE, &short).unwrap_err().kind,
        SipErrorKind::LineTooLong
    );
}

#[test]
fn rewrite_received_rport() {
    let m = parse(INVITE);
    let mut out = [0u8; 2048];
    let n = m
        .write_with_received(b"192.0.2.7", Some(61000), &mut out)
        .unwrap();
    let r = parse(&out[..n]);
    assert_eq!(r.top_via().received(), Some(&b"192.0.2.7"[..]));
    assert_eq!(r.top_via().rport(), Some(Some(61000)));
    assert_eq!(r.top_via().branch(), m.top_via().branch());
    assert_eq!(r.body(), m.body());
    // Replacing existing values keeps one of each.
    let n2 = r
        .write_with_received(b"10.0.0.1", Some(5), &mut [0u8; 2048][..])
        .unwrap();
    assert_eq!(n2, n - 1 - 4);
    let mut out2 = [0u8; 2048];
    let n2 = r.write_with_received(b"10.0.0.1", None, &mut out2).unwrap();
    let r2 = parse(&out2[..n2]);
    assert_eq!(r2.top_via().received(), Some(&b"10.0.0.1"[..]));
    assert_eq!(r2.top_via().rport(), Some(Some(61000)));
    // Too small a buffer is a typed error.
    assert!(matches!(
        m.write_with_received(b"192.0.2.7", None, &mut [0u8; 10]),
        Err(WriteError::BufferTooSmall { .. })
    ));
    assert_eq!(
        m.write_with_received(b"a b", None, &mut out),
        Err(WriteError::InvalidInput("received address"))
    );
}

#[test]
fn rewrite_insert_header_and_to_tag() {
    let m = parse(INVITE);
    let mut out = [0u8; 2048];
    for at in [InsertAt::AfterStartLine, InsertAt::BeforeBlankLine] {
        let n = m
            .write_with_header(b"X-Processor-Port: 5071", at, &mut out)
            .unwrap();
        assert_eq!(n, m.as_bytes().len() + 24);
        let r = parse(&out[..n]);
        assert_eq!(r.header(b"x-processor-port"), Some(&b"5071"[..]));
        assert_eq!(r.body(), m.body());
    }
    assert!(m
        .write_with_header(b"Bad\r\nInjected: 1", InsertAt::AfterStartLine, &mut out)
        .is_err());
    let n = m.write_with_to_tag(b"abc123", &mut out).unwrap();
    let r = parse(&out[..n]);
    assert_eq!(r.to().unwrap().tag, Some(&b"abc123"[..]));
    assert_eq!(
        r.write_with_to_tag(b"x", &mut [0u8; 2048]),
        Err(WriteError::AlreadyTagged)
    );
    assert_eq!(
        m.write_with_to_tag(b"a b", &mut out),
        Err(WriteError::InvalidInput("tag"))
    );
}

#[test]
fn responses() {
    let m = parse(INVITE);
    let mut out = [0u8; 4096];
    let mut t = [0u8; 32];
    let tl = tag::encode(&tag::TagKey::UNKEYED, 3, 42, &mut t).unwrap();
    for code in [100u16, 180, 200, 486, 503] {
        let headers: &[&[u8]] = match code {
            200 => &[b"Contact: <sip:p3@10.0.0.3:5071>"],
            503 => &[b"Retry-After: 5"],
            _ => &[],
        };
        let body = (code == 200).then_some(Body {
            content_type: b"application/sdp",
            content: b"v=0\r\n",
        });
        let spec = ResponseSpec {
            code,
            reason: b"",
            to_tag: (code != 100).then_some(&t[..tl]),
            headers,
            body,
        };
        let n = m.write_response(&spec, &mut out).unwrap();
        let r = parse(&out[..n]);
        let Kind::Response { code: c, reason } = r.kind() else {
            panic!()
        };
        assert_eq!(c, code);
        assert_eq!(reason, wire::sip::reason_phrase(code));
        assert_eq!(r.via_count(), 2);
        let vias: Vec<_> = r.headers_named(b"Via").map(|h| h.value).collect();
        let orig: Vec<_> = m.headers_named(b"Via").map(|h| h.value).collect();
        assert_eq!(vias, orig);
        assert_eq!(r.call_id(), m.call_id());
        assert_eq!(r.cseq(), m.cseq());
        assert_eq!(r.from(), m.from());
        let to_tag = r.to().unwrap().tag;
        if code == 100 {
            assert_eq!(to_tag, None);
        } else {
            assert_eq!(
                tag::decode(&tag::TagKeys::UNKEYED, to_tag.unwrap(), 8),
                Ok(3)
            );
        }
        assert_eq!(r.has_record_route(), (101..300).contains(&code));
        match code {
            200 => {
                assert_eq!(r.content_length(), Some(5));
                assert_eq!(r.body(), b"v=0\r\n");
                assert_eq!(r.contact().unwrap().uri, b"sip:p3@10.0.0.3:5071");
            }
            503 => assert_eq!(r.header(b"Retry-After"), Some(&b"5"[..])),
            _ => assert_eq!(r.content_length(), Some(0)),
        }
    }
    let spec = ResponseSpec {
        reason: b"Custom",
        ..ResponseSpec::new(404)
    };
    let n = m.write_response(&spec, &mut out).unwrap();
    assert!(out[..n].starts_with(b"SIP/2.0 404 Custom\r\n"));
    assert!(matches!(
        m.write_response(&ResponseSpec::new(200), &mut [0u8; 64]),
        Err(WriteError::BufferTooSmall { .. })
    ));
    assert_eq!(
        m.write_response(&ResponseSpec::new(99), &mut out),
        Err(WriteError::InvalidInput("status code"))
    );
    let resp = parse(&out[..n]);
    assert_eq!(
        resp.write_response(&ResponseSpec::new(200), &mut [0u8; 512]),
        Err(WriteError::NotARequest)
    );
}

#[test]
fn tags() {
    use tag::{TagError, TagKey, TagKeys};
    let key = TagKey::from_bytes(*b"sip tests key 16");
    let keys = TagKeys::single(key);
    let mut buf = [0u8; 32];
    for (id, nonce) in [(0u16, 0u64), (7, 12345), (65535, u64::MAX)] {
        let n = tag::encode(&key, id, nonce, &mut buf).unwrap();
        assert_eq!(n, tag::TAG_LEN);
        let t = &buf[..n];
        assert!(t.iter().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            tag::decode(&keys, t, u16::MAX),
            if id < u16::MAX {
                Ok(id)
            } else {
                Err(TagError::IdOutOfRange(id))
            }
        );
        assert_eq!(
            tag::decode(&keys, &t.to_ascii_uppercase(), u16::MAX),
            tag::decode(&keys, t, u16::MAX)
        );
        assert_eq!(
            tag::decode(&keys, t, id),
            Err(TagError::IdOutOfRange(id)),
            "id >= bound rejected"
        );
        // Forging the id without fixing the MAC fails.
        let mut forged = t.to_vec();
        forged[3] = if forged[3] == b'0' { b'1' } else { b'0' };
        assert_eq!(tag::decode(&keys, &forged, u16::MAX), Err(TagError::BadMac));
        assert_eq!(
            tag::decode(&TagKeys::UNKEYED, t, u16::MAX),
            Err(TagError::BadMac),
            "key matters"
        );
    }
    assert!(tag::encode(&key, 1, 1, &mut [0u8; 10]).is_err());
    assert_eq!(tag::decode(&keys, b"zz", 10), Err(TagError::Format));
}

#[test]
fn session_size_rules() {
    let cfg = SessionSizeConfig::default();
    let with_header = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\nX-Session-Size: 12\r\n\r\n";
    assert_eq!(parse(with_header).session_size(&cfg), 12);
    let bad_header = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\nX-Session-Size: lots\r\n\r\n";
    assert_eq!(parse(bad_header).session_size(&cfg), 1);
    let custom = SessionSizeConfig {
        sip_header: b"X-Units".to_vec(),
        ..SessionSizeConfig::default()
    };
    let hdr =
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\nx-units: 3\r\n\r\n";
    assert_eq!(parse(hdr).session_size(&custom), 3);
    let sdp = b"v=0\r\nm=audio 1 RTP/AVP 0\r\nm=video 2 RTP/AVP 31\r\nm=application 3 UDP/BFCP *\r\nb=AS:65\r\n";
    assert_eq!(wire::session_size::from_sdp(sdp, &cfg), Some(1 + 4 + 1 + 2));
    assert_eq!(
        wire::session_size::from_sdp(b"v=0\r\nm=audio 0 RTP/AVP 0\r\n", &cfg),
        None
    );
    let media: Vec<_> = wire::sdp::media(sdp).collect();
    assert_eq!(media.len(), 3);
    assert_eq!(media[1].port, 2);
    assert_eq!(media[1].proto, b"RTP/AVP");
    assert_eq!(wire::sdp::bandwidths(sdp).next().unwrap().value, 65);
}
