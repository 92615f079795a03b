//! SDP answers (RFC 3264) for the media port a SIP dialog or MGCP connection was given.
//!
//! The processor is a media endpoint: it accepts the first audio stream of the offer on its
//! allocated RTP port with the offer's first payload type, and rejects other streams (port 0),
//! which keeps the answer's m-lines aligned with the offer as §6 requires. With no offer
//! (delayed offer in INVITE, CRCX without RemoteConnectionDescriptor) it offers one audio
//! stream with the configured codec.
use std::net::IpAddr;

/// The address family and address (`IP4 10.0.0.2`) an answer's `o=` and `c=` lines carry,
/// rendered once per gateway or UAS: the address is fixed for the processor's life, and
/// writing it per answer cost as much as the rest of the `o=` line.
pub(crate) struct SdpAddr {
    text: [u8; 64],
    len: usize,
}

impl SdpAddr {
    pub fn new(ip: IpAddr) -> Self {
        let mut text = [0u8; 64];
        let len = ip_text(ip, &mut text);
        Self { text, len }
    }

    fn as_bytes(&self) -> &[u8] {
        self.text.get(..self.len).unwrap_or(&[])
    }
}

/// Inputs to one SDP body.
pub(crate) struct SdpParams<'a> {
    pub addr: &'a SdpAddr,
    pub port: u16,
    pub session_id: u64,
    pub version: u64,
    /// Payload type and rtpmap name offered when there is no offer to answer.
    pub codec: (u8, &'static str),
    /// Packetization period to announce (`a=ptime`), if negotiated.
    pub ptime: Option<u32>,
    /// Direction attribute to use instead of the one derived from the offer (MGCP modes).
    pub direction: Option<&'static str>,
}

impl<'a> SdpParams<'a> {
    /// Parameters for a plain SIP answer: PCMU fallback, direction from the offer.
    pub fn sip(addr: &'a SdpAddr, port: u16, session_id: u64, version: u64) -> Self {
        Self {
            addr,
            port,
            session_id,
            version,
            codec: (0, "PCMU"),
            ptime: None,
            direction: None,
        }
    }
}

/// The direction an answer gives to an offer line that sets one (RFC 3264 §6.1), `None` for
/// any other line. Every answer is 8 bytes long, as is the `sendrecv` default, so
/// [`write_sdp`] can write the default and overwrite it once the offer's lines are read.
fn direction_answer(line: &[u8]) -> Option<&'static str> {
    match line {
        b"a=sendonly" => Some("recvonly"),
        b"a=recvonly" => Some("sendonly"),
        b"a=inactive" => Some("inactive"),
        _ => None,
    }
}

/// Appends the decimal digits of `n` ([`wire::out::decimal`]): `fmt` machinery cost more than
/// the rest of an SDP answer together. Also the MGCP gateway's (endpoint names, ports).
#[inline]
pub(crate) fn put_u64(out: &mut Vec<u8>, n: u64) {
    let mut tmp = [0u8; 20];
    out.extend_from_slice(wire::out::decimal(n, &mut tmp));
}

/// The address family and address (`IP4 10.0.0.2`) written into `buf`; returns its length.
/// Built once per answer (the `o=` and `c=` lines both carry it) and without `fmt` for IPv4.
fn ip_text(ip: IpAddr, buf: &mut [u8; 64]) -> usize {
    match ip {
        IpAddr::V4(a) => {
            buf[..4].copy_from_slice(b"IP4 ");
            let mut n = 4;
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + (o / 10) % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            n
        }
        IpAddr::V6(a) => {
            // IPv6 text form has compression rules; rare enough here to leave to `Display`
            // (at most 39 characters, so it always fits).
            let mut o = wire::out::Out::new(buf);
            let _ = o.put(b"IP6 ");
            let _ = o.put_display(&a);
            o.len()
        }
    }
}

/// Writes the answer to `offer` (or an offer when `None`) into `out` (cleared first); no
/// `fmt` on the IPv4 path, and `out` keeps its capacity between calls.
pub(crate) fn write_sdp(out: &mut Vec<u8>, offer: Option<&[u8]>, p: &SdpParams) {
    out.clear();
    out.extend_from_slice(b"v=0\r\no=switchyard ");
    put_u64(out, p.session_id);
    out.push(b' ');
    put_u64(out, p.version);
    out.extend_from_slice(b" IN ");
    let ip = p.addr.as_bytes();
    out.extend_from_slice(ip);
    out.extend_from_slice(b"\r\ns=-\r\nc=IN ");
    out.extend_from_slice(ip);
    out.extend_from_slice(b"\r\nt=0 0\r\n");
    let mut accepted = false;
    let mut any = false;
    // One walk over the offer: its media lines, and (unless the caller fixes the direction)
    // the first direction attribute anywhere in it, which may follow the accepted m= line.
    let mut dir_at = None;
    let mut offered_dir = None;
    if let Some(offer) = offer {
        for l in wire::sdp::lines(offer) {
            if offered_dir.is_none() && p.direction.is_none() {
                offered_dir = direction_answer(l);
            }
            let Some(m) = wire::sdp::media_line(l) else {
                continue;
            };
            any = true;
            if !accepted && m.port != 0 && m.media.eq_ignore_ascii_case(b"audio") {
                accepted = true;
                let first = m
                    .formats
                    .split(|&b| b == b' ')
                    .find(|f| !f.is_empty())
                    .unwrap_or(b"0");
                out.extend_from_slice(b"m=audio ");
                put_u64(out, u64::from(p.port));
                out.push(b' ');
                out.extend_from_slice(m.proto);
                out.push(b' ');
                out.extend_from_slice(first);
                out.extend_from_slice(b"\r\na=");
                dir_at = Some(out.len());
                out.extend_from_slice(p.direction.unwrap_or("sendrecv").as_bytes());
                out.extend_from_slice(b"\r\n");
                put_ptime(out, p.ptime);
            } else {
                out.extend_from_slice(b"m=");
                out.extend_from_slice(m.media);
                out.extend_from_slice(b" 0 ");
                out.extend_from_slice(m.proto);
                out.push(b' ');
                out.extend_from_slice(m.formats);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if let (Some(at), Some(dir)) = (dir_at, offered_dir) {
        if let Some(dst) = out.get_mut(at..at + dir.len()) {
            dst.copy_from_slice(dir.as_bytes());
        }
    }
    if !any {
        let (pt, name) = p.codec;
        let dir = p.direction.unwrap_or("sendrecv");
        out.extend_from_slice(b"m=audio ");
        put_u64(out, u64::from(p.port));
        out.extend_from_slice(b" RTP/AVP ");
        put_u64(out, u64::from(pt));
        out.extend_from_slice(b"\r\na=rtpmap:");
        put_u64(out, u64::from(pt));
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"/8000\r\na=");
        out.extend_from_slice(dir.as_bytes());
        out.extend_from_slice(b"\r\n");
        put_ptime(out, p.ptime);
    }
}

fn put_ptime(out: &mut Vec<u8>, ptime: Option<u32>) {
    if let Some(pt) = ptime {
        out.extend_from_slice(b"a=ptime:");
        put_u64(out, u64::from(pt));
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_direction_anywhere_in_the_offer_sets_the_answer() {
        let addr = SdpAddr::new("10.0.0.2".parse().unwrap());
        let mut out = vec![];
        let cases: [(&[u8], &str); 4] = [
            // Session level, before the m= line.
            (
                b"v=0\r\na=recvonly\r\nm=audio 4000 RTP/AVP 0\r\n",
                "a=sendonly\r\n",
            ),
            // After it, and the first of two wins.
            (
                b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\na=sendonly\r\n",
                "a=inactive\r\n",
            ),
            // Also when it follows a rejected stream.
            (
                b"v=0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4 RTP/AVP 96\r\na=sendonly\r\n",
                "a=recvonly\r\n",
            ),
            (b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "a=sendrecv\r\n"),
        ];
        for (offer, want) in cases {
            write_sdp(&mut out, Some(offer), &SdpParams::sip(&addr, 20000, 7, 1));
            let s = String::from_utf8(out.clone()).unwrap();
            assert_eq!(s.matches("a=").count(), 1, "{s}");
            assert!(
                s.contains(&format!("m=audio 20000 RTP/AVP 0\r\n{want}")),
                "{s}"
            );
        }
        // A direction the caller fixes (an MGCP mode) ignores the offer's.
        let mut p = SdpParams::sip(&addr, 20000, 7, 1);
        p.direction = Some("sendrecv");
        write_sdp(
            &mut out,
            Some(b"m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"),
            &p,
        );
        assert!(String::from_utf8(out).unwrap().contains("a=sendrecv\r\n"));
    }

    #[test]
    fn answers_first_audio_and_rejects_the_rest() {
        let offer = b"v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0\r\na=sendonly\r\nm=video 4002 RTP/AVP 96\r\n";
        let mut out = vec![];
        let addr = SdpAddr::new("10.0.0.2".parse().unwrap());
        let p = SdpParams::sip(&addr, 20000, 7, 1);
        write_sdp(&mut out, Some(offer), &p);
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(
            s.contains("m=audio 20000 RTP/AVP 8\r\na=recvonly\r\n"),
            "{s}"
        );
        assert!(s.contains("m=video 0 RTP/AVP 96\r\n"), "{s}");
        assert!(s.contains("c=IN IP4 10.0.0.2\r\n"));
        write_sdp(&mut out, None, &p);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("m=audio 20000 RTP/AVP 0\r\n"));
    }

    #[test]
    fn digits_addresses_and_ptime_match_the_formatted_text() {
        let mut out = vec![];
        let addr = SdpAddr::new("192.168.0.10".parse().unwrap());
        let mut p = SdpParams::sip(&addr, 7, u64::MAX, 0);
        p.ptime = Some(20);
        p.direction = Some("inactive");
        write_sdp(&mut out, None, &p);
        let want = format!(
            "v=0\r\no=switchyard {} 0 IN IP4 192.168.0.10\r\ns=-\r\nc=IN IP4 192.168.0.10\r\nt=0 0\r\nm=audio 7 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\na=ptime:20\r\n",
            u64::MAX
        );
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        let addr6 = SdpAddr::new("2001:db8::1".parse().unwrap());
        let p6 = SdpParams::sip(&addr6, 20000, 1, 2);
        write_sdp(&mut out, Some(b"m=audio 5 RTP/AVP  8 0\r\n"), &p6);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("o=switchyard 1 2 IN IP6 2001:db8::1\r\n"), "{s}");
        assert!(
            s.contains("m=audio 20000 RTP/AVP 8\r\na=sendrecv\r\n"),
            "{s}"
        );
    }
}
