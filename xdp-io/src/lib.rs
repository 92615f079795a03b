//! Switchyard's XDP data-plane I/O, shared by the `switchyard` dispatcher and the bench's AF_XDP
//! sink.
//!
//! It owns: the XDP program (built from `dispatcher-ebpf` by `build.rs` and embedded) and its
//! maps ([`loader`]), the AF_XDP sockets and rings of each rx queue ([`xsk`]), reading and
//! writing the Ethernet/VLAN/IP/UDP headers around a datagram ([`frame`]), and [`Steering`],
//! the one start-up sequence (load, register ports, open a socket per queue, attach) both users
//! run. It must not know SIP or MGCP or make routing decisions: it moves frames.
pub mod frame;
pub mod loader;
pub mod prefix;
pub mod xsk;

use dispatcher_common::PortProto;
use thiserror::Error;

use crate::{
    loader::{AttachMode, LoaderError, SourceGuard, XdpProgram},
    xsk::{XskConfig, XskError, XskQueue},
};

/// Why steering could not be set up.
#[derive(Debug, Error)]
pub enum SteeringError {
    /// Loading, configuring or attaching the program.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// Opening an AF_XDP socket.
    #[error(transparent)]
    Xsk(#[from] XskError),
}

/// What to steer, where.
#[derive(Debug, Clone)]
pub struct SteeringConfig<'a> {
    /// Interface to attach to.
    pub iface: &'a str,
    /// UDP destination ports steered into AF_XDP, with the protocol each carries.
    pub ports: &'a [(u16, PortProto)],
    /// Rx queues to serve from queue 0 (`None`: all of the interface's).
    pub queues: Option<u32>,
    /// Socket settings (zero-copy request, ring sizes).
    pub xsk: XskConfig,
    /// Attach mode.
    pub mode: AttachMode,
    /// The source guard, set before attaching (so no datagram passes unguarded).
    pub guard: SourceGuard,
}

/// The program attached to an interface and one AF_XDP socket per served rx queue. Dropping it
/// detaches the program (the sockets close with it).
pub struct Steering {
    /// The loaded and attached program (its counters, its maps).
    pub program: XdpProgram,
    /// One socket per rx queue, queue `i` at index `i`.
    pub queues: Vec<XskQueue>,
    /// The mode it was attached in (generic when native was refused).
    pub mode: AttachMode,
}

impl Steering {
    /// Loads the program, registers `ports`, sets the source guard, opens and registers a
    /// socket per queue, then attaches: traffic is steered only once every socket can take it.
    pub fn open(cfg: &SteeringConfig<'_>) -> Result<Self, SteeringError> {
        let mut program = XdpProgram::load()?;
        program.set_guard(&cfg.guard)?;
        for &(port, proto) in cfg.ports {
            program.add_port(port, proto)?;
        }
        let n = cfg.queues.unwrap_or_else(|| rx_queue_count(cfg.iface));
        let mut queues = Vec::with_capacity(n as usize);
        for q in 0..n {
            let xq = XskQueue::open(cfg.iface, q, cfg.xsk)?;
            program.register_socket(q, &xq.fd())?;
            queues.push(xq);
        }
        let mode = program.attach(cfg.iface, cfg.mode)?;
        Ok(Self {
            program,
            queues,
            mode,
        })
    }

    /// Whether every socket runs in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.queues.iter().all(XskQueue::zero_copy)
    }
}

/// Number of rx queues of `iface`, from sysfs (1 when it cannot be read).
pub fn rx_queue_count(iface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}
