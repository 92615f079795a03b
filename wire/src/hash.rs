//! The hashes every Switchyard component must compute identically: the 64-bit finalizer used
//! for nonces and rendezvous scores, and the byte-string keys of the dispatcher's
//! affinity table and `hash` policy.
//!
//! They live in one place because their outputs travel: a To-tag minted by a processor is
//! checked by every dispatcher, and the `hash` policy must place a Call-ID on the same
//! processor whichever dispatcher sees it. Every function here is pinned by fixed test
//! vectors; changing one breaks tags and placement across a mixed-version deployment.

use core::net::{IpAddr, SocketAddr};

use crate::scan::{le64, pack};

/// The splitmix64 finalizer (Stafford's "Mix13"): a bijective 64-bit mix in which every input
/// bit affects every output bit. Cheap enough for the data path, not a keyed MAC.
#[inline]
pub const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a 64 over three fields separated by a NUL byte, with a final avalanche; never 0 (the
/// affinity table's empty marker).
///
/// Byte at a time and unkeyed on purpose: it is the key the `hash` policy places a Call-ID by
/// (`stable_key(call_id, b"", b"")`), so it must be the same on every dispatcher and every
/// build. An attacker who can forge Call-IDs can also just send INVITEs; the affinity table's
/// probe window bounds what a collision flood costs.
pub fn stable_key(a: &[u8], b: &[u8], c: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [a, b"\x00", b, b"\x00", c] {
        for &byte in part {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // Final avalanche so the low bits used for the index depend on every byte.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h.max(1)
}

/// The key of an MGCP transaction (RFC 3435 §3.5.6: the command's source and transaction id
/// identify it, so a retransmission maps to the same key); [`stable_key`] over the 16-byte
/// address (IPv4 in the first four bytes), the port and the id, both big-endian.
pub fn mgcp_tx_key(src: SocketAddr, tid: u32) -> u64 {
    let mut ip = [0u8; 16];
    match src.ip() {
        IpAddr::V4(a) => {
            let [a0, a1, a2, a3] = a.octets();
            ip[0] = a0;
            ip[1] = a1;
            ip[2] = a2;
            ip[3] = a3;
        }
        IpAddr::V6(a) => ip = a.octets(),
    }
    stable_key(&ip, &src.port().to_be_bytes(), &tid.to_be_bytes())
}

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xbf58_476d_1ce4_e5b9;

/// Multiplies and folds the 128-bit product: every input bit reaches the output. Also the
/// round of the processors' keyed table hash.
#[inline(always)]
pub fn fold_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

#[inline(always)]
fn absorb(mut h: u64, part: &[u8]) -> u64 {
    // The length first, so that ("ab", "c") and ("a", "bc") differ.
    h = fold_mul(h ^ part.len() as u64, K1);
    let mut chunks = part.chunks_exact(8);
    for c in &mut chunks {
        h = fold_mul(h ^ le64(c), K0);
    }
    let r = chunks.remainder();
    if !r.is_empty() {
        h = fold_mul(h ^ tail(part, r), K0);
    }
    h
}

/// `pack(r)` for the remainder `r` of `part`: when `part` has eight bytes, the eight ending
/// it shifted down (the same value, one load instead of a byte loop).
#[inline(always)]
fn tail(part: &[u8], r: &[u8]) -> u64 {
    match part.len().checked_sub(8).and_then(|s| part.get(s..)) {
        Some(last) if !r.is_empty() => le64(last) >> (8 * (8 - r.len())),
        _ => pack(r),
    }
}

/// The affinity key of a SIP transaction (Call-ID, From-tag, top-Via branch); never 0.
///
/// Unlike [`stable_key`] this only has to be stable within one dispatcher's table, so it is
/// cheaper: one folded 64×64→128-bit multiply per eight input bytes instead of one multiply
/// per byte, then a murmur3 `fmix64` because the table indexes with the low bits.
#[inline]
pub fn tx_key(call_id: &[u8], from_tag: &[u8], branch: &[u8]) -> u64 {
    let h = absorb(absorb(absorb(K1, call_id), from_tag), branch);
    let mut z = h ^ (h >> 33);
    z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^= z >> 33;
    z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^= z >> 33;
    z.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed from the functions these replace (dispatcher route/select.rs `mix`,
    // route/affinity.rs `key`, route/txkey.rs `key`, route/mgcp.rs `tkey`): tags and placement
    // must not change across the move.
    #[test]
    fn mix_is_pinned() {
        assert_eq!(mix(0), 0);
        assert_eq!(mix(1), 0x5692_161d_100b_05e5);
        assert_eq!(mix(0x5157_c4ad), 0xed4f_a995_5d04_3e45);
        assert_eq!(mix(u64::MAX), 0xb4d0_55fc_f2cb_bd7b);
        // The rendezvous score the `hash` policy uses.
        assert_eq!(mix(42 ^ mix(0x5ca1_ab1e)), 0xe121_c461_2c32_e5b9);
    }

    /// (call_id, from_tag, branch, tx_key, stable_key)
    type Case = (&'static [u8], &'static [u8], &'static [u8], u64, u64);
    const CASES: [Case; 4] = [
        (b"", b"", b"", 0xb5f5_bc05_a5ff_fdc7, 0x9bf1_ace3_4001_83e7),
        (
            b"call-1@host",
            b"tag-1",
            b"z9hG4bK-1",
            0x644a_7f86_ed35_3ff7,
            0xf300_69c2_aba0_c6f5,
        ),
        (
            b"a84b4c76e66710-00000000@198.18.0.2",
            b"1928301774",
            b"z9hG4bK776asdhds",
            0x4b7c_294f_7062_3190,
            0x47f7_aad8_9f21_c0a2,
        ),
        (b"x", b"", b"", 0xad88_1648_6594_e540, 0x1cd9_dca2_c1d5_4566),
    ];

    #[test]
    fn keys_are_pinned() {
        for (a, b, c, tx, stable) in CASES {
            assert_eq!(tx_key(a, b, c), tx, "tx_key {a:?}");
            assert_eq!(stable_key(a, b, c), stable, "stable_key {a:?}");
        }
        let src = "198.18.0.2:2427".parse().unwrap();
        assert_eq!(mgcp_tx_key(src, 1234), 0x44aa_cf91_3920_7f46);
    }

    #[test]
    fn fields_are_separated_and_every_byte_counts() {
        let base = tx_key(b"call-1@host", b"tag-1", b"z9hG4bK-1");
        assert_ne!(base, tx_key(b"call-1@hos", b"ttag-1", b"z9hG4bK-1"));
        assert_ne!(base, tx_key(b"call-1@host", b"tag-", b"1z9hG4bK-1"));
        assert_ne!(stable_key(b"ab", b"c", b""), stable_key(b"a", b"bc", b""));
        let long = *b"a84b4c76e66710-00000000@198.18.0.2";
        let (k, s) = (tx_key(&long, b"", b""), stable_key(&long, b"", b""));
        for i in 0..long.len() {
            let mut l = long;
            l[i] ^= 1;
            assert_ne!(k, tx_key(&l, b"", b""), "byte {i}");
            assert_ne!(s, stable_key(&l, b"", b""), "byte {i}");
        }
    }

    #[test]
    fn the_tail_load_equals_the_packed_remainder() {
        let bytes: Vec<u8> = (0u8..40).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        for len in 0..bytes.len() {
            let part = &bytes[..len];
            let r = part.chunks_exact(8).remainder();
            assert_eq!(tail(part, r), pack(r), "len {len}");
        }
    }

    #[test]
    fn low_bits_spread() {
        // Sequential Call-IDs (what a load generator sends) fill the buckets evenly.
        let mut buckets = [0u32; 64];
        for i in 0..64_000 {
            let c = format!("a84b4c76e66710-{i:08}@198.18.0.2");
            buckets[(tx_key(c.as_bytes(), b"1928301774", b"z9hG4bK-x") & 63) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (800..1200).contains(&b)),
            "{buckets:?}"
        );
    }
}
