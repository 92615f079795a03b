//! Byte-level helpers shared by the SIP, MGCP and SDP scanners. Everything here works on
//! absolute offsets into one buffer and uses `get`, so no helper can panic.

/// A byte range of the scanned buffer, stored as `u16` to keep views small (messages are
/// capped at 65535 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u16,
    pub(crate) end: u16,
}

impl Span {
    /// Callers guarantee `start <= end <= 65535` (buffers are length-checked first).
    #[inline]
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u16,
            end: end as u16,
        }
    }

    #[inline]
    pub(crate) fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    pub(crate) fn start(self) -> usize {
        self.start as usize
    }

    pub(crate) fn end(self) -> usize {
        self.end as usize
    }
}

/// Byte classes, looked up from one table so the per-byte tests are a load and a mask.
const C_TOKEN: u8 = 1;
const C_LWS: u8 = 2;
const C_VALUE: u8 = 4;
const C_HOST: u8 = 8;

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            t[i] |= C_TOKEN | C_VALUE;
        }
        if matches!(b, b'[' | b']' | b':') {
            t[i] |= C_VALUE;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            t[i] |= C_HOST;
        }
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            t[i] |= C_LWS;
        }
        i += 1;
    }
    t
}

static CLASSES: [u8; 256] = build_classes();

/// RFC 3261 `token` characters.
#[inline(always)]
pub(crate) fn is_token(b: u8) -> bool {
    CLASSES[b as usize] & C_TOKEN != 0
}

/// `token / "[" / "]" / ":"`: an unquoted generic-param value byte (RFC 3261 gen-value,
/// plus the IPv6 reference characters).
#[inline(always)]
pub(crate) fn is_value_byte(b: u8) -> bool {
    CLASSES[b as usize] & C_VALUE != 0
}

/// `alphanum / "-" / "." / "_"`: a hostname or IPv4 byte.
#[inline(always)]
pub(crate) fn is_host_byte(b: u8) -> bool {
    CLASSES[b as usize] & C_HOST != 0
}

/// SP or HT.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Linear white space inside a header value: folding has already been validated by the line
/// scanner, so any CR or LF found inside a value range is part of a fold.
#[inline(always)]
pub(crate) fn is_lws(b: u8) -> bool {
    CLASSES[b as usize] & C_LWS != 0
}

#[inline]
pub(crate) fn skip_lws(buf: &[u8], pos: usize, end: usize) -> usize {
    skip_while(buf, pos, end, is_lws)
}

/// First offset in `pos..end` (clamped to `buf`) whose byte fails `f`; `pos` when the range
/// is empty or inverted. Iterates a sub-slice, so the loop has no per-byte bounds checks.
#[inline(always)]
pub(crate) fn skip_while(buf: &[u8], pos: usize, end: usize, f: impl Fn(u8) -> bool) -> usize {
    match buf.get(pos..end.min(buf.len())) {
        Some(s) => pos + s.iter().position(|&b| !f(b)).unwrap_or(s.len()),
        None => pos,
    }
}

/// Trims LWS on both sides of `start..end`.
#[inline]
pub(crate) fn trim_lws(buf: &[u8], start: usize, end: usize) -> (usize, usize) {
    let s = skip_lws(buf, start, end);
    let e = match buf.get(s..end) {
        Some(v) => s + v.iter().rposition(|&b| !is_lws(b)).map_or(0, |i| i + 1),
        None => end,
    };
    (s, e)
}

/// True when no byte of `s` satisfies `f`. Folds without early exit over 16-byte chunks so
/// LLVM can turn the predicate into vector compares (use only with arithmetic predicates).
#[inline(always)]
pub(crate) fn none_of(s: &[u8], f: impl Fn(u8) -> bool + Copy) -> bool {
    let mut chunks = s.chunks_exact(16);
    for c in &mut chunks {
        if c.iter().fold(false, |a, &b| a | f(b)) {
            return false;
        }
    }
    !chunks.remainder().iter().fold(false, |a, &b| a | f(b))
}

#[inline]
pub(crate) fn peek(buf: &[u8], pos: usize, end: usize) -> Option<u8> {
    if pos < end {
        buf.get(pos).copied()
    } else {
        None
    }
}

/// Parses 1..=`max_digits` ASCII digits as the whole of `s`.
#[inline]
pub(crate) fn parse_digits(s: &[u8], max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits {
        return None;
    }
    let mut v: u64 = 0;
    if s.len() <= 19 {
        // Nineteen digits stay below 10^19 < 2^64: no overflow checks needed (every
        // transaction id, port, length and CSeq number takes this loop).
        for &b in s {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + u64::from(d);
        }
        return Some(v);
    }
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// `"00" "01" .. "99"`: two digits per table load halve the divisions of a digit loop.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Decimal formatting without allocation; returns the used tail of `tmp`. Two digits per
/// step: the numbers written on the data path (ports, counters, lengths, CSeq) are 1-10
/// digits, and the loop and its divisions were most of what writing them cost.
#[inline]
pub(crate) fn fmt_u64(mut n: u64, tmp: &mut [u8; 20]) -> &[u8] {
    let mut i = tmp.len();
    while n >= 100 && i >= 2 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        if let (Some(dst), Some(src)) = (tmp.get_mut(i..i + 2), PAIRS.get(d..d + 2)) {
            dst.copy_from_slice(src);
        }
    }
    if n >= 10 && i >= 2 {
        let d = n as usize * 2;
        i -= 2;
        if let (Some(dst), Some(src)) = (tmp.get_mut(i..i + 2), PAIRS.get(d..d + 2)) {
            dst.copy_from_slice(src);
        }
    } else if i >= 1 {
        i -= 1;
        if let Some(slot) = tmp.get_mut(i) {
            *slot = b'0' + n as u8;
        }
    }
    tmp.get(i..).unwrap_or(&[])
}

/// Finds the end of the physical line starting at `pos`: returns (end of content excluding a
/// trailing CR, offset after the LF). `None` when there is no LF before the end of `buf`.
/// Kept as the model [`line_at_short`] is tested against; the parsers use that one.
#[cfg(test)]
pub(crate) fn line_at(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let rest = buf.get(pos..)?;
    let lf = memchr::memchr(b'\n', rest)? + pos;
    let end = if lf > pos && buf.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

/// Position of `needle` in `buf[start..end]`, as an absolute offset.
#[inline]
pub(crate) fn find(buf: &[u8], start: usize, end: usize, needle: u8) -> Option<usize> {
    let s = buf.get(start..end)?;
    memchr::memchr(needle, s).map(|i| i + start)
}

/// Up to eight bytes, little-endian, zero-padded (the tail of a word-at-a-time loop).
#[inline(always)]
pub(crate) fn pack(s: &[u8]) -> u64 {
    s.iter()
        .take(8)
        .rev()
        .fold(0u64, |a, &b| (a << 8) | u64::from(b))
}

/// `c` (eight bytes) as a little-endian word.
#[inline(always)]
pub(crate) fn le64(c: &[u8]) -> u64 {
    match c {
        &[a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => pack(c),
    }
}

/// Position of the first `needle` in `s`, eight bytes at a time: for the short ranges header
/// scanning searches (a line, a URI), a plain word loop costs less than a call into a vector
/// search set up for long haystacks. The zero-byte test (`(x - 0x01..) & !x & 0x80..`) never
/// misses a match and only flags false ones above a true one, so the lowest flag is exact.
#[inline(always)]
pub(crate) fn find_short(s: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO.wrapping_mul(u64::from(needle));
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let x = le64(c) ^ pat;
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(at + (t.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| at + i)
}

/// Offset of the first space or tab in `s` (`s.len()` when none), eight bytes a word: the
/// fields of an MGCP first line end at one, and a byte loop over them cost more than the
/// rest of the line's parse. The tail shorter than a word is zero-padded, and zero is
/// neither byte. Exact for the same reason as [`find_short`]: each test flags its lowest
/// match exactly, so the lowest flag of either is the first separator.
#[inline]
pub(crate) fn find_ws(s: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const SP: u64 = LO * b' ' as u64;
    const TAB: u64 = LO * b'\t' as u64;
    let flags = |w: u64| {
        let a = w ^ SP;
        let b = w ^ TAB;
        ((a.wrapping_sub(LO) & !a) | (b.wrapping_sub(LO) & !b)) & HI
    };
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let t = flags(le64(c));
        if t != 0 {
            return at + (t.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let rest = chunks.remainder();
    let t = flags(pack(rest));
    if t != 0 {
        (at + (t.trailing_zeros() / 8) as usize).min(s.len())
    } else {
        s.len()
    }
}

/// Finds the end of the physical line starting at `pos` with [`find_short`]: returns (end of
/// content excluding a trailing CR, offset after the LF); `None` when there is no LF before
/// the end of `buf`. Header lines are short, so the word loop beats a vector search call.
#[inline(always)]
pub(crate) fn line_at_short(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let rest = buf.get(pos..)?;
    let lf = find_short(rest, b'\n')? + pos;
    let end = if lf > pos && buf.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

/// [`find`] with [`find_short`]; the same answers.
#[inline(always)]
pub(crate) fn find_in(buf: &[u8], start: usize, end: usize, needle: u8) -> Option<usize> {
    let s = buf.get(start..end)?;
    find_short(s, needle).map(|i| i + start)
}

/// Whether `s` holds a CR or an LF, eight bytes at a time (exact: the zero-byte test never
/// misses a match, and any flag at all means some byte matched).
#[inline]
pub(crate) fn has_cr_or_lf(s: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const CR: u64 = LO * b'\r' as u64;
    const LF: u64 = LO * b'\n' as u64;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let w = le64(c);
        let (a, b) = (w ^ CR, w ^ LF);
        if (a.wrapping_sub(LO) & !a | b.wrapping_sub(LO) & !b) & HI != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b == b'\r' || b == b'\n')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![Just(b' '), Just(b'\t'), Just(0u8), Just(b'a'), any::<u8>()],
            0..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// The word loops equal the byte loops they replace, at every length and alignment.
        /// The unchecked loop for up to 19 digits equals `str::parse`, overflow included.
        #[test]
        fn digits_equal_str_parse(s in "[0-9]{0,22}|[0-9]{0,5}[a/: ][0-9]{0,3}", max in 0usize..24) {
            let want = (!s.is_empty() && s.len() <= max)
                .then(|| s.parse::<u64>().ok())
                .flatten();
            prop_assert_eq!(super::parse_digits(s.as_bytes(), max), want);
        }

        #[test]
        fn word_searches_equal_byte_loops(s in bytes(), needle in prop_oneof![Just(b'\n'), Just(b'@'), any::<u8>()]) {
            let ws = s.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(s.len());
            prop_assert_eq!(super::find_ws(&s), ws);
            prop_assert_eq!(super::find_short(&s, needle), s.iter().position(|&b| b == needle));
        }

    }
}
