//! Zero-copy SIP (RFC 3261) and MGCP (RFC 3435) scanning for the Switchyard dispatcher.
//!
//! The dispatcher thread must classify every datagram without allocating or copying, and it
//! must survive any input an attacker can send. This crate therefore follows the style of
//! smoltcp's `wire` module: a *checked view* is built once over the received bytes
//! ([`sip::Message::parse`], [`mgcp::Message::parse`]); construction validates everything the
//! accessors later rely on, so the accessors are cheap and infallible and return sub-slices of
//! the input. Every parser is total: it returns a view or a typed error carrying the byte
//! offset of the problem, never panics and never indexes out of bounds.
//!
//! Owned data appears only where the dispatcher or a processor must *produce* bytes: the
//! rewrite and response builders write into a caller-provided `&mut [u8]` and still do not
//! allocate.
//!
//! It owns every message rule of the appliance: the views and the dispatcher's one-pass
//! `locate` scan, validation, rewrites (Via `received`/`rport`, claim 2's port, To-tags),
//! response builders and the 400 salvage ([`sip::salvage`]), MGCP parameter helpers, processor
//! tags ([`tag`]), session sizes, the hashes everyone must compute alike ([`hash`]) and the
//! bounded writer ([`out::Out`]). It must not allocate, panic, use `unsafe`, read a clock or
//! do I/O: callers bring the bytes and the buffers.
//!
//! Line endings: RFC 3261 and RFC 3435 specify CRLF. Both scanners also accept a bare LF as a
//! line terminator, because common stacks and hand-written test tools emit it and rejecting
//! it would buy nothing; builders always emit CRLF.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod limits;
mod scan;

pub mod hash;
pub mod mgcp;
pub mod out;
pub mod sdp;
pub mod session_size;
pub mod sip;
pub mod tag;

pub use limits::Limits;
pub use out::WriteError;
pub use session_size::SessionSizeConfig;
