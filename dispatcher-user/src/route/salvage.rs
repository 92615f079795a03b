//! A `400 Bad Request` for a request the scanner rejected.
//!
//! When a message fails to scan there is no checked view to build a response from, yet RFC 3261
//! §8.2 / §16.3 expect an element to answer a malformed request with 400 when it can. This
//! salvages the raw header lines a response needs (every Via, From, To, Call-ID, CSeq) by plain
//! line matching and writes the 400 around them, citing the scan error in the reason phrase.
//! Without a Via, Call-ID, CSeq, From or To there is nothing a UAC could match, so the caller
//! drops the datagram and counts it instead. Never answers an ACK (§17.2.1) or a response.

/// Headers a 400 must copy, in the order they are written, with their compact forms.
const WANTED: [(&[u8], Option<u8>); 5] = [
    (b"via", Some(b'v')),
    (b"from", Some(b'f')),
    (b"to", Some(b't')),
    (b"call-id", Some(b'i')),
    (b"cseq", None),
];

fn header_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line.get(..colon)?;
    let trimmed_end = name
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    name.get(..trimmed_end)
}

fn which(line: &[u8]) -> Option<usize> {
    let name = header_name(line)?;
    WANTED.iter().position(|(long, short)| {
        name.eq_ignore_ascii_case(long)
            || (name.len() == 1 && Some(name[0].to_ascii_lowercase()) == *short)
    })
}

/// Writes `SIP/2.0 400 <reason>` with the salvaged headers into `out`; `None` when the message
/// cannot be answered (a response, an ACK, a needed header missing, or `out` too small).
pub fn bad_request(msg: &[u8], reason: &str, to_tag: &[u8], out: &mut [u8]) -> Option<usize> {
    if msg.starts_with(b"SIP/") || msg.starts_with(b"ACK ") {
        return None;
    }
    let mut found = [false; WANTED.len()];
    let mut w = Writer { out, len: 0 };
    w.put(b"SIP/2.0 400 ")?;
    // The reason is our own Display text; keep only printable ASCII to be safe.
    for &b in reason.as_bytes().iter().take(120) {
        w.put(&[if (0x20..0x7f).contains(&b) { b } else { b'?' }])?;
    }
    w.put(b"\r\n")?;
    for (i, _) in WANTED.iter().enumerate() {
        // One pass per wanted header keeps Via order and puts headers in canonical order.
        let lines = msg
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .skip(1)
            .take_while(|l| !l.is_empty());
        for line in lines {
            if which(line) == Some(i) {
                found[i] = true;
                w.put(line)?;
                if i == 2 && !contains_tag(line) {
                    w.put(b";tag=")?;
                    w.put(to_tag)?;
                }
                w.put(b"\r\n")?;
                if i != 0 {
                    break;
                }
            }
        }
    }
    if found.iter().any(|f| !f) {
        return None;
    }
    if cseq_is_ack(msg) {
        return None;
    }
    w.put(b"Content-Length: 0\r\n\r\n")?;
    Some(w.len)
}

fn contains_tag(line: &[u8]) -> bool {
    line.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag="))
}

fn cseq_is_ack(msg: &[u8]) -> bool {
    msg.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| which(l) == Some(4))
        .any(|l| {
            l.split(|b| b.is_ascii_whitespace())
                .rfind(|w| !w.is_empty())
                .is_some_and(|m| m.eq_ignore_ascii_case(b"ACK"))
        })
}

struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) -> Option<()> {
        let end = self.len.checked_add(b.len())?;
        self.out.get_mut(self.len..end)?.copy_from_slice(b);
        self.len = end;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK1\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
Call-ID: c1@x\r\n\
CSeq: 1 BYE\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn copies_headers_and_cites_the_reason() {
        let mut out = [0u8; 1024];
        let n = bad_request(
            BAD,
            "CSeq method does not match request method at byte 190",
            b"sy-1",
            &mut out,
        )
        .unwrap();
        let text = std::str::from_utf8(&out[..n]).unwrap();
        assert!(text
            .starts_with("SIP/2.0 400 CSeq method does not match request method at byte 190\r\n"));
        let via1 = text.find("Via: SIP/2.0/UDP 198.18.0.2").unwrap();
        let via2 = text.find("v: SIP/2.0/UDP 10.0.0.1").unwrap();
        assert!(via1 < via2, "Via order kept");
        assert!(text.contains("To: <sip:bob@example.com>;tag=sy-1\r\n"));
        assert!(text.contains("Call-ID: c1@x\r\nCSeq: 1 BYE\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        // The answer itself scans as a valid response.
        let m = wire::sip::Message::parse(&out[..n], &wire::Limits::default()).unwrap();
        assert!(!m.is_request());
    }

    #[test]
    fn refuses_what_cannot_be_answered() {
        let mut out = [0u8; 1024];
        let no_via = b"INVITE sip:b@x SIP/2.0\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(bad_request(no_via, "r", b"t", &mut out), None);
        let ack = b"ACK sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n";
        assert_eq!(bad_request(ack, "r", b"t", &mut out), None);
        assert_eq!(
            bad_request(b"SIP/2.0 200 OK\r\n\r\n", "r", b"t", &mut out),
            None
        );
        let mut tiny = [0u8; 20];
        assert_eq!(bad_request(BAD, "r", b"t", &mut tiny), None);
    }

    #[test]
    fn any_bytes_never_panic() {
        let mut out = [0u8; 2048];
        for cut in 0..BAD.len() {
            let _ = bad_request(&BAD[..cut], "r", b"t", &mut out);
            let mut m = BAD.to_vec();
            m[cut] = b':';
            let _ = bad_request(&m, "r", b"t", &mut out);
        }
    }
}
