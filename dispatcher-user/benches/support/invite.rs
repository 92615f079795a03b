//! The INVITE the decision-path benchmark and profiler route: ~950 bytes with SDP, each with
//! its own Call-ID and branch so that every one is a new dialog.

/// INVITE number `i`.
pub fn invite(i: usize) -> Vec<u8> {
    let sdp = "v=0\r\no=- 2890844526 2890844526 IN IP4 198.18.0.2\r\ns=-\r\nc=IN IP4 198.18.0.2\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 97\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:97 iLBC/8000\r\na=ptime:20\r\n";
    format!(
        "INVITE sip:service@198.18.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK-{i:08}-776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Service <sip:service@198.18.0.1:5060>\r\n\
From: Application <sip:app@198.18.0.2:5060>;tag=1928301774-{i}\r\n\
Call-ID: a84b4c76e66710-{i:08}@198.18.0.2\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:app@198.18.0.2:5060>\r\n\
User-Agent: switchyard-bench\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}
