//! SIP (RFC 3261) message views.
//!
//! [`Message::parse`] scans a datagram once: start line, every header line (compact forms,
//! folding, several values per line), and validates the headers a dispatcher routes on (Via,
//! From, To, Contact, Call-ID, CSeq, Max-Forwards, Content-Length, Date). Header entries are
//! kept as byte ranges in a fixed array inside the view, so scanning never allocates; the
//! accessors then return sub-slices of the input.
//!
//! What the scanner deliberately accepts (RFC 4475 "application" class): missing To/From/
//! Call-ID/Max-Forwards ([`Message::missing_mandatory`]), repeated single-value headers
//! ([`Message::header_count`]), unknown URI schemes, `Max-Forwards: 0`. Those are the
//! processor's business; the dispatcher only needs the message to be well-formed.

mod error;
#[cfg(test)]
mod fast_paths;
mod headers;
pub mod locate;
mod name_addr;
mod params;
mod response;
mod rewrite;
pub mod salvage;
mod start_line;
pub mod uri;
mod via;

pub use error::{SipError, SipErrorKind};
pub use headers::{HeaderField, HeaderId};
pub use locate::{Locate, Located, Scope};
pub use name_addr::NameAddr;
pub use response::{reason_phrase, Body, ResponseSpec};
pub use rewrite::InsertAt;
/// The session-size header Switchyard reads by default (`X-Session-Size: <units>`).
pub const DEFAULT_SESSION_SIZE_HEADER: &[u8] = b"X-Session-Size";
pub use start_line::{Kind, Method};
pub use via::{Via, MAGIC_COOKIE};

use crate::scan::{
    is_lws, is_token, is_ws, line_at_short, none_of, parse_digits, skip_lws, skip_while, trim_lws,
    Span,
};
use crate::session_size::{self, SessionSizeConfig};
use crate::Limits;
use name_addr::NameAddrRaw;
use via::ViaRaw;

#[cfg(test)]
thread_local! {
    /// Test-only switch for the differential test: with it set, every fast path steps aside
    /// and [`Message::parse`] runs the general parsers alone (the reference answer).
    pub(crate) static GENERAL_ONLY: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Whether the scanner's fast paths may answer (always, outside this crate's tests).
#[inline(always)]
pub(crate) fn fast_paths_on() -> bool {
    #[cfg(test)]
    {
        !GENERAL_ONLY.with(|g| g.get())
    }
    #[cfg(not(test))]
    {
        true
    }
}

/// Default number of header entries a [`Message`] can hold (`Limits::max_headers` default).
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// One header line's classification and byte ranges.
///
/// `_pad` fills the byte the layout would otherwise leave undefined: with every byte defined
/// and zero, the default array of entries is one plain zero fill, which the compiler writes
/// straight into the view (a padded entry was initialised field by field into a temporary
/// and then copied, over 600 bytes per message).
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    id: HeaderId,
    _pad: u8,
    name: Span,
    value: Span,
}

/// The CSeq header: transaction sequence number and method (RFC 3261 §20.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number (< 2^31).
    pub seq: u32,
    /// Method, which for requests equals the start-line method (checked by the scanner).
    pub method: Method<'a>,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CSeqRaw {
    pub(crate) seq: u32,
    pub(crate) method: Span,
}

/// A scanned SIP message: a checked view over the datagram bytes.
///
/// `N` is the capacity of the header-entry array kept inline (no allocation); messages with
/// more header lines fail with [`SipErrorKind::TooManyHeaders`]. The view borrows the input and
/// excludes octets after the Content-Length-delimited body (RFC 4475 dblreq).
#[derive(Clone, Debug)]
pub struct Message<'a, const N: usize = DEFAULT_MAX_HEADERS> {
    buf: &'a [u8],
    kind: Kind<'a>,
    first_header: u16,
    headers_end: u16,
    body_start: u16,
    entries: [Entry; N],
    count: u16,
    call_id: Option<Span>,
    cseq: Option<CSeqRaw>,
    top_via: Option<ViaRaw>,
    from: Option<NameAddrRaw>,
    to: Option<NameAddrRaw>,
    contact: Option<NameAddrRaw>,
    max_forwards: Option<u8>,
    content_length: Option<(u32, u16)>,
    content_type: Option<Span>,
}

impl<'a> Message<'a> {
    /// Scans `buf` as one SIP message with the default header capacity.
    ///
    /// Returns a view whose accessors cannot fail, or the first rule the message breaks and
    /// where. Never panics and never allocates, whatever the input.
    pub fn parse(buf: &'a [u8], limits: &Limits) -> Result<Self, SipError> {
        Self::parse_with_capacity(buf, limits)
    }
}

fn err<T>(kind: SipErrorKind, at: usize) -> Result<T, SipError> {
    Err(SipError::new(kind, at))
}

/// One step of the header-section scanner.
#[cfg_attr(test, derive(Debug))]
pub(crate) enum Line {
    /// The blank line ending the header section; the body starts at `body_start`.
    End { body_start: usize },
    /// A header line (with its continuation lines) starting at the scanned offset: the name
    /// ends at `ne`, the LWS-trimmed value is `vs..ve`, the next line starts at `next`.
    Header {
        ne: usize,
        vs: usize,
        ve: usize,
        next: usize,
    },
}

/// [`header_line`] plus classification for a line whose name is a known header of at most
/// fifteen bytes: `Some((id, ne, vs, ve, next))` exactly when [`header_line`] frames it as
/// `Line::Header { ne, vs, ve, next }` through its fast path and the name classifies as `id`.
///
/// The colon is found a word at a time instead of scanning the name for token bytes: a name
/// that classifies as a known header folds (`| 0x20`) onto lowercase letters and `-`, so its
/// bytes are letters or `-`, or CR (the one other byte folding onto `-`), which is ruled out
/// here. So it is a token, and the token scan would have stopped at the same colon.
#[inline(always)]
pub(crate) fn known_header_line(
    buf: &[u8],
    ls: usize,
    max_line: usize,
) -> Option<(HeaderId, usize, usize, usize, usize)> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    if !fast_paths_on() {
        return None;
    }
    #[inline(always)]
    fn flags(w: u64, b: u8) -> u64 {
        let x = w ^ LO.wrapping_mul(u64::from(b));
        x.wrapping_sub(LO) & !x & HI
    }
    let w0 = crate::scan::le64(buf.get(ls..ls + 8)?);
    let c0 = flags(w0, b':');
    const F8: u64 = 0x2020_2020_2020_2020;
    // The name folded (`| 0x20`) and cut at the colon, as `classify_folded` takes it.
    let (k, cr, f0, f1) = if c0 != 0 {
        let k = (c0.trailing_zeros() / 8) as usize;
        // Flags below the first colon are exact (false ones only sit above a true match).
        let below = (1u64 << (8 * k)) - 1;
        (k, flags(w0, b'\r') & below, (w0 | F8) & below, 0)
    } else {
        let w1 = crate::scan::le64(buf.get(ls + 8..ls + 16)?);
        let c1 = flags(w1, b':');
        if c1 == 0 {
            return None;
        }
        let k1 = (c1.trailing_zeros() / 8) as usize;
        let below = (1u64 << (8 * k1)) - 1;
        let cr = flags(w0, b'\r') | (flags(w1, b'\r') & below);
        (8 + k1, cr, w0 | F8, (w1 | F8) & below)
    };
    if k == 0 || cr != 0 {
        return None;
    }
    let id = headers::classify_folded(f0, f1, k);
    if id == HeaderId::Other {
        return None;
    }
    let ne = ls + k;
    let (vs, le, nx) = plain_value(buf, ls, ne, max_line)?;
    Some((id, ne, vs, le, nx))
}

/// The value of a header line whose name ends at the colon at `ne`, when the line is the usual
/// `name ":" [SP] value` on one physical line (within `max_line`, not folded) with no LWS at
/// the value's ends: `(value start, value end, next line)`. `None`: the general framing decides.
#[inline(always)]
fn plain_value(buf: &[u8], ls: usize, ne: usize, max_line: usize) -> Option<(usize, usize, usize)> {
    let (le, nx) = line_at_short(buf, ne + 1)?;
    let mut vs = ne + 1;
    if vs < le && buf.get(vs) == Some(&b' ') {
        vs += 1;
    }
    let lead_ok = vs >= le || buf.get(vs).is_some_and(|&b| !is_lws(b));
    let trail_ok = le <= vs || buf.get(le - 1).is_some_and(|&b| !is_lws(b));
    let folded = buf.get(nx).is_some_and(|&b| is_ws(b));
    (le - ls <= max_line && !folded && lead_ok && trail_ok).then_some((vs, le, nx))
}

/// Frames the header line at `ls` (used by [`Message::parse`]): the common one-line
/// `name ":" [SP] value` here, everything else (and every error) in [`header_line_general`].
#[inline(always)]
pub(crate) fn header_line(buf: &[u8], ls: usize, max_line: usize) -> Result<Line, SipError> {
    let rest = buf.get(ls..).unwrap_or(&[]);
    let name_len = rest
        .iter()
        .position(|&b| !is_token(b))
        .unwrap_or(rest.len());
    let ne = ls + name_len;
    if !fast_paths_on() {
        return header_line_general(buf, ls, max_line);
    }
    // The blank line ending the header section, as the general framing finds it.
    if name_len == 0 {
        match (buf.get(ls), buf.get(ls + 1)) {
            (Some(b'\n'), _) => return Ok(Line::End { body_start: ls + 1 }),
            (Some(b'\r'), Some(b'\n')) => return Ok(Line::End { body_start: ls + 2 }),
            _ => {}
        }
    }
    // Fast path for the usual line, `name ":" [SP] value` on one physical line with no LWS at
    // the value's ends: the value range is known without the trimming loops. Anything else
    // falls through to the general framing below, which decides (and reports errors) alone.
    if name_len > 0 && buf.get(ne) == Some(&b':') {
        if let Some((vs, le, nx)) = plain_value(buf, ls, ne, max_line) {
            return Ok(Line::Header {
                ne,
                vs,
                ve: le,
                next: nx,
            });
        }
    }
    header_line_general(buf, ls, max_line)
}

/// [`header_line`] without its fast path (the reference it is tested against, and the only
/// place framing errors come from): frames the header line at `ls`.
///
/// Fast path: `token *WS ":"` at the line start. Neither a token byte nor WS is a line
/// terminator, so the colon lies on this physical line and the LF search can start after it;
/// the name bytes are read once. Anything else (blank line, malformed name) takes the general
/// path, which reports errors in a fixed order: Truncated, LineTooLong (first line, then
/// continuation lines), then HeaderLine.
#[inline(never)]
pub(crate) fn header_line_general(
    buf: &[u8],
    ls: usize,
    max_line: usize,
) -> Result<Line, SipError> {
    let rest = buf.get(ls..).unwrap_or(&[]);
    let name_len = rest
        .iter()
        .position(|&b| !is_token(b))
        .unwrap_or(rest.len());
    let ne = ls + name_len;
    let colon = skip_while(buf, ne, buf.len(), is_ws);
    let (le, mut nx) = if name_len > 0 && buf.get(colon) == Some(&b':') {
        match line_at_short(buf, colon + 1) {
            Some(l) => l,
            None => return err(SipErrorKind::Truncated, buf.len()),
        }
    } else {
        let Some((le, nx)) = line_at_short(buf, ls) else {
            return err(SipErrorKind::Truncated, buf.len());
        };
        if le == ls {
            return Ok(Line::End { body_start: nx });
        }
        if le - ls > max_line {
            return err(SipErrorKind::LineTooLong, ls);
        }
        let mut n2 = nx;
        while buf.get(n2).is_some_and(|&b| is_ws(b)) {
            let Some((e2, n3)) = line_at_short(buf, n2) else {
                return err(SipErrorKind::Truncated, buf.len());
            };
            if e2 - n2 > max_line {
                return err(SipErrorKind::LineTooLong, n2);
            }
            n2 = n3;
        }
        return err(SipErrorKind::HeaderLine, ls);
    };
    if le - ls > max_line {
        return err(SipErrorKind::LineTooLong, ls);
    }
    let mut vend = le;
    while buf.get(nx).is_some_and(|&b| is_ws(b)) {
        let Some((e2, n2)) = line_at_short(buf, nx) else {
            return err(SipErrorKind::Truncated, buf.len());
        };
        if e2 - nx > max_line {
            return err(SipErrorKind::LineTooLong, nx);
        }
        vend = e2;
        nx = n2;
    }
    let (vs, ve) = trim_lws(buf, colon + 1, vend);
    Ok(Line::Header {
        ne,
        vs,
        ve,
        next: nx,
    })
}

/// Skips leading CRLF keep-alives and scans the start line; returns it and where the first
/// header line starts.
#[inline(always)]
pub(crate) fn start<'a>(buf: &'a [u8], limits: &Limits) -> Result<(Kind<'a>, usize), SipError> {
    let cap = limits.message_cap();
    if buf.len() > cap {
        return err(SipErrorKind::TooLarge, cap);
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line (keep-alives).
    let mut pos = 0;
    while matches!(buf.get(pos), Some(b'\r' | b'\n')) {
        pos += 1;
    }
    if pos >= buf.len() {
        return err(SipErrorKind::Empty, pos);
    }
    let Some((sl_end, next)) = line_at_short(buf, pos) else {
        return err(SipErrorKind::Truncated, buf.len());
    };
    if sl_end - pos > limits.max_header_line {
        return err(SipErrorKind::LineTooLong, pos);
    }
    Ok((start_line::parse(buf, pos, sl_end)?, next))
}

/// Whether a Content-Type value is `application/sdp` (parameters ignored).
pub(crate) fn is_sdp_content_type(ct: &[u8]) -> bool {
    // The usual bare value answers without the split and trim below (same answer: a value
    // equal to it has no `;` and no LWS).
    if fast_paths_on() && ct.len() == 15 && ct.eq_ignore_ascii_case(b"application/sdp") {
        return true;
    }
    let mt = ct.split(|&b| b == b';').next().unwrap_or(&[]);
    let (s, e) = trim_lws(mt, 0, mt.len());
    mt.get(s..e)
        .is_some_and(|t| t.eq_ignore_ascii_case(b"application/sdp"))
}

/// Validates a Call-ID value (RFC 3261 `word`: visible ASCII, non-empty).
#[inline(always)]
pub(crate) fn check_call_id(value: &[u8], vs: usize) -> Result<(), SipError> {
    if value.is_empty() || !none_of(value, |b| b.wrapping_sub(0x21) >= 0x7f - 0x21) {
        return err(SipErrorKind::CallId, vs);
    }
    Ok(())
}

/// Validates a CSeq value `1*DIGIT LWS token` (number < 2^31).
#[inline(always)]
pub(crate) fn parse_cseq(buf: &[u8], vs: usize, ve: usize) -> Result<CSeqRaw, SipError> {
    let de = skip_while(buf, vs, ve, |b| b.is_ascii_digit());
    let seq = match parse_digits(buf.get(vs..de).unwrap_or(&[]), 10) {
        Some(n) if n < (1 << 31) => n as u32,
        _ => return err(SipErrorKind::CSeq, vs),
    };
    let ms = skip_lws(buf, de, ve);
    let me = skip_while(buf, ms, ve, is_token);
    if ms == de || me == ms || me != ve {
        return err(SipErrorKind::CSeq, ms);
    }
    Ok(CSeqRaw {
        seq,
        method: Span::new(ms, me),
    })
}

/// Validates a Content-Length value (decimal, fits in u32).
#[inline(always)]
pub(crate) fn parse_content_length(value: &[u8], vs: usize) -> Result<u32, SipError> {
    match parse_digits(value, 10) {
        Some(n) if n <= u64::from(u32::MAX) => Ok(n as u32),
        _ => err(SipErrorKind::ContentLength, vs),
    }
}

impl<'a, const N: usize> Message<'a, N> {
    /// Like [`Message::parse`], with a header array of `N` entries (e.g. a smaller view for a
    /// tighter stack, or a larger one for proxies that see long Via chains).
    pub fn parse_with_capacity(buf: &'a [u8], limits: &Limits) -> Result<Self, SipError> {
        let (kind, next) = start(buf, limits)?;
        // The view is filled in place inside the `Result` that is returned (measured ~48
        // instructions per message fewer than filling a local and wrapping it in `Ok`; the
        // final copy of the view to the caller remains: [`Message::parse_then`] has none).
        let mut out = Ok(Message::empty(buf, kind, next));
        if let Ok(msg) = &mut out {
            msg.fill(next, limits)?;
        }
        out
    }

    /// Scans `buf` like [`Message::parse_with_capacity`] and lends the view to `f` where it
    /// was built; returns what `f` returns. For a caller that handles each message in place
    /// (a UAS): the view (over 600 bytes) is never moved, so its copy out is saved.
    #[inline]
    pub fn parse_then<R>(
        buf: &'a [u8],
        limits: &Limits,
        f: impl FnOnce(&Message<'a, N>) -> R,
    ) -> Result<R, SipError> {
        let (kind, next) = start(buf, limits)?;
        let mut msg = Message::empty(buf, kind, next);
        msg.fill(next, limits)?;
        Ok(f(&msg))
    }

    /// A view of `buf` with its start line scanned and no header recorded yet.
    #[inline(always)]
    fn empty(buf: &'a [u8], kind: Kind<'a>, next: usize) -> Self {
        Message {
            buf,
            kind,
            first_header: next as u16,
            headers_end: 0,
            body_start: 0,
            entries: [Entry::default(); N],
            count: 0,
            call_id: None,
            cseq: None,
            top_via: None,
            from: None,
            to: None,
            contact: None,
            max_forwards: None,
            content_length: None,
            content_type: None,
        }
    }

    /// Scans the header section from `next` (the first header line) into `self`, then applies
    /// the whole-message checks; [`Message::parse_with_capacity`]'s body.
    #[inline(always)]
    fn fill(&mut self, mut next: usize, limits: &Limits) -> Result<(), SipError> {
        let buf = self.buf;
        let msg = self;
        let max_headers = limits.max_headers.min(N).min(u16::MAX as usize);
        let max_line = limits.max_header_line;
        loop {
            let ls = next;
            let (id, ne, vs, ve, nx) = match known_header_line(buf, ls, max_line) {
                Some(k) => k,
                None => match header_line(buf, ls, max_line)? {
                    Line::End { body_start } => {
                        msg.headers_end = ls as u16;
                        msg.body_start = body_start as u16;
                        break;
                    }
                    Line::Header { ne, vs, ve, next } => {
                        let id = HeaderId::classify_token(buf.get(ls..ne).unwrap_or(&[]));
                        (id, ne, vs, ve, next)
                    }
                },
            };
            next = nx;
            let idx = msg.count as usize;
            if idx >= max_headers {
                return err(SipErrorKind::TooManyHeaders, ls);
            }
            msg.record(id, vs, ve)?;
            if let Some(slot) = msg.entries.get_mut(idx) {
                *slot = Entry {
                    id,
                    _pad: 0,
                    name: Span::new(ls, ne),
                    value: Span::new(vs, ve),
                };
            }
            msg.count += 1;
        }
        let body_start = msg.body_start as usize;
        let end = match msg.content_length {
            Some((cl, at)) => {
                let e = body_start.saturating_add(cl as usize);
                if e > buf.len() {
                    return err(SipErrorKind::ContentLengthTooLarge, at as usize);
                }
                e
            }
            None => buf.len(),
        };
        msg.buf = buf.get(..end).unwrap_or(buf);
        let Some(cseq) = msg.cseq else {
            return err(
                SipErrorKind::MissingHeader("CSeq"),
                msg.headers_end as usize,
            );
        };
        if msg.top_via.is_none() {
            return err(SipErrorKind::MissingHeader("Via"), msg.headers_end as usize);
        }
        if let Kind::Request { method, .. } = msg.kind {
            if method.as_bytes() != cseq.method.get(buf) {
                return err(SipErrorKind::CSeqMethodMismatch, cseq.method.start());
            }
        }
        Ok(())
    }

    /// Validates and remembers the headers the accessors expose (first occurrence wins).
    fn record(&mut self, id: HeaderId, vs: usize, ve: usize) -> Result<(), SipError> {
        let buf = self.buf;
        let value = buf.get(vs..ve).unwrap_or(&[]);
        match id {
            HeaderId::Via => {
                let v = via::parse_list(buf, vs, ve).or_else(|at| err(SipErrorKind::Via, at))?;
                if self.top_via.is_none() {
                    self.top_via = Some(v);
                }
            }
            HeaderId::From | HeaderId::To | HeaderId::Contact => {
                let (name, list) = match id {
                    HeaderId::From => ("From", false),
                    HeaderId::To => ("To", false),
                    _ => ("Contact", true),
                };
                let na = name_addr::parse_value(buf, vs, ve, list)
                    .or_else(|at| err(SipErrorKind::NameAddr(name), at))?;
                let slot = match id {
                    HeaderId::From => &mut self.from,
                    HeaderId::To => &mut self.to,
                    _ => &mut self.contact,
                };
                if slot.is_none() {
                    *slot = Some(na);
                }
            }
            HeaderId::CallId => {
                check_call_id(value, vs)?;
                if self.call_id.is_none() {
                    self.call_id = Some(Span::new(vs, ve));
                }
            }
            HeaderId::CSeq => {
                let c = parse_cseq(buf, vs, ve)?;
                if self.cseq.is_none() {
                    self.cseq = Some(c);
                }
            }
            HeaderId::MaxForwards => match parse_digits(value, 10) {
                Some(n) if n <= 255 => {
                    if self.max_forwards.is_none() {
                        self.max_forwards = Some(n as u8);
                    }
                }
                _ => return err(SipErrorKind::MaxForwards, vs),
            },
            HeaderId::ContentLength => {
                let n = parse_content_length(value, vs)?;
                if self.content_length.is_none() {
                    self.content_length = Some((n, vs as u16));
                }
            }
            HeaderId::ContentType if self.content_type.is_none() => {
                self.content_type = Some(Span::new(vs, ve));
            }
            HeaderId::Date if !value.ends_with(b"GMT") => {
                return err(SipErrorKind::Date, vs);
            }
            _ => {}
        }
        Ok(())
    }

    /// Request (method, Request-URI) or response (code, reason).
    #[inline]
    pub fn kind(&self) -> Kind<'a> {
        self.kind
    }

    /// The request method, or `None` for a response; convenience for routing switches.
    #[inline]
    pub fn method(&self) -> Option<Method<'a>> {
        self.kind.method()
    }

    /// True for requests.
    #[inline]
    pub fn is_request(&self) -> bool {
        self.kind.is_request()
    }

    /// The message bytes, from the start line to the end of the body (trailing datagram
    /// octets beyond Content-Length excluded).
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The Call-ID value, or an empty slice when the header is absent (see
    /// [`Message::missing_mandatory`]); the key for affinity and dialog lookups.
    #[inline]
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id.map(|s| s.get(self.buf)).unwrap_or(&[])
    }

    /// The first CSeq header (always present: the scanner requires it for transaction
    /// matching).
    #[inline]
    pub fn cseq(&self) -> CSeq<'a> {
        let c = self.cseq.unwrap_or_default();
        CSeq {
            seq: c.seq,
            method: Method::from_bytes(c.method.get(self.buf)),
        }
    }

    /// The first via-parm of the first Via header: where to answer and the transaction
    /// branch (always present: the scanner requires a Via).
    #[inline]
    pub fn top_via(&self) -> Via<'a> {
        Via::from_raw(self.buf, &self.top_via.unwrap_or_default())
    }

    /// Number of via-parms in the whole message (all Via lines, all comma-separated values),
    /// so a proxy can detect loops or a UAS can tell it is the first hop.
    pub fn via_count(&self) -> usize {
        let mut n = 0;
        let vias = self.entries.iter().take(self.count as usize);
        for e in vias.filter(|e| e.id == HeaderId::Via) {
            let mut next = Some(e.value.start());
            while let Some(p) = next {
                n += 1;
                next = via::parse_parm(self.buf, p, e.value.end())
                    .ok()
                    .and_then(|(_, nx)| nx);
            }
        }
        n
    }

    /// The first From value (dialog's remote tag lives here).
    #[inline]
    pub fn from(&self) -> Option<NameAddr<'a>> {
        self.from.map(|r| NameAddr::from_raw(self.buf, &r))
    }

    /// The first To value; its tag, once issued by a processor, routes in-dialog requests.
    #[inline]
    pub fn to(&self) -> Option<NameAddr<'a>> {
        self.to.map(|r| NameAddr::from_raw(self.buf, &r))
    }

    /// The first Contact value (`uri` is `*` for a wildcard REGISTER).
    #[inline]
    pub fn contact(&self) -> Option<NameAddr<'a>> {
        self.contact.map(|r| NameAddr::from_raw(self.buf, &r))
    }

    /// Max-Forwards (0..=255), if present; 0 means the request must not be forwarded.
    #[inline]
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards
    }

    /// The first Content-Length value, if present (the body was cut to it).
    #[inline]
    pub fn content_length(&self) -> Option<u32> {
        self.content_length.map(|(n, _)| n)
    }

    /// The first Content-Type value as written.
    #[inline]
    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.content_type.map(|s| s.get(self.buf))
    }

    /// Whether the body is SDP (Content-Type `application/sdp`, parameters ignored).
    #[inline]
    pub fn has_sdp_body(&self) -> bool {
        self.content_type().is_some_and(is_sdp_content_type) && !self.body().is_empty()
    }

    /// The body: Content-Length octets after the blank line, or the rest of the datagram when
    /// Content-Length is absent (allowed over UDP, RFC 3261 §18.3).
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.buf.get(self.body_start as usize..).unwrap_or(&[])
    }

    /// All header lines in message order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderField<'a>> + '_ {
        let buf = self.buf;
        self.entries
            .iter()
            .take(self.count as usize)
            .map(move |e| HeaderField {
                id: e.id,
                name: e.name.get(buf),
                value: e.value.get(buf),
            })
    }

    fn headers_with<'s>(
        &'s self,
        id: HeaderId,
        name: &'s [u8],
    ) -> impl Iterator<Item = HeaderField<'a>> + 's {
        self.headers().filter(move |h| {
            if id == HeaderId::Other {
                h.id == HeaderId::Other && h.name.eq_ignore_ascii_case(name)
            } else {
                h.id == id
            }
        })
    }

    /// All values of one header, in order; `name` may be a full or compact form in any case.
    pub fn headers_named<'s>(
        &'s self,
        name: &'s [u8],
    ) -> impl Iterator<Item = HeaderField<'a>> + 's {
        self.headers_with(HeaderId::classify(name), name)
    }

    /// The first value of a header by name (full or compact, any case): generic lookup for
    /// headers without a dedicated accessor.
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers_named(name).next().map(|h| h.value)
    }

    /// How many header lines carry this name: detects repeated single-value headers (RFC 4475
    /// multi01, mcl01).
    pub fn header_count(&self, name: &[u8]) -> usize {
        self.headers_named(name).count()
    }

    /// Whether a Route header is present (a pre-loaded route set to honour).
    pub fn has_route(&self) -> bool {
        self.headers_with(HeaderId::Route, b"").next().is_some()
    }

    /// Whether a Record-Route header is present (a proxy wants to stay in the dialog).
    pub fn has_record_route(&self) -> bool {
        self.headers_with(HeaderId::RecordRoute, b"")
            .next()
            .is_some()
    }

    /// The first mandatory header (RFC 3261 §8.1.1) that is missing, so an element can answer
    /// `400 Missing <name>`; `None` when all are there (RFC 4475 insuf).
    #[inline]
    pub fn missing_mandatory(&self) -> Option<&'static str> {
        if self.to.is_none() {
            Some("To")
        } else if self.from.is_none() {
            Some("From")
        } else if self.call_id.is_none() {
            Some("Call-ID")
        } else if self.is_request() && self.max_forwards.is_none() {
            Some("Max-Forwards")
        } else {
            None
        }
    }

    /// The Request-URI scheme, so an element can answer 416 for schemes it does not serve
    /// (RFC 4475 unkscm, novelsc); `None` for responses.
    #[inline]
    pub fn request_uri_scheme(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Request { uri, .. } => uri::scheme(uri),
            Kind::Response { .. } => None,
        }
    }

    /// Session size in units for size-based processor selection; see [`crate::session_size`]
    /// for the rule and the SDP formula.
    pub fn session_size(&self, cfg: &SessionSizeConfig) -> u32 {
        let sdp = if self.has_sdp_body() {
            Some(self.body())
        } else {
            None
        };
        session_size::resolve(self.header(&cfg.sip_header), sdp, cfg)
    }

    pub(crate) fn top_via_raw(&self) -> Option<&ViaRaw> {
        self.top_via.as_ref()
    }

    pub(crate) fn to_raw(&self) -> Option<&NameAddrRaw> {
        self.to.as_ref()
    }

    pub(crate) fn first_header_offset(&self) -> usize {
        self.first_header as usize
    }

    pub(crate) fn headers_end_offset(&self) -> usize {
        self.headers_end as usize
    }
}
