//! SDP answers (RFC 3264) for the media port a SIP dialog or MGCP connection was given.
//!
//! The processor is a media endpoint: it accepts the first audio stream of the offer on its
//! allocated RTP port with the offer's first payload type, and rejects other streams (port 0),
//! which keeps the answer's m-lines aligned with the offer as §6 requires. With no offer
//! (delayed offer in INVITE, CRCX without RemoteConnectionDescriptor) it offers one audio
//! stream with the configured codec.
use std::io::Write;
use std::net::IpAddr;

/// Inputs to one SDP body.
pub(crate) struct SdpParams {
    pub ip: IpAddr,
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

impl SdpParams {
    /// Parameters for a plain SIP answer: PCMU fallback, direction from the offer.
    pub fn sip(ip: IpAddr, port: u16, session_id: u64, version: u64) -> Self {
        Self {
            ip,
            port,
            session_id,
            version,
            codec: (0, "PCMU"),
            ptime: None,
            direction: None,
        }
    }
}

fn direction_answer(offer: &[u8]) -> &'static str {
    for l in wire::sdp::lines(offer) {
        match l {
            b"a=sendonly" => return "recvonly",
            b"a=recvonly" => return "sendonly",
            b"a=inactive" => return "inactive",
            _ => {}
        }
    }
    "sendrecv"
}

/// Writes the answer to `offer` (or an offer when `None`) into `out` (cleared first).
pub(crate) fn write_sdp(out: &mut Vec<u8>, offer: Option<&[u8]>, p: &SdpParams) {
    out.clear();
    let (fam, ip) = match p.ip {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    };
    let _ = write!(
        out,
        "v=0\r\no=switchyard {} {} IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n",
        p.session_id, p.version
    );
    let mut accepted = false;
    let mut any = false;
    if let Some(offer) = offer {
        for m in wire::sdp::media(offer) {
            any = true;
            let proto = String::from_utf8_lossy(m.proto);
            let fmts = String::from_utf8_lossy(m.formats);
            if !accepted && m.port != 0 && m.media.eq_ignore_ascii_case(b"audio") {
                accepted = true;
                let first = fmts.split(' ').find(|f| !f.is_empty()).unwrap_or("0");
                let dir = p.direction.unwrap_or_else(|| direction_answer(offer));
                let _ = write!(out, "m=audio {} {proto} {first}\r\na={dir}\r\n", p.port);
                if let Some(pt) = p.ptime {
                    let _ = write!(out, "a=ptime:{pt}\r\n");
                }
            } else {
                let media = String::from_utf8_lossy(m.media);
                let _ = write!(out, "m={media} 0 {proto} {fmts}\r\n");
            }
        }
    }
    if !any {
        let (pt, name) = p.codec;
        let dir = p.direction.unwrap_or("sendrecv");
        let _ = write!(
            out,
            "m=audio {} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na={dir}\r\n",
            p.port
        );
        if let Some(pt) = p.ptime {
            let _ = write!(out, "a=ptime:{pt}\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_first_audio_and_rejects_the_rest() {
        let offer = b"v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0\r\na=sendonly\r\nm=video 4002 RTP/AVP 96\r\n";
        let mut out = vec![];
        let p = SdpParams::sip("10.0.0.2".parse().unwrap(), 20000, 7, 1);
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
}
