#![no_main]
//! Via received/rport rewrite: the output of a scanned message must scan again and carry the
//! values written.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&port_hi, rest)) = data.split_first() else {
        return;
    };
    let limits = wire::Limits::default();
    if let Ok(m) = wire::sip::Message::parse(rest, &limits) {
        let mut out = vec![0u8; rest.len() + 64];
        let rport = (port_hi & 1 == 1).then_some(u16::from(port_hi) * 97);
        if let Ok(n) = m.write_with_received(b"192.0.2.1", rport, &mut out) {
            let r = match wire::sip::Message::parse(&out[..n], &limits) {
                Ok(r) => r,
                // Growing the message can only cross the configured limits.
                Err(e) => {
                    use wire::sip::SipErrorKind::{LineTooLong, TooLarge};
                    assert!(matches!(e.kind, TooLarge | LineTooLong), "{e}");
                    return;
                }
            };
            assert_eq!(r.top_via().received(), Some(&b"192.0.2.1"[..]));
            if rport.is_some() {
                assert_eq!(r.top_via().rport(), Some(rport));
            }
            assert_eq!(r.call_id(), m.call_id());
        }
        let _ = m.write_with_received(b"192.0.2.1", rport, &mut out[..rest.len() / 2]);
    }
});
