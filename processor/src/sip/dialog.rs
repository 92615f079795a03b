//! Dialog state (RFC 3261 §12): what a confirmed or early dialog holds (media port, session
//! units, SDP versions), the local tag that names it, and how it ends (BYE §15, CANCEL §9,
//! Timer H), releasing its resources and load exactly once.
//!
//! Kept apart from transactions because a dialog outlives its INVITE transaction and is what
//! the load report counts; the tag issued here encodes the processor id ([`wire::tag`]) so that
//! any dispatcher routes in-dialog requests back without state.
//!
//! Dialogs live in a slab found through a [`crate::table::Table`] keyed by the keyed hash of
//! the local tag; the slot also keeps the tag itself and the Call-ID, which every match
//! compares exactly, so a foreign tag can only miss. A dialog holds a media port, so the port
//! range bounds how many there are and sizes both.
use wire::{
    hash::mix,
    sip::{Message, ResponseSpec},
};

use super::{
    transaction::{TxRef, TxState},
    Uas,
};
use crate::{outbox::Outbox, table::Key};
use tracing::trace;

/// A local tag, inline (tags this UAS issues are [`wire::tag::TAG_LEN`] bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Tag {
    buf: [u8; wire::tag::TAG_LEN],
    len: u8,
}

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Tag {
    /// No tag (a transaction answered without adding one).
    pub(super) const EMPTY: Tag = Tag {
        buf: [0; wire::tag::TAG_LEN],
        len: 0,
    };

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

#[derive(Debug, Default)]
pub(super) struct Dialog {
    pub(super) tag: Option<Tag>,
    /// Kept in the slot and overwritten in place, so its buffer is reused.
    pub(super) call_id: Vec<u8>,
    pub(super) media_port: u16,
    pub(super) units: u32,
    /// A 2xx was sent: the session started (BYE releases rather than rejects).
    pub(super) established: bool,
    /// Key of the INVITE transaction still in progress (Proceeding or awaiting its ACK).
    pub(super) pending: Option<Key>,
    pub(super) session_id: u64,
    pub(super) sdp_version: u64,
    /// Key of `tag` in the dialog index, kept so ending the dialog need not hash it again.
    pub(super) key: Key,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum EndReason {
    Bye,
    Cancelled,
    Timeout,
}

impl Uas {
    pub(super) fn new_tag(&mut self) -> Tag {
        self.tag_counter += 1;
        // A counter from a random start: the tag keeps 48 bits of it, unique for 2^48 dialogs
        // (a mixed counter would collide, by the birthday bound, once live dialogs reach
        // ~2^24, and dialogs are found by tag).
        let nonce = mix(self.tag_seed).wrapping_add(self.tag_counter);
        let mut t = Tag::EMPTY;
        let n = match wire::tag::encode(&self.cfg.tag_key, self.cfg.id, nonce, &mut t.buf) {
            Ok(n) => n,
            // Unreachable (the buffer is TAG_LEN); the bare nonce is still a unique tag.
            Err(_) => {
                let mut o = wire::out::Out::new(&mut t.buf);
                let _ = o.put_hex(nonce, 16);
                o.len()
            }
        };
        t.len = n as u8;
        t
    }

    /// Slot of the dialog named by local tag `tag`.
    pub(super) fn dialog_slot(&self, tag: &[u8]) -> Option<u32> {
        let i = self.dialog_index.get(&self.hasher.key_of(tag))?;
        let d = self.dialogs.get(i)?;
        d.tag.filter(|t| t.as_bytes() == tag).map(|_| i)
    }

    pub(super) fn dialog_mut(&mut self, tag: &[u8]) -> Option<&mut super::dialog::Dialog> {
        let i = self.dialog_slot(tag)?;
        self.dialogs.get_mut(i)
    }

    /// The dialog named by `tag` whose Call-ID is `call_id`.
    pub(super) fn dialog_in(&self, tag: &[u8], call_id: &[u8]) -> Option<u32> {
        let i = self.dialog_slot(tag)?;
        self.dialogs
            .get(i)
            .filter(|d| d.call_id == call_id)
            .map(|_| i)
    }

    /// Ends dialog slot `di` (named by `tag`) for a BYE, settling its pending INVITE.
    pub(super) fn end_dialog_by_bye(&mut self, now: u64, tag: &[u8], di: u32, out: &mut Outbox) {
        let Some(d) = self.dialogs.get_mut(di) else {
            return;
        };
        let established = d.established;
        let pending = d.pending.take();
        if let Some(TxRef::Live(pid)) = pending.and_then(|k| self.invite_tx(&k)) {
            let linger = now.saturating_add(64 * self.t1);
            let t1 = self.t1;
            let proceeding = self
                .live
                .get(pid)
                .is_some_and(|t| t.state == TxState::Proceeding);
            if proceeding {
                // BYE on an early dialog: the INVITE ends with 487 (§15.1.2).
                self.terminate_487(pid, out);
                if let Some(tx) = self.live.get_mut(pid) {
                    tx.state = TxState::Completed;
                    tx.answer_at = None;
                    tx.g_at = Some(now.saturating_add(t1));
                    tx.h_at = Some(now.saturating_add(64 * t1));
                    tx.has_dialog = false;
                }
                self.schedule(pid);
            } else {
                // BYE overtook the ACK: stop retransmitting the 2xx.
                self.confirm(pid, linger);
            }
        }
        let reason = if established {
            EndReason::Bye
        } else {
            EndReason::Cancelled
        };
        // `di` was found by `tag` (dialog_in), so its stored key is the key of `tag`.
        let key = match self.dialogs.get(di) {
            Some(d) if d.tag.is_some_and(|t| t.as_bytes() == tag) => d.key,
            _ => self.hasher.key_of(tag),
        };
        self.end_dialog_at(di, &key, reason);
    }

    /// Answers the stored INVITE of live transaction `i` with 487 (it was cancelled or its
    /// early dialog ended), keeping the 487 for retransmission.
    pub(super) fn terminate_487(&mut self, i: u32, out: &mut Outbox) {
        let Some(tx) = self.live.get_mut(i) else {
            return;
        };
        // Parsed again only here and for a delayed answer: the request was stored because
        // its final answer could not be sent when it arrived.
        let request = std::mem::take(&mut tx.request);
        tx.last.clear();
        if let Ok(inv) = Message::parse(&request, &self.limits) {
            let spec = ResponseSpec::tagged(487, tx.tag.as_bytes());
            if let Some(b) = Self::respond(&mut self.stats, &inv, &spec, tx.dst, out) {
                tx.last.extend_from_slice(b);
            }
        }
        tx.request = request;
        tx.request.clear();
    }

    pub(super) fn end_dialog(&mut self, tag: &[u8], reason: EndReason) {
        let key = self.hasher.key_of(tag);
        let Some(i) = self.dialog_index.get(&key) else {
            return;
        };
        if self
            .dialogs
            .get(i)
            .is_some_and(|d| d.tag.is_some_and(|t| t.as_bytes() == tag))
        {
            self.end_dialog_at(i, &key, reason);
        }
    }

    /// Ends the live dialog in slot `i`, whose tag's key is `key`.
    pub(super) fn end_dialog_at(&mut self, i: u32, key: &Key, reason: EndReason) {
        if self.dialog_index.get(key) == Some(i) {
            self.dialog_index.remove(key);
        }
        let Some(d) = self.dialogs.get_mut(i) else {
            return;
        };
        if d.tag.is_none() {
            return;
        }
        d.tag = None;
        d.pending = None;
        let (port, units) = (d.media_port, d.units);
        self.dialogs.free(i);
        self.ports.free(port);
        self.stats.dialogs_ended += 1;
        match reason {
            EndReason::Bye | EndReason::Timeout => self.load.ended(units),
            EndReason::Cancelled => self.load.failed(units),
        }
        trace!(?reason, port, "dialog ended");
    }
}
