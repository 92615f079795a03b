//! Batched UDP socket I/O for Linux: socket-address conversion, `recvmmsg` receive batches and
//! `sendmmsg` send batches, allocated once, no allocation or per-datagram syscall on the steady
//! path.
//!
//! It owns the kernel side of plain UDP sockets that Switchyard's binaries share: the
//! `sockaddr` codec ([`sockaddr`]), a preallocated [`RecvBatch`] (one `recvmmsg` fills up to
//! `slots` datagrams, with source and truncation per datagram), a preallocated [`SendBatch`]
//! (datagrams written in place, or borrowed, and sent with `sendmmsg`, a datagram the kernel
//! refuses skipped and counted), socket set-up ([`bind`], [`set_recv_buffer`],
//! [`wait_readable`]), and groups of `SO_REUSEPORT` sockets steered by source address and
//! port ([`reuseport`]: [`bind_group`], [`steer_index`]). Every `unsafe` block is in here,
//! each with its SAFETY argument; the API is safe.
//!
//! It must not know SIP or MGCP, route, keep per-peer state, or allocate per datagram: the
//! buffers and header arrays are sized at construction and only refilled afterwards.
//!
//! Why its own code rather than a crate: `socket2` (0.6) offers `recvmsg`/`sendmsg` for one
//! message per call but no `recvmmsg`/`sendmmsg`, and the batch is the point here (one syscall
//! per batch, not per datagram). The crates that do wrap the `mmsg` calls bring an async
//! runtime or a larger dependency tree than the few hundred lines below; this crate depends on `libc`
//! alone.
#![cfg(target_os = "linux")]

mod headers;
mod recv;
pub mod reuseport;
mod send;
pub mod sockaddr;
mod socket;

pub use recv::{Datagram, RecvBatch};
pub use reuseport::{bind_group, steer_index};
pub use send::{Busy, FlushStats, SendBatch};
pub use socket::{bind, set_recv_buffer, wait_readable};

#[cfg(test)]
mod tests;
