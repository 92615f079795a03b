//! Loads Switchyard's XDP program, configures its maps and attaches it to an interface.
//!
//! The program object is built by `build.rs` and embedded in the binary, so a deployed
//! `switchyard` never depends on files beside it. Detaching is tied to [`XdpProgram`]'s
//! lifetime: aya attaches through a BPF link where the kernel supports it, and dropping the
//! link (or the process dying) detaches the program.
use std::{ffi::CString, os::fd::AsRawFd, process::Command};

use aya::{
    maps::{HashMap, MapData, PerCpuArray, XskMap},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode},
    Ebpf,
};
use dispatcher_common::{
    Counter, PortKey, PortProto, COUNTERS_MAP, PORTS_MAP, PROGRAM_NAME, XSKS_MAP,
};
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
    attached: Option<(String, AttachMode)>,
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
        Ok(Self {
            ebpf,
            xsks,
            counters,
            attached: None,
        })
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
            }
        }
        Ok(out)
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
