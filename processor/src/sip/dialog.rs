//! Dialog state (RFC 3261 §12): what a confirmed or early dialog holds (media port, session
//! units, SDP versions), the local tag that names it, and how it ends (BYE §15, CANCEL §9,
//! Timer H), releasing its resources and load exactly once.
//!
//! Kept apart from transactions because a dialog outlives its INVITE transaction and is what
//! the load report counts; the tag issued here encodes the processor id ([`wire::tag`]) so that
//! any dispatcher routes in-dialog requests back without state.
use wire::{
    hash::mix,
    sip::{Message, ResponseSpec},
};

use super::{transaction::TxState, Uas};
use crate::outbox::Outbox;
use tracing::trace;

#[derive(Debug)]
pub(super) struct Dialog {
    pub(super) call_id: Vec<u8>,
    pub(super) media_port: u16,
    pub(super) units: u32,
    /// A 2xx was sent: the session started (BYE releases rather than rejects).
    pub(super) established: bool,
    /// The INVITE transaction still in progress (Proceeding or awaiting its ACK).
    pub(super) pending: Option<u64>,
    pub(super) session_id: u64,
    pub(super) sdp_version: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum EndReason {
    Bye,
    Cancelled,
    Timeout,
}

impl Uas {
    pub(super) fn new_tag(&mut self) -> Vec<u8> {
        self.tag_counter += 1;
        // A counter from a random start: the tag keeps 48 bits of it, unique for 2^48 dialogs
        // (a mixed counter would collide, by the birthday bound, once live dialogs reach
        // ~2^24, and dialogs are found by tag).
        let nonce = mix(self.tag_seed).wrapping_add(self.tag_counter);
        let mut buf = [0u8; wire::tag::TAG_LEN];
        match wire::tag::encode(&self.cfg.tag_key, self.cfg.id, nonce, &mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => format!("{:x}", nonce).into_bytes(),
        }
    }

    pub(super) fn end_dialog_by_bye(&mut self, now: u64, tag: &[u8], out: &mut Outbox) {
        let Some(d) = self.dialogs.get_mut(tag) else {
            return;
        };
        let established = d.established;
        if let Some(pid) = d.pending.take() {
            let linger = now.saturating_add(64 * self.t1);
            if let Some(mut tx) = self.txs.remove(&pid) {
                if tx.state == TxState::Proceeding {
                    // BYE on an early dialog: the INVITE ends with 487 (§15.1.2).
                    let request = std::mem::take(&mut tx.request);
                    if let Ok(inv) = Message::parse(&request, &self.limits) {
                        let spec = ResponseSpec {
                            code: 487,
                            reason: b"",
                            to_tag: Some(&tx.tag),
                            headers: &[],
                            body: None,
                        };
                        tx.last.clear();
                        if let Some(b) = Self::respond(&mut self.stats, &inv, &spec, tx.dst, out) {
                            tx.last.extend_from_slice(b);
                        }
                    }
                    tx.state = TxState::Completed;
                    tx.answer_at = None;
                    tx.g_at = Some(now.saturating_add(self.t1));
                    tx.h_at = Some(now.saturating_add(64 * self.t1));
                } else {
                    // BYE overtook the ACK: stop retransmitting the 2xx.
                    let was = tx.confirm(linger);
                    self.settle_pending(was);
                }
                tx.has_dialog = false;
                self.txs.insert(pid, tx);
                self.schedule(pid);
            }
        }
        let reason = if established {
            EndReason::Bye
        } else {
            EndReason::Cancelled
        };
        self.end_dialog(tag, reason);
    }

    pub(super) fn end_dialog(&mut self, tag: &[u8], reason: EndReason) {
        let Some(d) = self.dialogs.remove(tag) else {
            return;
        };
        self.ports.free(d.media_port);
        self.stats.dialogs_ended += 1;
        match reason {
            EndReason::Bye | EndReason::Timeout => self.load.ended(d.units),
            EndReason::Cancelled => self.load.failed(d.units),
        }
        trace!(?reason, port = d.media_port, "dialog ended");
    }
}
