//! The switch fabric (claim 3): what the dispatcher and the in-chassis processors share.
//!
//! It owns the bounded, lock-free queues from the dispatcher threads to each processor, the
//! wake-up path (eventfd parking), the load board processors report through (claim 7), and the
//! clock both sides compare heartbeats with ([`monotonic_ns`]). It must not know SIP or MGCP (a
//! slot carries bytes and a [`Proto`] tag), nor make routing decisions: the dispatcher's router
//! decides, its shell pushes.
//!
//! Why our own queue rather than `crossbeam::ArrayQueue` or `rtrb`: a slot holds a whole
//! datagram (up to [`SLOT_BYTES`]), and both of those move values in and out by copy, i.e. 4 KiB
//! per message. Here the producer writes only the message's bytes straight into the queue's
//! data arena, packed back to back (see `Ring`), many slots are published with one release
//! store ([`Producer::commit`]), and the consumer reads in place. The dispatcher never blocks:
//! a full queue is reported to it so it can pick another processor or answer 503 itself.
//!
//! Several dispatcher threads, one processor ([`fan_in`]): each dispatcher thread gets its own
//! single-producer/single-consumer ring to each processor, and the processor's [`Consumer`]
//! drains all of its rings, starting with a different one each time so none starves. Why one
//! ring per producer rather than one ring shared by the threads: no ring ever has two
//! producers, so reserving a slot stays a plain load and store, with no compare-and-swap or
//! lock on the hot path and no producer waiting for another's slow write before it can
//! publish. [`channel`] is the fan-in of one.
//!
//! Wake-up: a consumer with nothing to do parks in `poll()` on an eventfd after setting a
//! `parked` flag and checking that every ring is empty; the producer writes the eventfd only
//! when it sees that flag after a commit, i.e. at most one syscall per batch and none while the
//! consumer is busy. The rings of one consumer share that flag and that eventfd (a `Bell`), so
//! the processor polls one descriptor however many producers feed it, and any one producer's
//! commit wakes it.
pub mod coalesce;
pub mod mem;

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

/// A value alone on its cache line (128 bytes: the line pair the adjacent-line prefetcher
/// fetches together), so writes to it and to its neighbours do not false-share: the ring's
/// head and tail, and the load board's [`LoadReport::assigned_units`].
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

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
}

// SAFETY: slots, and the arena regions they point at, are only accessed by the single producer
// (slot indices in [tail, head+cap), and a region no published message overlaps, see `Ring`)
// or the single consumer (indices in [head, tail)); the Acquire/Release pair on head/tail
// orders the slot contents and bytes with the index hand-over. The slots' raw pointers point
// into the ring's own arena, which lives as long as the ring.
unsafe impl Sync for Ring {}
// SAFETY: as above; the ring owns its slots and its arena.
unsafe impl Send for Ring {}

impl Ring {
    /// A ring of `cap` slots (a power of two) with its arena.
    fn new(cap: usize) -> Self {
        // Huge pages, every page faulted in here rather than by the first pass of the
        // producer's copies over the arena (see `mem`).
        let zeroed = mem::zeroed((cap + 2) * STRIDE);
        // SAFETY: `UnsafeCell<u8>` is `repr(transparent)` over `u8`, so the slice has the same
        // layout and the box the same allocation.
        let arena: Box<[UnsafeCell<u8>]> =
            unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [UnsafeCell<u8>]) };
        let data = UnsafeCell::raw_get(arena.as_ptr());
        Self {
            slots: (0..cap)
                .map(|_| UnsafeCell::new(Slot::empty(data)))
                .collect(),
            mask: cap - 1,
            arena,
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }
}

/// The consumer's wake-up, shared by all the rings of one consumer: one `parked` flag and one
/// eventfd, so a processor fed by several producers still sleeps on a single descriptor.
struct Bell {
    parked: AtomicBool,
    eventfd: OwnedFd,
}

/// Creates a queue of at least `capacity` slots (rounded up to a power of two): a fan-in of
/// one producer.
pub fn channel(capacity: usize) -> std::io::Result<(Producer, Consumer)> {
    let (mut producers, consumer) = fan_in(1, capacity)?;
    let producer = producers
        .pop()
        .ok_or_else(|| std::io::Error::other("fan_in(1) returned no producer"))?;
    Ok((producer, consumer))
}

/// Creates one consumer fed by `producers` producers, each with its own ring of at least
/// `capacity` slots (rounded up to a power of two, as [`channel`]). The rings share the
/// consumer's wake-up (one eventfd, one parked flag). `producers` must be at least 1
/// (`InvalidInput` otherwise).
pub fn fan_in(producers: usize, capacity: usize) -> std::io::Result<(Vec<Producer>, Consumer)> {
    if producers == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a fan-in needs at least one producer",
        ));
    }
    let cap = capacity.max(2).next_power_of_two();
    // SAFETY: plain eventfd creation; checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let bell = Arc::new(Bell {
        parked: AtomicBool::new(false),
        // SAFETY: fd is a fresh, owned descriptor.
        eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
    });
    let rings: Vec<Arc<Ring>> = (0..producers).map(|_| Arc::new(Ring::new(cap))).collect();
    let ends = rings
        .iter()
        .map(|ring| Producer {
            ring: Arc::clone(ring),
            bell: Arc::clone(&bell),
            tail: 0,
            head_cache: 0,
            data_tail: 0,
            wakes: 0,
        })
        .collect();
    let consumer = Consumer {
        rings: rings
            .into_iter()
            .map(|ring| RingReader {
                ring,
                head: 0,
                tail_cache: 0,
            })
            .collect(),
        bell,
        next: 0,
    };
    Ok((ends, consumer))
}

/// The dispatcher's end of one processor's queue (one ring of that processor's fan-in; no
/// other producer ever writes it).
pub struct Producer {
    ring: Arc<Ring>,
    /// The consumer's wake-up, shared with the other rings of its fan-in.
    bell: Arc<Bell>,
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
        // Pairs with the consumer's SeqCst store of `parked` before its final emptiness check
        // (of every ring of the fan-in, this one included).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.bell.parked.load(Ordering::Relaxed) {
            self.wakes += 1;
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to our eventfd. EAGAIN (counter saturated) is harmless.
            unsafe {
                libc::write(
                    self.bell.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    8,
                )
            };
        }
    }

    /// Messages published or pending and not yet consumed (this producer's ring's depth).
    pub fn depth(&self) -> usize {
        self.tail
            .wrapping_sub(self.ring.head.0.load(Ordering::Relaxed))
    }

    /// Slots in this producer's ring.
    pub fn capacity(&self) -> usize {
        self.ring.mask + 1
    }

    /// Eventfd writes [`Producer::commit`] made so far: the wake-ups (syscalls) this producer
    /// caused, so a dispatcher can report them per call.
    pub fn wakes_sent(&self) -> u64 {
        self.wakes
    }
}

/// The consumer's side of one ring.
struct RingReader {
    ring: Arc<Ring>,
    head: usize,
    tail_cache: usize,
}

impl RingReader {
    /// Calls `f` for up to `max` published messages of this ring, in order, then releases
    /// their slots.
    fn drain(&mut self, max: usize, f: &mut impl FnMut(&Slot)) -> usize {
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

    fn is_empty(&mut self) -> bool {
        self.tail_cache = self.ring.tail.0.load(Ordering::Acquire);
        self.head == self.tail_cache
    }
}

/// A processor's end of its queue: the consuming side of every ring of its fan-in.
pub struct Consumer {
    rings: Box<[RingReader]>,
    bell: Arc<Bell>,
    /// The ring the next [`Consumer::drain`] starts with (rotates, so no producer starves).
    next: usize,
}

impl Consumer {
    /// Calls `f` for up to `max` published messages in total, then releases their slots, and
    /// returns how many were handled. Messages of one ring come in order; the rings are taken
    /// one after the other, starting with a different ring each call, so a busy producer
    /// cannot starve another.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&Slot)) -> usize {
        let n = self.rings.len();
        let start = self.next;
        self.next = if start + 1 == n { 0 } else { start + 1 };
        let mut done = 0;
        let mut i = start;
        loop {
            done += self.rings[i].drain(max - done, &mut f);
            i = if i + 1 == n { 0 } else { i + 1 };
            if i == start || done >= max {
                return done;
            }
        }
    }

    /// Whether a published message is waiting on any ring.
    pub fn is_empty(&mut self) -> bool {
        // Stops at the first non-empty ring: the rings after it keep their cached tails, which
        // `drain` reloads anyway whenever a cache says empty.
        self.rings.iter_mut().all(RingReader::is_empty)
    }

    /// How many rings (producers) feed this consumer.
    pub fn rings(&self) -> usize {
        self.rings.len()
    }

    /// The eventfd to `poll()` on while parked (one for all the rings).
    pub fn wake_fd(&self) -> RawFd {
        self.bell.eventfd.as_raw_fd()
    }

    /// Announces that the consumer is about to sleep; returns false (and stays unparked) when a
    /// message arrived meanwhile on any ring, in which case the caller must not sleep.
    pub fn park(&mut self) -> bool {
        self.bell.parked.store(true, Ordering::SeqCst);
        if !self.is_empty() {
            self.bell.parked.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Clears the parked flag and the eventfd counter after waking.
    pub fn unpark(&mut self) {
        self.clear_parked();
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes from our non-blocking eventfd; EAGAIN when nothing was written.
        unsafe {
            libc::read(
                self.bell.eventfd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                8,
            )
        };
    }

    /// Clears the parked flag only (for [`Consumer::unpark_after`]).
    fn clear_parked(&mut self) {
        self.bell.parked.store(false, Ordering::Relaxed);
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
/// without races: units in use = units the dispatcher assigned (all its threads:
/// [`LoadReport::assigned_units`]) − [`LoadReport::released_units`].
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Dialogs/connections currently active on the processor.
    pub active: AtomicU32,
    /// Units held by active sessions, as the processor counts them (a gauge; for LAN reports,
    /// where several dispatchers share a processor and none knows the whole load).
    pub in_use_units: AtomicU64,
    /// Units assigned to this processor by all dispatcher threads together, ever (monotonic):
    /// each thread reserves with fetch_add before handing a new dialog and gives back what did
    /// not fit, so the sum of threads never overshoots a capacity.
    ///
    /// On its own cache line: the dispatcher threads write it once per new dialog while the
    /// processor writes the heartbeat and the pending gauge every loop round; sharing a line,
    /// each of those writes would take the line from the other side.
    pub assigned_units: Padded<AtomicU64>,
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
    fn assigned_units_shares_its_cache_line_with_no_other_field() {
        let a = std::mem::offset_of!(LoadReport, assigned_units);
        let others = [
            std::mem::offset_of!(LoadReport, active),
            std::mem::offset_of!(LoadReport, in_use_units),
            std::mem::offset_of!(LoadReport, released_units),
            std::mem::offset_of!(LoadReport, rejected_units),
            std::mem::offset_of!(LoadReport, capacity_units),
            std::mem::offset_of!(LoadReport, pending_invites),
            std::mem::offset_of!(LoadReport, max_pending_invites),
            std::mem::offset_of!(LoadReport, reports),
            std::mem::offset_of!(LoadReport, heartbeat_ns),
            std::mem::offset_of!(LoadReport, up),
        ];
        for o in others {
            assert_ne!(
                o / 128,
                a / 128,
                "field at {o} shares the 128-byte line at {a}"
            );
        }
        let r = LoadReport::new(0);
        assert_eq!(
            std::ptr::from_ref(&*r) as usize % 128,
            0,
            "Arc keeps the alignment"
        );
        r.assigned_units.fetch_add(3, Ordering::Relaxed);
        assert_eq!(r.assigned_units.load(Ordering::Relaxed), 3);
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
    /// Message `seq` of fan-in producer `who`: names both, so a message delivered to the wrong
    /// place, twice, or out of order is caught. Lengths vary so the arena wraps unevenly.
    fn fan_msg(who: u32, seq: u32) -> Vec<u8> {
        let mut m = format!("{who}:{seq}:").into_bytes();
        m.resize(m.len() + (seq as usize * 131) % 900, b'a' + who as u8);
        m
    }

    fn parse_fan_msg(b: &[u8]) -> (u32, u32) {
        let text = std::str::from_utf8(b).unwrap();
        let mut it = text.split(':');
        let who = it.next().unwrap().parse().unwrap();
        let seq = it.next().unwrap().parse().unwrap();
        assert_eq!(b, &fan_msg(who, seq)[..], "body of {who}:{seq}");
        (who, seq)
    }

    /// Polls the consumer's eventfd for `ms` milliseconds; whether it is readable.
    fn wake_readable(c: &Consumer, ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd: c.wake_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
    }

    #[test]
    fn fan_in_needs_a_producer() {
        let err = fan_in(0, 4).err().expect("zero producers must be refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn fan_in_rings_are_separate_and_sized_like_channel() {
        let (mut ps, mut c) = fan_in(3, 5).unwrap();
        assert_eq!(ps.len(), 3);
        assert_eq!(c.rings(), 3);
        assert_eq!(channel(5).unwrap().1.rings(), 1);
        for p in &ps {
            assert_eq!(p.capacity(), 8);
        }
        assert!(c.is_empty());
        for _ in 0..8 {
            assert!(push(&mut ps[1], b"one"));
        }
        assert!(!push(&mut ps[1], b"one"), "ring 1 is full");
        assert!(push(&mut ps[0], b"zero"), "ring 0 is not");
        ps[1].commit();
        assert_eq!((ps[0].depth(), ps[1].depth(), ps[2].depth()), (1, 8, 0));
        assert!(
            !c.is_empty(),
            "a message on ring 1 makes the consumer non-empty"
        );
        assert_eq!(
            c.drain(100, |_| {}),
            8,
            "ring 0's message is not committed yet"
        );
        ps[0].commit();
        assert_eq!(c.drain(100, |s| assert_eq!(s.bytes(), b"zero")), 1);
        assert!(c.is_empty());
        assert_eq!(ps[1].depth(), 0);
    }

    #[test]
    fn park_is_refused_while_any_ring_holds_a_message() {
        let (mut ps, mut c) = fan_in(3, 4).unwrap();
        assert!(c.park(), "all rings empty: may sleep");
        c.unpark();
        for (ring, p) in ps.iter_mut().enumerate() {
            assert!(push(p, b"m"));
            p.commit();
            assert!(!c.park(), "ring {ring} holds a message");
            assert_eq!(p.wakes_sent(), 0, "not parked when it committed");
            assert_eq!(c.drain(10, |_| {}), 1);
            assert!(c.park(), "drained again");
            c.unpark();
        }
    }

    #[test]
    fn commit_on_the_second_ring_wakes_the_parked_consumer() {
        let (mut ps, mut c) = fan_in(2, 4).unwrap();
        assert!(c.park());
        assert!(!wake_readable(&c, 0));
        assert!(push(&mut ps[1], b"late"));
        assert!(
            !wake_readable(&c, 0),
            "pushed, not committed: no wake-up yet"
        );
        ps[1].commit();
        assert!(
            wake_readable(&c, 0),
            "ring 1's commit writes the shared eventfd"
        );
        assert_eq!((ps[0].wakes_sent(), ps[1].wakes_sent()), (0, 1));
        c.unpark();
        assert!(!wake_readable(&c, 0), "unpark clears the counter");
        assert_eq!(c.drain(4, |s| assert_eq!(s.bytes(), b"late")), 1);
        // Not parked: a commit on either ring writes nothing.
        for p in &mut ps {
            assert!(push(p, b"busy"));
            p.commit();
        }
        assert!(!wake_readable(&c, 0));
        assert_eq!((ps[0].wakes_sent(), ps[1].wakes_sent()), (0, 1));
    }

    #[test]
    fn drain_rotates_its_starting_ring_so_none_starves() {
        let (mut ps, mut c) = fan_in(2, 4).unwrap();
        for (who, p) in ps.iter_mut().enumerate() {
            for seq in 0..4 {
                assert!(push(p, &fan_msg(who as u32, seq)));
            }
            p.commit();
        }
        // Both rings full: two drains of 2 take from both rings, each in order.
        let mut first = vec![];
        assert_eq!(c.drain(2, |s| first.push(parse_fan_msg(s.bytes()))), 2);
        let mut second = vec![];
        assert_eq!(c.drain(2, |s| second.push(parse_fan_msg(s.bytes()))), 2);
        let ring_of = |v: &[(u32, u32)]| v[0].0;
        assert_ne!(
            ring_of(&first),
            ring_of(&second),
            "{first:?} then {second:?}"
        );
        for batch in [&first, &second] {
            assert_eq!(batch[0].0, batch[1].0, "one ring per batch of 2: {batch:?}");
            assert_eq!((batch[0].1, batch[1].1), (0, 1), "in order within a ring");
        }
        // `max` bounds the total across rings; the rest comes next time, still in order.
        let mut rest = vec![];
        assert_eq!(c.drain(3, |s| rest.push(parse_fan_msg(s.bytes()))), 3);
        assert_eq!(c.drain(3, |s| rest.push(parse_fan_msg(s.bytes()))), 1);
        rest.sort();
        assert_eq!(rest, vec![(0, 2), (0, 3), (1, 2), (1, 3)]);
        // A producer that keeps its ring full cannot hold back another's message for more
        // than one drain.
        let mut next = [4u32, 4];
        for round in 0..10 {
            while push(&mut ps[0], &fan_msg(0, next[0])) {
                next[0] += 1;
            }
            ps[0].commit();
            assert!(push(&mut ps[1], &fan_msg(1, next[1])));
            next[1] += 1;
            ps[1].commit();
            let mut got_one = false;
            for _ in 0..2 {
                c.drain(2, |s| got_one |= parse_fan_msg(s.bytes()).0 == 1);
            }
            assert!(got_one, "round {round}: ring 1 starved");
        }
    }

    #[test]
    fn fan_in_two_producer_threads_lose_nothing_and_keep_each_order() {
        const N: u32 = 20_000;
        let (ps, mut c) = fan_in(2, 16).unwrap();
        let threads: Vec<_> = ps
            .into_iter()
            .enumerate()
            .map(|(who, mut p)| {
                std::thread::spawn(move || {
                    let mut seq = 0u32;
                    while seq < N {
                        if push(&mut p, &fan_msg(who as u32, seq)) {
                            seq += 1;
                            if seq.is_multiple_of(8 + who as u32) {
                                p.commit();
                            }
                        } else {
                            p.commit();
                            std::thread::yield_now();
                        }
                    }
                    p.commit();
                    p.wakes_sent()
                })
            })
            .collect();
        let mut next = [0u32; 2];
        let mut total = 0u64;
        let mut parks = 0u64;
        while next != [N, N] {
            let n = c.drain(32, |s| {
                let (who, seq) = parse_fan_msg(s.bytes());
                assert_eq!(
                    seq, next[who as usize],
                    "producer {who}: lost, duplicated or reordered"
                );
                next[who as usize] += 1;
            });
            total += n as u64;
            if n == 0 && c.park() {
                parks += 1;
                // Parked with messages still to come: only a lost wake-up keeps this poll
                // from returning (every later commit sees `parked` and writes the eventfd).
                let woke = wake_readable(&c, 10_000);
                assert!(woke, "lost wake-up at {next:?}");
                c.unpark_after(woke);
            }
        }
        let wakes: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 2 * u64::from(N));
        assert!(c.is_empty(), "nothing left over");
        assert!(parks == 0 || wakes > 0, "parked {parks} times, never woken");
    }
}
