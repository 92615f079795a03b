//! What the UAC sends, byte for byte: the INVITE, the ACK (for a 2xx and for a non-2xx final
//! response) and the BYE, the SDP offer, and the Call-ID format that lets a response find its
//! call slot without hashing (`<slot:8>.<seq:16>@bench`, written and read back here).
//!
//! Apart from the state machine in the parent module so that the call flow reads without the
//! byte layout, and the byte layout can be checked (and tuned: it is on the hot path of a load
//! generator) without the timers. Everything writes through [`wire::out::Out`] into the
//! outbox's fixed buffers and fails with [`WriteError`] rather than truncating.
use std::net::{IpAddr, SocketAddr};

use wire::{out::Out, WriteError};

use super::{parse_hex, SipUac};

pub(super) fn hostport(a: &SocketAddr) -> Vec<u8> {
    a.to_string().into_bytes()
}

pub(super) fn host(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.to_string().into_bytes(),
        IpAddr::V6(v) => format!("[{v}]").into_bytes(),
    }
}

/// The SDP body: a minimal audio offer, padded with `a=` lines to `bytes` (exactly, when
/// `bytes` exceeds the minimal body by at least 6).
pub fn make_sdp(ip: &IpAddr, bytes: Option<usize>) -> Vec<u8> {
    if bytes == Some(0) {
        return Vec::new();
    }
    let (fam, addr) = match ip {
        IpAddr::V4(v) => ("IP4", v.to_string()),
        IpAddr::V6(v) => ("IP6", v.to_string()),
    };
    let mut s = format!(
        "v=0\r\no=bench 1 1 IN {fam} {addr}\r\ns=-\r\nc=IN {fam} {addr}\r\nt=0 0\r\n\
         m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    .into_bytes();
    if let Some(want) = bytes {
        let mut r = want.saturating_sub(s.len());
        while r > 0 {
            // "a=x:" + payload + CRLF: at least 6 bytes a line; never leave 1..6 bytes over.
            let mut l = r.clamp(6, 78);
            if r > l && r - l < 6 {
                l = r - 6;
            }
            s.extend_from_slice(b"a=x:");
            s.extend(std::iter::repeat_n(b'p', l - 6));
            s.extend_from_slice(b"\r\n");
            r = r.saturating_sub(l);
        }
    }
    s
}

/// Writes the Call-ID of call `slot`, sequence `seq`: `<slot:8>.<seq:16>@bench` in hex.
pub(super) fn put_call_id(w: &mut Out<'_>, slot: u32, seq: u64) -> Result<(), WriteError> {
    w.put_hex(u64::from(slot), 8)?;
    w.put(b".")?;
    w.put_hex(seq, 16)?;
    w.put(b"@bench")
}

/// The call slot and sequence number encoded in a Call-ID we issued ([`put_call_id`]).
#[inline]
pub fn decode_call_id(cid: &[u8]) -> Option<(u32, u64)> {
    if cid.len() < 8 + 1 + 16 || cid[8] != b'.' {
        return None;
    }
    let slot = parse_hex(&cid[..8])? as u32;
    let seq = parse_hex(&cid[9..25])?;
    Some((slot, seq))
}

impl SipUac {
    pub(super) fn write_invite(
        &self,
        buf: &mut [u8],
        slot: u32,
        seq: u64,
    ) -> Result<usize, WriteError> {
        let s = self.sock_of(seq);
        let mut w = Out::new(buf);
        w.put(b"INVITE sip:service@")?;
        w.put(&self.target_hp)?;
        w.put(b" SIP/2.0\r\nVia: SIP/2.0/UDP ")?;
        w.put(&self.local_hp[s])?;
        w.put(b";branch=z9hG4bK")?;
        w.put_hex(seq, 16)?;
        w.put(b"i;rport\r\nMax-Forwards: 70\r\nFrom: <sip:bench@")?;
        w.put(&self.local_ip[s])?;
        w.put(b">;tag=f")?;
        w.put_hex(seq, 16)?;
        w.put(b"\r\nTo: <sip:service@")?;
        w.put(&self.target_hp)?;
        w.put(b">\r\nCall-ID: ")?;
        put_call_id(&mut w, slot, seq)?;
        w.put(b"\r\nCSeq: 1 INVITE\r\nContact: <sip:bench@")?;
        w.put(&self.local_hp[s])?;
        w.put(b">\r\n")?;
        if let Some(n) = self.cfg.session_size {
            w.put(b"X-Session-Size: ")?;
            w.put_u64(u64::from(n))?;
            w.put(b"\r\n")?;
        }
        w.put(&self.pad)?;
        if !self.sdp.is_empty() {
            w.put(b"Content-Type: application/sdp\r\n")?;
        }
        w.put(b"Content-Length: ")?;
        w.put_u64(self.sdp.len() as u64)?;
        w.put(b"\r\n\r\n")?;
        w.put(&self.sdp)?;
        Ok(w.len())
    }

    /// ACK (2xx: new branch, Request-URI = Contact) or non-2xx ACK (INVITE's branch and URI).
    pub(super) fn write_ack(
        &self,
        buf: &mut [u8],
        slot: u32,
        to_2xx: bool,
    ) -> Result<usize, WriteError> {
        let mut w = Out::new(buf);
        self.request_line(&mut w, b"ACK ", slot, to_2xx)?;
        self.via_from_to_call(&mut w, slot, if to_2xx { b"a" } else { b"i" })?;
        w.put(b"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")?;
        Ok(w.len())
    }

    /// `method` and the Request-URI: the 2xx's Contact when `in_dialog` and one was kept (RFC
    /// 3261 §12.2.1.1), else the INVITE's target.
    fn request_line(
        &self,
        w: &mut Out<'_>,
        method: &[u8],
        slot: u32,
        in_dialog: bool,
    ) -> Result<(), WriteError> {
        let c = &self.slots[slot as usize];
        w.put(method)?;
        if in_dialog && c.uri_len > 0 {
            w.put(&c.uri[..c.uri_len as usize])
        } else {
            w.put(b"sip:service@")?;
            w.put(&self.target_hp)
        }
    }

    /// Via (branch = the call's sequence number plus `kind`), From, To (with the dialog's tag
    /// once known) and Call-ID of an in-call request, after its Request-URI.
    fn via_from_to_call(&self, w: &mut Out<'_>, slot: u32, kind: &[u8]) -> Result<(), WriteError> {
        let c = &self.slots[slot as usize];
        let s = self.sock_of(c.seq);
        w.put(b" SIP/2.0\r\nVia: SIP/2.0/UDP ")?;
        w.put(&self.local_hp[s])?;
        w.put(b";branch=z9hG4bK")?;
        w.put_hex(c.seq, 16)?;
        w.put(kind)?;
        w.put(b";rport\r\nMax-Forwards: 70\r\nFrom: <sip:bench@")?;
        w.put(&self.local_ip[s])?;
        w.put(b">;tag=f")?;
        w.put_hex(c.seq, 16)?;
        w.put(b"\r\nTo: <sip:service@")?;
        w.put(&self.target_hp)?;
        w.put(b">")?;
        if c.tag_len > 0 {
            w.put(b";tag=")?;
            w.put(&c.to_tag[..c.tag_len as usize])?;
        }
        w.put(b"\r\nCall-ID: ")?;
        put_call_id(w, slot, c.seq)?;
        w.put(b"\r\n")
    }

    pub(super) fn write_bye(&self, buf: &mut [u8], slot: u32) -> Result<usize, WriteError> {
        let mut w = Out::new(buf);
        self.request_line(&mut w, b"BYE ", slot, true)?;
        self.via_from_to_call(&mut w, slot, b"b")?;
        w.put(b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")?;
        Ok(w.len())
    }
}
