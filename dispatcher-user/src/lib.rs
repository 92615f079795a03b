//! Switchyard's dispatcher: receives the first message of every SIP/MGCP dialog on a well-known
//! port and hands it to a processor.
//!
//! Layout: [`route`] decides (sans-IO); [`udp_shell`] and [`xdp_shell`] move bytes (the XDP
//! program, AF_XDP rings and frame codec are the `xdp-io` crate's, the queues to in-chassis
//! processors the `fabric` crate's); [`run`] wires them for the `switchyard` binary.
pub mod forward;
pub mod lan;
pub mod links;
pub mod processors;
pub mod report;
pub mod route;
pub mod run;
pub mod stats;
pub mod udp_shell;
pub mod xdp_shell;
