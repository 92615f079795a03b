//! [`RoutingView`]: the dispatcher's cheap per-datagram scan. It frames the message exactly like
//! [`Message::parse`] but parses only the values a routing decision reads, and keeps no
//! header array.

use super::name_addr::{self, NameAddrRaw};
use super::via::{self, Via, ViaRaw};
use super::{
    check_call_id, err, header_line, parse_content_length, parse_cseq, start, CSeq, CSeqRaw,
    HeaderId, Kind, Line, Message, Method, NameAddr, SipError, SipErrorKind,
};
use crate::scan::Span;
use crate::session_size::{self, SessionSizeConfig};
use crate::Limits;

/// Header name [`Message::parse_routing`] records for [`RoutingView::session_size`] (the
/// [`SessionSizeConfig`] default).
pub const DEFAULT_SESSION_SIZE_HEADER: &[u8] = b"X-Session-Size";

/// A routing-only view of a SIP message: method / status, Request-URI, Call-ID, CSeq, the top
/// via-parm, From and To (URI and tag), Content-Length, body and the session-size header.
///
/// Built by [`Message::parse_routing`] or [`RoutingView::parse`]. Like [`Message::parse`] it is
/// total (never panics, never allocates, typed error with an offset on anything it cannot
/// read) and every accessor returns a sub-slice of the input.
///
/// **What it validates**, with the same rules, error kinds and offsets as [`Message::parse`]:
/// the size limit, the start line (method token, Request-URI, version; or status code), the
/// framing of every header line (token name and colon, line-length limit, folding, blank line,
/// [`Limits::max_headers`]), the first via-parm of the first Via header, the first value of
/// the first From and first To header, every Call-ID, CSeq and Content-Length value, the
/// presence of CSeq and Via, the CSeq method against the request method, and Content-Length
/// against the datagram length (the view is cut to the body like [`Message::parse`]'s).
///
/// **What it does not validate** (so a message it accepts may still be rejected by
/// [`Message::parse`]): Via values after the first via-parm (later values of the top Via and
/// all later Via headers), From/To headers after the first of each and values after a comma,
/// Contact, Max-Forwards, Date, and all other headers' values. A processor that needs those
/// must run [`Message::parse`] on the same bytes. On any message [`Message::parse`] accepts,
/// every accessor here returns exactly what the [`Message`] accessor of the same name returns.
#[derive(Clone, Copy, Debug)]
pub struct RoutingView<'a> {
    buf: &'a [u8],
    kind: Kind<'a>,
    body_start: u16,
    call_id: Option<Span>,
    cseq: CSeqRaw,
    top_via: ViaRaw,
    from: Option<NameAddrRaw>,
    to: Option<NameAddrRaw>,
    content_length: Option<u32>,
    content_type: Option<Span>,
    session_size: Option<Span>,
}

impl<'a> Message<'a> {
    /// Scans `buf` for routing only; see [`RoutingView`] for what is and is not validated.
    /// Records the [`DEFAULT_SESSION_SIZE_HEADER`].
    pub fn parse_routing(buf: &'a [u8], limits: &Limits) -> Result<RoutingView<'a>, SipError> {
        RoutingView::parse(buf, limits, DEFAULT_SESSION_SIZE_HEADER)
    }
}

impl<'a> RoutingView<'a> {
    /// Scans `buf` for routing, remembering the first header named `session_header` (matched
    /// case-insensitively; the name a [`SessionSizeConfig`] carries) for
    /// [`RoutingView::session_size`].
    pub fn parse(buf: &'a [u8], limits: &Limits, session_header: &[u8]) -> Result<Self, SipError> {
        let (kind, mut next) = start(buf, limits)?;
        let max_headers = limits.max_headers.min(u16::MAX as usize);
        let max_line = limits.max_header_line;
        let session_id = HeaderId::classify(session_header);
        let mut count = 0usize;
        let mut call_id = None;
        let mut cseq = None;
        let mut top_via = None;
        let mut from = None;
        let mut to = None;
        let mut content_length: Option<(u32, usize)> = None;
        let mut session_size = None;
        let mut content_type = None;
        let body_start = loop {
            let ls = next;
            let (ne, vs, ve, nx) = match header_line(buf, ls, max_line)? {
                Line::End { body_start } => break body_start,
                Line::Header { ne, vs, ve, next } => (ne, vs, ve, next),
            };
            next = nx;
            if count >= max_headers {
                return err(SipErrorKind::TooManyHeaders, ls);
            }
            count += 1;
            let name = buf.get(ls..ne).unwrap_or(&[]);
            let value = buf.get(vs..ve).unwrap_or(&[]);
            let id = HeaderId::classify_token(name);
            if session_size.is_none()
                && id == session_id
                && (id != HeaderId::Other || name.eq_ignore_ascii_case(session_header))
            {
                session_size = Some(Span::new(vs, ve));
            }
            match id {
                HeaderId::Via if top_via.is_none() => {
                    let (v, _) =
                        via::parse_parm(buf, vs, ve).or_else(|at| err(SipErrorKind::Via, at))?;
                    top_via = Some(v);
                }
                HeaderId::From if from.is_none() => {
                    let (na, _) = name_addr::parse_one(buf, vs, ve, false)
                        .or_else(|at| err(SipErrorKind::NameAddr("From"), at))?;
                    from = Some(na);
                }
                HeaderId::To if to.is_none() => {
                    let (na, _) = name_addr::parse_one(buf, vs, ve, false)
                        .or_else(|at| err(SipErrorKind::NameAddr("To"), at))?;
                    to = Some(na);
                }
                HeaderId::CallId => {
                    check_call_id(value, vs)?;
                    call_id.get_or_insert(Span::new(vs, ve));
                }
                HeaderId::CSeq => {
                    let c = parse_cseq(buf, vs, ve)?;
                    cseq.get_or_insert(c);
                }
                HeaderId::ContentLength => {
                    let n = parse_content_length(value, vs)?;
                    content_length.get_or_insert((n, vs));
                }
                HeaderId::ContentType => {
                    content_type.get_or_insert(Span::new(vs, ve));
                }
                _ => {}
            }
        };
        let end = match content_length {
            Some((cl, at)) => {
                let e = body_start.saturating_add(cl as usize);
                if e > buf.len() {
                    return err(SipErrorKind::ContentLengthTooLarge, at);
                }
                e
            }
            None => buf.len(),
        };
        let headers_end = next;
        let Some(cseq) = cseq else {
            return err(SipErrorKind::MissingHeader("CSeq"), headers_end);
        };
        let Some(top_via) = top_via else {
            return err(SipErrorKind::MissingHeader("Via"), headers_end);
        };
        if let Kind::Request { method, .. } = kind {
            if method.as_bytes() != cseq.method.get(buf) {
                return err(SipErrorKind::CSeqMethodMismatch, cseq.method.start());
            }
        }
        Ok(RoutingView {
            buf: buf.get(..end).unwrap_or(buf),
            kind,
            body_start: body_start as u16,
            call_id,
            cseq,
            top_via,
            from,
            to,
            content_length: content_length.map(|(n, _)| n),
            content_type,
            session_size,
        })
    }

    /// Request (method, Request-URI) or response (code, reason).
    pub fn kind(&self) -> Kind<'a> {
        self.kind
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<Method<'a>> {
        self.kind.method()
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        self.kind.is_request()
    }

    /// The message bytes, cut after the Content-Length-delimited body.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The first Call-ID value, or an empty slice when absent.
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id.map(|s| s.get(self.buf)).unwrap_or(&[])
    }

    /// The first CSeq header (always present).
    pub fn cseq(&self) -> CSeq<'a> {
        CSeq {
            seq: self.cseq.seq,
            method: Method::from_bytes(self.cseq.method.get(self.buf)),
        }
    }

    /// The first via-parm of the first Via header (always present).
    pub fn top_via(&self) -> Via<'a> {
        Via::from_raw(self.buf, &self.top_via)
    }

    /// The first value of the first From header.
    pub fn from(&self) -> Option<NameAddr<'a>> {
        self.from.map(|r| NameAddr::from_raw(self.buf, &r))
    }

    /// The first value of the first To header.
    pub fn to(&self) -> Option<NameAddr<'a>> {
        self.to.map(|r| NameAddr::from_raw(self.buf, &r))
    }

    /// The first Content-Length value, if present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// The body (see [`Message::body`]).
    pub fn body(&self) -> &'a [u8] {
        self.buf.get(self.body_start as usize..).unwrap_or(&[])
    }

    /// The first Content-Type value as written.
    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.content_type.map(|s| s.get(self.buf))
    }

    /// The value of the first session-size header recorded at scan time (the header name
    /// passed to [`RoutingView::parse`], [`DEFAULT_SESSION_SIZE_HEADER`] for
    /// [`Message::parse_routing`]).
    pub fn session_size_header(&self) -> Option<&'a [u8]> {
        self.session_size.map(|s| s.get(self.buf))
    }

    /// Session size as [`Message::session_size`] computes it, taking the explicit value from
    /// the header recorded at scan time (so `cfg.sip_header` must be the name the view was
    /// scanned with; `cfg` supplies the SDP weights).
    pub fn session_size(&self, cfg: &SessionSizeConfig) -> u32 {
        let sdp = self.content_type.and_then(|ct| {
            let ct = ct.get(self.buf);
            (super::is_sdp_content_type(ct) && !self.body().is_empty()).then(|| self.body())
        });
        session_size::resolve(self.session_size_header(), sdp, cfg)
    }
}
