//! MGCP scanner and builder tests: every verb, every parameter named in RFC 3435 §3.2.2 that
//! the dispatcher cares about, piggybacking, errors.

use wire::mgcp::{split_piggybacked, write_response, Kind, Message, MgcpErrorKind, Verb};
use wire::{Limits, SessionSizeConfig};

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse(b, &Limits::default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

const CRCX: &[u8] = b"CRCX 1204 aaln/1@rgw-2567.whatever.net MGCP 1.0\r\n\
C: A3C47F21456789F0\r\n\
L: p:10, a:PCMU\r\n\
M: recvonly\r\n\
X-Size: 3\r\n\
\r\n\
v=0\r\n\
c=IN IP4 128.96.41.1\r\n\
m=audio 3456 RTP/AVP 0\r\n";

#[test]
fn crcx() {
    let m = parse(CRCX);
    let Kind::Command {
        verb,
        tid,
        endpoint,
        version,
    } = m.kind()
    else {
        panic!()
    };
    assert_eq!(verb, Verb::Crcx);
    assert_eq!(tid, 1204);
    assert_eq!(endpoint.local, b"aaln/1");
    assert_eq!(endpoint.domain, b"rgw-2567.whatever.net");
    assert_eq!(endpoint.port, None);
    assert!(!endpoint.is_wildcard());
    assert_eq!(
        (version.major, version.minor, version.profile),
        (1, 0, None)
    );
    assert_eq!(m.param(b'C'), Some(&b"A3C47F21456789F0"[..]));
    assert_eq!(m.param(b'l'), Some(&b"p:10, a:PCMU"[..]));
    assert_eq!(m.param(b'M'), Some(&b"recvonly"[..]));
    assert_eq!(m.param_named(b"x-size"), Some(&b"3"[..]));
    assert!(m.sdp().unwrap().starts_with(b"v=0"));
    let cfg = SessionSizeConfig::default();
    assert_eq!(m.session_size(&cfg), 3);
    let no_x = b"CRCX 1 a@b MGCP 1.0\nC: 1\n\nv=0\nm=audio 1 RTP/AVP 0\nm=video 2 RTP/AVP 31\n";
    assert_eq!(parse(no_x).session_size(&cfg), 5);
    assert_eq!(parse(b"CRCX 1 a@b MGCP 1.0\nC: 1\n").session_size(&cfg), 1);
}

#[test]
fn every_verb() {
    let verbs: &[(&[u8], Verb)] = &[
        (b"CRCX", Verb::Crcx),
        (b"MDCX", Verb::Mdcx),
        (b"DLCX", Verb::Dlcx),
        (b"RQNT", Verb::Rqnt),
        (b"NTFY", Verb::Ntfy),
        (b"AUEP", Verb::Auep),
        (b"AUCX", Verb::Aucx),
        (b"EPCF", Verb::Epcf),
        (b"RSIP", Verb::Rsip),
        (b"rsip", Verb::Rsip),
        (b"ABCD", Verb::Other(*b"ABCD")),
        (b"wxyz", Verb::Other(*b"WXYZ")),
    ];
    for (v, expect) in verbs {
        let msg = [
            *v,
            b" 999999999 ds/ds1-1/*@[128.96.41.1]:2427 MGCP 1.0 NCS 1.0\n",
        ]
        .concat();
        let m = parse(&msg);
        let Kind::Command {
            verb,
            tid,
            endpoint,
            version,
        } = m.kind()
        else {
            panic!()
        };
        assert_eq!(verb, *expect);
        assert_eq!(verb.as_bytes(), v.to_ascii_uppercase());
        assert_eq!(tid, 999_999_999);
        assert_eq!(endpoint.local, b"ds/ds1-1/*");
        assert_eq!(endpoint.domain, b"[128.96.41.1]");
        assert_eq!(endpoint.port, Some(2427));
        assert!(endpoint.is_wildcard() && !endpoint.is_any_of());
        assert_eq!(version.profile, Some(&b"NCS 1.0"[..]));
    }
    let m = parse(b"CRCX 5 aaln/$@gw.example.net:2427 mgcp 1.0\n");
    let Kind::Command { endpoint, .. } = m.kind() else {
        panic!()
    };
    assert!(endpoint.is_any_of());
}

#[test]
fn every_parameter() {
    let names: &[&[u8]] = &[
        b"C", b"I", b"N", b"X", b"L", b"M", b"Z", b"K", b"R", b"S", b"Q", b"T", b"D", b"O", b"P",
        b"E", b"ES", b"B", b"F", b"A", b"RM", b"RD", b"Z2", b"I2", b"PL", b"MD", b"X-Foo",
        b"x+bar",
    ];
    let mut msg = b"RQNT 1201 aaln/1@rgw-2567.example.net MGCP 1.0\r\n".to_vec();
    for (i, n) in names.iter().enumerate() {
        // Mixed case names and odd spacing.
        let name = if i % 2 == 0 {
            n.to_ascii_lowercase()
        } else {
            n.to_vec()
        };
        msg.extend_from_slice(&name);
        msg.extend_from_slice(format!(":  value{i} \r\n").as_bytes());
    }
    let m = parse(&msg);
    assert_eq!(m.params().count(), names.len());
    for (i, n) in names.iter().enumerate() {
        let expect = format!("value{i}");
        assert_eq!(
            m.param_named(n),
            Some(expect.as_bytes()),
            "{}",
            String::from_utf8_lossy(n)
        );
        if n.len() == 1 {
            assert_eq!(m.param(n[0]), Some(expect.as_bytes()));
        }
    }
    let bad = b"RQNT 1 a@b MGCP 1.0\nQQ: x\n";
    assert_eq!(
        Message::parse(bad, &Limits::default()).unwrap_err().kind,
        MgcpErrorKind::UnknownParam
    );
    assert_eq!(MgcpErrorKind::UnknownParam.return_code(), 511);
}

#[test]
fn responses() {
    let m = parse(b"200 1204 OK\r\nI: FDE234C8\r\n\r\nv=0\r\nm=audio 3456 RTP/AVP 0\r\n");
    assert_eq!(
        m.kind(),
        Kind::Response {
            code: 200,
            tid: 1204,
            commentary: b"OK"
        }
    );
    assert_eq!(m.param(b'I'), Some(&b"FDE234C8"[..]));
    assert!(m.sdp().is_some());
    let m = parse(b"250 1210\n");
    assert_eq!(
        m.kind(),
        Kind::Response {
            code: 250,
            tid: 1210,
            commentary: b""
        }
    );
    let m = parse(b"000 77 ack\n");
    assert_eq!(m.tid(), 77);

    let mut out = [0u8; 512];
    let sdp = b"v=0\r\nm=audio 3456 RTP/AVP 0\r\n";
    for (code, comment) in [
        (200u16, &b"OK"[..]),
        (250, b"Connection was deleted"),
        (400, b""),
        (510, b"Protocol error"),
    ] {
        let params: &[(&[u8], &[u8])] = &[
            (b"I", b"FDE234C8"),
            (b"Z", b"aaln/1@gw"),
            (b"P", b"PS=1245, OS=62345"),
        ];
        let n = write_response(
            code,
            1204,
            comment,
            params,
            (code == 200).then_some(&sdp[..]),
            &mut out,
        )
        .unwrap();
        let r = parse(&out[..n]);
        assert_eq!(
            r.kind(),
            Kind::Response {
                code,
                tid: 1204,
                commentary: comment
            }
        );
        assert_eq!(r.param(b'I'), Some(&b"FDE234C8"[..]));
        assert_eq!(r.param(b'z'), Some(&b"aaln/1@gw"[..]));
        assert_eq!(r.param(b'P'), Some(&b"PS=1245, OS=62345"[..]));
        assert_eq!(r.sdp(), (code == 200).then_some(&sdp[..]));
    }
    assert!(write_response(200, 0, b"", &[], None, &mut out).is_err());
    assert!(write_response(1000, 1, b"", &[], None, &mut out).is_err());
    assert!(write_response(200, 1, b"x\ny", &[], None, &mut out).is_err());
    assert!(write_response(200, 1, b"OK", &[], None, &mut [0u8; 4]).is_err());
}

#[test]
fn piggybacked() {
    let dg = b"200 2002 OK\r\n.\r\nDLCX 1244 card23/21@tgw-7.example.net MGCP 1.0\r\nC: A3C47F21456789F0\r\nI: FDE234C8\r\n.\r\nRQNT 1205 aaln/1@rgw-2567.example.net MGCP 1.0\nX: 0123456789AC\nR: L/hd(N)\n.\n";
    let parts: Vec<&[u8]> = split_piggybacked(dg).collect();
    assert_eq!(parts.len(), 3);
    let kinds: Vec<_> = parts.iter().map(|p| parse(p).tid()).collect();
    assert_eq!(kinds, [2002, 1244, 1205]);
    assert_eq!(parse(parts[1]).param(b'I'), Some(&b"FDE234C8"[..]));
    assert_eq!(parse(parts[2]).param(b'R'), Some(&b"L/hd(N)"[..]));
    assert_eq!(split_piggybacked(b"250 1 OK\n").count(), 1);
    assert_eq!(split_piggybacked(b"").count(), 0);
    assert_eq!(split_piggybacked(b".\n.\n").count(), 0);
    // A "." inside a line is not a separator.
    assert_eq!(split_piggybacked(b"RQNT 1 a@b MGCP 1.0\nX: .\n").count(), 1);
}

#[test]
fn rejects() {
    let l = Limits::default();
    let cases: &[(&[u8], MgcpErrorKind)] = &[
        (b"", MgcpErrorKind::Empty),
        (b"CRC 1 a@b MGCP 1.0\n", MgcpErrorKind::Verb),
        (b"CRCX 0 a@b MGCP 1.0\n", MgcpErrorKind::TransactionId),
        (
            b"CRCX 1000000000 a@b MGCP 1.0\n",
            MgcpErrorKind::TransactionId,
        ),
        (b"CRCX 1 ab MGCP 1.0\n", MgcpErrorKind::Endpoint),
        (b"CRCX 1 a@b:99999 MGCP 1.0\n", MgcpErrorKind::Endpoint),
        (b"CRCX 1 a@[zz] MGCP 1.0\n", MgcpErrorKind::Endpoint),
        (b"CRCX 1 a@b SGCP 1.0\n", MgcpErrorKind::Version),
        (b"CRCX 1 a@b MGCP\n", MgcpErrorKind::CommandLine),
        (b"CRCX 1 a@b MGCP 1.0 NCS\n", MgcpErrorKind::CommandLine),
        (b"2000 1 OK\n", MgcpErrorKind::ResponseCode),
        (b"200 x OK\n", MgcpErrorKind::TransactionId),
        (b"CRCX 1 a@b MGCP 1.0\nno colon\n", MgcpErrorKind::ParamLine),
    ];
    for (msg, kind) in cases {
        let e = Message::parse(msg, &l)
            .err()
            .unwrap_or_else(|| panic!("accepted {msg:?}"));
        assert_eq!(e.kind, *kind, "{}", String::from_utf8_lossy(msg));
    }
    assert_eq!(MgcpErrorKind::Version.return_code(), 528);
    assert_eq!(MgcpErrorKind::Endpoint.return_code(), 510);
}

#[test]
fn connection_id_tags() {
    let mut buf = [0u8; 32];
    let key = wire::tag::TagKey::from_bytes(*b"connection-id-ky");
    let n = wire::tag::encode(&key, 12, 0xdead_beef, &mut buf).unwrap();
    assert!(n <= 32, "RFC 3435: at most 32 hex digits");
    let resp = [b"200 1 OK\r\nI: ".as_slice(), &buf[..n], b"\r\n"].concat();
    let m = parse(&resp);
    assert_eq!(
        wire::tag::decode(&wire::tag::TagKeys::single(key), m.param(b'I').unwrap(), 16),
        Ok(12)
    );
}
