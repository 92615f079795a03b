//! The UAS that drives transactions and dialogs: configuration, counters, and the request
//! handlers (INVITE, re-INVITE, ACK, CANCEL, BYE and the other non-INVITE methods, plus the 400
//! for requests the scanner rejected), each answering at the top Via (§18.2.2).
//!
//! This is the only part that decides *what* to answer; the transaction module decides when to
//! retransmit it and the dialog module what a dialog holds.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tracing::{debug, trace};
use wire::{
    sip::{salvage::write_bad_request, Body, Kind, Message, Method, ResponseSpec},
    Limits, SessionSizeConfig,
};

use super::{
    dialog::{Dialog, EndReason, Tag},
    route,
    transaction::{wheel_for, InviteTx, Linger, NonInviteTx, TxRef, TxState, T4_NS},
};
use fabric::LoadReport;

use crate::{
    load::LoadAccount,
    media::PortPool,
    outbox::Outbox,
    sdp::{write_sdp, SdpAddr, SdpParams},
    table::{KeyHasher, Slab, Table},
    wheel::Wheel,
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
    /// the retransmission work without bound. See [`DEFAULT_MAX_PENDING_INVITES`]. With 0
    /// the tables are still sized as for the default ([`Uas::with_load`]); a full one
    /// answers 503 too.
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
    /// New INVITEs (and re-INVITEs) answered 503 + `Retry-After` because a fixed-size
    /// transaction or dialog table was full (also counted in `rejected` and `overload_503`
    /// for new INVITEs). See [`Uas::with_load`] for the capacities.
    #[serde(default)]
    pub table_full_503: u64,
    /// State not kept because its table was full: a lingering (acknowledged) INVITE
    /// transaction ended early, or a non-INVITE answer not cached for retransmissions.
    #[serde(default)]
    pub table_full_dropped: u64,
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
    /// Keys every table below ([`Uas::tx_key`], dialog tags).
    pub(super) hasher: KeyHasher,
    /// INVITE transaction key → live slot, or linger slot with `LINGER_BIT`.
    pub(super) invites: Table,
    pub(super) live: Slab<InviteTx>,
    pub(super) lingers: Slab<Linger>,
    /// New-INVITE transactions pending (see [`InviteTx::pending`]).
    pub(super) pending_invites: u32,
    /// Dialog tag key → dialog slot.
    pub(super) dialog_index: Table,
    pub(super) dialogs: Slab<Dialog>,
    /// Non-INVITE (and CANCEL) transaction key → cached-answer slot.
    pub(super) nict_index: Table,
    pub(super) nict: Slab<NonInviteTx>,
    pub(super) wheel: Wheel,
    /// Reused list of due timers for [`Uas::on_timer`].
    pub(super) due: Vec<u64>,
    pub(super) sdp_buf: Vec<u8>,
    /// `cfg.contact`'s address as the answers' `o=`/`c=` lines write it.
    sdp_addr: SdpAddr,
}

pub(super) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5157_c4ad);
    h.finish()
}

/// How many acknowledged INVITE transactions (and cached non-INVITE answers) may linger per
/// pending-INVITE slot. Both last 64·T1 (32 s), so the tables hold the call rate × 32 s:
/// 32 × the default 8192 = 262,144 entries sustain 8,192 calls/s on one processor.
const LINGER_PER_PENDING: usize = 32;

impl Uas {
    /// A UAS with its own [`LoadReport`] (see [`Uas::with_load`] to share one with MGCP).
    pub fn new(cfg: UasConfig) -> Self {
        let load = LoadReport::new(cfg.capacity_units);
        Self::with_load(cfg, load)
    }

    /// A UAS reporting into `load`, shared with the processor's MGCP gateway: both kinds of
    /// session draw on one capacity.
    ///
    /// Every table is sized here, once, and never grows (a full one answers 503):
    /// - dialogs: one per media port (each dialog holds one), so exactly the even ports of
    ///   [`UasConfig::media_ports`];
    /// - live INVITE transactions: [`UasConfig::max_pending_invites`] (its default when 0)
    ///   new INVITEs plus one re-INVITE per dialog;
    /// - lingering (acknowledged) INVITE transactions and cached non-INVITE answers: each
    ///   32 (`LINGER_PER_PENDING`) × the pending cap, the call rate × 64·T1 they must hold.
    pub fn with_load(cfg: UasConfig, load: Arc<LoadReport>) -> Self {
        let contact_hdr = format!("Contact: <sip:proc@{}>", cfg.contact).into_bytes();
        let t1 = u64::try_from(cfg.t1.as_nanos()).unwrap_or(u64::MAX).max(1);
        let ports = PortPool::new(cfg.media_ports.0, cfg.media_ports.1);
        let pending = match cfg.max_pending_invites {
            0 => DEFAULT_MAX_PENDING_INVITES,
            n => n,
        } as usize;
        let dialogs = ports.capacity().max(1);
        let live = pending + dialogs;
        let lingers = LINGER_PER_PENDING * pending;
        let nict = LINGER_PER_PENDING * pending;
        Self {
            ports,
            limits: Limits::default(),
            t1,
            load: LoadAccount::new(load),
            stats: UasStats::default(),
            contact_hdr,
            tag_seed: random_seed(),
            tag_counter: 0,
            hasher: KeyHasher::new([random_seed(), random_seed()]),
            invites: Table::with_capacity(live + lingers),
            live: Slab::with_capacity(live),
            lingers: Slab::with_capacity(lingers),
            pending_invites: 0,
            dialog_index: Table::with_capacity(dialogs),
            dialogs: Slab::with_capacity(dialogs),
            nict_index: Table::with_capacity(nict),
            nict: Slab::with_capacity(nict),
            wheel: wheel_for(live, lingers, nict),
            due: Vec::with_capacity(256),
            sdp_buf: Vec::with_capacity(512),
            sdp_addr: SdpAddr::new(cfg.contact.ip()),
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
        self.wheel.next_deadline()
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
        self.on_message_sized(now_ns, src, bytes, None, out);
    }

    /// [`Uas::on_message`] for a datagram whose session size the dispatcher already computed
    /// (`Some(units)`, from the fabric slot), so the processor does not size the SDP again;
    /// `None` sizes it here with the same rules.
    pub fn on_message_sized(
        &mut self,
        now_ns: u64,
        src: SocketAddr,
        bytes: &[u8],
        units: Option<u32>,
        out: &mut Outbox,
    ) {
        // Handled where it is scanned: moving the view out of a result is a copy of its
        // header array (over 600 bytes) per message.
        let limits = self.limits;
        let parsed = Message::parse_then(bytes, &limits, |msg| {
            self.on_parsed(now_ns, src, msg, units, out);
        });
        if let Err(e) = parsed {
            self.malformed(bytes, &format!("Bad Request ({})", e.kind), src, out);
        }
    }

    /// One well-formed datagram from `src`; see [`Uas::on_message_sized`].
    fn on_parsed(
        &mut self,
        now_ns: u64,
        src: SocketAddr,
        msg: &Message<'_>,
        units: Option<u32>,
        out: &mut Outbox,
    ) {
        let Kind::Request { method, .. } = msg.kind() else {
            // We send no requests, so no response can match a client transaction.
            self.stats.ignored += 1;
            return;
        };
        let dst = route::response_destination(&msg.top_via(), src);
        if method == Method::Ack {
            self.on_ack(now_ns, msg);
            return;
        }
        let size = |uas: &Self| units.unwrap_or_else(|| msg.session_size(&uas.cfg.session_size));
        let to_tag = msg.to().and_then(|t| t.tag);
        let new_invite = method == Method::Invite && to_tag.is_none();
        let ikey = (method == Method::Invite).then(|| self.tx_key(msg, b'I'));
        let existing = ikey.and_then(|k| self.invite_tx(&k));
        if new_invite && self.at_invite_cap() && existing.is_none() {
            let u = size(self);
            self.overload(msg, u, false, dst, out);
            return;
        }
        if let Some(missing) = msg.missing_mandatory() {
            let reason = format!("Missing {missing} Header");
            self.reject_plain(now_ns, msg, 400, &reason, dst, out);
            self.stats.bad_request_400 += 1;
            if new_invite {
                let u = size(self);
                self.load.rejected(u);
                self.stats.rejected += 1;
            }
            return;
        }
        match method {
            Method::Cancel => self.on_cancel(now_ns, msg, dst, out),
            Method::Invite => {
                if let Some(r) = existing {
                    self.invite_retransmission(r, out);
                } else if !msg.request_uri_scheme().is_some_and(|s| {
                    s.eq_ignore_ascii_case(b"sip") || s.eq_ignore_ascii_case(b"sips")
                }) {
                    self.reject_plain(now_ns, msg, 416, "", dst, out);
                    if new_invite {
                        let u = size(self);
                        self.load.rejected(u);
                        self.stats.rejected += 1;
                    }
                } else {
                    match to_tag {
                        None => {
                            let u = size(self);
                            let key = ikey.unwrap_or_else(|| self.tx_key(msg, b'I'));
                            self.on_invite(now_ns, msg, key, u, dst, out);
                        }
                        Some(tag) => self.on_reinvite(now_ns, msg, tag, dst, out),
                    }
                }
            }
            _ => {
                let key = self.tx_key(msg, b'N');
                if let Some(tx) = self.nict_index.get(&key).and_then(|i| self.nict.get(i)) {
                    out.push(tx.dst, &tx.response);
                    self.stats.retransmissions_absorbed += 1;
                    return;
                }
                self.non_invite(now_ns, msg, method, to_tag, key, dst, out);
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
        let is_invite = msg.method() == Some(Method::Invite);
        let headers: &[&[u8]] = if matches!(code, 405 | 501) {
            &[ALLOW]
        } else {
            &[]
        };
        let spec = ResponseSpec {
            code,
            reason: reason.as_bytes(),
            to_tag: tag.as_ref().map(Tag::as_bytes),
            headers,
            body: None,
        };
        let Some(bytes) = Self::respond(&mut self.stats, msg, &spec, dst, out) else {
            return;
        };
        if is_invite {
            // A final non-2xx to an INVITE: its ACK comes back on the same transaction.
            self.start_completed(now, msg, tag.unwrap_or(Tag::EMPTY), bytes, dst);
        } else {
            let key = self.tx_key(msg, b'N');
            self.cache_non_invite(now, key, dst, bytes);
        }
    }

    /// Refuses a new INVITE because [`UasConfig::max_pending_invites`] transactions are
    /// pending, or (`table_full`) a fixed-size table has no room: 503 with `Retry-After`,
    /// like the media-port 503 (the units the dispatcher assigned are released as rejected,
    /// so its accounting stays right), but with no 100, no dialog and no transaction:
    /// nothing retransmits, nothing is held. A retransmission of this INVITE is a new INVITE
    /// again (answered afresh); its ACK matches nothing (ignored).
    fn overload(
        &mut self,
        msg: &Message<'_>,
        units: u32,
        table_full: bool,
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        debug!(
            pending = self.pending_invites,
            table_full, "INVITE refused for overload: 503"
        );
        let tag = self.new_tag();
        Self::respond(&mut self.stats, msg, &retry_later(tag.as_bytes()), dst, out);
        if table_full {
            self.stats.table_full_503 += 1;
        }
        if msg.to().is_some_and(|t| t.tag.is_none()) {
            self.load.rejected(units);
            self.stats.rejected += 1;
            self.stats.overload_503 += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_invite(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        key: crate::table::Key,
        units: u32,
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        if !self.invite_room() {
            self.overload(msg, units, true, dst, out);
            return;
        }
        let delay = u64::try_from(self.cfg.answer_delay.as_nanos()).unwrap_or(u64::MAX);
        if delay > 0 || self.cfg.send_180 {
            // 100 Trying stops the client's INVITE retransmissions, which §17.2.1 requires
            // only when the final response is not sent within 200 ms. Answered at once with
            // no ringing phase (the common case), the final response does that itself and a
            // 100 would be one more datagram per call for nothing, so none is sent. With an
            // answer delay, or a configured 180 (modelling a ringing phase, where peers and
            // test scenarios expect the usual 100 → 180 → 200), it is kept.
            Self::respond(&mut self.stats, msg, &ResponseSpec::new(100), dst, out);
        }
        let tag = self.new_tag();
        let Some(port) = self.ports.alloc() else {
            debug!("media ports exhausted: 503");
            self.load.rejected(units);
            self.stats.rejected += 1;
            match Self::respond(&mut self.stats, msg, &retry_later(tag.as_bytes()), dst, out) {
                Some(last) => self.start_completed(now, msg, tag, last, dst),
                None => self.start_completed(now, msg, tag, &[], dst),
            }
            return;
        };
        let slots = match (self.dialogs.alloc(), self.live.alloc()) {
            (Some(di), Some(ti)) => Some((di, ti)),
            (d, t) => {
                // Unreachable after the room checks above (a dialog per port); kept total.
                if let Some(d) = d {
                    self.dialogs.free(d);
                }
                if let Some(t) = t {
                    self.live.free(t);
                }
                None
            }
        };
        let Some((di, ti)) = slots else {
            self.ports.free(port);
            self.overload(msg, units, true, dst, out);
            return;
        };
        let dkey = self.hasher.key_of(tag.as_bytes());
        if self.dialog_index.insert(dkey, di).is_err() || self.invites.insert(key, ti).is_err() {
            self.dialog_index.remove(&dkey);
            self.dialogs.free(di);
            self.live.free(ti);
            self.ports.free(port);
            self.overload(msg, units, true, dst, out);
            return;
        }
        self.load.started(units);
        self.stats.dialogs_started += 1;
        let session_id = self.tag_counter;
        if let Some(d) = self.dialogs.get_mut(di) {
            d.tag = Some(tag);
            d.key = dkey;
            d.call_id.clear();
            d.call_id.extend_from_slice(msg.call_id());
            d.media_port = port;
            d.units = units;
            d.established = false;
            d.pending = Some(key);
            d.session_id = session_id;
            d.sdp_version = 1;
        }
        let t1 = self.t1;
        if let Some(tx) = self.live.get_mut(ti) {
            tx.reset(
                key,
                dst,
                TxState::Proceeding,
                tag,
                msg.cseq().seq,
                false,
                t1,
            );
            tx.pending = true;
        }
        self.add_pending();
        if self.cfg.send_180 {
            let headers: &[&[u8]] = &[&self.contact_hdr];
            let spec = ResponseSpec {
                code: 180,
                reason: b"",
                to_tag: Some(tag.as_bytes()),
                headers,
                body: None,
            };
            if let Some(b) = Self::respond(&mut self.stats, msg, &spec, dst, out) {
                if let Some(tx) = self.live.get_mut(ti) {
                    tx.last.extend_from_slice(b);
                }
            }
        }
        if delay == 0 {
            self.send_2xx(now, msg, ti, out);
        } else if let Some(tx) = self.live.get_mut(ti) {
            tx.request.extend_from_slice(msg.as_bytes());
            tx.answer_at = Some(now.saturating_add(delay));
        }
        self.schedule(ti);
    }

    /// Sends the 2xx for live transaction `ti` (whose request is `msg`) and starts Timer
    /// G/H. The caller reschedules.
    pub(super) fn send_2xx(&mut self, now: u64, msg: &Message<'_>, ti: u32, out: &mut Outbox) {
        let Some(tx) = self.live.get_mut(ti) else {
            return;
        };
        let tag = tx.tag;
        let Some(di) = self.dialog_slot(tag.as_bytes()) else {
            return;
        };
        let Some(d) = self.dialogs.get_mut(di) else {
            return;
        };
        let offer = msg.has_sdp_body().then(|| msg.body());
        let params = SdpParams::sip(&self.sdp_addr, d.media_port, d.session_id, d.sdp_version);
        d.established = true;
        write_sdp(&mut self.sdp_buf, offer, &params);
        let headers: &[&[u8]] = &[&self.contact_hdr, ALLOW];
        let spec = ResponseSpec {
            code: 200,
            reason: b"",
            to_tag: Some(tag.as_bytes()),
            headers,
            body: Some(Body {
                content_type: SDP,
                content: &self.sdp_buf,
            }),
        };
        let Some(tx) = self.live.get_mut(ti) else {
            return;
        };
        tx.last.clear();
        if let Some(b) = Self::respond(&mut self.stats, msg, &spec, tx.dst, out) {
            tx.last.extend_from_slice(b);
        }
        tx.request.clear();
        tx.state = TxState::Accepted;
        tx.answer_at = None;
        tx.g_interval = self.t1;
        tx.g_at = Some(now.saturating_add(self.t1));
        tx.h_at = Some(now.saturating_add(64 * self.t1));
    }

    pub(super) fn on_reinvite(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        tag: &[u8],
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        let di = self
            .dialog_in(tag, msg.call_id())
            .filter(|&i| self.dialogs.get(i).is_some_and(|d| d.established));
        let Some(di) = di else {
            self.stats.not_found_481 += 1;
            self.reject_plain(now, msg, 481, "", dst, out);
            return;
        };
        let pending = self.dialogs.get(di).and_then(|d| d.pending);
        if let Some(TxRef::Live(pid)) = pending.and_then(|k| self.invite_tx(&k)) {
            let proceeding = self
                .live
                .get(pid)
                .is_some_and(|t| t.state == TxState::Proceeding);
            if proceeding {
                // §14.2: an INVITE while one is still unanswered on the dialog.
                self.reject_plain(now, msg, 500, "", dst, out);
                return;
            }
            // The earlier 2xx is superseded: stop retransmitting it.
            self.confirm(pid, now.saturating_add(64 * self.t1));
        }
        if !self.invite_room() {
            self.overload(msg, 0, true, dst, out);
            return;
        }
        let key = self.tx_key(msg, b'I');
        let Some(ti) = self.live.alloc() else {
            self.overload(msg, 0, true, dst, out);
            return;
        };
        if self.invites.insert(key, ti).is_err() {
            self.live.free(ti);
            self.overload(msg, 0, true, dst, out);
            return;
        }
        let mut local = Tag::EMPTY;
        if let Some(d) = self.dialogs.get_mut(di) {
            d.sdp_version += 1;
            d.pending = Some(key);
            local = d.tag.unwrap_or(Tag::EMPTY);
        }
        let t1 = self.t1;
        if let Some(tx) = self.live.get_mut(ti) {
            tx.reset(
                key,
                dst,
                TxState::Proceeding,
                local,
                msg.cseq().seq,
                true,
                t1,
            );
        }
        self.send_2xx(now, msg, ti, out);
        self.schedule(ti);
    }

    pub(super) fn on_ack(&mut self, now: u64, msg: &Message<'_>) {
        // ACK for a non-2xx final response: same transaction as the INVITE (§17.2.1).
        match self.invite_tx(&self.tx_key(msg, b'I')) {
            Some(TxRef::Live(i))
                if self
                    .live
                    .get(i)
                    .is_some_and(|t| t.state == TxState::Completed) =>
            {
                self.confirm(i, now.saturating_add(T4_NS));
                return;
            }
            Some(TxRef::Linger(_)) => {
                self.stats.retransmissions_absorbed += 1;
                return;
            }
            // Accepted or Proceeding: an RFC 2543 client reusing the INVITE branch for the
            // 2xx ACK; fall through to dialog matching.
            Some(TxRef::Live(_)) | None => {}
        }
        // ACK for a 2xx: a new transaction within the dialog (§13.2.2.4, §17.1.1.3).
        let Some(tag) = msg.to().and_then(|t| t.tag) else {
            self.stats.ignored += 1;
            return;
        };
        let Some(di) = self.dialog_in(tag, msg.call_id()) else {
            self.stats.ignored += 1;
            return;
        };
        let seq = msg.cseq().seq;
        let Some(pkey) = self.dialogs.get(di).and_then(|d| d.pending) else {
            self.stats.retransmissions_absorbed += 1;
            return;
        };
        let pid = match self.invite_tx(&pkey) {
            Some(TxRef::Live(pid)) => pid,
            Some(TxRef::Linger(_)) => {
                self.stats.ignored += 1;
                return;
            }
            None => {
                if let Some(d) = self.dialogs.get_mut(di) {
                    d.pending = None;
                }
                self.stats.ignored += 1;
                return;
            }
        };
        let Some(tx) = self.live.get(pid) else {
            return;
        };
        if tx.state != TxState::Accepted || tx.cseq != seq {
            self.stats.ignored += 1;
            return;
        }
        let linger = tx.h_at.unwrap_or(now).max(now.saturating_add(self.t1));
        let first = !tx.reinvite;
        if let Some(d) = self.dialogs.get_mut(di) {
            d.pending = None;
        }
        self.confirm(pid, linger);
        if first {
            self.stats.dialogs_confirmed += 1;
        }
    }

    pub(super) fn on_cancel(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        let ckey = self.tx_key(msg, b'C');
        if let Some(tx) = self.nict_index.get(&ckey).and_then(|i| self.nict.get(i)) {
            out.push(tx.dst, &tx.response);
            self.stats.retransmissions_absorbed += 1;
            return;
        }
        let (tag, live) = match self.invite_tx(&self.tx_key(msg, b'I')) {
            None => {
                self.stats.not_found_481 += 1;
                let tag = self.new_tag();
                let spec = ResponseSpec::tagged(481, tag.as_bytes());
                if let Some(b) = Self::respond(&mut self.stats, msg, &spec, dst, out) {
                    self.cache_non_invite(now, ckey, dst, b);
                }
                return;
            }
            Some(TxRef::Live(i)) => match self.live.get(i) {
                Some(tx) => (tx.tag, Some(i)),
                None => return,
            },
            Some(TxRef::Linger(l)) => match self.lingers.get(l) {
                Some(l) => (l.tag, None),
                None => return,
            },
        };
        // §9.2: the CANCEL's 200 carries the same To-tag as the INVITE's responses.
        let spec = ResponseSpec::tagged(200, tag.as_bytes());
        if let Some(b) = Self::respond(&mut self.stats, msg, &spec, dst, out) {
            self.cache_non_invite(now, ckey, dst, b);
        }
        let Some(i) = live else {
            return;
        };
        if self
            .live
            .get(i)
            .is_some_and(|t| t.state == TxState::Proceeding)
        {
            self.stats.cancels += 1;
            self.terminate_487(i, out);
            let t1 = self.t1;
            let mut end = false;
            if let Some(tx) = self.live.get_mut(i) {
                tx.state = TxState::Completed;
                tx.answer_at = None;
                tx.g_interval = t1;
                tx.g_at = Some(now.saturating_add(t1));
                tx.h_at = Some(now.saturating_add(64 * t1));
                end = tx.has_dialog && !tx.reinvite;
                tx.has_dialog = false;
            }
            if end {
                self.end_dialog(tag.as_bytes(), EndReason::Cancelled);
            }
        }
        self.schedule(i);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn non_invite(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        method: Method<'_>,
        to_tag: Option<&[u8]>,
        key: crate::table::Key,
        dst: SocketAddr,
        out: &mut Outbox,
    ) {
        let in_dialog = to_tag.and_then(|t| self.dialog_in(t, msg.call_id()).map(|i| (t, i)));
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
            (Method::Bye, _, Some((tag, di))) => {
                self.end_dialog_by_bye(now, tag, di, out);
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
            if let Some(d) = in_dialog.and_then(|(_, i)| self.dialogs.get_mut(i)) {
                d.sdp_version += 1;
                let params =
                    SdpParams::sip(&self.sdp_addr, d.media_port, d.session_id, d.sdp_version);
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
            to_tag: new_tag.as_ref().map(Tag::as_bytes),
            headers,
            body,
        };
        if let Some(b) = Self::respond(&mut self.stats, msg, &spec, dst, out) {
            self.cache_non_invite(now, key, dst, b);
        }
    }
}

/// The processor's `503` with `Retry-After` (media ports exhausted, or the pending-INVITE cap).
fn retry_later(tag: &[u8]) -> ResponseSpec<'_> {
    ResponseSpec {
        headers: &[RETRY_AFTER],
        ..ResponseSpec::tagged(503, tag)
    }
}
