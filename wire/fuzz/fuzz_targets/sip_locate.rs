#![no_main]
//! Any bytes: the dispatcher's locate scan returns a view or an error, every accessor works,
//! and whenever the full scanner also accepts the input both agree on the routing fields.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = wire::Limits::default();
    let Ok(l) = wire::sip::Message::locate(data, &limits, b"X-Session-Size") else {
        return;
    };
    let _ = (l.method(), l.status(), l.is_complete(), l.content_type(), l.body());
    let _ = l.session_size(&wire::SessionSizeConfig::default());
    if let Ok(m) = wire::sip::Message::parse(data, &limits) {
        assert_eq!(l.call_id(), m.call_id());
        assert_eq!(l.from_tag(), m.from().and_then(|f| f.tag));
        assert_eq!(l.to_tag(), m.to().and_then(|t| t.tag));
        assert_eq!(l.branch(), m.top_via().branch());
    }
});
