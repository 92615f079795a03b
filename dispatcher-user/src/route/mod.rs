//! The dispatcher's sans-IO routing core: a datagram (bytes, addresses, a clock value) in, a
//! decision out. Both I/O shells feed the same [`Router`], so behaviour never depends on the
//! backend, and everything here runs in unit tests without privileges.
//!
//! SIP at the well-known port (DESIGN.md, "Protocol notes"):
//! - a new INVITE (no To-tag, no affinity entry) goes to the processor the policy selects;
//! - INVITE retransmissions, CANCEL and the ACK for a non-2xx final response follow the
//!   affinity entry of the INVITE (Call-ID + From-tag + top-Via branch);
//! - in-dialog requests (a To-tag that a processor issued) go to the processor encoded in the
//!   tag, with no table state;
//! - OPTIONS out of dialog is answered here (or forwarded, by configuration); other
//!   out-of-dialog methods get 405/501 (or are forwarded);
//! - responses are dropped and counted; unparseable requests get 400 citing the defect when a
//!   Via is usable, else a counted drop;
//! - when no processor can take a dialog, the dispatcher itself answers 503 with Retry-After.
//!
//! Every decision increments exactly one counter of [`RouterStats`].
pub mod affinity;
pub mod forward;
pub mod mgcp;
pub mod salvage;
pub mod select;
pub mod txkey;

use std::{net::SocketAddr, sync::atomic::Ordering, sync::Arc};

use dispatcher_common::PortProto;
use fabric::{LoadReport, Producer, Proto, SLOT_BYTES};
use wire::{
    sip::{InsertAt, Kind, Locate, Located, Message, Method, ResponseSpec, RoutingView, Scope},
    Limits, SessionSizeConfig,
};

use self::{
    affinity::Affinity,
    select::{MemberState, Policy, Selector, MAX_PROCESSORS},
};

/// One datagram received on a well-known port.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Which protocol the port carries.
    pub proto: PortProto,
    /// Who sent it (the address replies go to).
    pub src: SocketAddr,
    /// The well-known address it was sent to.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: &'a [u8],
}

/// What the shell must do after [`Router::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Queued to processor `k` (visible to it after [`Router::flush`]).
    Forwarded(u16),
    /// Send the first `n` bytes of the reply buffer to the datagram's source.
    Reply(usize),
    /// Nothing to send; the reason has been counted.
    Drop(DropReason),
}

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Whitespace-only keep-alive.
    Empty,
    /// A response at the well-known port (we send no requests from it).
    Response,
    /// Unparseable and not answerable (no usable Via, an ACK, ...).
    Unparseable,
    /// An ACK nobody needs: for a response the dispatcher itself sent, or unmatched.
    AckAbsorbed,
    /// The reply did not fit the reply buffer (never expected; counted to be sure).
    ReplyTooLarge,
    /// The owning processor's queue was full for an in-dialog message; the sender retransmits.
    QueueFull,
}

/// What to do with OPTIONS outside a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptionsMode {
    /// Answer 200 with Allow/Accept here: a keep-alive probe should measure the dispatcher.
    Answer,
    /// Hand to a processor by policy.
    Forward,
}

/// What to do with other out-of-dialog requests (REGISTER, MESSAGE, SUBSCRIBE, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtherMode {
    /// 405 Method Not Allowed for methods we know, 501 Not Implemented for unknown ones.
    Reject,
    /// Hand to a processor by policy.
    Forward,
}

/// Claim 2: rewrite forwarded initial messages to carry the chosen processor's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkPort {
    /// SIP header name carrying the port (e.g. `X-Switchyard-Port`).
    pub sip_header: String,
    /// MGCP extension parameter carrying the port (e.g. `X-SY-Port`).
    pub mgcp_param: String,
}

/// Router configuration; built once at start.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Selection policy for new dialogs.
    pub policy: Policy,
    /// Scanner limits.
    pub limits: Limits,
    /// Where session sizes come from.
    pub session_size: SessionSizeConfig,
    /// Affinity table size (entries; rounded up to a power of two).
    pub affinity_capacity: usize,
    /// Affinity entry lifetime, seconds (≥ 64·T1 + Timer H margin; default 72).
    pub affinity_ttl_s: u32,
    /// OPTIONS handling.
    pub options: OptionsMode,
    /// Other out-of-dialog methods.
    pub other: OtherMode,
    /// Retry-After seconds in 503 answers.
    pub retry_after_s: u32,
    /// Claim 2 rewrite, when enabled. Also adds Via `received`/`rport`.
    pub mark_port: Option<MarkPort>,
    /// Key shared with processors for To-tag / connection-id checksums (0: unkeyed).
    pub tag_key: u64,
    /// Processor considered dead when its heartbeat is older than this (ns).
    pub heartbeat_timeout_ns: u64,
    /// A processor on another host is out of selection when its last load report (or OPTIONS
    /// answer) is older than this (ns).
    pub report_timeout_ns: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            policy: Policy::LeastLoaded,
            limits: Limits::default(),
            session_size: SessionSizeConfig::default(),
            affinity_capacity: 1 << 20,
            affinity_ttl_s: 72,
            options: OptionsMode::Answer,
            other: OtherMode::Reject,
            retry_after_s: 5,
            mark_port: None,
            tag_key: 0,
            heartbeat_timeout_ns: 1_000_000_000,
            report_timeout_ns: 800_000_000,
        }
    }
}

/// How the dispatcher reaches a processor.
pub enum Link {
    /// A thread in this chassis: its fabric queue (claim 3).
    Local(Producer),
    /// A process on another host, over the LAN (claim 4).
    Remote(SocketAddr),
}

/// A processor as the router sees it: how to reach it, its port and its load report.
pub struct Member {
    /// The processor's own port (what claim 2 writes into the message).
    pub port: u16,
    /// Its capacity in session units (0: unlimited, or for remote ones: as it reports).
    pub capacity: u32,
    /// Queue or LAN address.
    pub link: Link,
    /// What it reports (in-chassis: written by its thread; remote: by the report listener).
    pub load: Arc<LoadReport>,
    /// Units the dispatcher assigned to it, ever (monotonic).
    pub assigned_units: u64,
    /// Messages forwarded to it.
    pub forwarded: u64,
    /// `load.reports` when last looked at, and `assigned_units` then (remote members).
    seen_reports: u64,
    assigned_at_report: u64,
}

impl Member {
    /// An in-chassis member with nothing assigned yet.
    pub fn new(port: u16, capacity: u32, producer: Producer, load: Arc<LoadReport>) -> Self {
        Self::with_link(port, capacity, Link::Local(producer), load)
    }

    /// A member on another host at `addr`.
    pub fn remote(addr: SocketAddr, capacity: u32, load: Arc<LoadReport>) -> Self {
        Self::with_link(addr.port(), capacity, Link::Remote(addr), load)
    }

    fn with_link(port: u16, capacity: u32, link: Link, load: Arc<LoadReport>) -> Self {
        Self {
            port,
            capacity,
            link,
            load,
            assigned_units: 0,
            forwarded: 0,
            seen_reports: 0,
            assigned_at_report: 0,
        }
    }

    /// Whether it is on another host.
    pub fn is_remote(&self) -> bool {
        matches!(self.link, Link::Remote(_))
    }

    fn state(&mut self, now_ns: u64, cfg: &RouterConfig, origin_ns: u64) -> MemberState {
        let hb = self.load.heartbeat_ns.load(Ordering::Relaxed);
        match &self.link {
            Link::Local(producer) => {
                let released = self.load.released_units.load(Ordering::Relaxed);
                MemberState {
                    in_use: self.assigned_units.saturating_sub(released),
                    capacity: self.capacity,
                    depth: producer.depth(),
                    queue_capacity: producer.capacity(),
                    // Threads start with the process: alive until proven otherwise.
                    alive: now_ns.saturating_sub(hb.max(origin_ns)) < cfg.heartbeat_timeout_ns,
                }
            }
            Link::Remote(_) => {
                // Several dispatchers may share a remote processor, so its own gauge is the
                // truth; what we assigned since its last report is added on top.
                let reports = self.load.reports.load(Ordering::Relaxed);
                if reports != self.seen_reports {
                    self.seen_reports = reports;
                    self.assigned_at_report = self.assigned_units;
                }
                let reported = self.load.in_use_units.load(Ordering::Relaxed);
                let capacity = if self.capacity > 0 {
                    self.capacity
                } else {
                    self.load.capacity_units.load(Ordering::Relaxed)
                };
                MemberState {
                    in_use: reported + (self.assigned_units - self.assigned_at_report),
                    capacity,
                    depth: 0,
                    queue_capacity: usize::MAX,
                    // Never heard from, or silent too long: out of selection.
                    alive: hb != 0 && now_ns.saturating_sub(hb) < cfg.report_timeout_ns,
                }
            }
        }
    }
}

/// Counters of every routing decision.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
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
    /// MGCP commands routed by connection id or endpoint (stateless).
    pub mgcp_stateless: u64,
    /// MGCP retransmissions routed by transaction affinity.
    pub mgcp_retransmissions: u64,
    /// MGCP commands answered by the dispatcher (wildcard AUEP, RSIP, errors).
    pub mgcp_answered: u64,
}

/// The router: one per dispatcher thread; no locks, no allocation per datagram.
pub struct Router {
    cfg: RouterConfig,
    members: Vec<Member>,
    affinity: Affinity,
    selector: Selector,
    stats: RouterStats,
    scratch: Box<[u8; SLOT_BYTES]>,
    nonce: u64,
    /// Clock value at construction: processors are alive until proven otherwise.
    origin_ns: u64,
    /// The LAN socket and batch for remote members.
    forwarder: Option<forward::Forwarder>,
    /// The locate scan (limits and session-size header prepared once).
    locate: Locate,
    /// Whether a new dialog's session size can change a decision or the load accounting
    /// (see [`size_matters`]); when not, new INVITEs count 1 unit and no SDP is read.
    size_matters: bool,
}

/// Whether session sizes matter: a policy or a member that reads units. `size-aware` packs by
/// size; `least-loaded` ranks by units in use (assigned − released, and the processors release
/// the size they compute themselves, so assigning 1 would make that count drift); a capacity
/// (local, or any remote member, which may report one) makes every policy check the fit.
/// Only `round-robin` and `hash` over local members without capacity never read units.
fn size_matters(policy: Policy, members: &[Member]) -> bool {
    matches!(policy, Policy::SizeAware | Policy::LeastLoaded)
        || members.iter().any(|m| m.capacity > 0 || m.is_remote())
}

/// What a SIP routing decision reads, from the locate scan or (when that fails) the routing
/// scan.
struct SipFields<'a> {
    method: Method<'a>,
    call_id: &'a [u8],
    from_tag: &'a [u8],
    to_tag: Option<&'a [u8]>,
    branch: &'a [u8],
    scan: Scanned<'a>,
}

enum Scanned<'a> {
    Located(Located<'a>),
    View(RoutingView<'a>),
}

impl SipFields<'_> {
    fn session_size(&self, cfg: &wire::SessionSizeConfig) -> u32 {
        match &self.scan {
            Scanned::Located(l) => l.session_size(cfg).unwrap_or(1),
            Scanned::View(m) => m.session_size(cfg),
        }
    }
}

/// Buffer size the shells must give [`Router::handle`] for replies.
pub const REPLY_BYTES: usize = 2048;

impl Router {
    /// A router over `members` (at most [`MAX_PROCESSORS`]).
    pub fn new(cfg: RouterConfig, members: Vec<Member>, now_ns: u64) -> Self {
        assert!(
            members.len() <= MAX_PROCESSORS,
            "at most {MAX_PROCESSORS} processors per dispatcher"
        );
        let seed = now_ns ^ std::process::id() as u64;
        Self {
            locate: Locate::new(&cfg.limits, &cfg.session_size.sip_header),
            size_matters: size_matters(cfg.policy, &members),
            affinity: Affinity::new(cfg.affinity_capacity, cfg.affinity_ttl_s),
            selector: Selector::new(cfg.policy, seed),
            cfg,
            members,
            stats: RouterStats::default(),
            scratch: Box::new([0; SLOT_BYTES]),
            nonce: seed,
            origin_ns: now_ns,
            forwarder: None,
        }
    }

    /// Gives the router the socket it forwards to remote members from (needed when any member
    /// is remote; without it, pushes to remote members fail and count as full).
    pub fn with_forwarder(mut self, f: forward::Forwarder) -> Self {
        self.forwarder = Some(f);
        self
    }

    /// LAN forwarding counters: (sent, errors).
    pub fn forwarder_stats(&self) -> Option<(u64, u64)> {
        self.forwarder.as_ref().map(|f| (f.sent, f.errors))
    }

    /// Counters so far.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// The members (for per-processor reporting).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Affinity table counters and memory.
    pub fn affinity(&self) -> (affinity::AffinityStats, usize) {
        (self.affinity.stats(), self.affinity.memory_bytes())
    }

    /// Publishes everything queued in this batch to the processors (one release store each,
    /// and a wake-up only for a parked processor).
    pub fn flush(&mut self) {
        for m in &mut self.members {
            if let Link::Local(p) = &mut m.link {
                p.commit();
            }
        }
        if let Some(f) = &mut self.forwarder {
            f.flush();
        }
    }

    /// Decides what to do with one datagram; replies are written into `reply`
    /// ([`REPLY_BYTES`] is enough).
    pub fn handle(&mut self, now_ns: u64, msg: &Inbound<'_>, reply: &mut [u8]) -> Action {
        self.stats.bytes += msg.payload.len() as u64;
        if msg.payload.iter().all(|b| b.is_ascii_whitespace()) {
            self.stats.dropped_empty += 1;
            return Action::Drop(DropReason::Empty);
        }
        match msg.proto {
            PortProto::Sip => {
                self.stats.sip += 1;
                self.sip(now_ns, msg, reply)
            }
            PortProto::Mgcp => {
                self.stats.mgcp += 1;
                self.mgcp(now_ns, msg, reply)
            }
        }
    }

    fn next_nonce(&mut self) -> u64 {
        self.nonce = self.nonce.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.nonce
    }

    /// A To-tag for the dispatcher's own answers: `sy-` + 16 hex digits. It is not a processor
    /// tag (those are 28 hex digits), so the ACK to our own 4xx/5xx is recognised and absorbed.
    fn own_tag(&mut self, out: &mut [u8; 19]) {
        let n = self.next_nonce();
        out[..3].copy_from_slice(b"sy-");
        for i in 0..16 {
            out[3 + i] = b"0123456789abcdef"[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
    }

    /// Builds the dispatcher's own response to the request in `payload`. The routing scan
    /// validated only what routing needs, so the full scan runs here (answers are the rare
    /// path); if it finds a defect, the answer becomes a 400 citing it.
    fn reply_to(
        &mut self,
        payload: &[u8],
        code: u16,
        headers: &[&[u8]],
        reply: &mut [u8],
    ) -> Action {
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
            Ok(n) => Action::Reply(n),
            Err(_) => {
                self.stats.dropped_reply_too_large += 1;
                Action::Drop(DropReason::ReplyTooLarge)
            }
        }
    }

    /// A 400 citing `err` when the request carries what a response needs, else a counted drop.
    fn bad_request(
        &mut self,
        payload: &[u8],
        err: &wire::sip::SipError,
        reply: &mut [u8],
    ) -> Action {
        let mut tag = [0u8; 19];
        self.own_tag(&mut tag);
        let mut text = [0u8; 120];
        let len = mgcp::write_display(&mut text, err);
        let reason = std::str::from_utf8(&text[..len]).unwrap_or("malformed request");
        match salvage::bad_request(payload, reason, &tag, reply) {
            Some(n) => {
                self.stats.bad_request += 1;
                Action::Reply(n)
            }
            None => {
                self.stats.dropped_unparseable += 1;
                Action::Drop(DropReason::Unparseable)
            }
        }
    }

    fn member_state(&mut self, k: usize, now_ns: u64) -> MemberState {
        let origin = self.origin_ns;
        self.members[k].state(now_ns, &self.cfg, origin)
    }

    /// Whether processor `k` is currently in selection.
    fn alive(&mut self, k: u16, now_ns: u64) -> bool {
        usize::from(k) < self.members.len() && self.member_state(usize::from(k), now_ns).alive
    }

    /// Selects a processor and pushes `write`'s output into its queue, trying further
    /// candidates when a queue turns out full. Returns the processor, or `None` (overload).
    fn place(
        &mut self,
        now_ns: u64,
        size: u32,
        key: u64,
        msg: &Inbound<'_>,
        mark: bool,
    ) -> Result<Option<u16>, ()> {
        let mut excluded = 0u64;
        loop {
            let n = self.members.len();
            let mut states: [Option<MemberState>; MAX_PROCESSORS] = [None; MAX_PROCESSORS];
            for (k, st) in states.iter_mut().enumerate().take(n) {
                *st = Some(self.member_state(k, now_ns));
            }
            let Some(k) = self
                .selector
                .select(n, size, key, excluded, |k| states[k].expect("k < n"))
            else {
                return Ok(None);
            };
            match self.push(k, msg, now_ns, mark) {
                Push::Ok => {
                    let m = &mut self.members[k];
                    m.assigned_units += u64::from(size);
                    return Ok(Some(k as u16));
                }
                Push::Full => {
                    self.stats.queue_full += 1;
                    excluded |= 1 << k;
                }
                Push::TooLarge => return Err(()),
            }
        }
    }

    /// Copies (or rewrites) the message into processor `k`'s queue, or its LAN batch.
    fn push(&mut self, k: usize, msg: &Inbound<'_>, now_ns: u64, mark: bool) -> Push {
        let proto = match msg.proto {
            PortProto::Sip => Proto::Sip,
            PortProto::Mgcp => Proto::Mgcp,
        };
        let port = self.members[k].port;
        let remote = self.members[k].is_remote();
        let rewritten = if mark || remote {
            match self.rewrite(proto, msg.payload, msg.src, port, mark, remote) {
                Some(n) => Some(n),
                None => return Push::TooLarge,
            }
        } else {
            None
        };
        let bytes: &[u8] = match rewritten {
            Some(n) => &self.scratch[..n],
            None => msg.payload,
        };
        if bytes.len() > SLOT_BYTES {
            return Push::TooLarge;
        }
        let m = &mut self.members[k];
        let ok = match &mut m.link {
            Link::Local(producer) => producer.push_with(|slot| {
                slot.proto = proto;
                slot.src = msg.src;
                slot.dst = msg.dst;
                slot.received_ns = now_ns;
                slot.fill(bytes)
            }),
            Link::Remote(addr) => match &mut self.forwarder {
                Some(f) => {
                    f.slot()[..bytes.len()].copy_from_slice(bytes);
                    f.commit(bytes.len(), *addr);
                    true
                }
                None => false,
            },
        };
        if ok {
            m.forwarded += 1;
            Push::Ok
        } else {
            Push::Full
        }
    }

    /// Rewrites into `scratch`: claim 2's processor port (`mark`) and, for a processor on
    /// another host (`remote`), the true source: Via `received`/`rport` for SIP (RFC 3261
    /// §18.2.1, RFC 3581), an `X-SY-Src` parameter for MGCP (whose answers go to the command's
    /// source, which over the LAN would otherwise be the dispatcher).
    fn rewrite(
        &mut self,
        proto: Proto,
        payload: &[u8],
        src: SocketAddr,
        port: u16,
        mark: bool,
        remote: bool,
    ) -> Option<usize> {
        let mut ip = [0u8; 48];
        let iplen = mgcp::write_display(&mut ip, &src.ip());
        let mut tmp = [0u8; SLOT_BYTES];
        match proto {
            Proto::Sip => {
                let m = Message::parse(payload, &self.cfg.limits).ok()?;
                let n = m
                    .write_with_received(&ip[..iplen], Some(src.port()), &mut tmp)
                    .ok()?;
                let Some(mp) = self.cfg.mark_port.as_ref().filter(|_| mark) else {
                    self.scratch.get_mut(..n)?.copy_from_slice(tmp.get(..n)?);
                    return Some(n);
                };
                let m2 = Message::parse(tmp.get(..n)?, &self.cfg.limits).ok()?;
                let mut line = [0u8; 96];
                let len = fmt_header(&mut line, mp.sip_header.as_bytes(), b": ", port)?;
                m2.write_with_header(
                    &line[..len],
                    InsertAt::BeforeBlankLine,
                    &mut self.scratch[..],
                )
                .ok()
            }
            Proto::Mgcp => {
                let mut n = payload.len();
                tmp.get_mut(..n)?.copy_from_slice(payload);
                if let Some(mp) = self.cfg.mark_port.as_ref().filter(|_| mark) {
                    let mut digits = [0u8; 8];
                    let dl = mgcp::write_display(&mut digits, &port);
                    n = mgcp::insert_param(
                        tmp.get(..n)?,
                        mp.mgcp_param.as_bytes(),
                        &digits[..dl],
                        &mut self.scratch[..],
                    )?;
                    tmp.get_mut(..n)?.copy_from_slice(self.scratch.get(..n)?);
                }
                if remote {
                    let mut v = [0u8; 64];
                    let vl = mgcp::write_display(&mut v, &src);
                    n = mgcp::insert_param(
                        tmp.get(..n)?,
                        processor::thread::RELAY_SOURCE_PARAM.as_bytes(),
                        &v[..vl],
                        &mut self.scratch[..],
                    )?;
                } else {
                    self.scratch.get_mut(..n)?.copy_from_slice(tmp.get(..n)?);
                }
                Some(n)
            }
        }
    }

    /// The fields routing reads: the locate scan, and when it fails the routing scan, which
    /// either accepts (locate is stricter on a few shapes) or names the defect for the 400.
    fn sip_fields<'a>(
        &self,
        payload: &'a [u8],
    ) -> Result<Option<SipFields<'a>>, wire::sip::SipError> {
        let scope = if self.size_matters {
            Scope::CompleteForInvite
        } else {
            Scope::Routing
        };
        if let Ok(l) = self.locate.scan(payload, scope) {
            let Some(method) = l.method() else {
                return Ok(None);
            };
            return Ok(Some(SipFields {
                method,
                call_id: l.call_id(),
                from_tag: l.from_tag().unwrap_or(b""),
                to_tag: l.to_tag(),
                branch: l.branch().unwrap_or(b""),
                scan: Scanned::Located(l),
            }));
        }
        let m = RoutingView::parse(payload, &self.cfg.limits, &self.cfg.session_size.sip_header)?;
        let Kind::Request { method, .. } = m.kind() else {
            return Ok(None);
        };
        Ok(Some(SipFields {
            method,
            call_id: m.call_id(),
            from_tag: m.from().and_then(|f| f.tag).unwrap_or(b""),
            to_tag: m.to().and_then(|t| t.tag),
            branch: m.top_via().branch().unwrap_or(b""),
            scan: Scanned::View(m),
        }))
    }

    /// The `hash` policy's key (the Call-ID hash every dispatcher computes alike); the other
    /// policies ignore it, so it is not computed for them.
    fn call_key(&self, call_id: &[u8]) -> u64 {
        if self.cfg.policy == Policy::Hash {
            affinity::key(call_id, b"", b"")
        } else {
            0
        }
    }

    fn sip(&mut self, now_ns: u64, msg: &Inbound<'_>, reply: &mut [u8]) -> Action {
        // The locate scan: start line, header framing, and the fields routing reads; the rest
        // is the processor's business (it answers 400 to what it cannot accept).
        let m = match self.sip_fields(msg.payload) {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.stats.dropped_response += 1;
                return Action::Drop(DropReason::Response);
            }
            Err(e) => return self.bad_request(msg.payload, &e, reply),
        };
        let method = m.method;
        let now_s = (now_ns / 1_000_000_000) as u32;
        let to_tag = m.to_tag;
        let tkey = txkey::key(m.call_id, m.from_tag, m.branch);
        let n = self.members.len() as u16;

        // In-dialog: the processor is encoded in the To-tag it issued.
        let tagged_processor = to_tag.and_then(|t| wire::tag::decode_keyed(self.cfg.tag_key, t, n));

        match method {
            Method::Ack => {
                // ACK for a non-2xx final: same branch as the INVITE -> affinity.
                if let Some(k) = self.affinity.get(tkey, now_s) {
                    return self.forward_existing(k, now_ns, msg, Counted::AckAffinity);
                }
                if let Some(k) = tagged_processor {
                    return self.forward_existing(k, now_ns, msg, Counted::InDialog);
                }
                self.stats.dropped_ack += 1;
                Action::Drop(DropReason::AckAbsorbed)
            }
            Method::Cancel => match self.affinity.get(tkey, now_s) {
                Some(k) => self.forward_existing(k, now_ns, msg, Counted::Cancel),
                None => {
                    self.stats.no_transaction += 1;
                    self.reply_to(msg.payload, 481, &[], reply)
                }
            },
            Method::Invite if to_tag.is_none() => {
                if let Some(k) = self.affinity.get(tkey, now_s) {
                    if self.alive(k, now_ns) {
                        return self.forward_existing(k, now_ns, msg, Counted::Retransmission);
                    }
                    // Its processor died before answering: the retransmission starts the
                    // dialog afresh on a live one (the entry is overwritten below).
                    self.stats.rerouted += 1;
                }
                let size = if self.size_matters {
                    m.session_size(&self.cfg.session_size)
                } else {
                    1
                };
                let ckey = self.call_key(m.call_id);
                let mark = self.cfg.mark_port.is_some();
                match self.place(now_ns, size, ckey, msg, mark) {
                    Ok(Some(k)) => {
                        self.affinity.insert(tkey, k, now_s);
                        self.stats.new_dialogs += 1;
                        Action::Forwarded(k)
                    }
                    Ok(None) => {
                        self.stats.overload += 1;
                        let mut ra = [0u8; 32];
                        let len = fmt_header(
                            &mut ra,
                            b"Retry-After",
                            b": ",
                            self.cfg.retry_after_s as u16,
                        )
                        .unwrap_or(0);
                        let hdr: &[u8] = &ra[..len];
                        self.reply_to(msg.payload, 503, &[hdr], reply)
                    }
                    Err(()) => {
                        self.stats.too_large += 1;
                        self.reply_to(msg.payload, 513, &[], reply)
                    }
                }
            }
            _ if to_tag.is_some() => match tagged_processor {
                Some(k) => self.forward_existing(k, now_ns, msg, Counted::InDialog),
                None => {
                    self.stats.no_transaction += 1;
                    self.reply_to(msg.payload, 481, &[], reply)
                }
            },
            Method::Options if self.cfg.options == OptionsMode::Answer => {
                self.stats.options_answered += 1;
                self.reply_to(
                    msg.payload,
                    200,
                    &[
                        b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE",
                        b"Accept: application/sdp",
                    ],
                    reply,
                )
            }
            Method::Options => self.forward_new(now_ns, &m, msg, reply),
            _ if self.cfg.other == OtherMode::Forward => self.forward_new(now_ns, &m, msg, reply),
            Method::Other(_) => {
                self.stats.rejected_method += 1;
                self.reply_to(msg.payload, 501, &[ALLOW], reply)
            }
            _ => {
                self.stats.rejected_method += 1;
                self.reply_to(msg.payload, 405, &[ALLOW], reply)
            }
        }
    }

    /// Out-of-dialog non-INVITE forwarded by policy (session size 0: it holds no capacity).
    fn forward_new(
        &mut self,
        now_ns: u64,
        m: &SipFields<'_>,
        msg: &Inbound<'_>,
        reply: &mut [u8],
    ) -> Action {
        let ckey = self.call_key(m.call_id);
        match self.place(now_ns, 0, ckey, msg, false) {
            Ok(Some(k)) => {
                self.stats.new_dialogs += 1;
                Action::Forwarded(k)
            }
            Ok(None) => {
                self.stats.overload += 1;
                self.reply_to(msg.payload, 503, &[], reply)
            }
            Err(()) => {
                self.stats.too_large += 1;
                self.reply_to(msg.payload, 513, &[], reply)
            }
        }
    }

    /// Forwards a message that belongs to processor `k` already (no capacity change). A full
    /// queue here is a drop, counted: the sender retransmits, and picking another processor
    /// would break the dialog.
    fn forward_existing(
        &mut self,
        k: u16,
        now_ns: u64,
        msg: &Inbound<'_>,
        what: Counted,
    ) -> Action {
        match self.push(usize::from(k), msg, now_ns, false) {
            Push::Ok => {
                match what {
                    Counted::Retransmission => self.stats.retransmissions += 1,
                    Counted::Cancel => self.stats.cancels += 1,
                    Counted::AckAffinity => self.stats.acks_affinity += 1,
                    Counted::InDialog => self.stats.in_dialog += 1,
                    Counted::MgcpStateless => self.stats.mgcp_stateless += 1,
                    Counted::MgcpRetransmission => self.stats.mgcp_retransmissions += 1,
                }
                Action::Forwarded(k)
            }
            Push::Full | Push::TooLarge => {
                self.stats.queue_full += 1;
                Action::Drop(DropReason::QueueFull)
            }
        }
    }
}

const ALLOW: &[u8] = b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

#[derive(Clone, Copy)]
enum Counted {
    Retransmission,
    Cancel,
    AckAffinity,
    InDialog,
    MgcpStateless,
    MgcpRetransmission,
}

enum Push {
    Ok,
    Full,
    TooLarge,
}

/// Writes `name sep value` into `out` without allocating; returns the length.
fn fmt_header(out: &mut [u8], name: &[u8], sep: &[u8], value: u16) -> Option<usize> {
    let mut digits = [0u8; 5];
    let mut v = value;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let parts: [&[u8]; 3] = [name, sep, &digits[i..]];
    let mut len = 0;
    for p in parts {
        out.get_mut(len..len + p.len())?.copy_from_slice(p);
        len += p.len();
    }
    Some(len)
}

#[cfg(test)]
mod tests;
