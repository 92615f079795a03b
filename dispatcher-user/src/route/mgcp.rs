//! MGCP at the well-known gateway port (claims 6 and 14).
//!
//! - `CRCX` (new) goes to the processor the policy selects, honouring the session size;
//! - a retransmitted command (same source and transaction id, RFC 3435 §3.5.6) follows the
//!   processor that got the original;
//! - `MDCX`/`DLCX`/`AUCX`/`RQNT`/`AUEP` that reach this port anyway go to the processor encoded in
//!   the connection id (`I:`) it issued, or named by the port in the specific endpoint name it
//!   returned (`name@[ip]:port`), with no table state;
//! - `AUEP`/`EPCF` for the whole gateway (wildcard endpoint) and `RSIP` are answered here `200`;
//! - responses arriving here are dropped and counted; unparseable commands get `510`;
//! - when no processor can take a connection: `403` (insufficient resources now) when they are
//!   at capacity, `409` (internal overload) when their queues are full.
//!
//! Piggybacked datagrams are split and each message is routed on its own; the dispatcher's own
//! answers to one datagram are piggybacked into one reply.
use wire::{
    hash::mgcp_tx_key,
    mgcp::{self, leading_tid, Kind, Message, Verb},
    out::Out,
    tag::TagError,
};

use super::{
    handoff::{Handoffs, Output},
    member::Snapshot,
    Counted, Decision, DropReason, Inbound, NewDialog, Router,
};

impl Router {
    pub(super) fn mgcp(
        &mut self,
        now_ns: u64,
        msg: &Inbound<'_>,
        snap: &Snapshot,
        out: &mut Output,
    ) -> Decision {
        let mut reply_len = 0;
        let mut last = Decision::Drop(DropReason::Empty);
        let (hand, reply) = (&mut out.hand, &mut out.reply);
        let mut segments = 0;
        for seg in mgcp::split_piggybacked(msg.payload) {
            segments += 1;
            let one = Inbound {
                payload: seg,
                ..*msg
            };
            let sep = if reply_len > 0 { 3 } else { 0 };
            let room = reply.len().saturating_sub(reply_len + sep);
            let mut tmp = [0u8; 1024];
            let a = self.mgcp_one(now_ns, &one, snap, hand, &mut tmp[..room.min(1024)]);
            match a {
                Decision::Reply(n) => {
                    if sep > 0 {
                        reply[reply_len..reply_len + 3].copy_from_slice(b".\r\n");
                        reply_len += 3;
                    }
                    reply[reply_len..reply_len + n].copy_from_slice(&tmp[..n]);
                    reply_len += n;
                }
                other => last = other,
            }
        }
        if segments == 0 {
            self.stats.dropped_empty += 1;
        }
        if reply_len > 0 {
            Decision::Reply(reply_len)
        } else {
            last
        }
    }

    /// A new connection's session size: from the command (and its SDP) when sizes matter
    /// (see `size_matters`), else 1, carried in the slot so the processor releases the same.
    fn mgcp_size(&self, m: &Message<'_>) -> u32 {
        if self.size_matters {
            m.session_size(&self.cfg.session_size)
        } else {
            1
        }
    }

    fn mgcp_reply(&mut self, code: u16, tid: u32, commentary: &[u8], reply: &mut [u8]) -> Decision {
        self.stats.mgcp_answered += 1;
        match mgcp::write_response(code, tid.max(1), commentary, &[], None, reply) {
            Ok(n) => Decision::Reply(n),
            Err(_) => {
                self.stats.dropped_reply_too_large += 1;
                Decision::Drop(DropReason::ReplyTooLarge)
            }
        }
    }

    fn mgcp_one(
        &mut self,
        now_ns: u64,
        msg: &Inbound<'_>,
        snap: &Snapshot,
        hand: &mut Handoffs,
        reply: &mut [u8],
    ) -> Decision {
        let m = match Message::parse(msg.payload, &self.cfg.limits) {
            Ok(m) => m,
            Err(e) => {
                // 510 "protocol error" needs a transaction id to be matched by the call agent.
                return match leading_tid(msg.payload) {
                    Some(tid) if !msg.payload.first().is_some_and(u8::is_ascii_digit) => {
                        self.stats.bad_request += 1;
                        let mut text = [0u8; 100];
                        let n = Out::new(&mut text).put_display_truncating(&e);
                        self.mgcp_reply(510, tid, &text[..n], reply)
                    }
                    _ => {
                        self.stats.dropped_unparseable += 1;
                        Decision::Drop(DropReason::Unparseable)
                    }
                };
            }
        };
        let (verb, tid, endpoint) = match m.kind() {
            Kind::Response { .. } => {
                self.stats.dropped_response += 1;
                return Decision::Drop(DropReason::Response);
            }
            Kind::Command {
                verb,
                tid,
                endpoint,
                ..
            } => (verb, tid, endpoint),
        };
        let now_s = (now_ns / 1_000_000_000) as u32;
        let key = mgcp_tx_key(msg.src, tid);
        if let Some(k) = self.affinity.get(key, now_s) {
            return self.forward_existing(k, msg, None, snap, hand, Counted::MgcpRetransmission);
        }
        let n = self.members.len() as u16;
        // `Err(BadMac)`: a connection id shaped like ours but not minted under our keys.
        let by_conn = m.param(b'I').map(|i| self.tagged(i, n));
        let by_port = endpoint
            .port
            .and_then(|p| {
                self.members
                    .iter()
                    .position(|mm| mm.present && mm.spec.port == p)
            })
            .map(|k| k as u16);
        match verb {
            Verb::Crcx => {
                // A CRCX naming a processor's specific endpoint belongs to that processor.
                if let Some(k) = by_port {
                    let r = self.forward_existing(k, msg, None, snap, hand, Counted::MgcpStateless);
                    if matches!(r, Decision::Hand(_)) {
                        self.affinity.insert(key, k, now_s);
                        let units = self.mgcp_size(&m);
                        hand.set_last_units(units);
                        self.members[usize::from(k)].assign(units);
                    }
                    return r;
                }
                let size = self.mgcp_size(&m);
                let mark = self.cfg.mark_port.is_some();
                match self.place(
                    NewDialog {
                        size,
                        key,
                        mark,
                        invite: false,
                    },
                    msg,
                    None,
                    snap,
                    hand,
                ) {
                    Ok(Some(k)) => {
                        self.affinity.insert(key, k, now_s);
                        self.stats.new_dialogs += 1;
                        Decision::Hand(k)
                    }
                    Ok(None) => {
                        self.stats.overload += 1;
                        let all_queues_full = (0..self.members.len()).all(|k| {
                            let s = self.member_state(k, snap);
                            s.depth >= s.queue_capacity
                        });
                        if all_queues_full && !self.members.is_empty() {
                            self.mgcp_reply(409, tid, b"Internal overload", reply)
                        } else {
                            self.mgcp_reply(403, tid, b"Insufficient resources now", reply)
                        }
                    }
                    Err(()) => {
                        self.stats.too_large += 1;
                        self.mgcp_reply(505, tid, b"Message too large", reply)
                    }
                }
            }
            Verb::Auep | Verb::Epcf if endpoint.is_wildcard() || by_port.is_none() => {
                self.mgcp_reply(200, tid, b"OK", reply)
            }
            Verb::Rsip => self.mgcp_reply(200, tid, b"OK", reply),
            Verb::Mdcx | Verb::Dlcx | Verb::Aucx | Verb::Rqnt | Verb::Auep | Verb::Epcf => {
                if by_conn == Some(Err(TagError::BadMac)) {
                    // Never routed, not even by the endpoint's port: the command claims a
                    // connection we did not issue.
                    self.stats.bad_tag += 1;
                    return self.mgcp_reply(515, tid, b"Incorrect connection-id", reply);
                }
                match by_conn.and_then(Result::ok).or(by_port) {
                    Some(k) => {
                        let r =
                            self.forward_existing(k, msg, None, snap, hand, Counted::MgcpStateless);
                        if matches!(r, Decision::Hand(_)) {
                            self.affinity.insert(key, k, now_s);
                        }
                        r
                    }
                    None if m.param(b'I').is_some() => {
                        self.stats.no_transaction += 1;
                        self.mgcp_reply(515, tid, b"Incorrect connection-id", reply)
                    }
                    None => {
                        self.stats.no_transaction += 1;
                        self.mgcp_reply(500, tid, b"Endpoint unknown", reply)
                    }
                }
            }
            Verb::Ntfy | Verb::Other(_) => {
                self.stats.rejected_method += 1;
                self.mgcp_reply(504, tid, b"Unknown or unsupported command", reply)
            }
        }
    }
}
