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
//! [`HISTORY_PER_PORT`] × the media ports (the command rate × T-HIST it must hold); when it is
//! full a new command is answered `409` (internal overload) without being executed, so a
//! retransmission of it is answered the same way and nothing runs twice.
mod options;

use std::{collections::HashMap, fmt::Write as _, net::SocketAddr, sync::Arc, time::Duration};

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
    sdp::{write_sdp, SdpParams},
    table::{KeyHasher, Slab, Table},
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
    /// (fixed size, see the module docs) was full.
    #[serde(default)]
    pub history_full: u64,
}

#[derive(Debug)]
struct Conn {
    call_id: Vec<u8>,
    endpoint: Vec<u8>,
    mode: &'static str,
    port: u16,
    units: u32,
    notified: Vec<u8>,
    codec: (&'static str, u8),
    ptime: Option<u32>,
    remote_sdp: Option<Vec<u8>>,
    session_id: u64,
    sdp_version: u64,
}

/// One command transaction in the history (a reused slab slot).
#[derive(Debug)]
struct Txn {
    /// Its (source, transaction id), compared exactly on every lookup.
    key: TxnKey,
    /// Live (else a free slot keeping its buffers).
    in_use: bool,
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
            in_use: false,
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

/// The outcome of executing one command.
struct Answer {
    code: u16,
    commentary: &'static str,
    params: Vec<(&'static [u8], Vec<u8>)>,
    sdp: bool,
}

impl Answer {
    fn code(code: u16, commentary: &'static str) -> Self {
        Self {
            code,
            commentary,
            params: Vec::new(),
            sdp: false,
        }
    }
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
    conns: HashMap<Vec<u8>, Conn>,
    by_call: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    hasher: KeyHasher,
    history_index: Table,
    history: Slab<Txn>,
    wheel: Wheel,
    due: Vec<u64>,
    /// Session size the dispatcher computed for the datagram being handled (its first CRCX).
    units_hint: Option<u32>,
    notified: Vec<u8>,
    id_seed: u64,
    counter: u64,
    sdp_buf: Vec<u8>,
    resp_buf: Vec<u8>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn lower(v: &[u8]) -> Vec<u8> {
    v.to_ascii_lowercase()
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
        Self {
            limits: Limits::default(),
            t_hist: ns(cfg.t_hist),
            delay: ns(cfg.answer_delay),
            load: LoadAccount::new(load),
            ports,
            stats: GatewayStats::default(),
            conns: HashMap::new(),
            by_call: HashMap::new(),
            hasher: KeyHasher::new([mix(seed ^ 1), mix(seed ^ 2)]),
            history_index: Table::with_capacity(history),
            history: Slab::with_capacity(history),
            wheel: Wheel::with_capacity(history),
            due: Vec::with_capacity(64),
            units_hint: None,
            notified: Vec::new(),
            id_seed: seed,
            counter: 0,
            sdp_buf: Vec::with_capacity(512),
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

    fn table_key(&self, (src, tid): TxnKey) -> crate::table::Key {
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
        let i = self.history_index.get(&self.table_key(key))?;
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
        let key = t.key;
        if let Some(id) = t.timer.take() {
            self.wheel.cancel(id);
        }
        let tk = self.table_key(key);
        if self.history_index.get(&tk) == Some(i) {
            self.history_index.remove(&tk);
        }
        self.history.free(i);
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
        let msg = match Message::parse(seg, &self.limits) {
            Ok(m) => m,
            Err(e) => {
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
                return;
            }
        };
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
        if let Some(t) = self.find((src, tid)).and_then(|i| self.history.get(i)) {
            self.stats.retransmissions_absorbed += 1;
            let bytes = if t.final_at.is_some() {
                &t.provisional
            } else {
                &t.response
            };
            out.push(t.dst, bytes);
            return;
        }
        if self.history.is_full() || self.history_index.is_full() {
            // No room to remember the answer: refuse without executing, so that a
            // retransmission is refused too and nothing runs twice.
            self.stats.history_full += 1;
            debug!("MGCP history full: 409");
            self.send_now(src, 409, tid, b"Internal overload", &[], None, out);
            return;
        }
        self.stats.commands += 1;
        if (version.major, version.minor) != (1, 0) {
            self.stats.malformed += 1;
            let ans = Answer::code(528, "Incompatible protocol version");
            self.finish(now, src, tid, ans, false, out);
            return;
        }
        let local = endpoint.local;
        let ans = match verb {
            Verb::Crcx => self.crcx(&msg, local),
            Verb::Mdcx => self.mdcx(&msg),
            Verb::Dlcx => self.dlcx(&msg, local),
            Verb::Aucx => self.aucx(&msg),
            Verb::Auep => self.auep(&msg, local),
            Verb::Rqnt | Verb::Epcf => {
                if let Some(n) = msg.param(b'N') {
                    self.notified = n.to_vec();
                }
                Answer::code(200, "OK")
            }
            Verb::Ntfy | Verb::Rsip | Verb::Other(_) => {
                Answer::code(504, "Unknown or unsupported command")
            }
        };
        let delayed = self.delay > 0 && matches!(verb, Verb::Crcx | Verb::Mdcx) && ans.code < 300;
        self.finish(now, src, tid, ans, delayed, out);
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

    fn finish(
        &mut self,
        now: u64,
        src: SocketAddr,
        tid: u32,
        ans: Answer,
        delayed: bool,
        out: &mut Outbox,
    ) {
        if ans.code >= 400 {
            self.stats.errors += 1;
        }
        let mut params: Vec<(&[u8], &[u8])> =
            ans.params.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        if delayed {
            params.push((b"K", b""));
        }
        let sdp = std::mem::take(&mut self.sdp_buf);
        let n = self.write(
            ans.code,
            tid,
            ans.commentary.as_bytes(),
            &params,
            ans.sdp.then_some(sdp.as_slice()),
        );
        self.sdp_buf = sdp;
        let Some(n) = n else { return };
        let key = (src, tid);
        let Some(i) = self.history.alloc() else {
            // Checked before executing; unreachable, but the answer still goes out.
            out.push(src, &self.resp_buf[..n]);
            return;
        };
        if self.history_index.insert(self.table_key(key), i).is_err() {
            self.history.free(i);
            out.push(src, &self.resp_buf[..n]);
            return;
        }
        let Some(txn) = self.history.get_mut(i) else {
            return;
        };
        txn.key = key;
        txn.in_use = true;
        txn.timer = None;
        txn.dst = src;
        txn.response.clear();
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

    fn new_conn_id(&mut self) -> Vec<u8> {
        self.counter += 1;
        let mut buf = [0u8; wire::tag::TAG_LEN];
        // A counter from a random start: the tag keeps 48 bits of it, unique for 2^48 ids
        // (a mixed counter would collide, by the birthday bound, once live ids reach ~2^24).
        let nonce = mix(self.id_seed).wrapping_add(self.counter);
        match wire::tag::encode(&self.cfg.tag_key, self.cfg.id, nonce, &mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => format!("{nonce:x}").into_bytes(),
        }
    }

    /// `name@[ip]:port`: the specific endpoint, in this processor's own domain.
    fn specific_endpoint(&self, local: &[u8]) -> Vec<u8> {
        let mut v = local.to_vec();
        let _ = write!(
            Wr(&mut v),
            "@[{}]:{}",
            self.cfg.addr.ip(),
            self.cfg.addr.port()
        );
        v
    }

    fn conn_sdp(&mut self, conn_id: &[u8]) {
        let Some(c) = self.conns.get(conn_id) else {
            return;
        };
        let params = SdpParams {
            ip: self.cfg.addr.ip(),
            port: c.port,
            session_id: c.session_id,
            version: c.sdp_version,
            codec: (c.codec.1, c.codec.0),
            ptime: c.ptime,
            direction: Some(sdp_direction(c.mode)),
        };
        write_sdp(&mut self.sdp_buf, c.remote_sdp.as_deref(), &params);
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
        let Some(port) = self.ports.alloc() else {
            debug!("MGCP media ports exhausted: 502");
            return reject(self, 502, "Insufficient resources");
        };
        let conn_id = self.new_conn_id();
        let endpoint = match local.iter().position(|&b| b == b'$') {
            Some(i) => {
                let mut v = local[..i].to_vec();
                let _ = write!(Wr(&mut v), "{}", self.counter);
                v.extend_from_slice(&local[i + 1..]);
                v
            }
            None => local.to_vec(),
        };
        let call = lower(call);
        if let Some(n) = msg.param(b'N') {
            self.notified = n.to_vec();
        }
        self.conns.insert(
            conn_id.clone(),
            Conn {
                call_id: call.clone(),
                endpoint: lower(&endpoint),
                mode,
                port,
                units,
                notified: msg.param(b'N').unwrap_or_default().to_vec(),
                codec: lo.codec.unwrap_or(("PCMU", 0)),
                ptime: lo.ptime,
                remote_sdp: msg
                    .sdp()
                    .filter(|s| !s.trim_ascii().is_empty())
                    .map(<[u8]>::to_vec),
                session_id: self.counter,
                sdp_version: 1,
            },
        );
        self.by_call.entry(call).or_default().push(conn_id.clone());
        self.load.started(units);
        self.stats.connections_created += 1;
        self.conn_sdp(&conn_id);
        let z = self.specific_endpoint(&endpoint);
        Answer {
            code: 200,
            commentary: "OK",
            params: vec![(b"I", conn_id), (b"Z", z)],
            sdp: true,
        }
    }

    /// The connection named by `I:` (and consistent with `C:`), or the error answer.
    fn find_conn(&self, msg: &Message<'_>) -> Result<Vec<u8>, Answer> {
        let Some(i) = msg.param(b'I') else {
            return Err(Answer::code(515, "Missing ConnectionId"));
        };
        let id = lower(i);
        let Some(c) = self.conns.get(&id) else {
            return Err(Answer::code(515, "Incorrect connection-id"));
        };
        if let Some(call) = msg.param(b'C') {
            if !call.eq_ignore_ascii_case(&c.call_id) {
                return Err(Answer::code(516, "Unknown or illegal call-id"));
            }
        }
        Ok(id)
    }

    fn mdcx(&mut self, msg: &Message<'_>) -> Answer {
        let id = match self.find_conn(msg) {
            Ok(id) => id,
            Err(a) => return a,
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
        let Some(c) = self.conns.get_mut(&id) else {
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
            c.notified = n.to_vec();
        }
        if let Some(sdp) = msg.sdp().filter(|s| !s.trim_ascii().is_empty()) {
            c.remote_sdp = Some(sdp.to_vec());
        }
        c.sdp_version += 1;
        self.conn_sdp(&id);
        Answer {
            code: 200,
            commentary: "OK",
            params: Vec::new(),
            sdp: true,
        }
    }

    fn delete(&mut self, id: &[u8]) -> bool {
        let Some(c) = self.conns.remove(id) else {
            return false;
        };
        if let Some(v) = self.by_call.get_mut(&c.call_id) {
            v.retain(|x| x != id);
            if v.is_empty() {
                self.by_call.remove(&c.call_id);
            }
        }
        self.ports.free(c.port);
        self.load.ended(c.units);
        self.stats.connections_deleted += 1;
        true
    }

    fn dlcx(&mut self, msg: &Message<'_>, local: &[u8]) -> Answer {
        if msg.param(b'I').is_some() {
            let id = match self.find_conn(msg) {
                Ok(id) => id,
                Err(a) => return a,
            };
            self.delete(&id);
            return Answer {
                code: 250,
                commentary: "Connection was deleted",
                params: vec![(b"P", CONN_PARAMS.to_vec())],
                sdp: false,
            };
        }
        let victims: Vec<Vec<u8>> = match msg.param(b'C') {
            Some(call) => {
                let Some(ids) = self.by_call.get(&lower(call)) else {
                    return Answer::code(516, "Unknown or illegal call-id");
                };
                ids.iter()
                    .filter(|id| {
                        self.conns
                            .get(*id)
                            .is_some_and(|c| endpoint_matches(local, &c.endpoint))
                    })
                    .cloned()
                    .collect()
            }
            None => self
                .conns
                .iter()
                .filter(|(_, c)| endpoint_matches(local, &c.endpoint))
                .map(|(id, _)| id.clone())
                .collect(),
        };
        let single = victims.len() == 1;
        for id in &victims {
            self.delete(id);
        }
        Answer {
            code: 250,
            commentary: "Connection was deleted",
            params: if single {
                vec![(b"P", CONN_PARAMS.to_vec())]
            } else {
                Vec::new()
            },
            sdp: false,
        }
    }

    /// The requested-info codes of `F:` (`C,N,L,M,LC,P`), trimmed and uppercased.
    fn requested(msg: &Message<'_>) -> Vec<Vec<u8>> {
        msg.param(b'F')
            .map(|f| {
                f.split(|&b| b == b',')
                    .map(|x| x.trim_ascii().to_ascii_uppercase())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn aucx(&mut self, msg: &Message<'_>) -> Answer {
        let id = match self.find_conn(msg) {
            Ok(id) => id,
            Err(a) => return a,
        };
        let Some(c) = self.conns.get(&id) else {
            return Answer::code(515, "Incorrect connection-id");
        };
        let mut params: Vec<(&'static [u8], Vec<u8>)> = Vec::new();
        let mut sdp = false;
        for f in Self::requested(msg) {
            match f.as_slice() {
                b"C" => params.push((b"C", c.call_id.clone())),
                b"N" => params.push((b"N", c.notified.clone())),
                b"M" => params.push((b"M", c.mode.as_bytes().to_vec())),
                b"L" => {
                    let mut v = format!("a:{}", c.codec.0);
                    if let Some(p) = c.ptime {
                        let _ = write!(v, ", p:{p}");
                    }
                    params.push((b"L", v.into_bytes()));
                }
                b"P" => params.push((b"P", CONN_PARAMS.to_vec())),
                b"LC" => sdp = true,
                _ => {}
            }
        }
        if sdp {
            self.conn_sdp(&id);
        }
        Answer {
            code: 200,
            commentary: "OK",
            params,
            sdp,
        }
    }

    fn auep(&mut self, msg: &Message<'_>, local: &[u8]) -> Answer {
        let mut params: Vec<(&'static [u8], Vec<u8>)> = Vec::new();
        for f in Self::requested(msg) {
            match f.as_slice() {
                b"I" => {
                    let mut ids: Vec<&Vec<u8>> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| endpoint_matches(local, &c.endpoint))
                        .map(|(id, _)| id)
                        .collect();
                    ids.sort();
                    let v = ids
                        .iter()
                        .map(|i| String::from_utf8_lossy(i).into_owned())
                        .collect::<Vec<_>>()
                        .join(", ");
                    if !v.is_empty() {
                        params.push((b"I", v.into_bytes()));
                    }
                }
                b"N" => params.push((b"N", self.notified.clone())),
                b"A" => params.push((b"A", CAPABILITIES.to_vec())),
                _ => {}
            }
        }
        Answer {
            code: 200,
            commentary: "OK",
            params,
            sdp: false,
        }
    }
}

/// `fmt::Write` into a byte vector.
struct Wr<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Wr<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
