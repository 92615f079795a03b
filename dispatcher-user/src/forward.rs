//! Forwarding over the LAN (claim 4): messages for processors on other hosts are collected in a
//! preallocated batch during one receive batch and sent with one `sendmmsg` when the shell
//! flushes ([`crate::links::Links::flush`]), so the per-packet cost stays a copy, not a syscall.
use std::{
    io,
    mem::MaybeUninit,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use fabric::SLOT_BYTES;

/// Messages per `sendmmsg`.
pub const BATCH: usize = 64;

/// A UDP socket and one batch of outgoing datagrams.
pub struct Forwarder {
    sock: UdpSocket,
    bufs: Box<[[u8; SLOT_BYTES]]>,
    lens: [usize; BATCH],
    dsts: [Option<SocketAddr>; BATCH],
    n: usize,
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams the kernel refused (counted; the sender retransmits).
    pub errors: u64,
}

impl Forwarder {
    /// Wraps `sock` (bound to the dispatcher's LAN address).
    pub fn new(sock: UdpSocket) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Self {
            sock,
            bufs: vec![[0u8; SLOT_BYTES]; BATCH].into_boxed_slice(),
            lens: [0; BATCH],
            dsts: [None; BATCH],
            n: 0,
            sent: 0,
            errors: 0,
        })
    }

    /// The next free buffer (flushing first if the batch is full); finish with
    /// [`Forwarder::commit`].
    pub fn slot(&mut self) -> &mut [u8; SLOT_BYTES] {
        if self.n == BATCH {
            self.flush();
        }
        &mut self.bufs[self.n]
    }

    /// Queues the buffer last returned by [`Forwarder::slot`], `len` bytes, for `dst`.
    pub fn commit(&mut self, len: usize, dst: SocketAddr) {
        self.lens[self.n] = len.min(SLOT_BYTES);
        self.dsts[self.n] = Some(dst);
        self.n += 1;
    }

    /// Sends everything queued with `sendmmsg`.
    pub fn flush(&mut self) {
        if self.n == 0 {
            return;
        }
        let n = self.n;
        let mut addrs: [MaybeUninit<libc::sockaddr_storage>; BATCH] =
            [MaybeUninit::zeroed(); BATCH];
        let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::zeroed(); BATCH];
        // SAFETY: zeroed mmsghdr is valid; every field used is set below.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        for i in 0..n {
            let Some(dst) = self.dsts[i] else { continue };
            let len = write_sockaddr(&dst, addrs[i].as_mut_ptr());
            iovs[i].write(libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            });
            hdrs[i].msg_hdr.msg_name = addrs[i].as_mut_ptr().cast();
            hdrs[i].msg_hdr.msg_namelen = len;
            hdrs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut done = 0;
        while done < n {
            // SAFETY: hdrs[done..n] point at live iovecs/addresses/buffers set above.
            let r = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    hdrs.as_mut_ptr().add(done),
                    (n - done) as u32,
                    0,
                )
            };
            if r <= 0 {
                // Skip the datagram the kernel refused and go on with the rest.
                self.errors += 1;
                done += 1;
            } else {
                self.sent += r as u64;
                done += r as usize;
            }
        }
        self.n = 0;
    }
}

/// Writes `addr` as a kernel socket address; returns its length.
fn write_sockaddr(addr: &SocketAddr, out: *mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            unsafe { out.cast::<libc::sockaddr_in>().write(sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            unsafe { out.cast::<libc::sockaddr_in6>().write(sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_reach_their_destinations() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("[::1]:0").unwrap();
        let mut f = Forwarder::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let mut f6 = Forwarder::new(UdpSocket::bind("[::1]:0").unwrap()).unwrap();
        for i in 0..(BATCH + 10) {
            let s = f.slot();
            s[..4].copy_from_slice(&(i as u32).to_be_bytes());
            f.commit(4, a.local_addr().unwrap());
        }
        f.flush();
        let s = f6.slot();
        s[..2].copy_from_slice(b"v6");
        f6.commit(2, b.local_addr().unwrap());
        f6.flush();
        assert_eq!((f.sent, f.errors), ((BATCH + 10) as u64, 0));
        let mut buf = [0u8; 16];
        for i in 0..(BATCH + 10) {
            let n = a.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &(i as u32).to_be_bytes(), "order kept");
        }
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"v6");
    }
}
