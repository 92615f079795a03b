//! The MGCP call-agent state machine (sans-IO): CRCX → 200 → MDCX → 200 → (hold) → DLCX → 250.
//!
//! The CRCX goes to the well-known gateway address (the dispatcher); MDCX and DLCX go to the
//! processor that answered, named by the `Z:` specific endpoint `name@[ip]:port` of the CRCX
//! answer (or, without a port there, the source address of the answer), and they address
//! that endpoint and the `I:` connection id it returned.
//!
//! Transaction ids carry the call slot: `tid = slot + 1 + max_calls·k`, so a response finds its
//! call in O(1). Commands are retransmitted on timeout (RFC 3435 §3.5: 200 ms initial, doubling,
//! at most 4 s apart) until the timeout, which counts a failure. A provisional response (1xx)
//! stops retransmission of that command.
//!
//! This module is the state machine; the bytes of every command are written in `build`.
use std::net::SocketAddr;

use serde::Serialize;
use wire::{
    mgcp::{split_piggybacked, Kind, Message},
    Limits,
};

mod build;

use crate::{
    engine::{Engine, Progress},
    hist::Latency,
    net::Outbox,
    timers::{earliest, Fifo},
};

/// Initial retransmission timeout.
pub const RTO_INIT_NS: u64 = 200_000_000;
/// Largest retransmission interval (RTO-MAX).
pub const RTO_MAX_NS: u64 = 4_000_000_000;
const MAX_TID: u64 = 999_999_999;
const ID_CAP: usize = 40;
const EP_CAP: usize = 96;

/// What the call agent sends.
#[derive(Debug, Clone)]
pub struct MgcpConfig {
    /// The gateway's well-known address (CRCX destination).
    pub target: SocketAddr,
    /// Local source sockets.
    pub locals: Vec<SocketAddr>,
    /// Endpoint local name for CRCX (`ds/$`: any-of, the gateway picks).
    pub endpoint: String,
    /// Time between the MDCX answer and DLCX.
    pub hold_ns: u64,
    /// `X-Size` session size parameter, if any.
    pub session_size: Option<u32>,
    /// SDP offer bytes on the CRCX (`None`: none; else a minimal SDP padded to this).
    pub sdp_bytes: Option<usize>,
    /// Call slots.
    pub max_calls: u32,
    /// Give up on a command after this long.
    pub timeout_ns: u64,
    /// Initial retransmission timeout.
    pub rto_ns: u64,
    /// Largest retransmission interval.
    pub rto_max_ns: u64,
    /// Call indices this engine sees step by this much (generator threads in all: thread i
    /// starts calls i, i + N, ...), so that source sockets are chosen by `index / step` and
    /// every socket is used whatever N is.
    pub index_step: u64,
}

impl MgcpConfig {
    /// Defaults for `target`.
    pub fn new(target: SocketAddr, locals: Vec<SocketAddr>) -> Self {
        MgcpConfig {
            target,
            locals,
            endpoint: "ds/$".into(),
            hold_ns: 0,
            session_size: None,
            sdp_bytes: None,
            max_calls: 65536,
            timeout_ns: 32_000_000_000,
            rto_ns: RTO_INIT_NS,
            rto_max_ns: RTO_MAX_NS,
            index_step: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Free,
    Crcx,
    Mdcx,
    Hold,
    Dlcx,
}

#[derive(Clone)]
struct Slot {
    seq: u64,
    step: Step,
    /// Current transaction id (0 when none outstanding).
    tid: u32,
    provisional: bool,
    intended: u64,
    dst: SocketAddr,
    conn_len: u8,
    ep_len: u8,
    conn: [u8; ID_CAP],
    ep: [u8; EP_CAP],
}

/// Failures by kind.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct MgcpFailures {
    /// CRCX unanswered within the timeout.
    pub timeout_crcx: u64,
    /// MDCX unanswered.
    pub timeout_mdcx: u64,
    /// DLCX unanswered.
    pub timeout_dlcx: u64,
    /// 403 / 409 / 502 (overload, insufficient resources).
    pub overload: u64,
    /// Other 4xx.
    pub code_4xx: u64,
    /// Other 5xx.
    pub code_5xx: u64,
    /// Other final codes (3xx, 8xx...).
    pub code_other: u64,
    /// A CRCX answer without a usable `I:` connection id / `Z:` endpoint.
    pub bad_answer: u64,
    /// Calls not started: all slots busy.
    pub no_slot: u64,
    /// Datagrams that did not parse (not tied to a call).
    pub unparseable: u64,
    /// Parsed messages that fit no transaction (commands, unknown tids).
    pub unexpected: u64,
}

impl MgcpFailures {
    /// Failed calls (excluding the datagram kinds `unparseable` and `unexpected`).
    pub fn calls(&self) -> u64 {
        self.timeout_crcx
            + self.timeout_mdcx
            + self.timeout_dlcx
            + self.overload
            + self.code_4xx
            + self.code_5xx
            + self.code_other
            + self.bad_answer
            + self.no_slot
    }
}

/// Retransmissions by verb.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct MgcpRetransmissions {
    /// CRCX retransmissions.
    pub crcx: u64,
    /// MDCX retransmissions.
    pub mdcx: u64,
    /// DLCX retransmissions.
    pub dlcx: u64,
}

/// Counters of a call-agent run.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct MgcpCounters {
    /// Calls started (CRCX sent first time).
    pub started: u64,
    /// Calls whose DLCX was answered 250 (or 200).
    pub completed: u64,
    /// Failures.
    pub failures: MgcpFailures,
    /// Retransmissions.
    pub retransmissions: MgcpRetransmissions,
    /// Responses for transactions already finished.
    pub stale_responses: u64,
    /// Provisional responses.
    pub provisional: u64,
    /// Messages that did not fit the send buffer.
    pub build_overflow: u64,
}

/// The call agent.
pub struct MgcpCa {
    cfg: MgcpConfig,
    limits: Limits,
    /// The next transaction id (run-wide sequence; see `new_tid`).
    next_tid: u32,
    /// Slot of each recent transaction id, indexed by `tid & (len - 1)`.
    tid_ring: Vec<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    in_flight: u64,
    crcx_ep: Vec<u8>,
    sdp: Vec<u8>,
    rtx: Vec<Fifo>,
    timeout: Fifo,
    hold: Fifo,
    /// Counters.
    pub counters: MgcpCounters,
    /// CRCX → 200 (from the intended start).
    pub crcx_200: Latency,
    /// MDCX → 200 (from sending, right after the CRCX answer).
    pub mdcx_200: Latency,
    /// DLCX → 250 (from its intended send time: the end of the hold).
    pub dlcx_250: Latency,
}

/// The `[ip]:port` (or `ip:port`) after the `@` of an endpoint name, if it has a port.
pub fn endpoint_addr(ep: &[u8]) -> Option<SocketAddr> {
    let at = ep.iter().rposition(|&b| b == b'@')?;
    let d = std::str::from_utf8(&ep[at + 1..]).ok()?;
    if let Some(rest) = d.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']')?;
        let port = tail.strip_prefix(':')?.parse().ok()?;
        return Some(SocketAddr::new(ip.parse().ok()?, port));
    }
    d.parse().ok()
}

impl MgcpCa {
    /// A call agent with everything preallocated.
    pub fn new(cfg: MgcpConfig) -> Self {
        let n = cfg.max_calls.clamp(1, 1_000_000) as usize;
        let slot = Slot {
            seq: 0,
            step: Step::Free,
            tid: 0,
            provisional: false,
            intended: 0,
            dst: cfg.target,
            conn_len: 0,
            ep_len: 0,
            conn: [0; ID_CAP],
            ep: [0; EP_CAP],
        };
        let cap = n.min(1 << 16);
        let mut rtx = Vec::new();
        let mut d = cfg.rto_ns.max(1);
        loop {
            let capped = d >= cfg.rto_max_ns;
            rtx.push(Fifo::new(d.min(cfg.rto_max_ns), cap));
            if capped || rtx.len() >= 40 {
                break;
            }
            d = d.saturating_mul(2);
        }
        let domain = match cfg.target.ip() {
            std::net::IpAddr::V4(v) => format!("[{v}]"),
            std::net::IpAddr::V6(v) => format!("[{v}]"),
        };
        let crcx_ep = format!("{}@{}", cfg.endpoint, domain).into_bytes();
        let ip = cfg
            .locals
            .first()
            .map(|a| a.ip())
            .unwrap_or(cfg.target.ip());
        let sdp = match cfg.sdp_bytes {
            None => Vec::new(),
            Some(b) => crate::sip::make_sdp(&ip, Some(b)),
        };
        MgcpCa {
            limits: Limits::default(),
            next_tid: 1,
            tid_ring: vec![u32::MAX; (cfg.max_calls.max(1) as usize * 4).next_power_of_two()],
            slots: vec![slot; n],
            free: (0..n as u32).rev().collect(),
            in_flight: 0,
            crcx_ep,
            sdp,
            rtx,
            timeout: Fifo::new(cfg.timeout_ns, cap),
            hold: Fifo::new(cfg.hold_ns, cap),
            counters: MgcpCounters::default(),
            crcx_200: Latency::new("crcx_200", "CRCX→200"),
            mdcx_200: Latency::new("mdcx_200", "MDCX→200"),
            dlcx_250: Latency::new("dlcx_250", "DLCX→250"),
            cfg,
        }
    }

    /// Largest message this configuration produces.
    pub fn msg_cap(&self) -> usize {
        512 + self.sdp.len() + EP_CAP + ID_CAP
    }

    fn sock_of(&self, seq: u64) -> usize {
        (seq / self.cfg.index_step.max(1) % self.cfg.locals.len().max(1) as u64) as usize
    }

    /// A transaction id for `slot`'s next command. RFC 3435 §3.2.1.2: an id must not repeat
    /// within three minutes (a gateway answers a repeat from its history without executing it),
    /// and slots are reused at once, so ids come from one run-wide sequence (10^9 commands
    /// before they come round) and a ring maps an id back to its slot in O(1).
    fn new_tid(&mut self, slot: u32) -> u32 {
        let tid = self.next_tid;
        self.next_tid = if tid >= MAX_TID as u32 { 1 } else { tid + 1 };
        let mask = self.tid_ring.len() - 1;
        self.tid_ring[tid as usize & mask] = slot;
        let c = &mut self.slots[slot as usize];
        c.tid = tid;
        c.provisional = false;
        tid
    }

    fn slot_of_tid(&self, tid: u32) -> Option<u32> {
        let s = *self
            .tid_ring
            .get(tid as usize & (self.tid_ring.len() - 1))?;
        (tid != 0 && self.slots.get(s as usize)?.tid == tid).then_some(s)
    }

    fn send(&mut self, slot: u32, out: &mut Outbox) {
        let c = &self.slots[slot as usize];
        let (sock, dst) = (self.sock_of(c.seq), c.dst);
        if !out.push(sock, dst, |b| self.write(b, slot).ok()) {
            self.counters.build_overflow += 1;
        }
    }

    /// Sends the slot's next command with a fresh tid, arming retransmission and timeout.
    fn command(&mut self, now: u64, slot: u32, step: Step, intended: u64, out: &mut Outbox) {
        self.slots[slot as usize].step = step;
        self.slots[slot as usize].intended = intended;
        let tid = self.new_tid(slot);
        self.send(slot, out);
        self.rtx[0].arm(now, slot, u64::from(tid));
        self.timeout.arm(now, slot, u64::from(tid));
    }

    fn release(&mut self, slot: u32) {
        let c = &mut self.slots[slot as usize];
        c.step = Step::Free;
        c.tid = 0;
        self.free.push(slot);
        self.in_flight -= 1;
    }

    fn on_message(&mut self, now: u64, src: SocketAddr, msg: &Message<'_>, out: &mut Outbox) {
        let Kind::Response { code, tid, .. } = msg.kind() else {
            self.counters.failures.unexpected += 1;
            return;
        };
        let Some(slot) = self.slot_of_tid(tid) else {
            self.counters.stale_responses += 1;
            return;
        };
        if code < 200 {
            self.counters.provisional += 1;
            self.slots[slot as usize].provisional = true;
            return;
        }
        let step = self.slots[slot as usize].step;
        if code >= 300 {
            let f = &mut self.counters.failures;
            match code {
                403 | 409 | 502 => f.overload += 1,
                400..=499 => f.code_4xx += 1,
                500..=599 => f.code_5xx += 1,
                _ => f.code_other += 1,
            }
            self.release(slot);
            return;
        }
        let lat = now.saturating_sub(self.slots[slot as usize].intended);
        match step {
            Step::Crcx => {
                self.crcx_200.record(lat);
                let conn = msg.param(b'I').unwrap_or(&[]);
                let ep = msg.param(b'Z').unwrap_or(&[]);
                if conn.is_empty() || conn.len() > ID_CAP || ep.is_empty() || ep.len() > EP_CAP {
                    self.counters.failures.bad_answer += 1;
                    self.release(slot);
                    return;
                }
                let c = &mut self.slots[slot as usize];
                c.conn[..conn.len()].copy_from_slice(conn);
                c.conn_len = conn.len() as u8;
                c.ep[..ep.len()].copy_from_slice(ep);
                c.ep_len = ep.len() as u8;
                c.dst = endpoint_addr(ep).unwrap_or(src);
                self.command(now, slot, Step::Mdcx, now, out);
            }
            Step::Mdcx => {
                self.mdcx_200.record(lat);
                if self.cfg.hold_ns == 0 {
                    self.command(now, slot, Step::Dlcx, now, out);
                } else {
                    let c = &mut self.slots[slot as usize];
                    c.step = Step::Hold;
                    c.tid = 0;
                    let seq = c.seq;
                    self.hold.arm(now, slot, seq);
                }
            }
            Step::Dlcx => {
                self.dlcx_250.record(lat);
                self.counters.completed += 1;
                self.release(slot);
            }
            Step::Hold | Step::Free => self.counters.stale_responses += 1,
        }
    }
}

impl Engine for MgcpCa {
    fn start(&mut self, now: u64, intended: u64, index: u64, out: &mut Outbox) -> bool {
        let Some(slot) = self.free.pop() else {
            self.counters.failures.no_slot += 1;
            return false;
        };
        let c = &mut self.slots[slot as usize];
        c.seq = index;
        c.dst = self.cfg.target;
        c.conn_len = 0;
        c.ep_len = 0;
        self.in_flight += 1;
        self.counters.started += 1;
        self.command(now, slot, Step::Crcx, intended, out);
        true
    }

    fn on_datagram(&mut self, now: u64, src: SocketAddr, data: &[u8], out: &mut Outbox) {
        for seg in split_piggybacked(data) {
            match Message::parse(seg, &self.limits) {
                Ok(m) => self.on_message(now, src, &m, out),
                Err(_) => self.counters.failures.unparseable += 1,
            }
        }
    }

    fn on_timers(&mut self, now: u64, out: &mut Outbox) {
        while let Some(e) = self.timeout.pop_due(now) {
            if let Some(slot) = self.slot_of_tid(e.tag as u32) {
                let f = &mut self.counters.failures;
                match self.slots[slot as usize].step {
                    Step::Crcx => f.timeout_crcx += 1,
                    Step::Mdcx => f.timeout_mdcx += 1,
                    _ => f.timeout_dlcx += 1,
                }
                self.release(slot);
            }
        }
        let last = self.rtx.len() - 1;
        for level in 0..self.rtx.len() {
            while out.room() >= 1 {
                let Some(e) = self.rtx[level].pop_due(now) else {
                    break;
                };
                let Some(slot) = self.slot_of_tid(e.tag as u32) else {
                    continue;
                };
                if self.slots[slot as usize].provisional {
                    continue;
                }
                let r = &mut self.counters.retransmissions;
                match self.slots[slot as usize].step {
                    Step::Crcx => r.crcx += 1,
                    Step::Mdcx => r.mdcx += 1,
                    _ => r.dlcx += 1,
                }
                // Same transaction id: the gateway answers a duplicate from its cache.
                self.send(slot, out);
                self.rtx[(level + 1).min(last)].arm(now, slot, e.tag);
            }
        }
        while out.room() >= 1 {
            let Some(e) = self.hold.pop_due(now) else {
                break;
            };
            let c = &self.slots[e.slot as usize];
            if c.seq != e.tag || c.step != Step::Hold {
                continue;
            }
            self.command(now, e.slot, Step::Dlcx, e.deadline, out);
        }
    }

    fn next_timer(&self) -> Option<u64> {
        earliest(self.rtx.iter().chain([&self.timeout, &self.hold]))
    }

    fn in_flight(&self) -> u64 {
        self.in_flight
    }

    fn progress(&self) -> Progress {
        let r = &self.counters.retransmissions;
        Progress {
            started: self.counters.started,
            completed: self.counters.completed,
            failed: self.counters.failures.calls(),
            retransmissions: r.crcx + r.mdcx + r.dlcx,
        }
    }

    fn histograms(&self) -> Vec<&Latency> {
        vec![&self.crcx_200, &self.mdcx_200, &self.dlcx_250]
    }
}

#[cfg(test)]
mod tests;
