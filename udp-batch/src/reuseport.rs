//! A group of UDP sockets on one address (`SO_REUSEPORT`) where the kernel picks the socket
//! for each datagram by a hash of the datagram's **source** address and **source** port, so
//! every datagram of one source `(ip, port)` lands on the same socket (one dispatcher thread
//! reads each socket), whatever the destination port.
//!
//! [`bind_group`] binds the sockets and attaches a classic-BPF reuseport program
//! (`SO_ATTACH_REUSEPORT_CBPF`); [`steer_index`] is the same function written in Rust, so
//! tests can check that kernel and Rust agree and callers can tell where a source goes.
//!
//! # The function
//!
//! With `addr` the source IPv4 address as a big-endian `u32` (IPv6: the four big-endian
//! 32-bit words of the source address xor-ed together) and `port` the source port:
//!
//! ```text
//! h     = addr ^ port
//! index = ((h * 0x9E37_79B1) mod 2^32 >> 16) mod n
//! ```
//!
//! The multiplication spreads every bit of `h` into the high half, the shift keeps that half,
//! `mod n` picks the socket. Socket `i` is the `i`-th one bound (the order of the returned
//! `Vec`), the order in which the kernel adds them to the group.
//!
//! # Why a program and not the kernel's default
//!
//! Without a program the kernel also keeps one 4-tuple on one socket, but only while the
//! group does not change (it scales a hash to the current number of sockets), and that hash
//! mixes in the destination address and port (and a per-boot secret): a SIP group (port
//! 5060) and an MGCP group (port 2427) would send the same source to different threads, and
//! nobody outside the kernel can say which. Ours is a documented function of the source
//! alone, the same in every group of the same size, and [`steer_index`] says where a source
//! goes.
//!
//! # What breaks source affinity
//!
//! - A source that changes its port (a new socket on the client, a restarted peer) or its
//!   address (mobility) is a new source and may land on another socket.
//! - NAT rebinding: a NAT in front of the peer that drops its mapping and makes a new one
//!   shows us a new source port, hence possibly another socket.
//! - The group changing: the index is taken `mod n` over the sockets in the group, and when a
//!   member is closed the kernel moves the last member into its slot; a group is meant to be
//!   bound once and kept for the life of the process. A datagram arriving while the sockets
//!   are still being bound (before the program is attached) is steered by the kernel's
//!   default hash.
//! - IPv6 extension headers between the fixed header and UDP: the program reads the source
//!   port at the fixed offset 40, so such a datagram is steered by whatever two bytes are
//!   there (still deterministic per packet shape, but not by the port).
//! - If the program cannot read the headers it returns 0 (classic BPF's rule for a failed
//!   load): socket 0. The kernel falls back to its own hash for an index `>= n`, which ours
//!   never returns.
//!
//! # Families
//!
//! The program checks the IP version nibble of each datagram, so one program serves IPv4
//! groups, IPv6 groups and dual-stack `[::]` groups, where IPv4 traffic arrives with an IPv4
//! header; [`steer_index`] treats a v4-mapped IPv6 source (`::ffff:a.b.c.d`, what a
//! dual-stack socket reports for IPv4 peers) as the IPv4 address.
//!
//! # Blocking mode and buffers
//!
//! The sockets come back as `std` gives them from `bind` (blocking, no extra buffer sizing);
//! the caller sets non-blocking mode, timeouts and buffers ([`crate::set_recv_buffer`]).
//!
//! # Port 0
//!
//! The kernel's port-0 search skips only ports it could not share, and a port held by another
//! `SO_REUSEPORT` socket of the same user *can* be shared: a first socket binding port 0 with
//! `SO_REUSEPORT` already set may be given a port of someone else's group and join it. So
//! for port 0 the first socket binds without `SO_REUSEPORT` (getting a port nobody holds) and
//! sets it right after bind; the others bind the resolved port with it set before bind. For a
//! fixed port every socket sets it before bind. Any other socket of the same user with
//! `SO_REUSEPORT` on the same address and port joins the group: that is what the option
//! means.
use std::{
    io,
    mem::size_of,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::{sockaddr, socket::set_int};

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic, x86, arm, mips: 51; sparc: 0x35). Not in the
/// `libc` crate's public Linux constants.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 0x35;

/// The odd multiplier of the mix (2^32 / golden ratio, rounded to odd).
const MIX_MUL: u32 = 0x9E37_79B1;
/// The right shift after the multiplication: keep the high half.
const MIX_SHIFT: u32 = 16;

/// Binds `n >= 1` sockets on `addr` (port 0: the first resolves it, the rest bind that port).
///
/// `n == 1`: one plain bound socket (no `SO_REUSEPORT`, no program). `n > 1`: `SO_REUSEPORT`
/// on each, bound in order (socket `i` of the result is index `i` of the group), then the
/// steering program attached to the group through the first socket. A kernel that refuses
/// the program gives an error naming that step (the sockets are closed); the caller may warn
/// and fall back to one socket. The sockets are blocking, as `std` binds them.
pub fn bind_group(addr: SocketAddr, n: usize) -> io::Result<Vec<UdpSocket>> {
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bind_group: a group needs at least one socket",
        ));
    }
    if n == 1 {
        return Ok(vec![UdpSocket::bind(addr)?]);
    }
    let n_u32 = u32::try_from(n)
        .ok()
        .filter(|&v| v <= u32::from(u16::MAX))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bind_group: {n} sockets is more than a reuseport group holds"),
            )
        })?;
    let mut socks = Vec::with_capacity(n);
    let mut at = addr;
    for i in 0..n {
        let s = if i == 0 && addr.port() == 0 {
            // See "Port 0" in the module doc: resolve a port nobody holds, then share it.
            let s = bind_one(at, false).map_err(|e| ctx(e, "bind", i))?;
            set_int(s.as_raw_fd(), libc::SO_REUSEPORT, 1).map_err(|e| ctx(e, "SO_REUSEPORT", i))?;
            s
        } else {
            bind_one(at, true).map_err(|e| ctx(e, "bind", i))?
        };
        if i == 0 {
            at = s.local_addr()?;
        }
        socks.push(s);
    }
    attach_program(&socks[0], &program(n_u32)).map_err(|e| {
        let what = "the kernel refused the reuseport steering program (SO_ATTACH_REUSEPORT_CBPF)";
        io::Error::new(e.kind(), format!("bind_group: {what} on {at}: {e}"))
    })?;
    Ok(socks)
}

/// The socket index the program picks for a datagram from `src` in a group of `n` (the
/// same function, written in Rust, for tests and docs). `n <= 1` gives 0.
pub fn steer_index(src: SocketAddr, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let addr = match src.ip() {
        IpAddr::V4(a) => u32::from_be_bytes(a.octets()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => u32::from_be_bytes(v4.octets()),
            None => {
                let o = a.octets();
                o.chunks_exact(4)
                    .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                    .fold(0, |x, w| x ^ w)
            }
        },
    };
    let h = (addr ^ u32::from(src.port())).wrapping_mul(MIX_MUL) >> MIX_SHIFT;
    (h % n as u32) as usize
}

fn ctx(e: io::Error, step: &str, i: usize) -> io::Error {
    io::Error::new(e.kind(), format!("bind_group: {step} of socket {i}: {e}"))
}

/// A new UDP socket bound on `addr`, with `SO_REUSEPORT` set before bind when `reuseport`.
fn bind_one(addr: SocketAddr, reuseport: bool) -> io::Result<UdpSocket> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open and owned by nobody else; the
    // OwnedFd closes it on every path below.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if reuseport {
        set_int(fd, libc::SO_REUSEPORT, 1)?;
    }
    let (ss, len) = sockaddr::encode(&addr);
    // SAFETY: `fd` is open (held by `owned`); `ss` is a sockaddr_storage on the stack holding
    // an address of `len` bytes, as `encode` says.
    let r = unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UdpSocket::from(owned))
}

fn attach_program(sock: &UdpSocket, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        // The kernel only reads the program (copies it in); the pointer is `*mut` in the ABI.
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: the socket is open (borrowed); `fprog` lives on the stack for the call and
    // points at `prog.len()` instructions that outlive it; the kernel copies the program and
    // does not write through the pointer.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// `SKF_NET_OFF + off`: an offset from the start of the IP header (the packet data of the
/// reuseport hook starts at the UDP payload; negative offsets from `SKF_NET_OFF` reach the
/// network header).
fn net(off: i32) -> u32 {
    (libc::SKF_NET_OFF + off) as u32
}

/// The classic-BPF program computing [`steer_index`] for a group of `n >= 2` sockets.
fn program(n: u32) -> Vec<libc::sock_filter> {
    use libc::{
        BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD,
        BPF_LDX, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X,
        BPF_XOR,
    };
    let ld_w = |off| stmt(BPF_LD | BPF_W | BPF_ABS, net(off));
    let tax = stmt(BPF_MISC | BPF_TAX, 0);
    let xor_x = stmt(BPF_ALU | BPF_XOR | BPF_X, 0);
    let mut p = vec![
        // A = version nibble of the IP header.
        stmt(BPF_LD | BPF_B | BPF_ABS, net(0)),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 4),
        // IPv6: jump over the IPv4 instructions (target patched below).
        jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 0),
        // IPv4: X = 4 * ihl; A = source port (first half-word after the IP header).
        stmt(BPF_LDX | BPF_B | BPF_MSH, net(0)),
        stmt(BPF_LD | BPF_H | BPF_IND, net(0)),
        // X = source port, A = source address (xor-ed at the mix).
        tax,
        ld_w(12),
        // Jump over the IPv6 instructions to the mix (target patched below).
        jump(BPF_JMP | BPF_JA, 0, 0, 0),
    ];
    let v4_end = p.len();
    // IPv6: X = word 8 ^ word 12 ^ word 16 ^ word 20 (the source address), A = source port
    // (offset 40, no extension headers); xor-ed at the mix.
    p.extend([
        ld_w(8),
        tax,
        ld_w(12),
        xor_x,
        tax,
        ld_w(16),
        xor_x,
        tax,
        ld_w(20),
        xor_x,
        tax,
        stmt(BPF_LD | BPF_H | BPF_ABS, net(40)),
    ]);
    let mix = p.len();
    p.extend([
        xor_x,
        stmt(BPF_ALU | BPF_MUL | BPF_K, MIX_MUL),
        stmt(BPF_ALU | BPF_RSH | BPF_K, MIX_SHIFT),
        stmt(BPF_ALU | BPF_MOD | BPF_K, n),
        stmt(BPF_RET | BPF_A, 0),
    ]);
    // Classic-BPF jump offsets count from the instruction after the jump.
    p[2].jt = (v4_end - 3) as u8;
    p[v4_end - 1].k = (mix - v4_end) as u32;
    p
}

#[cfg(test)]
mod tests;
