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
/// Name of the XDP program inside the object file.
pub const PROGRAM_NAME: &str = "switchyard_xdp";

/// Largest number of well-known ports user space may configure; sizes [`PORTS_MAP`].
pub const MAX_PORTS: u32 = 64;
/// Largest number of receive queues (and so AF_XDP sockets) per interface; sizes [`XSKS_MAP`].
pub const MAX_QUEUES: u32 = 64;

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
}

impl Counter {
    /// Number of slots; sizes [`COUNTERS_MAP`].
    pub const COUNT: u32 = 4;
    /// All slots in index order, for user space to print.
    pub const ALL: [Counter; 4] = [
        Counter::Redirected,
        Counter::Passed,
        Counter::Malformed,
        Counter::NoSocket,
    ];

    /// Human name used in logs and exit reports.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Redirected => "redirected",
            Counter::Passed => "passed",
            Counter::Malformed => "malformed",
            Counter::NoSocket => "no_socket",
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: `PortKey` is `repr(C)`, `Copy`, has no padding bytes left implicit and every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for super::PortKey {}
}
