//! The processor pool as the operator configures it: one [`ProcessorEntry`] per processor, with
//! an explicit, stable id, from the config file, the command line, or `switchyard ctl add`.
//!
//! Why explicit ids: the id is what To-tags and MGCP connection ids carry (`wire::tag`), so it is
//! the one name of a processor that every dispatcher, every processor and every established
//! dialog agree on. Deriving it from a position in a list (as the first releases did) meant that
//! removing one processor renamed the ones after it and broke their dialogs.
use std::net::SocketAddr;

use crate::lan::{HealthSpec, RemoteSpec};

/// Highest processor id + 1 (the router's exclusion mask is a `u64`).
pub const MAX_ID: u16 = crate::route::select::MAX_PROCESSORS as u16;

/// Where a processor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A thread of this dispatcher process, fed through a shared-memory queue (claim 3).
    Local,
    /// A `switchyard-processor` (or any SIP server) on another host, fed over UDP (claim 4).
    Remote,
}

/// One processor, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorEntry {
    /// Stable id (0..[`MAX_ID`]): encoded in its tags, named by `ctl`, a metrics label.
    pub id: u16,
    /// Local thread or remote host.
    pub kind: Kind,
    /// Its SIP/MGCP address (a local processor binds it; a remote one listens on it).
    pub addr: SocketAddr,
    /// Capacity in session units (0: unlimited, or for remote ones: as it reports).
    pub capacity: u32,
    /// Relative share of new dialogs (1..=1000; default 1), see `route::select`.
    pub weight: u32,
    /// How it proves it is alive (remote processors; local ones have a heartbeat).
    pub health: HealthSpec,
}

impl ProcessorEntry {
    /// A processor on another host with id `id`, as a `--remote-processor` / `ctl add` spec
    /// describes it.
    pub fn remote(id: u16, spec: &RemoteSpec) -> Self {
        Self {
            id,
            kind: Kind::Remote,
            addr: spec.addr,
            capacity: spec.capacity,
            weight: spec.weight,
            health: spec.health.clone(),
        }
    }

    /// What the LAN health monitor is told about this (remote) processor.
    pub fn remote_spec(&self) -> RemoteSpec {
        RemoteSpec {
            id: Some(self.id),
            addr: self.addr,
            capacity: self.capacity,
            weight: self.weight,
            health: self.health.clone(),
        }
    }
}

/// Operator state of a processor, set with `ctl` (and kept across reloads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Admin {
    /// In selection when healthy.
    #[default]
    Active,
    /// No new dialogs; retransmissions, CANCEL, non-2xx ACK and in-dialog requests still go to
    /// it, so its dialogs end normally.
    Draining,
    /// Out of service, as if down: no new dialogs, and an INVITE retransmission is placed
    /// afresh elsewhere; in-dialog requests carrying its tag are still handed to it (only it
    /// knows the dialog).
    Disabled,
}
