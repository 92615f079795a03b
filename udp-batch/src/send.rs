//! [`SendBatch`]: datagrams queued in preallocated slots (or borrowed) and sent with
//! `sendmmsg`.
use std::{
    io,
    net::SocketAddr,
    ops::AddAssign,
    os::fd::{AsFd, AsRawFd, RawFd},
};

use crate::{headers::Headers, sockaddr};

/// What a send does when the kernel has no room (`EAGAIN`/`ENOBUFS`/`EINTR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Count the datagram as refused and go on with the rest: never block.
    Skip,
    /// Wait up to 1 ms for room (`poll` for `POLLOUT`) and retry, at most `polls` times per
    /// batch; after that, count and skip like [`Busy::Skip`].
    Wait {
        /// Waits allowed per batch.
        polls: u32,
    },
}

/// What one send achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams the kernel refused (skipped, counted).
    pub errors: u64,
    /// `sendmmsg` calls made.
    pub calls: u64,
}

impl AddAssign for FlushStats {
    fn add_assign(&mut self, o: Self) {
        self.sent += o.sent;
        self.errors += o.errors;
        self.calls += o.calls;
    }
}

/// Up to `slots` outgoing datagrams of up to `slot_bytes` each, with their destinations and
/// the `sendmmsg` headers, allocated once.
pub struct SendBatch {
    slots: usize,
    cap: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    addr_lens: Vec<libc::socklen_t>,
    hdrs: Headers,
    n: usize,
}

impl SendBatch {
    /// Room for `slots` datagrams of up to `slot_bytes` bytes (both at least 1).
    pub fn new(slots: usize, slot_bytes: usize) -> Self {
        let slots = slots.clamp(1, u32::MAX as usize);
        let cap = slot_bytes.max(1);
        Self {
            slots,
            cap,
            bufs: vec![0; slots * cap],
            lens: vec![0; slots],
            addr_lens: vec![0; slots],
            hdrs: Headers::new(slots),
            n: 0,
        }
    }

    /// Datagrams per batch.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Largest datagram a slot holds.
    pub fn slot_bytes(&self) -> usize {
        self.cap
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// True when every slot is queued: flush before the next [`SendBatch::slot`].
    pub fn is_full(&self) -> bool {
        self.n == self.slots
    }

    /// The next free slot, `slot_bytes` long, to write a datagram into in place; queue it
    /// with [`SendBatch::commit`] (until then it is not queued).
    ///
    /// # Panics
    /// When the batch [`is_full`](SendBatch::is_full).
    pub fn slot(&mut self) -> &mut [u8] {
        assert!(!self.is_full(), "SendBatch::slot on a full batch");
        let off = self.n * self.cap;
        &mut self.bufs[off..off + self.cap]
    }

    /// Queues the first `len` bytes (at most `slot_bytes`) of the slot last returned by
    /// [`SendBatch::slot`] for `dst`.
    ///
    /// # Panics
    /// When the batch [`is_full`](SendBatch::is_full).
    pub fn commit(&mut self, len: usize, dst: SocketAddr) {
        assert!(!self.is_full(), "SendBatch::commit on a full batch");
        let i = self.n;
        self.lens[i] = len.min(self.cap);
        self.addr_lens[i] = sockaddr::encode_into(&dst, &mut self.hdrs.addrs[i]);
        self.n += 1;
    }

    /// Copies `bytes` into the next slot and queues it for `dst`; false (nothing queued) when
    /// the batch is full or `bytes` is longer than a slot.
    pub fn push(&mut self, dst: SocketAddr, bytes: &[u8]) -> bool {
        if self.is_full() || bytes.len() > self.cap {
            return false;
        }
        self.slot()[..bytes.len()].copy_from_slice(bytes);
        self.commit(bytes.len(), dst);
        true
    }

    /// Sends everything queued on `fd` with `sendmmsg` and empties the batch. A datagram the
    /// kernel refuses is skipped and counted in [`FlushStats::errors`]; the rest still go.
    pub fn flush(&mut self, fd: impl AsFd, busy: Busy) -> FlushStats {
        let n = self.n;
        self.n = 0;
        if n == 0 {
            return FlushStats::default();
        }
        let base = self.bufs.as_mut_ptr();
        for i in 0..n {
            // SAFETY: i * cap < slots * cap = bufs.len(): in bounds of the allocation.
            let buf = unsafe { base.add(i * self.cap) }.cast();
            self.hdrs.link(i, self.addr_lens[i], buf, self.lens[i]);
        }
        transmit(fd.as_fd().as_raw_fd(), self.hdrs.range(0, n), busy)
    }

    /// Sends borrowed `datagrams` (destination, bytes) on `fd` in `sendmmsg` batches of
    /// `slots`, without copying them; anything queued is flushed first. Refused datagrams are
    /// skipped and counted as in [`SendBatch::flush`].
    pub fn send<'a>(
        &mut self,
        fd: impl AsFd,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
        busy: Busy,
    ) -> FlushStats {
        let fd = fd.as_fd();
        let mut st = self.flush(fd, busy);
        let mut k = 0;
        for (dst, bytes) in datagrams {
            let namelen = sockaddr::encode_into(&dst, &mut self.hdrs.addrs[k]);
            // The kernel only reads through a send iovec; the `*mut` is the C type's.
            let buf = bytes.as_ptr() as *mut libc::c_void;
            self.hdrs.link(k, namelen, buf, bytes.len());
            k += 1;
            if k == self.slots {
                st += transmit(fd.as_raw_fd(), self.hdrs.range(0, k), busy);
                k = 0;
            }
        }
        if k > 0 {
            st += transmit(fd.as_raw_fd(), self.hdrs.range(0, k), busy);
        }
        st
    }
}

/// `sendmmsg` over `hdrs` until each is sent or refused.
fn transmit(fd: RawFd, hdrs: &mut [libc::mmsghdr], busy: Busy) -> FlushStats {
    let n = hdrs.len();
    let mut st = FlushStats::default();
    let mut done = 0;
    let mut polls = 0;
    while done < n {
        st.calls += 1;
        // SAFETY: hdrs[done..n] were linked by the caller to live addresses, iovecs and
        // buffers (owned by the batch or borrowed for the caller's call); `fd` is borrowed open.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr().add(done),
                (n - done) as libc::c_uint,
                0,
            )
        };
        if r > 0 {
            st.sent += r as u64;
            done += r as usize;
            continue;
        }
        if let Busy::Wait { polls: max } = busy {
            let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if (e == libc::EAGAIN || e == libc::ENOBUFS || e == libc::EINTR) && polls < max {
                // Socket buffer full: wait briefly for room rather than drop.
                polls += 1;
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd on the stack.
                unsafe { libc::poll(&mut p, 1, 1) };
                continue;
            }
        }
        // The first datagram of the rest was refused (unreachable, wrong family, buffer full):
        // count it and go on with the others.
        st.errors += 1;
        done += 1;
    }
    st
}
