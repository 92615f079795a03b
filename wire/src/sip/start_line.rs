//! Request-Line and Status-Line (RFC 3261 §7.1, §7.2), strict about separators because RFC 4475
//! §3.1.2.8-10 require rejecting extra, embedded or trailing SP.

use super::error::{SipError, SipErrorKind};
use super::uri;
use crate::scan::{is_token, parse_digits};

/// A SIP method. Known methods get a variant so the dispatcher can `match` without comparing
/// bytes; anything else keeps its bytes (methods are case-sensitive, RFC 3261 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Method<'a> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    /// An extension method, as written.
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Maps method bytes to a variant (case-sensitive, as RFC 3261 requires).
    pub fn from_bytes(b: &'a [u8]) -> Method<'a> {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            other => Method::Other(other),
        }
    }

    /// The method as it appears on the wire, for builders and comparisons.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Info => b"INFO",
            Method::Update => b"UPDATE",
            Method::Prack => b"PRACK",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Other(b) => b,
        }
    }
}

/// Whether the message is a request or a response, with the start-line fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A request: method and raw Request-URI.
    Request {
        /// The request method.
        method: Method<'a>,
        /// The Request-URI as written (validated: scheme present, no LWS, no `<>`).
        uri: &'a [u8],
    },
    /// A response: status code (100..=699) and reason phrase (any octets, possibly empty).
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase as written.
        reason: &'a [u8],
    },
}

impl<'a> Kind<'a> {
    /// The request method, or `None` for a response: the one place every view (full scan,
    /// routing scan) answers "which method" from.
    pub fn method(&self) -> Option<Method<'a>> {
        match self {
            Kind::Request { method, .. } => Some(*method),
            Kind::Response { .. } => None,
        }
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self, Kind::Request { .. })
    }
}

/// `SIP/2.0`, case-insensitively: one word compare (only the three letters fold; `x | 0x20`
/// equals a lowercase letter exactly when `x` is that letter in either case).
#[inline]
fn is_version(v: &[u8]) -> bool {
    if !super::fast_paths_on() {
        return v.eq_ignore_ascii_case(b"SIP/2.0");
    }
    match v {
        &[a, b, c, d, e, f, g] => {
            let w = u64::from_le_bytes([a, b, c, d, e, f, g, 0]);
            w | 0x20_2020 == u64::from_le_bytes(*b"sip/2.0\0")
        }
        _ => false,
    }
}

/// Parses the start line `buf[start..end]` (terminator excluded).
#[inline]
pub(crate) fn parse(buf: &[u8], start: usize, end: usize) -> Result<Kind<'_>, SipError> {
    match parse_request_simple(buf, start, end).filter(|_| super::fast_paths_on()) {
        Some(k) => Ok(k),
        None => parse_general(buf, start, end),
    }
}

/// Fast path of [`parse`] for a well-formed Request-Line: the method is the token run before
/// the first SP and the version is the last eight bytes (` SIP/2.0`), so the Request-URI is
/// what lies between without a search for the second SP (a valid URI holds no SP, so the line
/// still has exactly two). `None` hands the line to [`parse_general`], which owns every error.
#[inline(always)]
fn parse_request_simple(buf: &[u8], start: usize, end: usize) -> Option<Kind<'_>> {
    let line = buf.get(start..end)?;
    // The methods of every call, as written: the token scan would stop at that SP.
    let (m, known) = if line.starts_with(b"INVITE ") {
        (6, Some(Method::Invite))
    } else if line.starts_with(b"ACK ") {
        (3, Some(Method::Ack))
    } else if line.starts_with(b"BYE ") {
        (3, Some(Method::Bye))
    } else {
        (line.iter().position(|&b| !is_token(b))?, None)
    };
    if m == 0 || line.get(m) != Some(&b' ') {
        return None;
    }
    let rest = line.get(m + 1..)?;
    let split = rest.len().checked_sub(8)?;
    let (ruri, ver) = rest.split_at(split);
    if ruri.is_empty() || ver.first() != Some(&b' ') || !is_version(ver.get(1..)?) {
        return None;
    }
    if !uri::check(ruri, false) {
        return None;
    }
    let method = match known {
        Some(k) => k,
        None => Method::from_bytes(line.get(..m)?),
    };
    Some(Kind::Request { method, uri: ruri })
}

/// [`parse`] without its fast path: the reference the fast path is tested against.
pub(crate) fn parse_general(buf: &[u8], start: usize, end: usize) -> Result<Kind<'_>, SipError> {
    let line = buf.get(start..end).unwrap_or(&[]);
    let err = |k, off: usize| SipError::new(k, start + off);
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp1 = memchr::memchr(b' ', line).ok_or(err(SipErrorKind::StartLine, line.len()))?;
        if !is_version(line.get(..sp1).unwrap_or(&[])) {
            return Err(err(SipErrorKind::Version, 0));
        }
        let after = line.get(sp1 + 1..).unwrap_or(&[]);
        let code_len = after.iter().take_while(|b| b.is_ascii_digit()).count();
        let code_bytes = after.get(..code_len).unwrap_or(&[]);
        let code = match parse_digits(code_bytes, 3) {
            Some(c) if code_len == 3 && (100..=699).contains(&c) => c as u16,
            _ => return Err(err(SipErrorKind::StatusCode, sp1 + 1)),
        };
        let reason = match after.get(code_len..) {
            None | Some([]) => &[][..],
            Some([b' ', reason @ ..]) => reason,
            Some(_) => return Err(err(SipErrorKind::StatusCode, sp1 + 1)),
        };
        if reason.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(err(SipErrorKind::StartLine, sp1 + 5));
        }
        return Ok(Kind::Response { code, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly two single SPs.
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(ruri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err(SipErrorKind::StartLine, 0));
    };
    if method.is_empty() || ruri.is_empty() || version.is_empty() {
        return Err(err(SipErrorKind::StartLine, 0));
    }
    if !method.iter().all(|&b| is_token(b)) {
        return Err(err(SipErrorKind::Method, 0));
    }
    if !uri::check(ruri, false) {
        return Err(err(SipErrorKind::RequestUri, method.len() + 1));
    }
    if !is_version(version) {
        return Err(err(SipErrorKind::Version, method.len() + ruri.len() + 2));
    }
    Ok(Kind::Request {
        method: Method::from_bytes(method),
        uri: ruri,
    })
}
