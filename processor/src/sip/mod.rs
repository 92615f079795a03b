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
