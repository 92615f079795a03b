//! Response building per RFC 3261 §8.2.6: processors answer the source directly, so they need
//! a cheap way to turn a request view into `100 Trying`, `200 OK`, `503` ... without a SIP
//! stack or allocation.

use super::rewrite::check_header_line;
use super::{HeaderId, Message};
use crate::out::{Out, WriteError};
use crate::scan::is_token;

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
