//! The SIP UAC state machine (sans-IO): INVITE → (1xx) → 2xx → ACK → hold → BYE → 200.
//!
//! Time is passed in (ns from the run start) and datagrams go out through an [`Outbox`], so the
//! whole call flow, retransmission timing included, is tested with a fake clock.
//!
//! Calls live in a preallocated slot array (`--max-calls`). The Call-ID carries the slot index
//! and the call's sequence number in fixed-width hex (`<slot:8>.<seq:16>@bench`), so a response
//! finds its call in O(1) without hashing, and a late response for a finished call (same slot,
//! older sequence) is recognised as stale.
//!
//! Transactions follow RFC 3261 §17.1: INVITE is retransmitted after T1, 2·T1, 4·T1, ... until a
//! response arrives (Timer A); BYE after T1, 2·T1, ... capped at T2 = 4 s (Timer E). Both give
//! up after `timeout` (Timer B/F = 64·T1 = 32 s by default) and count a timeout failure. A
//! retransmitted 2xx (our ACK was lost) is answered with the ACK again.
//!
//! This module is the state machine; the bytes of every request (and the Call-ID format) are
//! written in `build`.
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use wire::{
    sip::{Kind, Message, Method},
    Limits,
};

mod build;

pub use build::{decode_call_id, make_sdp};
use build::{host, hostport};

use crate::{
    engine::{Engine, Progress},
    hist::Latency,
    net::Outbox,
    timers::{earliest, parse_hex, Fifo},
};

/// T1 (RFC 3261): 500 ms.
pub const T1_NS: u64 = 500_000_000;
/// T2 (RFC 3261): 4 s.
pub const T2_NS: u64 = 4_000_000_000;
const URI_CAP: usize = 128;
const TAG_CAP: usize = 64;

/// Where ACK and BYE go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckByeTo {
    /// The host:port in the 2xx's Contact (what a real UA does, RFC 3261 §12.1.2).
    Contact,
    /// The INVITE's target (the dispatcher).
    Target,
}

/// What the UAC sends and how long it waits.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// Where INVITEs go (the dispatcher's well-known address).
    pub target: SocketAddr,
    /// Local address of each source socket (for Via/Contact).
    pub locals: Vec<SocketAddr>,
    /// ACK/BYE destination.
    pub ack_bye_to: AckByeTo,
    /// Time between ACK and BYE.
    pub hold_ns: u64,
    /// SDP body size: `None` for a minimal SDP, `Some(0)` for no body, else padded to this.
    pub sdp_bytes: Option<usize>,
    /// `X-Session-Size` header value, if any.
    pub session_size: Option<u32>,
    /// Call slots (calls in flight at most).
    pub max_calls: u32,
    /// Give up on a transaction after this long (Timer B / F).
    pub timeout_ns: u64,
    /// T1.
    pub t1_ns: u64,
    /// T2.
    pub t2_ns: u64,
    /// Fire-and-forget: send the INVITE only, keep no state (`blast`).
    pub blast: bool,
    /// Extra bytes appended to each INVITE as an `X-Pad` header (`blast --bytes`).
    pub pad_bytes: usize,
    /// Call indices this engine sees step by this much (generator threads in all: thread i
    /// starts calls i, i + N, ...), so that source sockets are chosen by `index / step` and
    /// every socket is used whatever N is.
    pub index_step: u64,
}

impl SipConfig {
    /// Defaults for `target` with the given source sockets.
    pub fn new(target: SocketAddr, locals: Vec<SocketAddr>) -> Self {
        SipConfig {
            target,
            locals,
            ack_bye_to: AckByeTo::Contact,
            hold_ns: 0,
            sdp_bytes: None,
            session_size: None,
            max_calls: 65536,
            timeout_ns: 64 * T1_NS,
            t1_ns: T1_NS,
            t2_ns: T2_NS,
            blast: false,
            pad_bytes: 0,
            index_step: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    /// INVITE sent, nothing heard.
    Inviting,
    /// A provisional arrived: retransmissions stop.
    Proceeding,
    /// 2xx ACKed, waiting for the hold timer.
    Holding,
    /// BYE sent.
    Byeing,
}

#[derive(Clone)]
struct Slot {
    seq: u64,
    state: State,
    intended: u64,
    bye_intended: u64,
    rtx_level: u8,
    contact: SocketAddr,
    uri_len: u8,
    tag_len: u8,
    uri: [u8; URI_CAP],
    to_tag: [u8; TAG_CAP],
}

/// Call failures by kind, and datagrams the UAC could not use.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SipFailures {
    /// INVITE without a final response within the timeout.
    pub timeout_invite: u64,
    /// BYE without a final response within the timeout.
    pub timeout_bye: u64,
    /// INVITE answered 503 (overload).
    pub status_503: u64,
    /// INVITE answered 4xx.
    pub status_4xx: u64,
    /// INVITE answered 5xx other than 503.
    pub status_5xx: u64,
    /// INVITE answered 6xx.
    pub status_6xx: u64,
    /// BYE answered with a non-2xx final response.
    pub bye_error: u64,
    /// A 2xx whose Contact could not be used (no numeric host:port); the call is abandoned.
    pub bad_contact: u64,
    /// Calls not started because all `--max-calls` slots were busy.
    pub no_slot: u64,
    /// Datagrams that did not parse as SIP (not tied to a call; the call then times out).
    pub unparseable: u64,
    /// Parsed datagrams that fit no call: requests, unknown Call-IDs, wrong CSeq method.
    pub unexpected: u64,
}

impl SipFailures {
    /// Failed calls (the per-call kinds; `unparseable` and `unexpected` count datagrams).
    pub fn calls(&self) -> u64 {
        self.timeout_invite
            + self.timeout_bye
            + self.status_503
            + self.status_4xx
            + self.status_5xx
            + self.status_6xx
            + self.bye_error
            + self.bad_contact
            + self.no_slot
    }
}

/// Retransmissions sent.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SipRetransmissions {
    /// INVITE retransmissions (Timer A).
    pub invite: u64,
    /// BYE retransmissions (Timer E).
    pub bye: u64,
    /// ACKs re-sent because the 2xx was retransmitted.
    pub ack: u64,
}

/// Counters of a UAC run.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SipCounters {
    /// Calls started (INVITEs sent first time).
    pub started: u64,
    /// Calls that got 200 to their BYE.
    pub completed: u64,
    /// Failures by kind.
    pub failures: SipFailures,
    /// Retransmissions.
    pub retransmissions: SipRetransmissions,
    /// Responses for calls already finished (late retransmissions): not failures.
    pub stale_responses: u64,
    /// Provisional responses other than 100 (180, 183...).
    pub other_provisional: u64,
    /// Messages that did not fit the send buffer (bug or absurd --sdp-bytes).
    pub build_overflow: u64,
}

/// The UAC.
pub struct SipUac {
    cfg: SipConfig,
    limits: Limits,
    slots: Vec<Slot>,
    free: Vec<u32>,
    in_flight: u64,
    local_hp: Vec<Vec<u8>>,
    local_ip: Vec<Vec<u8>>,
    target_hp: Vec<u8>,
    sdp: Vec<u8>,
    pad: Vec<u8>,
    invite_rtx: Vec<Fifo>,
    bye_rtx: Vec<Fifo>,
    invite_timeout: Fifo,
    bye_timeout: Fifo,
    hold: Fifo,
    /// Counters.
    pub counters: SipCounters,
    /// INVITE → 100 Trying (from the INVITE's intended send time).
    pub invite_100: Latency,
    /// INVITE → 2xx (from the INVITE's intended send time).
    pub invite_200: Latency,
    /// BYE → 200 (from the BYE's intended send time).
    pub bye_200: Latency,
}

/// The numeric host:port of a SIP URI's host part (`sip:user@1.2.3.4:5070;transport=udp`);
/// `None` for host names (no resolver on the hot path).
pub fn uri_hostport(uri: &[u8]) -> Option<SocketAddr> {
    let colon = uri.iter().position(|&b| b == b':')?;
    let rest = &uri[colon + 1..];
    let end = rest
        .iter()
        .position(|&b| b == b';' || b == b'?' || b == b'>')
        .unwrap_or(rest.len());
    let rest = &rest[..end];
    let hp = match rest.iter().rposition(|&b| b == b'@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let hp = std::str::from_utf8(hp).ok()?;
    if let Some(v6) = hp.strip_prefix('[') {
        let (ip, tail) = v6.split_once(']')?;
        let ip: IpAddr = ip.parse().ok()?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => 5060,
            None => return None,
        };
        return Some(SocketAddr::new(ip, port));
    }
    let (ip, port) = match hp.rsplit_once(':') {
        Some((ip, p)) => (ip, p.parse().ok()?),
        None => (hp, 5060),
    };
    Some(SocketAddr::new(ip.parse().ok()?, port))
}

impl SipUac {
    /// A UAC with all slots and buffers allocated.
    pub fn new(cfg: SipConfig) -> Self {
        let n = cfg.max_calls.max(1) as usize;
        let slot = Slot {
            seq: 0,
            state: State::Free,
            intended: 0,
            bye_intended: 0,
            rtx_level: 0,
            contact: cfg.target,
            uri_len: 0,
            tag_len: 0,
            uri: [0; URI_CAP],
            to_tag: [0; TAG_CAP],
        };
        let slots = if cfg.blast { Vec::new() } else { vec![slot; n] };
        let free = if cfg.blast {
            Vec::new()
        } else {
            (0..n as u32).rev().collect()
        };
        // INVITE retransmission levels: T1·2^k up to the timeout; BYE: capped at T2.
        let mut invite_rtx = Vec::new();
        let mut bye_rtx = Vec::new();
        let cap = n.min(1 << 16);
        let mut d = cfg.t1_ns.max(1);
        while d < cfg.timeout_ns && invite_rtx.len() < 40 {
            invite_rtx.push(Fifo::new(d, if invite_rtx.is_empty() { cap } else { 64 }));
            d = d.saturating_mul(2);
        }
        let mut d = cfg.t1_ns.max(1);
        loop {
            let capped = d >= cfg.t2_ns;
            bye_rtx.push(Fifo::new(d.min(cfg.t2_ns), cap));
            if capped || bye_rtx.len() >= 40 {
                break;
            }
            d = d.saturating_mul(2);
        }
        let ip = cfg
            .locals
            .first()
            .map(|a| a.ip())
            .unwrap_or(cfg.target.ip());
        let sdp = make_sdp(&ip, cfg.sdp_bytes);
        let pad = if cfg.pad_bytes > 0 {
            let mut p = b"X-Pad: ".to_vec();
            p.extend(std::iter::repeat_n(b'p', cfg.pad_bytes.saturating_sub(9)));
            p.extend_from_slice(b"\r\n");
            p
        } else {
            Vec::new()
        };
        SipUac {
            limits: Limits::default(),
            slots,
            free,
            in_flight: 0,
            local_hp: cfg.locals.iter().map(hostport).collect(),
            local_ip: cfg.locals.iter().map(|a| host(&a.ip())).collect(),
            target_hp: hostport(&cfg.target),
            sdp,
            pad,
            invite_rtx,
            bye_rtx,
            invite_timeout: Fifo::new(cfg.timeout_ns, cap),
            bye_timeout: Fifo::new(cfg.timeout_ns, cap),
            hold: Fifo::new(cfg.hold_ns, cap),
            counters: SipCounters::default(),
            invite_100: Latency::new("invite_100", "INVITE→100"),
            invite_200: Latency::new("invite_200", "INVITE→200"),
            bye_200: Latency::new("bye_200", "BYE→200"),
            cfg,
        }
    }

    /// Largest message this configuration produces, for sizing the outbox.
    pub fn msg_cap(&self) -> usize {
        1024 + self.sdp.len() + self.pad.len() + 2 * URI_CAP + TAG_CAP
    }

    fn sock_of(&self, seq: u64) -> usize {
        (seq / self.cfg.index_step.max(1) % self.cfg.locals.len().max(1) as u64) as usize
    }

    fn dialog_dst(&self, slot: u32) -> SocketAddr {
        match self.cfg.ack_bye_to {
            AckByeTo::Contact => self.slots[slot as usize].contact,
            AckByeTo::Target => self.cfg.target,
        }
    }

    fn send_invite(&mut self, slot: u32, out: &mut Outbox) {
        let seq = self.slots[slot as usize].seq;
        let sock = self.sock_of(seq);
        if !out.push(sock, self.cfg.target, |b| {
            self.write_invite(b, slot, seq).ok()
        }) {
            self.counters.build_overflow += 1;
        }
    }

    fn send_ack(&mut self, slot: u32, to_2xx: bool, out: &mut Outbox) {
        let seq = self.slots[slot as usize].seq;
        let dst = if to_2xx {
            self.dialog_dst(slot)
        } else {
            self.cfg.target
        };
        if !out.push(self.sock_of(seq), dst, |b| {
            self.write_ack(b, slot, to_2xx).ok()
        }) {
            self.counters.build_overflow += 1;
        }
    }

    fn send_bye(&mut self, slot: u32, out: &mut Outbox) {
        let seq = self.slots[slot as usize].seq;
        let dst = self.dialog_dst(slot);
        if !out.push(self.sock_of(seq), dst, |b| self.write_bye(b, slot).ok()) {
            self.counters.build_overflow += 1;
        }
    }

    fn release(&mut self, slot: u32) {
        self.slots[slot as usize].state = State::Free;
        self.free.push(slot);
        self.in_flight -= 1;
    }

    fn start_bye(&mut self, now: u64, intended: u64, slot: u32, out: &mut Outbox) {
        let c = &mut self.slots[slot as usize];
        c.state = State::Byeing;
        c.bye_intended = intended;
        c.rtx_level = 0;
        let seq = c.seq;
        self.send_bye(slot, out);
        self.bye_rtx[0].arm(now, slot, seq);
        self.bye_timeout
            .arm_at(intended + self.cfg.timeout_ns, slot, seq);
    }

    fn on_invite_response(
        &mut self,
        now: u64,
        slot: u32,
        msg: &Message<'_>,
        code: u16,
        out: &mut Outbox,
    ) {
        let state = self.slots[slot as usize].state;
        let pending = matches!(state, State::Inviting | State::Proceeding);
        match code {
            100..=199 => {
                if state == State::Inviting {
                    self.slots[slot as usize].state = State::Proceeding;
                }
                if code == 100 {
                    if pending {
                        let lat = now.saturating_sub(self.slots[slot as usize].intended);
                        // Only the first 100 of a call (retransmitted 100s land in Proceeding).
                        if state == State::Inviting {
                            self.invite_100.record(lat);
                        }
                    }
                } else {
                    self.counters.other_provisional += 1;
                }
            }
            200..=299 => {
                if !pending {
                    if matches!(state, State::Holding | State::Byeing) {
                        // Our ACK was lost and the UAS retransmits its 2xx.
                        self.counters.retransmissions.ack += 1;
                        self.send_ack(slot, true, out);
                    } else {
                        self.counters.stale_responses += 1;
                    }
                    return;
                }
                let intended = self.slots[slot as usize].intended;
                self.invite_200.record(now.saturating_sub(intended));
                let to_tag = msg.to().and_then(|t| t.tag).unwrap_or(&[]);
                let contact = msg.contact().map(|c| c.uri).unwrap_or(&[]);
                let dst = uri_hostport(contact);
                let c = &mut self.slots[slot as usize];
                let t = to_tag.len().min(TAG_CAP);
                c.to_tag[..t].copy_from_slice(&to_tag[..t]);
                c.tag_len = t as u8;
                if contact.len() <= URI_CAP {
                    c.uri[..contact.len()].copy_from_slice(contact);
                    c.uri_len = contact.len() as u8;
                } else {
                    c.uri_len = 0;
                }
                match dst {
                    Some(d) => c.contact = d,
                    None if self.cfg.ack_bye_to == AckByeTo::Target => c.contact = self.cfg.target,
                    None => {
                        // Cannot follow the Contact: ACK to the target so the UAS stops
                        // retransmitting, and count the call as failed.
                        c.contact = self.cfg.target;
                        self.send_ack(slot, true, out);
                        self.counters.failures.bad_contact += 1;
                        self.release(slot);
                        return;
                    }
                }
                self.send_ack(slot, true, out);
                if self.cfg.hold_ns == 0 {
                    self.start_bye(now, now, slot, out);
                } else {
                    let seq = self.slots[slot as usize].seq;
                    self.slots[slot as usize].state = State::Holding;
                    self.hold.arm(now, slot, seq);
                }
            }
            _ => {
                if !pending {
                    self.counters.stale_responses += 1;
                    return;
                }
                // Non-2xx final: ACK it (same branch, to the original target), then fail.
                if let Some(tag) = msg.to().and_then(|t| t.tag) {
                    let c = &mut self.slots[slot as usize];
                    let t = tag.len().min(TAG_CAP);
                    c.to_tag[..t].copy_from_slice(&tag[..t]);
                    c.tag_len = t as u8;
                }
                self.send_ack(slot, false, out);
                let f = &mut self.counters.failures;
                match code {
                    503 => f.status_503 += 1,
                    300..=499 => f.status_4xx += 1,
                    500..=599 => f.status_5xx += 1,
                    _ => f.status_6xx += 1,
                }
                self.release(slot);
            }
        }
    }

    fn on_bye_response(&mut self, now: u64, slot: u32, code: u16) {
        if self.slots[slot as usize].state != State::Byeing {
            self.counters.stale_responses += 1;
            return;
        }
        match code {
            100..=199 => {}
            200..=299 => {
                let intended = self.slots[slot as usize].bye_intended;
                self.bye_200.record(now.saturating_sub(intended));
                self.counters.completed += 1;
                self.release(slot);
            }
            _ => {
                self.counters.failures.bye_error += 1;
                self.release(slot);
            }
        }
    }
}

impl Engine for SipUac {
    fn start(&mut self, now: u64, intended: u64, index: u64, out: &mut Outbox) -> bool {
        if self.cfg.blast {
            let sock = self.sock_of(index);
            let ok = out.push(sock, self.cfg.target, |b| {
                self.write_invite(b, 0, index).ok()
            });
            if ok {
                self.counters.started += 1;
                self.counters.completed += 1;
            } else {
                self.counters.build_overflow += 1;
            }
            return ok;
        }
        let Some(slot) = self.free.pop() else {
            self.counters.failures.no_slot += 1;
            return false;
        };
        let c = &mut self.slots[slot as usize];
        c.seq = index;
        c.state = State::Inviting;
        c.intended = intended;
        c.rtx_level = 0;
        c.uri_len = 0;
        c.tag_len = 0;
        c.contact = self.cfg.target;
        self.in_flight += 1;
        self.counters.started += 1;
        self.send_invite(slot, out);
        if let Some(q) = self.invite_rtx.first_mut() {
            q.arm(now, slot, index);
        }
        self.invite_timeout
            .arm_at(intended + self.cfg.timeout_ns, slot, index);
        true
    }

    fn on_datagram(&mut self, now: u64, _src: SocketAddr, data: &[u8], out: &mut Outbox) {
        if self.cfg.blast {
            return;
        }
        let msg = match Message::parse(data, &self.limits) {
            Ok(m) => m,
            Err(_) => {
                self.counters.failures.unparseable += 1;
                return;
            }
        };
        let Kind::Response { code, .. } = msg.kind() else {
            self.counters.failures.unexpected += 1;
            return;
        };
        let Some((slot, seq)) = decode_call_id(msg.call_id()) else {
            self.counters.failures.unexpected += 1;
            return;
        };
        match self.slots.get(slot as usize) {
            Some(c) if c.seq == seq && c.state != State::Free => {}
            Some(_) => {
                self.counters.stale_responses += 1;
                return;
            }
            None => {
                self.counters.failures.unexpected += 1;
                return;
            }
        }
        match msg.cseq().method {
            Method::Invite => self.on_invite_response(now, slot, &msg, code, out),
            Method::Bye => self.on_bye_response(now, slot, code),
            _ => self.counters.failures.unexpected += 1,
        }
    }

    fn on_timers(&mut self, now: u64, out: &mut Outbox) {
        // Timeouts first: a transaction past its deadline is not retransmitted again.
        while let Some(e) = self.invite_timeout.pop_due(now) {
            let c = &self.slots[e.slot as usize];
            if c.seq == e.tag && matches!(c.state, State::Inviting | State::Proceeding) {
                self.counters.failures.timeout_invite += 1;
                self.release(e.slot);
            }
        }
        while let Some(e) = self.bye_timeout.pop_due(now) {
            let c = &self.slots[e.slot as usize];
            if c.seq == e.tag && c.state == State::Byeing {
                self.counters.failures.timeout_bye += 1;
                self.release(e.slot);
            }
        }
        for level in 0..self.invite_rtx.len() {
            while out.room() >= 1 {
                let Some(e) = self.invite_rtx[level].pop_due(now) else {
                    break;
                };
                let c = &self.slots[e.slot as usize];
                if c.seq != e.tag || c.state != State::Inviting {
                    continue;
                }
                self.counters.retransmissions.invite += 1;
                self.send_invite(e.slot, out);
                if let Some(q) = self.invite_rtx.get_mut(level + 1) {
                    q.arm(now, e.slot, e.tag);
                }
            }
        }
        let last = self.bye_rtx.len() - 1;
        for level in 0..self.bye_rtx.len() {
            while out.room() >= 1 {
                let Some(e) = self.bye_rtx[level].pop_due(now) else {
                    break;
                };
                let c = &self.slots[e.slot as usize];
                if c.seq != e.tag || c.state != State::Byeing {
                    continue;
                }
                self.counters.retransmissions.bye += 1;
                self.send_bye(e.slot, out);
                self.bye_rtx[(level + 1).min(last)].arm(now, e.slot, e.tag);
            }
        }
        while out.room() >= 1 {
            let Some(e) = self.hold.pop_due(now) else {
                break;
            };
            let c = &self.slots[e.slot as usize];
            if c.seq != e.tag || c.state != State::Holding {
                continue;
            }
            // The BYE's intended time is the end of the hold, whenever we get to it.
            self.start_bye(now, e.deadline, e.slot, out);
        }
    }

    fn next_timer(&self) -> Option<u64> {
        earliest(self.invite_rtx.iter().chain(self.bye_rtx.iter()).chain([
            &self.invite_timeout,
            &self.bye_timeout,
            &self.hold,
        ]))
    }

    fn in_flight(&self) -> u64 {
        self.in_flight
    }

    fn progress(&self) -> Progress {
        Progress {
            started: self.counters.started,
            completed: self.counters.completed,
            failed: self.counters.failures.calls(),
            retransmissions: self.counters.retransmissions.invite
                + self.counters.retransmissions.bye
                + self.counters.retransmissions.ack,
        }
    }

    fn histograms(&self) -> Vec<&Latency> {
        if self.cfg.blast {
            return Vec::new();
        }
        vec![&self.invite_100, &self.invite_200, &self.bye_200]
    }
}

#[cfg(test)]
mod tests;
