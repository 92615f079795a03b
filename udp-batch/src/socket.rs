//! Socket set-up: binding with large kernel buffers, and waiting for readability.
use std::{
    io,
    mem::size_of,
    net::{SocketAddr, UdpSocket},
    os::fd::{AsRawFd, RawFd},
};

/// Sets the `SOL_SOCKET` integer option `opt` to `v` on the open socket `fd`.
pub(crate) fn set_int(fd: RawFd, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is an open socket for the call (the caller holds it); the option
    // value is a c_int on the stack and its length says so.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn clamp(bytes: usize) -> libc::c_int {
    bytes.min(libc::c_int::MAX as usize) as libc::c_int
}

/// Binds a non-blocking UDP socket on `addr` with `buf_bytes` of kernel receive and send
/// buffer: `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` first (needs `CAP_NET_ADMIN`), else the plain
/// options (capped by `net.core.rmem_max`/`wmem_max`). Failing to size the buffers is not an
/// error: the socket only gets smaller ones.
pub fn bind(addr: SocketAddr, buf_bytes: usize) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    let fd = s.as_raw_fd();
    let v = clamp(buf_bytes);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int(fd, force, v).is_err() {
            let _ = set_int(fd, plain, v);
        }
    }
    Ok(s)
}

/// Asks for `bytes` of kernel receive buffer with plain `SO_RCVBUF` (capped by
/// `net.core.rmem_max`).
pub fn set_recv_buffer(sock: &UdpSocket, bytes: usize) -> io::Result<()> {
    set_int(sock.as_raw_fd(), libc::SO_RCVBUF, clamp(bytes))
}

/// Waits up to `timeout_ns` for any of `fds` to become readable (`ppoll`, ns resolution; any
/// fd, not only UDP sockets). Clears every `revents` first. Returns how many are ready, 0 on
/// timeout or when a signal interrupted the wait.
pub fn wait_readable(fds: &mut [libc::pollfd], timeout_ns: u64) -> io::Result<usize> {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    // SAFETY: `fds` is a valid, exclusively borrowed pollfd array of the length passed; `ts`
    // lives on the stack for the call; a null signal mask means "leave it".
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if r >= 0 {
        return Ok(r as usize);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(0)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_is_nonblocking_and_wait_sees_data() {
        let a = bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            a.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        set_recv_buffer(&a, 1 << 20).unwrap();
        let mut pfd = [libc::pollfd {
            fd: a.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        assert_eq!(wait_readable(&mut pfd, 1_000_000).unwrap(), 0, "times out");
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.send_to(b"x", a.local_addr().unwrap()).unwrap();
        assert_eq!(wait_readable(&mut pfd, 2_000_000_000).unwrap(), 1);
        assert_ne!(pfd[0].revents & libc::POLLIN, 0);
    }
}
