//! Switchyard's dispatcher: receives the first message of every SIP/MGCP dialog on a well-known
//! port and hands it to a processor.
//!
//! Layout: [`route`] decides (sans-IO: a datagram and a snapshot in, handoffs and a reply out);
//! [`links`] carries the handoffs out (fabric pushes, the LAN batch of [`forward`]) and builds
//! the snapshot from the load board; [`lan`] watches processors on other hosts (a pure state
//! machine in [`lan::health`] and its socket loop); [`udp_shell`] and [`xdp_shell`] move bytes
//! (the XDP program, AF_XDP rings and frame codec are the `xdp-io` crate's, the queues to
//! in-chassis processors the `fabric` crate's); [`processors`] starts the in-chassis
//! processors; [`report`] is the exit report; [`run`] wires them for the `switchyard` binary,
//! from the settings [`config`] merges (flags over the TOML file over defaults).
//!
//! It must not hold message rules (those are `wire`'s) or do I/O inside [`route`].
pub mod config;
pub mod control;
pub mod forward;
pub mod lan;
pub mod links;
pub mod metrics;
pub mod pool;
pub mod processors;
pub mod report;
pub mod route;
pub mod run;
pub mod stats;
pub mod status;
pub mod udp_shell;
pub mod xdp_shell;
