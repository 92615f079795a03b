//! Response building per RFC 3261 §8.2.6: processors answer the source directly, so they need
//! a cheap way to turn a request view into `100 Trying`, `200 OK`, `503` ... without a SIP
//! stack or allocation.

use super::headers::eq_exact;
use super::rewrite::check_header_line;
use super::{HeaderId, Message};
use crate::out::{Out, WriteError};
use crate::scan::{has_cr_or_lf, is_token};

/// A body to attach: its media type and bytes; Content-Length is computed by the builder.
#[derive(Clone, Copy, Debug)]
pub struct Body<'r> {
    /// Content-Type value, e.g. `application/sdp`.
    pub content_type: &'r [u8],
    /// The body octets.
    pub content: &'r [u8],
}

/// What response to build: the parts the request does not already determine.
#[derive(Clone, Copy, Debug)]
pub struct ResponseSpec<'r> {
    /// Status code, 100..=699.
    pub code: u16,
    /// Reason phrase; empty means "use [`reason_phrase`]".
    pub reason: &'r [u8],
    /// Tag to add to To when the request's To has none (RFC 3261 §8.2.6.2: every response but
    /// 100 needs one); encode the processor id with [`crate::tag::encode`].
    pub to_tag: Option<&'r [u8]>,
    /// Extra header lines without CRLF (`Contact: <sip:p@10.0.0.2:5071>`, `Retry-After: 5`).
    pub headers: &'r [&'r [u8]],
    /// Optional body; without one the response carries `Content-Length: 0`.
    pub body: Option<Body<'r>>,
}

impl<'r> ResponseSpec<'r> {
    /// A bare response with the standard reason phrase, no tag, headers or body.
    pub fn new(code: u16) -> Self {
        ResponseSpec {
            code,
            reason: b"",
            to_tag: None,
            headers: &[],
            body: None,
        }
    }

    /// A response with the standard reason phrase and To-tag `tag`, no headers or body.
    pub fn tagged(code: u16, tag: &'r [u8]) -> Self {
        ResponseSpec {
            to_tag: Some(tag),
            ..Self::new(code)
        }
    }
}

/// Standard reason phrase for common codes, so callers need not carry strings around.
pub fn reason_phrase(code: u16) -> &'static [u8] {
    match code {
        100 => b"Trying",
        180 => b"Ringing",
        181 => b"Call Is Being Forwarded",
        182 => b"Queued",
        183 => b"Session Progress",
        200 => b"OK",
        202 => b"Accepted",
        302 => b"Moved Temporarily",
        400 => b"Bad Request",
        401 => b"Unauthorized",
        403 => b"Forbidden",
        404 => b"Not Found",
        405 => b"Method Not Allowed",
        408 => b"Request Timeout",
        413 => b"Request Entity Too Large",
        415 => b"Unsupported Media Type",
        416 => b"Unsupported URI Scheme",
        420 => b"Bad Extension",
        481 => b"Call/Transaction Does Not Exist",
        482 => b"Loop Detected",
        483 => b"Too Many Hops",
        486 => b"Busy Here",
        487 => b"Request Terminated",
        488 => b"Not Acceptable Here",
        500 => b"Server Internal Error",
        501 => b"Not Implemented",
        503 => b"Service Unavailable",
        504 => b"Server Time-out",
        505 => b"Version Not Supported",
        513 => b"Message Too Large",
        600 => b"Busy Everywhere",
        603 => b"Decline",
        _ => match code / 100 {
            1 => b"Trying",
            2 => b"OK",
            3 => b"Redirect",
            4 => b"Client Error",
            5 => b"Server Error",
            _ => b"Global Failure",
        },
    }
}

/// The whole status line for a code with its standard reason phrase, for the codes the
/// processors send on every call (one copy instead of five pieces).
fn status_line(code: u16) -> Option<&'static [u8]> {
    Some(match code {
        100 => b"SIP/2.0 100 Trying\r\n",
        180 => b"SIP/2.0 180 Ringing\r\n",
        200 => b"SIP/2.0 200 OK\r\n",
        481 => b"SIP/2.0 481 Call/Transaction Does Not Exist\r\n",
        487 => b"SIP/2.0 487 Request Terminated\r\n",
        503 => b"SIP/2.0 503 Service Unavailable\r\n",
        _ => return None,
    })
}

/// When the request's header line `e` reads exactly `name: value` (the canonical name as
/// written, one SP after the colon), the bytes `name: value` in `buf`, which are then the line
/// the response must carry: copying them is the same output as writing the pieces.
#[inline(always)]
fn verbatim_line<'b>(buf: &'b [u8], e: &super::Entry, name: &[u8]) -> Option<&'b [u8]> {
    let (ls, ne, vs, ve) = (e.name.start(), e.name.end(), e.value.start(), e.value.end());
    if ne + 2 != vs || !eq_exact(buf.get(ls..ne)?, name) || buf.get(ne..vs)? != b": " {
        return None;
    }
    buf.get(ls..ve)
}

/// Writes `name: value CRLF` for header line `e`, copying the request's line (with its CRLF
/// when it has one) where it already reads that way.
#[inline(always)]
fn put_header(
    o: &mut Out<'_>,
    buf: &[u8],
    e: &super::Entry,
    name: &[u8],
) -> Result<(), WriteError> {
    match verbatim_line(buf, e, name) {
        Some(line) => {
            let ve = e.value.end();
            match buf.get(ve..ve + 2) {
                Some(b"\r\n") => o.put(buf.get(e.name.start()..ve + 2).unwrap_or(&[])),
                _ => {
                    o.put(line)?;
                    o.put(b"\r\n")
                }
            }
        }
        None => {
            o.put(name)?;
            o.put(b": ")?;
            o.put(e.value.get(buf))?;
            o.put(b"\r\n")
        }
    }
}

impl<const N: usize> Message<'_, N> {
    /// Builds a response to this request into `out` and returns its length.
    ///
    /// Copies every Via value in order, From, To (adding `spec.to_tag` when To has no tag),
    /// Call-ID and CSeq (RFC 3261 §8.2.6.2), and Record-Route for 101..=299 (§12.1.1); then the
    /// extra header lines, Content-Type when there is a body, and a correct Content-Length.
    pub fn write_response(
        &self,
        spec: &ResponseSpec<'_>,
        out: &mut [u8],
    ) -> Result<usize, WriteError> {
        if !self.is_request() {
            return Err(WriteError::NotARequest);
        }
        if !(100..=699).contains(&spec.code) {
            return Err(WriteError::InvalidInput("status code"));
        }
        let reason = if spec.reason.is_empty() {
            reason_phrase(spec.code)
        } else {
            spec.reason
        };
        if has_cr_or_lf(reason) {
            return Err(WriteError::InvalidInput("reason phrase"));
        }
        if let Some(t) = spec.to_tag {
            if t.is_empty() || !t.iter().all(|&b| is_token(b)) {
                return Err(WriteError::InvalidInput("tag"));
            }
        }
        for h in spec.headers {
            check_header_line(h)?;
        }
        if let Some(b) = &spec.body {
            if b.content_type.is_empty() || has_cr_or_lf(b.content_type) {
                return Err(WriteError::InvalidInput("content type"));
            }
        }
        let buf = self.as_bytes();
        let mut o = Out::new(out);
        match status_line(spec.code).filter(|_| spec.reason.is_empty()) {
            Some(line) => o.put(line)?,
            None => {
                o.put(b"SIP/2.0 ")?;
                o.put_u64(u64::from(spec.code))?;
                o.put(b" ")?;
                o.put(reason)?;
                o.put(b"\r\n")?;
            }
        }
        let copy_rr = (101..=299).contains(&spec.code);
        let mut to_done = false;
        for e in self.entries.iter().take(self.count as usize) {
            match e.id {
                HeaderId::Via | HeaderId::From | HeaderId::CallId | HeaderId::CSeq => {}
                HeaderId::RecordRoute if copy_rr => {}
                HeaderId::To if !to_done => {
                    to_done = true;
                    let value = e.value.get(buf);
                    match (&self.to, spec.to_tag) {
                        (Some(to), Some(tag)) if to.tag.is_none() => {
                            let split = (to.end as usize).saturating_sub(e.value.start());
                            match verbatim_line(buf, e, b"To") {
                                // `To: ` and the value up to the split, in one piece.
                                Some(_) => o.put(
                                    buf.get(
                                        e.name.start()..e.value.start() + split.min(value.len()),
                                    )
                                    .unwrap_or(&[]),
                                )?,
                                None => {
                                    o.put(b"To: ")?;
                                    o.put(value.get(..split).unwrap_or(value))?;
                                }
                            }
                            o.put(b";tag=")?;
                            o.put(tag)?;
                            o.put(value.get(split..).unwrap_or(&[]))?;
                            o.put(b"\r\n")?;
                        }
                        _ => put_header(&mut o, buf, e, b"To")?,
                    }
                    continue;
                }
                _ => continue,
            }
            put_header(&mut o, buf, e, e.id.canonical_name().as_bytes())?;
        }
        for h in spec.headers {
            o.put(h)?;
            o.put(b"\r\n")?;
        }
        match &spec.body {
            Some(b) => {
                o.put(b"Content-Type: ")?;
                o.put(b.content_type)?;
                o.put(b"\r\nContent-Length: ")?;
                o.put_u64(b.content.len() as u64)?;
                o.put(b"\r\n\r\n")?;
                o.put(b.content)?;
            }
            None => o.put(b"Content-Length: 0\r\n\r\n")?,
        }
        Ok(o.len())
    }
}

#[cfg(test)]
impl<const N: usize> Message<'_, N> {
    /// The previous, piece-by-piece builder: the reference [`Message::write_response`] is
    /// tested against.
    pub(crate) fn write_response_reference(
        &self,
        spec: &ResponseSpec<'_>,
        out: &mut [u8],
    ) -> Result<usize, WriteError> {
        if !self.is_request() {
            return Err(WriteError::NotARequest);
        }
        if !(100..=699).contains(&spec.code) {
            return Err(WriteError::InvalidInput("status code"));
        }
        let reason = if spec.reason.is_empty() {
            reason_phrase(spec.code)
        } else {
            spec.reason
        };
        if reason.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(WriteError::InvalidInput("reason phrase"));
        }
        if let Some(t) = spec.to_tag {
            if t.is_empty() || !t.iter().all(|&b| is_token(b)) {
                return Err(WriteError::InvalidInput("tag"));
            }
        }
        for h in spec.headers {
            check_header_line(h)?;
        }
        if let Some(b) = &spec.body {
            if b.content_type.is_empty() || b.content_type.iter().any(|&c| c == b'\r' || c == b'\n')
            {
                return Err(WriteError::InvalidInput("content type"));
            }
        }
        let buf = self.as_bytes();
        let mut o = Out::new(out);
        o.put(b"SIP/2.0 ")?;
        o.put_u64(u64::from(spec.code))?;
        o.put(b" ")?;
        o.put(reason)?;
        o.put(b"\r\n")?;
        let copy_rr = (101..=299).contains(&spec.code);
        let mut to_done = false;
        for e in self.entries.iter().take(self.count as usize) {
            let value = e.value.get(buf);
            match e.id {
                HeaderId::Via | HeaderId::From | HeaderId::CallId | HeaderId::CSeq => {}
                HeaderId::RecordRoute if copy_rr => {}
                HeaderId::To if !to_done => {
                    to_done = true;
                    o.put(b"To: ")?;
                    match (&self.to, spec.to_tag) {
                        (Some(to), Some(tag)) if to.tag.is_none() => {
                            let split = (to.end as usize).saturating_sub(e.value.start());
                            o.put(value.get(..split).unwrap_or(value))?;
                            o.put(b";tag=")?;
                            o.put(tag)?;
                            o.put(value.get(split..).unwrap_or(&[]))?;
                        }
                        _ => o.put(value)?,
                    }
                    o.put(b"\r\n")?;
                    continue;
                }
                _ => continue,
            }
            o.put(e.id.canonical_name().as_bytes())?;
            o.put(b": ")?;
            o.put(value)?;
            o.put(b"\r\n")?;
        }
        for h in spec.headers {
            o.put(h)?;
            o.put(b"\r\n")?;
        }
        match &spec.body {
            Some(b) => {
                o.put(b"Content-Type: ")?;
                o.put(b.content_type)?;
                o.put(b"\r\nContent-Length: ")?;
                o.put_u64(b.content.len() as u64)?;
                o.put(b"\r\n\r\n")?;
                o.put(b.content)?;
            }
            None => o.put(b"Content-Length: 0\r\n\r\n")?,
        }
        Ok(o.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;
    use proptest::prelude::*;

    /// Requests in the shapes that decide the copy path: canonical or compact or odd-case
    /// names, `:` with and without SP, CRLF or bare LF, folded and tagged To, trailing LWS.
    fn request() -> impl Strategy<Value = Vec<u8>> {
        let name = |full: &'static str, compact: &'static str| {
            prop::sample::select(vec![
                full.to_string(),
                compact.to_string(),
                full.to_uppercase(),
            ])
        };
        (
            (name("Via", "v"), name("From", "f"), name("To", "t")),
            (name("Call-ID", "i"), name("CSeq", "CSeq")),
            prop::sample::select(vec![": ", ":", " : ", ":  "]),
            prop::sample::select(vec!["\r\n", "\n"]),
            prop::sample::select(vec!["", ";tag=x1", " ;tag=y", "\r\n ;foo=1"]),
            prop::sample::select(vec!["", "  ", "\t"]),
            any::<bool>(),
        )
            .prop_map(
                |((via, from, to), (cid, cseq), sep, eol, to_tail, trail, rr)| {
                    let mut m = format!("INVITE sip:a@b SIP/2.0{eol}");
                    m += &format!("{via}{sep}SIP/2.0/UDP h:5060;branch=z9hG4bK1{trail}{eol}");
                    if rr {
                        m += &format!("Record-Route{sep}<sip:p;lr>{eol}");
                    }
                    m += &format!("Max-Forwards: 70{eol}");
                    m += &format!("{from}{sep}<sip:a@h>;tag=f{trail}{eol}");
                    m += &format!("{to}{sep}<sip:b@h>{to_tail}{trail}{eol}");
                    m += &format!("{cid}{sep}c1@h{eol}{cseq}{sep}1 INVITE{eol}");
                    m += &format!("Content-Length: 0{eol}{eol}");
                    m.into_bytes()
                },
            )
    }

    fn spec_of(code: u16, reason: &'static [u8], tag: bool, body: bool) -> ResponseSpec<'static> {
        ResponseSpec {
            code,
            reason,
            to_tag: tag.then_some(&b"t0a9"[..]),
            headers: &[b"Contact: <sip:p@10.0.0.2:5071>", b"Allow: INVITE, ACK"],
            body: body.then_some(Body {
                content_type: b"application/sdp",
                content: b"v=0\r\n",
            }),
        }
    }

    fn agree(req: &[u8], spec: &ResponseSpec<'_>) {
        let Ok(m) = Message::parse(req, &Limits::default()) else {
            return;
        };
        let (mut a, mut b) = ([0u8; 2048], [0u8; 2048]);
        // `needed` is documented as a lower bound, and it depends on which piece overflowed
        // (the builder now copies larger pieces), so only the error kind must agree.
        let norm = |r: Result<usize, WriteError>| match r {
            Err(WriteError::BufferTooSmall { capacity, .. }) => Err(WriteError::BufferTooSmall {
                needed: 0,
                capacity,
            }),
            other => other,
        };
        let fast = m.write_response(spec, &mut a);
        let reference = m.write_response_reference(spec, &mut b);
        assert_eq!(
            norm(fast),
            norm(reference),
            "{:?}",
            String::from_utf8_lossy(req)
        );
        if let Ok(n) = fast {
            assert_eq!(a[..n], b[..n], "{:?}", String::from_utf8_lossy(req));
        }
        // A buffer too small fails alike.
        let mut small = [0u8; 40];
        let mut small2 = [0u8; 40];
        assert_eq!(
            norm(m.write_response(spec, &mut small)),
            norm(m.write_response_reference(spec, &mut small2))
        );
    }

    proptest! {
        #[test]
        fn response_matches_the_piecewise_builder(
            req in request(),
            code in prop::sample::select(vec![100u16, 180, 200, 202, 481, 487, 503, 699]),
            reason in prop::sample::select(vec![&b""[..], b"Fine", b"OK"]),
            tag in any::<bool>(),
            body in any::<bool>(),
        ) {
            prop_assert!(Message::parse(&req, &Limits::default()).is_ok(), "{:?}", String::from_utf8_lossy(&req));
            agree(&req, &spec_of(code, reason, tag, body));
        }
    }

    #[test]
    fn response_matches_the_piecewise_builder_on_the_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/rfc4475");
        let mut n = 0;
        for e in std::fs::read_dir(dir)
            .expect("RFC 4475 corpus present")
            .flatten()
        {
            let data = std::fs::read(e.path()).unwrap_or_default();
            for code in [100, 200, 481, 404] {
                for tag in [false, true] {
                    agree(&data, &spec_of(code, b"", tag, code == 200));
                }
            }
            n += usize::from(Message::parse(&data, &Limits::default()).is_ok());
        }
        assert!(n > 20, "corpus exercises the builder: {n}");
    }
}
