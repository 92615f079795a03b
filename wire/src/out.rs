//! The bounded writer every builder uses, so that output never grows past the caller's buffer.
//!
//! Public because the dispatcher, the processors and the load generator all assemble datagrams
//! into fixed buffers too; one writer means one overflow rule: a piece that does not fit is
//! not written at all and the call returns [`WriteError::BufferTooSmall`], never a panic, a
//! silent truncation (except where asked for: [`Out::put_display_truncating`]) or an
//! allocation.

use core::fmt;

/// Why a rewrite or builder could not produce its output.
///
/// Builders run on the data path into fixed buffers, so running out of room is an expected,
/// typed outcome rather than a panic or an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The output buffer is too small; `needed` is a lower bound on the size required.
    #[error("output buffer too small (need at least {needed} bytes, have {capacity})")]
    BufferTooSmall {
        /// Lower bound of the bytes the output needs.
        needed: usize,
        /// Size of the buffer that was given.
        capacity: usize,
    },
    /// A caller-supplied piece would make the output malformed (e.g. a CR/LF inside a header
    /// line, or a tag that is not a token); the string names the offending input.
    #[error("invalid {0}")]
    InvalidInput(&'static str),
    /// The To header already carries a tag; adding another would create a second dialog id.
    #[error("To header already has a tag")]
    AlreadyTagged,
    /// The operation needs a request (e.g. building a response to it) but got a response.
    #[error("message is not a request")]
    NotARequest,
    /// The message lacks a header the operation needs to edit.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
}

/// `n` in decimal, written into the tail of `tmp`; returns the digits. For callers that
/// assemble into their own buffers (SDP bodies, MGCP parameters) and need the digits without
/// an [`Out`]: one formatter, two digits per step, no `fmt`.
///
/// ```
/// let mut tmp = [0u8; 20];
/// assert_eq!(wire::out::decimal(20_000, &mut tmp), b"20000");
/// ```
#[inline]
pub fn decimal(n: u64, tmp: &mut [u8; 20]) -> &[u8] {
    crate::scan::fmt_u64(n, tmp)
}

/// Appends to a caller-provided buffer; see the module docs.
///
/// ```
/// let mut buf = [0u8; 32];
/// let mut o = wire::out::Out::new(&mut buf);
/// o.put(b"CSeq: ")?;
/// o.put_u64(42)?;
/// o.put(b" c=")?;
/// o.put_hex(0xab, 4)?;
/// assert_eq!(o.as_bytes(), b"CSeq: 42 c=00ab");
/// # Ok::<(), wire::WriteError>(())
/// ```
pub struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl<'b> Out<'b> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Out { buf, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of the underlying buffer.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// What was written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    fn too_small(&self, extra: usize) -> WriteError {
        WriteError::BufferTooSmall {
            needed: self.len.saturating_add(extra),
            capacity: self.buf.len(),
        }
    }

    /// The next `n` bytes of the buffer, committed as written; an error (and nothing
    /// written) when they do not fit.
    fn reserve(&mut self, n: usize) -> Result<&mut [u8], WriteError> {
        let end = self.len.saturating_add(n);
        if end > self.buf.len() {
            return Err(self.too_small(n));
        }
        let start = self.len;
        self.len = end;
        Ok(self.buf.get_mut(start..end).unwrap_or(&mut []))
    }

    /// Appends `s`.
    #[inline]
    pub fn put(&mut self, s: &[u8]) -> Result<(), WriteError> {
        let dst = self.reserve(s.len())?;
        if dst.len() == s.len() {
            dst.copy_from_slice(s);
        }
        Ok(())
    }

    /// Appends `n` in decimal, without leading zeros.
    #[inline]
    pub fn put_u64(&mut self, n: u64) -> Result<(), WriteError> {
        let mut tmp = [0u8; 20];
        let s = crate::scan::fmt_u64(n, &mut tmp);
        self.put(s)
    }

    /// Appends exactly `digits` lowercase hex digits of `v` (the low bits; digits beyond the
    /// sixteenth are `0`). Fixed width, so identifiers built with it can be sliced back apart.
    #[inline]
    pub fn put_hex(&mut self, v: u64, digits: usize) -> Result<(), WriteError> {
        let dst = self.reserve(digits)?;
        let n = dst.len();
        for (i, c) in dst.iter_mut().enumerate() {
            let shift = (n - 1 - i).saturating_mul(4);
            *c = match u32::try_from(shift).ok().and_then(|s| v.checked_shr(s)) {
                Some(x) => HEX.get((x & 0xf) as usize).copied().unwrap_or(b'0'),
                None => b'0',
            };
        }
        Ok(())
    }

    /// Appends `v`'s `Display` output (an address, an error for a reason phrase) without
    /// allocating. When it does not fit, nothing of it is kept.
    pub fn put_display(&mut self, v: &dyn fmt::Display) -> Result<(), WriteError> {
        let start = self.len;
        let res = self.display(v, false);
        if res.is_err() {
            self.len = start;
        }
        res
    }

    /// Appends as much of `v`'s `Display` output as fits (cut at a character boundary) and
    /// returns the bytes written: for text whose tail may be lost, like a reason phrase that
    /// cites an error.
    pub fn put_display_truncating(&mut self, v: &dyn fmt::Display) -> usize {
        let start = self.len;
        let _ = self.display(v, true);
        self.len - start
    }

    fn display(&mut self, v: &dyn fmt::Display, truncate: bool) -> Result<(), WriteError> {
        let mut sink = Sink {
            out: self,
            truncate,
            overflow: None,
        };
        let res = fmt::write(&mut sink, format_args!("{v}"));
        match (sink.overflow, res) {
            (Some(e), _) => Err(e),
            // The Display impl itself failed.
            (None, Err(_)) => Err(WriteError::InvalidInput("Display output")),
            (None, Ok(())) => Ok(()),
        }
    }
}

/// `fmt::Write` over an [`Out`]: stops at the first piece that does not fit.
struct Sink<'o, 'b> {
    out: &'o mut Out<'b>,
    truncate: bool,
    overflow: Option<WriteError>,
}

impl fmt::Write for Sink<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.overflow.is_some() {
            return Err(fmt::Error);
        }
        match self.out.put(s.as_bytes()) {
            Ok(()) => Ok(()),
            Err(e) => {
                if self.truncate {
                    let room = self.out.capacity().saturating_sub(self.out.len());
                    let mut cut = room.min(s.len());
                    while cut > 0 && !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    let _ = self.out.put(s.as_bytes().get(..cut).unwrap_or(&[]));
                }
                self.overflow = Some(e);
                Err(fmt::Error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_that_do_not_fit_are_not_written() {
        let mut b = [0u8; 8];
        let mut o = Out::new(&mut b);
        o.put(b"abc").unwrap();
        assert_eq!(
            o.put(b"123456"),
            Err(WriteError::BufferTooSmall {
                needed: 9,
                capacity: 8
            })
        );
        assert_eq!(o.as_bytes(), b"abc");
        assert!(o.put_u64(u64::MAX).is_err());
        assert!(o.put_hex(1, usize::MAX).is_err());
        o.put_u64(0).unwrap();
        o.put_hex(0x1f, 2).unwrap();
        assert_eq!(o.as_bytes(), b"abc01f");
        assert_eq!(o.len(), 6);
    }

    #[test]
    fn hex_is_fixed_width() {
        let mut b = [0u8; 64];
        let mut o = Out::new(&mut b);
        o.put_hex(0xab, 4).unwrap();
        o.put(b"/").unwrap();
        o.put_hex(u64::MAX, 18).unwrap();
        o.put(b"/").unwrap();
        o.put_hex(0x1234, 2).unwrap();
        o.put_hex(7, 0).unwrap();
        assert_eq!(o.as_bytes(), b"00ab/00ffffffffffffffff/34");
    }

    #[test]
    fn display_whole_or_nothing_unless_truncating() {
        let addr: core::net::SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        let mut b = [0u8; 32];
        let mut o = Out::new(&mut b);
        o.put_display(&addr).unwrap();
        assert_eq!(o.as_bytes(), b"[2001:db8::1]:5060");
        let mut b = [0u8; 10];
        let mut o = Out::new(&mut b);
        o.put(b"x").unwrap();
        assert!(o.put_display(&addr).is_err());
        assert_eq!(o.as_bytes(), b"x");
        assert_eq!(o.put_display_truncating(&addr), 9);
        assert_eq!(o.as_bytes(), b"x[2001:db8");
        let mut b = [0u8; 3];
        let mut o = Out::new(&mut b);
        assert_eq!(o.put_display_truncating(&"aé"), 3);
        let mut b = [0u8; 2];
        let mut o = Out::new(&mut b);
        assert_eq!(
            o.put_display_truncating(&"aé"),
            1,
            "never splits a character"
        );
    }
}
