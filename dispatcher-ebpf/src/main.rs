//! Switchyard's XDP program.
//!
//! It does one thing: UDP whose destination port is in [`WELL_KNOWN_PORTS`] goes to the AF_XDP
//! socket bound on the receive queue it arrived on; everything else (processor ports, SSH, ICMP,
//! fragments, IPv6 with extension headers) goes to the kernel stack untouched. Policy (which
//! ports, which sources, which processor) belongs to user space; this program only counts.
//!
//! Built for `bpfel-unknown-none` by `xdp-io`'s build script. On the host it compiles to
//! an empty binary so that `cargo build --workspace` keeps working on stable.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action,
        macros::{map, xdp},
        maps::{HashMap, PerCpuArray, XskMap},
        programs::XdpContext,
    };
    use dispatcher_common::{Counter, PortKey, MAX_PORTS, MAX_QUEUES};

    /// UDP destination ports (host byte order) steered to AF_XDP; value is a `PortProto`.
    #[map]
    static WELL_KNOWN_PORTS: HashMap<PortKey, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

    /// One AF_XDP socket per receive queue, keyed by queue index.
    #[map]
    static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

    /// Per-CPU verdict counters, indexed by `Counter`.
    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

    const ETH_HLEN: usize = 14;
    const VLAN_HLEN: usize = 4;
    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86DD;
    const ETH_P_8021Q: u16 = 0x8100;
    const ETH_P_8021AD: u16 = 0x88A8;
    const IPPROTO_UDP: u8 = 17;
    const IPV6_HLEN: usize = 40;
    const UDP_HLEN: usize = 8;

    /// Why a frame is not redirected; every variant maps to one counter.
    enum Verdict {
        Ours,
        NotOurs,
        Malformed,
    }

    #[inline(always)]
    fn count(c: Counter) {
        if let Some(slot) = COUNTERS.get_ptr_mut(c as u32) {
            // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
            unsafe { *slot += 1 };
        }
    }

    /// Bounds-checked read of `N` bytes at `off`; `None` when the frame is shorter.
    #[inline(always)]
    fn bytes<const N: usize>(ctx: &XdpContext, off: usize) -> Option<[u8; N]> {
        let start = ctx.data();
        let end = ctx.data_end();
        if start + off + N > end {
            return None;
        }
        // SAFETY: the verifier-visible check above proves [start+off, start+off+N) is in the packet.
        Some(unsafe { core::ptr::read_unaligned((start + off) as *const [u8; N]) })
    }

    #[inline(always)]
    fn be16(b: [u8; 2]) -> u16 {
        u16::from_be_bytes(b)
    }

    /// Walks Ethernet (one optional 802.1Q/802.1ad tag), IPv4/IPv6 and UDP; returns where the
    /// UDP header starts and where the IP datagram ends by its length field, or why the frame
    /// is not ours.
    #[inline(always)]
    fn udp_offset(ctx: &XdpContext) -> Result<(usize, usize), Verdict> {
        let mut off = ETH_HLEN;
        let mut ethertype = be16(bytes::<2>(ctx, 12).ok_or(Verdict::Malformed)?);
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ethertype = be16(bytes::<2>(ctx, off + 2).ok_or(Verdict::Malformed)?);
            off += VLAN_HLEN;
        }
        match ethertype {
            ETH_P_IP => {
                let [vihl, ..] = bytes::<1>(ctx, off).ok_or(Verdict::Malformed)?;
                if vihl >> 4 != 4 {
                    return Err(Verdict::Malformed);
                }
                let ihl = ((vihl & 0x0f) as usize) * 4;
                if ihl < 20 {
                    return Err(Verdict::Malformed);
                }
                // Fixed header must be there before we trust any field of it.
                let hdr = bytes::<20>(ctx, off).ok_or(Verdict::Malformed)?;
                let frag = be16([hdr[6], hdr[7]]);
                // More-fragments flag or a non-zero offset: reassembly is the kernel's job.
                if frag & 0x3fff != 0 {
                    return Err(Verdict::NotOurs);
                }
                if hdr[9] != IPPROTO_UDP {
                    return Err(Verdict::NotOurs);
                }
                // Total length covers header and data; bytes after it are link padding.
                Ok((off + ihl, off + be16([hdr[2], hdr[3]]) as usize))
            }
            ETH_P_IPV6 => {
                let hdr = bytes::<IPV6_HLEN>(ctx, off).ok_or(Verdict::Malformed)?;
                if hdr[0] >> 4 != 6 {
                    return Err(Verdict::Malformed);
                }
                // Extension headers (next header != UDP) are passed: signalling never uses them
                // and walking the chain belongs to the kernel.
                if hdr[6] != IPPROTO_UDP {
                    return Err(Verdict::NotOurs);
                }
                // Payload length: what follows the fixed header (here: the UDP datagram).
                Ok((
                    off + IPV6_HLEN,
                    off + IPV6_HLEN + be16([hdr[4], hdr[5]]) as usize,
                ))
            }
            _ => Err(Verdict::NotOurs),
        }
    }

    #[inline(always)]
    fn classify(ctx: &XdpContext) -> Verdict {
        let (udp, ip_end) = match udp_offset(ctx) {
            Ok(at) => at,
            Err(v) => return v,
        };
        let Some(h) = bytes::<UDP_HLEN>(ctx, udp) else {
            return Verdict::Malformed;
        };
        let dport = be16([h[2], h[3]]);
        let len = be16([h[4], h[5]]) as usize;
        // The IP datagram must fit the frame, and the UDP datagram the IP one (a UDP length
        // reaching into link padding, or an IP length shorter than its headers, is impossible).
        if len < UDP_HLEN || ip_end > ctx.data_end() - ctx.data() || udp + len > ip_end {
            return Verdict::Malformed;
        }
        if WELL_KNOWN_PORTS.get_ptr(PortKey::new(dport)).is_some() {
            Verdict::Ours
        } else {
            Verdict::NotOurs
        }
    }

    /// Entry point attached to the interface.
    #[xdp]
    pub fn switchyard_xdp(ctx: XdpContext) -> u32 {
        match classify(&ctx) {
            Verdict::Ours => {
                // Lower bits of flags = action when no socket is bound on this queue.
                match XSKS.redirect(ctx.rx_queue_index(), xdp_action::XDP_PASS as u64) {
                    Ok(action) => {
                        count(Counter::Redirected);
                        action
                    }
                    Err(_) => {
                        count(Counter::NoSocket);
                        xdp_action::XDP_PASS
                    }
                }
            }
            Verdict::NotOurs => {
                count(Counter::Passed);
                xdp_action::XDP_PASS
            }
            Verdict::Malformed => {
                count(Counter::Malformed);
                xdp_action::XDP_PASS
            }
        }
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        // SAFETY: the verifier rejects programs that can reach this; it never runs.
        unsafe { core::hint::unreachable_unchecked() }
    }

    /// Licence section: the kernel needs a GPL-compatible declaration for some helpers.
    #[link_section = "license"]
    #[used]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
