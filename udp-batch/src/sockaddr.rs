//! `std::net::SocketAddr` ⇄ the kernel's `sockaddr_storage`.
use std::{
    mem::size_of,
    net::{SocketAddr, SocketAddrV4, SocketAddrV6},
};

/// An all-zero `sockaddr_storage` (family `AF_UNSPEC`).
pub fn zeroed() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Encodes `addr` (IPv4, or IPv6 with flow info and scope id) for the kernel; returns the
/// storage and the length of the address in it.
pub fn encode(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut ss = zeroed();
    let len = encode_into(addr, &mut ss);
    (ss, len)
}

/// Encodes `addr` into `out` in place; returns the length written.
pub fn encode_into(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let p: *mut libc::sockaddr_storage = out;
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
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in; `p` comes
            // from a live `&mut`.
            unsafe { p.cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
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
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6; `p` comes
            // from a live `&mut`.
            unsafe { p.cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Decodes a kernel socket address; `None` for families other than IPv4/IPv6.
pub fn decode(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let p: *const libc::sockaddr_storage = ss;
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in (smaller, same
            // alignment or less).
            let sin = unsafe { &*p.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                sin.sin_addr.s_addr.to_ne_bytes().into(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6 (smaller, same
            // alignment or less).
            let sin6 = unsafe { &*p.cast::<libc::sockaddr_in6>() };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_v4_v6() {
        for a in [
            "127.0.0.1:5060",
            "198.18.0.1:65535",
            "0.0.0.0:0",
            "[::1]:2427",
            "[2001:db8::7]:5060",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let (ss, len) = encode(&a);
            assert_eq!(decode(&ss), Some(a));
            let want = if a.is_ipv4() {
                size_of::<libc::sockaddr_in>()
            } else {
                size_of::<libc::sockaddr_in6>()
            };
            assert_eq!(len as usize, want);
        }
        let v6 = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 0x12345, 3));
        assert_eq!(
            decode(&encode(&v6).0),
            Some(v6),
            "flow info and scope id kept"
        );
        assert_eq!(decode(&zeroed()), None);
    }

    #[test]
    fn network_byte_order() {
        let (ss, _) = encode(&"10.1.2.3:258".parse().unwrap());
        // SAFETY: test: encode wrote a sockaddr_in.
        let sin = unsafe { &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
        assert_eq!(sin.sin_port.to_ne_bytes(), [1, 2]);
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [10, 1, 2, 3]);
    }
}
