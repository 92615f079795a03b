//! Switchyard's XDP program.
//!
//! It does one thing: UDP whose destination port is in [`WELL_KNOWN_PORTS`] goes to the AF_XDP
//! socket bound on the receive queue it arrived on; everything else (processor ports, SSH, ICMP,
//! fragments, IPv6 with extension headers) goes to the kernel stack untouched. Policy (which
//! ports, which processor) belongs to user space; this program only counts.
//!
//! One exception, the source guard: a well-known-port datagram from a source outside the
//! configured allow-list, or over its per-source rate, is dropped here (`XDP_DROP`, counted in
//! `DroppedNotAllowed` / `DroppedRate`) so that a flood never reaches the AF_XDP rings. Which
//! sources and which rate stay user space's: they are map contents (see [`GUARD`]), changed
//! without reloading this program. Processor ports and all other traffic are never guarded.
//!
//! Built for `bpfel-unknown-none` by `xdp-io`'s build script. On the host it compiles to
//! an empty binary so that `cargo build --workspace` keeps working on stable.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action,
        helpers::bpf_ktime_get_ns,
        macros::{map, xdp},
        maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, XskMap},
        programs::XdpContext,
    };
    use dispatcher_common::{
        Bucket, Counter, GuardConfig, PortKey, SourceKey, V4Key, V6Key, MAX_BUCKETS, MAX_PORTS,
        MAX_PREFIXES, MAX_QUEUES, TOKEN,
    };

    /// UDP destination ports (host byte order) steered to AF_XDP; value is a `PortProto`.
    #[map]
    static WELL_KNOWN_PORTS: HashMap<PortKey, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

    /// One AF_XDP socket per receive queue, keyed by queue index.
    #[map]
    static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

    /// Per-CPU verdict counters, indexed by `Counter`.
    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

    /// The guard's settings (slot 0): allow-list and exemption flags, rate, bucket capacity.
    #[map]
    static GUARD: Array<GuardConfig> = Array::with_max_entries(1, 0);

    /// Allowed IPv4 source prefixes (when `GuardConfig::allow_active`).
    #[map]
    static ALLOW_V4: LpmTrie<V4Key, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
    /// Allowed IPv6 source prefixes.
    #[map]
    static ALLOW_V6: LpmTrie<V6Key, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
    /// IPv4 sources exempt from the rate limit (when `GuardConfig::exempt_active`).
    #[map]
    static EXEMPT_V4: LpmTrie<V4Key, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
    /// IPv6 sources exempt from the rate limit.
    #[map]
    static EXEMPT_V6: LpmTrie<V6Key, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

    /// One token bucket per source, shared by all CPUs, bounded by LRU eviction.
    ///
    /// Shared rather than per-CPU: a NIC's RSS hashes one source's flow to one rx queue, so a
    /// per-CPU table would give each source only `rate / CPUs` on the one CPU it lands on (or
    /// the full rate on each of several CPUs, when its ports spread). aya-ebpf 0.2.1 has no
    /// `bpf_spin_lock`, so the read-refill-take-write below is not atomic: two CPUs updating the
    /// same source at the same instant can both take the same token. The race only ever admits
    /// more (at most one extra datagram per concurrently updating CPU per collision), never
    /// fewer, and needs one source's datagrams on two queues at once; it is accepted, and the
    /// end-to-end test bounds what passes with slack for it.
    #[map]
    static SOURCE_BUCKETS: LruHashMap<SourceKey, Bucket> =
        LruHashMap::with_max_entries(MAX_BUCKETS, 0);

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
        NotAllowed,
        OverRate,
    }

    /// A datagram's source address, network byte order.
    #[derive(Clone, Copy)]
    enum Source {
        V4(V4Key),
        V6(V6Key),
    }

    impl Source {
        /// The bucket key: IPv4 as IPv4-mapped IPv6.
        #[inline(always)]
        fn key(self) -> SourceKey {
            match self {
                Source::V4(a) => SourceKey {
                    addr: [
                        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
                    ],
                },
                Source::V6(a) => SourceKey { addr: a },
            }
        }
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
    /// UDP header starts, where the IP datagram ends by its length field and the source
    /// address, or why the frame is not ours.
    #[inline(always)]
    fn udp_offset(ctx: &XdpContext) -> Result<(usize, usize, Source), Verdict> {
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
                Ok((
                    off + ihl,
                    off + be16([hdr[2], hdr[3]]) as usize,
                    Source::V4([hdr[12], hdr[13], hdr[14], hdr[15]]),
                ))
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
                let mut src = [0u8; 16];
                src.copy_from_slice(&hdr[8..24]);
                Ok((
                    off + IPV6_HLEN,
                    off + IPV6_HLEN + be16([hdr[4], hdr[5]]) as usize,
                    Source::V6(src),
                ))
            }
            _ => Err(Verdict::NotOurs),
        }
    }

    #[inline(always)]
    fn classify(ctx: &XdpContext) -> Verdict {
        let (udp, ip_end, src) = match udp_offset(ctx) {
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
        if WELL_KNOWN_PORTS.get_ptr(PortKey::new(dport)).is_none() {
            return Verdict::NotOurs;
        }
        guard(src)
    }

    /// Whether `src` is in the v4 or v6 trie of a pair.
    #[inline(always)]
    fn listed(src: Source, v4: &LpmTrie<V4Key, u8>, v6: &LpmTrie<V6Key, u8>) -> bool {
        match src {
            Source::V4(a) => v4.get(Key::new(32, a)).is_some(),
            Source::V6(a) => v6.get(Key::new(128, a)).is_some(),
        }
    }

    /// The source guard, for a well-known-port datagram: allow-list, then rate limit.
    #[inline(always)]
    fn guard(src: Source) -> Verdict {
        let Some(cfg) = GUARD.get(0) else {
            return Verdict::Ours;
        };
        if cfg.allow_active != 0 && !listed(src, &ALLOW_V4, &ALLOW_V6) {
            return Verdict::NotAllowed;
        }
        if cfg.rate == 0 {
            return Verdict::Ours;
        }
        if cfg.exempt_active != 0 && listed(src, &EXEMPT_V4, &EXEMPT_V6) {
            return Verdict::Ours;
        }
        if take_token(src.key(), cfg) {
            Verdict::Ours
        } else {
            Verdict::OverRate
        }
    }

    /// Refills `key`'s bucket for the time since its last datagram and takes one token; a
    /// source seen for the first time starts with a full bucket. See [`SOURCE_BUCKETS`] on the
    /// race between CPUs.
    #[inline(always)]
    fn take_token(key: SourceKey, cfg: &GuardConfig) -> bool {
        // SAFETY: helper without preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        let Some(b) = SOURCE_BUCKETS.get_ptr_mut(&key) else {
            let fresh = Bucket {
                tokens: cfg.capacity.saturating_sub(TOKEN),
                last_ns: now,
            };
            // On failure (cannot happen for an LRU map short of memory) the datagram still
            // passes: the guard must not turn a kernel hiccup into dropped signalling.
            let _ = SOURCE_BUCKETS.insert(&key, &fresh, 0);
            return cfg.capacity >= TOKEN;
        };
        // SAFETY: a pointer to this map value, valid for the program's run; see the race note.
        let b = unsafe { &mut *b };
        let mut elapsed = now.saturating_sub(b.last_ns);
        if elapsed > cfg.fill_ns {
            elapsed = cfg.fill_ns;
        }
        let mut tokens = b.tokens.saturating_add(elapsed * cfg.rate);
        if tokens > cfg.capacity {
            tokens = cfg.capacity;
        }
        b.last_ns = now;
        if tokens >= TOKEN {
            b.tokens = tokens - TOKEN;
            true
        } else {
            b.tokens = tokens;
            false
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
            Verdict::NotAllowed => {
                count(Counter::DroppedNotAllowed);
                xdp_action::XDP_DROP
            }
            Verdict::OverRate => {
                count(Counter::DroppedRate);
                xdp_action::XDP_DROP
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
