//! Switchyard's dispatcher: receives the first message of every SIP/MGCP dialog on a well-known
//! port and hands it to a processor.
//!
//! Layout: [`route`] decides (sans-IO); [`udp_shell`] and [`xdp_shell`] move bytes; [`loader`]
//! owns the XDP program; [`xsk`] owns the AF_XDP rings; [`frame`] reads and writes the
//! Ethernet/IP/UDP headers around datagrams; [`run`] wires them for the `switchyard` binary.
pub mod frame;
pub mod lan;
pub mod loader;
pub mod processors;
pub mod route;
pub mod run;
pub mod stats;
pub mod udp_shell;
pub mod xdp_shell;
pub mod xsk;
