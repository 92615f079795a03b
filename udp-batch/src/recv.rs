//! [`RecvBatch`]: `recvmmsg` into preallocated buffers.
use std::{
    io,
    mem::size_of,
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd},
};

use crate::{headers::Headers, sockaddr};

/// Buffers, source addresses and headers for one `recvmmsg` of up to `slots` datagrams of up
/// to `max_datagram` bytes each, allocated once.
pub struct RecvBatch {
    slots: usize,
    cap: usize,
    bufs: Vec<u8>,
    hdrs: Headers,
    n: usize,
}

/// One received datagram, borrowed from its [`RecvBatch`].
#[derive(Clone, Copy)]
pub struct Datagram<'a> {
    addr: &'a libc::sockaddr_storage,
    payload: &'a [u8],
    truncated: bool,
}

impl<'a> Datagram<'a> {
    /// The sender; `None` for an address family other than IPv4/IPv6.
    pub fn src(&self) -> Option<SocketAddr> {
        sockaddr::decode(self.addr)
    }

    /// The bytes received (at most the batch's `max_datagram`).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// True when the datagram was longer than `max_datagram` and the kernel cut it
    /// (`MSG_TRUNC`): [`Datagram::payload`] is then only its beginning.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl RecvBatch {
    /// Room for `slots` datagrams of up to `max_datagram` bytes (both at least 1).
    pub fn new(slots: usize, max_datagram: usize) -> Self {
        let slots = slots.clamp(1, u32::MAX as usize);
        let cap = max_datagram.max(1);
        Self {
            slots,
            cap,
            bufs: vec![0; slots * cap],
            hdrs: Headers::new(slots),
            n: 0,
        }
    }

    /// Datagrams per call.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Largest datagram received whole.
    pub fn max_datagram(&self) -> usize {
        self.cap
    }

    /// One non-blocking `recvmmsg` on `fd` (`MSG_DONTWAIT`); returns how many datagrams
    /// arrived, 0 when none were waiting (`EAGAIN`) or a signal interrupted the call. Other
    /// errors (for example `ECONNREFUSED` reported for an earlier send) are returned; the
    /// batch is then empty.
    pub fn recv(&mut self, fd: impl AsFd) -> io::Result<usize> {
        self.n = 0;
        let base = self.bufs.as_mut_ptr();
        let namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        for i in 0..self.slots {
            // SAFETY: i * cap < slots * cap = bufs.len(): in bounds of the allocation.
            let buf = unsafe { base.add(i * self.cap) }.cast();
            self.hdrs.link(i, namelen, buf, self.cap);
        }
        // SAFETY: `slots` headers, each naming its own sockaddr_storage (with its size) and one
        // iovec over its own `cap`-byte region of `bufs`; all owned by `self`, exclusively
        // borrowed and alive for the call. `fd` is borrowed open for the call.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_fd().as_raw_fd(),
                self.hdrs.range(0, self.slots).as_mut_ptr(),
                self.slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.n = (r as usize).min(self.slots);
        Ok(self.n)
    }

    /// Datagrams held from the last [`RecvBatch::recv`].
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when the last [`RecvBatch::recv`] got nothing.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Received datagram `i` (`i < len()`), or `None`.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.n {
            return None;
        }
        let h = self.hdrs.get(i);
        let len = (h.msg_len as usize).min(self.cap);
        let off = i * self.cap;
        Some(Datagram {
            addr: &self.hdrs.addrs[i],
            payload: &self.bufs[off..off + len],
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }

    /// The datagrams from the last [`RecvBatch::recv`], in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        (0..self.n).filter_map(|i| self.get(i))
    }
}
