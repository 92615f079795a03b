#![no_main]
//! Any bytes: the dispatcher's one-scan relay rewrite (`Located::write_relayed`: Via
//! `received`/`rport` and claim 2's port header) returns a length or an error, and whenever the
//! full scanner also accepts the input it writes what `Message::write_relayed` writes; the
//! 400 salvage for inputs neither accepts never panics either.
use libfuzzer_sys::fuzz_target;
use wire::sip::{InsertAt, Message, Scope};

const MARK: &[u8] = b"X-Switchyard-Port: 5071";

fuzz_target!(|data: &[u8]| {
    let limits = wire::Limits::default();
    let locate = wire::sip::Locate::new(&limits, b"X-Session-Size");
    let mut a = [0u8; 4096];
    let mut b = [0u8; 4096];
    let Ok(l) = locate.scan(data, Scope::Complete) else {
        let _ = wire::sip::salvage::bad_request(data, "fuzz", b"sy-0", &mut a);
        return;
    };
    let la = l.write_relayed(b"198.18.0.2", Some(5060), Some(MARK), &mut a);
    if let Ok(m) = Message::parse(data, &limits) {
        let lb = m.write_relayed(
            b"198.18.0.2",
            Some(5060),
            Some((MARK, InsertAt::AfterStartLine)),
            &mut b,
        );
        match (la, lb) {
            (Ok(x), Ok(y)) => assert_eq!(&a[..x], &b[..y]),
            (Err(e1), Err(e2)) => assert_eq!(e1, e2),
            other => panic!("relay rewrites disagree: {other:?}"),
        }
    }
});
