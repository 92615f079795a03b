//! Via header values (RFC 3261 §20.42, §18.2.1; RFC 3581 `rport`). The dispatcher needs the top
//! Via for transaction matching (branch) and for answering the source (sent-by, received,
//! rport); the rewrite module needs the exact byte ranges of those parameters.

use super::params::{self, Param};
use crate::scan::{is_host_byte, is_lws, is_token, parse_digits, peek, skip_lws, skip_while, Span};

/// RFC 3261 §8.1.1.7: branches of compliant clients start with this cookie.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ViaRaw {
    pub(crate) parm: Span,
    pub(crate) transport: Span,
    pub(crate) host: Span,
    pub(crate) port: Option<u16>,
    pub(crate) branch: Option<Span>,
    pub(crate) received: Option<Param>,
    pub(crate) rport: Option<Param>,
    pub(crate) rport_value: Option<u16>,
}

/// One `via-parm`: the hop that sent the message and how to answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    raw: &'a [u8],
    transport: &'a [u8],
    host: &'a [u8],
    port: Option<u16>,
    branch: Option<&'a [u8]>,
    received: Option<&'a [u8]>,
    rport: Option<Option<u16>>,
}

impl<'a> Via<'a> {
    #[inline]
    pub(crate) fn from_raw(buf: &'a [u8], r: &ViaRaw) -> Via<'a> {
        Via {
            raw: r.parm.get(buf),
            transport: r.transport.get(buf),
            host: r.host.get(buf),
            port: r.port,
            branch: r.branch.map(|s| s.get(buf)),
            received: r.received.and_then(|p| p.value).map(|s| s.get(buf)),
            rport: r.rport.map(|_| r.rport_value),
        }
    }

    /// The whole via-parm as written, for logging and copying.
    #[inline]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, or an unknown one), as written.
    #[inline]
    pub fn transport(&self) -> &'a [u8] {
        self.transport
    }

    /// `sent-by`: host (IPv6 references keep their brackets) and optional port; where the
    /// sender asked responses to go absent `received`/`rport`.
    #[inline]
    pub fn sent_by(&self) -> (&'a [u8], Option<u16>) {
        (self.host, self.port)
    }

    /// The `branch` parameter: the transaction key for matching retransmissions and CANCEL.
    #[inline]
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }

    /// Whether the branch carries the RFC 3261 magic cookie (plus at least one more byte); a
    /// branch without it (RFC 4475 badbranch) needs RFC 2543 transaction matching.
    #[inline]
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter, if an upstream element added one.
    #[inline]
    pub fn received(&self) -> Option<&'a [u8]> {
        self.received
    }

    /// RFC 3581 `rport`: `None` when absent, `Some(None)` when requested without a value,
    /// `Some(Some(p))` when a value is present.
    #[inline]
    pub fn rport(&self) -> Option<Option<u16>> {
        self.rport
    }
}

/// Parses one token, then `SWS "/" SWS`; returns the token span and the position after.
fn token_slash(buf: &[u8], pos: usize, end: usize) -> Result<(Span, usize), usize> {
    let s = skip_lws(buf, pos, end);
    let e = skip_while(buf, s, end, is_token);
    if e == s {
        return Err(s);
    }
    let p = skip_lws(buf, e, end);
    if peek(buf, p, end) != Some(b'/') {
        return Err(p);
    }
    Ok((Span::new(s, e), p + 1))
}

/// Parses one via-parm at `pos`; returns it and where the next one starts (after a comma).
pub(crate) fn parse_parm(
    buf: &[u8],
    pos: usize,
    end: usize,
) -> Result<(ViaRaw, Option<usize>), usize> {
    let start = skip_lws(buf, pos, end);
    let (_name, p) = token_slash(buf, start, end)?;
    let (_ver, p) = token_slash(buf, p, end)?;
    let ts = skip_lws(buf, p, end);
    let te = skip_while(buf, ts, end, is_token);
    if te == ts {
        return Err(ts);
    }
    // sent-protocol LWS sent-by: at least one white space.
    let hs = skip_lws(buf, te, end);
    if hs == te {
        return Err(te);
    }
    let he = if peek(buf, hs, end) == Some(b'[') {
        let close = crate::scan::find(buf, hs, end, b']').ok_or(hs)?;
        let inner = buf.get(hs + 1..close).unwrap_or(&[]);
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(hs);
        }
        close + 1
    } else {
        skip_while(buf, hs, end, is_host_byte)
    };
    if he == hs {
        return Err(hs);
    }
    let mut raw = ViaRaw {
        transport: Span::new(ts, te),
        host: Span::new(hs, he),
        ..ViaRaw::default()
    };
    let mut p = skip_lws(buf, he, end);
    if peek(buf, p, end) == Some(b':') {
        let ps = skip_lws(buf, p + 1, end);
        let pe = skip_while(buf, ps, end, |b| b.is_ascii_digit());
        match parse_digits(buf.get(ps..pe).unwrap_or(&[]), 5) {
            Some(v) if v <= 65535 => raw.port = Some(v as u16),
            _ => return Err(ps),
        }
        p = pe;
    } else {
        p = he;
    }
    if let Some(b) = peek(buf, p, end) {
        if !(is_lws(b) || b == b';' || b == b',') {
            return Err(p);
        }
    }
    let mut bad_rport = None;
    let (pend, next) = params::parse(buf, p, end, true, |prm| {
        on_param(buf, &mut raw, &mut bad_rport, prm)
    })?;
    if let Some(at) = bad_rport {
        return Err(at);
    }
    raw.parm = Span::new(start, pend.max(p));
    Ok((raw, next))
}

/// What [`parse_parm`] records for one parameter (`bad_rport`: where an unusable rport value
/// starts, which makes the via-parm invalid).
#[inline(always)]
fn on_param(buf: &[u8], raw: &mut ViaRaw, bad_rport: &mut Option<usize>, prm: Param) {
    let name = prm.name.get(buf);
    if name.eq_ignore_ascii_case(b"branch") {
        raw.branch = prm.value;
    } else if name.eq_ignore_ascii_case(b"received") {
        raw.received = Some(prm);
    } else if name.eq_ignore_ascii_case(b"rport") {
        raw.rport = Some(prm);
        if let Some(v) = prm.value {
            match parse_digits(v.get(buf), 5) {
                Some(n) if n <= 65535 => raw.rport_value = Some(n as u16),
                _ => *bad_rport = Some(v.start()),
            }
        }
    }
}

/// Fast path of [`parse_list`] for the usual single `name/version/transport SP host[:port]
/// *(;param)` value with no other LWS, no IPv6 reference and no second via-parm: `Some` only
/// where [`parse_parm`] accepts the whole value with the same result, `None` to let it decide
/// (errors and their offsets stay its own).
#[inline(always)]
fn parse_simple(buf: &[u8], start: usize, end: usize) -> Option<ViaRaw> {
    if end > buf.len() || start > end {
        return None;
    }
    let mut p = start;
    // `SIP/2.0/` as written by nearly everyone is what the two token/slash steps accept.
    if start + 8 <= end && buf.get(start..start + 8) == Some(b"SIP/2.0/") {
        p = start + 8;
    } else {
        for _ in 0..2 {
            let e = skip_while(buf, p, end, is_token);
            if e == p || buf.get(e) != Some(&b'/') || e >= end {
                return None;
            }
            p = e + 1;
        }
    }
    let ts = p;
    // Likewise `UDP ` is a token run ending at the SP.
    let te = if ts + 4 <= end && buf.get(ts..ts + 4) == Some(b"UDP ") {
        ts + 3
    } else {
        skip_while(buf, ts, end, is_token)
    };
    if te == ts || te >= end || buf.get(te) != Some(&b' ') {
        return None;
    }
    let hs = te + 1;
    let he = skip_while(buf, hs, end, is_host_byte);
    if he == hs {
        return None;
    }
    let mut raw = ViaRaw {
        transport: Span::new(ts, te),
        host: Span::new(hs, he),
        ..ViaRaw::default()
    };
    let mut p = he;
    if p < end && buf.get(p) == Some(&b':') {
        let ps = p + 1;
        let pe = skip_while(buf, ps, end, |b| b.is_ascii_digit());
        match parse_digits(buf.get(ps..pe)?, 5) {
            Some(v) if v <= 65535 => raw.port = Some(v as u16),
            _ => return None,
        }
        p = pe;
    }
    let mut bad_rport = None;
    let pend = params::parse_simple(buf, p, end, |prm| {
        on_param(buf, &mut raw, &mut bad_rport, prm)
    })?;
    if bad_rport.is_some() {
        return None;
    }
    raw.parm = Span::new(start, pend);
    Some(raw)
}

/// Validates every via-parm in one Via header value and returns the first one.
pub(crate) fn parse_list(buf: &[u8], start: usize, end: usize) -> Result<ViaRaw, usize> {
    if let Some(raw) = parse_simple(buf, start, end).filter(|_| super::fast_paths_on()) {
        return Ok(raw);
    }
    parse_list_general(buf, start, end)
}

/// [`parse_list`] without its fast path: the reference the fast path is tested against.
pub(crate) fn parse_list_general(buf: &[u8], start: usize, end: usize) -> Result<ViaRaw, usize> {
    let (first, mut next) = parse_parm(buf, start, end)?;
    while let Some(p) = next {
        let (_, n) = parse_parm(buf, p, end)?;
        next = n;
    }
    Ok(first)
}
