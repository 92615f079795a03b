//! Processor identity carried in identifiers a processor issues (SIP To-tag, MGCP connection
//! id), so any dispatcher can route in-dialog traffic without shared state, and an
//! authenticator over it so that nobody without the deployment's secret can choose where
//! in-dialog traffic goes.
//!
//! Format (v2): exactly [`TAG_LEN`] = 32 hex digits,
//! `IIII NNNNNNNNNNNN MMMMMMMMMMMMMMMM`: the processor id (16 bits), a per-dialog nonce
//! ([`NONCE_BITS`] = 48 bits) and a 64-bit MAC. Hex is both a valid SIP `token` and a valid
//! MGCP connection id (RFC 3435: hex, at most 32 characters), which is why the whole tag is
//! 32 digits and the nonce gave up 16 bits to the MAC. Digits are written lowercase and
//! accepted in either case (MGCP connection ids are case-insensitive).
//!
//! The MAC is SipHash-2-4 (a keyed PRF designed for short inputs) under a 128-bit [`TagKey`],
//! over the 8 bytes `id (big-endian, 2) ‖ nonce (big-endian, 6)`. Without the key, a forger's
//! best strategy is guessing: each attempt succeeds with probability 2⁻⁶⁴ (2⁻⁶³ while a
//! previous key is also accepted), so a million forged requests a second would need about
//! 300,000 years on average to land one. The MAC is checked before the id is compared with
//! the pool size, so a forged or corrupted tag is refused as [`TagError::BadMac`] and can
//! never index a table.
//!
//! Unkeyed mode ([`TagKey::UNKEYED`], the all-zero key) is for the lab: the MAC then only
//! catches corruption and foreign tags, since anyone can compute it.
//!
//! Tags of the earlier 28-digit format (v1, keyed mix check) are not in this format and are
//! refused as [`TagError::Format`]: dialogs minted before an upgrade end there.

use siphasher::sip::SipHasher24;

use crate::out::{Out, WriteError};

/// Length of an encoded tag in bytes.
pub const TAG_LEN: usize = 32;

/// Bits of the nonce carried in a tag; [`encode`] keeps the low [`NONCE_BITS`] of its nonce.
pub const NONCE_BITS: u32 = 48;

const NONCE_MASK: u64 = (1 << NONCE_BITS) - 1;

/// The 128-bit SipHash key tags are authenticated under. The deployment derives it from a
/// secret shared by dispatchers and processors (`processor::deploy::tag_key`); `Debug` does
/// not print it, so a logged configuration never leaks it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TagKey([u8; 16]);

impl TagKey {
    /// The public all-zero key: tags are checked for integrity only, not authenticated.
    pub const UNKEYED: TagKey = TagKey([0; 16]);

    /// A key from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Whether this is [`TagKey::UNKEYED`] (binaries warn about it at start).
    pub fn is_unkeyed(&self) -> bool {
        self.0 == [0; 16]
    }

    /// The MAC of (`id`, `nonce`); `nonce` already reduced to [`NONCE_BITS`].
    fn mac(&self, id: u16, nonce: u64) -> u64 {
        let n = nonce.to_be_bytes();
        let [i0, i1] = id.to_be_bytes();
        let msg = [i0, i1, n[2], n[3], n[4], n[5], n[6], n[7]];
        SipHasher24::new_with_key(&self.0).hash(&msg)
    }
}

impl Default for TagKey {
    fn default() -> Self {
        Self::UNKEYED
    }
}

impl core::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_unkeyed() {
            f.write_str("TagKey(unkeyed)")
        } else {
            f.write_str("TagKey(<secret>)")
        }
    }
}

/// The keys a verifier accepts: the one tags are minted with now and, during a key rotation,
/// the one they were minted with before (so dialogs that started under it can still end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagKeys {
    /// The key new tags are minted with; always accepted.
    pub current: TagKey,
    /// The key being retired; accepted until the operator removes it.
    pub previous: Option<TagKey>,
}

impl TagKeys {
    /// Unkeyed, no previous key.
    pub const UNKEYED: TagKeys = TagKeys {
        current: TagKey::UNKEYED,
        previous: None,
    };

    /// Only `current`.
    pub const fn single(current: TagKey) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// Whether new tags are minted unauthenticated (see [`TagKey::is_unkeyed`]).
    pub fn is_unkeyed(&self) -> bool {
        self.current.is_unkeyed()
    }
}

/// Why a tag names no processor. The router counts [`TagError::BadMac`] apart from the others:
/// it is the one that means "someone sent us a tag shaped like ours that we did not issue".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// Not [`TAG_LEN`] hex digits: not a processor tag at all (a foreign UA's, the
    /// dispatcher's own `sy-` tag, or a tag of an earlier format).
    #[error("not a processor tag")]
    Format,
    /// A processor tag whose MAC matches none of the accepted keys: forged or corrupted.
    #[error("processor tag with a bad MAC")]
    BadMac,
    /// An authentic tag naming an id outside the pool (the pool shrank, or the key is shared
    /// with another pool).
    #[error("processor tag names id {0}, outside the pool")]
    IdOutOfRange(u16),
}

/// Encodes `processor_id` and a per-dialog `nonce` into `out` under `key`; returns
/// [`TAG_LEN`]. Only the low [`NONCE_BITS`] of `nonce` are kept, so make those unique per
/// dialog (e.g. a counter from a random start) — the processor indexes its dialogs by tag.
pub fn encode(
    key: &TagKey,
    processor_id: u16,
    nonce: u64,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let nonce = nonce & NONCE_MASK;
    let mut o = Out::new(out);
    o.put_hex(u64::from(processor_id), 4)?;
    o.put_hex(nonce, 12)?;
    o.put_hex(key.mac(processor_id, nonce), 16)?;
    Ok(o.len())
}

fn hex_val(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some((acc << 4) | u64::from(d))
    })
}

/// The fields of a tag in the processor-tag format, unauthenticated: (id, nonce, MAC).
fn fields(tag: &[u8]) -> Option<(u16, u64, u64)> {
    if tag.len() != TAG_LEN {
        return None;
    }
    let id = u16::try_from(hex_val(tag.get(..4)?)?).ok()?;
    let nonce = hex_val(tag.get(4..16)?)?;
    let mac = hex_val(tag.get(16..32)?)?;
    Some((id, nonce, mac))
}

/// Whether `tag` has the processor-tag format (whatever its MAC).
pub fn is_processor_tag(tag: &[u8]) -> bool {
    fields(tag).is_some()
}

/// Recovers the processor id from a tag made by [`encode`] under one of `keys`. Refuses, in
/// this order: a tag not in the format ([`TagError::Format`]), one whose MAC matches neither
/// key ([`TagError::BadMac`]), and an authentic one naming an id `>= max_processors`.
pub fn decode(keys: &TagKeys, tag: &[u8], max_processors: u16) -> Result<u16, TagError> {
    let (id, nonce, mac) = fields(tag).ok_or(TagError::Format)?;
    // Whole-word comparisons: a single u64 compare leaks no per-byte timing to exploit, and
    // the MAC is recomputed per key (two SipHash rounds over 8 bytes at most).
    let ok = keys.current.mac(id, nonce) == mac
        || keys.previous.is_some_and(|p| p.mac(id, nonce) == mac);
    if !ok {
        return Err(TagError::BadMac);
    }
    if id >= max_processors {
        return Err(TagError::IdOutOfRange(id));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: TagKey = TagKey::from_bytes(*b"0123456789abcdef");
    const K2: TagKey = TagKey::from_bytes(*b"fedcba9876543210");

    fn tag(key: &TagKey, id: u16, nonce: u64) -> [u8; TAG_LEN] {
        let mut b = [0u8; TAG_LEN];
        assert_eq!(encode(key, id, nonce, &mut b), Ok(TAG_LEN));
        b
    }

    /// Tags in flight must decode on every dispatcher and across versions: the encoding is
    /// pinned (SipHash-2-4 reference vector included, so a change of MAC is caught).
    #[test]
    fn encoding_is_pinned() {
        // SipHash-2-4 paper, Appendix A: key 00..0f, message 00..0e -> a129ca6149be45e5.
        let k: [u8; 16] = core::array::from_fn(|i| i as u8);
        let m: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            SipHasher24::new_with_key(&k).hash(&m),
            0xa129_ca61_49be_45e5
        );
        let t = tag(&K1, 12, 0xdead_beef);
        assert_eq!(&t, b"000c0000deadbeef2df6306329c64581");
        assert_eq!(decode(&TagKeys::single(K1), &t, 13), Ok(12));
        assert_eq!(&tag(&K1, 12, 0xdead_beef), &t, "deterministic");
        let u = tag(&TagKey::UNKEYED, 3, 42);
        assert_eq!(&u, b"000300000000002a5efa0d123887f416");
        assert!(u
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn round_trip_under_a_key_and_case_insensitive() {
        let keys = TagKeys::single(K1);
        for (id, nonce) in [
            (0, 0),
            (1, 1),
            (7, u64::MAX),
            (u16::MAX - 1, 0x1234_5678_9abc),
        ] {
            let t = tag(&K1, id, nonce);
            assert_eq!(decode(&keys, &t, u16::MAX), Ok(id));
            assert_eq!(decode(&keys, &t.to_ascii_uppercase(), u16::MAX), Ok(id));
        }
    }

    #[test]
    fn nonce_keeps_its_low_48_bits() {
        assert_eq!(tag(&K1, 1, 0xffff_0000_0000_0001), tag(&K1, 1, 1));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let keys = TagKeys::single(K1);
        let t = tag(&K1, 5, 0x0bad_cafe_f00d);
        for i in 0..TAG_LEN {
            for bit in 0..4u32 {
                let mut f = t;
                // Flip one bit of the hex digit's value and re-encode it as a hex digit, so
                // the result is still in the format: only the MAC can catch it.
                let v = (f[i] as char).to_digit(16).unwrap() ^ (1 << bit);
                f[i] = char::from_digit(v, 16).unwrap() as u8;
                assert_eq!(
                    decode(&keys, &f, u16::MAX),
                    Err(TagError::BadMac),
                    "{i}/{bit}"
                );
            }
        }
    }

    #[test]
    fn wrong_key_refused_previous_key_accepted() {
        let t = tag(&K1, 5, 99);
        assert_eq!(decode(&TagKeys::single(K2), &t, 8), Err(TagError::BadMac));
        assert_eq!(decode(&TagKeys::UNKEYED, &t, 8), Err(TagError::BadMac));
        let rotating = TagKeys {
            current: K2,
            previous: Some(K1),
        };
        assert_eq!(
            decode(&rotating, &t, 8),
            Ok(5),
            "minted under the previous key"
        );
        assert_eq!(
            decode(&rotating, &tag(&K2, 6, 99), 8),
            Ok(6),
            "under the current one"
        );
        assert_eq!(
            decode(&TagKeys::single(K1), &tag(&K2, 6, 99), 8),
            Err(TagError::BadMac),
            "a tag of the new key on a verifier not yet rotated"
        );
        let unkeyed = tag(&TagKey::UNKEYED, 2, 1);
        assert_eq!(decode(&TagKeys::UNKEYED, &unkeyed, 8), Ok(2));
        assert_eq!(
            decode(&TagKeys::single(K1), &unkeyed, 8),
            Err(TagError::BadMac)
        );
    }

    #[test]
    fn format_edge_cases() {
        let keys = TagKeys::single(K1);
        let t = tag(&K1, 9, 77);
        assert_eq!(decode(&keys, &t, 9), Err(TagError::IdOutOfRange(9)));
        assert_eq!(decode(&keys, &t, 10), Ok(9));
        assert_eq!(decode(&keys, &t, 0), Err(TagError::IdOutOfRange(9)));
        for bad in [
            &b""[..],
            b"sy-0123456789abcdef",
            &t[..TAG_LEN - 1],
            b"000c00000000deadbeef52fa4dc9", // v1 format
            b"000c0000deadbeefXXXXXXXXXXXXXXXX",
            b"+00c0000deadbeef0123456789abcdef",
            b" 00c0000deadbeef0123456789abcdef",
        ] {
            assert_eq!(
                decode(&keys, bad, u16::MAX),
                Err(TagError::Format),
                "{bad:?}"
            );
            assert!(!is_processor_tag(bad));
        }
        let mut long = [b'0'; TAG_LEN + 1];
        long[..TAG_LEN].copy_from_slice(&t);
        assert_eq!(decode(&keys, &long, u16::MAX), Err(TagError::Format));
        assert!(is_processor_tag(&t));
        assert!(encode(&K1, 1, 1, &mut [0u8; TAG_LEN - 1]).is_err());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let keys = TagKeys {
            current: K1,
            previous: Some(K2),
        };
        let mut state = 0x1234_5678u64;
        for len in 0..40 {
            for _ in 0..200 {
                let mut b = [0u8; 40];
                for x in b.iter_mut().take(len) {
                    state = crate::hash::mix(state.wrapping_add(1));
                    // Mostly hex digits, so the MAC path is exercised too.
                    *x = if state & 7 == 0 {
                        state as u8 >> 3
                    } else {
                        b"0123456789abcdefABCDEF"[(state >> 8) as usize % 22]
                    };
                }
                let _ = decode(&keys, &b[..len], (state >> 16) as u16);
            }
        }
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let s = format!("{:?}", TagKeys::single(K1));
        assert!(!s.contains("48") && s.contains("secret"), "{s}");
        assert_eq!(format!("{:?}", TagKey::UNKEYED), "TagKey(unkeyed)");
    }
}
