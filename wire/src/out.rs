//! Bounded writer used by every builder, so that output never grows past the caller's buffer.

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

pub(crate) struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Out<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Out { buf, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn put(&mut self, s: &[u8]) -> Result<(), WriteError> {
        let end = self.len.saturating_add(s.len());
        let capacity = self.buf.len();
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(s);
                self.len = end;
                Ok(())
            }
            None => Err(WriteError::BufferTooSmall {
                needed: end,
                capacity,
            }),
        }
    }

    pub(crate) fn put_u64(&mut self, n: u64) -> Result<(), WriteError> {
        let mut tmp = [0u8; 20];
        let s = crate::scan::fmt_u64(n, &mut tmp);
        self.put(s)
    }
}
