//! What goes into the router and what comes out: one datagram in, one [`Decision`] out, which
//! the shell carries out (push into a fabric queue or a LAN batch, send a reply, or nothing).
//!
//! The router never performs I/O itself: a handoff names the processor and the bytes, and the
//! shell owns the queues, sockets and clock. Rewritten messages and replies are written into
//! the [`Output`] the shell passes to [`super::Router::handle`] (allocated once), so nothing is
//! pushed, sent or flushed from inside the core, and a test reads exactly what the shell would
//! do.
use std::net::SocketAddr;

use dispatcher_common::PortProto;

/// One datagram received on a well-known port.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Which protocol the port carries.
    pub proto: PortProto,
    /// Who sent it (the address replies go to).
    pub src: SocketAddr,
    /// The well-known address it was sent to.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: &'a [u8],
}

/// The bytes a handoff carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `len` bytes of the datagram as received, from `start` (a piggybacked MGCP segment, or
    /// the whole datagram): no rewrite needed.
    Inbound {
        /// Offset in the datagram.
        start: usize,
        /// Length.
        len: usize,
    },
    /// A rewritten copy in the output's data buffer.
    Rewritten {
        /// Offset in [`Output`]'s data.
        start: usize,
        /// Length.
        len: usize,
    },
}

/// One message for one processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// Processor index. The router has checked that its queue had room in the snapshot it was
    /// given, counting what it handed since, so the shell's push cannot find it full.
    pub to: u16,
    /// The bytes to hand over.
    pub payload: Payload,
    /// The session size the router assigned, when this handoff starts a dialog: carried in
    /// the fabric slot so the processor releases exactly what was assigned without sizing the
    /// message again (and so a policy that does not need sizes may assign 1 and scan less).
    /// `None` for everything else.
    pub units: Option<u32>,
}

/// Most handoffs one datagram yields (piggybacked MGCP messages, RFC 3435 §3.5.5).
pub const MAX_HANDOFFS: usize = 16;
/// Room for rewritten messages of one datagram.
pub const DATA_BYTES: usize = 2 * fabric::SLOT_BYTES;
/// Room for the dispatcher's own reply to one datagram.
pub const REPLY_BYTES: usize = 2048;

/// The handoffs of one datagram and the bytes of the rewritten ones. Preallocated once by the
/// shell and cleared by every [`super::Router::handle`]: the hot path never allocates.
pub struct Handoffs {
    list: [Handoff; MAX_HANDOFFS],
    n: usize,
    data: Box<[u8]>,
    data_len: usize,
}

impl Handoffs {
    fn new() -> Self {
        Self {
            list: [Handoff {
                to: 0,
                payload: Payload::Inbound { start: 0, len: 0 },
                units: None,
            }; MAX_HANDOFFS],
            n: 0,
            data: vec![0; DATA_BYTES].into_boxed_slice(),
            data_len: 0,
        }
    }

    fn clear(&mut self) {
        self.n = 0;
        self.data_len = 0;
    }

    /// Whether another handoff fits.
    pub(super) fn has_room(&self) -> bool {
        self.n < MAX_HANDOFFS
    }

    /// Free room for a rewritten message (write into it, then [`Handoffs::push_rewritten`]).
    pub(super) fn spare(&mut self) -> &mut [u8] {
        &mut self.data[self.data_len..]
    }

    /// Records a handoff of the datagram's bytes `start..start + len`.
    pub(super) fn push_inbound(&mut self, to: u16, start: usize, len: usize) {
        if let Some(h) = self.list.get_mut(self.n) {
            *h = Handoff {
                to,
                payload: Payload::Inbound { start, len },
                units: None,
            };
            self.n += 1;
        }
    }

    /// Marks the handoff recorded last as the start of a dialog of `units`.
    pub(super) fn set_last_units(&mut self, units: u32) {
        if let Some(h) = self.n.checked_sub(1).and_then(|i| self.list.get_mut(i)) {
            h.units = Some(units);
        }
    }

    /// Records a handoff of the `len` bytes just written into [`Handoffs::spare`].
    pub(super) fn push_rewritten(&mut self, to: u16, len: usize) {
        if let Some(h) = self.list.get_mut(self.n) {
            *h = Handoff {
                to,
                payload: Payload::Rewritten {
                    start: self.data_len,
                    len,
                },
                units: None,
            };
            self.n += 1;
            self.data_len += len;
        }
    }
}

/// Everything [`super::Router::handle`] asks the shell to do for one datagram: the handoffs in
/// order, then at most one reply to its source.
pub struct Output {
    pub(super) hand: Handoffs,
    pub(super) reply: Box<[u8]>,
    pub(super) reply_len: usize,
}

impl Default for Output {
    fn default() -> Self {
        Self::new()
    }
}

impl Output {
    /// Buffers for one datagram's decisions (allocated once).
    pub fn new() -> Self {
        Self {
            hand: Handoffs::new(),
            reply: vec![0; REPLY_BYTES].into_boxed_slice(),
            reply_len: 0,
        }
    }

    pub(super) fn clear(&mut self) {
        self.hand.clear();
        self.reply_len = 0;
    }

    /// The handoffs, in the order they must be pushed.
    pub fn handoffs(&self) -> &[Handoff] {
        &self.hand.list[..self.hand.n]
    }

    /// The bytes of `h`, given the datagram `inbound` it was decided from.
    pub fn bytes<'a>(&'a self, h: &Handoff, inbound: &'a [u8]) -> &'a [u8] {
        match h.payload {
            Payload::Inbound { start, len } => inbound.get(start..start + len).unwrap_or(&[]),
            Payload::Rewritten { start, len } => {
                self.hand.data.get(start..start + len).unwrap_or(&[])
            }
        }
    }

    /// The reply to send to the datagram's source, if any.
    pub fn reply(&self) -> Option<&[u8]> {
        (self.reply_len > 0).then(|| &self.reply[..self.reply_len])
    }
}

/// The outcome of one datagram, for counting and tests; what to do is in [`Output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Handed to processor `k` (the last handoff, for a piggybacked datagram).
    Hand(u16),
    /// Answered by the dispatcher: the reply is [`Output::reply`], `n` bytes.
    Reply(usize),
    /// Nothing to send; the reason has been counted.
    Drop(DropReason),
}

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Whitespace-only keep-alive.
    Empty,
    /// A response at the well-known port (we send no requests from it).
    Response,
    /// Unparseable and not answerable (no usable Via, an ACK, ...).
    Unparseable,
    /// An ACK nobody needs: for a response the dispatcher itself sent, or unmatched.
    AckAbsorbed,
    /// The reply did not fit the reply buffer (never expected; counted to be sure).
    ReplyTooLarge,
    /// The owning processor's queue was full for an in-dialog message; the sender retransmits.
    QueueFull,
    /// An ACK whose To-tag has the processor-tag format but a bad MAC (forged or corrupted):
    /// never routed, and an ACK is not answered.
    BadTag,
    /// The transaction's processor was removed from the pool.
    Removed,
}
