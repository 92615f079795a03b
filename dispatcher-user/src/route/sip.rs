//! SIP at the well-known port: which processor a request belongs to, or the dispatcher's own
//! answer (see the module doc of [`super`] for the rules). Reads only what the locate scan
//! found; the full scan runs only on the rare answer path.
use wire::{
    sip::{Located, Method, Scope},
    tag::TagError,
};

use super::{
    config::{OptionsMode, OtherMode},
    handoff::Output,
    header_line,
    member::Snapshot,
    select::Policy,
    Counted, Decision, DropReason, Inbound, NewDialog, Router,
};

/// What a SIP routing decision reads: the fields of the one locate scan, and the scan itself
/// (the relay rewrite and session sizing work from it, so nothing scans the datagram again).
struct SipFields<'a> {
    method: Method<'a>,
    call_id: &'a [u8],
    from_tag: &'a [u8],
    to_tag: Option<&'a [u8]>,
    branch: &'a [u8],
    scan: Located<'a>,
}

impl SipFields<'_> {
    fn session_size(&self, cfg: &wire::SessionSizeConfig) -> u32 {
        self.scan.session_size(cfg).unwrap_or(1)
    }
}

impl Router {
    /// The fields routing reads, from one locate scan. `locate` accepts everything the full
    /// scan accepts (wire's agreement tests), so a locate error is final: it names the defect
    /// the 400 cites, with no second scan.
    fn sip_fields<'a>(
        &self,
        payload: &'a [u8],
    ) -> Result<Option<SipFields<'a>>, wire::sip::SipError> {
        let scope = if self.size_matters {
            Scope::CompleteForInvite
        } else {
            Scope::Routing
        };
        let l = self.locate.scan(payload, scope)?;
        let Some(method) = l.method() else {
            return Ok(None);
        };
        Ok(Some(SipFields {
            method,
            call_id: l.call_id(),
            from_tag: l.from_tag().unwrap_or(b""),
            to_tag: l.to_tag(),
            branch: l.branch().unwrap_or(b""),
            scan: l,
        }))
    }

    /// The `hash` policy's key (the Call-ID hash every dispatcher computes alike); the other
    /// policies ignore it, so it is not computed for them.
    fn call_key(&self, call_id: &[u8]) -> u64 {
        // Hash: the choice itself; least-loaded: its two candidates (see `select`).
        if matches!(self.cfg.policy, Policy::Hash | Policy::LeastLoaded) {
            wire::hash::stable_key(call_id, b"", b"")
        } else {
            0
        }
    }

    pub(super) fn sip(
        &mut self,
        now_ns: u64,
        msg: &Inbound<'_>,
        snap: &Snapshot,
        out: &mut Output,
    ) -> Decision {
        // The locate scan: start line, header framing, and the fields routing reads; the rest
        // is the processor's business (it answers 400 to what it cannot accept).
        let m = match self.sip_fields(msg.payload) {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.stats.dropped_response += 1;
                return Decision::Drop(DropReason::Response);
            }
            Err(e) => return self.bad_request(msg.payload, &e, &mut out.reply),
        };
        let method = m.method;
        let now_s = (now_ns / 1_000_000_000) as u32;
        let to_tag = m.to_tag;
        let tkey = wire::hash::tx_key(m.call_id, m.from_tag, m.branch);
        let n = self.members.len() as u16;

        // In-dialog: the processor is encoded in the To-tag it issued.
        // `Err(BadMac)`: shaped like a processor tag but not minted under our keys.
        let tagged_processor = to_tag.map(|t| self.tagged(t, n));

        match method {
            Method::Ack => {
                // ACK for a non-2xx final: same branch as the INVITE -> affinity.
                if let Some(k) = self.affinity.get(tkey, now_s) {
                    return self.forward_existing(
                        k,
                        msg,
                        Some(&m.scan),
                        snap,
                        &mut out.hand,
                        Counted::AckAffinity,
                    );
                }
                match tagged_processor {
                    Some(Ok(k)) => {
                        return self.forward_existing(
                            k,
                            msg,
                            Some(&m.scan),
                            snap,
                            &mut out.hand,
                            Counted::InDialog,
                        );
                    }
                    Some(Err(TagError::BadMac)) => {
                        self.stats.bad_tag += 1;
                        return Decision::Drop(DropReason::BadTag);
                    }
                    _ => {}
                }
                self.stats.dropped_ack += 1;
                Decision::Drop(DropReason::AckAbsorbed)
            }
            Method::Cancel => match self.affinity.get(tkey, now_s) {
                Some(k) => self.forward_existing(
                    k,
                    msg,
                    Some(&m.scan),
                    snap,
                    &mut out.hand,
                    Counted::Cancel,
                ),
                None => {
                    self.stats.no_transaction += 1;
                    self.reply_to(msg.payload, 481, &[], &mut out.reply)
                }
            },
            Method::Invite if to_tag.is_none() => {
                if let Some(k) = self.affinity.get(tkey, now_s) {
                    if self.alive(k, snap) {
                        return self.forward_existing(
                            k,
                            msg,
                            Some(&m.scan),
                            snap,
                            &mut out.hand,
                            Counted::Retransmission,
                        );
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
                match self.place(
                    NewDialog {
                        size,
                        key: ckey,
                        mark,
                        invite: true,
                    },
                    msg,
                    Some(&m.scan),
                    snap,
                    &mut out.hand,
                ) {
                    Ok(Some(k)) => {
                        self.affinity.insert(tkey, k, now_s);
                        self.stats.new_dialogs += 1;
                        Decision::Hand(k)
                    }
                    Ok(None) => {
                        self.stats.overload += 1;
                        let mut ra = [0u8; 32];
                        let len =
                            header_line(&mut ra, b"Retry-After", u64::from(self.cfg.retry_after_s))
                                .unwrap_or(0);
                        let hdr: &[u8] = &ra[..len];
                        self.reply_to(msg.payload, 503, &[hdr], &mut out.reply)
                    }
                    Err(()) => {
                        self.stats.too_large += 1;
                        self.reply_to(msg.payload, 513, &[], &mut out.reply)
                    }
                }
            }
            _ if to_tag.is_some() => match tagged_processor {
                Some(Ok(k)) => self.forward_existing(
                    k,
                    msg,
                    Some(&m.scan),
                    snap,
                    &mut out.hand,
                    Counted::InDialog,
                ),
                Some(Err(TagError::BadMac)) => {
                    self.stats.bad_tag += 1;
                    self.reply_to(msg.payload, 481, &[], &mut out.reply)
                }
                _ => {
                    self.stats.no_transaction += 1;
                    self.reply_to(msg.payload, 481, &[], &mut out.reply)
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
                    &mut out.reply,
                )
            }
            Method::Options => self.forward_new(&m, msg, snap, out),
            _ if self.cfg.other == OtherMode::Forward => self.forward_new(&m, msg, snap, out),
            Method::Other(_) => {
                self.stats.rejected_method += 1;
                self.reply_to(msg.payload, 501, &[ALLOW], &mut out.reply)
            }
            _ => {
                self.stats.rejected_method += 1;
                self.reply_to(msg.payload, 405, &[ALLOW], &mut out.reply)
            }
        }
    }

    /// Out-of-dialog non-INVITE forwarded by policy (session size 0: it holds no capacity).
    fn forward_new(
        &mut self,
        m: &SipFields<'_>,
        msg: &Inbound<'_>,
        snap: &Snapshot,
        out: &mut Output,
    ) -> Decision {
        let ckey = self.call_key(m.call_id);
        match self.place(
            NewDialog {
                size: 0,
                key: ckey,
                mark: false,
                invite: false,
            },
            msg,
            Some(&m.scan),
            snap,
            &mut out.hand,
        ) {
            Ok(Some(k)) => {
                self.stats.new_dialogs += 1;
                Decision::Hand(k)
            }
            Ok(None) => {
                self.stats.overload += 1;
                self.reply_to(msg.payload, 503, &[], &mut out.reply)
            }
            Err(()) => {
                self.stats.too_large += 1;
                self.reply_to(msg.payload, 513, &[], &mut out.reply)
            }
        }
    }
}

const ALLOW: &[u8] = b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";
