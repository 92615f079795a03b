//! Types shared by the XDP program (`dispatcher-ebpf`) and user space (`xdp-io`'s loader).
//! Plain-old-data and `no_std` only: it must not depend on anything the XDP program cannot
//! link.
//!
//! Both sides must agree byte for byte on map names, keys, values and counter slots; keeping
//! them in one `no_std` crate makes a mismatch a compile error rather than a silent misread.
#![no_std]

/// Name of the hash map of UDP destination ports that are steered to AF_XDP.
///
/// User space owns the policy (which ports are "well known"); the XDP program only looks up.
pub const PORTS_MAP: &str = "WELL_KNOWN_PORTS";
/// Name of the XSKMAP that holds one AF_XDP socket per receive queue.
pub const XSKS_MAP: &str = "XSKS";
/// Name of the per-CPU array of [`Counter`] slots.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the IPv4 source allow-list, an LPM trie of [`V4Key`] (value unused, `1`).
pub const ALLOW_V4_MAP: &str = "ALLOW_V4";
/// Name of the IPv6 source allow-list, an LPM trie of [`V6Key`].
pub const ALLOW_V6_MAP: &str = "ALLOW_V6";
/// Name of the IPv4 rate-limit exemptions, an LPM trie of [`V4Key`].
pub const EXEMPT_V4_MAP: &str = "EXEMPT_V4";
/// Name of the IPv6 rate-limit exemptions, an LPM trie of [`V6Key`].
pub const EXEMPT_V6_MAP: &str = "EXEMPT_V6";
/// Name of the one-slot array holding the [`GuardConfig`].
pub const GUARD_MAP: &str = "GUARD";
/// Name of the LRU hash of per-source token buckets ([`SourceKey`] → [`Bucket`]).
pub const BUCKETS_MAP: &str = "SOURCE_BUCKETS";
/// Name of the XDP program inside the object file.
pub const PROGRAM_NAME: &str = "switchyard_xdp";

/// Largest number of well-known ports user space may configure; sizes [`PORTS_MAP`].
pub const MAX_PORTS: u32 = 64;
/// Largest number of receive queues (and so AF_XDP sockets) per interface; sizes [`XSKS_MAP`].
pub const MAX_QUEUES: u32 = 64;

/// Largest number of prefixes per family in each allow-list / exemption trie.
pub const MAX_PREFIXES: u32 = 4096;
/// Number of per-source token buckets kept; the LRU evicts the least recently seen source
/// beyond it, so a flood of spoofed sources cannot grow kernel memory.
pub const MAX_BUCKETS: u32 = 65_536;
/// One datagram's worth of tokens: buckets count in nano-datagrams, so that a refill of
/// `elapsed_ns * rate` needs no division in the XDP program.
pub const TOKEN: u64 = 1_000_000_000;
/// Largest `--source-rate` / `--source-burst` accepted: keeps `burst * TOKEN` and
/// `fill_ns * rate` far from `u64` overflow.
pub const MAX_RATE: u32 = 100_000_000;

/// Data of an IPv4 LPM-trie key (`bpf_lpm_trie_key`: a `u32` prefix length, then the address
/// in network byte order).
///
/// Why two tries (one per family) and not one with a family byte in the key: an LPM trie's key
/// size is fixed, so a shared trie would make every IPv4 key 17 bytes and put the family byte
/// into every prefix length; two tries keep each key exactly its address and let each family's
/// list be checked (and be empty) on its own.
pub type V4Key = [u8; 4];
/// Data of an IPv6 LPM-trie key: the address in network byte order.
pub type V6Key = [u8; 16];

/// The source guard's settings, slot 0 of [`GUARD_MAP`]. User space writes the whole value
/// (a map update, never a program reload); the XDP program reads it once per well-known-port
/// datagram, so an idle guard costs that one lookup.
///
/// A datagram read while user space rewrites the slot may see a mix of old and new fields for
/// that one datagram; every mix is a valid configuration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardConfig {
    /// Non-zero: an allow-list is configured. Then only sources in [`ALLOW_V4_MAP`] or
    /// [`ALLOW_V6_MAP`] pass, for both families: a list of IPv4 prefixes only denies every
    /// IPv6 source (an allow-list that let the other family through would be a hole).
    pub allow_active: u32,
    /// Non-zero: [`EXEMPT_V4_MAP`] / [`EXEMPT_V6_MAP`] hold prefixes (else they are not looked up).
    pub exempt_active: u32,
    /// Datagrams per second each source may send to a well-known port; 0 = no rate limit.
    pub rate: u64,
    /// Bucket capacity in tokens: burst × [`TOKEN`].
    pub capacity: u64,
    /// Time an empty bucket takes to fill, ns (`ceil(capacity / rate)`): elapsed time is clamped
    /// to it, so `elapsed * rate` cannot overflow.
    pub fill_ns: u64,
}

impl GuardConfig {
    /// The rate-limit fields for `rate` datagrams/s and a bucket of `burst` datagrams
    /// (`rate` 0 = off; both clamped to [`MAX_RATE`], burst at least 1).
    pub const fn with_rate(mut self, rate: u32, burst: u32) -> Self {
        let rate = if rate > MAX_RATE { MAX_RATE } else { rate } as u64;
        let burst = if burst > MAX_RATE {
            MAX_RATE
        } else if burst == 0 {
            1
        } else {
            burst
        } as u64;
        self.rate = rate;
        if rate == 0 {
            self.capacity = 0;
            self.fill_ns = 0;
        } else {
            self.capacity = burst * TOKEN;
            self.fill_ns = self.capacity.div_ceil(rate);
        }
        self
    }
}

/// Key of [`BUCKETS_MAP`]: a source address, IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`) so
/// both families share one bounded table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceKey {
    /// Address, network byte order.
    pub addr: [u8; 16],
}

/// Value of [`BUCKETS_MAP`]: a token bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens left, in units of 1/[`TOKEN`] datagram.
    pub tokens: u64,
    /// `bpf_ktime_get_ns` of the last refill.
    pub last_ns: u64,
}

/// Protocol a well-known port carries, stored as the value in [`PORTS_MAP`].
///
/// The XDP program does not interpret it; user space uses it to pick the scanner without
/// re-deriving it from the port number, so a deployment may run SIP on 5080 without code changes.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortProto {
    /// Session Initiation Protocol (RFC 3261).
    Sip = 1,
    /// Media Gateway Control Protocol (RFC 3435).
    Mgcp = 2,
}

impl PortProto {
    /// Decodes a map value; unknown values are `None` so a corrupt map is noticed, not guessed.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Sip),
            2 => Some(Self::Mgcp),
            _ => None,
        }
    }
}

/// Key of [`PORTS_MAP`]: a UDP destination port in host byte order.
///
/// A struct rather than a bare `u16` so that the byte order is part of the type's contract.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortKey {
    /// Destination port, host byte order.
    pub port: u16,
    /// Explicit padding so the key has no uninitialised bytes (the kernel hashes all of them).
    pub _pad: u16,
}

impl PortKey {
    /// Builds a key with zeroed padding.
    pub const fn new(port: u16) -> Self {
        Self { port, _pad: 0 }
    }
}

/// Slots of the per-CPU [`COUNTERS_MAP`]; the discriminant is the array index.
///
/// Every verdict the program reaches increments exactly one slot, so the slots sum to the number
/// of frames the program saw: nothing is decided without a count.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// UDP to a well-known port, handed to `bpf_redirect_map` (the kernel may still fall back
    /// to pass when no socket is bound on that queue: see [`Counter::NoSocket`]).
    Redirected = 0,
    /// Anything that is not ours: other ports, other protocols, fragments. `XDP_PASS`.
    Passed = 1,
    /// Headers that claim more bytes than the frame holds, or are otherwise impossible. Passed
    /// to the kernel too (it will drop them and count in its own statistics), counted here.
    Malformed = 2,
    /// Well-known-port UDP arrived on a queue with no AF_XDP socket in [`XSKS_MAP`]: passed to
    /// the kernel stack instead, which is what makes a half-configured host still reachable.
    NoSocket = 3,
    /// Well-known-port UDP from a source outside the configured allow-list. `XDP_DROP`: no
    /// answer is sent.
    DroppedNotAllowed = 4,
    /// Well-known-port UDP from a source over its rate limit (and not exempt). `XDP_DROP`.
    DroppedRate = 5,
}

impl Counter {
    /// Number of slots; sizes [`COUNTERS_MAP`].
    pub const COUNT: u32 = 6;
    /// All slots in index order, for user space to print.
    pub const ALL: [Counter; 6] = [
        Counter::Redirected,
        Counter::Passed,
        Counter::Malformed,
        Counter::NoSocket,
        Counter::DroppedNotAllowed,
        Counter::DroppedRate,
    ];

    /// Human name used in logs and exit reports.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Redirected => "redirected",
            Counter::Passed => "passed",
            Counter::Malformed => "malformed",
            Counter::NoSocket => "no_socket",
            Counter::DroppedNotAllowed => "dropped_not_allowed",
            Counter::DroppedRate => "dropped_rate",
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: `PortKey` is `repr(C)`, `Copy`, has no padding bytes left implicit and every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for super::PortKey {}
    // SAFETY: `repr(C)`, two `u32` then three `u64`: no padding, any bit pattern is valid.
    unsafe impl aya::Pod for super::GuardConfig {}
    // SAFETY: `repr(C)` byte array.
    unsafe impl aya::Pod for super::SourceKey {}
    // SAFETY: `repr(C)`, two `u64`.
    unsafe impl aya::Pod for super::Bucket {}
}
