//! Where a response goes: RFC 3261 §18.2.2 with RFC 3581 `rport`.
//!
//! A UAS over UDP answers the top Via, not the packet source: `received` (added by the
//! dispatcher or any element that saw a different source) names the IP, `rport` with a value
//! names the port, else the sent-by port (default 5060). Without `received` the packet source
//! IP is used: it equals the sent-by host when they agree, and it is the address that works
//! when they do not (the rule §18.2.1 would have written into `received`).
use std::net::{IpAddr, SocketAddr};

use wire::sip::Via;

/// Default SIP port over UDP (RFC 3261 §18.2.2).
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// Parses an IP address as written in a Via (`received` or sent-by), brackets allowed.
pub(crate) fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(b).ok()?;
    let s = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// Destination of a response to a request whose top Via is `via` and which arrived from `src`.
pub fn response_destination(via: &Via<'_>, src: SocketAddr) -> SocketAddr {
    let (host, sent_port) = via.sent_by();
    let ip = match via.received().and_then(parse_ip) {
        Some(ip) => ip,
        None if src.ip().is_unspecified() => parse_ip(host).unwrap_or(src.ip()),
        None => src.ip(),
    };
    let port = match via.rport() {
        Some(Some(p)) if p != 0 => p,
        Some(_) if src.port() != 0 => src.port(),
        _ => sent_port.unwrap_or(DEFAULT_SIP_PORT),
    };
    SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{sip::Message, Limits};

    fn dst(via: &str, src: &str) -> SocketAddr {
        let m = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nCSeq: 1 OPTIONS\r\n\r\n");
        let msg = Message::parse(m.as_bytes(), &Limits::default()).unwrap();
        response_destination(&msg.top_via(), src.parse().unwrap())
    }

    #[test]
    fn via_rules() {
        let src = "192.0.2.9:40000";
        assert_eq!(
            dst("SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bKa", src),
            "192.0.2.9:5070".parse().unwrap()
        );
        assert_eq!(
            dst("SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa", src),
            "192.0.2.9:5060".parse().unwrap()
        );
        assert_eq!(
            dst(
                "SIP/2.0/UDP host.example:5070;received=198.51.100.1;branch=z9hG4bKa",
                src
            ),
            "198.51.100.1:5070".parse().unwrap()
        );
        assert_eq!(
            dst(
                "SIP/2.0/UDP 10.0.0.1:5070;received=198.51.100.1;rport=6000;branch=z9hG4bKa",
                src
            ),
            "198.51.100.1:6000".parse().unwrap()
        );
        assert_eq!(
            dst("SIP/2.0/UDP 10.0.0.1:5070;rport;branch=z9hG4bKa", src),
            "192.0.2.9:40000".parse().unwrap()
        );
        assert_eq!(
            dst("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKa", src),
            "192.0.2.9:5070".parse().unwrap()
        );
        assert_eq!(
            dst(
                "SIP/2.0/UDP [2001:db8::1]:5071;branch=z9hG4bKa",
                "0.0.0.0:0"
            ),
            "[2001:db8::1]:5071".parse().unwrap()
        );
    }
}
