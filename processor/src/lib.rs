//! Switchyard processors: the SIP UAS and MGCP gateway that conduct the dialogs the dispatcher
//! hands them, answering the source directly from the processor's own port.
//!
//! Layout: sans-IO state machines ([`sip::Uas`], [`mgcp::Gateway`]) take bytes and a clock
//! value and fill an [`outbox::Outbox`]; [`thread`] is the thin shell that feeds them from the
//! switch fabric (the `fabric` crate) and the processor's UDP socket and reports load;
//! [`deploy`] holds the settings both binaries share (pool size, tag key, media ranges);
//! [`report`] is the signed LAN load-report format, the one definition both the processor and
//! the dispatcher's health monitor use.
//!
//! It owns dialog and connection state; it must not route (that is the dispatcher's) nor hold
//! message rules of its own (those are `wire`'s).
pub mod config_file;
pub mod deploy;
pub mod load;
pub mod media;
pub mod metrics;
pub mod mgcp;
pub mod outbox;
pub mod report;
mod sdp;
pub mod sip;
pub mod table;
pub mod thread;
pub mod wheel;
