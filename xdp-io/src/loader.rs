//! Loads Switchyard's XDP program, configures its maps and attaches it to an interface.
//!
//! The program object is built by `build.rs` and embedded in the binary, so a deployed
//! `switchyard` never depends on files beside it. Detaching is tied to [`XdpProgram`]'s
//! lifetime: aya attaches through a BPF link where the kernel supports it, and dropping the
//! link (or the process dying) detaches the program.
use std::{ffi::CString, os::fd::AsRawFd, process::Command};

use std::net::IpAddr;

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray, XskMap},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode},
    Ebpf, Pod,
};
use dispatcher_common::{
    Bucket, Counter, GuardConfig, PortKey, PortProto, SourceKey, ALLOW_V4_MAP, ALLOW_V6_MAP,
    BUCKETS_MAP, COUNTERS_MAP, EXEMPT_V4_MAP, EXEMPT_V6_MAP, GUARD_MAP, MAX_PREFIXES, MAX_RATE,
    PORTS_MAP, PROGRAM_NAME, XSKS_MAP,
};

use crate::prefix::Prefix;
use thiserror::Error;
use tracing::{info, warn};

/// The XDP object built by `build.rs` (empty when the eBPF toolchain was missing).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dispatcher-ebpf"));

/// How the program is attached; `Native` runs in the driver, `Generic` after skb allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Driver (native) XDP; falls back to generic with a warning if the driver refuses.
    Native,
    /// Generic (skb) XDP: works on any interface, slower; only when asked.
    Generic,
}

/// What went wrong loading or attaching; each says what to do about it.
#[derive(Debug, Error)]
pub enum LoaderError {
    /// The binary was built without the eBPF toolchain.
    #[error("this switchyard binary was built without its XDP program (the eBPF toolchain was missing at build time); run `cargo xtask setup` and rebuild, or use --backend udp")]
    NotBuilt,
    /// The kernel or aya refused the object.
    #[error("loading the XDP program failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program-level failure (verifier, attach).
    #[error("XDP program error: {0}")]
    Program(#[from] ProgramError),
    /// A map operation failed.
    #[error("XDP map error: {0}")]
    Map(#[from] aya::maps::MapError),
    /// An expected map or program is missing from the object: build mismatch.
    #[error("the XDP object has no {0}: rebuild switchyard")]
    Missing(&'static str),
    /// The interface does not exist.
    #[error("interface {0:?} does not exist")]
    NoInterface(String),
    /// A source-guard setting the program cannot hold.
    #[error("source guard: {0}")]
    Guard(String),
    /// Another program is attached and is not ours.
    #[error("interface {iface} already has XDP program {name:?} (id {id}) attached; it is not Switchyard's, detach it first (`ip link set dev {iface} xdp off`)")]
    Foreign {
        /// Interface name.
        iface: String,
        /// Name of the attached program.
        name: String,
        /// Kernel program id.
        id: u32,
    },
    /// Pinning to bpffs failed.
    #[error("pinning the XDP program: {0}")]
    Pin(#[from] aya::pin::PinError),
    /// A stale program of ours could not be removed (e.g. another live switchyard holds it).
    #[error("interface {iface} has a Switchyard XDP program (id {id}) that could not be detached: {why}; is another switchyard running on it?")]
    Stale {
        /// Interface name.
        iface: String,
        /// Kernel program id.
        id: u32,
        /// What `ip` said.
        why: String,
    },
}

/// The loaded (and, once [`XdpProgram::attach`] succeeds, attached) XDP program with its maps.
pub struct XdpProgram {
    ebpf: Ebpf,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    guard: GuardConfig,
    attached: Option<(String, AttachMode)>,
}

/// The XDP source guard's settings: which sources may reach the well-known ports at all, and
/// how fast each may send. The default guards nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceGuard {
    /// Allowed source prefixes (`--allow-source`); empty: every source. When any prefix is
    /// given, only listed sources pass, for both families (see `GuardConfig::allow_active`).
    pub allow: Vec<Prefix>,
    /// Datagrams/s per source (`--source-rate`); 0: no rate limit.
    pub rate: u32,
    /// Bucket size per source (`--source-burst`), datagrams; at least 1.
    pub burst: u32,
    /// Sources the rate limit does not apply to (`--rate-exempt`).
    pub exempt: Vec<Prefix>,
}

impl SourceGuard {
    /// Whether it guards anything.
    pub fn is_active(&self) -> bool {
        !self.allow.is_empty() || self.rate > 0
    }
}

/// Which LPM-trie pair a prefix list goes to.
#[derive(Clone, Copy)]
enum PrefixList {
    Allow,
    Exempt,
}

impl PrefixList {
    fn maps(self) -> (&'static str, &'static str) {
        match self {
            PrefixList::Allow => (ALLOW_V4_MAP, ALLOW_V6_MAP),
            PrefixList::Exempt => (EXEMPT_V4_MAP, EXEMPT_V6_MAP),
        }
    }
}

impl XdpProgram {
    /// Loads the embedded object into the kernel (verifier runs here) without attaching it.
    pub fn load() -> Result<Self, LoaderError> {
        if OBJECT.is_empty() {
            return Err(LoaderError::NotBuilt);
        }
        let mut ebpf = Ebpf::load(OBJECT)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(LoaderError::Missing("program"))?
            .try_into()?;
        prog.load()?;
        let xsks = XskMap::try_from(
            ebpf.take_map(XSKS_MAP)
                .ok_or(LoaderError::Missing(XSKS_MAP))?,
        )?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map(COUNTERS_MAP)
                .ok_or(LoaderError::Missing(COUNTERS_MAP))?,
        )?;
        let mut prog = Self {
            ebpf,
            xsks,
            counters,
            guard: GuardConfig::default(),
            attached: None,
        };
        prog.write_guard()?;
        Ok(prog)
    }

    /// Applies every setting of `guard` (allow-list, rate limit, exemptions): map updates only.
    pub fn set_guard(&mut self, guard: &SourceGuard) -> Result<(), LoaderError> {
        self.set_rate_exempt(&guard.exempt)?;
        self.set_rate_limit(guard.rate, guard.burst)?;
        self.set_allow_list(&guard.allow)
    }

    /// Replaces the source allow-list; empty: every source may reach the well-known ports.
    ///
    /// A map update, so it may be called while attached: new prefixes go in before the list is
    /// switched on and stale ones come out after, so a source in both the old and the new list
    /// is never dropped in between.
    pub fn set_allow_list(&mut self, prefixes: &[Prefix]) -> Result<(), LoaderError> {
        self.set_prefixes(PrefixList::Allow, prefixes)
    }

    /// Replaces the sources exempt from the rate limit (same update order as the allow-list).
    pub fn set_rate_exempt(&mut self, prefixes: &[Prefix]) -> Result<(), LoaderError> {
        self.set_prefixes(PrefixList::Exempt, prefixes)
    }

    /// Sets the per-source limit: `rate` datagrams/s (0: off) with buckets of `burst`
    /// datagrams (0 is taken as 1). Existing buckets keep their tokens, clamped to the new
    /// burst on their next datagram.
    pub fn set_rate_limit(&mut self, rate: u32, burst: u32) -> Result<(), LoaderError> {
        if rate > MAX_RATE || burst > MAX_RATE {
            return Err(LoaderError::Guard(format!(
                "rate {rate}/s with burst {burst}: at most {MAX_RATE} each"
            )));
        }
        self.guard = self.guard.with_rate(rate, burst);
        self.write_guard()
    }

    /// Forgets every source's bucket (each starts again with a full one). For tests.
    pub fn reset_rate_buckets(&mut self) -> Result<(), LoaderError> {
        let mut buckets: HashMap<_, SourceKey, Bucket> = HashMap::try_from(
            self.ebpf
                .map_mut(BUCKETS_MAP)
                .ok_or(LoaderError::Missing(BUCKETS_MAP))?,
        )?;
        let keys: Vec<SourceKey> = buckets.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = buckets.remove(&k); // evicted meanwhile: fine
        }
        Ok(())
    }

    /// The guard settings as the program sees them.
    pub fn guard_config(&self) -> GuardConfig {
        self.guard
    }

    fn write_guard(&mut self) -> Result<(), LoaderError> {
        let mut cfg: Array<_, GuardConfig> = Array::try_from(
            self.ebpf
                .map_mut(GUARD_MAP)
                .ok_or(LoaderError::Missing(GUARD_MAP))?,
        )?;
        cfg.set(0, self.guard, 0)?;
        Ok(())
    }

    fn set_prefixes(&mut self, list: PrefixList, prefixes: &[Prefix]) -> Result<(), LoaderError> {
        let mut v4: Vec<Key<[u8; 4]>> = Vec::new();
        let mut v6: Vec<Key<[u8; 16]>> = Vec::new();
        for p in prefixes {
            match p.addr() {
                IpAddr::V4(a) => v4.push(Key::new(u32::from(p.len()), a.octets())),
                IpAddr::V6(a) => v6.push(Key::new(u32::from(p.len()), a.octets())),
            }
        }
        if v4.len() > MAX_PREFIXES as usize || v6.len() > MAX_PREFIXES as usize {
            return Err(LoaderError::Guard(format!(
                "at most {MAX_PREFIXES} prefixes per family"
            )));
        }
        let active = u32::from(!prefixes.is_empty());
        let flag = |g: &mut GuardConfig| match list {
            PrefixList::Allow => g.allow_active = active,
            PrefixList::Exempt => g.exempt_active = active,
        };
        let (m4, m6) = list.maps();
        if active == 0 {
            flag(&mut self.guard);
            self.write_guard()?;
        }
        self.insert_prefixes(m4, &v4)?;
        self.insert_prefixes(m6, &v6)?;
        if active != 0 {
            flag(&mut self.guard);
            self.write_guard()?;
        }
        self.remove_other_prefixes(m4, &v4)?;
        self.remove_other_prefixes(m6, &v6)?;
        Ok(())
    }

    fn trie<K: Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<LpmTrie<&mut MapData, K, u8>, LoaderError> {
        Ok(LpmTrie::try_from(
            self.ebpf.map_mut(name).ok_or(LoaderError::Missing(name))?,
        )?)
    }

    fn insert_prefixes<K: Pod>(
        &mut self,
        name: &'static str,
        keys: &[Key<K>],
    ) -> Result<(), LoaderError> {
        let mut trie = self.trie::<K>(name)?;
        for k in keys {
            trie.insert(k, 1, 0)?;
        }
        Ok(())
    }

    fn remove_other_prefixes<K: Pod + PartialEq>(
        &mut self,
        name: &'static str,
        keep: &[Key<K>],
    ) -> Result<(), LoaderError> {
        let mut trie = self.trie::<K>(name)?;
        let same =
            |a: &Key<K>, b: &Key<K>| a.prefix_len() == b.prefix_len() && a.data() == b.data();
        let stale: Vec<Key<K>> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep.iter().any(|w| same(k, w)))
            .collect();
        for k in stale {
            trie.remove(&k)?;
        }
        Ok(())
    }

    /// Marks `port` as well-known: UDP to it is steered to AF_XDP.
    pub fn add_port(&mut self, port: u16, proto: PortProto) -> Result<(), LoaderError> {
        let mut ports: HashMap<_, PortKey, u8> = HashMap::try_from(
            self.ebpf
                .map_mut(PORTS_MAP)
                .ok_or(LoaderError::Missing(PORTS_MAP))?,
        )?;
        ports.insert(PortKey::new(port), proto as u8, 0)?;
        Ok(())
    }

    /// Registers an AF_XDP socket for receive queue `queue`.
    pub fn register_socket(&mut self, queue: u32, fd: &impl AsRawFd) -> Result<(), LoaderError> {
        self.xsks.set(queue, fd.as_raw_fd(), 0)?;
        Ok(())
    }

    /// Attaches to `iface`, replacing a Switchyard program left behind by a crashed run.
    ///
    /// Native mode falls back to generic when the driver refuses, with a warning that names the
    /// mode in use: a silent fallback would hide a 5-10x performance difference.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<AttachMode, LoaderError> {
        let c = CString::new(iface).map_err(|_| LoaderError::NoInterface(iface.to_owned()))?;
        // SAFETY: `c` is a valid NUL-terminated string.
        if unsafe { libc::if_nametoindex(c.as_ptr()) } == 0 {
            return Err(LoaderError::NoInterface(iface.to_owned()));
        }
        remove_stale(iface)?;
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(LoaderError::Missing("program"))?
            .try_into()?;
        let used = match mode {
            AttachMode::Generic => {
                prog.attach(iface, XdpMode::Skb)?;
                AttachMode::Generic
            }
            AttachMode::Native => match prog.attach(iface, XdpMode::Driver) {
                Ok(_) => AttachMode::Native,
                Err(err) => {
                    warn!(%iface, error = %err, "native XDP refused by the driver; falling back to GENERIC mode (slower)");
                    prog.attach(iface, XdpMode::Skb)?;
                    AttachMode::Generic
                }
            },
        };
        info!(%iface, mode = ?used, "XDP program attached");
        self.attached = Some((iface.to_owned(), used));
        Ok(used)
    }

    /// Pins the loaded program at `path` on a bpffs, so it outlives this process (e.g. to
    /// attach it with `ip link set dev IF xdp pinned PATH` from another tool).
    pub fn pin(&mut self, path: &std::path::Path) -> Result<(), LoaderError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(LoaderError::Missing("program"))?
            .try_into()?;
        prog.pin(path)?;
        Ok(())
    }

    /// The interface and mode the program is attached with, if attached.
    pub fn attached(&self) -> Option<(&str, AttachMode)> {
        self.attached.as_ref().map(|(i, m)| (i.as_str(), *m))
    }

    /// Sums the per-CPU verdict counters.
    pub fn counters(&self) -> Result<XdpCounters, LoaderError> {
        let mut out = XdpCounters::default();
        for c in Counter::ALL {
            let v: u64 = self.counters.get(&(c as u32), 0)?.iter().sum();
            match c {
                Counter::Redirected => out.redirected = v,
                Counter::Passed => out.passed = v,
                Counter::Malformed => out.malformed = v,
                Counter::NoSocket => out.no_socket = v,
                Counter::DroppedNotAllowed => out.dropped_not_allowed = v,
                Counter::DroppedRate => out.dropped_rate = v,
            }
        }
        Ok(out)
    }

    /// The loaded program's size as the kernel reports it: (instructions after the verifier's
    /// rewrites, i.e. `bpftool prog dump xlated`'s count; instructions the verifier processed).
    /// `None` for what the kernel does not report (verified count: Linux 5.16+).
    pub fn size(&self) -> Result<(Option<u32>, Option<u32>), LoaderError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or(LoaderError::Missing("program"))?
            .try_into()?;
        let info = prog.info()?;
        Ok((
            info.size_translated().map(|b| b / 8),
            info.verified_instruction_count(),
        ))
    }

    /// Runs the loaded program on one frame with `BPF_PROG_TEST_RUN`; returns the XDP action.
    ///
    /// Used by the golden-frame tests: the kernel's own verifier and helpers, no interface.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, LoaderError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or(LoaderError::Missing("program"))?
            .try_into()?;
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        Ok(prog.test_run(opts)?.return_value)
    }
}

/// Totals of the XDP program's per-CPU counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct XdpCounters {
    /// Frames handed to `bpf_redirect_map`.
    pub redirected: u64,
    /// Frames passed to the kernel because they are not ours.
    pub passed: u64,
    /// Frames with impossible headers (passed, counted).
    pub malformed: u64,
    /// Well-known-port frames on a queue without a socket (passed).
    pub no_socket: u64,
    /// Well-known-port frames from a source outside the allow-list (`XDP_DROP`).
    #[serde(default)]
    pub dropped_not_allowed: u64,
    /// Well-known-port frames from a source over its rate limit (`XDP_DROP`).
    #[serde(default)]
    pub dropped_rate: u64,
}

impl XdpCounters {
    /// Every frame the program saw: each lands in exactly one counter.
    pub fn total(&self) -> u64 {
        self.redirected
            + self.passed
            + self.malformed
            + self.no_socket
            + self.dropped_not_allowed
            + self.dropped_rate
    }

    /// Frames the source guard dropped (allow-list and rate limit).
    pub fn guard_dropped(&self) -> u64 {
        self.dropped_not_allowed + self.dropped_rate
    }
}

/// Detaches a Switchyard program left attached (by netlink) by a crashed run; refuses to touch
/// anybody else's program.
fn remove_stale(iface: &str) -> Result<(), LoaderError> {
    let Some((id, name)) = attached_program(iface) else {
        return Ok(());
    };
    // The kernel truncates program names to 15 bytes.
    if !PROGRAM_NAME.starts_with(name.as_str()) || name.is_empty() {
        return Err(LoaderError::Foreign {
            iface: iface.to_owned(),
            name,
            id,
        });
    }
    warn!(%iface, id, "a Switchyard XDP program from an earlier run is still attached; replacing it");
    // Detaching must name the mode it was attached in; try each.
    let mut out = None;
    for mode in ["xdp", "xdpgeneric", "xdpdrv"] {
        out = Some(
            Command::new("ip")
                .args(["link", "set", "dev", iface, mode, "off"])
                .output(),
        );
        if attached_program(iface).is_none() {
            return Ok(());
        }
    }
    let out = out.expect("at least one mode tried");
    Err(LoaderError::Stale {
        iface: iface.to_owned(),
        id,
        why: match out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        },
    })
}

/// The XDP program attached to `iface` (id, name), read from `ip -d link show`.
///
/// iproute2 is on every Linux server; reading netlink ourselves would add a dependency for a
/// start-up-only check.
pub fn attached_program(iface: &str) -> Option<(u32, String)> {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // e.g. "    prog/xdp id 123 name switchyard_xdp tag ... jited"
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("prog/xdp"))?;
    let mut words = line.split_whitespace();
    let mut id = None;
    let mut name = String::new();
    while let Some(w) = words.next() {
        match w {
            "id" => id = words.next().and_then(|v| v.parse().ok()),
            "name" => name = words.next().unwrap_or_default().to_owned(),
            _ => {}
        }
    }
    Some((id?, name))
}
