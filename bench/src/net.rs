//! Non-blocking UDP sockets with batched `sendmmsg`/`recvmmsg`, and the [`Outbox`] the sans-IO
//! engines write their datagrams into.
//!
//! Everything here is allocated once at set-up; the steady path only fills preallocated
//! buffers and header arrays.
use std::{
    io,
    mem::{size_of, zeroed},
    net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    os::fd::{AsRawFd, RawFd},
};

/// Datagrams per `sendmmsg`/`recvmmsg` call.
pub const BATCH: usize = 64;

/// Converts a socket address to the C representation.
pub fn to_sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Converts a C socket address back; `None` for families other than IPv4/IPv6.
pub fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                sin.sin_addr.s_addr.to_ne_bytes().into(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn set_buf(fd: RawFd, force: libc::c_int, plain: libc::c_int, bytes: usize) {
    let v = bytes as libc::c_int;
    let p = (&v as *const libc::c_int).cast();
    let l = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd and option value. FORCE needs CAP_NET_ADMIN; fall back to the plain
    // option (capped by net.core.[rw]mem_max).
    unsafe {
        if libc::setsockopt(fd, libc::SOL_SOCKET, force, p, l) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, plain, p, l);
        }
    }
}

/// Binds a non-blocking UDP socket with large kernel buffers.
pub fn bind_udp(addr: SocketAddr, buf_bytes: usize) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    set_buf(
        s.as_raw_fd(),
        libc::SO_RCVBUFFORCE,
        libc::SO_RCVBUF,
        buf_bytes,
    );
    set_buf(
        s.as_raw_fd(),
        libc::SO_SNDBUFFORCE,
        libc::SO_SNDBUF,
        buf_bytes,
    );
    Ok(s)
}

#[derive(Clone, Copy, Debug)]
struct OutMsg {
    sock: u16,
    dst: SocketAddr,
    off: u32,
    len: u32,
}

/// A bounded batch of datagrams to send, built in place by the engines.
pub struct Outbox {
    msg_cap: usize,
    slots: usize,
    data: Vec<u8>,
    msgs: Vec<OutMsg>,
    /// Messages whose builder ran out of space (not sent).
    pub overflow: u64,
}

impl Outbox {
    /// Room for `slots` messages of at most `msg_cap` bytes each.
    pub fn new(slots: usize, msg_cap: usize) -> Self {
        Outbox {
            msg_cap,
            slots,
            data: vec![0; slots * msg_cap],
            msgs: Vec::with_capacity(slots),
            overflow: 0,
        }
    }

    /// Free message slots.
    pub fn room(&self) -> usize {
        self.slots - self.msgs.len()
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Largest message size.
    pub fn msg_cap(&self) -> usize {
        self.msg_cap
    }

    /// Queues a datagram for socket `sock` to `dst`, written by `build` into a buffer of
    /// `msg_cap` bytes; `build` returns the length or `None` when the message did not fit.
    /// Returns false (and counts an overflow) when nothing was queued.
    pub fn push(
        &mut self,
        sock: usize,
        dst: SocketAddr,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let i = self.msgs.len();
        if i >= self.slots {
            self.overflow += 1;
            return false;
        }
        let off = i * self.msg_cap;
        let buf = &mut self.data[off..off + self.msg_cap];
        match build(buf) {
            Some(len) if len <= self.msg_cap => {
                self.msgs.push(OutMsg {
                    sock: sock as u16,
                    dst,
                    off: off as u32,
                    len: len as u32,
                });
                true
            }
            _ => {
                self.overflow += 1;
                false
            }
        }
    }

    /// Queued messages: (socket index, destination, bytes).
    pub fn iter(&self) -> impl Iterator<Item = (usize, SocketAddr, &[u8])> + '_ {
        self.msgs.iter().map(|m| {
            (
                m.sock as usize,
                m.dst,
                &self.data[m.off as usize..(m.off + m.len) as usize],
            )
        })
    }

    /// Forgets all queued messages.
    pub fn clear(&mut self) {
        self.msgs.clear();
    }
}

/// I/O counters of a set of sockets.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct IoStats {
    /// Datagrams handed to the kernel.
    pub datagrams_sent: u64,
    /// Bytes handed to the kernel.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Datagrams not sent: the kernel refused them (buffer full after retries, unreachable).
    pub send_errors: u64,
    /// `sendmmsg` calls.
    pub send_calls: u64,
    /// `recvmmsg` calls that returned data.
    pub recv_calls: u64,
    /// Received datagrams truncated to the receive buffer.
    pub truncated: u64,
}

/// K sockets with preallocated `sendmmsg`/`recvmmsg` state.
pub struct Sockets {
    socks: Vec<UdpSocket>,
    locals: Vec<SocketAddr>,
    send_hdrs: Vec<libc::mmsghdr>,
    send_iov: Vec<libc::iovec>,
    send_addr: Vec<libc::sockaddr_storage>,
    recv_hdrs: Vec<libc::mmsghdr>,
    recv_iov: Vec<libc::iovec>,
    recv_addr: Vec<libc::sockaddr_storage>,
    recv_buf: Vec<u8>,
    recv_cap: usize,
    /// Counters.
    pub stats: IoStats,
}

// SAFETY: the raw pointers inside the preallocated header arrays only ever point into this
// value's own buffers and are rewritten before every use.
unsafe impl Send for Sockets {}

impl Sockets {
    /// Binds `k` sockets on `local_ip` (ephemeral ports, or `first_port`, `first_port + 1`...).
    pub fn bind(local: SocketAddr, k: usize, recv_cap: usize) -> io::Result<Self> {
        let mut socks = Vec::with_capacity(k);
        let mut locals = Vec::with_capacity(k);
        for i in 0..k {
            let mut a = local;
            if a.port() != 0 {
                a.set_port(a.port() + i as u16);
            }
            let s = bind_udp(a, 16 << 20)?;
            locals.push(s.local_addr()?);
            socks.push(s);
        }
        // SAFETY: zeroed mmsghdr/iovec/sockaddr_storage are valid (null pointers, zero lengths).
        let z = || unsafe { zeroed::<libc::mmsghdr>() };
        Ok(Sockets {
            socks,
            locals,
            send_hdrs: (0..BATCH).map(|_| z()).collect(),
            send_iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            send_addr: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            recv_hdrs: (0..BATCH).map(|_| z()).collect(),
            recv_iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            recv_addr: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            recv_buf: vec![0; BATCH * recv_cap],
            recv_cap,
            stats: IoStats::default(),
        })
    }

    /// Local addresses, by socket index.
    pub fn locals(&self) -> &[SocketAddr] {
        &self.locals
    }

    /// Number of sockets.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// True without sockets.
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// Raw fds, for `poll`.
    pub fn fds(&self) -> Vec<RawFd> {
        self.socks.iter().map(|s| s.as_raw_fd()).collect()
    }

    /// Sends everything in `out` (grouped per socket, `sendmmsg` batches) and clears it.
    pub fn flush(&mut self, out: &mut Outbox) {
        if out.is_empty() {
            return;
        }
        for s in 0..self.socks.len() {
            let mut n = 0;
            for (sock, dst, bytes) in out.iter() {
                if sock != s {
                    continue;
                }
                let (ss, len) = to_sockaddr(&dst);
                self.send_addr[n] = ss;
                self.send_iov[n] = libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: bytes.len(),
                };
                let h = &mut self.send_hdrs[n].msg_hdr;
                h.msg_name = (&mut self.send_addr[n] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = len;
                h.msg_iov = &mut self.send_iov[n];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                self.stats.bytes_sent += bytes.len() as u64;
                n += 1;
                if n == BATCH {
                    self.send_batch(s, n);
                    n = 0;
                }
            }
            if n > 0 {
                self.send_batch(s, n);
            }
        }
        out.clear();
    }

    fn send_batch(&mut self, s: usize, n: usize) {
        let fd = self.socks[s].as_raw_fd();
        let mut done = 0;
        let mut stalls = 0;
        while done < n {
            self.stats.send_calls += 1;
            // SAFETY: the headers [done, n) point at live buffers in `out` and `self`.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.send_hdrs.as_mut_ptr().add(done),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                done += r as usize;
                self.stats.datagrams_sent += r as u64;
                continue;
            }
            let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if (e == libc::EAGAIN || e == libc::ENOBUFS || e == libc::EINTR) && stalls < 100 {
                // Socket buffer full: wait briefly for room rather than drop.
                stalls += 1;
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 1) };
                continue;
            }
            // The first message of the rest failed (e.g. ECONNREFUSED from an earlier ICMP):
            // count it and go on with the others.
            self.stats.send_errors += 1;
            done += 1;
        }
    }

    /// Receives up to one batch on socket `s` and hands each datagram to `f(src, bytes)`.
    /// Returns the number received (0 when nothing was waiting).
    pub fn recv_batch(&mut self, s: usize, mut f: impl FnMut(SocketAddr, &[u8])) -> usize {
        let cap = self.recv_cap;
        for i in 0..BATCH {
            self.recv_iov[i] = libc::iovec {
                iov_base: self.recv_buf[i * cap..].as_mut_ptr().cast(),
                iov_len: cap,
            };
            let h = &mut self.recv_hdrs[i].msg_hdr;
            h.msg_name = (&mut self.recv_addr[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.recv_iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.recv_hdrs[i].msg_len = 0;
        }
        // SAFETY: BATCH headers pointing at BATCH buffers of `cap` bytes owned by self.
        let r = unsafe {
            libc::recvmmsg(
                self.socks[s].as_raw_fd(),
                self.recv_hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            // EAGAIN (nothing waiting) or an ICMP error reported on the socket: nothing to read.
            return 0;
        }
        let n = r as usize;
        self.stats.recv_calls += 1;
        self.stats.datagrams_received += n as u64;
        for i in 0..n {
            let len = (self.recv_hdrs[i].msg_len as usize).min(cap);
            if self.recv_hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.stats.truncated += 1;
            }
            self.stats.bytes_received += len as u64;
            let Some(src) = from_sockaddr(&self.recv_addr[i]) else {
                continue;
            };
            f(src, &self.recv_buf[i * cap..i * cap + len]);
        }
        n
    }
}

/// Waits up to `timeout_ns` for any of `fds` to become readable (`ppoll`, ns resolution).
pub fn wait_readable(fds: &mut [libc::pollfd], timeout_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    // SAFETY: valid pollfd array and timespec; no signal mask.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for a in ["127.0.0.1:5060", "[::1]:2427", "198.18.0.1:65535"] {
            let a: SocketAddr = a.parse().unwrap();
            let (ss, _) = to_sockaddr(&a);
            assert_eq!(from_sockaddr(&ss), Some(a));
        }
    }

    #[test]
    fn outbox_bounds_and_overflow() {
        let mut o = Outbox::new(2, 16);
        let dst: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(o.push(0, dst, |b| {
            b[..3].copy_from_slice(b"abc");
            Some(3)
        }));
        assert!(!o.push(1, dst, |_| None));
        assert!(o.push(1, dst, |_| Some(16)));
        assert!(!o.push(1, dst, |_| Some(1)));
        assert_eq!(o.overflow, 2);
        let v: Vec<_> = o.iter().map(|(s, _, b)| (s, b.len())).collect();
        assert_eq!(v, vec![(0, 3), (1, 16)]);
        assert_eq!(o.iter().next().unwrap().2, b"abc");
        o.clear();
        assert_eq!(o.room(), 2);
    }

    #[test]
    fn loopback_batch_send_receive() {
        let mut a = Sockets::bind("127.0.0.1:0".parse().unwrap(), 1, 2048).unwrap();
        let mut b = Sockets::bind("127.0.0.1:0".parse().unwrap(), 1, 2048).unwrap();
        let mut o = Outbox::new(100, 64);
        for i in 0..100u8 {
            o.push(0, b.locals()[0], |buf| {
                buf[0] = i;
                Some(1)
            });
        }
        a.flush(&mut o);
        assert_eq!(a.stats.datagrams_sent, 100);
        let mut got = Vec::new();
        let t = std::time::Instant::now();
        while got.len() < 100 && t.elapsed().as_secs() < 5 {
            b.recv_batch(0, |src, bytes| {
                assert_eq!(src, a.locals()[0]);
                got.push(bytes[0]);
            });
        }
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
    }
}
