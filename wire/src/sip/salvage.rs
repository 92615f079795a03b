//! `400 Bad Request` for a request the scanner rejected (RFC 3261 §8.2, §16.3, §21.4.1).
//!
//! A failed scan leaves no checked view to build a response from, yet an element should answer
//! a malformed request with 400 when it can. This module salvages the raw header lines a
//! response needs (every Via, then From, To, Call-ID and CSeq, each copied verbatim with any
//! folding) by plain line matching, and writes the 400 around them, citing the scan error in
//! the reason phrase. It is the one implementation both the dispatcher (which answers the
//! packet source) and the processors (which answer the top Via, so they need it parsed) use.
//!
//! What is never answered, and why:
//! - a response, or an ACK (by start line or by CSeq method): §17.2.1 / §17.1.1.3, nothing
//!   answers them;
//! - a request without Via, From, To, Call-ID or CSeq: the UAC could not match the answer to a
//!   transaction, and the 400 would not scan as a response itself.
//!
//! Total like the scanner: any bytes give a [`Salvaged`] or a [`SalvageError`]; no allocation,
//! no panic.

use super::headers::HeaderId;
use super::via::{self, Via};
use crate::out::{Out, WriteError};
use crate::scan::{is_token, trim_lws};

/// Longest reason phrase written; a scan error's Display text is far shorter.
pub const MAX_REASON: usize = 120;

/// What [`write_bad_request`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Salvaged<'m> {
    /// Length of the 400 in the output buffer.
    pub len: usize,
    /// The request's top Via, when it parses: where a UAS sends the answer (RFC 3261 §18.2.2).
    /// `None` when it does not, in which case only the packet source is left to answer.
    pub top_via: Option<Via<'m>>,
}

/// Why a malformed request got no 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SalvageError {
    /// Nothing but blank lines: no start line.
    #[error("no start line")]
    Empty,
    /// The message is a response (start line `SIP/...`); responses are never answered.
    #[error("message is a response")]
    Response,
    /// The request is an ACK (start line, or the CSeq line at byte `at`); ACKs are never
    /// answered.
    #[error("ACK at byte {at} is never answered")]
    Ack {
        /// Offset of the start line or CSeq line that names ACK.
        at: usize,
    },
    /// A header the 400 must copy is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// The 400 does not fit the output buffer, or the To-tag given is not a token.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Headers the 400 copies, in the order written.
const WANTED: [(HeaderId, &str); 5] = [
    (HeaderId::Via, "Via"),
    (HeaderId::From, "From"),
    (HeaderId::To, "To"),
    (HeaderId::CallId, "Call-ID"),
    (HeaderId::CSeq, "CSeq"),
];

/// One header as found: its id, the whole (possibly folded) line without the final line end,
/// and the trimmed value range, as offsets into the message.
#[derive(Clone, Copy)]
struct RawHeader {
    id: HeaderId,
    start: usize,
    end: usize,
    value: (usize, usize),
}

/// The end of the line starting at `pos` without its CR LF / LF, and where the next begins.
fn line_end(msg: &[u8], pos: usize) -> (usize, usize) {
    let rest = msg.get(pos..).unwrap_or(&[]);
    let (len, adv) = match memchr::memchr(b'\n', rest) {
        Some(i) => (i, i + 1),
        None => (rest.len(), rest.len()),
    };
    let content = if len > 0 && rest.get(len - 1) == Some(&b'\r') {
        len - 1
    } else {
        len
    };
    (pos + content, pos + adv)
}

/// The start line's range, after any keep-alive blank lines, and where the headers begin.
fn start_line(msg: &[u8]) -> Option<(usize, usize, usize)> {
    let mut pos = 0;
    while pos < msg.len() {
        let (end, next) = line_end(msg, pos);
        if end > pos {
            return Some((pos, end, next));
        }
        pos = next;
    }
    None
}

/// The header lines from `pos` up to the blank line (or the end), folded lines joined.
fn headers(msg: &[u8], mut pos: usize) -> impl Iterator<Item = RawHeader> + '_ {
    core::iter::from_fn(move || loop {
        if pos >= msg.len() {
            return None;
        }
        let start = pos;
        let (mut end, mut next) = line_end(msg, pos);
        if end == start {
            pos = msg.len(); // the blank line: the header section is over
            return None;
        }
        // Continuation lines (starting with SP or HT) belong to this header.
        while matches!(msg.get(next), Some(b' ' | b'\t')) {
            let (e, n) = line_end(msg, next);
            end = e;
            next = n;
        }
        pos = next;
        let line = msg.get(start..end).unwrap_or(&[]);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue; // not a header line: nothing to copy from it
        };
        let name = line.get(..colon).unwrap_or(&[]).trim_ascii();
        return Some(RawHeader {
            id: HeaderId::classify(name),
            start,
            end,
            value: trim_lws(msg, start + colon + 1, end),
        });
    })
}

/// Whether the CSeq value's method (its last word) is ACK.
fn cseq_is_ack(value: &[u8]) -> bool {
    value
        .split(|b| b.is_ascii_whitespace())
        .rfind(|w| !w.is_empty())
        .is_some_and(|m| m.eq_ignore_ascii_case(b"ACK"))
}

fn has_tag(line: &[u8]) -> bool {
    line.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag="))
}

/// Writes `SIP/2.0 400 <reason>` for the unscannable request `msg` into `out`.
///
/// `reason` is typically `"Bad Request (<scan error>)"` or the error's Display text; bytes
/// outside printable ASCII become `?` and it is cut at [`MAX_REASON`] bytes, so a reason
/// can never break the status line. `to_tag`, when given, is appended to a To header that has
/// no tag (RFC 3261 §8.2.6.2; it must be a token). The top Via is parsed and returned so that
/// a UAS can route the answer; a dispatcher answering the packet source may ignore it.
pub fn write_bad_request<'m>(
    msg: &'m [u8],
    reason: &str,
    to_tag: Option<&[u8]>,
    out: &mut [u8],
) -> Result<Salvaged<'m>, SalvageError> {
    let (ls, le, hs) = start_line(msg).ok_or(SalvageError::Empty)?;
    let line = msg.get(ls..le).unwrap_or(&[]);
    let method = line.split(|&b| b == b' ').next().unwrap_or(&[]);
    if method
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return Err(SalvageError::Response);
    }
    if method == b"ACK" {
        return Err(SalvageError::Ack { at: ls });
    }
    if to_tag.is_some_and(|t| t.is_empty() || !t.iter().all(|&b| is_token(b))) {
        return Err(WriteError::InvalidInput("To-tag").into());
    }
    let mut top_via = None;
    let mut found = [false; WANTED.len()];
    for h in headers(msg, hs) {
        let Some(i) = WANTED.iter().position(|(id, _)| *id == h.id) else {
            continue;
        };
        if h.id == HeaderId::Via && !found[0] && msg.len() <= usize::from(u16::MAX) {
            // Spans are u16: only a message the scanner could have taken is parsed.
            top_via = via::parse_list(msg, h.value.0, h.value.1)
                .ok()
                .map(|raw| Via::from_raw(msg, &raw));
        }
        let value = msg.get(h.value.0..h.value.1).unwrap_or(&[]);
        if h.id == HeaderId::CSeq && !found[4] && cseq_is_ack(value) {
            return Err(SalvageError::Ack { at: h.start });
        }
        if let Some(f) = found.get_mut(i) {
            *f = true;
        }
    }
    if let Some(missing) = WANTED.iter().zip(found).find(|(_, f)| !f) {
        return Err(SalvageError::MissingHeader(missing.0 .1));
    }

    let mut o = Out::new(out);
    o.put(b"SIP/2.0 400 ")?;
    let mut clean = [0u8; MAX_REASON];
    let mut n = 0;
    for (slot, &b) in clean.iter_mut().zip(reason.as_bytes()) {
        *slot = if (0x20..0x7f).contains(&b) { b } else { b'?' };
        n += 1;
    }
    o.put(clean.get(..n).unwrap_or(&[]))?;
    o.put(b"\r\n")?;
    // One pass per wanted header keeps Via order and writes the headers in canonical order;
    // only the first of the single-valued ones is copied.
    for (id, _) in WANTED {
        for h in headers(msg, hs).filter(|h| h.id == id) {
            let line = msg.get(h.start..h.end).unwrap_or(&[]);
            o.put(line)?;
            if let Some(tag) = to_tag.filter(|_| id == HeaderId::To && !has_tag(line)) {
                o.put(b";tag=")?;
                o.put(tag)?;
            }
            o.put(b"\r\n")?;
            if id != HeaderId::Via {
                break;
            }
        }
    }
    o.put(b"Content-Length: 0\r\n\r\n")?;
    Ok(Salvaged {
        len: o.len(),
        top_via,
    })
}

/// [`write_bad_request`] with the dispatcher's needs: always a To-tag, the length or `None`
/// for anything unanswerable (the caller counts and drops it).
pub fn bad_request(msg: &[u8], reason: &str, to_tag: &[u8], out: &mut [u8]) -> Option<usize> {
    write_bad_request(msg, reason, Some(to_tag), out)
        .ok()
        .map(|s| s.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sip::Message, Limits};

    const BAD: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK1\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
Call-ID: c1@x\r\n\
CSeq: 1 BYE\r\n\
Content-Length: 0\r\n\r\n";

    fn text(out: &[u8]) -> &str {
        core::str::from_utf8(out).unwrap()
    }

    #[test]
    fn copies_headers_and_cites_the_reason() {
        let mut out = [0u8; 1024];
        let reason = "CSeq method does not match request method at byte 190";
        let n = bad_request(BAD, reason, b"sy-1", &mut out).unwrap();
        let t = text(&out[..n]);
        assert!(
            t.starts_with("SIP/2.0 400 CSeq method does not match request method at byte 190\r\n")
        );
        let via1 = t.find("Via: SIP/2.0/UDP 198.18.0.2").unwrap();
        let via2 = t.find("v: SIP/2.0/UDP 10.0.0.1").unwrap();
        assert!(via1 < via2, "Via order kept");
        assert!(t.contains("To: <sip:bob@example.com>;tag=sy-1\r\n"));
        assert!(t.contains("Call-ID: c1@x\r\nCSeq: 1 BYE\r\n"));
        assert!(t.ends_with("Content-Length: 0\r\n\r\n"));
        // The answer itself scans as a valid response.
        let m = Message::parse(&out[..n], &Limits::default()).unwrap();
        assert!(!m.is_request());
    }

    #[test]
    fn salvages_via_and_dialog_headers_for_a_uas() {
        let req = b"\r\nINVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx\r\nv: SIP/2.0/UDP 10.0.0.1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: abc\r\nCSeq: nonsense\r\n\r\n";
        let mut out = [0u8; 1024];
        let s =
            write_bad_request(req, "Bad Request (malformed CSeq header)", None, &mut out).unwrap();
        let t = text(&out[..s.len]);
        assert!(t.starts_with("SIP/2.0 400 Bad Request (malformed CSeq header)\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx\r\nv: SIP/2.0/UDP 10.0.0.1\r\n"), "{t}");
        assert!(t.contains("To: <sip:a@b>\r\n"), "no tag asked for");
        assert!(t.contains("CSeq: nonsense\r\n") && t.ends_with("Content-Length: 0\r\n\r\n"));
        let via = s.top_via.unwrap();
        assert_eq!(via.sent_by(), (&b"192.0.2.1"[..], Some(5070)));
        assert_eq!(via.branch(), Some(&b"z9hG4bKx"[..]));
    }

    #[test]
    fn folded_lines_are_copied_whole_and_the_reason_is_cleaned() {
        let req = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1\r\n ;branch=z9hG4bKy\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>;tag=9\r\nCall-ID: abc\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let mut out = [0u8; 1024];
        let long = "\u{7}x".repeat(100);
        let s = write_bad_request(req, &long, Some(b"t1"), &mut out).unwrap();
        let t = text(&out[..s.len]);
        let status = t.lines().next().unwrap();
        assert_eq!(status.len(), "SIP/2.0 400 ".len() + MAX_REASON);
        assert!(status.ends_with("?x?x"));
        assert!(t.contains("Via: SIP/2.0/UDP 192.0.2.1\r\n ;branch=z9hG4bKy\r\n"));
        assert!(
            t.contains("To: <sip:a@b>;tag=9\r\n"),
            "an existing tag is kept"
        );
        assert_eq!(s.top_via.unwrap().branch(), Some(&b"z9hG4bKy"[..]));
    }

    #[test]
    fn refuses_what_cannot_be_answered() {
        let mut out = [0u8; 1024];
        let w = |m: &[u8], out: &mut [u8]| write_bad_request(m, "r", Some(b"t"), out).err();
        let no_via = b"INVITE sip:b@x SIP/2.0\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(
            w(no_via, &mut out),
            Some(SalvageError::MissingHeader("Via"))
        );
        let ack = b"ACK sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n";
        assert_eq!(w(ack, &mut out), Some(SalvageError::Ack { at: 0 }));
        let cseq_ack = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 ACK\r\n\r\n";
        assert_eq!(w(cseq_ack, &mut out), Some(SalvageError::Ack { at: 44 }));
        assert_eq!(
            w(b"SIP/2.0 200 OK\r\n\r\n", &mut out),
            Some(SalvageError::Response)
        );
        assert_eq!(w(b"\r\n\r\n", &mut out), Some(SalvageError::Empty));
        let mut tiny = [0u8; 20];
        assert!(matches!(
            w(BAD, &mut tiny),
            Some(SalvageError::Write(WriteError::BufferTooSmall { .. }))
        ));
        assert_eq!(bad_request(BAD, "r", b"t", &mut tiny), None);
        assert_eq!(
            write_bad_request(BAD, "r", Some(b"a b"), &mut out).err(),
            Some(SalvageError::Write(WriteError::InvalidInput("To-tag")))
        );
        for m in [
            &b""[..],
            b"\x00\xff garbage",
            b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\n\r\n",
        ] {
            assert!(write_bad_request(m, "x", None, &mut out).is_err(), "{m:?}");
        }
        // A Via that does not parse is copied, but gives no destination.
        let bogus = b"INVITE sip:a@b SIP/2.0\r\nVia: bogus\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n\r\n";
        let s = write_bad_request(bogus, "x", None, &mut out).unwrap();
        assert_eq!(s.top_via, None);
    }

    #[test]
    fn any_bytes_never_panic() {
        let mut out = [0u8; 2048];
        for cut in 0..BAD.len() {
            let _ = bad_request(&BAD[..cut], "r", b"t", &mut out);
            let mut m = BAD.to_vec();
            m[cut] = b':';
            let _ = bad_request(&m, "r", b"t", &mut out);
            m[cut] = b'\n';
            let _ = write_bad_request(&m, "r", None, &mut out);
        }
    }
}
