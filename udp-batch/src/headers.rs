//! The `mmsghdr` array both batches hand to the kernel: one header, one socket address and
//! one iovec per slot, allocated once.
use crate::sockaddr;

pub(crate) struct Headers {
    pub(crate) addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovs`/`hdrs` point into this value's own heap buffers (which do
// not move when the value does), into the owning batch's buffers, or into slices borrowed for
// one send call; `link` rewrites them before every `recvmmsg`/`sendmmsg` and nothing
// dereferences them outside those calls.
unsafe impl Send for Headers {}

impl Headers {
    pub(crate) fn new(slots: usize) -> Self {
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Self {
            addrs: vec![sockaddr::zeroed(); slots],
            iovs: vec![iov; slots],
            // SAFETY: mmsghdr is plain old data; all-zero (null pointers, zero lengths) is valid.
            hdrs: vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; slots],
        }
    }

    /// Points header `i` at `addrs[i]` (`namelen` bytes of it) and at one iovec over `len`
    /// bytes at `buf`, and clears its result fields.
    pub(crate) fn link(
        &mut self,
        i: usize,
        namelen: libc::socklen_t,
        buf: *mut libc::c_void,
        len: usize,
    ) {
        self.iovs[i] = libc::iovec {
            iov_base: buf,
            iov_len: len,
        };
        let h = &mut self.hdrs[i];
        h.msg_len = 0;
        h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
        h.msg_hdr.msg_namelen = namelen;
        h.msg_hdr.msg_iov = &mut self.iovs[i];
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_control = std::ptr::null_mut();
        h.msg_hdr.msg_controllen = 0;
        h.msg_hdr.msg_flags = 0;
    }

    /// Header `i` (its `msg_len` and `msg_flags` after a receive).
    pub(crate) fn get(&self, i: usize) -> &libc::mmsghdr {
        &self.hdrs[i]
    }

    /// Headers `[from, to)`, for the kernel.
    pub(crate) fn range(&mut self, from: usize, to: usize) -> &mut [libc::mmsghdr] {
        &mut self.hdrs[from..to]
    }
}
