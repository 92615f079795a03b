//! `400 Bad Request` for requests the wire scanner rejected (RFC 3261 §8.2, §21.4.1).
//!
//! `wire` builds responses only from a valid view, so this module salvages what a response
//! needs from the raw bytes: the Via lines (to route the answer, and to let the client match
//! it), From, To, Call-ID and CSeq copied verbatim. The top Via is validated by feeding it to
//! the wire scanner inside a minimal synthetic request; without a usable Via there is nowhere
//! to answer and the message is dropped (the caller counts it).
use std::net::SocketAddr;

use wire::{
    sip::{HeaderId, Message},
    Limits, WriteError,
};

use super::route::response_destination;

/// A header line as found: its id and the raw bytes (continuation lines included).
struct RawHeader<'a> {
    id: HeaderId,
    line: &'a [u8],
    value: &'a [u8],
}

/// Splits `buf` into lines without terminators, tolerating bare LF.
fn lines(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let rest = &buf[pos..];
        let (len, adv) = match memchr_lf(rest) {
            Some(i) => (i, i + 1),
            None => (rest.len(), rest.len()),
        };
        let line = &rest[..len];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let start = pos;
        pos += adv;
        Some((start, line))
    })
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// The header section as raw headers (folded lines joined by range), after the start line.
fn headers<'a>(buf: &'a [u8]) -> (Option<&'a [u8]>, Vec<RawHeader<'a>>) {
    let mut start_line = None;
    let mut out: Vec<RawHeader<'a>> = Vec::new();
    // (start offset, end offset) of the header being collected.
    let mut cur: Option<(usize, usize)> = None;
    let flush = |cur: Option<(usize, usize)>, out: &mut Vec<RawHeader<'a>>| {
        let Some((s, e)) = cur else { return };
        let line = &buf[s..e];
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return;
        };
        let name = line[..colon].trim_ascii();
        out.push(RawHeader {
            id: HeaderId::classify(name),
            line,
            value: line[colon + 1..].trim_ascii(),
        });
    };
    for (off, line) in lines(buf) {
        if start_line.is_none() {
            if line.is_empty() {
                continue; // keep-alive CRLFs before the start line
            }
            start_line = Some(line);
            continue;
        }
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some((_, e)) = cur.as_mut() {
                *e = off + line.len();
                continue;
            }
        }
        flush(cur.take(), &mut out);
        cur = Some((off, off + line.len()));
    }
    flush(cur, &mut out);
    (start_line, out)
}

/// What [`write_bad_request`] decided.
pub(crate) enum Salvage {
    /// A 400 was written: send it to this address.
    Answer(SocketAddr, usize),
    /// Not answerable (a response, an ACK, or no usable Via).
    Drop,
}

/// Writes `400 <reason>` for the unparsable request `buf` from `src` into `out`.
pub(crate) fn write_bad_request(
    buf: &[u8],
    reason: &str,
    src: SocketAddr,
    out: &mut [u8],
) -> Result<Salvage, WriteError> {
    let (Some(start), hdrs) = headers(buf) else {
        return Ok(Salvage::Drop);
    };
    let method = start.split(|&b| b == b' ').next().unwrap_or(&[]);
    if method.len() >= 4 && method[..4].eq_ignore_ascii_case(b"SIP/") || method == b"ACK" {
        return Ok(Salvage::Drop);
    }
    let Some(top) = hdrs.iter().find(|h| h.id == HeaderId::Via) else {
        return Ok(Salvage::Drop);
    };
    let mut probe = Vec::with_capacity(top.value.len() + 64);
    probe.extend_from_slice(b"OPTIONS sip:x SIP/2.0\r\nVia: ");
    probe.extend_from_slice(top.value);
    probe.extend_from_slice(b"\r\nCSeq: 1 OPTIONS\r\n\r\n");
    let Ok(view) = Message::parse(&probe, &Limits::default()) else {
        return Ok(Salvage::Drop);
    };
    let dst = response_destination(&view.top_via(), src);
    let mut w = Writer { out, len: 0 };
    w.put(b"SIP/2.0 400 ")?;
    let clean: Vec<u8> = reason
        .bytes()
        .map(|b| if (0x20..0x7f).contains(&b) { b } else { b' ' })
        .collect();
    w.put(&clean)?;
    w.put(b"\r\n")?;
    for h in hdrs.iter().filter(|h| h.id == HeaderId::Via) {
        w.put(h.line)?;
        w.put(b"\r\n")?;
    }
    for id in [
        HeaderId::From,
        HeaderId::To,
        HeaderId::CallId,
        HeaderId::CSeq,
    ] {
        if let Some(h) = hdrs.iter().find(|h| h.id == id) {
            w.put(h.line)?;
            w.put(b"\r\n")?;
        }
    }
    w.put(b"Content-Length: 0\r\n\r\n")?;
    Ok(Salvage::Answer(dst, w.len))
}

struct Writer<'b> {
    out: &'b mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, s: &[u8]) -> Result<(), WriteError> {
        let end = self.len + s.len();
        let capacity = self.out.len();
        match self.out.get_mut(self.len..end) {
            Some(d) => {
                d.copy_from_slice(s);
                self.len = end;
                Ok(())
            }
            None => Err(WriteError::BufferTooSmall {
                needed: end,
                capacity,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salvages_via_and_dialog_headers() {
        let req = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx\r\nv: SIP/2.0/UDP 10.0.0.1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: abc\r\nCSeq: nonsense\r\n\r\n";
        let mut out = [0u8; 1024];
        let src = "192.0.2.1:5070".parse().unwrap();
        let Salvage::Answer(dst, n) =
            write_bad_request(req, "Bad Request (malformed CSeq header)", src, &mut out).unwrap()
        else {
            panic!("expected an answer")
        };
        assert_eq!(dst, src);
        let s = std::str::from_utf8(&out[..n]).unwrap();
        assert!(s.starts_with("SIP/2.0 400 Bad Request (malformed CSeq header)\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx\r\nv: SIP/2.0/UDP 10.0.0.1\r\n"), "{s}");
        assert!(s.contains("CSeq: nonsense\r\n") && s.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn drops_what_cannot_be_answered() {
        let src = "192.0.2.1:5070".parse().unwrap();
        let mut out = [0u8; 1024];
        for m in [
            &b""[..],
            b"\x00\xff garbage",
            b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nVia: bogus\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\n\r\n",
        ] {
            assert!(matches!(
                write_bad_request(m, "x", src, &mut out),
                Ok(Salvage::Drop)
            ));
        }
    }
}
