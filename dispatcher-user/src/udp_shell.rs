//! The plain-socket I/O shell: `recvmmsg` batches from one UDP socket per well-known port, fed
//! to the same [`Router`] as the AF_XDP shell; the dispatcher's own answers go out with `sendto`
//! (they are the exception: OPTIONS, 4xx/5xx, overload). For machines without XDP or without privileges.
use std::{
    io,
    mem::MaybeUninit,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
};

use dispatcher_common::PortProto;

use crate::{
    links::Dispatch,
    route::Inbound,
    stats::{PublishTimer, Published},
};

/// Datagrams per `recvmmsg` call.
const BATCH: usize = 64;
/// Largest datagram accepted; larger ones are truncated by the kernel and counted.
const MAX_DGRAM: usize = 65_536;

/// Counters of the UDP shell itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UdpStats {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// `recvmmsg` calls that returned data.
    pub rx_batches: u64,
    /// Datagrams longer than the receive buffer (dropped, counted).
    pub truncated: u64,
    /// Replies sent by the dispatcher itself.
    pub tx_replies: u64,
    /// Replies the kernel refused (buffer full, unreachable), counted.
    pub tx_errors: u64,
    /// CPU time of the dispatcher thread, ns (filled in when it stops).
    pub cpu_ns: u64,
}

/// One bound well-known socket and its protocol.
pub struct Listener {
    sock: UdpSocket,
    proto: PortProto,
    local: SocketAddr,
}

impl Listener {
    /// Binds `addr` for `proto`, non-blocking, with a large receive buffer.
    pub fn bind(addr: SocketAddr, proto: PortProto) -> io::Result<Self> {
        let sock = UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        set_rcvbuf(&sock, 8 << 20);
        let local = sock.local_addr()?;
        Ok(Self { sock, proto, local })
    }

    /// The bound address (resolves port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

fn set_rcvbuf(sock: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: valid fd and option pointer/length. Failure only means a smaller buffer.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Receive buffers for one `recvmmsg` batch, allocated once.
struct Batch {
    bufs: Vec<[u8; MAX_DGRAM]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Self {
        let mut bufs = vec![[0u8; MAX_DGRAM]; BATCH];
        // SAFETY: all-zero is a valid sockaddr_storage / mmsghdr.
        let addrs =
            vec![unsafe { MaybeUninit::<libc::sockaddr_storage>::zeroed().assume_init() }; BATCH];
        let iovs = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: MAX_DGRAM,
            })
            .collect();
        let hdrs = vec![unsafe { MaybeUninit::<libc::mmsghdr>::zeroed().assume_init() }; BATCH];
        Self {
            bufs,
            addrs,
            iovs,
            hdrs,
        }
    }

    /// One `recvmmsg`; returns how many datagrams arrived (0 when none are waiting).
    fn recv(&mut self, fd: i32) -> io::Result<usize> {
        for i in 0..BATCH {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        // SAFETY: hdrs/iovs/addrs/bufs are live for the call and correctly linked above.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }
}

/// Converts a kernel socket address to a `SocketAddr`; `None` for families we never bind.
fn sockaddr_to_std(sa: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(sa.ss_family) {
        libc::AF_INET => {
            // SAFETY: family says this storage holds a sockaddr_in.
            let a = unsafe { &*(sa as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(sa as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::from((
                a.sin6_addr.s6_addr,
                u16::from_be(a.sin6_port),
            )))
        }
        _ => None,
    }
}

/// Runs the UDP shell until `stop` is set: poll the listeners, drain each with `recvmmsg`,
/// hand every datagram to `core`.
pub fn run(
    listeners: &[Listener],
    core: &mut Dispatch,
    stop: &AtomicBool,
    stats: &mut UdpStats,
    published: &Published,
) -> io::Result<()> {
    let mut timer = PublishTimer::default();
    let mut batch = Batch::new();
    let mut pfds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|l| libc::pollfd {
            fd: l.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        if timer.due(fabric::monotonic_ns()) {
            published.store(&core.router.stats(), stats.rx_datagrams);
        }
        // SAFETY: pfds is a valid array of pollfd for the call.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for l in listeners {
            loop {
                let n = batch.recv(l.sock.as_raw_fd())?;
                if n == 0 {
                    break;
                }
                stats.rx_batches += 1;
                let now_ns = fabric::monotonic_ns();
                core.begin_batch(now_ns);
                for i in 0..n {
                    let h = &batch.hdrs[i];
                    stats.rx_datagrams += 1;
                    if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                        stats.truncated += 1;
                        continue;
                    }
                    let Some(src) = sockaddr_to_std(&batch.addrs[i]) else {
                        continue;
                    };
                    let len = (h.msg_len as usize).min(MAX_DGRAM);
                    let msg = Inbound {
                        proto: l.proto,
                        src,
                        dst: l.local,
                        payload: &batch.bufs[i][..len],
                    };
                    if let Some(reply) = core.handle(now_ns, &msg) {
                        match l.sock.send_to(reply, src) {
                            Ok(_) => stats.tx_replies += 1,
                            Err(_) => stats.tx_errors += 1,
                        }
                    }
                }
                core.flush();
                if n < BATCH {
                    break;
                }
            }
        }
    }
    published.store(&core.router.stats(), stats.rx_datagrams);
    Ok(())
}
