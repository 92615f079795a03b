//! Processor identity carried in identifiers a processor issues (SIP To-tag, MGCP connection
//! id), so any dispatcher can route in-dialog traffic without shared state.
//!
//! Format: 28 lowercase hex digits, `IIII NNNNNNNNNNNNNNNN CCCCCCCC` (id, nonce, check). Hex is
//! both a valid SIP `token` and a valid MGCP connection id (RFC 3435: hex, at most 32 chars).
//! The 32-bit check is a keyed mix of id and nonce; [`decode`] rejects a tag whose check does
//! not match *and* any id `>= max_processors`, so a forged or corrupted tag can at worst name
//! an existing processor (which then answers 481), never index out of a table. With the
//! unkeyed functions the check only catches corruption and foreign tags; deployments that
//! care about forgery use [`encode_keyed`] / [`decode_keyed`] with a secret key shared by the
//! dispatchers and processors.

use crate::hash::mix;
use crate::out::{Out, WriteError};

/// Length of an encoded tag in bytes.
pub const TAG_LEN: usize = 28;

fn check(key: u64, id: u16, nonce: u64) -> u32 {
    let a = mix(key ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(id));
    let b = mix(a ^ nonce);
    (mix(b ^ key.rotate_left(17)) >> 32) as u32
}

/// Encodes `processor_id` and a per-dialog `nonce` (make it unique per dialog, e.g. a counter
/// mixed with time) into `out`; returns [`TAG_LEN`]. Unkeyed: see the module docs.
pub fn encode(processor_id: u16, nonce: u64, out: &mut [u8]) -> Result<usize, WriteError> {
    encode_keyed(0, processor_id, nonce, out)
}

/// Like [`encode`], with a secret `key` in the check so tags cannot be minted by outsiders.
pub fn encode_keyed(
    key: u64,
    processor_id: u16,
    nonce: u64,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let mut o = Out::new(out);
    o.put_hex(u64::from(processor_id), 4)?;
    o.put_hex(nonce, 16)?;
    o.put_hex(u64::from(check(key, processor_id, nonce)), 8)?;
    Ok(o.len())
}

fn hex_val(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some((acc << 4) | u64::from(d))
    })
}

/// Recovers the processor id from a tag made by [`encode`]; `None` when the tag is not ours,
/// is corrupted, or names an id `>= max_processors`. Hex digits are accepted in either case
/// (MGCP connection ids are case-insensitive).
pub fn decode(tag: &[u8], max_processors: u16) -> Option<u16> {
    decode_keyed(0, tag, max_processors)
}

/// Like [`decode`] for tags made by [`encode_keyed`] with the same `key`.
pub fn decode_keyed(key: u64, tag: &[u8], max_processors: u16) -> Option<u16> {
    if tag.len() != TAG_LEN {
        return None;
    }
    let id = u16::try_from(hex_val(tag.get(..4)?)?).ok()?;
    let nonce = hex_val(tag.get(4..20)?)?;
    let chk = hex_val(tag.get(20..28)?)?;
    if chk != u64::from(check(key, id, nonce)) || id >= max_processors {
        return None;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tags already issued must keep decoding: vectors from the encoder before it moved onto
    /// the shared [`Out::put_hex`] and [`crate::hash::mix`].
    #[test]
    fn encoding_is_pinned() {
        let mut b = [0u8; TAG_LEN];
        encode_keyed(0x1234_5678_9abc_def0, 12, 0xdead_beef, &mut b).unwrap();
        assert_eq!(&b, b"000c00000000deadbeef52fa4dc9");
        assert_eq!(decode_keyed(0x1234_5678_9abc_def0, &b, 13), Some(12));
        encode(3, 42, &mut b).unwrap();
        assert_eq!(&b, b"0003000000000000002a16a20de2");
    }
}
