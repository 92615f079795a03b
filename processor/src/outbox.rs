//! Datagrams a state machine wants sent, in order.
//!
//! The state machines are sans-IO: they append `(destination, bytes)` here and the thread shell
//! sends them, all of a round's datagrams in `sendmmsg` batches whose iovecs point straight at
//! this storage.
//!
//! Why one contiguous arena rather than a buffer per datagram: datagrams are written back to
//! back into one pre-allocated byte array (each writer is offered [`DATAGRAM_BYTES`] of room
//! and the arena advances by what it wrote), so a round's responses sit in a few consecutive
//! cache lines instead of one 8 KiB buffer each, the shell hands the kernel pointers into it
//! without copying, and [`Outbox::clear`] only resets two lengths. The arena and the index
//! grow only past their high-water mark (a timer storm bigger than any before), so a
//! steady-state processor does not allocate.
use std::net::SocketAddr;

use wire::WriteError;

/// Room offered to each writer: a response copies the request's headers and adds an SDP body,
/// so it needs somewhat more than the largest request a fabric slot carries.
pub const DATAGRAM_BYTES: usize = 8192;

/// Arena bytes reserved at construction: a round of 64 messages answered with ~2 responses
/// of ~1 kB each, plus one writer's room.
const INITIAL_ARENA: usize = 128 * 1024 + DATAGRAM_BYTES;

/// Datagrams indexed at construction.
const INITIAL_ITEMS: usize = 256;

/// Where one queued datagram lies in the arena.
#[derive(Debug, Clone, Copy)]
struct Entry {
    dst: SocketAddr,
    start: usize,
    len: usize,
}

/// Ordered list of datagrams to send; order matters (100 before 180 before 200, RFC 3261 and
/// the SIPp notes), so the shell must send them as listed.
#[derive(Debug)]
pub struct Outbox {
    /// The bytes of every queued datagram, back to back; `buf.len()` is the arena's size
    /// (all initialised), `used` how much of it holds queued datagrams.
    buf: Vec<u8>,
    used: usize,
    items: Vec<Entry>,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// An empty outbox with its arena allocated.
    pub fn new() -> Self {
        Self {
            buf: vec![0; INITIAL_ARENA],
            used: 0,
            items: Vec::with_capacity(INITIAL_ITEMS),
        }
    }

    /// Makes `room` bytes writable at `used` (growing past the high-water mark only).
    fn reserve(&mut self, room: usize) {
        let need = self.used + room;
        if self.buf.len() < need {
            let grown = need.max(self.buf.len().saturating_mul(2));
            self.buf.resize(grown, 0);
        }
    }

    /// Appends a datagram written in place by `write` (which returns the length it wrote);
    /// on error nothing is queued. Returns the bytes written, so a caller can keep a copy for
    /// retransmission.
    pub fn push_with(
        &mut self,
        dst: SocketAddr,
        write: impl FnOnce(&mut [u8]) -> Result<usize, WriteError>,
    ) -> Result<&[u8], WriteError> {
        self.reserve(DATAGRAM_BYTES);
        let start = self.used;
        let n = write(&mut self.buf[start..start + DATAGRAM_BYTES])?.min(DATAGRAM_BYTES);
        self.used += n;
        self.items.push(Entry { dst, start, len: n });
        Ok(&self.buf[start..start + n])
    }

    /// Appends a copy of `bytes` (a stored response being retransmitted).
    pub fn push(&mut self, dst: SocketAddr, bytes: &[u8]) {
        self.reserve(bytes.len());
        let start = self.used;
        self.buf[start..start + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
        self.items.push(Entry {
            dst,
            start,
            len: bytes.len(),
        });
    }

    /// Changes the destination of the datagram queued last (when it was written before its
    /// destination was known).
    pub(crate) fn retarget_last(&mut self, dst: SocketAddr) {
        if let Some(e) = self.items.last_mut() {
            e.dst = dst;
        }
    }

    /// The queued datagrams, in the order they must be sent.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.range(0, self.items.len())
    }

    /// Queued datagrams `[from, to)` (clamped), in order: the shell sends a long round in
    /// chunks and refreshes its heartbeat between them.
    pub fn range(&self, from: usize, to: usize) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        let to = to.min(self.items.len());
        let from = from.min(to);
        self.items[from..to]
            .iter()
            .map(|e| (e.dst, &self.buf[e.start..e.start + e.len]))
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Forgets the queued datagrams (after sending) but keeps the arena.
    pub fn clear(&mut self) {
        self.items.clear();
        self.used = 0;
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
        assert_eq!(o.iter().next().map(|(_, b)| b), Some(&b"three"[..]));
        assert_eq!(o.buf.len(), INITIAL_ARENA, "arena kept, not regrown");
    }

    #[test]
    fn packs_datagrams_back_to_back_and_grows_past_the_high_water_mark() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut o = Outbox::new();
        let mut want = vec![];
        // Far more than the initial arena holds (a timer storm): all kept, in order.
        for i in 0..2_000u32 {
            let msg = vec![(i % 251) as u8; 100 + (i as usize % 900)];
            if i % 2 == 0 {
                o.push(a, &msg);
            } else {
                let m = msg.clone();
                let got = o
                    .push_with(a, |buf| {
                        assert_eq!(buf.len(), DATAGRAM_BYTES, "a writer gets full room");
                        buf[..m.len()].copy_from_slice(&m);
                        Ok(m.len())
                    })
                    .unwrap()
                    .to_vec();
                assert_eq!(got, msg);
            }
            want.push(msg);
        }
        o.retarget_last(b);
        let got: Vec<_> = o.iter().map(|(_, m)| m.to_vec()).collect();
        assert_eq!(got, want);
        assert_eq!(o.iter().last().map(|(d, _)| d), Some(b));
        assert_eq!(o.iter().filter(|(d, _)| *d == b).count(), 1);
        let mid: Vec<_> = o.range(10, 12).map(|(_, m)| m.to_vec()).collect();
        assert_eq!(mid, want[10..12].to_vec());
        assert_eq!(o.range(1_999, 5_000).count(), 1);
        assert_eq!(o.range(7_000, 5_000).count(), 0);
        // Consecutive datagrams are adjacent in the arena.
        {
            let mut it = o.iter();
            let (_, x) = it.next().unwrap();
            let (_, y) = it.next().unwrap();
            assert_eq!(x.as_ptr_range().end, y.as_ptr());
        }
        let size = o.buf.len();
        o.clear();
        for m in &want {
            o.push(a, m);
        }
        assert_eq!(o.buf.len(), size, "no growth the second time");
    }
}
