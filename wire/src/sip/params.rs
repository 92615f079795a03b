//! `*( SEMI generic-param )` as shared by Via, name-addr headers and Contact (RFC 3261 §25.1).

use crate::scan::{is_lws, is_token, is_value_byte, peek, skip_lws, skip_while, Span};

/// One parsed `;name[=value]` parameter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Param {
    /// From the `;` to the end of the value (what a rewrite replaces).
    pub(crate) whole: Span,
    pub(crate) name: Span,
    pub(crate) value: Option<Span>,
}

/// Skips a quoted string starting at the `"` at `pos`; returns the offset after the closing
/// quote, or `Err(pos)` when it is unterminated.
pub(crate) fn skip_quoted(buf: &[u8], pos: usize, end: usize) -> Result<usize, usize> {
    let mut i = pos + 1;
    loop {
        match peek(buf, i, end) {
            None => return Err(pos),
            Some(b'\\') => i += 2,
            Some(b'"') => return Ok(i + 1),
            Some(_) => i += 1,
        }
    }
}

/// Parses parameters from `pos` until the end of the value or a `,` (when `list`).
/// Returns the offset where parameters end (before trailing LWS) and the offset to resume
/// at for the next list element (after the comma), if any.
pub(crate) fn parse(
    buf: &[u8],
    mut pos: usize,
    end: usize,
    list: bool,
    mut on_param: impl FnMut(Param),
) -> Result<(usize, Option<usize>), usize> {
    let mut last_end = pos;
    loop {
        pos = skip_lws(buf, pos, end);
        match peek(buf, pos, end) {
            None => return Ok((last_end, None)),
            Some(b',') if list => return Ok((last_end, Some(pos + 1))),
            Some(b';') => {
                let semi = pos;
                pos = skip_lws(buf, pos + 1, end);
                let ns = pos;
                pos = skip_while(buf, pos, end, is_token);
                if pos == ns {
                    return Err(pos);
                }
                let name = Span::new(ns, pos);
                let after_name = pos;
                pos = skip_lws(buf, pos, end);
                let mut value = None;
                if peek(buf, pos, end) == Some(b'=') {
                    pos = skip_lws(buf, pos + 1, end);
                    let vs = pos;
                    if peek(buf, pos, end) == Some(b'"') {
                        pos = skip_quoted(buf, pos, end)?;
                    } else {
                        pos = skip_while(buf, pos, end, is_value_byte);
                    }
                    if pos == vs {
                        return Err(pos);
                    }
                    value = Some(Span::new(vs, pos));
                    last_end = pos;
                } else {
                    last_end = after_name;
                    pos = after_name;
                }
                on_param(Param {
                    whole: Span::new(semi, last_end),
                    name,
                    value,
                });
                // A parameter must be followed by LWS, `;`, `,` or the end.
                if let Some(b) = peek(buf, pos, end) {
                    if !(is_lws(b) || b == b';' || b == b',') {
                        return Err(pos);
                    }
                }
            }
            Some(_) => return Err(pos),
        }
    }
}

/// Fast path of [`parse`] for the shape nearly every message has: `*(";" token ["=" 1*value-byte])`
/// running exactly to `end`, with no LWS, quoted values or list commas.
///
/// Returns `Some(end)` after making the same `on_param` calls [`parse`] would make (which then
/// returns `Ok((end, None))`), or `None` for anything else, in which case the caller discards
/// what `on_param` saw and runs [`parse`]: the general parser stays the one authority on errors
/// and error offsets, and this one only has to agree with it where it answers. Skipping the
/// LWS checks around every separator is what makes it cheaper.
#[inline(always)]
pub(crate) fn parse_simple(
    buf: &[u8],
    mut pos: usize,
    end: usize,
    mut on_param: impl FnMut(Param),
) -> Option<usize> {
    if pos > end || end > buf.len() {
        return None;
    }
    while pos < end {
        if buf.get(pos) != Some(&b';') {
            return None;
        }
        let semi = pos;
        let ns = pos + 1;
        // `;tag=` and `;branch=` as written: the token run would end at that `=`.
        let ne = if pos + 5 <= end && buf.get(pos..pos + 5) == Some(b";tag=") {
            pos + 4
        } else if pos + 8 <= end && buf.get(pos..pos + 8) == Some(b";branch=") {
            pos + 7
        } else {
            skip_while(buf, ns, end, is_token)
        };
        if ne == ns {
            return None;
        }
        let (value, last_end) = if buf.get(ne) == Some(&b'=') && ne < end {
            let vs = ne + 1;
            let ve = skip_while(buf, vs, end, is_value_byte);
            if ve == vs {
                return None;
            }
            (Some(Span::new(vs, ve)), ve)
        } else {
            (None, ne)
        };
        // Only `;` or the end may follow (LWS, `,`, a quote: the general parser decides).
        if last_end < end && buf.get(last_end) != Some(&b';') {
            return None;
        }
        on_param(Param {
            whole: Span::new(semi, last_end),
            name: Span::new(ns, ne),
            value,
        });
        pos = last_end;
    }
    Some(end)
}
