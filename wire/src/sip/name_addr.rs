//! `(name-addr / addr-spec) *(SEMI param)` values of From, To and Contact (RFC 3261 §20.10,
//! §25.1), strict where RFC 4475 demands rejection (unterminated quotes, non-token display
//! names, LWS inside `<>`, `?` in an addr-spec).

use super::params;
use super::uri;
use crate::scan::{is_lws, is_token, peek, skip_lws, skip_while, Span};

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NameAddrRaw {
    pub(crate) display: Option<Span>,
    pub(crate) uri: Span,
    pub(crate) tag: Option<Span>,
    /// Where this value (URI and parameters) ends, before trailing LWS or a list comma.
    pub(crate) end: u16,
}

/// A From/To/Contact value: the URI and the `tag` that identifies one side of a dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quotes kept), if any.
    pub display: Option<&'a [u8]>,
    /// The URI without `<>`; `*` for a wildcard Contact.
    pub uri: &'a [u8],
    /// The `tag` parameter value, if present.
    pub tag: Option<&'a [u8]>,
}

impl<'a> NameAddr<'a> {
    #[inline]
    pub(crate) fn from_raw(buf: &'a [u8], r: &NameAddrRaw) -> Self {
        NameAddr {
            display: r.display.map(|s| s.get(buf)),
            uri: r.uri.get(buf),
            tag: r.tag.map(|s| s.get(buf)),
        }
    }
}

/// Parses one value at `pos`; returns it and, for lists, where the next value starts.
pub(crate) fn parse_one(
    buf: &[u8],
    pos: usize,
    end: usize,
    list: bool,
) -> Result<(NameAddrRaw, Option<usize>), usize> {
    let mut p = skip_lws(buf, pos, end);
    let mut raw = NameAddrRaw::default();
    let angle_at = match peek(buf, p, end) {
        None => return Err(p),
        Some(b'"') => {
            let q = params::skip_quoted(buf, p, end)?;
            raw.display = Some(Span::new(p, q));
            let a = skip_lws(buf, q, end);
            if peek(buf, a, end) != Some(b'<') {
                return Err(a);
            }
            Some(a)
        }
        Some(b'<') => Some(p),
        Some(_) => {
            // *(token LWS) "<" is a display name; anything else must be an addr-spec.
            let e = skip_while(buf, p, end, |b| is_token(b) || is_lws(b));
            if peek(buf, e, end) == Some(b'<') {
                let mut de = e;
                while de > p && buf.get(de - 1).is_some_and(|&b| is_lws(b)) {
                    de -= 1;
                }
                if de > p {
                    raw.display = Some(Span::new(p, de));
                }
                Some(e)
            } else {
                None
            }
        }
    };
    if let Some(a) = angle_at {
        let close = crate::scan::find(buf, a + 1, end, b'>').ok_or(a)?;
        let u = buf.get(a + 1..close).unwrap_or(&[]);
        if !uri::check(u, true) {
            return Err(a + 1);
        }
        raw.uri = Span::new(a + 1, close);
        p = close + 1;
    } else {
        let us = p;
        let ue = skip_while(buf, p, end, |b| !(is_lws(b) || b == b';' || b == b','));
        let u = buf.get(us..ue).unwrap_or(&[]);
        // An addr-spec may not contain `?` (or `,`/`;`): those need `<>` (RFC 3261 §20.10).
        if (list && u == b"*") || (uri::check(u, true) && !u.contains(&b'?')) {
            raw.uri = Span::new(us, ue);
        } else {
            return Err(us);
        }
        p = ue;
    }
    let (pend, next) = params::parse(buf, p, end, list, |prm| {
        if prm.name.get(buf).eq_ignore_ascii_case(b"tag") {
            raw.tag = prm.value;
        }
    })?;
    raw.end = pend.max(p) as u16;
    Ok((raw, next))
}

/// Fast path of [`parse_value`] for the usual `<uri>*(;param)` value (no display name, no LWS,
/// quotes or second list element): `Some` only where [`parse_one`] accepts the whole value
/// with the same result, `None` to let it decide (errors and their offsets stay its own).
#[inline(always)]
fn parse_simple(buf: &[u8], start: usize, end: usize) -> Option<NameAddrRaw> {
    if buf.get(start) != Some(&b'<') || end > buf.len() {
        return None;
    }
    let close = crate::scan::find_in(buf, start + 1, end, b'>')?;
    if !uri::check(buf.get(start + 1..close)?, true) {
        return None;
    }
    let mut raw = NameAddrRaw {
        uri: Span::new(start + 1, close),
        ..NameAddrRaw::default()
    };
    let pend = params::parse_simple(buf, close + 1, end, |prm| {
        if prm.name.get(buf).eq_ignore_ascii_case(b"tag") {
            raw.tag = prm.value;
        }
    })?;
    raw.end = pend as u16;
    Some(raw)
}

/// Validates a whole header value (all list elements for Contact) and returns the first.
pub(crate) fn parse_value(
    buf: &[u8],
    start: usize,
    end: usize,
    list: bool,
) -> Result<NameAddrRaw, usize> {
    if let Some(raw) = parse_simple(buf, start, end).filter(|_| super::fast_paths_on()) {
        return Ok(raw);
    }
    parse_value_general(buf, start, end, list)
}

/// [`parse_value`] without its fast path: the reference the fast path is tested against.
pub(crate) fn parse_value_general(
    buf: &[u8],
    start: usize,
    end: usize,
    list: bool,
) -> Result<NameAddrRaw, usize> {
    let (first, mut next) = parse_one(buf, start, end, list)?;
    while let Some(p) = next {
        let (_, n) = parse_one(buf, p, end, list)?;
        next = n;
    }
    Ok(first)
}
