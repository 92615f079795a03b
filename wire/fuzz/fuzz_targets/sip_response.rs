#![no_main]
//! Response building from any scanned request: the response scans and matches the request's
//! transaction (branch, CSeq, Call-ID).
use libfuzzer_sys::fuzz_target;
use wire::sip::{Body, ResponseSpec};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let limits = wire::Limits::default();
    if let Ok(m) = wire::sip::Message::parse(rest, &limits) {
        let code = [100u16, 180, 200, 404, 486, 503][sel as usize % 6];
        let spec = ResponseSpec {
            code,
            reason: b"",
            to_tag: Some(b"abc"),
            headers: &[b"Retry-After: 5"],
            body: (sel & 0x80 != 0).then_some(Body {
                content_type: b"application/sdp",
                content: b"v=0\r\n",
            }),
        };
        let mut out = vec![0u8; rest.len() * 2 + 256];
        if let Ok(n) = m.write_response(&spec, &mut out) {
            if let Ok(r) = wire::sip::Message::parse(&out[..n], &limits) {
                assert_eq!(r.cseq(), m.cseq());
                assert_eq!(r.top_via().branch(), m.top_via().branch());
                assert_eq!(r.call_id(), m.call_id());
            }
        }
    }
});
