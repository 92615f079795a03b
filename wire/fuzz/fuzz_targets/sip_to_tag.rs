#![no_main]
//! To-tag append: output scans and carries the tag (or the call fails with a typed error).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = wire::Limits::default();
    if let Ok(m) = wire::sip::Message::parse(data, &limits) {
        let mut tag = [0u8; 32];
        let key = wire::tag::TagKey::from_bytes(*b"fuzz sip to-tag!");
        let tl = wire::tag::encode(&key, 7, data.len() as u64, &mut tag).expect("tag fits");
        let mut out = vec![0u8; data.len() + 64];
        if let Ok(n) = m.write_with_to_tag(&tag[..tl], &mut out) {
            let r = match wire::sip::Message::parse(&out[..n], &limits) {
                Ok(r) => r,
                // Growing the message can only cross the configured limits.
                Err(e) => {
                    use wire::sip::SipErrorKind::{LineTooLong, TooLarge};
                    assert!(matches!(e.kind, TooLarge | LineTooLong), "{e}");
                    return;
                }
            };
            let t = r.to().and_then(|t| t.tag).expect("tag present");
            assert_eq!(wire::tag::decode(&wire::tag::TagKeys::single(key), t, 8), Ok(7));
        }
    }
});
