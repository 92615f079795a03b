//! Header-name classification: full and compact forms (RFC 3261 §7.3.3 and later RFCs) map to
//! one id, so lookups compare a byte instead of re-comparing names case-insensitively.

use crate::scan::is_token;

/// Identity of a header the scanner knows by name.
///
/// Known headers are classified once while scanning; a lookup by name then matches compact and
/// full forms alike (`i` finds `Call-ID`). Everything else is [`HeaderId::Other`] and is
/// looked up by case-insensitive name comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub enum HeaderId {
    #[default]
    Other,
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    Route,
    RecordRoute,
    Date,
    Supported,
    Subject,
    ContentEncoding,
    Event,
    ReferTo,
    AllowEvents,
    SessionExpires,
    ReferredBy,
    Identity,
    AcceptContact,
    RejectContact,
    RequestDisposition,
}

impl HeaderId {
    /// Classifies a header name, accepting any case and the compact forms
    /// `i v f t m l c k s e o r u x b y a j d`.
    pub fn classify(name: &[u8]) -> HeaderId {
        // Every known name is made of token characters, so a name holding anything else
        // cannot match one case-insensitively; the fast path below relies on that.
        if name.iter().all(|&b| is_token(b)) {
            Self::classify_token(name)
        } else {
            HeaderId::Other
        }
    }

    /// [`HeaderId::classify`] for a name already known to be a non-empty token (the
    /// scanner's case). Dispatches on length and folded first byte, then compares the name
    /// folded with `| 0x20` word by word: for token bytes that fold is exact against a
    /// lowercase letters-and-`-` name (the only non-letter byte folding onto `-` is CR).
    #[inline]
    pub(crate) fn classify_token(name: &[u8]) -> HeaderId {
        use HeaderId::*;
        let first = match name.first() {
            Some(&c) => c | 0x20,
            None => return Other,
        };
        let cand: (&[u8], HeaderId) = match (name.len(), first) {
            (1, c) => {
                return match c {
                    b'i' => CallId,
                    b'v' => Via,
                    b'f' => From,
                    b't' => To,
                    b'm' => Contact,
                    b'l' => ContentLength,
                    b'c' => ContentType,
                    b'k' => Supported,
                    b's' => Subject,
                    b'e' => ContentEncoding,
                    b'o' => Event,
                    b'r' => ReferTo,
                    b'u' => AllowEvents,
                    b'x' => SessionExpires,
                    b'b' => ReferredBy,
                    b'y' => Identity,
                    b'a' => AcceptContact,
                    b'j' => RejectContact,
                    b'd' => RequestDisposition,
                    _ => Other,
                }
            }
            (2, b't') => (b"to", To),
            (3, b'v') => (b"via", Via),
            (4, b'f') => (b"from", From),
            (4, b'c') => (b"cseq", CSeq),
            (4, b'd') => (b"date", Date),
            (5, b'r') => (b"route", Route),
            (5, b'e') => (b"event", Event),
            (7, b'c') => {
                // call-id / contact: the second byte decides.
                if name.get(1).is_some_and(|&b| b | 0x20 == b'a') {
                    (b"call-id", CallId)
                } else {
                    (b"contact", Contact)
                }
            }
            (7, b's') => (b"subject", Subject),
            (8, b'r') => (b"refer-to", ReferTo),
            (8, b'i') => (b"identity", Identity),
            (9, b's') => (b"supported", Supported),
            (11, b'r') => (b"referred-by", ReferredBy),
            (12, b'm') => (b"max-forwards", MaxForwards),
            (12, b'c') => (b"content-type", ContentType),
            (12, b'r') => (b"record-route", RecordRoute),
            (12, b'a') => (b"allow-events", AllowEvents),
            (14, b'c') => (b"content-length", ContentLength),
            (14, b'a') => (b"accept-contact", AcceptContact),
            (14, b'r') => (b"reject-contact", RejectContact),
            (15, b's') => (b"session-expires", SessionExpires),
            (16, b'c') => (b"content-encoding", ContentEncoding),
            (19, b'r') => (b"request-disposition", RequestDisposition),
            _ => return Other,
        };
        if eq_folded(name, cand.0) {
            cand.1
        } else {
            Other
        }
    }

    /// The full header name, used when builders emit a header the scanner classified.
    pub fn canonical_name(self) -> &'static str {
        use HeaderId::*;
        match self {
            Other => "",
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            Contact => "Contact",
            MaxForwards => "Max-Forwards",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            Route => "Route",
            RecordRoute => "Record-Route",
            Date => "Date",
            Supported => "Supported",
            Subject => "Subject",
            ContentEncoding => "Content-Encoding",
            Event => "Event",
            ReferTo => "Refer-To",
            AllowEvents => "Allow-Events",
            SessionExpires => "Session-Expires",
            ReferredBy => "Referred-By",
            Identity => "Identity",
            AcceptContact => "Accept-Contact",
            RejectContact => "Reject-Contact",
            RequestDisposition => "Request-Disposition",
        }
    }
}

/// One slot of [`FOLDED`]: a known name of at most fifteen bytes, folded (`| 0x20`) and split
/// into its first eight bytes and the rest (little-endian, zero-padded), with its length.
#[derive(Clone, Copy)]
struct Folded {
    w0: u64,
    w1: u64,
    len: u8,
    id: HeaderId,
}

/// The multiplier of [`folded_slot`]: with it the 41 names of [`FOLDED_NAMES`] land in 41
/// distinct slots of 128 (the table build fails to compile otherwise).
const FOLD_MUL: u64 = 0xb9d1_79e0_6c0f_d4f5;

/// Slot of a folded name from its first (at most eight) bytes `w0` and its length.
#[inline(always)]
const fn folded_slot(w0: u64, len: usize) -> usize {
    ((w0 ^ len as u64).wrapping_mul(FOLD_MUL) >> 57) as usize
}

/// Every name [`HeaderId::classify_token`] knows of at most fifteen bytes, lowercase.
const FOLDED_NAMES: [(&[u8], HeaderId); 41] = {
    use HeaderId::*;
    [
        (b"i", CallId),
        (b"v", Via),
        (b"f", From),
        (b"t", To),
        (b"m", Contact),
        (b"l", ContentLength),
        (b"c", ContentType),
        (b"k", Supported),
        (b"s", Subject),
        (b"e", ContentEncoding),
        (b"o", Event),
        (b"r", ReferTo),
        (b"u", AllowEvents),
        (b"x", SessionExpires),
        (b"b", ReferredBy),
        (b"y", Identity),
        (b"a", AcceptContact),
        (b"j", RejectContact),
        (b"d", RequestDisposition),
        (b"to", To),
        (b"via", Via),
        (b"from", From),
        (b"cseq", CSeq),
        (b"date", Date),
        (b"route", Route),
        (b"event", Event),
        (b"call-id", CallId),
        (b"contact", Contact),
        (b"subject", Subject),
        (b"refer-to", ReferTo),
        (b"identity", Identity),
        (b"supported", Supported),
        (b"referred-by", ReferredBy),
        (b"max-forwards", MaxForwards),
        (b"content-type", ContentType),
        (b"record-route", RecordRoute),
        (b"allow-events", AllowEvents),
        (b"content-length", ContentLength),
        (b"accept-contact", AcceptContact),
        (b"reject-contact", RejectContact),
        (b"session-expires", SessionExpires),
    ]
};

const fn build_folded() -> [Folded; 128] {
    let empty = Folded {
        w0: 0,
        w1: 0,
        len: 0,
        id: HeaderId::Other,
    };
    let mut t = [empty; 128];
    let mut i = 0;
    while i < FOLDED_NAMES.len() {
        let (name, id) = FOLDED_NAMES[i];
        let (mut w0, mut w1) = (0u64, 0u64);
        let mut j = 0;
        while j < name.len() {
            if j < 8 {
                w0 |= (name[j] as u64) << (8 * j);
            } else {
                w1 |= (name[j] as u64) << (8 * (j - 8));
            }
            j += 1;
        }
        let h = folded_slot(w0, name.len());
        if t[h].len != 0 {
            panic!("FOLD_MUL puts two header names in one slot");
        }
        t[h] = Folded {
            w0,
            w1,
            len: name.len() as u8,
            id,
        };
        i += 1;
    }
    t
}

static FOLDED: [Folded; 128] = build_folded();

/// [`HeaderId::classify_token`] for a name of `len` bytes (1..=15) given folded: `w0` is its
/// first `min(len, 8)` bytes `| 0x20` each, `w1` the bytes after the eighth likewise (both
/// little-endian, zero above the name). Exact for any name without CR (the one non-letter
/// byte that folds onto a letter or `-`): one table slot, one compare, instead of the
/// length/first-byte dispatch and word compares.
#[inline(always)]
pub(crate) fn classify_folded(w0: u64, w1: u64, len: usize) -> HeaderId {
    let e = FOLDED.get(folded_slot(w0, len) & 127);
    match e {
        Some(e) if e.w0 == w0 && e.w1 == w1 && e.len as usize == len => e.id,
        _ => HeaderId::Other,
    }
}

/// One header line as found in the message: raw name and value, both slices of the input.
///
/// The value is trimmed of surrounding white space but otherwise raw: folded continuation
/// lines keep their CRLF + indentation, because un-folding would need a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// What the name classified as (compact and full forms give the same id).
    pub id: HeaderId,
    /// The name as written (`v`, `VIA`, ...).
    pub name: &'a [u8],
    /// The trimmed value.
    pub value: &'a [u8],
}

/// `name | 0x20` (bytewise) equals `lower` (same length, 2..=19 bytes, lowercase letters and
/// `-`), compared as overlapping little-endian words instead of byte by byte.
#[inline(always)]
fn eq_folded(name: &[u8], lower: &[u8]) -> bool {
    #[inline(always)]
    fn w8(s: &[u8], at: usize) -> u64 {
        match s.get(at..at + 8) {
            Some(&[a, b, c, d, e, f, g, h]) => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => 0,
        }
    }
    #[inline(always)]
    fn w4(s: &[u8], at: usize) -> u32 {
        match s.get(at..at + 4) {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            _ => 0,
        }
    }
    #[inline(always)]
    fn w2(s: &[u8], at: usize) -> u16 {
        match s.get(at..at + 2) {
            Some(&[a, b]) => u16::from_le_bytes([a, b]),
            _ => 0,
        }
    }
    const F8: u64 = 0x2020_2020_2020_2020;
    const F4: u32 = 0x2020_2020;
    const F2: u16 = 0x2020;
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    match n {
        0 | 1 => name.eq_ignore_ascii_case(lower),
        2..=3 => (w2(name, 0) | F2) == w2(lower, 0) && (w2(name, n - 2) | F2) == w2(lower, n - 2),
        4..=7 => (w4(name, 0) | F4) == w4(lower, 0) && (w4(name, n - 4) | F4) == w4(lower, n - 4),
        8..=16 => (w8(name, 0) | F8) == w8(lower, 0) && (w8(name, n - 8) | F8) == w8(lower, n - 8),
        _ => {
            (w8(name, 0) | F8) == w8(lower, 0)
                && (w8(name, 8) | F8) == w8(lower, 8)
                && (w8(name, n - 8) | F8) == w8(lower, n - 8)
        }
    }
}

/// `a == b` for header names: lengths first, then two overlapping words for up to sixteen
/// bytes (no `memcmp` call for a name this short), else the slice comparison.
#[inline(always)]
pub(crate) fn eq_exact(a: &[u8], b: &[u8]) -> bool {
    #[inline(always)]
    fn w(s: &[u8], at: usize, n: usize) -> u64 {
        match s.get(at..at + n) {
            Some(&[x, y]) => u64::from(u16::from_le_bytes([x, y])),
            Some(&[x, y, z, t]) => u64::from(u32::from_le_bytes([x, y, z, t])),
            Some(&[c0, c1, c2, c3, c4, c5, c6, c7]) => {
                u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7])
            }
            _ => 0,
        }
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let k = match n {
        0 | 1 => return a == b,
        2..=3 => 2,
        4..=7 => 4,
        8..=16 => 8,
        _ => return a == b,
    };
    w(a, 0, k) == w(b, 0, k) && w(a, n - k, k) == w(b, n - k, k)
}

#[cfg(test)]
mod tests {
    use super::{classify_folded, eq_exact, HeaderId};

    /// What `known_header_line` passes: the name folded and split at eight bytes.
    fn fold(name: &[u8]) -> (u64, u64) {
        let (mut w0, mut w1) = (0u64, 0u64);
        for (j, &b) in name.iter().enumerate() {
            let f = u64::from(b | 0x20);
            if j < 8 {
                w0 |= f << (8 * j);
            } else {
                w1 |= f << (8 * (j - 8));
            }
        }
        (w0, w1)
    }

    #[test]
    fn classify_folded_is_classify_token() {
        let mut names: Vec<Vec<u8>> = super::FOLDED_NAMES
            .iter()
            .map(|(n, _)| n.to_vec())
            .collect();
        names.extend(
            [
                &b"Content-Encoding"[..],
                b"Max-Forward",
                b"X-Session-Size",
                b"Allow",
                b"User-Agent",
                b"Call-Ie",
                b"Contacs",
            ]
            .iter()
            .map(|n| n.to_vec()),
        );
        let mut cases = Vec::new();
        for n in &names {
            cases.push(n.clone());
            cases.push(n.to_ascii_uppercase());
            for i in 0..n.len() {
                for b in 0..=255u8 {
                    if b == b'\r' || b == b':' {
                        continue;
                    }
                    let mut c = n.clone();
                    c[i] = b;
                    cases.push(c);
                }
            }
        }
        for c in cases.iter().filter(|c| (1..=15).contains(&c.len())) {
            let (w0, w1) = fold(c);
            let want = HeaderId::classify_token(c);
            assert_eq!(classify_folded(w0, w1, c.len()), want, "{c:?}");
        }
        assert_eq!(classify_folded(fold(b"via").0, 0, 3), HeaderId::Via);
    }

    #[test]
    fn eq_exact_is_slice_equality() {
        let words: &[&[u8]] = &[
            b"",
            b"V",
            b"To",
            b"Via",
            b"VIA",
            b"From",
            b"CSeq",
            b"Call-ID",
            b"Call-Id",
            b"Record-Route",
            b"Record-Routf",
            b"content-length-xx",
            b"Content-Length-XX",
            b"x-a",
            b"x-b",
            b"abcdefgh",
            b"abcdefgi",
            b"1bcdefgh",
        ];
        for a in words {
            for b in words {
                assert_eq!(eq_exact(a, b), a == b, "{a:?} {b:?}");
            }
            // Every single-byte change at every position is seen.
            for i in 0..a.len() {
                let mut c = a.to_vec();
                c[i] ^= 1;
                assert!(!eq_exact(a, &c), "{a:?} at {i}");
            }
        }
    }
}
