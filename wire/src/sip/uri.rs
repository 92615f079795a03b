//! Just enough URI checking for a dispatcher: a scheme, no white space or delimiters that
//! RFC 3261 forbids, and no `?headers` in a SIP Request-URI. Full URI parsing is left to the
//! processor, which owns the dialog.

/// Returns the URI scheme (`sip`, `tel`, `nobodyKnowsThisScheme`, ...) when `uri` starts with a
/// syntactically valid one; lets an element answer 416 for schemes it does not serve.
pub fn scheme(uri: &[u8]) -> Option<&[u8]> {
    // The first byte that is not a scheme character must be the first `:` (a `:` is not a
    // scheme character), so one short forward scan replaces a search plus a re-scan.
    let (first, rest) = uri.split_first()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let n = rest
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    if rest.get(n) == Some(&b':') {
        uri.get(..n + 1)
    } else {
        None
    }
}

/// True for `sip` / `sips` (case-insensitive).
pub(crate) fn is_sip_scheme(s: &[u8]) -> bool {
    s.eq_ignore_ascii_case(b"sip") || s.eq_ignore_ascii_case(b"sips")
}

/// Bytes that may never appear unescaped in a URI carried in a SIP message.
#[cfg(test)]
#[inline(always)]
fn forbidden(b: u8) -> bool {
    (b <= b' ') | (b >= 0x7f) | (b == b'<') | (b == b'>') | (b == b'"')
}

/// Class bits of [`URI_CLASS`].
const U_OK: u8 = 1;
const U_SCHEME: u8 = 2;

const fn build_uri_class() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b > b' ' && b < 0x7f && b != b'<' && b != b'>' && b != b'"' {
            t[i] |= U_OK;
        }
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.' {
            t[i] |= U_SCHEME;
        }
        i += 1;
    }
    t
}

/// Per-byte URI classes: `U_OK` for bytes allowed unescaped after the scheme (visible ASCII but
/// `<`, `>` and `"`), `U_SCHEME` for scheme characters after the first. One table load per
/// byte, AND-folded without branches, is cheaper than five compares per byte.
static URI_CLASS: [u8; 256] = build_uri_class();

/// Whether every byte of `s` is `U_OK`: eight bytes at a time, with the exact "some byte is
/// below / above / equal to" word tests (each may flag the wrong byte of a word, never the
/// wrong word), then the table for the tail.
#[inline(always)]
fn all_uri_ok(s: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    #[inline(always)]
    fn has(w: u64, b: u8) -> u64 {
        let x = w ^ LO.wrapping_mul(u64::from(b));
        x.wrapping_sub(LO) & !x
    }
    let mut chunks = s.chunks_exact(8);
    let mut bad = 0u64;
    for c in &mut chunks {
        let w = crate::scan::le64(c);
        // Below `!` (0x21), at or above DEL (0x7f), or one of `<` `>` `"`.
        bad |= w.wrapping_sub(LO.wrapping_mul(0x21)) & !w;
        bad |= w.wrapping_add(LO) | w;
        bad |= has(w, b'<') | has(w, b'>') | has(w, b'"');
    }
    bad & HI == 0
        && chunks
            .remainder()
            .iter()
            .fold(U_OK, |a, &b| a & URI_CLASS[b as usize])
            != 0
}

/// Validates a URI as found in a Request-URI or between `<` `>`.
/// `allow_headers`: whether a SIP URI may carry `?headers` (only inside name-addr).
#[inline]
pub(crate) fn check(uri: &[u8], allow_headers: bool) -> bool {
    #[cfg(test)]
    if !super::fast_paths_on() {
        return check_reference(uri, allow_headers);
    }
    let Some((&first, tail)) = uri.split_first() else {
        return false;
    };
    if !first.is_ascii_alphabetic() {
        return false;
    }
    // `sip:` (the usual scheme, as written): the scheme scan would stop at that colon.
    let n = if uri.get(..4) == Some(b"sip:") {
        2
    } else {
        let Some(n) = tail
            .iter()
            .position(|&b| URI_CLASS[b as usize] & U_SCHEME == 0)
        else {
            return false;
        };
        n
    };
    if tail.get(n) != Some(&b':') {
        return false;
    }
    let rest = tail.get(n + 1..).unwrap_or(&[]);
    if rest.is_empty() || !all_uri_ok(rest) {
        return false;
    }
    // No `?` at all (the usual case) needs no search for where the host part starts.
    if !allow_headers
        && crate::scan::find_short(rest, b'?').is_some()
        && is_sip_scheme(uri.get(..n + 1).unwrap_or(&[]))
    {
        // `?` is legal inside the user part (RFC 4475 intmeth) but starts `headers` after the
        // host part, which a Request-URI must not have (RFC 3261 §19.1.1, RFC 4475 escruri).
        let host_part = match rest.iter().rposition(|&b| b == b'@') {
            Some(at) => rest.get(at..).unwrap_or(&[]),
            None => rest,
        };
        if host_part.contains(&b'?') {
            return false;
        }
    }
    true
}

/// The previous formulation of [`check`] (scheme via [`scheme`], a five-compare predicate per
/// byte), kept as the reference the table-driven one is tested against.
#[cfg(test)]
pub(crate) fn check_reference(uri: &[u8], allow_headers: bool) -> bool {
    let Some(s) = scheme(uri) else {
        return false;
    };
    let rest = uri.get(s.len() + 1..).unwrap_or(&[]);
    if rest.is_empty() || !crate::scan::none_of(rest, forbidden) {
        return false;
    }
    if !allow_headers && is_sip_scheme(s) {
        let host_part = match memchr::memrchr(b'@', rest) {
            Some(at) => rest.get(at..).unwrap_or(&[]),
            None => rest,
        };
        if host_part.contains(&b'?') {
            return false;
        }
    }
    true
}
