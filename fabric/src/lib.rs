//! The switch fabric (claim 3): what the dispatcher and the in-chassis processors share.
//!
//! It owns one bounded, lock-free single-producer/single-consumer queue per processor between
//! the dispatcher thread and that processor, the wake-up path (eventfd parking), the load board
//! processors report through (claim 7), and the clock both sides compare heartbeats with
//! ([`monotonic_ns`]). It must not know SIP or MGCP (a slot carries bytes and a [`Proto`] tag),
//! nor make routing decisions: the dispatcher's router decides, its shell pushes.
//!
//! Why our own queue rather than `crossbeam::ArrayQueue` or `rtrb`: a slot holds a whole
//! datagram (up to [`SLOT_BYTES`]), and both of those move values in and out by copy, i.e. 4 KiB
//! per message. Here the producer writes only the message's bytes straight into the queue's
//! data arena, packed back to back (see `Ring`), many slots are published with one release
//! store ([`Producer::commit`]), and the consumer reads in place. The dispatcher never blocks: a full queue is reported to it so it can pick another
//! processor or answer 503 itself.
//!
//! Wake-up: a consumer with nothing to do parks in `poll()` on an eventfd after setting a
//! `parked` flag; the producer writes the eventfd only when it sees that flag after a commit,
//! i.e. at most one syscall per batch and none while the consumer is busy.
pub mod coalesce;

use std::{
    cell::UnsafeCell,
    net::{Ipv4Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

pub mod idle;

/// Largest message a slot holds. AF_XDP frames are 2 KiB, and RFC 3261 §18.1.1 asks senders to
/// keep UDP requests under ~1300 bytes; larger datagrams are answered 513 by the dispatcher.
pub const SLOT_BYTES: usize = 4000;

/// Which protocol a handed-off message speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// SIP (RFC 3261).
    Sip,
    /// MGCP (RFC 3435).
    Mgcp,
}

/// Data-arena granularity: each message's bytes start on a cache line.
const ALIGN: usize = 64;
/// Room one message may take in the arena (a whole [`SLOT_BYTES`], rounded to [`ALIGN`]).
const STRIDE: usize = SLOT_BYTES.div_ceil(ALIGN) * ALIGN;

/// One message in flight from the dispatcher to a processor: its addresses and metadata,
/// and its bytes in the queue's data arena.
pub struct Slot {
    len: u16,
    /// Protocol of the message.
    pub proto: Proto,
    /// The packet's source address: where responses go (subject to Via rules for SIP).
    pub src: SocketAddr,
    /// The well-known address it was sent to.
    pub dst: SocketAddr,
    /// Dispatcher clock (ns) when it was received, for queueing-latency accounting.
    pub received_ns: u64,
    /// The session size the dispatcher assigned when this message starts a dialog (`None`:
    /// not a new dialog, or not sized). The processor releases exactly this, so both sides
    /// agree without the processor sizing the message again.
    pub units: Option<u32>,
    /// The queue's data arena and this message's offset in it (set by the producer before
    /// the message is written; see [`Ring`] for why the region is exclusively this slot's).
    data: *mut u8,
    off: usize,
}

impl Slot {
    fn empty(data: *mut u8) -> Self {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        Self {
            len: 0,
            proto: Proto::Sip,
            src: any,
            dst: any,
            received_ns: 0,
            units: None,
            data,
            off: 0,
        }
    }

    /// The message bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `off + STRIDE <= arena length` (the producer places it so), `len <=
        // SLOT_BYTES`, and while a `&Slot` exists the region belongs to this slot alone: the
        // producer writes it before publishing, the consumer reads it until it releases it
        // (see `Ring`).
        unsafe { std::slice::from_raw_parts(self.data.add(self.off), usize::from(self.len)) }
    }

    /// The whole buffer, to write a message of up to [`SLOT_BYTES`] in place; finish with
    /// [`Slot::set_len`].
    pub fn buf_mut(&mut self) -> &mut [u8; SLOT_BYTES] {
        // SAFETY: as in `bytes`; `&mut Slot` is only handed out by `Producer::push_with`, for
        // a region no published message overlaps.
        unsafe { &mut *self.data.add(self.off).cast::<[u8; SLOT_BYTES]>() }
    }

    /// Sets the message length after writing into [`Slot::buf_mut`] (clamped to the buffer).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(SLOT_BYTES) as u16;
    }

    /// Copies `msg` in; false (and nothing written) when it does not fit.
    pub fn fill(&mut self, msg: &[u8]) -> bool {
        match self.buf_mut().get_mut(..msg.len()) {
            Some(dst) => {
                dst.copy_from_slice(msg);
                self.len = msg.len() as u16;
                true
            }
            None => false,
        }
    }
}

/// Cache-line padding so head and tail do not false-share.
#[repr(align(128))]
struct Padded<T>(T);

/// The queue: a ring of [`Slot`] headers and one data arena the messages' bytes are packed
/// into, back to back in push order.
///
/// Why packed: with a whole [`SLOT_BYTES`] buffer inside every slot, consecutive messages sat
/// 4 KiB apart, so every push and every read touched a new page and cold cache lines (≈ 200
/// ns per INVITE measured). Packed, a 700-byte INVITE takes 11 cache lines right after the
/// previous message's, which the hardware prefetcher streams.
///
/// Why the arena never needs a free-space check: it holds `capacity + 2` strides. At most
/// `capacity - 1` published messages are in it when the producer reserves a slot (the ring
/// would be full otherwise), each within one stride, plus at most one stride skipped at the
/// wrap, so more than two strides are free and a whole stride is free contiguously, either
/// after the last message or at the arena's start. A message therefore never overlaps one the
/// consumer has not released, and "full" still means `capacity` messages.
struct Ring {
    slots: Box<[UnsafeCell<Slot>]>,
    mask: usize,
    /// The data arena (`(capacity + 2) * STRIDE` bytes), written through the slots' pointers.
    arena: Box<[UnsafeCell<u8>]>,
    /// Next slot the consumer reads (written by the consumer).
    head: Padded<AtomicUsize>,
    /// Next slot the producer writes (written by the producer).
    tail: Padded<AtomicUsize>,
    parked: AtomicBool,
    eventfd: OwnedFd,
}

// SAFETY: slots, and the arena regions they point at, are only accessed by the single producer
// (slot indices in [tail, head+cap), and a region no published message overlaps, see `Ring`)
// or the single consumer (indices in [head, tail)); the Acquire/Release pair on head/tail
// orders the slot contents and bytes with the index hand-over. The slots' raw pointers point
// into the ring's own arena, which lives as long as the ring.
unsafe impl Sync for Ring {}
// SAFETY: as above; the ring owns its slots and its arena.
unsafe impl Send for Ring {}

/// Creates a queue of at least `capacity` slots (rounded up to a power of two).
pub fn channel(capacity: usize) -> std::io::Result<(Producer, Consumer)> {
    let cap = capacity.max(2).next_power_of_two();
    // SAFETY: plain eventfd creation; checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Zeroed by the allocator (calloc: untouched pages cost nothing until used), not byte by
    // byte: a deep queue's arena is hundreds of MB.
    let zeroed = vec![0u8; (cap + 2) * STRIDE].into_boxed_slice();
    // SAFETY: `UnsafeCell<u8>` is `repr(transparent)` over `u8`, so the slice has the same
    // layout and the box the same allocation.
    let arena: Box<[UnsafeCell<u8>]> =
        unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [UnsafeCell<u8>]) };
    let data = UnsafeCell::raw_get(arena.as_ptr());
    let ring = Arc::new(Ring {
        slots: (0..cap)
            .map(|_| UnsafeCell::new(Slot::empty(data)))
            .collect(),
        mask: cap - 1,
        arena,
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
        parked: AtomicBool::new(false),
        // SAFETY: fd is a fresh, owned descriptor.
        eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
    });
    Ok((
        Producer {
            ring: Arc::clone(&ring),
            tail: 0,
            head_cache: 0,
            data_tail: 0,
            wakes: 0,
        },
        Consumer {
            ring,
            head: 0,
            tail_cache: 0,
        },
    ))
}

/// The dispatcher's end of one processor's queue.
pub struct Producer {
    ring: Arc<Ring>,
    /// Local tail: slots written but maybe not yet published.
    tail: usize,
    head_cache: usize,
    /// Where the next message's bytes go in the arena (an offset, `< arena length`).
    data_tail: usize,
    /// Eventfd writes made (wake-ups this producer caused), for per-call accounting.
    wakes: u64,
}

impl Producer {
    /// Writes one message in place with `write` (return false to abandon the slot). Returns
    /// false when the queue is full (counting is the caller's job). Not visible to the consumer
    /// until [`Producer::commit`].
    pub fn push_with(&mut self, write: impl FnOnce(&mut Slot) -> bool) -> bool {
        let cap = self.ring.mask + 1;
        if self.tail.wrapping_sub(self.head_cache) >= cap {
            self.head_cache = self.ring.head.0.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_cache) >= cap {
                return false;
            }
        }
        // SAFETY: slot `tail` is outside [head, tail) so the consumer does not touch it.
        let slot = unsafe { &mut *self.ring.slots[self.tail & self.ring.mask].get() };
        // A whole stride after the last message, or at the arena's start (see `Ring`).
        let mut off = self.data_tail;
        if off + STRIDE > self.ring.arena.len() {
            off = 0;
        }
        slot.off = off;
        slot.len = 0;
        if !write(slot) {
            return false;
        }
        self.data_tail = off + usize::from(slot.len).div_ceil(ALIGN).max(1) * ALIGN;
        self.tail = self.tail.wrapping_add(1);
        true
    }

    /// Publishes everything pushed so far and wakes the consumer if it is parked.
    pub fn commit(&mut self) {
        if self.ring.tail.0.load(Ordering::Relaxed) == self.tail {
            return;
        }
        self.ring.tail.0.store(self.tail, Ordering::Release);
        // Pairs with the consumer's SeqCst store of `parked` before its final emptiness check.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.ring.parked.load(Ordering::Relaxed) {
            self.wakes += 1;
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to our eventfd. EAGAIN (counter saturated) is harmless.
            unsafe {
                libc::write(
                    self.ring.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    8,
                )
            };
        }
    }

    /// Messages published or pending and not yet consumed (the queue depth).
    pub fn depth(&self) -> usize {
        self.tail
            .wrapping_sub(self.ring.head.0.load(Ordering::Relaxed))
    }

    /// Slots in the queue.
    pub fn capacity(&self) -> usize {
        self.ring.mask + 1
    }

    /// Eventfd writes [`Producer::commit`] made so far: the wake-ups (syscalls) this producer
    /// caused, so a dispatcher can report them per call.
    pub fn wakes_sent(&self) -> u64 {
        self.wakes
    }
}

/// A processor's end of its queue.
pub struct Consumer {
    ring: Arc<Ring>,
    head: usize,
    tail_cache: usize,
}

impl Consumer {
    /// Calls `f` for up to `max` published messages, in order, then releases their slots.
    /// Returns how many were handled.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&Slot)) -> usize {
        if self.head == self.tail_cache {
            self.tail_cache = self.ring.tail.0.load(Ordering::Acquire);
        }
        let mut n = 0;
        while n < max && self.head != self.tail_cache {
            // SAFETY: slot `head` is in [head, tail): published and not reused until released.
            let slot = unsafe { &*self.ring.slots[self.head & self.ring.mask].get() };
            f(slot);
            self.head = self.head.wrapping_add(1);
            n += 1;
        }
        if n > 0 {
            self.ring.head.0.store(self.head, Ordering::Release);
        }
        n
    }

    /// Whether a published message is waiting.
    pub fn is_empty(&mut self) -> bool {
        self.tail_cache = self.ring.tail.0.load(Ordering::Acquire);
        self.head == self.tail_cache
    }

    /// The eventfd to `poll()` on while parked.
    pub fn wake_fd(&self) -> RawFd {
        self.ring.eventfd.as_raw_fd()
    }

    /// Announces that the consumer is about to sleep; returns false (and stays unparked) when a
    /// message arrived meanwhile, in which case the caller must not sleep.
    pub fn park(&mut self) -> bool {
        self.ring.parked.store(true, Ordering::SeqCst);
        if !self.is_empty() {
            self.ring.parked.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Clears the parked flag and the eventfd counter after waking.
    pub fn unpark(&mut self) {
        self.ring.parked.store(false, Ordering::Relaxed);
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes from our non-blocking eventfd; EAGAIN when nothing was written.
        unsafe {
            libc::read(
                self.ring.eventfd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                8,
            )
        };
    }
}

/// The clock the load board speaks: `CLOCK_MONOTONIC` in nanoseconds, the same for every thread
/// of the machine, so a processor's heartbeat can be compared with the dispatcher's "now".
/// Read through the vDSO: no syscall.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// What one processor reports about its load (claim 7), shared with the dispatcher.
///
/// Counters are monotonic so the dispatcher can combine them with what it has itself sent
/// without races: units in use = units the dispatcher assigned − [`LoadReport::released_units`].
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Dialogs/connections currently active on the processor.
    pub active: AtomicU32,
    /// Units held by active sessions, as the processor counts them (a gauge; for LAN reports,
    /// where several dispatchers share a processor and none knows the whole load).
    pub in_use_units: AtomicU64,
    /// Capacity units released by ended sessions, ever (monotonic).
    pub released_units: AtomicU64,
    /// Capacity units of sessions the processor refused or failed before they started (monotonic;
    /// also released).
    pub rejected_units: AtomicU64,
    /// The processor's capacity in units (0 = unlimited).
    pub capacity_units: AtomicU32,
    /// New-INVITE server transactions the processor holds pending (answered, not yet
    /// acknowledged): a gauge the processor thread writes every loop round, with the
    /// heartbeat. The router stops selecting a processor whose count reached its cap.
    pub pending_invites: AtomicU32,
    /// The processor's cap on `pending_invites` as a processor on another host reports it
    /// (0: unlimited or not reported; in-chassis processors' caps are configuration).
    pub max_pending_invites: AtomicU32,
    /// Reports accepted from a processor on another host (monotonic; the router notices a new
    /// report by this changing).
    pub reports: AtomicU64,
    /// [`monotonic_ns`] of the processor's last report: a stale value means a stuck processor.
    pub heartbeat_ns: AtomicU64,
    /// Whether the health monitor considers a processor on another host up (it sets this on
    /// the first valid report or probe answer, and clears it when the reports stop).
    pub up: AtomicBool,
}

impl LoadReport {
    /// A fresh report for a processor with `capacity_units`.
    pub fn new(capacity_units: u32) -> Arc<Self> {
        let r = Self::default();
        r.capacity_units.store(capacity_units, Ordering::Relaxed);
        Arc::new(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(p: &mut Producer, msg: &[u8]) -> bool {
        p.push_with(|s| s.fill(msg))
    }

    #[test]
    fn fifo_and_full() {
        let (mut p, mut c) = channel(4).unwrap();
        for i in 0..4u8 {
            assert!(push(&mut p, &[i; 3]));
        }
        assert!(!push(&mut p, b"x"), "fifth push must report full");
        assert_eq!(c.drain(10, |_| {}), 0, "nothing visible before commit");
        p.commit();
        assert_eq!(p.depth(), 4);
        let mut seen = vec![];
        c.drain(10, |s| seen.push(s.bytes().to_vec()));
        assert_eq!(seen, (0..4u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
        assert!(push(&mut p, b"again"));
    }

    #[test]
    fn oversized_message_is_refused() {
        let (mut p, _c) = channel(2).unwrap();
        assert!(!push(&mut p, &[0u8; SLOT_BYTES + 1]));
        assert!(push(&mut p, &[0u8; SLOT_BYTES]));
    }

    /// Message `i` of the packing tests: a length that sweeps 1..=SLOT_BYTES unevenly and
    /// bytes that name `i`, so a message overwritten by a later one is caught.
    fn packed_msg(i: u32) -> Vec<u8> {
        let len = 1 + (i as usize * 7919) % SLOT_BYTES;
        (0..len).map(|j| (i as usize + j) as u8).collect()
    }

    #[test]
    fn messages_are_packed_back_to_back_and_survive_every_wrap() {
        let (mut p, mut c) = channel(4).unwrap();
        // Small messages sit one cache line apart, not a slot apart.
        for m in [&b"ab"[..], b"cd"] {
            assert!(push(&mut p, m));
        }
        p.commit();
        let mut ptrs = vec![];
        c.drain(10, |s| ptrs.push(s.bytes().as_ptr() as usize));
        assert_eq!(ptrs[1] - ptrs[0], ALIGN);
        // Any mix of sizes, with the queue kept full, across many wraps of the arena: every
        // message reads back intact.
        let (mut next_in, mut next_out) = (0u32, 0u32);
        while next_out < 5_000 {
            while push(&mut p, &packed_msg(next_in)) {
                next_in += 1;
            }
            p.commit();
            let take = 1 + (next_out as usize % 3);
            c.drain(take, |s| {
                assert_eq!(s.bytes(), &packed_msg(next_out)[..], "message {next_out}");
                next_out += 1;
            });
        }
    }

    #[test]
    fn two_threads_keep_order_and_lose_nothing() {
        let (mut p, mut c) = channel(64).unwrap();
        const N: u32 = 30_000;
        let t = std::thread::spawn(move || {
            let mut next = 0u32;
            while next < N {
                if c.drain(32, |s| {
                    assert_eq!(s.bytes(), &packed_msg(next)[..]);
                    next += 1;
                }) == 0
                    && c.park()
                {
                    let mut pfd = libc::pollfd {
                        fd: c.wake_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 100) };
                    c.unpark();
                }
            }
            next
        });
        let mut i = 0u32;
        while i < N {
            if push(&mut p, &packed_msg(i)) {
                i += 1;
                if i.is_multiple_of(16) {
                    p.commit();
                }
            } else {
                p.commit();
                std::thread::yield_now();
            }
        }
        p.commit();
        assert_eq!(t.join().unwrap(), N);
    }
}
