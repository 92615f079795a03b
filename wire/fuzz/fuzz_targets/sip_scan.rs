#![no_main]
//! Any bytes: the SIP scanner returns a view or an error, and every accessor works on a view.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = wire::sip::Message::parse(data, &wire::Limits::default()) {
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
        );
        let _ = (
            m.missing_mandatory(),
            m.header(b"X-Session-Size"),
            m.header_count(b"v"),
        );
        let _ = m.session_size(&wire::SessionSizeConfig::default());
        assert!(m.as_bytes().len() <= data.len());
    }
});
