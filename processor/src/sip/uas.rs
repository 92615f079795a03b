//! The UAS that drives transactions and dialogs: configuration, counters, and the request
//! handlers (INVITE, re-INVITE, ACK, CANCEL, BYE and the other non-INVITE methods, plus the 400
//! for requests the scanner rejected), each answering at the top Via (§18.2.2).
//!
//! This is the only part that decides *what* to answer; the transaction module decides when to
//! retransmit it and the dialog module what a dialog holds.
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use tracing::{debug, trace};
use wire::{
    sip::{salvage::write_bad_request, Body, Kind, Message, Method, ResponseSpec},
    Limits, SessionSizeConfig,
};

use super::{
    dialog::{Dialog, EndReason},
    route,
    transaction::{tx_key, InviteTx, NonInviteTx, TxState, T4_NS},
};
use fabric::LoadReport;

use crate::{
    load::LoadAccount,
    media::PortPool,
    outbox::Outbox,
    sdp::{write_sdp, SdpParams},
};

/// Methods this UAS implements, for `Allow` (RFC 3261 §20.5).
pub(super) const ALLOW: &[u8] = b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";
pub(super) const ACCEPT: &[u8] = b"Accept: application/sdp";
pub(super) const SDP: &[u8] = b"application/sdp";

/// Configuration of one processor's UAS.
#[derive(Debug, Clone)]
pub struct UasConfig {
    /// This processor's id, encoded into every To-tag so in-dialog requests route back here.
    pub id: u16,
    /// Number of processor ids in the deployment (bounds tag decoding).
    pub max_processors: u16,
    /// The processor's own IP:port: the 2xx `Contact` and the SDP connection address. Must be
    /// an address the peers can reach (not a wildcard).
    pub contact: SocketAddr,
    /// Inclusive RTP port range; even ports are handed out.
    pub media_ports: (u16, u16),
    /// Delay before the 200 (0 = answer at once), to model a ringing phase.
    pub answer_delay: Duration,
    /// Send `180 Ringing` before the 200.
    pub send_180: bool,
    /// RFC 3261 T1 (500 ms): Timer G starts here, Timer H is 64*T1.
    pub t1: Duration,
    /// Session-size rules, identical to the dispatcher's, so released units match assigned.
    pub session_size: SessionSizeConfig,
    /// Capacity in units reported to the dispatcher (0 = unlimited).
    pub capacity_units: u32,
    /// Key of the To-tag MAC ([`wire::tag::encode`]); must be the dispatchers' current key
    /// ([`wire::tag::TagKey::UNKEYED`] without one).
    pub tag_key: wire::tag::TagKey,
    /// Most new-INVITE server transactions that may be pending at once (0 = unlimited): those
    /// not yet acknowledged (or ended by Timer H), each retransmitting its final response. A
    /// new INVITE beyond it is answered 503 with `Retry-After` at once, statelessly (no
    /// dialog, no transaction), so a blast of INVITEs that are never acknowledged cannot grow
    /// the retransmission work without bound. See [`DEFAULT_MAX_PENDING_INVITES`].
    pub max_pending_invites: u32,
}

/// Default of [`UasConfig::max_pending_invites`]: generous for normal traffic (a processor
/// answering 250 calls/s with ACKs arriving within a second holds a few hundred), low enough
/// that the Timer G work of that many unacknowledged 2xx (about 2 retransmissions each per
/// second at first, 1 per 4 s later) stays a small share of a core.
pub const DEFAULT_MAX_PENDING_INVITES: u32 = 8192;

/// `Retry-After` (seconds) of the processor's 503s.
pub(super) const RETRY_AFTER: &[u8] = b"Retry-After: 1";

impl UasConfig {
    /// A configuration with defaults (T1 500 ms, immediate answer, no 180, ports 20000-29999).
    pub fn new(id: u16, max_processors: u16, contact: SocketAddr) -> Self {
        Self {
            id,
            max_processors,
            contact,
            media_ports: (20000, 29999),
            answer_delay: Duration::ZERO,
            send_180: false,
            t1: Duration::from_millis(500),
            session_size: SessionSizeConfig::default(),
            capacity_units: 0,
            tag_key: wire::tag::TagKey::UNKEYED,
            max_pending_invites: DEFAULT_MAX_PENDING_INVITES,
        }
    }
}

/// Counters of what the UAS did, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UasStats {
    /// INVITEs accepted (media port allocated, dialog created).
    pub dialogs_started: u64,
    /// Dialogs whose 2xx was acknowledged.
    pub dialogs_confirmed: u64,
    /// Dialogs ended for any reason (BYE, CANCEL, Timer H); started − ended = active.
    pub dialogs_ended: u64,
    /// Dialogs torn down because the 2xx was never acknowledged (Timer H).
    pub timeouts: u64,
    /// INVITEs cancelled before their final response (487 sent).
    pub cancels: u64,
    /// New INVITEs refused (503: no media port or overload; 4xx before a dialog existed).
    pub rejected: u64,
    /// New INVITEs answered 503 + `Retry-After` because [`UasConfig::max_pending_invites`]
    /// transactions were pending (also counted in `rejected`). Stateless: no dialog, no
    /// transaction; a retransmission of such an INVITE is answered 503 again.
    #[serde(default)]
    pub overload_503: u64,
    /// Most new-INVITE transactions pending at once (a high-water mark, not a counter; never
    /// above a non-zero `max_pending_invites`).
    #[serde(default)]
    pub pending_invites_max: u64,
    /// 481 responses (unknown dialog or transaction).
    pub not_found_481: u64,
    /// 400 responses to malformed requests.
    pub bad_request_400: u64,
    /// Malformed datagrams that could not be answered (no usable Via, responses, ACKs).
    pub dropped: u64,
    /// Responses retransmitted by Timer G.
    pub retransmissions_sent: u64,
    /// Request retransmissions answered from a transaction (no new processing).
    pub retransmissions_absorbed: u64,
    /// ACKs, responses and other messages that needed no answer and matched nothing.
    pub ignored: u64,
    /// Responses that did not fit the output buffer.
    pub write_errors: u64,
}

/// The SIP user-agent server of one processor. See the module docs.
pub struct Uas {
    pub(super) cfg: UasConfig,
    pub(super) limits: Limits,
    pub(super) t1: u64,
    pub(super) load: LoadAccount,
    pub(super) ports: PortPool,
    pub(super) stats: UasStats,
    pub(super) contact_hdr: Vec<u8>,
    pub(super) tag_seed: u64,
    pub(super) tag_counter: u64,
    pub(super) next_tx: u64,
    pub(super) txs: HashMap<u64, InviteTx>,
    /// New-INVITE transactions pending (see [`InviteTx::pending`]).
    pub(super) pending_invites: u32,
    pub(super) tx_keys: HashMap<Vec<u8>, u64>,
    pub(super) dialogs: HashMap<Vec<u8>, Dialog>,
    pub(super) nict: HashMap<Vec<u8>, NonInviteTx>,
    pub(super) nict_expiry: VecDeque<(u64, Vec<u8>)>,
    pub(super) timers: BinaryHeap<Reverse<(u64, u64)>>,
    pub(super) sdp_buf: Vec<u8>,
}

pub(super) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5157_c4ad);
    h.finish()
}

impl Uas {
    /// A UAS with its own [`LoadReport`] (see [`Uas::with_load`] to share one with MGCP).
    pub fn new(cfg: UasConfig) -> Self {
        let load = LoadReport::new(cfg.capacity_units);
        Self::with_load(cfg, load)
    }

    /// A UAS reporting into `load`, shared with the processor's MGCP gateway: both kinds of
    /// session draw on one capacity.
    pub fn with_load(cfg: UasConfig, load: Arc<LoadReport>) -> Self {
        let contact_hdr = format!("Contact: <sip:proc@{}>", cfg.contact).into_bytes();
        let t1 = u64::try_from(cfg.t1.as_nanos()).unwrap_or(u64::MAX).max(1);
        Self {
            ports: PortPool::new(cfg.media_ports.0, cfg.media_ports.1),
            limits: Limits::default(),
            t1,
            load: LoadAccount::new(load),
            stats: UasStats::default(),
            contact_hdr,
            tag_seed: random_seed(),
            tag_counter: 0,
            next_tx: 1,
            txs: HashMap::new(),
            pending_invites: 0,
            tx_keys: HashMap::new(),
            dialogs: HashMap::new(),
            nict: HashMap::new(),
            nict_expiry: VecDeque::new(),
            timers: BinaryHeap::new(),
            sdp_buf: Vec::with_capacity(512),
            cfg,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &UasStats {
        &self.stats
    }

    /// The load report this UAS updates.
    pub fn load(&self) -> &Arc<LoadReport> {
        self.load.report()
    }

    /// Dialogs currently holding resources (early or confirmed).
    pub fn active_dialogs(&self) -> usize {
        self.dialogs.len()
    }

    /// New-INVITE server transactions pending now: answered (or being answered) and not yet
    /// acknowledged, nor ended by Timer H. What the cap limits and the load board reports.
    pub fn pending_invites(&self) -> u32 {
        self.pending_invites
    }

    /// Whether a new INVITE would be refused for overload now.
    fn at_invite_cap(&self) -> bool {
        let cap = self.cfg.max_pending_invites;
        cap != 0 && self.pending_invites >= cap
    }

    /// Free RTP ports left.
    pub fn free_media_ports(&self) -> usize {
        self.ports.available()
    }

    /// Earliest time (ns) [`Uas::on_timer`] has work; `None` when idle. May be early (a
    /// cancelled timer), never late.
    pub fn next_deadline(&self) -> Option<u64> {
        let heap = self.timers.peek().map(|Reverse((t, _))| *t);
        let nict = self.nict_expiry.front().map(|(t, _)| *t);
        match (heap, nict) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Builds a response to `msg` into `out`; returns its bytes (for retransmission), or
    /// `None` when it did not fit (counted).
    pub(super) fn respond<'o>(
        stats: &mut UasStats,
        msg: &Message<'_>,
        spec: &ResponseSpec<'_>,
        dst: SocketAddr,
        out: &'o mut Outbox,
    ) -> Option<&'o [u8]> {
        match out.push_with(dst, |b| msg.write_response(spec, b)) {
            Ok(b) => Some(b),
            Err(e) => {
                stats.write_errors += 1;
                debug!(error = %e, code = spec.code, "response not written");
                None
            }
        }
    }

    /// Handles one SIP datagram: a request handed over by the dispatcher or received on the
    /// processor's own socket. `src` is the packet's true source.
    pub fn on_message(&mut self, now_ns: u64, src: SocketAddr, bytes: &[u8], out: &mut Outbox) {
        let msg = match Message::parse(bytes, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                self.malformed(bytes, &format!("Bad Request ({})", e.kind), src, out);
                return;
            }
        };
        let Kind::Request { method, .. } = msg.kind() else {
            // We send no requests, so no response can match a client transaction.
            self.stats.ignored += 1;
            return;
        };
        let dst = route::response_destination(&msg.top_via(), src);
        if method == Method::Ack {
            self.on_ack(now_ns, &msg);
            return;
        }
        let to_tag = msg.to().and_then(|t| t.tag);
        let new_invite = method == Method::Invite && to_tag.is_none();
        if new_invite && self.at_invite_cap() && !self.tx_keys.contains_key(&tx_key(&msg, b'I')) {
            self.overload(&msg, dst, out);
            return;
        }
        if let Some(missing) = msg.missing_mandatory() {
            let reason = format!("Missing {missing} Header");
            self.reject_plain(now_ns, &msg, 400, &reason, dst, out);
            self.stats.bad_request_400 += 1;
            if new_invite {
                self.load.rejected(msg.session_size(&self.cfg.session_size));
                self.stats.rejected += 1;
            }
            return;
        }
        match method {
            Method::Cancel => self.on_cancel(now_ns, &msg, dst, out),
            Method::Invite => {
                if let Some(&id) = self.tx_keys.get(&tx_key(&msg, b'I')) {
                    self.invite_retransmission(id, out);
                } else if !msg.request_uri_scheme().is_some_and(|s| {
                    s.eq_ignore_ascii_case(b"sip") || s.eq_ignore_ascii_case(b"sips")
                }) {
                    self.reject_plain(now_ns, &msg, 416, "", dst, out);
                    if new_invite {
                        self.load.rejected(msg.session_size(&self.cfg.session_size));
                        self.stats.rejected += 1;
                    }
                } else {
                    match to_tag {
                        None => self.on_invite(now_ns, &msg, dst, out),
                        Some(tag) => self.on_reinvite(now_ns, &msg, tag, dst, out),
                    }
                }
            }
            _ => {
                let key = tx_key(&msg, b'N');
                if let Some(tx) = self.nict.get(&key) {
                    out.push(tx.dst, &tx.response);
                    self.stats.retransmissions_absorbed += 1;
                    return;
                }
                self.non_invite(now_ns, &msg, method, to_tag, key, dst, out);
            }
        }
    }

    /// Answers a request the scanner rejected with 400 at its top Via (RFC 3261 §18.2.2), or
    /// drops it when [`wire::sip::salvage`] finds it unanswerable or its top Via unusable.
    pub(super) fn malformed(
        &mut self,
        bytes: &[u8],
        reason: &str,
        src: SocketAddr,
        out: &mut Outbox,
    ) {
        let mut dst = None;
        let res = out.push_with(src, |b| {
            let s = write_bad_request(bytes, reason, None, b)
                .map_err(|_| wire::WriteError::InvalidInput("unanswerable"))?;
            let via = s
                .top_via
                .ok_or(wire::WriteError::InvalidInput("unusable Via"))?;
            dst = Some(route::response_destination(&via, src));
            Ok(s.len)
        });
        match (res.is_ok(), dst) {
            (true, Some(d)) => {
                // push_with queued it to `src`; re-target to the Via destination.
                out.retarget_last(d);
                self.stats.bad_request_400 += 1;
            }
            _ => {
                self.stats.dropped += 1;
                trace!(%src, "unanswerable malformed SIP datagram dropped");
            }
        }
    }

    /// Answers a non-INVITE-style final response and caches it for retransmissions.
    pub(super) fn reject_plain(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        code: u16,
        reason: &str,
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        let tag = if msg.to().is_some_and(|t| t.tag.is_none()) {
            Some(self.new_tag())
        } else {
            None
        };
        let headers: &[&[u8]] = if matches!(code, 405 | 501) {
            &[ALLOW]
        } else {
            &[]
        };
        let spec = ResponseSpec {
            code,
            reason: reason.as_bytes(),
            to_tag: tag.as_deref(),
            headers,
            body: None,
        };
        let is_invite = msg.method() == Some(Method::Invite);
        let Some(bytes) = Self::respond(&mut self.stats, msg, &spec, dst, out) else {
            return;
        };
        if is_invite {
            // A final non-2xx to an INVITE: its ACK comes back on the same transaction.
            let bytes = bytes.to_vec();
            self.start_completed(now, msg, tag.unwrap_or_default(), bytes, dst);
        } else {
            let bytes = bytes.to_vec();
            self.cache_non_invite(now, tx_key(msg, b'N'), dst, bytes);
        }
    }

    /// Refuses a new INVITE because [`UasConfig::max_pending_invites`] transactions are
    /// pending: 503 with `Retry-After`, like the media-port 503 (the units the dispatcher
    /// assigned are released as rejected, so its accounting stays right), but with no 100, no
    /// dialog and no transaction: nothing retransmits, nothing is held. A retransmission of
    /// this INVITE is a new INVITE again (answered afresh); its ACK matches nothing (ignored).
    fn overload(&mut self, msg: &Message<'_>, dst: SocketAddr, out: &mut Outbox) {
        debug!(
            pending = self.pending_invites,
            "pending INVITE cap reached: 503"
        );
        let tag = self.new_tag();
        Self::respond(&mut self.stats, msg, &retry_later(&tag), dst, out);
        self.load.rejected(msg.session_size(&self.cfg.session_size));
        self.stats.rejected += 1;
        self.stats.overload_503 += 1;
    }

    pub(super) fn on_invite(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        let units = msg.session_size(&self.cfg.session_size);
        // 100 Trying at once: it stops the client's INVITE retransmissions (§17.2.1).
        Self::respond(&mut self.stats, msg, &ResponseSpec::new(100), dst, out);
        let tag = self.new_tag();
        let Some(port) = self.ports.alloc() else {
            debug!("media ports exhausted: 503");
            let last = Self::respond(&mut self.stats, msg, &retry_later(&tag), dst, out)
                .map(<[u8]>::to_vec);
            self.load.rejected(units);
            self.stats.rejected += 1;
            self.start_completed(now, msg, tag, last.unwrap_or_default(), dst);
            return;
        };
        self.load.started(units);
        self.stats.dialogs_started += 1;
        let session_id = self.tag_counter;
        self.dialogs.insert(
            tag.clone(),
            Dialog {
                call_id: msg.call_id().to_vec(),
                media_port: port,
                units,
                established: false,
                pending: None,
                session_id,
                sdp_version: 1,
            },
        );
        let id = self.next_tx;
        self.next_tx += 1;
        let key = tx_key(msg, b'I');
        self.tx_keys.insert(key.clone(), id);
        let mut tx = InviteTx::proceeding(key, dst, tag.clone(), msg.cseq().seq, false, self.t1);
        self.add_pending();
        if let Some(d) = self.dialogs.get_mut(&tag) {
            d.pending = Some(id);
        }
        if self.cfg.send_180 {
            let headers: &[&[u8]] = &[&self.contact_hdr];
            let spec = ResponseSpec {
                code: 180,
                reason: b"",
                to_tag: Some(&tag),
                headers,
                body: None,
            };
            if let Some(b) = Self::respond(&mut self.stats, msg, &spec, dst, out) {
                tx.last = b.to_vec();
            }
        }
        let delay = u64::try_from(self.cfg.answer_delay.as_nanos()).unwrap_or(u64::MAX);
        if delay == 0 {
            self.send_2xx(now, msg, &mut tx, out);
        } else {
            tx.request = msg.as_bytes().to_vec();
            tx.answer_at = Some(now.saturating_add(delay));
        }
        self.txs.insert(id, tx);
        self.schedule(id);
    }

    /// Sends the 2xx for `tx` (whose request is `msg`) and starts Timer G/H.
    pub(super) fn send_2xx(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        tx: &mut InviteTx,
        out: &mut Outbox,
    ) {
        let Some(d) = self.dialogs.get_mut(&tx.tag) else {
            return;
        };
        let offer = msg.has_sdp_body().then(|| msg.body());
        let params = SdpParams::sip(
            self.cfg.contact.ip(),
            d.media_port,
            d.session_id,
            d.sdp_version,
        );
        d.established = true;
        write_sdp(&mut self.sdp_buf, offer, &params);
        let headers: &[&[u8]] = &[&self.contact_hdr, ALLOW];
        let spec = ResponseSpec {
            code: 200,
            reason: b"",
            to_tag: Some(&tx.tag),
            headers,
            body: Some(Body {
                content_type: SDP,
                content: &self.sdp_buf,
            }),
        };
        tx.last.clear();
        if let Some(b) = Self::respond(&mut self.stats, msg, &spec, tx.dst, out) {
            tx.last.extend_from_slice(b);
        }
        tx.request = Vec::new();
        tx.state = TxState::Accepted;
        tx.answer_at = None;
        tx.g_interval = self.t1;
        tx.g_at = Some(now.saturating_add(self.t1));
        tx.h_at = Some(now.saturating_add(64 * self.t1));
        tx.linger_until = None;
    }

    pub(super) fn on_reinvite(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        tag: &[u8],
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        let ok = self
            .dialogs
            .get(tag)
            .is_some_and(|d| d.call_id == msg.call_id() && d.established);
        if !ok {
            self.stats.not_found_481 += 1;
            self.reject_plain(now, msg, 481, "", dst, out);
            return;
        }
        let pending = self.dialogs.get(tag).and_then(|d| d.pending);
        if let Some(pid) = pending {
            let proceeding = self
                .txs
                .get(&pid)
                .is_some_and(|t| t.state == TxState::Proceeding);
            if proceeding {
                // §14.2: an INVITE while one is still unanswered on the dialog.
                self.reject_plain(now, msg, 500, "", dst, out);
                return;
            }
            // The earlier 2xx is superseded: stop retransmitting it.
            let linger = now.saturating_add(64 * self.t1);
            if let Some(t) = self.txs.get_mut(&pid) {
                let was = t.confirm(linger);
                self.settle_pending(was);
            }
            self.schedule(pid);
        }
        let id = self.next_tx;
        self.next_tx += 1;
        let key = tx_key(msg, b'I');
        self.tx_keys.insert(key.clone(), id);
        if let Some(d) = self.dialogs.get_mut(tag) {
            d.sdp_version += 1;
            d.pending = Some(id);
        }
        let mut tx = InviteTx::proceeding(key, dst, tag.to_vec(), msg.cseq().seq, true, self.t1);
        self.send_2xx(now, msg, &mut tx, out);
        self.txs.insert(id, tx);
        self.schedule(id);
    }

    pub(super) fn on_ack(&mut self, now: u64, msg: &Message<'_>) {
        // ACK for a non-2xx final response: same transaction as the INVITE (§17.2.1).
        if let Some(&id) = self.tx_keys.get(&tx_key(msg, b'I')) {
            if let Some(tx) = self.txs.get_mut(&id) {
                match tx.state {
                    TxState::Completed => {
                        let was = tx.confirm(now.saturating_add(T4_NS));
                        self.settle_pending(was);
                        self.schedule(id);
                        return;
                    }
                    TxState::Confirmed => {
                        self.stats.retransmissions_absorbed += 1;
                        return;
                    }
                    // An RFC 2543 client reusing the INVITE branch for the 2xx ACK: fall
                    // through to dialog matching.
                    TxState::Accepted | TxState::Proceeding => {}
                }
            }
        }
        // ACK for a 2xx: a new transaction within the dialog (§13.2.2.4, §17.1.1.3).
        let Some(tag) = msg.to().and_then(|t| t.tag) else {
            self.stats.ignored += 1;
            return;
        };
        let Some(d) = self
            .dialogs
            .get_mut(tag)
            .filter(|d| d.call_id == msg.call_id())
        else {
            self.stats.ignored += 1;
            return;
        };
        let seq = msg.cseq().seq;
        let Some(pid) = d.pending else {
            self.stats.retransmissions_absorbed += 1;
            return;
        };
        let Some(tx) = self.txs.get_mut(&pid) else {
            d.pending = None;
            self.stats.ignored += 1;
            return;
        };
        if tx.state != TxState::Accepted || tx.cseq != seq {
            self.stats.ignored += 1;
            return;
        }
        d.pending = None;
        let linger = tx.h_at.unwrap_or(now).max(now.saturating_add(self.t1));
        let first = !tx.reinvite;
        let was = tx.confirm(linger);
        self.settle_pending(was);
        if first {
            self.stats.dialogs_confirmed += 1;
        }
        self.schedule(pid);
    }

    pub(super) fn on_cancel(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        let ckey = tx_key(msg, b'C');
        if let Some(tx) = self.nict.get(&ckey) {
            out.push(tx.dst, &tx.response);
            self.stats.retransmissions_absorbed += 1;
            return;
        }
        let Some(&id) = self.tx_keys.get(&tx_key(msg, b'I')) else {
            self.stats.not_found_481 += 1;
            let tag = self.new_tag();
            let spec = ResponseSpec {
                code: 481,
                reason: b"",
                to_tag: Some(&tag),
                headers: &[],
                body: None,
            };
            if let Some(b) = Self::respond(&mut self.stats, msg, &spec, dst, out) {
                let b = b.to_vec();
                self.cache_non_invite(now, ckey, dst, b);
            }
            return;
        };
        let Some(mut tx) = self.txs.remove(&id) else {
            return;
        };
        // §9.2: the CANCEL's 200 carries the same To-tag as the INVITE's responses.
        let spec = ResponseSpec {
            code: 200,
            reason: b"",
            to_tag: Some(&tx.tag),
            headers: &[],
            body: None,
        };
        if let Some(b) = Self::respond(&mut self.stats, msg, &spec, dst, out) {
            let b = b.to_vec();
            self.cache_non_invite(now, ckey, dst, b);
        }
        if tx.state == TxState::Proceeding {
            self.stats.cancels += 1;
            let request = std::mem::take(&mut tx.request);
            tx.last.clear();
            if let Ok(inv) = Message::parse(&request, &self.limits) {
                let spec = ResponseSpec {
                    code: 487,
                    reason: b"",
                    to_tag: Some(&tx.tag),
                    headers: &[],
                    body: None,
                };
                if let Some(b) = Self::respond(&mut self.stats, &inv, &spec, tx.dst, out) {
                    tx.last.extend_from_slice(b);
                }
            }
            tx.state = TxState::Completed;
            tx.answer_at = None;
            tx.g_interval = self.t1;
            tx.g_at = Some(now.saturating_add(self.t1));
            tx.h_at = Some(now.saturating_add(64 * self.t1));
            if tx.has_dialog && !tx.reinvite {
                self.end_dialog(&tx.tag.clone(), EndReason::Cancelled);
            }
            tx.has_dialog = false;
        }
        self.txs.insert(id, tx);
        self.schedule(id);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn non_invite(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        method: Method<'_>,
        to_tag: Option<&[u8]>,
        key: Vec<u8>,
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        let in_dialog = to_tag.and_then(|t| {
            self.dialogs
                .get(t)
                .filter(|d| d.call_id == msg.call_id())
                .map(|_| t)
        });
        let (code, with_sdp) = match (method, to_tag, in_dialog) {
            (Method::Options, None, _) => (200, false),
            (_, Some(_), None)
            | (Method::Bye | Method::Info | Method::Update | Method::Prack, None, _) => {
                self.stats.not_found_481 += 1;
                (481, false)
            }
            (Method::Other(_), _, _) => (501, false),
            (
                Method::Register
                | Method::Subscribe
                | Method::Notify
                | Method::Refer
                | Method::Message,
                _,
                _,
            ) => (405, false),
            (Method::Bye, _, Some(tag)) => {
                self.end_dialog_by_bye(now, tag, out);
                (200, false)
            }
            (Method::Update, _, Some(_)) => (200, msg.has_sdp_body()),
            _ => (200, false),
        };
        let new_tag = match to_tag {
            None => Some(self.new_tag()),
            Some(_) => None,
        };
        let headers: &[&[u8]] = match (method, code) {
            (Method::Options, 200) => &[ALLOW, ACCEPT],
            (_, 405 | 501) => &[ALLOW],
            _ => &[],
        };
        let mut body = None;
        if with_sdp {
            if let Some(d) = in_dialog.and_then(|t| self.dialogs.get_mut(t)) {
                d.sdp_version += 1;
                let params = SdpParams::sip(
                    self.cfg.contact.ip(),
                    d.media_port,
                    d.session_id,
                    d.sdp_version,
                );
                write_sdp(&mut self.sdp_buf, Some(msg.body()), &params);
                body = Some(Body {
                    content_type: SDP,
                    content: &self.sdp_buf,
                });
            }
        }
        let spec = ResponseSpec {
            code,
            reason: b"",
            to_tag: new_tag.as_deref(),
            headers,
            body,
        };
        if let Some(b) = Self::respond(&mut self.stats, msg, &spec, dst, out) {
            let b = b.to_vec();
            self.cache_non_invite(now, key, dst, b);
        }
    }
}

/// The processor's `503` with `Retry-After` (media ports exhausted, or the pending-INVITE cap).
fn retry_later(tag: &[u8]) -> ResponseSpec<'_> {
    ResponseSpec {
        code: 503,
        reason: b"",
        to_tag: Some(tag),
        headers: &[RETRY_AFTER],
        body: None,
    }
}
