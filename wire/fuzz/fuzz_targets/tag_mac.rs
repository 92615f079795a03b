#![no_main]
//! Tag decoding: any bytes decode without panicking, and whatever decodes under the key is
//! exactly what the encoder mints for that id and nonce (so nothing else is accepted).
use libfuzzer_sys::fuzz_target;
use wire::tag::{decode, encode, TagError, TagKey, TagKeys, TAG_LEN};

const CURRENT: TagKey = TagKey::from_bytes(*b"fuzz current key");
const PREVIOUS: TagKey = TagKey::from_bytes(*b"fuzz previous ky");

fuzz_target!(|data: &[u8]| {
    let keys = TagKeys {
        current: CURRENT,
        previous: Some(PREVIOUS),
    };
    let r = decode(&keys, data, u16::MAX);
    assert_eq!(r.is_err_and(|e| e == TagError::Format), !wire::tag::is_processor_tag(data));
    if let Ok(id) = r {
        let nonce = data
            .get(4..16)
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| u64::from_str_radix(n, 16).ok())
            .expect("an accepted tag has a hex nonce");
        let mut a = [0u8; TAG_LEN];
        let mut b = [0u8; TAG_LEN];
        encode(&CURRENT, id, nonce, &mut a).expect("fits");
        encode(&PREVIOUS, id, nonce, &mut b).expect("fits");
        assert!(data.eq_ignore_ascii_case(&a) || data.eq_ignore_ascii_case(&b));
    }
    // A tag minted from the input round-trips; one flipped digit does not.
    let nonce = data.iter().fold(0u64, |h, &x| wire::hash::mix(h ^ u64::from(x)));
    let id = (nonce >> 48) as u16 & 0x3ff;
    let mut t = [0u8; TAG_LEN];
    encode(&CURRENT, id, nonce, &mut t).expect("fits");
    assert_eq!(decode(&keys, &t, 1024), Ok(id));
    let i = data.first().map_or(0, |&x| usize::from(x) % TAG_LEN);
    t[i] = if t[i] == b'0' { b'1' } else { b'0' };
    assert_eq!(decode(&keys, &t, 1024), Err(TagError::BadMac));
});
