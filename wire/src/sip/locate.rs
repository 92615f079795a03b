//! [`Locate`] / [`Message::locate`]: the dispatcher's locate-only scan. It finds the handful of
//! fields a routing decision reads and validates only what it needs to find them; everything
//! else is left to the processor, which runs [`Message::parse`] on the same bytes and answers
//! 400 to what it cannot accept.
//!
//! # What it reads
//!
//! Request or response (the method, or the status code), the first Call-ID value, the `tag`
//! of the first From and first To header, the `branch` of the first via-parm of the first Via
//! header, the CSeq method (checked against the request method), and, in a
//! [`Scope::Complete`] scan, the first session-size header, the first Content-Type and the
//! Content-Length-delimited body (for [`Located::session_size`]).
//!
//! # What it checks
//!
//! - the message size limit ([`Limits::max_message_size`]);
//! - the start line: leading CRLF keep-alives skipped, an LF-terminated first line within
//!   [`Limits::max_header_line`]; a response is `SIP/2.0 SP 3DIGIT` (100..=699) followed by
//!   SP or the end of the line; a request is `method SP ... SP SIP/2.0` with a non-empty method
//!   (`SIP/` and `SIP/2.0` case-insensitively, as [`Message::parse`]);
//! - the framing of every header line it scans: LF-terminated (bare LF or CRLF), folded
//!   continuation lines joined, every physical line within [`Limits::max_header_line`], at
//!   most [`Limits::max_headers`] header fields;
//! - for the header lines it reads (Via, From, To, Call-ID, CSeq, and in a complete scan
//!   Content-Type, Content-Length and the session-size header; full or compact names, any
//!   case): optional white space and a colon after the name;
//! - the first From and first To value: a quoted display name must be terminated and followed
//!   by `<`, and a `<` must have its `>`;
//! - the CSeq method is present and equals the request method
//!   ([`SipErrorKind::CSeqMethodMismatch`]);
//! - Via and CSeq are present ([`SipErrorKind::MissingHeader`]);
//! - in a [`Scope::Complete`] scan: the blank line ending the header section, the first
//!   Content-Length value (decimal, fits `u32`) and that it fits the datagram.
//!
//! # What it does NOT validate
//!
//! A message [`Message::parse`] rejects may be located successfully, and then carries the
//! fields located as described above. Not validated: the Request-URI (grammar, scheme, the
//! single SPs around it), the method's token syntax, the status line's reason phrase; every
//! other header line (neither its name syntax nor its colon: a line that is not one of the
//! names above is only framed); the Via sent-protocol, sent-by, port and every parameter
//! other than the walk to `branch` (and any later via-parm or Via header); From/To URIs, display-name syntax
//! and parameter syntax (only the walk to `tag`), later From/To headers; the Call-ID charset
//! (it may even be empty); the CSeq number; Max-Forwards, Contact, Date and all other headers;
//! later Call-ID / CSeq / Content-Length headers. A [`Scope::Routing`] scan (and a
//! [`Scope::CompleteForInvite`] scan of anything but an INVITE) stops at the header line that
//! completes Via, From, To, Call-ID and CSeq, so nothing after it is checked at all: the rest
//! of the header section may be truncated, and Content-Length is neither read nor checked.
//!
//! # Agreement
//!
//! `locate` accepts every message [`Message::parse`] accepts, in every scope, and then every
//! field here equals the one [`Message::parse`] exposes (tested on RFC 4475, its truncations,
//! and generated and mutated messages).
//! Like every scanner in this crate it is total and allocation-free: any bytes give a value or
//! a typed error, never a panic and never an out-of-bounds access.

use super::params::skip_quoted;
use super::{err, HeaderId, Message, Method, SipError, SipErrorKind};
use crate::scan::{is_lws, is_token, le64, pack, parse_digits, peek, skip_lws, skip_while, Span};
use crate::session_size::SessionSizeConfig;
use crate::Limits;

/// How much of the header section a locate scan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Up to the blank line: also the session-size header, Content-Type and the body.
    Complete,
    /// Stop at the header line that completes Via, From, To, Call-ID and CSeq (the whole
    /// section when one of them is missing); no session size.
    Routing,
    /// [`Scope::Complete`] for INVITE requests, [`Scope::Routing`] for everything else: what a
    /// dispatcher that sizes only new dialogs needs.
    CompleteForInvite,
}

/// A prepared locate scanner: the limits and the session-size header name, checked once.
#[derive(Clone, Debug)]
pub struct Locate {
    limits: Limits,
    session: Vec<u8>,
    session_id: HeaderId,
}

impl Locate {
    /// A scanner enforcing `limits` that records the first header named `session_header`
    /// (case-insensitively; compact forms too when it names a header with one).
    pub fn new(limits: &Limits, session_header: &[u8]) -> Self {
        Self {
            limits: *limits,
            session: session_header.to_vec(),
            session_id: HeaderId::classify(session_header),
        }
    }

    /// Locates the routing fields of `buf`; see the [module docs](self) for what is and is
    /// not validated.
    pub fn scan<'a>(&self, buf: &'a [u8], scope: Scope) -> Result<Located<'a>, SipError> {
        scan(buf, &self.limits, &self.session, self.session_id, scope)
    }
}

impl<'a> Message<'a> {
    /// A [`Scope::Complete`] locate scan recording the first header named `session_header`;
    /// see [`Locate`] for a prepared scanner and the [module docs](super::locate) for what is
    /// and is not validated.
    pub fn locate(
        buf: &'a [u8],
        limits: &Limits,
        session_header: &[u8],
    ) -> Result<Located<'a>, SipError> {
        scan(
            buf,
            limits,
            session_header,
            HeaderId::classify(session_header),
            Scope::Complete,
        )
    }
}

/// What a locate scan found. Every accessor returns a sub-slice of the input.
#[derive(Clone, Copy, Debug)]
pub struct Located<'a> {
    buf: &'a [u8],
    method: Option<Method<'a>>,
    status: u16,
    call_id: Option<Span>,
    from: Option<Option<Span>>,
    to: Option<Option<Span>>,
    branch: Option<Span>,
    cseq_method: Span,
    session_size: Option<Span>,
    content_type: Option<Span>,
    body: Option<Span>,
    /// The value of the first Via header (for the relay rewrite).
    pub(crate) top_via: Span,
    /// Offset of the first header line (after the start line).
    pub(crate) first_header: usize,
}

impl<'a> Located<'a> {
    /// The message bytes the scan covered (up to the end of the Content-Length body in a
    /// complete scan, else the whole input).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<Method<'a>> {
        self.method
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        self.method.is_some()
    }

    /// The status code of a response (100..=699), or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        self.method.is_none().then_some(self.status)
    }

    /// The first Call-ID value (LWS-trimmed), or an empty slice when absent.
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id.map(|s| s.get(self.buf)).unwrap_or(&[])
    }

    /// Whether a From header was found.
    pub fn has_from(&self) -> bool {
        self.from.is_some()
    }

    /// The `tag` of the first From value (the last `tag` parameter, as [`Message::parse`]).
    pub fn from_tag(&self) -> Option<&'a [u8]> {
        self.from.flatten().map(|s| s.get(self.buf))
    }

    /// Whether a To header was found.
    pub fn has_to(&self) -> bool {
        self.to.is_some()
    }

    /// The `tag` of the first To value.
    pub fn to_tag(&self) -> Option<&'a [u8]> {
        self.to.flatten().map(|s| s.get(self.buf))
    }

    /// The `branch` of the first via-parm of the first Via header.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch.map(|s| s.get(self.buf))
    }

    /// The method of the first CSeq header (for requests, equal to [`Located::method`]).
    pub fn cseq_method(&self) -> Method<'a> {
        Method::from_bytes(self.cseq_method.get(self.buf))
    }

    /// Whether the whole header section was scanned (a [`Scope::Complete`] scan); only then
    /// are the session-size header, Content-Type and body known.
    pub fn is_complete(&self) -> bool {
        self.body.is_some()
    }

    /// The value of the first session-size header (complete scans only).
    pub fn session_size_header(&self) -> Option<&'a [u8]> {
        self.session_size.map(|s| s.get(self.buf))
    }

    /// The first Content-Type value as written (complete scans only).
    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.content_type.map(|s| s.get(self.buf))
    }

    /// The Content-Length-delimited body (the rest of the datagram without Content-Length),
    /// or `None` when the scan stopped before the blank line.
    pub fn body(&self) -> Option<&'a [u8]> {
        self.body.map(|s| s.get(self.buf))
    }

    /// Session size exactly as [`Message::session_size`] computes it (`cfg.sip_header` must be
    /// the name the scan recorded), or `None` when the scan was not complete.
    pub fn session_size(&self, cfg: &SessionSizeConfig) -> Option<u32> {
        let body = self.body()?;
        let sdp = self
            .content_type()
            .filter(|ct| is_sdp(ct) && !body.is_empty())
            .map(|_| body);
        Some(
            self.session_size_header()
                .and_then(crate::session_size::from_value)
                .or_else(|| sdp.and_then(|b| sdp_units(b, cfg)))
                .unwrap_or(1),
        )
    }
}

/// [`crate::session_size::from_sdp`] in one pass over the body, looking only at `m=` and `b=`
/// lines (same result on every input; tested against it).
pub fn sdp_units(body: &[u8], cfg: &SessionSizeConfig) -> Option<u32> {
    let mut units: u32 = 0;
    let mut add = |ls: usize| {
        // Only `m=` and `b=` lines count; the others are skipped by their LF alone.
        let (kind, eq) = match body.get(ls..ls + 2) {
            Some(&[k @ (b'm' | b'b'), e]) => (k, e),
            _ => return,
        };
        if eq != b'=' {
            return;
        }
        let le = find_lf(body, ls).unwrap_or(body.len());
        let line = body.get(ls + 2..le).unwrap_or(&[]);
        let r = line.strip_suffix(b"\r").unwrap_or(line);
        if kind == b'm' {
            if let Some(w) = media_units(r, cfg) {
                units = units.saturating_add(w);
            }
        } else if cfg.kbps_per_unit > 0 {
            if let Some(kbps) = as_bandwidth(r) {
                units = units.saturating_add(kbps.div_ceil(cfg.kbps_per_unit));
            }
        }
    };
    add(0);
    // Every LF, eight bytes at a time, with an exact per-byte test (all matches count).
    let mut chunks = body.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let mut m = eq_exact(le64(c), b'\n');
        while m != 0 {
            add(base + (m.trailing_zeros() / 8) as usize + 1);
            m &= m - 1;
        }
        base += 8;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b == b'\n' {
            add(base + i + 1);
        }
    }
    (units > 0).then_some(units)
}

/// Flags exactly the bytes of `w` equal to `b` (no false flags, unlike [`has`]).
#[inline(always)]
fn eq_exact(w: u64, b: u8) -> u64 {
    const L7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (LO * u64::from(b));
    !(((x & L7).wrapping_add(L7)) | x | L7)
}

/// Weight of a well-formed `m=` line with a non-zero port (see `sdp::parse_media`).
fn media_units(r: &[u8], cfg: &SessionSizeConfig) -> Option<u32> {
    let sp1 = find(r, 0, r.len(), b' ')?;
    let media = r.get(..sp1).filter(|m| !m.is_empty())?;
    let sp2 = find(r, sp1 + 1, r.len(), b' ')?;
    let port_field = r.get(sp1 + 1..sp2)?;
    let proto_end = find(r, sp2 + 1, r.len(), b' ').unwrap_or(r.len());
    if proto_end == sp2 + 1 {
        return None;
    }
    let (port, count) = match port_field.iter().position(|&b| b == b'/') {
        Some(s) => (port_field.get(..s)?, port_field.get(s + 1..)),
        None => (port_field, None),
    };
    let port = parse_digits(port, 10).filter(|&p| p <= 65535)?;
    if let Some(c) = count {
        parse_digits(c, 10).filter(|&c| c <= 65535)?;
    }
    if port == 0 {
        return None;
    }
    Some(if media.eq_ignore_ascii_case(b"audio") {
        cfg.audio_units
    } else if media.eq_ignore_ascii_case(b"video") {
        cfg.video_units
    } else {
        cfg.other_units
    })
}

/// The kbps of a well-formed `b=AS:<value>` line (see `sdp::bandwidths`).
fn as_bandwidth(r: &[u8]) -> Option<u32> {
    let colon = r.iter().position(|&b| b == b':')?;
    let modifier = r.get(..colon).filter(|m| !m.is_empty())?;
    if !modifier.eq_ignore_ascii_case(b"AS") {
        return None;
    }
    let v = parse_digits(r.get(colon + 1..)?.trim_ascii(), 10)?;
    Some(u32::try_from(v).unwrap_or(u32::MAX))
}

/// [`is_sdp_content_type`] for a value already trimmed of LWS: `application/sdp`
/// (case-insensitively), then optional LWS, then the end or a `;`.
#[inline(always)]
fn is_sdp(ct: &[u8]) -> bool {
    match ct.split_at_checked(15) {
        Some((mt, rest)) => {
            mt.eq_ignore_ascii_case(b"application/sdp")
                && matches!(rest.iter().find(|&&b| !is_lws(b)), None | Some(b';'))
        }
        None => false,
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
/// ASCII case fold (`| 0x20`) of eight bytes.
const FOLD: u64 = 0x2020_2020_2020_2020;

/// Eight bytes at `at`, little-endian, or `None` past the end.
#[inline(always)]
fn word(buf: &[u8], at: usize) -> Option<u64> {
    match buf.get(at..at.wrapping_add(8)) {
        Some(&[a, b, c, d, e, f, g, h]) => Some(u64::from_le_bytes([a, b, c, d, e, f, g, h])),
        _ => None,
    }
}

/// Up to eight bytes at `at`, zero-padded past the end of `buf`.
#[inline(always)]
fn word_padded(buf: &[u8], at: usize) -> u64 {
    match word(buf, at) {
        Some(w) => w,
        None => pack(buf.get(at..).unwrap_or(&[])),
    }
}

/// Flags (high bit of each byte) the bytes of `w` equal to `b`; the lowest flag is exact.
#[inline(always)]
fn has(w: u64, b: u8) -> u64 {
    let x = w ^ (LO * u64::from(b));
    x.wrapping_sub(LO) & !x & HI
}

/// Flags the bytes of `w` below `n` (`n` ≤ 0x80); the lowest flag is exact.
#[inline(always)]
fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(LO * u64::from(n)) & !w & HI
}

/// The first offset in `from..to` (`to` clamped to `buf`) whose byte `flags` marks (its
/// lowest flag must be exact). Loads eight bytes at a time from `from`, also past `to` while
/// they are inside `buf` (a flag at or past `to` then means none in the range); only the last
/// bytes of `buf` take [`find_by_tail`].
#[inline(always)]
fn find_by(buf: &[u8], from: usize, to: usize, flags: impl Fn(u64) -> u64) -> Option<usize> {
    let to = to.min(buf.len());
    let mut p = from;
    while p < to {
        let Some(w) = word(buf, p) else {
            return find_by_tail(buf, p, to, flags);
        };
        let m = flags(w);
        if m != 0 {
            let i = p + (m.trailing_zeros() / 8) as usize;
            return (i < to).then_some(i);
        }
        p += 8;
    }
    None
}

/// [`find_by`] within eight bytes of the end of `buf` (no full word left to load).
#[inline(never)]
fn find_by_tail(buf: &[u8], from: usize, to: usize, flags: impl Fn(u64) -> u64) -> Option<usize> {
    let to = to.min(buf.len());
    let hay = buf.get(from..to)?;
    let mut chunks = hay.chunks_exact(8);
    let mut base = from;
    for c in &mut chunks {
        let m = flags(le64(c));
        if m != 0 {
            return Some(base + (m.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    let n = chunks.remainder().len();
    if n == 0 {
        return None;
    }
    // The last 1..=7 bytes: one load that may extend past `to` (not past `buf`), or the
    // eight bytes ending at `to` shifted down, or (tiny buffers) a packed copy.
    let w = match word(buf, base) {
        Some(w) => w,
        None => match to.checked_sub(8).and_then(|s| word(buf, s)) {
            Some(w) => w >> (8 * (8 - n)),
            None => pack(chunks.remainder()),
        },
    };
    let m = flags(w) & ((1u64 << (8 * n)) - 1);
    (m != 0).then(|| base + (m.trailing_zeros() / 8) as usize)
}

/// The first `b` in `from..to`.
#[inline(always)]
fn find(buf: &[u8], from: usize, to: usize, b: u8) -> Option<usize> {
    find_by(buf, from, to, |w| has(w, b))
}

/// The first LF at or after `from`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    let hay = buf.get(from..)?;
    match memchr::arch::x86_64::sse2::memchr::One::new(b'\n') {
        Some(one) => one.find(hay).map(|i| from + i),
        None => find(buf, from, buf.len(), b'\n'),
    }
}

/// The first LF at or after `from`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    find(buf, from, buf.len(), b'\n')
}

/// The end of the physical line at `pos` (before a CR that precedes the LF) and the offset
/// after its LF; `None` without an LF.
#[inline(always)]
fn line_end(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let lf = find_lf(buf, pos)?;
    let end = if lf > pos && buf.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

/// Where a parameter name or unquoted value that starts at `from` ends: the first `;`, `,`,
/// `=` or byte ≤ SP (LWS), or `to`. On the values [`Message::parse`] accepts (tokens, and
/// `[`/`]`/`:` in values) this is exactly where its grammar ends them.
#[inline(always)]
fn param_end(buf: &[u8], from: usize, to: usize) -> usize {
    find_by(buf, from, to, |w| {
        has(w, b';') | has(w, b',') | has(w, b'=') | below(w, 0x21)
    })
    .unwrap_or(to.max(from))
}

/// `lower` (lowercase letters and `-`, 1..=8 bytes) as a little-endian word, and its mask.
const fn pattern(lower: &[u8]) -> (u64, u64) {
    let mut w = 0u64;
    let mut i = 0;
    while i < lower.len() {
        w |= (lower[i] as u64) << (8 * i);
        i += 1;
    }
    let mask = if lower.len() >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * lower.len())) - 1
    };
    (w, mask)
}

/// `;name=` (`name`: lowercase letters, ≤ 6) as a little-endian word, the 0x20 fold of its
/// letter bytes only (`;` and `=` compare exactly), and its mask; a longer name gets a
/// pattern no word matches.
const fn param_head(name: &[u8]) -> (u64, u64, u64) {
    let n = name.len();
    if n > 6 {
        return (1, 0, 0);
    }
    let mut head = b';' as u64;
    let mut fold = 0u64;
    let mut i = 0;
    while i < n {
        head |= (name[i] as u64) << (8 * (i + 1));
        fold |= 0x20 << (8 * (i + 1));
        i += 1;
    }
    head |= (b'=' as u64) << (8 * (n + 1));
    let mask = if n + 2 >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * (n + 2))) - 1
    };
    (head, fold, mask)
}

const P_VIA: (u64, u64) = pattern(b"via");
const P_FROM: (u64, u64) = pattern(b"from");
const P_TO: (u64, u64) = pattern(b"to");
const P_CSEQ: (u64, u64) = pattern(b"cseq");
const P_CALL_ID: (u64, u64) = pattern(b"call-id");
const P_CONTENT: (u64, u64) = pattern(b"content-");
const P_TYPE: (u64, u64) = pattern(b"type");
const P_LENGTH: (u64, u64) = pattern(b"length");

/// Classifies the header line at `ls` among the headers locate reads, by comparing its
/// case-folded first bytes with each candidate name and requiring `:`, SP or HT right after
/// the name. Returns the id (`Other` for everything else) and where the name ends.
#[inline(always)]
fn classify(buf: &[u8], ls: usize, complete: bool) -> (HeaderId, usize) {
    let w = word_padded(buf, ls) | FOLD;
    let is = |p: (u64, u64), n: usize| w & p.1 == p.0 && is_name_end(buf.get(ls + n));
    let (id, n) = match w as u8 {
        b'v' if is_name_end(buf.get(ls + 1)) => (HeaderId::Via, 1),
        b'v' if is(P_VIA, 3) => (HeaderId::Via, 3),
        b'f' if is_name_end(buf.get(ls + 1)) => (HeaderId::From, 1),
        b'f' if is(P_FROM, 4) => (HeaderId::From, 4),
        b't' if is_name_end(buf.get(ls + 1)) => (HeaderId::To, 1),
        b't' if is(P_TO, 2) => (HeaderId::To, 2),
        b'i' if is_name_end(buf.get(ls + 1)) => (HeaderId::CallId, 1),
        b'c' if is_name_end(buf.get(ls + 1)) => (HeaderId::ContentType, 1),
        b'c' if is(P_CSEQ, 4) => (HeaderId::CSeq, 4),
        b'c' if is(P_CALL_ID, 7) => (HeaderId::CallId, 7),
        b'c' if complete && w == P_CONTENT.0 => {
            let w2 = word_padded(buf, ls + 8) | FOLD;
            if w2 & P_TYPE.1 == P_TYPE.0 && is_name_end(buf.get(ls + 12)) {
                (HeaderId::ContentType, 12)
            } else if w2 & P_LENGTH.1 == P_LENGTH.0 && is_name_end(buf.get(ls + 14)) {
                (HeaderId::ContentLength, 14)
            } else {
                (HeaderId::Other, 0)
            }
        }
        b'l' if complete && is_name_end(buf.get(ls + 1)) => (HeaderId::ContentLength, 1),
        _ => (HeaderId::Other, 0),
    };
    (id, ls + n)
}

#[inline(always)]
fn is_name_end(b: Option<&u8>) -> bool {
    matches!(b, Some(b':' | b' ' | b'\t'))
}

/// [`skip_lws`] with the usual case (no LWS at `p`) decided by one compare.
#[inline(always)]
fn lws_end(buf: &[u8], p: usize, end: usize) -> usize {
    match buf.get(p) {
        Some(&b) if p < end && !is_lws(b) => p,
        _ => skip_lws(buf, p, end),
    }
}

/// `name SWS ":"` ends at `ne`: the offset after the colon, or `None`.
#[inline(always)]
fn after_colon(buf: &[u8], ne: usize, le: usize) -> Option<usize> {
    let c = skip_while(buf, ne, le, |b| b == b' ' || b == b'\t');
    (c < le && buf.get(c) == Some(&b':')).then_some(c + 1)
}

/// [`after_colon`] then [`trim`] for a header whose name (classified, so `buf[ne]` is `:`,
/// SP or HT) ends at `ne`: the LWS-trimmed value up to `vend`, or `None` without the colon.
/// The usual `Name: value` (colon, one SP, a value that neither starts nor ends with LWS) is
/// decided by a few compares; anything else takes the general walk, with the same result.
#[inline(always)]
fn value_span(buf: &[u8], ne: usize, le: usize, vend: usize) -> Option<(usize, usize)> {
    if let Some(&[b':', b' ', c]) = buf.get(ne..ne + 3) {
        if ne + 2 < vend && !is_lws(c) && buf.get(vend - 1).is_some_and(|&b| !is_lws(b)) {
            return Some((ne + 2, vend));
        }
    }
    let vs = after_colon(buf, ne, le)?;
    Some(trim(buf, vs, vend))
}

const VIA: u8 = 1;
const FROM: u8 = 2;
const TO: u8 = 4;
const CALL_ID: u8 = 8;
const CSEQ: u8 = 16;
const ROUTING: u8 = VIA | FROM | TO | CALL_ID | CSEQ;

fn scan<'a>(
    buf: &'a [u8],
    limits: &Limits,
    session: &[u8],
    session_id: HeaderId,
    scope: Scope,
) -> Result<Located<'a>, SipError> {
    let cap = limits.message_cap();
    if buf.len() > cap {
        return err(SipErrorKind::TooLarge, cap);
    }
    let max_line = limits.max_header_line;
    let mut pos = 0;
    while matches!(buf.get(pos), Some(b'\r' | b'\n')) {
        pos += 1;
    }
    if pos >= buf.len() {
        return err(SipErrorKind::Empty, pos);
    }
    let Some((sl_end, first_header)) = line_end(buf, pos) else {
        return err(SipErrorKind::Truncated, buf.len());
    };
    if sl_end - pos > max_line {
        return err(SipErrorKind::LineTooLong, pos);
    }
    let (method, status) = start_line(buf, pos, sl_end)?;
    let complete = match scope {
        Scope::Complete => true,
        Scope::Routing => false,
        Scope::CompleteForInvite => method == Some(Method::Invite),
    };
    // One copy of the header loop per scope: the routing one carries none of the
    // session-size, Content-Type and Content-Length state, so it keeps more in registers.
    if complete {
        headers::<true>(
            buf,
            limits,
            session,
            session_id,
            method,
            status,
            first_header,
        )
    } else {
        headers::<false>(
            buf,
            limits,
            session,
            session_id,
            method,
            status,
            first_header,
        )
    }
}

/// The header section from `first_header` on, and the [`Located`] result; `COMPLETE` is the
/// scan's scope (see [`Scope`]).
#[inline(always)]
fn headers<'a, const COMPLETE: bool>(
    buf: &'a [u8],
    limits: &Limits,
    session: &[u8],
    session_id: HeaderId,
    method: Option<Method<'a>>,
    status: u16,
    first_header: usize,
) -> Result<Located<'a>, SipError> {
    let complete = COMPLETE;
    let max_line = limits.max_header_line;
    let mut ls = first_header;
    // The session-size header: by folded first byte and name when it is not a header locate
    // knows by id; every line is classified generically when it is one (a rare setup).
    let session_first = match session.first() {
        Some(&f) if complete && session_id == HeaderId::Other => Some(f | 0x20),
        _ => None,
    };
    let session_known = complete && session_id != HeaderId::Other;
    let method_bytes = method.map(|m| m.as_bytes());

    let mut found = 0u8;
    let mut count = 0usize;
    let mut call_id = None;
    let mut from = None;
    let mut to = None;
    let mut branch = None;
    let mut top_via = Span::new(0, 0);
    let mut cseq_method = None;
    let mut session_size = None;
    let mut content_type = None;
    let mut content_length: Option<(u32, usize)> = None;
    let mut body_start = None;
    let mut headers_end = buf.len();
    loop {
        let Some((le, lnext)) = line_end(buf, ls) else {
            return err(SipErrorKind::Truncated, buf.len());
        };
        if le == ls {
            headers_end = ls;
            body_start = Some(lnext);
            break;
        }
        if le - ls > max_line {
            return err(SipErrorKind::LineTooLong, ls);
        }
        // Folded continuation lines belong to this header.
        let mut vend = le;
        let mut next = lnext;
        while matches!(buf.get(next), Some(b' ' | b'\t')) {
            let Some((e2, n2)) = line_end(buf, next) else {
                return err(SipErrorKind::Truncated, buf.len());
            };
            if e2 - next > max_line {
                return err(SipErrorKind::LineTooLong, next);
            }
            vend = e2;
            next = n2;
        }
        count += 1;
        if count > limits.max_headers {
            return err(SipErrorKind::TooManyHeaders, ls);
        }
        let (id, ne) = classify(buf, ls, complete);
        if id != HeaderId::Other {
            let Some((vs, ve)) = value_span(buf, ne, le, vend) else {
                return err(SipErrorKind::HeaderLine, ls);
            };
            match id {
                HeaderId::Via if found & VIA == 0 => {
                    found |= VIA;
                    top_via = Span::new(vs, ve);
                    branch = via_branch(buf, vs, ve);
                }
                HeaderId::From if found & FROM == 0 => {
                    found |= FROM;
                    from = Some(
                        name_addr_tag(buf, vs, ve)
                            .or_else(|at| err(SipErrorKind::NameAddr("From"), at))?,
                    );
                }
                HeaderId::To if found & TO == 0 => {
                    found |= TO;
                    to = Some(
                        name_addr_tag(buf, vs, ve)
                            .or_else(|at| err(SipErrorKind::NameAddr("To"), at))?,
                    );
                }
                HeaderId::CallId if found & CALL_ID == 0 => {
                    found |= CALL_ID;
                    call_id = Some(Span::new(vs, ve));
                }
                HeaderId::CSeq if found & CSEQ == 0 => {
                    found |= CSEQ;
                    let de = skip_while(buf, vs, ve, |b| b.is_ascii_digit());
                    let ms = lws_end(buf, de, ve);
                    if ms >= ve {
                        return err(SipErrorKind::CSeq, ms);
                    }
                    let m = buf.get(ms..ve).unwrap_or(&[]);
                    if method_bytes.is_some_and(|mb| mb != m) {
                        return err(SipErrorKind::CSeqMethodMismatch, ms);
                    }
                    cseq_method = Some(Span::new(ms, ve));
                }
                HeaderId::ContentLength if content_length.is_none() => {
                    match parse_digits(buf.get(vs..ve).unwrap_or(&[]), 10) {
                        Some(n) if n <= u64::from(u32::MAX) => {
                            content_length = Some((n as u32, vs));
                        }
                        _ => return err(SipErrorKind::ContentLength, vs),
                    }
                }
                HeaderId::ContentType if complete && content_type.is_none() => {
                    content_type = Some(Span::new(vs, ve));
                }
                _ => {}
            }
        }
        if session_size.is_none()
            && (session_known
                || session_first.is_some_and(|f| buf.get(ls).is_some_and(|&b| b | 0x20 == f)))
        {
            let line = buf.get(ls..le).unwrap_or(&[]);
            let nlen = line
                .iter()
                .position(|&b| !is_token(b))
                .unwrap_or(line.len());
            let name = line.get(..nlen).unwrap_or(&[]);
            let matches = if session_known {
                nlen > 0 && HeaderId::classify_token(name) == session_id
            } else {
                name.eq_ignore_ascii_case(session)
            };
            if matches {
                let Some(vs) = after_colon(buf, ls + nlen, le) else {
                    return err(SipErrorKind::HeaderLine, ls);
                };
                let (vs, ve) = trim(buf, vs, vend);
                session_size = Some(Span::new(vs, ve));
            }
        }
        ls = next;
        if !complete && found == ROUTING {
            break;
        }
    }
    let (buf, body) = match body_start {
        Some(bs) => {
            let end = match content_length {
                Some((cl, at)) => {
                    let e = bs.saturating_add(cl as usize);
                    if e > buf.len() {
                        return err(SipErrorKind::ContentLengthTooLarge, at);
                    }
                    e
                }
                None => buf.len(),
            };
            let cut = buf.get(..end).unwrap_or(buf);
            (cut, complete.then(|| Span::new(bs.min(end), end)))
        }
        None => (buf, None),
    };
    let Some(cseq_method) = cseq_method else {
        return err(SipErrorKind::MissingHeader("CSeq"), headers_end);
    };
    if found & VIA == 0 {
        return err(SipErrorKind::MissingHeader("Via"), headers_end);
    }
    Ok(Located {
        buf,
        method,
        status,
        call_id,
        from,
        to,
        branch,
        cseq_method,
        session_size,
        content_type,
        body,
        top_via,
        first_header,
    })
}

/// Trims LWS (SP, HT, and the CR/LF of folds) from both ends of `vs..ve`.
#[inline(always)]
fn trim(buf: &[u8], vs: usize, ve: usize) -> (usize, usize) {
    let s = skip_lws(buf, vs, ve);
    let mut e = ve.max(s);
    while e > s && buf.get(e - 1).is_some_and(|&b| is_lws(b)) {
        e -= 1;
    }
    (s, e)
}

/// The start line `buf[at..end]`: `(Some(method), 0)` for a request, `(None, code)` for a
/// response.
#[inline(always)]
fn start_line(buf: &[u8], at: usize, end: usize) -> Result<(Option<Method<'_>>, u16), SipError> {
    // "SIP/" and "SIP/2.0" compare case-insensitively on the letters only.
    const SIP_SLASH: (u64, u64) = pattern(b"sip/");
    const VERSION_SP: u64 = pattern(b"sip/2.0 ").0;
    const SP_VERSION: u64 = pattern(b" sip/2.0").0;
    const FOLD_SIP: u64 = 0x0000_0000_0020_2020;
    let w = word_padded(buf, at);
    if end - at >= 4 && (w | FOLD_SIP) & SIP_SLASH.1 == SIP_SLASH.0 {
        if end - at < 8 || w | FOLD_SIP != VERSION_SP {
            return err(SipErrorKind::Version, at);
        }
        let d = |i: usize| {
            buf.get(at + i)
                .filter(|b| b.is_ascii_digit() && at + i < end)
                .map(|b| u16::from(b - b'0'))
        };
        let code = match (d(8), d(9), d(10)) {
            (Some(a), Some(b), Some(c)) if at + 11 == end || buf.get(at + 11) == Some(&b' ') => {
                a * 100 + b * 10 + c
            }
            _ => return err(SipErrorKind::StatusCode, at + 8),
        };
        if !(100..=699).contains(&code) {
            return err(SipErrorKind::StatusCode, at + 8);
        }
        return Ok((None, code));
    }
    let Some(sp) = find(buf, at, end, b' ') else {
        return err(SipErrorKind::StartLine, at);
    };
    // ` SIP/2.0` ends the line; the first SP is before it.
    let version_ok =
        end >= sp + 9 && word(buf, end - 8).is_some_and(|v| v | (FOLD_SIP << 8) == SP_VERSION);
    if sp == at || !version_ok {
        return err(SipErrorKind::StartLine, at);
    }
    let method = buf.get(at..sp).unwrap_or(&[]);
    Ok((Some(Method::from_bytes(method)), 0))
}

/// The `branch` of the first via-parm in `vs..ve`: its parameters start at the first `;`,
/// unless a `,` (the next via-parm) comes first. (By `memchr2`: a sent-protocol and sent-by
/// are some 30 bytes, where the SIMD search beats the word loop.)
#[inline(always)]
fn via_branch(buf: &[u8], vs: usize, ve: usize) -> Option<Span> {
    let i = vs + memchr::memchr2(b';', b',', buf.get(vs..ve.min(buf.len()))?)?;
    if buf.get(i) != Some(&b';') {
        return None;
    }
    last_param(buf, i, ve, b"branch")
}

/// The `tag` of the first name-addr / addr-spec in `vs..ve` (`Ok(None)` without one), or the
/// offset where it cannot be found.
#[inline(always)]
fn name_addr_tag(buf: &[u8], vs: usize, ve: usize) -> Result<Option<Span>, usize> {
    let p = vs;
    let angle = match peek(buf, p, ve) {
        None => return Ok(None),
        Some(b'"') => {
            let q = skip_quoted(buf, p, ve)?;
            let a = skip_lws(buf, q, ve);
            if peek(buf, a, ve) != Some(b'<') {
                return Err(a);
            }
            a
        }
        Some(b'<') => p,
        // A token display name ends at `<`; an addr-spec's parameters start at its first
        // `;` (a URI holds no `<`, `"`, and ends at the first `;`).
        Some(_) => match find_by(buf, p, ve, |w| has(w, b'<') | has(w, b';')) {
            None => return Ok(None),
            Some(i) if buf.get(i) == Some(&b';') => return Ok(last_param(buf, i, ve, b"tag")),
            Some(i) => i,
        },
    };
    match crate::scan::find(buf, angle + 1, ve, b'>') {
        Some(c) => Ok(last_param(buf, c + 1, ve, b"tag")),
        None => Err(angle),
    }
}

/// Walks `*(SEMI generic-param)` from `p` until the end, a `,` or anything else that does not
/// start a parameter; returns the value of the last parameter named `name` (ASCII
/// case-insensitively), `None` when absent or when that last one has no value (as
/// [`Message::parse`] records it).
#[inline(always)]
fn last_param(buf: &[u8], mut p: usize, end: usize, name: &[u8]) -> Option<Span> {
    let (head, head_fold, head_mask) = param_head(name);
    let mut found = None;
    loop {
        p = lws_end(buf, p, end);
        if peek(buf, p, end) != Some(b';') {
            return found;
        }
        // `;name=` with nothing between (the usual form) is one folded compare; it gives the
        // general walk's answer: no LWS after `;`, and the name ends at the `=`.
        let (is_name, ne) =
            if p + name.len() + 2 <= end && (word_padded(buf, p) | head_fold) & head_mask == head {
                (true, p + 1 + name.len())
            } else {
                let ns = lws_end(buf, p + 1, end);
                let ne = param_end(buf, ns, end);
                let is_name = ne - ns == name.len() && {
                    // `name` is lowercase letters (≤ 8): OR-ing 0x20 folds exactly the letters
                    // that match one case-insensitively, and the mask drops the bytes after it.
                    let (pat, mask) = pattern(name);
                    (word_padded(buf, ns) | FOLD) & mask == pat
                };
                (is_name, ne)
            };
        let eq = lws_end(buf, ne, end);
        let mut value = None;
        p = ne;
        if peek(buf, eq, end) == Some(b'=') {
            let vs = lws_end(buf, eq + 1, end);
            p = if peek(buf, vs, end) == Some(b'"') {
                skip_quoted(buf, vs, end).unwrap_or(end)
            } else {
                param_end(buf, vs, end)
            };
            value = Some(Span::new(vs, p));
        }
        if is_name {
            found = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_param_fast_and_general_forms_agree() {
        // (params, expected `branch` value)
        let cases: [(&[u8], Option<&[u8]>); 14] = [
            (b";branch=z9hG4bK-1", Some(b"z9hG4bK-1")),
            (b";BrAnCh=z9", Some(b"z9")),
            (b"; branch=z9", Some(b"z9")),
            (b";branch =z9", Some(b"z9")),
            (b";branch= z9", Some(b"z9")),
            (b";branchx=z9", None),
            (b";branc=z9", None),
            (b";\x1bbranch=z9", None),
            (b";branch\x1d z9", None),
            (b";branch=a;branch=b", Some(b"b")),
            (b";branch=a;branch", None),
            (b";branch=a;x=1;rport", Some(b"a")),
            (b";branch=\"q;x\"", Some(b"\"q;x\"")),
            (b";branch=", Some(b"")),
        ];
        for (params, want) in cases {
            // Padded both ways: the word loads may read past the range, never past the buffer.
            for pad in [&b""[..], b"\r\nX-Pad: 1234567890\r\n"] {
                let buf = [params, pad].concat();
                let got = last_param(&buf, 0, params.len(), b"branch").map(|s| s.get(&buf));
                assert_eq!(got, want, "{:?}", String::from_utf8_lossy(params));
            }
        }
        let tag = last_param(b";TAG=abc", 0, 8, b"tag").map(|s| s.get(b";TAG=abc"));
        assert_eq!(tag, Some(&b"abc"[..]));
    }

    #[test]
    fn is_sdp_agrees_with_the_full_check() {
        let mut cases: Vec<Vec<u8>> = [
            &b"application/sdp"[..],
            b"Application/SDP",
            b"application/sdp;charset=x",
            b"application/sdp \t ; x",
            b"application/sdpx",
            b"application/sd",
            b"application/sdp x",
            b"application/sdp\r\n ;x",
            b";application/sdp",
            b"",
            b"text/plain",
        ]
        .iter()
        .map(|c| c.to_vec())
        .collect();
        let mut odd = b"application/sdp".to_vec();
        odd[11] = 0x0f;
        cases.push(odd);
        for c in cases {
            let (s, e) = crate::scan::trim_lws(&c, 0, c.len());
            let t = &c[s..e];
            assert_eq!(is_sdp(t), super::super::is_sdp_content_type(t), "{c:?}");
        }
    }
}
