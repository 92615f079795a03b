//! Datagrams a state machine wants sent, in order.
//!
//! The state machines are sans-IO: they append `(destination, bytes)` here and the thread shell
//! sends them. Buffers are kept between rounds ([`Outbox::clear`] only resets lengths) so a
//! steady-state processor does not allocate per response.
use std::net::SocketAddr;

use wire::WriteError;

/// Room reserved per datagram: a response copies the request's headers and adds an SDP body,
/// so it needs somewhat more than the largest request a fabric slot carries.
pub const DATAGRAM_BYTES: usize = 8192;

/// One datagram to send.
#[derive(Debug)]
struct Datagram {
    dst: SocketAddr,
    buf: Vec<u8>,
    len: usize,
}

/// Ordered list of datagrams to send; order matters (100 before 180 before 200, RFC 3261 and
/// the SIPp notes), so the shell must send them as listed.
#[derive(Debug, Default)]
pub struct Outbox {
    items: Vec<Datagram>,
    len: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, dst: SocketAddr) -> &mut Datagram {
        if self.len == self.items.len() {
            self.items.push(Datagram {
                dst,
                buf: vec![0; DATAGRAM_BYTES],
                len: 0,
            });
        }
        let i = self.len;
        let d = &mut self.items[i];
        d.dst = dst;
        d.len = 0;
        d
    }

    /// Appends a datagram written in place by `write` (which returns the length it wrote);
    /// on error nothing is queued. Returns the bytes written, so a caller can keep a copy for
    /// retransmission.
    pub fn push_with(
        &mut self,
        dst: SocketAddr,
        write: impl FnOnce(&mut [u8]) -> Result<usize, WriteError>,
    ) -> Result<&[u8], WriteError> {
        let d = self.slot(dst);
        let n = write(&mut d.buf)?.min(d.buf.len());
        d.len = n;
        self.len += 1;
        let d = &self.items[self.len - 1];
        Ok(&d.buf[..d.len])
    }

    /// Appends a copy of `bytes` (a stored response being retransmitted).
    pub fn push(&mut self, dst: SocketAddr, bytes: &[u8]) {
        let d = self.slot(dst);
        if d.buf.len() < bytes.len() {
            d.buf.resize(bytes.len(), 0);
        }
        d.buf[..bytes.len()].copy_from_slice(bytes);
        d.len = bytes.len();
        self.len += 1;
    }

    /// Changes the destination of the datagram queued last (when it was written before its
    /// destination was known).
    pub(crate) fn retarget_last(&mut self, dst: SocketAddr) {
        if let Some(d) = self.len.checked_sub(1).and_then(|i| self.items.get_mut(i)) {
            d.dst = dst;
        }
    }

    /// The queued datagrams, in the order they must be sent.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.items[..self.len]
            .iter()
            .map(|d| (d.dst, &d.buf[..d.len]))
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the queued datagrams (after sending) but keeps their buffers.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_reuses_buffers() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut o = Outbox::new();
        o.push(a, b"one");
        o.push_with(a, |b| {
            b[..3].copy_from_slice(b"two");
            Ok(3)
        })
        .unwrap();
        assert!(o
            .push_with(a, |_| Err(WriteError::InvalidInput("x")))
            .is_err());
        let got: Vec<_> = o.iter().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        o.clear();
        assert!(o.is_empty());
        o.push(a, b"three");
        assert_eq!(o.len(), 1);
        assert_eq!(o.items.len(), 3, "buffers kept");
    }
}
