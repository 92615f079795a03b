//! SIP UAS (RFC 3261 §17.2 server transactions, §12 dialogs, §15 BYE, §9 CANCEL, §18.2.2
//! response routing) for the dialogs the dispatcher hands this processor.
//!
//! Sans-IO: [`Uas::on_message`] and [`Uas::on_timer`] take bytes and a clock value (ns) and
//! append datagrams to an [`Outbox`]; the thread shell owns sockets and the clock. The UAS
//! answers the source directly and puts its own address in the 2xx `Contact` and a To-tag that
//! encodes its processor id ([`wire::tag`]), so the rest of the dialog reaches it without the
//! dispatcher and any dispatcher can route stragglers statelessly.
//!
//! Transactions are keyed by the top Via branch and sent-by (RFC 3261 §17.2.3; RFC 2543
//! requests without the magic cookie by Call-ID, From-tag, CSeq and Via), dialogs by the local
//! tag this UAS issued (unique per dialog), checked against Call-ID.
//!
//! Every table is allocated once, at start, at a size derived from the configuration (see
//! [`Uas::with_load`]) and never grows: a full one answers new INVITEs 503 + `Retry-After`
//! (counted in [`UasStats::table_full_503`]) instead of stalling a message on a rehash. Keys
//! are keyed 128-bit hashes computed without allocating ([`crate::table`]); timers run on a
//! wheel ([`crate::wheel`]). A steady-state call allocates nothing.
//!
//! `100 Trying` is sent only when the final response does not leave in the same call
//! (an answer delay) or a `180` is configured (a modelled ringing phase): RFC 3261 §17.2.1
//! asks for it only when the final response is not sent within 200 ms, and an immediate 200
//! stops the INVITE retransmissions by itself.
//!
//! Layout, by concern: `transaction` holds server transactions and every timer, `dialog`
//! the dialog state and how a dialog ends, `uas` the [`Uas`] whose request handlers drive
//! both; [`route`] is where responses go.
mod dialog;
pub mod route;
mod transaction;
mod uas;

use dialog::Tag;
pub use uas::{Uas, UasConfig, UasStats, DEFAULT_MAX_PENDING_INVITES};

#[cfg(test)]
use {
    crate::outbox::Outbox,
    fabric::LoadReport,
    std::{net::SocketAddr, sync::Arc},
    wire::hash::mix,
};

#[cfg(test)]
mod tests;
