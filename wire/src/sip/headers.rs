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
    use super::eq_exact;

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
