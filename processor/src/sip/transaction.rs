//! Server transactions (RFC 3261 §17.2) and their timers: the INVITE transaction with its
//! Timer G retransmissions, Timer H give-up and linger after the ACK (with the 2xx handling of
//! RFC 6026), the cached answers of completed non-INVITE transactions (Timer J), and the
//! transaction key (§17.2.3).
//!
//! Kept apart from the dialog state and from request handling because this is the part that
//! runs on the clock: everything [`Uas::on_timer`] does lives here, and so does every deadline
//! the timer wheel holds.
//!
//! Storage: a transaction is found through one [`Table`] from its key to a slot. A live
//! INVITE transaction (Proceeding, Accepted, Completed) has a slot in the `live` slab, whose
//! request and response buffers are reused by the next transaction in that slot. Once
//! acknowledged (or superseded) it only has to absorb stragglers until its linger ends, so it
//! moves to a small `Linger` slot (key, tag, timer) and its live slot is freed: lingering
//! transactions, which number the call rate × 64·T1, hold no buffers.
use std::net::SocketAddr;

use tracing::debug;
use wire::sip::Message;

use super::{dialog::EndReason, Tag, Uas};
use crate::{
    outbox::Outbox,
    table::Key,
    wheel::{TimerId, Wheel},
};

/// T2 (RFC 3261 §17.1.2.2): cap of the retransmission interval.
pub(super) const T2_NS: u64 = 4_000_000_000;
/// T4: how long a non-2xx INVITE transaction lingers after its ACK (Timer I).
pub(super) const T4_NS: u64 = 5_000_000_000;

/// Bit of an INVITE-table value that marks a [`Linger`] slot (else a live slot).
pub(super) const LINGER_BIT: u32 = 1 << 31;

/// Kinds of wheel timer, in the top half of the timer data (the slot is the bottom half).
pub(super) const TIMER_INVITE: u64 = 0;
pub(super) const TIMER_LINGER: u64 = 1;
pub(super) const TIMER_NICT: u64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum TxState {
    /// Provisional sent, final pending (answer delay).
    #[default]
    Proceeding,
    /// 2xx sent, retransmitting until the ACK.
    Accepted,
    /// Non-2xx final sent, retransmitting until the ACK.
    Completed,
}

/// What the INVITE table points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxRef {
    /// A live transaction: slot in `Uas::live`.
    Live(u32),
    /// An acknowledged one absorbing stragglers (the RFC's Confirmed state): slot in
    /// `Uas::lingers`.
    Linger(u32),
}

impl TxRef {
    pub(super) fn from_raw(v: u32) -> Self {
        if v & LINGER_BIT != 0 {
            TxRef::Linger(v & !LINGER_BIT)
        } else {
            TxRef::Live(v)
        }
    }
}

/// A live server INVITE transaction (RFC 3261 §17.2.1, with the 2xx handling of RFC 6026).
#[derive(Debug)]
pub(super) struct InviteTx {
    pub(super) key: Key,
    pub(super) dst: SocketAddr,
    pub(super) state: TxState,
    /// Local tag of the dialog this INVITE belongs to (the To-tag of our responses).
    pub(super) tag: Tag,
    pub(super) has_dialog: bool,
    pub(super) reinvite: bool,
    pub(super) cseq: u32,
    /// The INVITE itself while the final response is still to be built (answer delay).
    pub(super) request: Vec<u8>,
    /// Last response sent, for retransmissions.
    pub(super) last: Vec<u8>,
    pub(super) answer_at: Option<u64>,
    pub(super) g_at: Option<u64>,
    pub(super) g_interval: u64,
    pub(super) h_at: Option<u64>,
    /// The wheel timer for [`InviteTx::next_deadline`], and the deadline it was set for.
    pub(super) timer: Option<(TimerId, u64)>,
    /// Counted in [`Uas::pending_invites`]: a new (out-of-dialog) INVITE whose transaction is
    /// not yet confirmed or gone, i.e. one that may still retransmit a final response. Cleared
    /// (and the count decremented) exactly once, when it is confirmed or removed.
    pub(super) pending: bool,
}

impl Default for InviteTx {
    fn default() -> Self {
        InviteTx {
            key: [0, 0],
            dst: SocketAddr::from(([0, 0, 0, 0], 0)),
            state: TxState::Proceeding,
            tag: Tag::EMPTY,
            has_dialog: false,
            reinvite: false,
            cseq: 0,
            request: Vec::new(),
            last: Vec::new(),
            answer_at: None,
            g_at: None,
            g_interval: 0,
            h_at: None,
            timer: None,
            pending: false,
        }
    }
}

impl InviteTx {
    /// Resets a reused slot to a transaction with no final response yet; the buffers keep
    /// their capacity.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reset(
        &mut self,
        key: Key,
        dst: SocketAddr,
        state: TxState,
        tag: Tag,
        cseq: u32,
        reinvite: bool,
        t1: u64,
    ) {
        self.key = key;
        self.dst = dst;
        self.state = state;
        self.tag = tag;
        self.has_dialog = state == TxState::Proceeding;
        self.reinvite = reinvite;
        self.cseq = cseq;
        self.request.clear();
        self.last.clear();
        self.answer_at = None;
        self.g_at = None;
        self.g_interval = t1;
        self.h_at = None;
        self.timer = None;
        self.pending = false;
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
        [self.answer_at, self.g_at, self.h_at]
            .into_iter()
            .flatten()
            .min()
    }
}

/// An acknowledged INVITE transaction lingering to absorb retransmissions (Timer I, or RFC
/// 6026 Timer L for a 2xx).
#[derive(Debug, Clone, Copy)]
pub(super) struct Linger {
    pub(super) key: Key,
    /// The To-tag of its responses, for a late CANCEL's 200 (§9.2).
    pub(super) tag: Tag,
    pub(super) timer: Option<TimerId>,
}

impl Default for Linger {
    fn default() -> Self {
        Linger {
            key: [0, 0],
            tag: Tag::EMPTY,
            timer: None,
        }
    }
}

/// A completed non-INVITE transaction: its response, replayed for retransmissions (Timer J).
#[derive(Debug)]
pub(super) struct NonInviteTx {
    pub(super) key: Key,
    pub(super) dst: SocketAddr,
    pub(super) response: Vec<u8>,
    pub(super) timer: Option<TimerId>,
}

impl Default for NonInviteTx {
    fn default() -> Self {
        NonInviteTx {
            key: [0, 0],
            dst: SocketAddr::from(([0, 0, 0, 0], 0)),
            response: Vec::new(),
            timer: None,
        }
    }
}

fn timer_data(kind: u64, slot: u32) -> u64 {
    (kind << 32) | u64::from(slot)
}

impl Uas {
    /// Transaction key (RFC 3261 §17.2.3) as a keyed 128-bit hash, without allocating.
    /// `class` separates INVITE/ACK (`I`), CANCEL (`C`) and other methods (`N`, which also
    /// hash the CSeq method). Two distinct transactions share a key with probability 2⁻¹²⁸.
    pub(super) fn tx_key(&self, msg: &Message<'_>, class: u8) -> Key {
        let via = msg.top_via();
        let mut s = self.hasher.start();
        s.word(u64::from(class));
        if class == b'N' {
            s.bytes(msg.cseq().method.as_bytes());
        }
        if via.has_rfc3261_branch() {
            let (host, port) = via.sent_by();
            s.bytes(via.branch().unwrap_or_default());
            s.bytes(host);
            s.word(u64::from(port.unwrap_or(0)));
        } else {
            s.word(1 << 40);
            s.bytes(msg.call_id());
            s.bytes(msg.from().and_then(|f| f.tag).unwrap_or_default());
            s.word(u64::from(msg.cseq().seq));
            s.bytes(via.raw());
        }
        s.finish()
    }

    /// The INVITE transaction under `key`.
    pub(super) fn invite_tx(&self, key: &Key) -> Option<TxRef> {
        self.invites.get(key).map(TxRef::from_raw)
    }

    /// Whether a new live INVITE transaction can be stored now.
    pub(super) fn invite_room(&self) -> bool {
        !self.live.is_full() && !self.invites.is_full()
    }

    /// (Re)arms the wheel timer of live transaction `i` for its next deadline.
    pub(super) fn schedule(&mut self, i: u32) {
        let Some(tx) = self.live.get_mut(i) else {
            return;
        };
        let next = tx.next_deadline();
        if tx.timer.map(|(_, d)| d) == next {
            return;
        }
        if let Some((id, _)) = tx.timer.take() {
            self.wheel.cancel(id);
        }
        if let Some(d) = next {
            tx.timer = Some((self.wheel.insert(d, timer_data(TIMER_INVITE, i)), d));
        }
    }

    /// Caches a non-INVITE response for its retransmissions until Timer J (64·T1). When the
    /// cache is full the answer still went out, but a retransmission will be answered afresh.
    pub(super) fn cache_non_invite(&mut self, now: u64, key: Key, dst: SocketAddr, bytes: &[u8]) {
        let i = match self.nict_index.get(&key) {
            Some(i) => i,
            None => {
                let Some(i) = self.nict.alloc() else {
                    self.stats.table_full_dropped += 1;
                    return;
                };
                if self.nict_index.insert(key, i).is_err() {
                    self.nict.free(i);
                    self.stats.table_full_dropped += 1;
                    return;
                }
                i
            }
        };
        let expires = now.saturating_add(64 * self.t1);
        let Some(n) = self.nict.get_mut(i) else {
            return;
        };
        if let Some(id) = n.timer.take() {
            self.wheel.cancel(id);
        }
        n.key = key;
        n.dst = dst;
        n.response.clear();
        n.response.extend_from_slice(bytes);
        n.timer = Some(self.wheel.insert(expires, timer_data(TIMER_NICT, i)));
    }

    /// Registers a non-2xx-answered INVITE transaction: retransmit with Timer G until the
    /// ACK, give up at Timer H (RFC 3261 §17.2.1). The caller checked [`Uas::invite_room`].
    pub(super) fn start_completed(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        tag: Tag,
        last: &[u8],
        dst: SocketAddr,
    ) {
        // Only a new INVITE (no To-tag) counts: those are what the cap gates.
        let pending = msg.to().is_some_and(|t| t.tag.is_none());
        let key = self.tx_key(msg, b'I');
        let Some(i) = self.live.alloc() else {
            self.stats.table_full_dropped += 1;
            return;
        };
        if self.invites.insert(key, i).is_err() {
            self.live.free(i);
            self.stats.table_full_dropped += 1;
            return;
        }
        if pending {
            self.add_pending();
        }
        let t1 = self.t1;
        if let Some(tx) = self.live.get_mut(i) {
            tx.reset(key, dst, TxState::Completed, tag, msg.cseq().seq, false, t1);
            tx.last.extend_from_slice(last);
            tx.g_at = Some(now.saturating_add(t1));
            tx.h_at = Some(now.saturating_add(64 * t1));
            tx.pending = pending;
        }
        self.schedule(i);
    }

    /// Counts a new INVITE transaction as pending (and the high-water mark).
    pub(super) fn add_pending(&mut self) {
        self.pending_invites += 1;
        let p = self.pending_invites as u64;
        if p > self.stats.pending_invites_max {
            self.stats.pending_invites_max = p;
        }
    }

    /// Releases one pending INVITE transaction when `was_pending`.
    pub(super) fn settle_pending(&mut self, was_pending: bool) {
        if was_pending {
            self.pending_invites = self.pending_invites.saturating_sub(1);
        }
    }

    /// Moves live transaction `i` to the Confirmed state: it stops retransmitting, releases
    /// its pending count and lingers until `linger_until` holding only its key and tag. When
    /// the linger table is full it ends at once (counted).
    pub(super) fn confirm(&mut self, i: u32, linger_until: u64) {
        let Some(tx) = self.live.get_mut(i) else {
            return;
        };
        let (key, tag, was) = (tx.key, tx.tag, std::mem::replace(&mut tx.pending, false));
        if let Some((id, _)) = tx.timer.take() {
            self.wheel.cancel(id);
        }
        self.settle_pending(was);
        self.live.free(i);
        match self.lingers.alloc() {
            Some(l) => {
                let timer = self.wheel.insert(linger_until, timer_data(TIMER_LINGER, l));
                if let Some(slot) = self.lingers.get_mut(l) {
                    *slot = Linger {
                        key,
                        tag,
                        timer: Some(timer),
                    };
                }
                // Replaces the live entry under the same key: cannot be refused.
                let _ = self.invites.insert(key, l | LINGER_BIT);
            }
            None => {
                self.invites.remove(&key);
                self.stats.table_full_dropped += 1;
            }
        }
    }

    /// Removes live transaction `i` entirely (Timer H).
    fn remove_live(&mut self, i: u32) {
        let Some(tx) = self.live.get_mut(i) else {
            return;
        };
        let (key, was) = (tx.key, std::mem::replace(&mut tx.pending, false));
        if let Some((id, _)) = tx.timer.take() {
            self.wheel.cancel(id);
        }
        self.settle_pending(was);
        if self.invites.get(&key) == Some(i) {
            self.invites.remove(&key);
        }
        self.live.free(i);
    }

    pub(super) fn invite_retransmission(&mut self, r: TxRef, out: &mut Outbox) {
        self.stats.retransmissions_absorbed += 1;
        if let TxRef::Live(i) = r {
            if let Some(tx) = self.live.get(i) {
                if !tx.last.is_empty() {
                    out.push(tx.dst, &tx.last);
                }
            }
        }
    }

    /// Runs every timer due at `now_ns`: delayed answers, Timer G retransmissions, Timer H
    /// give-ups, transaction clean-up.
    pub fn on_timer(&mut self, now_ns: u64, out: &mut Outbox) {
        let mut due = std::mem::take(&mut self.due);
        loop {
            due.clear();
            self.wheel.expire(now_ns, &mut due);
            if due.is_empty() {
                break;
            }
            for &d in &due {
                let slot = d as u32;
                match d >> 32 {
                    TIMER_INVITE => {
                        if let Some(tx) = self.live.get_mut(slot) {
                            tx.timer = None;
                        }
                        self.tx_timer(slot, now_ns, out);
                    }
                    TIMER_LINGER => {
                        if let Some(l) = self.lingers.get_mut(slot) {
                            l.timer = None;
                            let key = l.key;
                            if self.invites.get(&key) == Some(slot | LINGER_BIT) {
                                self.invites.remove(&key);
                            }
                            self.lingers.free(slot);
                        }
                    }
                    _ => {
                        if let Some(n) = self.nict.get_mut(slot) {
                            n.timer = None;
                            let key = n.key;
                            if self.nict_index.get(&key) == Some(slot) {
                                self.nict_index.remove(&key);
                            }
                            self.nict.free(slot);
                        }
                    }
                }
            }
        }
        self.due = due;
    }

    pub(super) fn tx_timer(&mut self, i: u32, now: u64, out: &mut Outbox) {
        let Some(tx) = self.live.get(i) else {
            return;
        };
        if tx.answer_at.is_some_and(|a| a <= now) && tx.state == TxState::Proceeding {
            // The one place a stored INVITE is parsed again: its answer was delayed.
            let request = self
                .live
                .get_mut(i)
                .map(|t| std::mem::take(&mut t.request))
                .unwrap_or_default();
            if let Ok(msg) = Message::parse(&request, &self.limits) {
                self.send_2xx(now, &msg, i, out);
            }
            if let Some(t) = self.live.get_mut(i) {
                // Hand the buffer back (emptied) so the slot keeps its capacity.
                t.request = request;
                t.request.clear();
            }
        }
        let Some(tx) = self.live.get_mut(i) else {
            return;
        };
        if tx.h_at.is_some_and(|h| h <= now) {
            if tx.state == TxState::Accepted {
                // Timer H: the 2xx was never acknowledged; tear the dialog down.
                self.stats.timeouts += 1;
                debug!("no ACK for 2xx within 64*T1: dialog torn down");
                let tag = tx.tag;
                if let Some(d) = self.dialog_mut(tag.as_bytes()) {
                    d.pending = None;
                }
                self.end_dialog(tag.as_bytes(), EndReason::Timeout);
            }
            self.remove_live(i);
            return;
        }
        if tx.g_at.is_some_and(|g| g <= now) {
            if !tx.last.is_empty() {
                out.push(tx.dst, &tx.last);
                self.stats.retransmissions_sent += 1;
            }
            tx.g_interval = (tx.g_interval.saturating_mul(2)).min(T2_NS.max(self.t1));
            tx.g_at = Some(now.saturating_add(tx.g_interval));
        }
        self.schedule(i);
    }
}

/// Capacity of a fresh wheel for these tables (each entry holds at most one timer).
pub(super) fn wheel_for(live: usize, lingers: usize, nict: usize) -> Wheel {
    Wheel::with_capacity(live + lingers + nict)
}
