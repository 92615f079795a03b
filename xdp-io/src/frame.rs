//! Ethernet / IPv4 / IPv6 / UDP framing for the AF_XDP shell.
//!
//! AF_XDP hands us whole Ethernet frames and takes whole frames back, so user space has to do
//! what the kernel's UDP stack would: find the datagram inside a frame, and build a frame around
//! a reply with correct checksums. On veth the peer kernel drops a reply whose UDP checksum was
//! left unfinished (frames arrive with CHECKSUM_PARTIAL), so checksums are always computed.
//!
//! Everything here is total: any byte slice gives a [`UdpFrame`] or a [`FrameError`].
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_UDP: u8 = 17;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;

/// Why a frame could not be read as one UDP datagram; each maps to a counter.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the headers announce.
    #[error("frame truncated at byte {0}")]
    Truncated(usize),
    /// Not IPv4/IPv6 (after at most one VLAN tag).
    #[error("ethertype {0:#06x} is not IP")]
    NotIp(u16),
    /// IP but not UDP, or IPv6 with extension headers.
    #[error("IP protocol {0} is not UDP")]
    NotUdp(u8),
    /// An IPv4 fragment: reassembly is the kernel's job, the XDP program passes these.
    #[error("IPv4 fragment")]
    Fragment,
    /// Version nibble, IHL, IP length or UDP length that cannot be right.
    #[error("malformed header at byte {0}")]
    Malformed(usize),
}

/// A UDP datagram located inside an Ethernet frame, borrowing the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    /// Source MAC, needed to address the reply frame.
    pub src_mac: [u8; 6],
    /// Destination MAC (ours), used as the reply's source.
    pub dst_mac: [u8; 6],
    /// 802.1Q tag control information, kept so replies leave on the same VLAN.
    pub vlan: Option<u16>,
    /// Datagram source (the peer to answer).
    pub src: SocketAddr,
    /// Datagram destination (our well-known address).
    pub dst: SocketAddr,
    /// IPv4 TTL / IPv6 hop limit as received.
    pub ttl: u8,
    /// UDP payload, exactly as long as the UDP length field says.
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Result<u16, FrameError> {
    match b.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(FrameError::Truncated(at)),
    }
}

fn array<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], FrameError> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(FrameError::Truncated(at))
}

/// Locates the UDP datagram in an Ethernet frame.
pub fn parse(frame: &[u8]) -> Result<UdpFrame<'_>, FrameError> {
    let dst_mac = array::<6>(frame, 0)?;
    let src_mac = array::<6>(frame, 6)?;
    let mut off = ETH_HLEN;
    let mut ethertype = be16(frame, 12)?;
    let mut vlan = None;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        vlan = Some(be16(frame, off)?);
        ethertype = be16(frame, off + 2)?;
        off += VLAN_HLEN;
    }
    let (src_ip, dst_ip, ttl, udp_off): (IpAddr, IpAddr, u8, usize) = match ethertype {
        ETH_P_IP => {
            let h = array::<IPV4_HLEN>(frame, off)?;
            if h[0] >> 4 != 4 {
                return Err(FrameError::Malformed(off));
            }
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if ihl < IPV4_HLEN || frame.len() < off + ihl {
                return Err(FrameError::Malformed(off));
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return Err(FrameError::Fragment);
            }
            if h[9] != IPPROTO_UDP {
                return Err(FrameError::NotUdp(h[9]));
            }
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            (src.into(), dst.into(), h[8], off + ihl)
        }
        ETH_P_IPV6 => {
            let h = array::<IPV6_HLEN>(frame, off)?;
            if h[0] >> 4 != 6 {
                return Err(FrameError::Malformed(off));
            }
            if h[6] != IPPROTO_UDP {
                return Err(FrameError::NotUdp(h[6]));
            }
            let src: [u8; 16] = array(&h, 8)?;
            let dst: [u8; 16] = array(&h, 24)?;
            (
                Ipv6Addr::from(src).into(),
                Ipv6Addr::from(dst).into(),
                h[7],
                off + IPV6_HLEN,
            )
        }
        other => return Err(FrameError::NotIp(other)),
    };
    // Where the IP datagram ends by its own length field; bytes after it are link padding.
    let ip_end = if ethertype == ETH_P_IP {
        off + usize::from(be16(frame, off + 2)?) // total length: header and data
    } else {
        udp_off + usize::from(be16(frame, off + 4)?) // payload length: after the fixed header
    };
    if frame.len() < ip_end {
        return Err(FrameError::Truncated(ip_end));
    }
    let udp = array::<UDP_HLEN>(frame, udp_off)?;
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if len < UDP_HLEN || udp_off + len > ip_end {
        return Err(FrameError::Malformed(udp_off + 4));
    }
    let payload = frame
        .get(udp_off + UDP_HLEN..udp_off + len)
        .ok_or(FrameError::Truncated(udp_off + len))?;
    Ok(UdpFrame {
        src_mac,
        dst_mac,
        vlan,
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        ttl,
        payload,
    })
}

/// Addressing of a frame to build: who it goes to and from which of our addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAddr {
    /// Our MAC.
    pub src_mac: [u8; 6],
    /// Next hop's MAC.
    pub dst_mac: [u8; 6],
    /// VLAN tag control information, if the link is tagged.
    pub vlan: Option<u16>,
    /// Our address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
}

impl FrameAddr {
    /// The addressing of a reply to `rx`: MACs and socket addresses swapped, same VLAN.
    pub fn reply_to(rx: &UdpFrame<'_>) -> Self {
        Self {
            src_mac: rx.dst_mac,
            dst_mac: rx.src_mac,
            vlan: rx.vlan,
            src: rx.dst,
            dst: rx.src,
        }
    }
}

/// Why a frame could not be built.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// The output buffer (one UMEM frame) is smaller than headers + payload.
    #[error("frame of {need} bytes does not fit a {have}-byte buffer")]
    TooLarge {
        /// Bytes the frame needs.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// Source and destination are of different IP families.
    #[error("source and destination address families differ")]
    FamilyMismatch,
}

/// Header bytes a frame for `addr` needs in front of the payload.
pub fn header_len(addr: &FrameAddr) -> usize {
    let vlan = if addr.vlan.is_some() { VLAN_HLEN } else { 0 };
    let ip = if addr.src.is_ipv4() {
        IPV4_HLEN
    } else {
        IPV6_HLEN
    };
    ETH_HLEN + vlan + ip + UDP_HLEN
}

/// Writes headers for `addr` and a payload of `payload_len` bytes that the caller has already
/// placed at `out[header_len(addr)..]`; returns the frame length.
///
/// Writing the payload first lets the caller build SIP replies straight into the UMEM frame
/// without an intermediate copy.
pub fn write_headers(
    out: &mut [u8],
    addr: &FrameAddr,
    payload_len: usize,
) -> Result<usize, BuildError> {
    let hlen = header_len(addr);
    let total = hlen + payload_len;
    if total > out.len() || UDP_HLEN + payload_len > usize::from(u16::MAX) - IPV4_HLEN {
        return Err(BuildError::TooLarge {
            need: total,
            have: out.len(),
        });
    }
    let (src_ip, dst_ip) = match (addr.src.ip(), addr.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (IpAddr::V6(s), IpAddr::V6(d)) => (IpAddr::V6(s), IpAddr::V6(d)),
        _ => return Err(BuildError::FamilyMismatch),
    };
    let (head, payload) = out.split_at_mut(hlen);
    let payload = &payload[..payload_len];
    head[0..6].copy_from_slice(&addr.dst_mac);
    head[6..12].copy_from_slice(&addr.src_mac);
    let mut off = 12;
    if let Some(tci) = addr.vlan {
        head[off..off + 2].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        head[off + 2..off + 4].copy_from_slice(&tci.to_be_bytes());
        off += VLAN_HLEN;
    }
    let udp_len = (UDP_HLEN + payload_len) as u16;
    let mut sum = Checksum::default();
    match (src_ip, dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            head[off..off + 2].copy_from_slice(&ETH_P_IP.to_be_bytes());
            off += 2;
            let ip = &mut head[off..off + IPV4_HLEN];
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&(IPV4_HLEN as u16 + udp_len).to_be_bytes());
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            ip[8] = 64;
            ip[9] = IPPROTO_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let mut ipsum = Checksum::default();
            ipsum.add(ip);
            ip[10..12].copy_from_slice(&ipsum.finish().to_be_bytes());
            sum.add(&s.octets());
            sum.add(&d.octets());
            sum.add(&[0, IPPROTO_UDP]);
            sum.add(&udp_len.to_be_bytes());
            off += IPV4_HLEN;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            head[off..off + 2].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
            off += 2;
            let ip = &mut head[off..off + IPV6_HLEN];
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            sum.add(&s.octets());
            sum.add(&d.octets());
            sum.add(&u32::from(udp_len).to_be_bytes());
            sum.add(&[0, 0, 0, IPPROTO_UDP]);
            off += IPV6_HLEN;
        }
        _ => return Err(BuildError::FamilyMismatch),
    }
    let udp = &mut head[off..off + UDP_HLEN];
    udp[0..2].copy_from_slice(&addr.src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&addr.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    sum.add(udp);
    sum.add(payload);
    let mut csum = sum.finish();
    if csum == 0 {
        csum = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    udp[6..8].copy_from_slice(&csum.to_be_bytes());
    Ok(total)
}

/// Internet checksum (RFC 1071) accumulator; odd-length chunks are only allowed last.
#[derive(Default)]
struct Checksum {
    acc: u64,
    odd: Option<u8>,
}

impl Checksum {
    fn add(&mut self, mut data: &[u8]) {
        if let Some(hi) = self.odd.take() {
            if let Some((&lo, rest)) = data.split_first() {
                self.acc += u64::from(u16::from_be_bytes([hi, lo]));
                data = rest;
            } else {
                self.odd = Some(hi);
                return;
            }
        }
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            self.acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            self.odd = Some(*last);
        }
    }

    fn finish(mut self) -> u16 {
        if let Some(hi) = self.odd.take() {
            self.acc += u64::from(u16::from_be_bytes([hi, 0]));
        }
        while self.acc >> 16 != 0 {
            self.acc = (self.acc & 0xffff) + (self.acc >> 16);
        }
        !(self.acc as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(src: &str, dst: &str, vlan: Option<u16>) -> FrameAddr {
        FrameAddr {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vlan,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    fn build(a: &FrameAddr, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let h = header_len(a);
        buf[h..h + payload.len()].copy_from_slice(payload);
        let n = write_headers(&mut buf, a, payload.len()).unwrap();
        buf.truncate(n);
        buf
    }

    /// Verifies a built frame's checksums the way a receiving kernel does: summing the covered
    /// bytes including the checksum field must give 0xffff (i.e. `finish()` gives 0).
    fn verify_udp_checksum(frame: &[u8]) {
        let f = parse(frame).unwrap();
        let udp_start = frame.len() - f.payload.len() - UDP_HLEN;
        let mut s = Checksum::default();
        match (f.src.ip(), f.dst.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                s.add(&a.octets());
                s.add(&b.octets());
                s.add(&[0, IPPROTO_UDP]);
                s.add(&((UDP_HLEN + f.payload.len()) as u16).to_be_bytes());
                let ip = &frame[udp_start - IPV4_HLEN..udp_start];
                let mut ipsum = Checksum::default();
                ipsum.add(ip);
                assert_eq!(ipsum.finish(), 0, "IPv4 header checksum");
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                s.add(&a.octets());
                s.add(&b.octets());
                s.add(&((UDP_HLEN + f.payload.len()) as u32).to_be_bytes());
                s.add(&[0, 0, 0, IPPROTO_UDP]);
            }
            _ => unreachable!(),
        }
        s.add(&frame[udp_start..]);
        assert_eq!(s.finish(), 0, "UDP checksum");
    }

    #[test]
    fn ipv4_round_trip_and_checksums() {
        let a = addr("198.18.0.1:5060", "198.18.0.2:40000", None);
        for payload in [&b""[..], b"x", b"OPTIONS sip:a SIP/2.0\r\n\r\n"] {
            let f = build(&a, payload);
            let p = parse(&f).unwrap();
            assert_eq!(p.src, a.src);
            assert_eq!(p.dst, a.dst);
            assert_eq!(p.payload, payload);
            assert_eq!(p.vlan, None);
            verify_udp_checksum(&f);
        }
    }

    #[test]
    fn ipv6_and_vlan_round_trip() {
        let a = addr("[2001:db8::1]:2427", "[2001:db8::2]:2727", Some(42));
        let f = build(&a, b"CRCX 1 a@gw MGCP 1.0\n");
        let p = parse(&f).unwrap();
        assert_eq!(p.vlan, Some(42));
        assert_eq!(p.src, a.src);
        assert_eq!(p.payload, b"CRCX 1 a@gw MGCP 1.0\n");
        verify_udp_checksum(&f);
        let r = FrameAddr::reply_to(&p);
        assert_eq!(r.dst, a.src);
        assert_eq!(r.dst_mac, a.src_mac);
    }

    #[test]
    fn known_checksum_vector() {
        // RFC 1071 example bytes: 0001 f203 f4f5 f6f7 -> sum ddf2, checksum 220d.
        let mut s = Checksum::default();
        s.add(&[0x00, 0x01, 0xf2]);
        s.add(&[0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(s.finish(), 0x220d);
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        let a = addr("198.18.0.1:5060", "198.18.0.2:40000", None);
        let f = build(&a, b"hello");
        for cut in 0..f.len() - 5 {
            assert!(parse(&f[..cut]).is_err(), "cut at {cut} parsed");
        }
        let mut frag = f.clone();
        frag[14 + 6] = 0x20; // MF
        assert_eq!(parse(&frag), Err(FrameError::Fragment));
        let mut tcp = f.clone();
        tcp[14 + 9] = 6;
        assert_eq!(parse(&tcp), Err(FrameError::NotUdp(6)));
        let mut arp = f;
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&arp), Err(FrameError::NotIp(0x0806)));
    }

    #[test]
    fn too_small_buffer_is_an_error() {
        let a = addr("198.18.0.1:5060", "198.18.0.2:40000", None);
        let mut buf = [0u8; 50];
        assert!(matches!(
            write_headers(&mut buf, &a, 10),
            Err(BuildError::TooLarge { .. })
        ));
        let mixed = addr("198.18.0.1:5060", "[2001:db8::2]:1", None);
        let mut buf = [0u8; 200];
        assert_eq!(
            write_headers(&mut buf, &mixed, 0),
            Err(BuildError::FamilyMismatch)
        );
    }

    #[test]
    fn any_bytes_never_panic() {
        // Cheap exhaustive-ish sweep: every prefix of a few frames with every byte flipped.
        let a = addr("198.18.0.1:5060", "198.18.0.2:40000", Some(7));
        let f = build(&a, b"payload");
        for i in 0..f.len() {
            for v in [0u8, 0x0f, 0x45, 0x60, 0x81, 0xff] {
                let mut g = f.clone();
                g[i] = v;
                let _ = parse(&g);
            }
        }
    }
}
