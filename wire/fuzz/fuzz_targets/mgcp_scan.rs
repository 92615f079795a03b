#![no_main]
//! Any datagram: split into piggybacked messages and scan each.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for part in wire::mgcp::split_piggybacked(data) {
        if let Ok(m) = wire::mgcp::Message::parse(part, &wire::Limits::default()) {
            let _ = (
                m.kind(),
                m.tid(),
                m.sdp(),
                m.param(b'I'),
                m.param_named(b"X-Size"),
            );
            let _ = m.params().count();
            let _ = m.session_size(&wire::SessionSizeConfig::default());
        }
    }
});
