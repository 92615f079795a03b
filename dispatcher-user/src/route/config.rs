//! The router's configuration: built once at start (and, later, on reload) by the shell from
//! flags or the config file; the core never reads the environment.
use wire::{tag::TagKeys, Limits, SessionSizeConfig};

use super::select::Policy;

/// Default affinity table size: 2²¹ entries, room for 64·T1 (32 s) of INVITE transactions at
/// ~65,000 new dialogs/s.
pub const DEFAULT_AFFINITY_CAPACITY: usize = 1 << 21;

/// What to do with OPTIONS outside a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptionsMode {
    /// Answer 200 with Allow/Accept here: a keep-alive probe should measure the dispatcher.
    Answer,
    /// Hand to a processor by policy.
    Forward,
}

/// What to do with other out-of-dialog requests (REGISTER, MESSAGE, SUBSCRIBE, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtherMode {
    /// 405 Method Not Allowed for methods we know, 501 Not Implemented for unknown ones.
    Reject,
    /// Hand to a processor by policy.
    Forward,
}

/// Claim 2: rewrite forwarded initial messages to carry the chosen processor's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkPort {
    /// SIP header name carrying the port (e.g. `X-Switchyard-Port`).
    pub sip_header: String,
    /// MGCP extension parameter carrying the port (e.g. `X-SY-Port`).
    pub mgcp_param: String,
}

/// Router configuration; built once at start.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Selection policy for new dialogs.
    pub policy: Policy,
    /// Scanner limits.
    pub limits: Limits,
    /// Where session sizes come from.
    pub session_size: SessionSizeConfig,
    /// Affinity table size (entries; rounded up to a power of two). The CLI and the struct
    /// share [`DEFAULT_AFFINITY_CAPACITY`].
    pub affinity_capacity: usize,
    /// Affinity entry lifetime, seconds (≥ 64·T1 + Timer H margin; default 72).
    pub affinity_ttl_s: u32,
    /// OPTIONS handling.
    pub options: OptionsMode,
    /// Other out-of-dialog methods.
    pub other: OtherMode,
    /// Retry-After seconds in 503 answers.
    pub retry_after_s: u32,
    /// Claim 2 rewrite, when enabled. Also adds Via `received`/`rport`.
    pub mark_port: Option<MarkPort>,
    /// Keys of the MAC in processor To-tags / connection ids, shared with the processors:
    /// `current` (what they mint with) and, during a rotation, `previous`; both accepted.
    /// [`TagKeys::UNKEYED`] when no key file is given (tags then only detect corruption).
    pub tag_keys: TagKeys,
    /// Seed of the router's own randomness (power-of-two-choices, the nonce in its own
    /// To-tags). The shell picks it (at random, or fixed for a reproducible run): the core never
    /// reads a clock or a process id for it.
    pub seed: u64,
    /// An in-chassis processor is considered dead when its heartbeat is older than this (ns);
    /// read by [`super::member::local_view`].
    pub heartbeat_timeout_ns: u64,
    /// A processor on another host is out of selection when its last load report (or OPTIONS
    /// answer) is older than this (ns); read by the LAN health monitor (`crate::lan::health`).
    pub report_timeout_ns: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            policy: Policy::LeastLoaded,
            limits: Limits::default(),
            session_size: SessionSizeConfig::default(),
            affinity_capacity: DEFAULT_AFFINITY_CAPACITY,
            affinity_ttl_s: 72,
            options: OptionsMode::Answer,
            other: OtherMode::Reject,
            retry_after_s: 5,
            mark_port: None,
            tag_keys: TagKeys::UNKEYED,
            seed: 0x5eed,
            heartbeat_timeout_ns: 1_000_000_000,
            report_timeout_ns: 800_000_000,
        }
    }
}
