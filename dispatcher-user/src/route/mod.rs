//! The dispatcher's sans-IO routing core, in the style of quinn-proto: a datagram (bytes,
//! addresses), a clock value and a [`Snapshot`] of the processors' load and liveness in; an
//! [`Output`] of handoffs and a reply out, which the shell carries out. No queue, wake-up,
//! socket or clock is touched here: the shells own those (`udp_shell`, `xdp_shell`, and
//! `links`, which pushes handoffs into fabric queues and LAN batches). Both shells feed the
//! same [`Router`], so behaviour never depends on the backend, and everything here runs in
//! unit tests with a fake clock and hand-built snapshots.
//!
//! Layout: [`config`] (what it is told), [`member`] (processors and the snapshot),
//! [`handoff`] (what comes in and goes out), `sip` and [`mgcp`] (the protocol rules),
//! [`select`] (policies), [`affinity`] (the INVITE transaction table). Message rules (scans,
//! rewrites, the 400 salvage, hashing) are `wire`'s.
//!
//! SIP at the well-known port (DESIGN.md, "Protocol notes"):
//! - a new INVITE (no To-tag, no affinity entry) goes to the processor the policy selects;
//! - INVITE retransmissions, CANCEL and the ACK for a non-2xx final response follow the
//!   affinity entry of the INVITE (Call-ID + From-tag + top-Via branch);
//! - in-dialog requests (a To-tag that a processor issued) go to the processor encoded in the
//!   tag, with no table state, once the tag's MAC checks out under the current or previous
//!   key ([`wire::tag`]); a forged one gets 481 (MGCP: 515) and `bad_tag`;
//! - OPTIONS out of dialog is answered here (or forwarded, by configuration); other
//!   out-of-dialog methods get 405/501 (or are forwarded);
//! - responses are dropped and counted; unparseable requests get 400 citing the defect when a
//!   Via is usable, else a counted drop;
//! - when no processor can take a dialog, the dispatcher itself answers 503 with Retry-After.
//!
//! Every decision increments exactly one counter of [`RouterStats`].
pub mod affinity;
pub mod config;
pub mod handoff;
pub mod member;
pub mod mgcp;
pub mod select;
mod sip;

use dispatcher_common::PortProto;
use fabric::SLOT_BYTES;
use wire::{
    out::Out,
    sip::{Locate, Located, Message, ResponseSpec},
};

use self::{
    affinity::Affinity,
    handoff::Handoffs,
    select::{MemberState, Policy, Selector, MAX_PROCESSORS},
};
pub use self::{
    config::{MarkPort, OptionsMode, OtherMode, RouterConfig, DEFAULT_AFFINITY_CAPACITY},
    handoff::{Decision, DropReason, Handoff, Inbound, Output, Payload, REPLY_BYTES},
    member::{local_alive, Member, MemberSpec, MemberView, Snapshot},
};

/// Counters of every routing decision.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouterStats {
    /// SIP datagrams handled.
    pub sip: u64,
    /// MGCP datagrams handled.
    pub mgcp: u64,
    /// Payload bytes handled (both protocols).
    pub bytes: u64,
    /// New dialogs (INVITE, or forwarded OPTIONS/other) sent to a processor by policy.
    pub new_dialogs: u64,
    /// INVITE retransmissions that followed their affinity entry.
    pub retransmissions: u64,
    /// INVITE retransmissions whose processor had died, placed again by policy.
    pub rerouted: u64,
    /// CANCELs that followed their INVITE.
    pub cancels: u64,
    /// ACKs for non-2xx responses that followed their INVITE.
    pub acks_affinity: u64,
    /// In-dialog requests routed by the processor id in their To-tag.
    pub in_dialog: u64,
    /// OPTIONS answered by the dispatcher.
    pub options_answered: u64,
    /// Out-of-dialog requests answered 405/501.
    pub rejected_method: u64,
    /// Requests answered 481 (unknown transaction or a To-tag no processor issued).
    pub no_transaction: u64,
    /// In-dialog requests whose To-tag (SIP, answered 481) or connection id (MGCP, answered
    /// 515) has the processor-tag format but a MAC that matches no configured key: forged, or
    /// corrupted, or minted under a key this dispatcher does not hold (a rotation done out of
    /// order). Such a tag is never routed; ACKs carrying one are dropped. A tag that is not
    /// in the format at all counts in `no_transaction`, as before.
    #[serde(default)]
    pub bad_tag: u64,
    /// Unparseable requests answered 400.
    pub bad_request: u64,
    /// Requests too large for a fabric slot, answered 513.
    pub too_large: u64,
    /// Dialogs refused with 503 (SIP) / 403 or 409 (MGCP) because no processor could take them.
    pub overload: u64,
    /// Pushes that found a queue full and moved on to another candidate.
    pub queue_full: u64,
    /// Drops, by reason.
    pub dropped_empty: u64,
    /// Responses dropped.
    pub dropped_response: u64,
    /// Unparseable and unanswerable datagrams dropped.
    pub dropped_unparseable: u64,
    /// ACKs absorbed (for our own replies, or unmatched).
    pub dropped_ack: u64,
    /// Replies that did not fit the reply buffer.
    pub dropped_reply_too_large: u64,
    /// Messages that follow a transaction of a processor since removed from the pool (CANCEL,
    /// a non-2xx ACK, an MGCP retransmission): dropped; the sender's timers end it.
    #[serde(default)]
    pub dropped_removed: u64,
    /// MGCP commands routed by connection id or endpoint (stateless).
    pub mgcp_stateless: u64,
    /// MGCP retransmissions routed by transaction affinity.
    pub mgcp_retransmissions: u64,
    /// MGCP commands answered by the dispatcher (wildcard AUEP, RSIP, errors).
    pub mgcp_answered: u64,
    /// Not a decision: times a processor the policy picked had lost its last free units to
    /// another dispatcher thread since the snapshot, so the next candidate was tried (see
    /// [`Member::try_assign`]).
    #[serde(default)]
    pub capacity_raced: u64,
}

impl RouterStats {
    /// Adds `o`'s counters to these (several dispatcher threads' routers into one view).
    pub fn add(&mut self, o: &Self) {
        // Destructured so that a new counter is a compile error here until it is summed.
        let Self {
            sip,
            mgcp,
            bytes,
            new_dialogs,
            retransmissions,
            rerouted,
            cancels,
            acks_affinity,
            in_dialog,
            options_answered,
            rejected_method,
            no_transaction,
            bad_tag,
            bad_request,
            too_large,
            overload,
            queue_full,
            dropped_empty,
            dropped_response,
            dropped_unparseable,
            dropped_ack,
            dropped_reply_too_large,
            dropped_removed,
            mgcp_stateless,
            mgcp_retransmissions,
            mgcp_answered,
            capacity_raced,
        } = *o;
        self.sip += sip;
        self.mgcp += mgcp;
        self.bytes += bytes;
        self.new_dialogs += new_dialogs;
        self.retransmissions += retransmissions;
        self.rerouted += rerouted;
        self.cancels += cancels;
        self.acks_affinity += acks_affinity;
        self.in_dialog += in_dialog;
        self.options_answered += options_answered;
        self.rejected_method += rejected_method;
        self.no_transaction += no_transaction;
        self.bad_tag += bad_tag;
        self.bad_request += bad_request;
        self.too_large += too_large;
        self.overload += overload;
        self.queue_full += queue_full;
        self.dropped_empty += dropped_empty;
        self.dropped_response += dropped_response;
        self.dropped_unparseable += dropped_unparseable;
        self.dropped_ack += dropped_ack;
        self.dropped_reply_too_large += dropped_reply_too_large;
        self.dropped_removed += dropped_removed;
        self.mgcp_stateless += mgcp_stateless;
        self.mgcp_retransmissions += mgcp_retransmissions;
        self.mgcp_answered += mgcp_answered;
        self.capacity_raced += capacity_raced;
    }
}

/// The router: one per dispatcher thread; no locks, no I/O, no allocation per datagram.
pub struct Router {
    cfg: RouterConfig,
    members: Vec<Member>,
    affinity: Affinity,
    selector: Selector,
    stats: RouterStats,
    nonce: u64,
    /// The locate scan (limits and session-size header prepared once).
    locate: Locate,
    /// Whether a new dialog's session size can change a decision or the load accounting
    /// (see [`size_matters`]); when not, new INVITEs count 1 unit and no SDP is read.
    size_matters: bool,
    /// Epoch of the snapshot the current datagram is decided with.
    epoch: u64,
    /// Address of the current datagram's first byte, to express piggybacked segments as
    /// offsets into it.
    base: usize,
}

/// Whether session sizes matter: a policy or a member that reads units. `size-aware` packs by
/// size; a capacity (local, or any remote member, which may report one) makes every policy
/// check the fit, and a remote processor releases the size it computes itself, so the
/// dispatcher must compute the same. Otherwise (`round-robin`, `hash` and `least-loaded` over
/// in-chassis processors without capacity) a new dialog counts 1 unit, the fabric slot says so
/// ([`fabric::Slot::units`]) and the processor releases that 1: nothing drifts, and the locate
/// scan stops after the routing headers instead of reading the whole header section and the
/// SDP. `least-loaded` then ranks by dialogs in progress rather than by units.
fn size_matters(policy: Policy, members: &[MemberSpec]) -> bool {
    policy == Policy::SizeAware || members.iter().any(|m| m.capacity > 0 || m.remote)
}

impl Router {
    /// A router over `members` (at most [`MAX_PROCESSORS`]); processor ids are their indices.
    pub fn new(cfg: RouterConfig, members: Vec<MemberSpec>) -> Self {
        assert!(
            members.len() <= MAX_PROCESSORS,
            "at most {MAX_PROCESSORS} processors per dispatcher"
        );
        Self {
            locate: Locate::new(&cfg.limits, &cfg.session_size.sip_header),
            size_matters: size_matters(cfg.policy, &members),
            affinity: Affinity::new(cfg.affinity_capacity, cfg.affinity_ttl_s),
            selector: Selector::new(cfg.policy, cfg.seed),
            nonce: cfg.seed,
            cfg,
            members: members.into_iter().map(Member::new).collect(),
            stats: RouterStats::default(),
            epoch: 0,
            base: 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// Puts processor `id` in the pool with `spec`, or changes the spec of the one there.
    /// Ids are stable: slots below `id` that no processor has stay empty. What the router
    /// assigned a processor (units, forwarded counts) survives a spec change; a processor that
    /// replaces a removed one starts afresh.
    pub fn set_member(&mut self, id: u16, spec: MemberSpec) {
        let k = usize::from(id);
        assert!(k < MAX_PROCESSORS, "processor id {id} ≥ {MAX_PROCESSORS}");
        if self.members.len() <= k {
            self.members.resize_with(k + 1, Member::absent);
        }
        let m = &mut self.members[k];
        if m.present {
            m.spec = spec;
        } else {
            *m = Member::new(spec);
        }
        self.size_matters = size_matters(self.cfg.policy, &self.specs());
    }

    /// Takes processor `id` out of the pool: no new dialogs, and messages that still name it
    /// (in-dialog requests, CANCEL, retransmissions) are answered 481 or dropped, counted.
    /// Affinity entries pointing at it are left to expire: an INVITE retransmission finds the
    /// processor gone and is placed afresh (`rerouted`).
    pub fn remove_member(&mut self, id: u16) {
        if let Some(m) = self.members.get_mut(usize::from(id)) {
            m.present = false;
        }
        while self.members.last().is_some_and(|m| !m.present) {
            self.members.pop();
        }
        self.size_matters = size_matters(self.cfg.policy, &self.specs());
    }

    /// Makes processor `id` share its assigned units with the other dispatcher threads'
    /// routers through `board` (each thread has its own router over the same processors).
    /// Called after [`Router::set_member`] put it in; a replaced processor needs it again.
    pub fn share_units(&mut self, id: u16, board: std::sync::Arc<fabric::LoadReport>) {
        if let Some(m) = self.members.get_mut(usize::from(id)) {
            m.share(board);
        }
    }

    /// Sets the operator state of processor `id`; false when there is no such processor.
    pub fn set_admin(&mut self, id: u16, admin: crate::pool::Admin) -> bool {
        match self.members.get_mut(usize::from(id)) {
            Some(m) if m.present => {
                m.admin = admin;
                true
            }
            _ => false,
        }
    }

    /// Applies a new configuration (a reload): policy, answers, rewrites, session sizes, tag
    /// keys. The affinity table, every member and every counter are kept; the affinity
    /// table's size and entry lifetime are fixed at start (they are not changed here).
    pub fn reconfigure(&mut self, mut cfg: RouterConfig) {
        cfg.affinity_capacity = self.cfg.affinity_capacity;
        cfg.affinity_ttl_s = self.cfg.affinity_ttl_s;
        if cfg.policy != self.cfg.policy {
            self.selector = Selector::new(cfg.policy, cfg.seed ^ self.nonce);
        }
        self.locate = Locate::new(&cfg.limits, &cfg.session_size.sip_header);
        self.cfg = cfg;
        self.size_matters = size_matters(self.cfg.policy, &self.specs());
    }

    /// The specs of the processors in the pool.
    fn specs(&self) -> Vec<MemberSpec> {
        self.members
            .iter()
            .filter(|m| m.present)
            .map(|m| m.spec)
            .collect()
    }

    /// The processor a To-tag or connection id names, if it is one of ours, authentic, and
    /// still in the pool.
    fn tagged(&self, tag: &[u8], n: u16) -> Result<u16, wire::tag::TagError> {
        let k = wire::tag::decode(&self.cfg.tag_keys, tag, n)?;
        if self.present(k) {
            Ok(k)
        } else {
            Err(wire::tag::TagError::IdOutOfRange(k))
        }
    }

    /// Processor `k`'s state as the selector would see it with view `v` of snapshot `epoch`
    /// (for the operator's views).
    pub fn member_view_state(&mut self, k: usize, epoch: u64, v: &MemberView) -> MemberState {
        self.members[k].state(epoch, v)
    }

    /// Whether processor `k` is in the pool.
    fn present(&self, k: u16) -> bool {
        self.members.get(usize::from(k)).is_some_and(|m| m.present)
    }

    /// The members (for per-processor reporting).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The configuration in use.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Affinity table counters and memory.
    pub fn affinity(&self) -> (affinity::AffinityStats, usize) {
        (self.affinity.stats(), self.affinity.memory_bytes())
    }

    /// Decides what to do with one datagram at `now_ns`, given the processors' state `snap`
    /// (refreshed by the shell once per receive batch). What to do is left in `out`: the
    /// handoffs in order, and a reply for the source.
    pub fn handle(
        &mut self,
        now_ns: u64,
        msg: &Inbound<'_>,
        snap: &Snapshot,
        out: &mut Output,
    ) -> Decision {
        out.clear();
        self.epoch = snap.epoch;
        self.base = msg.payload.as_ptr() as usize;
        self.stats.bytes += msg.payload.len() as u64;
        if msg.payload.iter().all(|b| b.is_ascii_whitespace()) {
            self.stats.dropped_empty += 1;
            return Decision::Drop(DropReason::Empty);
        }
        let d = match msg.proto {
            PortProto::Sip => {
                self.stats.sip += 1;
                self.sip(now_ns, msg, snap, out)
            }
            PortProto::Mgcp => {
                self.stats.mgcp += 1;
                self.mgcp(now_ns, msg, snap, out)
            }
        };
        if let Decision::Reply(n) = d {
            out.reply_len = n;
        }
        d
    }

    fn next_nonce(&mut self) -> u64 {
        self.nonce = self.nonce.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.nonce
    }

    /// A To-tag for the dispatcher's own answers: `sy-` + 16 hex digits. It is not a processor
    /// tag (those are 32 hex digits), so the ACK to our own 4xx/5xx is recognised and absorbed.
    fn own_tag(&mut self, out: &mut [u8; 19]) {
        let n = self.next_nonce();
        out[..3].copy_from_slice(b"sy-");
        for i in 0..16 {
            out[3 + i] = b"0123456789abcdef"[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
    }

    /// Builds the dispatcher's own response to the request in `payload`. The locate scan
    /// validated only what routing needs, so the full scan runs here (answers are the rare
    /// path); if it finds a defect, the answer becomes a 400 citing it.
    fn reply_to(
        &mut self,
        payload: &[u8],
        code: u16,
        headers: &[&[u8]],
        reply: &mut [u8],
    ) -> Decision {
        let mut tag = [0u8; 19];
        self.own_tag(&mut tag);
        let m = match Message::parse(payload, &self.cfg.limits) {
            Ok(m) => m,
            Err(e) => return self.bad_request(payload, &e, reply),
        };
        let mut spec = ResponseSpec::new(code);
        spec.to_tag = Some(&tag);
        spec.headers = headers;
        match m.write_response(&spec, reply) {
            Ok(n) => Decision::Reply(n),
            Err(_) => {
                self.stats.dropped_reply_too_large += 1;
                Decision::Drop(DropReason::ReplyTooLarge)
            }
        }
    }

    /// A 400 citing `err` when the request carries what a response needs, else a counted drop.
    fn bad_request(
        &mut self,
        payload: &[u8],
        err: &wire::sip::SipError,
        reply: &mut [u8],
    ) -> Decision {
        let mut tag = [0u8; 19];
        self.own_tag(&mut tag);
        let mut text = [0u8; 120];
        let len = Out::new(&mut text).put_display_truncating(err);
        let reason = std::str::from_utf8(&text[..len]).unwrap_or("malformed request");
        match wire::sip::salvage::bad_request(payload, reason, &tag, reply) {
            Some(n) => {
                self.stats.bad_request += 1;
                Decision::Reply(n)
            }
            None => {
                self.stats.dropped_unparseable += 1;
                Decision::Drop(DropReason::Unparseable)
            }
        }
    }

    /// Processor `k`'s state for the selector: the snapshot plus what we handed it since.
    fn member_state(&self, k: usize, snap: &Snapshot) -> MemberState {
        let view = snap.view(k);
        self.members[k].state(self.epoch, view)
    }

    /// Whether processor `k` is currently in selection.
    fn alive(&self, k: u16, snap: &Snapshot) -> bool {
        usize::from(k) < self.members.len() && self.member_state(usize::from(k), snap).alive
    }

    /// Selects a processor for a new dialog of `size` units and records the handoff, trying
    /// further candidates when one cannot take it. Returns the processor, or `None`
    /// (overload); `Err` when the message is too large for a fabric slot.
    fn place(
        &mut self,
        new: NewDialog,
        msg: &Inbound<'_>,
        scan: Option<&Located<'_>>,
        snap: &Snapshot,
        hand: &mut Handoffs,
    ) -> Result<Option<u16>, ()> {
        let NewDialog {
            size,
            key,
            mark,
            invite,
        } = new;
        let mut excluded = 0u64;
        loop {
            let n = self.members.len();
            // Evaluated lazily, for the members the policy looks at only (least-loaded: two).
            let (members, epoch) = (&self.members, self.epoch);
            let state = |k: usize| {
                let view = snap.view(k);
                let m = &members[k];
                let mut s = m.state(epoch, view);
                if !m.selectable() {
                    // Removed, draining or disabled: no new dialogs.
                    s.alive = false;
                }
                if !invite {
                    // The pending-INVITE cap gates new INVITEs only.
                    s.max_pending = 0;
                }
                s
            };
            let Some(k) = self.selector.select(n, size, key, excluded, state) else {
                return Ok(None);
            };
            // Reserved before the handoff, given back if it cannot be made: another
            // dispatcher thread may have taken the last units since the snapshot.
            // (Refreshed first: a new load report must be noted before this dialog's units
            // count as assigned since it.)
            let view = snap.view(k);
            self.members[k].refresh(self.epoch, view);
            if !self.members[k].try_assign(size, view.released_units) {
                self.stats.capacity_raced += 1;
                excluded |= 1 << k;
                continue;
            }
            let pushed = self.push(k, msg, scan, mark, snap, hand);
            if pushed != Push::Ok {
                self.members[k].unassign(size);
            }
            match pushed {
                Push::Ok => {
                    hand.set_last_units(size);
                    self.members[k].new_dialogs += 1;
                    if invite {
                        self.members[k].handed_invite();
                    }
                    return Ok(Some(k as u16));
                }
                Push::Full => {
                    self.stats.queue_full += 1;
                    excluded |= 1 << k;
                }
                Push::TooLarge => return Err(()),
                Push::Gone => excluded |= 1 << k,
            }
        }
    }

    /// Records a handoff of the message to processor `k`: as received, or rewritten (claim 2's
    /// port with `mark`; the true source for a processor on another host).
    fn push(
        &mut self,
        k: usize,
        msg: &Inbound<'_>,
        scan: Option<&Located<'_>>,
        mark: bool,
        snap: &Snapshot,
        hand: &mut Handoffs,
    ) -> Push {
        if !self.members[k].present {
            return Push::Gone;
        }
        let view = snap.view(k);
        if self.members[k].queue_full(self.epoch, view) || !hand.has_room() {
            return Push::Full;
        }
        let spec = self.members[k].spec;
        if mark || spec.remote {
            match self.rewrite(msg, scan, spec.port, mark, spec.remote, hand.spare()) {
                Some(n) if n <= SLOT_BYTES => hand.push_rewritten(k as u16, n),
                _ => return Push::TooLarge,
            }
        } else {
            if msg.payload.len() > SLOT_BYTES {
                return Push::TooLarge;
            }
            let start = (msg.payload.as_ptr() as usize).wrapping_sub(self.base);
            hand.push_inbound(k as u16, start, msg.payload.len());
        }
        self.members[k].refresh(self.epoch, view);
        self.members[k].handed();
        Push::Ok
    }

    /// Rewrites into `out`: claim 2's processor port (`mark`) and, for a processor on another
    /// host (`remote`), the true source: Via `received`/`rport` for SIP (RFC 3261 §18.2.1, RFC
    /// 3581), an `X-SY-Src` parameter for MGCP (whose answers go to the command's source, which
    /// over the LAN would otherwise be the dispatcher). SIP works from the locate scan: one copy,
    /// no second scan; the port header goes right after the start line.
    fn rewrite(
        &self,
        msg: &Inbound<'_>,
        scan: Option<&Located<'_>>,
        port: u16,
        mark: bool,
        remote: bool,
        out: &mut [u8],
    ) -> Option<usize> {
        let (payload, src) = (msg.payload, msg.src);
        let mut ip = [0u8; 48];
        let iplen = Out::new(&mut ip).put_display_truncating(&src.ip());
        let mark_port = self.cfg.mark_port.as_ref().filter(|_| mark);
        match msg.proto {
            PortProto::Sip => {
                let mut line = [0u8; 96];
                let header = match mark_port {
                    Some(mp) => {
                        let len =
                            header_line(&mut line, mp.sip_header.as_bytes(), u64::from(port))?;
                        Some(&line[..len])
                    }
                    None => None,
                };
                scan?
                    .write_relayed(&ip[..iplen], Some(src.port()), header, out)
                    .ok()
            }
            PortProto::Mgcp => {
                let mut digits = [0u8; 8];
                let dl = Out::new(&mut digits).put_display_truncating(&port);
                let mut v = [0u8; 64];
                let vl = Out::new(&mut v).put_display_truncating(&src);
                let mut params: [(&[u8], &[u8]); 2] = [(b"", b""); 2];
                let mut n = 0;
                if let Some(mp) = mark_port {
                    params[n] = (mp.mgcp_param.as_bytes(), &digits[..dl]);
                    n += 1;
                }
                if remote {
                    params[n] = (wire::mgcp::RELAY_SOURCE_PARAM.as_bytes(), &v[..vl]);
                    n += 1;
                }
                wire::mgcp::insert_params(payload, &params[..n], out).ok()
            }
        }
    }

    /// Forwards a message that belongs to processor `k` already (no capacity change). A full
    /// queue here is a drop, counted: the sender retransmits, and picking another processor
    /// would break the dialog.
    fn forward_existing(
        &mut self,
        k: u16,
        msg: &Inbound<'_>,
        scan: Option<&Located<'_>>,
        snap: &Snapshot,
        hand: &mut Handoffs,
        what: Counted,
    ) -> Decision {
        match self.push(usize::from(k), msg, scan, false, snap, hand) {
            Push::Ok => {
                match what {
                    Counted::Retransmission => self.stats.retransmissions += 1,
                    Counted::Cancel => self.stats.cancels += 1,
                    Counted::AckAffinity => self.stats.acks_affinity += 1,
                    Counted::InDialog => self.stats.in_dialog += 1,
                    Counted::MgcpStateless => self.stats.mgcp_stateless += 1,
                    Counted::MgcpRetransmission => self.stats.mgcp_retransmissions += 1,
                }
                Decision::Hand(k)
            }
            Push::Full | Push::TooLarge => {
                self.stats.queue_full += 1;
                Decision::Drop(DropReason::QueueFull)
            }
            Push::Gone => {
                self.stats.dropped_removed += 1;
                Decision::Drop(DropReason::Removed)
            }
        }
    }
}

/// What placing a new dialog needs besides the message: its session size, the `hash`
/// policy's key, and whether claim 2's port goes in.
#[derive(Clone, Copy)]
struct NewDialog {
    size: u32,
    key: u64,
    mark: bool,
    /// A new SIP INVITE: the processors' pending-INVITE cap applies.
    invite: bool,
}

#[derive(Clone, Copy)]
enum Counted {
    Retransmission,
    Cancel,
    AckAffinity,
    InDialog,
    MgcpStateless,
    MgcpRetransmission,
}

#[derive(PartialEq, Eq)]
enum Push {
    Ok,
    Full,
    TooLarge,
    /// The processor was removed from the pool.
    Gone,
}

/// Writes the header line `name: value` into `buf`; returns its length.
fn header_line(buf: &mut [u8], name: &[u8], value: u64) -> Option<usize> {
    let mut o = Out::new(buf);
    o.put(name).ok()?;
    o.put(b": ").ok()?;
    o.put_u64(value).ok()?;
    Some(o.len())
}

#[cfg(test)]
mod tests;
