//! Server transactions (RFC 3261 §17.2) and their timers: the INVITE transaction with its
//! Timer G retransmissions, Timer H give-up and linger after the ACK (with the 2xx handling of
//! RFC 6026), the cached answers of completed non-INVITE transactions (Timer J), and the
//! transaction key (§17.2.3).
//!
//! Kept apart from the dialog state and from request handling because this is the part that
//! runs on the clock: everything [`Uas::on_timer`] does lives here, and so does every deadline
//! the timer heap holds.
use std::{cmp::Reverse, net::SocketAddr};

use tracing::debug;
use wire::sip::Message;

use super::{dialog::EndReason, Uas};
use crate::outbox::Outbox;

/// T2 (RFC 3261 §17.1.2.2): cap of the retransmission interval.
pub(super) const T2_NS: u64 = 4_000_000_000;
/// T4: how long a non-2xx INVITE transaction lingers after its ACK (Timer I).
pub(super) const T4_NS: u64 = 5_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxState {
    /// Provisional sent, final pending (answer delay).
    Proceeding,
    /// 2xx sent, retransmitting until the ACK.
    Accepted,
    /// Non-2xx final sent, retransmitting until the ACK.
    Completed,
    /// ACK received (or superseded): only absorbs stragglers until `linger_until`.
    Confirmed,
}

/// A server INVITE transaction (RFC 3261 §17.2.1, with the 2xx handling of RFC 6026).
#[derive(Debug)]
pub(super) struct InviteTx {
    pub(super) key: Vec<u8>,
    pub(super) dst: SocketAddr,
    pub(super) state: TxState,
    /// Local tag of the dialog this INVITE belongs to (the To-tag of our responses).
    pub(super) tag: Vec<u8>,
    pub(super) has_dialog: bool,
    pub(super) reinvite: bool,
    pub(super) cseq: u32,
    /// The INVITE itself while the final response is still to be built.
    pub(super) request: Vec<u8>,
    /// Last response sent, for retransmissions.
    pub(super) last: Vec<u8>,
    pub(super) answer_at: Option<u64>,
    pub(super) g_at: Option<u64>,
    pub(super) g_interval: u64,
    pub(super) h_at: Option<u64>,
    pub(super) linger_until: Option<u64>,
    /// Deadline currently queued in the timer heap for this transaction.
    pub(super) scheduled: Option<u64>,
    /// Counted in [`Uas::pending_invites`]: a new (out-of-dialog) INVITE whose transaction is
    /// not yet confirmed or gone, i.e. one that may still retransmit a final response. Cleared
    /// (and the count decremented) exactly once, by [`InviteTx::confirm`] or at removal.
    pub(super) pending: bool,
}

impl InviteTx {
    /// A transaction that has a dialog and no final response yet (an INVITE or re-INVITE
    /// being answered); no timer runs until a response is sent.
    pub(super) fn proceeding(
        key: Vec<u8>,
        dst: SocketAddr,
        tag: Vec<u8>,
        cseq: u32,
        reinvite: bool,
        t1: u64,
    ) -> Self {
        InviteTx {
            key,
            dst,
            state: TxState::Proceeding,
            tag,
            has_dialog: true,
            reinvite,
            cseq,
            request: Vec::new(),
            last: Vec::new(),
            answer_at: None,
            g_at: None,
            g_interval: t1,
            h_at: None,
            linger_until: None,
            scheduled: None,
            pending: !reinvite,
        }
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
        [self.answer_at, self.g_at, self.h_at, self.linger_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves to Confirmed; returns whether the transaction was counted as pending (the caller
    /// then releases it with [`Uas::settle_pending`]).
    #[must_use]
    pub(super) fn confirm(&mut self, linger_until: u64) -> bool {
        self.state = TxState::Confirmed;
        self.g_at = None;
        self.h_at = None;
        self.answer_at = None;
        self.linger_until = Some(linger_until);
        self.request = Vec::new();
        self.last = Vec::new();
        std::mem::replace(&mut self.pending, false)
    }
}

/// A completed non-INVITE transaction: its response, replayed for retransmissions (Timer J).
#[derive(Debug)]
pub(super) struct NonInviteTx {
    pub(super) dst: SocketAddr,
    pub(super) response: Vec<u8>,
    pub(super) expires: u64,
}

/// Transaction key (RFC 3261 §17.2.3). `class` separates INVITE/ACK (`I`), CANCEL (`C`) and
/// other methods (`N`).
pub(super) fn tx_key(msg: &Message<'_>, class: u8) -> Vec<u8> {
    let via = msg.top_via();
    let mut k = Vec::with_capacity(96);
    k.push(class);
    if class == b'N' {
        k.extend_from_slice(msg.cseq().method.as_bytes());
        k.push(0);
    }
    if via.has_rfc3261_branch() {
        let (host, port) = via.sent_by();
        k.extend_from_slice(via.branch().unwrap_or_default());
        k.push(0);
        k.extend_from_slice(host);
        k.extend_from_slice(&port.unwrap_or(0).to_be_bytes());
    } else {
        k.push(1);
        k.extend_from_slice(msg.call_id());
        k.push(0);
        k.extend_from_slice(msg.from().and_then(|f| f.tag).unwrap_or_default());
        k.push(0);
        k.extend_from_slice(&msg.cseq().seq.to_be_bytes());
        k.extend_from_slice(via.raw());
    }
    k
}

impl Uas {
    pub(super) fn schedule(&mut self, id: u64) {
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        if let Some(d) = tx.next_deadline() {
            if tx.scheduled.is_none_or(|s| d < s) {
                tx.scheduled = Some(d);
                self.timers.push(Reverse((d, id)));
            }
        }
    }

    pub(super) fn cache_non_invite(
        &mut self,
        now: u64,
        key: Vec<u8>,
        dst: SocketAddr,
        response: Vec<u8>,
    ) {
        let expires = now.saturating_add(64 * self.t1);
        self.nict_expiry.push_back((expires, key.clone()));
        self.nict.insert(
            key,
            NonInviteTx {
                dst,
                response,
                expires,
            },
        );
    }

    /// Registers a non-2xx-answered INVITE transaction: retransmit with Timer G until the
    /// ACK, give up at Timer H (RFC 3261 §17.2.1).
    pub(super) fn start_completed(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        tag: Vec<u8>,
        last: Vec<u8>,
        dst: SocketAddr,
    ) {
        // Only a new INVITE (no To-tag) counts: those are what the cap gates.
        let pending = msg.to().is_some_and(|t| t.tag.is_none());
        if pending {
            self.add_pending();
        }
        let id = self.next_tx;
        self.next_tx += 1;
        let key = tx_key(msg, b'I');
        self.tx_keys.insert(key.clone(), id);
        self.txs.insert(
            id,
            InviteTx {
                key,
                dst,
                state: TxState::Completed,
                tag,
                has_dialog: false,
                reinvite: false,
                cseq: msg.cseq().seq,
                request: Vec::new(),
                last,
                answer_at: None,
                g_at: Some(now.saturating_add(self.t1)),
                g_interval: self.t1,
                h_at: Some(now.saturating_add(64 * self.t1)),
                linger_until: None,
                scheduled: None,
                pending,
            },
        );
        self.schedule(id);
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

    pub(super) fn invite_retransmission(&mut self, id: u64, out: &mut Outbox) {
        self.stats.retransmissions_absorbed += 1;
        if let Some(tx) = self.txs.get(&id) {
            if !tx.last.is_empty() {
                out.push(tx.dst, &tx.last);
            }
        }
    }

    /// Runs every timer due at `now_ns`: delayed answers, Timer G retransmissions, Timer H
    /// give-ups, transaction clean-up.
    pub fn on_timer(&mut self, now_ns: u64, out: &mut Outbox) {
        while let Some((t, _)) = self.nict_expiry.front() {
            if *t > now_ns {
                break;
            }
            if let Some((_, key)) = self.nict_expiry.pop_front() {
                if self.nict.get(&key).is_some_and(|n| n.expires <= now_ns) {
                    self.nict.remove(&key);
                }
            }
        }
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now_ns {
                break;
            }
            self.timers.pop();
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            if tx.scheduled != Some(t) {
                continue;
            }
            tx.scheduled = None;
            self.tx_timer(id, now_ns, out);
            self.schedule(id);
        }
    }

    pub(super) fn tx_timer(&mut self, id: u64, now: u64, out: &mut Outbox) {
        let Some(mut tx) = self.txs.remove(&id) else {
            return;
        };
        if tx.answer_at.is_some_and(|a| a <= now) && tx.state == TxState::Proceeding {
            let request = std::mem::take(&mut tx.request);
            if let Ok(msg) = Message::parse(&request, &self.limits) {
                self.send_2xx(now, &msg, &mut tx, out);
            }
        }
        if tx.h_at.is_some_and(|h| h <= now) {
            if tx.state == TxState::Accepted {
                // Timer H: the 2xx was never acknowledged; tear the dialog down.
                self.stats.timeouts += 1;
                debug!("no ACK for 2xx within 64*T1: dialog torn down");
                if let Some(d) = self.dialogs.get_mut(&tx.tag) {
                    d.pending = None;
                }
                self.end_dialog(&tx.tag.clone(), EndReason::Timeout);
            }
            self.settle_pending(tx.pending);
            self.tx_keys.remove(&tx.key);
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
        if tx.linger_until.is_some_and(|l| l <= now) {
            self.settle_pending(tx.pending);
            self.tx_keys.remove(&tx.key);
            return;
        }
        self.txs.insert(id, tx);
    }
}
