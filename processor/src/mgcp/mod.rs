//! MGCP gateway endpoint set (RFC 3435) for the connections the dispatcher hands this
//! processor.
//!
//! Sans-IO like [`crate::sip`]: [`Gateway::on_message`] / [`Gateway::on_timer`] take bytes and a
//! clock and fill an [`Outbox`]. A CRCX answer names a connection id that encodes the
//! processor id ([`wire::tag`]) and a specific endpoint whose domain is the processor's own
//! `[ip]:port`, so MDCX/DLCX/AUCX reach this processor directly, or through any dispatcher
//! statelessly.
//!
//! Transactions (§3.5): responses are kept per (source, transaction id) for T-HIST, so a
//! retransmitted command gets the same answer without being executed again; `K:` lets the call
//! agent release them early. When an answer delay is configured the gateway sends `100` at
//! once and the final response later with an empty `K:`, retransmitting it until the call
//! agent's `000` response acknowledgement.
//!
//! The history is a fixed-size [`Table`] from a keyed hash of (source, transaction id) to a
//! [`Slab`] slot whose response buffers are reused, with its T-HIST expiry and retransmissions
//! on a [`Wheel`]: it never rehashes mid-run (the std map's doubling stalled a message for
//! milliseconds) and a steady state does not allocate for it. Its capacity is
//! [`HISTORY_PER_PORT`] × the media ports (the command rate × T-HIST it must hold). When it is
//! full the oldest entry is evicted (counted in `history_evicted`), like the dispatcher's
//! affinity table: entries expire in the order they were made (T-HIST is one constant), so
//! the oldest is the one closest to expiry, and under a command rate above what the history
//! holds for T-HIST the effective history just gets shorter. A retransmission of an evicted
//! command, which would have to come later than every newer command's first copy, is
//! executed again. A new command is refused (`409`, `history_full`) only if nothing can be
//! evicted (not expected: every slot in use is in the eviction order).
//!
//! Connections live the same way: a [`Slab`] of `Conn` slots whose byte buffers (connection
//! id, call id, endpoint name, notified entity, remote SDP) are reused, not reallocated, found
//! through two [`Table`]s keyed by keyed hashes: connection id → slot, and call id → the first
//! of that call's connections (the rest are chained through the slots, so a call needs no
//! list of its own). A hash only finds a slot: the stored bytes are then compared exactly
//! (ids and call ids are case-insensitive, so both sides are lowercased first), and a lookup
//! that hashes alike but names something else is answered as unknown. The capacity is the
//! number of media ports, allocated once at start: every connection holds one port, so port
//! exhaustion (`502`) always comes first and the table adds no limit of its own; should it
//! ever be full it gives the same `502` and counts it in
//! [`GatewayStats::connections_full`]. Answers are built from parameter values written into
//! one reused buffer, so a steady-state call (CRCX → MDCX → DLCX) allocates nothing.
mod options;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tracing::{debug, trace};
use wire::{
    hash::mix,
    mgcp::{leading_tid, split_piggybacked, write_response, Kind, Message, Verb},
    out::Out,
    Limits, SessionSizeConfig,
};

use fabric::LoadReport;

use crate::{
    load::LoadAccount,
    media::PortPool,
    outbox::Outbox,
    sdp::{put_u64, write_sdp, SdpAddr, SdpParams},
    table::{Key, KeyHasher, Slab, Table},
    wheel::{TimerId, Wheel},
};
use options::{k_list, local_options, mode, sdp_direction};

/// First retransmission interval of a final response awaiting `000` (RFC 3435 §3.5.3: 200 ms
/// is suggested; doubled each time, capped at 4 s).
const RETX_INITIAL_NS: u64 = 200_000_000;
const RETX_MAX_NS: u64 = 4_000_000_000;
/// History entries per media port: a connection takes a port and a few commands (CRCX,
/// MDCX, DLCX, audits) within T-HIST, so 64 per port (640,000 for the default 10,000
/// ports, i.e. ≈ 21,000 commands/s over a 30 s T-HIST) leaves room for calls shorter than
/// T-HIST; at least [`MIN_HISTORY`].
pub const HISTORY_PER_PORT: usize = 64;
/// Smallest history, for small port ranges.
pub const MIN_HISTORY: usize = 4096;
/// Bytes a history slot's response buffer gets the first time it is used: more than a CRCX
/// answer with its SDP (a few hundred bytes), so a reused slot does not grow again.
const RESPONSE_RESERVE: usize = 512;
/// Connection parameters reported on deletion: this processor does not count RTP itself.
const CONN_PARAMS: &[u8] = b"PS=0, OS=0, PR=0, OR=0, PL=0, JI=0, LA=0";
/// Capabilities reported by AUEP `F: A`.
const CAPABILITIES: &[u8] =
    b"a:PCMU;PCMA;G729, p:10-100, e:on, s:on, v:L, m:sendonly;recvonly;sendrecv;inactive";

/// Configuration of one processor's MGCP gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// This processor's id, encoded into every connection id.
    pub id: u16,
    /// Number of processor ids in the deployment (bounds id decoding).
    pub max_processors: u16,
    /// The processor's own IP:port: named in specific endpoint ids (`Z:`) and used as the SDP
    /// connection address.
    pub addr: SocketAddr,
    /// Inclusive RTP port range (keep it apart from the SIP UAS's range).
    pub media_ports: (u16, u16),
    /// How long responses are kept for retransmitted commands (T-HIST, 30 s).
    pub t_hist: Duration,
    /// Delay before final responses to CRCX/MDCX (0 = at once); with a delay a `100` goes
    /// out first.
    pub answer_delay: Duration,
    /// Session-size rules, identical to the dispatcher's.
    pub session_size: SessionSizeConfig,
    /// Capacity in units reported to the dispatcher (0 = unlimited).
    pub capacity_units: u32,
    /// Key of the connection-id MAC ([`wire::tag::encode`]); must be the dispatchers'
    /// current key.
    pub tag_key: wire::tag::TagKey,
}

impl GatewayConfig {
    /// Defaults: T-HIST 30 s, no delay, RTP ports 30000-39999.
    pub fn new(id: u16, max_processors: u16, addr: SocketAddr) -> Self {
        Self {
            id,
            max_processors,
            addr,
            media_ports: (30000, 39999),
            t_hist: Duration::from_secs(30),
            answer_delay: Duration::ZERO,
            session_size: SessionSizeConfig::default(),
            capacity_units: 0,
            tag_key: wire::tag::TagKey::UNKEYED,
        }
    }
}

/// Counters of what the gateway did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GatewayStats {
    /// Commands executed (retransmissions excluded).
    pub commands: u64,
    /// Connections created by CRCX.
    pub connections_created: u64,
    /// Connections deleted by DLCX.
    pub connections_deleted: u64,
    /// Retransmitted commands answered from the history.
    pub retransmissions_absorbed: u64,
    /// Final responses retransmitted while waiting for `000`.
    pub retransmissions_sent: u64,
    /// `100` provisional responses sent.
    pub provisional_sent: u64,
    /// `000` response acknowledgements received.
    pub response_acks: u64,
    /// Error responses (4xx/5xx) sent, malformed ones included.
    pub errors: u64,
    /// Malformed commands answered 510/511/528.
    pub malformed: u64,
    /// Datagrams or segments dropped (no transaction id to answer, stray responses).
    pub dropped: u64,
    /// Responses that did not fit the output buffer.
    pub write_errors: u64,
    /// Commands answered `409` without being executed because the transaction history
    /// (fixed size, see the module docs) was full and nothing could be evicted.
    #[serde(default)]
    pub history_full: u64,
    /// History entries evicted, oldest first, to make room for a new command before T-HIST
    /// (the command rate is above what the history holds for T-HIST).
    #[serde(default)]
    pub history_evicted: u64,
    /// CRCXs answered `502` because the connection table (one slot per media port, see the
    /// module docs) was full; port exhaustion normally answers first.
    #[serde(default)]
    pub connections_full: u64,
}

/// No slot (end of a call's chain).
const NIL: u32 = u32::MAX;

/// One connection: a reused slab slot whose buffers keep their capacity when it is freed, so
/// a steady state of calls does not allocate for them.
#[derive(Debug)]
struct Conn {
    /// Live (else a free slot keeping its buffers).
    in_use: bool,
    /// The connection id as minted (lowercase hex), compared exactly on lookup.
    id: Vec<u8>,
    /// The call id, lowercased.
    call_id: Vec<u8>,
    /// `id` and `call_id` hashed into their indexes, kept for the delete.
    id_key: Key,
    call_key: Key,
    /// The endpoint's local name (`$` resolved), lowercased.
    endpoint: Vec<u8>,
    mode: &'static str,
    port: u16,
    units: u32,
    notified: Vec<u8>,
    codec: (&'static str, u8),
    ptime: Option<u32>,
    /// The call agent's SDP, valid when `has_remote`.
    remote_sdp: Vec<u8>,
    has_remote: bool,
    session_id: u64,
    sdp_version: u64,
    /// In its call's chain (false only when another call id took the same call-index key,
    /// probability 2⁻¹²⁸: the connection is then reached by its id and endpoint only).
    linked: bool,
    /// Neighbours in its call's chain, or [`NIL`].
    call_prev: u32,
    call_next: u32,
}

impl Default for Conn {
    fn default() -> Self {
        Conn {
            in_use: false,
            id: Vec::new(),
            call_id: Vec::new(),
            id_key: [0, 0],
            call_key: [0, 0],
            endpoint: Vec::new(),
            mode: "inactive",
            port: 0,
            units: 0,
            notified: Vec::new(),
            codec: ("PCMU", 0),
            ptime: None,
            remote_sdp: Vec::new(),
            has_remote: false,
            session_id: 0,
            sdp_version: 0,
            linked: false,
            call_prev: NIL,
            call_next: NIL,
        }
    }
}

/// Most parameters one answer carries (AUCX with every `F:` code has 5; more are dropped).
const MAX_PARAMS: usize = 8;

/// One command transaction in the history (a reused slab slot).
#[derive(Debug)]
struct Txn {
    /// Its (source, transaction id), compared exactly on every lookup.
    key: TxnKey,
    /// `key` hashed into the history index: kept so expiry need not hash it again.
    index_key: Key,
    /// Live (else a free slot keeping its buffers).
    in_use: bool,
    /// When it was made, in commands: names this use of the slot in the eviction order.
    seq: u64,
    timer: Option<TimerId>,
    dst: SocketAddr,
    provisional: Vec<u8>,
    response: Vec<u8>,
    /// When the held final response goes out (answer delay).
    final_at: Option<u64>,
    /// Next retransmission of a final response awaiting `000`.
    retx_at: Option<u64>,
    retx_interval: u64,
    expires: u64,
    scheduled: Option<u64>,
}

impl Default for Txn {
    fn default() -> Self {
        let zero = SocketAddr::from(([0, 0, 0, 0], 0));
        Txn {
            key: (zero, 0),
            index_key: [0, 0],
            in_use: false,
            seq: 0,
            timer: None,
            dst: zero,
            provisional: Vec::new(),
            response: Vec::new(),
            final_at: None,
            retx_at: None,
            retx_interval: RETX_INITIAL_NS,
            expires: 0,
            scheduled: None,
        }
    }
}

impl Txn {
    fn next_deadline(&self) -> Option<u64> {
        [self.final_at, self.retx_at, Some(self.expires)]
            .into_iter()
            .flatten()
            .min()
    }
}

type TxnKey = (SocketAddr, u32);

/// The outcome of executing one command. Parameter values are ranges of the gateway's
/// reused parameter buffer, so building an answer does not allocate.
struct Answer {
    code: u16,
    commentary: &'static str,
    params: [(&'static [u8], usize, usize); MAX_PARAMS],
    n: usize,
    sdp: bool,
}

impl Answer {
    fn code(code: u16, commentary: &'static str) -> Self {
        Self {
            code,
            commentary,
            params: [(b"", 0, 0); MAX_PARAMS],
            n: 0,
            sdp: false,
        }
    }

    fn ok(sdp: bool) -> Self {
        Self {
            sdp,
            ..Self::code(200, "OK")
        }
    }

    /// Adds parameter `name` whose value is `pbuf[start..]` (dropped beyond [`MAX_PARAMS`]).
    fn param_from(&mut self, name: &'static [u8], pbuf: &[u8], start: usize) {
        if self.n < MAX_PARAMS {
            self.params[self.n] = (name, start, pbuf.len());
            self.n += 1;
        }
    }

    /// Adds parameter `name` with value `v`, copied into `pbuf`.
    fn param(&mut self, name: &'static [u8], pbuf: &mut Vec<u8>, v: &[u8]) {
        let start = pbuf.len();
        pbuf.extend_from_slice(v);
        self.param_from(name, pbuf, start);
    }
}

/// `v` lowercased into `buf` (cleared first), eight bytes a word: call and connection ids
/// are lowercased for every lookup, and the byte loop was most of a lookup's cost.
fn lower_into(buf: &mut Vec<u8>, v: &[u8]) {
    buf.clear();
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        buf.extend_from_slice(&lower_word(u64::from_le_bytes(w)).to_le_bytes());
    }
    buf.extend(chunks.remainder().iter().map(u8::to_ascii_lowercase));
}

/// ASCII lowercase of eight bytes at once: a byte gets `0x20` added exactly when it is in
/// `A..=Z` (bytes ≥ 0x80 are left alone, as `to_ascii_lowercase` leaves them).
#[inline]
fn lower_word(w: u64) -> u64 {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HI: u64 = 0x8080_8080_8080_8080;
    let b = w & LO7;
    // High bit set where the low seven bits are ≥ 'A', and where they are > 'Z'.
    let ge_a = b + 0x0101_0101_0101_0101 * (0x80 - u64::from(b'A'));
    let gt_z = b + 0x0101_0101_0101_0101 * (0x7f - u64::from(b'Z'));
    let upper = (ge_a ^ gt_z) & !w & HI;
    w | (upper >> 2)
}

/// Keyed hash of a connection id or call id (already lowercased).
fn id_key(h: &KeyHasher, v: &[u8]) -> Key {
    h.key_of(v)
}

/// The MGCP endpoints of one processor. See the module docs.
pub struct Gateway {
    cfg: GatewayConfig,
    limits: Limits,
    t_hist: u64,
    delay: u64,
    load: LoadAccount,
    ports: PortPool,
    stats: GatewayStats,
    /// Connection slots; capacity = media ports (see the module docs).
    conns: Slab<Conn>,
    /// Connection id → slot.
    conn_index: Table,
    /// Call id → first slot of the call's chain.
    call_index: Table,
    /// Lowercased id or call id of the command being handled (reused).
    key_buf: Vec<u8>,
    /// Parameter values of the answer being built (reused, cleared per command).
    pbuf: Vec<u8>,
    /// Slots being listed by AUEP `F: I` (reused).
    listed: Vec<u32>,
    /// `@[ip]:port`: the domain of every specific endpoint this gateway names.
    domain: Vec<u8>,
    hasher: KeyHasher,
    history_index: Table,
    history: Slab<Txn>,
    /// History slots in the order they were filled, `(slot, seq)`: a ring of twice the
    /// history's capacity, entries whose slot was freed or reused since being stale.
    order: Vec<(u32, u64)>,
    order_head: usize,
    order_len: usize,
    seq: u64,
    wheel: Wheel,
    due: Vec<u64>,
    /// Session size the dispatcher computed for the datagram being handled (its first CRCX).
    units_hint: Option<u32>,
    notified: Vec<u8>,
    id_seed: u64,
    counter: u64,
    sdp_buf: Vec<u8>,
    /// `cfg.addr`'s address as the answers' `o=`/`c=` lines write it.
    sdp_addr: SdpAddr,
    resp_buf: Vec<u8>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The requested-info codes of `F:` (`C,N,L,M,LC,P`), trimmed (compared case-insensitively).
fn requested<'m>(msg: &Message<'m>) -> impl Iterator<Item = &'m [u8]> {
    msg.param(b'F')
        .unwrap_or_default()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|x| !x.is_empty())
}

/// Whether endpoint local name `local` is addressed by `pattern` (`*` = all of, trailing).
fn endpoint_matches(pattern: &[u8], local: &[u8]) -> bool {
    match pattern.iter().position(|&b| b == b'*' || b == b'$') {
        Some(i) => local.len() >= i && local[..i].eq_ignore_ascii_case(&pattern[..i]),
        None => pattern.eq_ignore_ascii_case(local),
    }
}

impl Gateway {
    /// A gateway with its own [`LoadReport`].
    pub fn new(cfg: GatewayConfig) -> Self {
        let load = LoadReport::new(cfg.capacity_units);
        Self::with_load(cfg, load)
    }

    /// A gateway reporting into `load`, shared with the processor's SIP UAS.
    pub fn with_load(cfg: GatewayConfig, load: Arc<LoadReport>) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u16(cfg.id);
        let ports = PortPool::new(cfg.media_ports.0, cfg.media_ports.1);
        let history = (HISTORY_PER_PORT * ports.capacity()).max(MIN_HISTORY);
        let seed = h.finish();
        let conns = ports.capacity();
        let mut domain = Vec::with_capacity(64);
        domain.extend_from_slice(b"@[");
        domain.extend_from_slice(cfg.addr.ip().to_string().as_bytes());
        domain.extend_from_slice(b"]:");
        put_u64(&mut domain, u64::from(cfg.addr.port()));
        Self {
            limits: Limits::default(),
            t_hist: ns(cfg.t_hist),
            delay: ns(cfg.answer_delay),
            load: LoadAccount::new(load),
            ports,
            stats: GatewayStats::default(),
            conns: Slab::with_capacity(conns),
            conn_index: Table::with_capacity(conns),
            call_index: Table::with_capacity(conns),
            key_buf: Vec::with_capacity(64),
            pbuf: Vec::with_capacity(512),
            listed: Vec::new(),
            domain,
            hasher: KeyHasher::new([mix(seed ^ 1), mix(seed ^ 2)]),
            history_index: Table::with_capacity(history),
            history: Slab::with_capacity(history),
            order: vec![(0, 0); 2 * history],
            order_head: 0,
            order_len: 0,
            seq: 0,
            wheel: Wheel::with_capacity(history),
            due: Vec::with_capacity(64),
            units_hint: None,
            notified: Vec::new(),
            id_seed: seed,
            counter: 0,
            sdp_buf: Vec::with_capacity(512),
            sdp_addr: SdpAddr::new(cfg.addr.ip()),
            resp_buf: vec![0; crate::outbox::DATAGRAM_BYTES],
            cfg,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }

    /// The load report this gateway updates.
    pub fn load(&self) -> &Arc<LoadReport> {
        self.load.report()
    }

    /// Connections currently open.
    pub fn active_connections(&self) -> usize {
        self.conns.len()
    }

    /// Earliest time (ns) [`Gateway::on_timer`] has work; may be early, never late.
    pub fn next_deadline(&self) -> Option<u64> {
        self.wheel.next_deadline()
    }

    fn table_key(&self, (src, tid): TxnKey) -> Key {
        let mut s = self.hasher.start();
        match src.ip() {
            std::net::IpAddr::V4(a) => s.word(u64::from(u32::from(a))),
            std::net::IpAddr::V6(a) => s.bytes(&a.octets()),
        }
        s.word(u64::from(src.port()) << 32 | u64::from(tid));
        s.finish()
    }

    /// History slot of (source, transaction id).
    fn find(&self, key: TxnKey) -> Option<u32> {
        self.find_keyed(key, self.table_key(key))
    }

    /// [`Gateway::find`] with `key` already hashed (a command hashes its key once for the
    /// lookup and the insert of its answer).
    fn find_keyed(&self, key: TxnKey, tk: Key) -> Option<u32> {
        let i = self.history_index.get(&tk)?;
        self.history
            .get(i)
            .filter(|t| t.in_use && t.key == key)
            .map(|_| i)
    }

    /// Drops history slot `i` (T-HIST, or `K:`).
    fn forget(&mut self, i: u32) {
        let Some(t) = self.history.get_mut(i) else {
            return;
        };
        if !t.in_use {
            return;
        }
        t.in_use = false;
        let tk = t.index_key;
        if let Some(id) = t.timer.take() {
            self.wheel.cancel(id);
        }
        if self.history_index.get(&tk) == Some(i) {
            self.history_index.remove(&tk);
        }
        self.history.free(i);
    }

    /// Whether the eviction-order entry `(i, seq)` still names a live history entry.
    fn order_live(&self, (i, seq): (u32, u64)) -> bool {
        self.history
            .get(i)
            .is_some_and(|t| t.in_use && t.seq == seq)
    }

    /// Removes the oldest eviction-order entry.
    fn order_pop(&mut self) -> Option<(u32, u64)> {
        if self.order_len == 0 {
            return None;
        }
        let e = self.order[self.order_head];
        self.order_head = (self.order_head + 1) % self.order.len();
        self.order_len -= 1;
        Some(e)
    }

    /// Appends history slot `i`'s new use to the eviction order, first dropping stale entries
    /// at its head (freed by T-HIST or `K:`: usually all the oldest ones, in order).
    fn order_push(&mut self, i: u32, seq: u64) {
        while self.order_len > 0 && !self.order_live(self.order[self.order_head]) {
            self.order_pop();
        }
        if self.order_len == self.order.len() {
            // Only stale entries behind a live head can fill it (twice the slots): drop the
            // head, evicting it.
            if let Some(e) = self.order_pop() {
                if self.order_live(e) {
                    self.forget(e.0);
                    self.stats.history_evicted += 1;
                }
            }
        }
        let at = (self.order_head + self.order_len) % self.order.len();
        self.order[at] = (i, seq);
        self.order_len += 1;
    }

    /// Evicts the oldest live history entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some(e) = self.order_pop() {
            if self.order_live(e) {
                self.forget(e.0);
                self.stats.history_evicted += 1;
                return true;
            }
        }
        false
    }

    /// (Re)arms the wheel timer of history slot `i` for its next deadline.
    fn schedule(&mut self, i: u32) {
        let Some(t) = self.history.get_mut(i) else {
            return;
        };
        let next = t.next_deadline();
        if t.scheduled == next {
            return;
        }
        if let Some(id) = t.timer.take() {
            self.wheel.cancel(id);
        }
        t.scheduled = next;
        if let Some(d) = next {
            t.timer = Some(self.wheel.insert(d, u64::from(i)));
        }
    }

    /// Handles one MGCP datagram (piggybacked messages are split and answered one by one).
    pub fn on_message(&mut self, now_ns: u64, src: SocketAddr, bytes: &[u8], out: &mut Outbox) {
        self.on_message_sized(now_ns, src, bytes, None, out);
    }

    /// [`Gateway::on_message`] for a datagram whose session size the dispatcher already
    /// computed (`Some(units)`, from the fabric slot): the first CRCX in it takes that size
    /// instead of sizing its SDP again; `None` sizes every CRCX here with the same rules.
    pub fn on_message_sized(
        &mut self,
        now_ns: u64,
        src: SocketAddr,
        bytes: &[u8],
        units: Option<u32>,
        out: &mut Outbox,
    ) {
        self.units_hint = units;
        for seg in split_piggybacked(bytes) {
            self.on_segment(now_ns, src, seg, out);
        }
        self.units_hint = None;
    }

    fn on_segment(&mut self, now: u64, src: SocketAddr, seg: &[u8], out: &mut Outbox) {
        // Handled where it is scanned: the view (~700 bytes) is never moved.
        let limits = self.limits;
        let Err(e) = Message::parse_then(seg, &limits, |msg| self.on_parsed(now, src, msg, out))
        else {
            return;
        };
        let Some(tid) = leading_tid(seg) else {
            self.stats.dropped += 1;
            trace!(%src, "unanswerable malformed MGCP segment dropped");
            return;
        };
        self.stats.malformed += 1;
        let mut text = [0u8; 100];
        let mut o = Out::new(&mut text);
        o.put_display_truncating(&e.kind);
        self.send_now(src, e.kind.return_code(), tid, o.as_bytes(), &[], None, out);
    }

    /// One well-formed segment from `src`.
    fn on_parsed(&mut self, now: u64, src: SocketAddr, msg: &Message<'_>, out: &mut Outbox) {
        let (verb, tid, endpoint, version) = match msg.kind() {
            Kind::Response { code: 0, tid, .. } => {
                // Response acknowledgement: stop retransmitting that final response.
                self.stats.response_acks += 1;
                if let Some(i) = self.find((src, tid)) {
                    if let Some(t) = self.history.get_mut(i) {
                        t.retx_at = None;
                    }
                    self.schedule(i);
                }
                return;
            }
            Kind::Response { .. } => {
                self.stats.dropped += 1;
                return;
            }
            Kind::Command {
                verb,
                tid,
                endpoint,
                version,
            } => (verb, tid, endpoint, version),
        };
        if let Some(k) = msg.param(b'K') {
            for (lo, hi) in k_list(k) {
                if hi - lo < 64 {
                    for t in lo..=hi {
                        if let Some(i) = self.find((src, t)) {
                            self.forget(i);
                        }
                    }
                } else {
                    // A wide range: visit the live slots instead of every id in it.
                    let slots = u32::try_from(self.history.slots()).unwrap_or(u32::MAX);
                    for i in 0..slots {
                        let hit = self.history.get(i).is_some_and(|t| {
                            t.in_use && t.key.0 == src && (lo..=hi).contains(&t.key.1)
                        });
                        if hit {
                            self.forget(i);
                        }
                    }
                }
            }
        }
        let tk = self.table_key((src, tid));
        if let Some(t) = self
            .find_keyed((src, tid), tk)
            .and_then(|i| self.history.get(i))
        {
            self.stats.retransmissions_absorbed += 1;
            let bytes = if t.final_at.is_some() {
                &t.provisional
            } else {
                &t.response
            };
            out.push(t.dst, bytes);
            return;
        }
        while (self.history.is_full() || self.history_index.is_full()) && self.evict_oldest() {}
        if self.history.is_full() || self.history_index.is_full() {
            // No room to remember the answer: refuse without executing, so that a
            // retransmission is refused too and nothing runs twice.
            self.stats.history_full += 1;
            debug!("MGCP history full: 409");
            self.send_now(src, 409, tid, b"Internal overload", &[], None, out);
            return;
        }
        self.stats.commands += 1;
        self.pbuf.clear();
        if (version.major, version.minor) != (1, 0) {
            self.stats.malformed += 1;
            let ans = Answer::code(528, "Incompatible protocol version");
            self.finish(now, src, tid, tk, ans, false, out);
            return;
        }
        let local = endpoint.local;
        let ans = match verb {
            Verb::Crcx => self.crcx(msg, local),
            Verb::Mdcx => self.mdcx(msg),
            Verb::Dlcx => self.dlcx(msg, local),
            Verb::Aucx => self.aucx(msg),
            Verb::Auep => self.auep(msg, local),
            Verb::Rqnt | Verb::Epcf => {
                if let Some(n) = msg.param(b'N') {
                    self.notified.clear();
                    self.notified.extend_from_slice(n);
                }
                Answer::code(200, "OK")
            }
            Verb::Ntfy | Verb::Rsip | Verb::Other(_) => {
                Answer::code(504, "Unknown or unsupported command")
            }
        };
        let delayed = self.delay > 0 && matches!(verb, Verb::Crcx | Verb::Mdcx) && ans.code < 300;
        self.finish(now, src, tid, tk, ans, delayed, out);
    }

    /// Writes one response into `resp_buf`; returns its length.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        code: u16,
        tid: u32,
        commentary: &[u8],
        params: &[(&[u8], &[u8])],
        sdp: Option<&[u8]>,
    ) -> Option<usize> {
        match write_response(code, tid, commentary, params, sdp, &mut self.resp_buf) {
            Ok(n) => Some(n),
            Err(e) => {
                self.stats.write_errors += 1;
                debug!(error = %e, code, "MGCP response not written");
                None
            }
        }
    }

    /// Sends an answer that is not kept in the history (malformed commands).
    #[allow(clippy::too_many_arguments)]
    fn send_now(
        &mut self,
        dst: SocketAddr,
        code: u16,
        tid: u32,
        commentary: &[u8],
        params: &[(&[u8], &[u8])],
        sdp: Option<&[u8]>,
        out: &mut Outbox,
    ) {
        if code >= 400 {
            self.stats.errors += 1;
        }
        if let Some(n) = self.write(code, tid, commentary, params, sdp) {
            out.push(dst, &self.resp_buf[..n]);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        now: u64,
        src: SocketAddr,
        tid: u32,
        tk: Key,
        ans: Answer,
        delayed: bool,
        out: &mut Outbox,
    ) {
        if ans.code >= 400 {
            self.stats.errors += 1;
        }
        let pbuf = std::mem::take(&mut self.pbuf);
        let mut params: [(&[u8], &[u8]); MAX_PARAMS + 1] = [(b"", b""); MAX_PARAMS + 1];
        let mut np = 0;
        for &(name, a, b) in &ans.params[..ans.n] {
            params[np] = (name, pbuf.get(a..b).unwrap_or_default());
            np += 1;
        }
        if delayed {
            params[np] = (b"K", b"");
            np += 1;
        }
        let sdp = std::mem::take(&mut self.sdp_buf);
        let n = self.write(
            ans.code,
            tid,
            ans.commentary.as_bytes(),
            &params[..np],
            ans.sdp.then_some(sdp.as_slice()),
        );
        self.sdp_buf = sdp;
        self.pbuf = pbuf;
        let Some(n) = n else { return };
        let key = (src, tid);
        let Some(i) = self.history.alloc() else {
            // Checked before executing; unreachable, but the answer still goes out.
            out.push(src, &self.resp_buf[..n]);
            return;
        };
        if self.history_index.insert(tk, i).is_err() {
            self.history.free(i);
            out.push(src, &self.resp_buf[..n]);
            return;
        }
        let Some(txn) = self.history.get_mut(i) else {
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        txn.key = key;
        txn.index_key = tk;
        txn.in_use = true;
        txn.seq = seq;
        txn.timer = None;
        txn.dst = src;
        txn.response.clear();
        // At least RESPONSE_RESERVE at once: a slot serves CRCX, MDCX and DLCX answers in
        // turn, and growing it to each new largest size would allocate long into a run.
        txn.response.reserve(n.max(RESPONSE_RESERVE));
        txn.response.extend_from_slice(&self.resp_buf[..n]);
        txn.provisional.clear();
        txn.final_at = None;
        txn.retx_at = None;
        txn.retx_interval = RETX_INITIAL_NS;
        txn.expires = now.saturating_add(self.t_hist);
        txn.scheduled = None;
        if delayed {
            // Written over the final response in resp_buf, which is already copied.
            let provisional = self.write(100, tid, b"Pending", &[], None);
            let Some(txn) = self.history.get_mut(i) else {
                return;
            };
            if let Some(p) = provisional {
                txn.provisional.extend_from_slice(&self.resp_buf[..p]);
                out.push(src, &txn.provisional);
                self.stats.provisional_sent += 1;
            }
            let at = now.saturating_add(self.delay);
            txn.final_at = Some(at);
            txn.expires = at.saturating_add(self.t_hist);
        } else {
            out.push(src, &txn.response);
        }
        self.schedule(i);
        self.order_push(i, seq);
    }

    /// Runs due timers: held final responses, their retransmissions, history expiry.
    pub fn on_timer(&mut self, now_ns: u64, out: &mut Outbox) {
        let mut due = std::mem::take(&mut self.due);
        loop {
            due.clear();
            self.wheel.expire(now_ns, &mut due);
            if due.is_empty() {
                break;
            }
            for &d in &due {
                let i = d as u32;
                let Some(txn) = self.history.get_mut(i) else {
                    continue;
                };
                txn.timer = None;
                txn.scheduled = None;
                if !txn.in_use {
                    continue;
                }
                if txn.expires <= now_ns {
                    self.forget(i);
                    continue;
                }
                let Some(txn) = self.history.get_mut(i) else {
                    continue;
                };
                if txn.final_at.is_some_and(|a| a <= now_ns) {
                    txn.final_at = None;
                    out.push(txn.dst, &txn.response);
                    txn.retx_at = Some(now_ns.saturating_add(txn.retx_interval));
                } else if txn.retx_at.is_some_and(|a| a <= now_ns) {
                    out.push(txn.dst, &txn.response);
                    self.stats.retransmissions_sent += 1;
                    txn.retx_interval = txn.retx_interval.saturating_mul(2).min(RETX_MAX_NS);
                    txn.retx_at = Some(now_ns.saturating_add(txn.retx_interval));
                }
                self.schedule(i);
            }
        }
        self.due = due;
    }

    /// A fresh connection id (lowercase hex) into `id`.
    fn new_conn_id(&mut self, id: &mut [u8; wire::tag::TAG_LEN]) -> usize {
        self.counter += 1;
        // A counter from a random start: the tag keeps 48 bits of it, unique for 2^48 ids
        // (a mixed counter would collide, by the birthday bound, once live ids reach ~2^24).
        let nonce = mix(self.id_seed).wrapping_add(self.counter);
        match wire::tag::encode(&self.cfg.tag_key, self.cfg.id, nonce, id) {
            Ok(n) => n,
            Err(_) => {
                // Plain hex of the nonce (16 digits fit the 32-byte buffer).
                let mut o = Out::new(id);
                let _ = o.put_hex(nonce, 16);
                let hex = o.len();
                // Without leading zeros, as `{:x}` wrote it before.
                let zeros = id[..hex.saturating_sub(1)]
                    .iter()
                    .take_while(|&&b| b == b'0')
                    .count();
                id.copy_within(zeros..hex, 0);
                hex - zeros
            }
        }
    }

    fn conn_sdp(&mut self, slot: u32) {
        let Some(c) = self.conns.get(slot).filter(|c| c.in_use) else {
            return;
        };
        let params = SdpParams {
            addr: &self.sdp_addr,
            port: c.port,
            session_id: c.session_id,
            version: c.sdp_version,
            codec: (c.codec.1, c.codec.0),
            ptime: c.ptime,
            direction: Some(sdp_direction(c.mode)),
        };
        let offer = c.has_remote.then_some(c.remote_sdp.as_slice());
        write_sdp(&mut self.sdp_buf, offer, &params);
    }

    /// The slot of the call whose (lowercased) id is in `key_buf`: the head of its chain.
    fn call_head(&self) -> Option<u32> {
        self.call_head_keyed(id_key(&self.hasher, &self.key_buf))
    }

    /// [`Gateway::call_head`] with `key_buf` already hashed into `key`.
    fn call_head_keyed(&self, key: Key) -> Option<u32> {
        let head = self.call_index.get(&key)?;
        self.conns
            .get(head)
            .filter(|c| c.in_use && c.linked && c.call_id == self.key_buf)
            .map(|_| head)
    }

    fn crcx(&mut self, msg: &Message<'_>, local: &[u8]) -> Answer {
        let units = match self.units_hint.take() {
            Some(u) => u,
            None => msg.session_size(&self.cfg.session_size),
        };
        let reject = |gw: &mut Self, code, text| {
            gw.load.rejected(units);
            Answer::code(code, text)
        };
        let Some(call) = msg.param(b'C').filter(|c| !c.is_empty()) else {
            return reject(self, 516, "Missing CallId");
        };
        let Some(m) = msg.param(b'M') else {
            return reject(self, 510, "Missing ConnectionMode");
        };
        let Some(mode) = mode(m) else {
            return reject(self, 517, "Unsupported mode");
        };
        let lo = match msg.param(b'L').map(local_options).transpose() {
            Ok(lo) => lo.unwrap_or_default(),
            Err(e) => return reject(self, e.0, e.1),
        };
        if local.contains(&b'*') {
            return reject(self, 510, "All-of wildcard not allowed in CRCX");
        }
        if self.conns.is_full() || self.conn_index.is_full() || self.call_index.is_full() {
            self.stats.connections_full += 1;
            debug!("MGCP connection table full: 502");
            return reject(self, 502, "Insufficient resources");
        }
        let Some(port) = self.ports.alloc() else {
            debug!("MGCP media ports exhausted: 502");
            return reject(self, 502, "Insufficient resources");
        };
        let Some(slot) = self.conns.alloc() else {
            // Checked above; unreachable, but the port goes back.
            self.ports.free(port);
            self.stats.connections_full += 1;
            return reject(self, 502, "Insufficient resources");
        };
        let mut id = [0u8; wire::tag::TAG_LEN];
        let id_len = self.new_conn_id(&mut id);
        let id = &id[..id_len];
        let conn_key = id_key(&self.hasher, id);
        if self.conn_index.insert(conn_key, slot).is_err() {
            self.conns.free(slot);
            self.ports.free(port);
            self.stats.connections_full += 1;
            return reject(self, 502, "Insufficient resources");
        }
        // The answer's I: and Z: (the endpoint in its own case, `$` resolved).
        let mut ans = Answer::ok(true);
        ans.param(b"I", &mut self.pbuf, id);
        let z = self.pbuf.len();
        match local.iter().position(|&b| b == b'$') {
            Some(i) => {
                self.pbuf.extend_from_slice(&local[..i]);
                put_u64(&mut self.pbuf, self.counter);
                self.pbuf.extend_from_slice(&local[i + 1..]);
            }
            None => self.pbuf.extend_from_slice(local),
        }
        let endpoint_end = self.pbuf.len();
        lower_into(&mut self.key_buf, call);
        let call_key = id_key(&self.hasher, &self.key_buf);
        let head = self.call_head_keyed(call_key);
        let collides = head.is_none() && self.call_index.contains(&call_key);
        let Some(c) = self.conns.get_mut(slot) else {
            return reject(self, 502, "Insufficient resources");
        };
        c.in_use = true;
        c.id.clear();
        c.id.extend_from_slice(id);
        c.id_key = conn_key;
        c.call_key = call_key;
        c.call_id.clear();
        c.call_id.extend_from_slice(&self.key_buf);
        lower_into(
            &mut c.endpoint,
            self.pbuf.get(z..endpoint_end).unwrap_or_default(),
        );
        c.mode = mode;
        c.port = port;
        c.units = units;
        c.notified.clear();
        c.notified
            .extend_from_slice(msg.param(b'N').unwrap_or_default());
        c.codec = lo.codec.unwrap_or(("PCMU", 0));
        c.ptime = lo.ptime;
        c.remote_sdp.clear();
        c.has_remote = false;
        if let Some(sdp) = msg.sdp().filter(|s| !s.trim_ascii().is_empty()) {
            c.remote_sdp.extend_from_slice(sdp);
            c.has_remote = true;
        }
        c.session_id = self.counter;
        c.sdp_version = 1;
        c.call_prev = NIL;
        c.call_next = head.unwrap_or(NIL);
        // A different call id under the same key (2⁻¹²⁸): reachable by id and endpoint only.
        c.linked = !collides;
        if !collides {
            if let Some(h) = head.and_then(|h| self.conns.get_mut(h)) {
                h.call_prev = slot;
            }
            // Never full here: checked above, and replacing the head adds no entry.
            let _ = self.call_index.insert(call_key, slot);
        }
        self.pbuf.extend_from_slice(&self.domain);
        ans.param_from(b"Z", &self.pbuf, z);
        if let Some(n) = msg.param(b'N') {
            self.notified.clear();
            self.notified.extend_from_slice(n);
        }
        self.load.started(units);
        self.stats.connections_created += 1;
        self.conn_sdp(slot);
        ans
    }

    /// The connection named by `I:` (and consistent with `C:`), or the error answer.
    fn find_conn(&mut self, msg: &Message<'_>) -> Result<u32, (u16, &'static str)> {
        let Some(i) = msg.param(b'I') else {
            return Err((515, "Missing ConnectionId"));
        };
        lower_into(&mut self.key_buf, i);
        let c = self
            .conn_index
            .get(&id_key(&self.hasher, &self.key_buf))
            .and_then(|s| self.conns.get(s).map(|c| (s, c)))
            .filter(|(_, c)| c.in_use && c.id == self.key_buf);
        let Some((slot, c)) = c else {
            return Err((515, "Incorrect connection-id"));
        };
        if let Some(call) = msg.param(b'C') {
            if !call.eq_ignore_ascii_case(&c.call_id) {
                return Err((516, "Unknown or illegal call-id"));
            }
        }
        Ok(slot)
    }

    fn mdcx(&mut self, msg: &Message<'_>) -> Answer {
        let slot = match self.find_conn(msg) {
            Ok(s) => s,
            Err((code, text)) => return Answer::code(code, text),
        };
        let new_mode = match msg.param(b'M').map(mode) {
            Some(None) => return Answer::code(517, "Unsupported mode"),
            Some(Some(m)) => Some(m),
            None => None,
        };
        let lo = match msg.param(b'L').map(local_options).transpose() {
            Ok(lo) => lo,
            Err(e) => return Answer::code(e.0, e.1),
        };
        let Some(c) = self.conns.get_mut(slot) else {
            return Answer::code(515, "Incorrect connection-id");
        };
        if let Some(m) = new_mode {
            c.mode = m;
        }
        if let Some(lo) = lo {
            if let Some(codec) = lo.codec {
                c.codec = codec;
            }
            if lo.ptime.is_some() {
                c.ptime = lo.ptime;
            }
        }
        if let Some(n) = msg.param(b'N') {
            c.notified.clear();
            c.notified.extend_from_slice(n);
        }
        if let Some(sdp) = msg.sdp().filter(|s| !s.trim_ascii().is_empty()) {
            c.remote_sdp.clear();
            c.remote_sdp.extend_from_slice(sdp);
            c.has_remote = true;
        }
        c.sdp_version += 1;
        self.conn_sdp(slot);
        Answer::ok(true)
    }

    /// Deletes the live connection in `slot`: out of its call's chain and the id index, its
    /// port and units released, the slot (and its buffers) kept for the next CRCX.
    fn delete(&mut self, slot: u32) -> bool {
        let Some(c) = self.conns.get_mut(slot).filter(|c| c.in_use) else {
            return false;
        };
        c.in_use = false;
        let (prev, next, linked, port, units) =
            (c.call_prev, c.call_next, c.linked, c.port, c.units);
        c.call_prev = NIL;
        c.call_next = NIL;
        let (id_k, call_k) = (c.id_key, c.call_key);
        if self.conn_index.get(&id_k) == Some(slot) {
            self.conn_index.remove(&id_k);
        }
        if linked {
            if let Some(p) = self.conns.get_mut(prev) {
                p.call_next = next;
            } else if next == NIL {
                self.call_index.remove(&call_k);
            } else {
                // It was the head: the next connection of the call heads the chain now.
                let _ = self.call_index.insert(call_k, next);
            }
            if let Some(n) = self.conns.get_mut(next) {
                n.call_prev = prev;
            }
        }
        self.conns.free(slot);
        self.ports.free(port);
        self.load.ended(units);
        self.stats.connections_deleted += 1;
        true
    }

    fn dlcx(&mut self, msg: &Message<'_>, local: &[u8]) -> Answer {
        let mut deleted = 0usize;
        if msg.param(b'I').is_some() {
            let slot = match self.find_conn(msg) {
                Ok(s) => s,
                Err((code, text)) => return Answer::code(code, text),
            };
            self.delete(slot);
            deleted = 1;
        } else if let Some(call) = msg.param(b'C') {
            lower_into(&mut self.key_buf, call);
            let Some(mut s) = self.call_head() else {
                return Answer::code(516, "Unknown or illegal call-id");
            };
            while let Some(c) = self.conns.get(s) {
                let next = c.call_next;
                if endpoint_matches(local, &c.endpoint) && self.delete(s) {
                    deleted += 1;
                }
                s = next;
            }
        } else {
            let slots = u32::try_from(self.conns.slots()).unwrap_or(u32::MAX);
            for s in 0..slots {
                let hit = self
                    .conns
                    .get(s)
                    .is_some_and(|c| c.in_use && endpoint_matches(local, &c.endpoint));
                if hit && self.delete(s) {
                    deleted += 1;
                }
            }
        }
        let mut ans = Answer::code(250, "Connection was deleted");
        if deleted == 1 {
            ans.param(b"P", &mut self.pbuf, CONN_PARAMS);
        }
        ans
    }

    fn aucx(&mut self, msg: &Message<'_>) -> Answer {
        let slot = match self.find_conn(msg) {
            Ok(s) => s,
            Err((code, text)) => return Answer::code(code, text),
        };
        let Some(c) = self.conns.get(slot) else {
            return Answer::code(515, "Incorrect connection-id");
        };
        let mut ans = Answer::ok(false);
        let pbuf = &mut self.pbuf;
        for f in requested(msg) {
            let is = |code: &[u8]| f.eq_ignore_ascii_case(code);
            if is(b"C") {
                ans.param(b"C", pbuf, &c.call_id);
            } else if is(b"N") {
                ans.param(b"N", pbuf, &c.notified);
            } else if is(b"M") {
                ans.param(b"M", pbuf, c.mode.as_bytes());
            } else if is(b"L") {
                let start = pbuf.len();
                pbuf.extend_from_slice(b"a:");
                pbuf.extend_from_slice(c.codec.0.as_bytes());
                if let Some(p) = c.ptime {
                    pbuf.extend_from_slice(b", p:");
                    put_u64(pbuf, u64::from(p));
                }
                ans.param_from(b"L", pbuf, start);
            } else if is(b"P") {
                ans.param(b"P", pbuf, CONN_PARAMS);
            } else if is(b"LC") {
                ans.sdp = true;
            }
        }
        if ans.sdp {
            self.conn_sdp(slot);
        }
        ans
    }

    fn auep(&mut self, msg: &Message<'_>, local: &[u8]) -> Answer {
        let mut ans = Answer::ok(false);
        for f in requested(msg) {
            if f.eq_ignore_ascii_case(b"I") {
                self.listed.clear();
                let slots = u32::try_from(self.conns.slots()).unwrap_or(u32::MAX);
                for s in 0..slots {
                    if self
                        .conns
                        .get(s)
                        .is_some_and(|c| c.in_use && endpoint_matches(local, &c.endpoint))
                    {
                        self.listed.push(s);
                    }
                }
                let conns = &self.conns;
                let id = |s: &u32| conns.get(*s).map(|c| c.id.as_slice()).unwrap_or_default();
                self.listed.sort_by(|a, b| id(a).cmp(id(b)));
                let start = self.pbuf.len();
                for (k, s) in self.listed.iter().enumerate() {
                    if k > 0 {
                        self.pbuf.extend_from_slice(b", ");
                    }
                    self.pbuf.extend_from_slice(id(s));
                }
                if self.pbuf.len() > start {
                    ans.param_from(b"I", &self.pbuf, start);
                }
            } else if f.eq_ignore_ascii_case(b"N") {
                ans.param(b"N", &mut self.pbuf, &self.notified);
            } else if f.eq_ignore_ascii_case(b"A") {
                ans.param(b"A", &mut self.pbuf, CAPABILITIES);
            }
        }
        ans
    }
}

#[cfg(test)]
mod tests;
