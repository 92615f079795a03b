#![no_main]
//! Header insertion at both positions: output scans and exposes the new header.
use libfuzzer_sys::fuzz_target;
use wire::sip::InsertAt;

fuzz_target!(|data: &[u8]| {
    let limits = wire::Limits::default();
    if let Ok(m) = wire::sip::Message::parse(data, &limits) {
        let mut out = vec![0u8; data.len() + 64];
        for at in [InsertAt::AfterStartLine, InsertAt::BeforeBlankLine] {
            if let Ok(n) = m.write_with_header(b"X-Processor-Port: 5071", at, &mut out) {
                let r = wire::sip::Message::parse(&out[..n], &limits);
                // A message with exactly max_headers lines may legitimately overflow.
                if let Ok(r) = r {
                    assert_eq!(r.header(b"X-Processor-Port"), Some(&b"5071"[..]));
                    assert_eq!(r.body(), m.body());
                }
            }
        }
    }
});
