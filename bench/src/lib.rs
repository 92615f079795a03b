//! Switchyard's open-loop load generator: SIP UAC, MGCP call agent, datagram blaster, raw
//! receive sink, latency histograms and reports.
//!
//! The call-flow state machines ([`sip::SipUac`], [`mgcp::MgcpCa`]) are sans-IO: they take a
//! clock value and datagrams and write datagrams into an [`net::Outbox`]. The driver
//! ([`engine::run_loop`]) starts calls by a fixed schedule ([`schedule::Schedule`]) whatever the
//! responses do (open loop, no coordinated omission), and measures latency from each message's
//! *intended* send time.
//!
//! It depends on `wire` (messages) and `xdp-io` (the AF_XDP sink) only, never on the
//! dispatcher: a generator that shared the dispatcher's code would share its bugs.
#![deny(missing_docs)]

pub mod engine;
pub mod hist;
pub mod mgcp;
pub mod net;
pub mod plot;
pub mod report;
pub mod schedule;
pub mod sink;
pub mod sip;
pub mod timers;
