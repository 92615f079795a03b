//! In-place-style rewrites written into a caller buffer: the dispatcher adds `received`/`rport`
//! (RFC 3261 §18.2.1, RFC 3581), stamps the chosen processor's port into a header (claim 2),
//! and a processor adds its To-tag. Each copies the message once with at most a few splices;
//! Content-Length is unaffected because only headers change.

use super::{locate::Located, via::ViaRaw, Message};
use crate::out::{Out, WriteError};
use crate::scan::{fmt_u64, is_token};

/// Where [`Message::write_with_header`] puts the new header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertAt {
    /// Right after the start line: cheapest for a next hop that scans only the top headers.
    AfterStartLine,
    /// Just before the blank line that ends the headers.
    BeforeBlankLine,
}

#[derive(Clone, Copy)]
struct Edit<'x> {
    start: usize,
    end: usize,
    parts: [&'x [u8]; 3],
}

/// Copies `src` into `out`, replacing each `start..end` by its parts. Edits are sorted by
/// start (stable), must not overlap, and are few, so an insertion sort without allocation.
fn apply(src: &[u8], edits: &mut [Edit<'_>], out: &mut [u8]) -> Result<usize, WriteError> {
    for i in 1..edits.len() {
        let mut j = i;
        while j > 0 && edits.get(j - 1).map(|e| e.start) > edits.get(j).map(|e| e.start) {
            edits.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut o = Out::new(out);
    let mut pos = 0;
    for e in edits.iter() {
        o.put(src.get(pos..e.start).unwrap_or(&[]))?;
        for p in e.parts {
            o.put(p)?;
        }
        pos = e.end.max(pos);
    }
    o.put(src.get(pos..).unwrap_or(&[]))?;
    Ok(o.len())
}

fn is_host_value(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']'))
}

impl<const N: usize> Message<'_, N> {
    /// Writes the message with the top Via's `received` set to `received` (the source IP the
    /// datagram came from) and, when `rport` is given, its `rport` set to that source port.
    ///
    /// Existing `received`/`rport` parameters are replaced, missing ones appended to the top
    /// via-parm. Per RFC 3581 the caller passes `rport` only when the request asked for it
    /// ([`super::Via::rport`] is `Some`), or when policy wants it anyway. Returns the length
    /// written into `out`.
    pub fn write_with_received(
        &self,
        received: &[u8],
        rport: Option<u16>,
        out: &mut [u8],
    ) -> Result<usize, WriteError> {
        self.write_relayed(received, rport, None, out)
    }

    /// [`Message::write_with_received`] and, when `header` is given,
    /// [`Message::write_with_header`] in one copy: what the dispatcher does to an initial
    /// request for a processor on another host with claim 2's port (one scan, one copy instead
    /// of two of each).
    pub fn write_relayed(
        &self,
        received: &[u8],
        rport: Option<u16>,
        header: Option<(&[u8], InsertAt)>,
        out: &mut [u8],
    ) -> Result<usize, WriteError> {
        let via = self.top_via_raw().ok_or(WriteError::MissingHeader("Via"))?;
        let header = header.map(|(line, at)| {
            let pos = match at {
                InsertAt::AfterStartLine => self.first_header_offset(),
                InsertAt::BeforeBlankLine => self.headers_end_offset(),
            };
            (line, pos)
        });
        relay(self.as_bytes(), via, received, rport, header, out)
    }

    /// Writes the message with one extra header line (e.g. `X-Processor-Port: 5071`, given
    /// without CRLF) inserted at `at`.
    pub fn write_with_header(
        &self,
        line: &[u8],
        at: InsertAt,
        out: &mut [u8],
    ) -> Result<usize, WriteError> {
        check_header_line(line)?;
        let pos = match at {
            InsertAt::AfterStartLine => self.first_header_offset(),
            InsertAt::BeforeBlankLine => self.headers_end_offset(),
        };
        let mut edits = [Edit {
            start: pos,
            end: pos,
            parts: [line, b"\r\n", b""],
        }];
        apply(self.as_bytes(), &mut edits, out)
    }

    /// Writes the message with `;tag=<tag>` appended to the To header, as a UAS does when it
    /// answers a dialog-creating request (RFC 3261 §8.2.6.2). Fails with
    /// [`WriteError::AlreadyTagged`] if To has a tag: a second one would fork the dialog id.
    pub fn write_with_to_tag(&self, tag: &[u8], out: &mut [u8]) -> Result<usize, WriteError> {
        if tag.is_empty() || !tag.iter().all(|&b| is_token(b)) {
            return Err(WriteError::InvalidInput("tag"));
        }
        let to = self.to_raw().ok_or(WriteError::MissingHeader("To"))?;
        if to.tag.is_some() {
            return Err(WriteError::AlreadyTagged);
        }
        let pos = to.end as usize;
        let mut edits = [Edit {
            start: pos,
            end: pos,
            parts: [b";tag=", tag, b""],
        }];
        apply(self.as_bytes(), &mut edits, out)
    }
}

/// A header line a builder may emit: `token ":" value` without CR or LF.
pub(crate) fn check_header_line(line: &[u8]) -> Result<(), WriteError> {
    let name_len = line.iter().take_while(|&&b| is_token(b)).count();
    let ok = name_len > 0
        && line
            .get(name_len..)
            .is_some_and(|r| r.trim_ascii_start().starts_with(b":"))
        && !crate::scan::has_cr_or_lf(line);
    if ok {
        Ok(())
    } else {
        Err(WriteError::InvalidInput("header line"))
    }
}

/// The relay edits both views share: `received`/`rport` in the top via-parm `via`, and
/// optionally a header line at byte `pos`, in one copy of `src`.
fn relay(
    src: &[u8],
    via: &ViaRaw,
    received: &[u8],
    rport: Option<u16>,
    header: Option<(&[u8], usize)>,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    if !is_host_value(received) {
        return Err(WriteError::InvalidInput("received address"));
    }
    let mut tmp = [0u8; 20];
    let port: &[u8] = match rport {
        Some(p) => fmt_u64(u64::from(p), &mut tmp),
        None => &[],
    };
    let at = via.parm.end();
    let none = Edit {
        start: at,
        end: at,
        parts: [b"", b"", b""],
    };
    let mut edits: [Edit<'_>; 3] = [
        Edit {
            start: at,
            end: at,
            parts: [b";received=", received, b""],
        },
        none,
        none,
    ];
    let [r, p, h] = &mut edits;
    if let Some(prm) = via.received {
        r.start = prm.whole.start();
        r.end = prm.whole.end();
    }
    if rport.is_some() {
        p.parts = [b";rport=", port, b""];
        if let Some(prm) = via.rport {
            p.start = prm.whole.start();
            p.end = prm.whole.end();
        }
    }
    if let Some((line, pos)) = header {
        check_header_line(line)?;
        *h = Edit {
            start: pos,
            end: pos,
            parts: [line, b"\r\n", b""],
        };
    }
    apply(src, &mut edits, out)
}

impl Located<'_> {
    /// [`Message::write_relayed`] on the bytes a locate scan accepted, without a second scan
    /// of the message: only the top via-parm is parsed (its parameters are what change), and
    /// the header goes right after the start line. This is how the dispatcher rewrites an
    /// initial request (claim 2's port, the true source for a processor on another host) with
    /// one scan per datagram. A top Via that does not parse is [`WriteError::MissingHeader`].
    pub fn write_relayed(
        &self,
        received: &[u8],
        rport: Option<u16>,
        header: Option<&[u8]>,
        out: &mut [u8],
    ) -> Result<usize, WriteError> {
        let buf = self.as_bytes();
        let (via, _) = super::via::parse_parm(buf, self.top_via.start(), self.top_via.end())
            .map_err(|_| WriteError::MissingHeader("Via"))?;
        relay(
            buf,
            &via,
            received,
            rport,
            header.map(|l| (l, self.first_header)),
            out,
        )
    }
}
