//! Parameters a dispatcher adds to a command it forwards, and how a processor reads them back.
//!
//! MGCP answers go to the command's source address (RFC 3435 §3.5.5), so when a dispatcher
//! relays a command over the LAN to a processor on another host it names the call agent's
//! address in [`RELAY_SOURCE_PARAM`]; the processor trusts that parameter only from its
//! configured relays ([`relayed_source`]). Both ends use this module, so the name and the
//! value format (`ip:port`, IPv6 in brackets, as `SocketAddr` displays) cannot drift apart.

use core::net::{IpAddr, SocketAddr};

use crate::out::{Out, WriteError};

/// MGCP parameter a dispatcher adds when it relays a command over the LAN: the call agent's
/// `ip:port`. An `X-` extension parameter (RFC 3435 §3.2.2), so the scanner accepts it.
pub const RELAY_SOURCE_PARAM: &str = "X-SY-Src";

/// Copies `msg` into `out` with `name: value` inserted as the first parameter line (right
/// after the command line); returns the new length.
///
/// Used for the dispatcher's port mark and [`RELAY_SOURCE_PARAM`]. Fails when `msg` has no
/// line end after its command line, when `name` or `value` would break the line (CR, LF, or
/// a colon in the name), or when `out` is too small.
pub fn insert_param(
    msg: &[u8],
    name: &[u8],
    value: &[u8],
    out: &mut [u8],
) -> Result<usize, WriteError> {
    insert_params(msg, &[(name, value)], out)
}

/// [`insert_param`] for several parameters at once, in order, in one copy (the dispatcher's
/// port mark and relayed source together).
pub fn insert_params(
    msg: &[u8],
    params: &[(&[u8], &[u8])],
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let eol = memchr::memchr(b'\n', msg).ok_or(WriteError::InvalidInput("MGCP command line"))?;
    for &(name, value) in params {
        if name.is_empty() || name.iter().any(|&b| matches!(b, b'\r' | b'\n' | b':')) {
            return Err(WriteError::InvalidInput("MGCP parameter name"));
        }
        if value.iter().any(|&b| matches!(b, b'\r' | b'\n')) {
            return Err(WriteError::InvalidInput("MGCP parameter value"));
        }
    }
    let (first, rest) = msg.split_at_checked(eol + 1).unwrap_or((msg, &[]));
    let mut o = Out::new(out);
    o.put(first)?;
    for &(name, value) in params {
        for part in [name, b": ", value, b"\r\n"] {
            o.put(part)?;
        }
    }
    o.put(rest)?;
    Ok(o.len())
}

/// The call agent's address named by [`RELAY_SOURCE_PARAM`] in `msg`, if present and valid.
/// Only parameter lines (after the command line, before the blank line) are searched; the
/// name matches in any case, as MGCP parameter names do.
pub fn relay_source_param(msg: &[u8]) -> Option<SocketAddr> {
    let name = RELAY_SOURCE_PARAM.as_bytes();
    msg.split(|&b| b == b'\n')
        .skip(1)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let colon = memchr::memchr(b':', l)?;
            let (n, v) = l.split_at_checked(colon)?;
            if !n.trim_ascii().eq_ignore_ascii_case(name) {
                return None;
            }
            core::str::from_utf8(v.get(1..)?).ok()?.trim().parse().ok()
        })
}

/// Where to answer a command received from `from`: the relayed call agent's address when
/// `from` is one of the trusted `relays` and the command names one, else `from` itself.
pub fn relayed_source(msg: &[u8], from: SocketAddr, relays: &[IpAddr]) -> SocketAddr {
    if !relays.contains(&from.ip()) {
        return from;
    }
    relay_source_param(msg).unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_source_only_from_trusted_relays() {
        let relay: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let msg = b"CRCX 1 a@gw MGCP 1.0\r\nC: 1\r\nx-sy-src: 198.18.0.2:2727\r\nM: recvonly\r\n";
        let trusted = [relay.ip()];
        assert_eq!(
            relayed_source(msg, relay, &trusted),
            "198.18.0.2:2727".parse().unwrap()
        );
        assert_eq!(relayed_source(msg, relay, &[]), relay, "untrusted sender");
        assert_eq!(
            relayed_source(b"CRCX 1 a@gw MGCP 1.0\r\n", relay, &trusted),
            relay
        );
        assert_eq!(
            relayed_source(
                b"CRCX 1 a@gw MGCP 1.0\r\nX-SY-Src: junk\r\n",
                relay,
                &trusted
            ),
            relay
        );
        // After the blank line is SDP, not parameters.
        assert_eq!(
            relay_source_param(b"CRCX 1 a@gw MGCP 1.0\r\n\r\nX-SY-Src: 198.18.0.2:1\r\n"),
            None
        );
    }

    #[test]
    fn insert_then_read_back() {
        let msg = b"CRCX 1 a@gw MGCP 1.0\r\nC: 1\r\nM: recvonly\r\n";
        let ca: SocketAddr = "[2001:db8::7]:2727".parse().unwrap();
        let mut v = [0u8; 64];
        let mut o = Out::new(&mut v);
        o.put_display(&ca).unwrap();
        let vl = o.len();
        let mut out = [0u8; 256];
        let n = insert_param(msg, RELAY_SOURCE_PARAM.as_bytes(), &v[..vl], &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &b"CRCX 1 a@gw MGCP 1.0\r\nX-SY-Src: [2001:db8::7]:2727\r\nC: 1\r\nM: recvonly\r\n"[..]
        );
        assert_eq!(relay_source_param(&out[..n]), Some(ca));
        let m = crate::mgcp::Message::parse(&out[..n], &crate::Limits::default()).unwrap();
        assert_eq!(m.param_named(b"X-SY-Src"), Some(&b"[2001:db8::7]:2727"[..]));
    }

    #[test]
    fn insert_refuses_what_would_break_the_message() {
        let mut out = [0u8; 64];
        assert!(insert_param(b"CRCX 1 a@gw MGCP 1.0", b"X-A", b"1", &mut out).is_err());
        assert!(insert_param(b"CRCX 1 a@gw\r\n", b"X-A\r\n", b"1", &mut out).is_err());
        assert!(insert_param(b"CRCX 1 a@gw\r\n", b"X-A", b"1\n2", &mut out).is_err());
        assert!(matches!(
            insert_param(b"CRCX 1 a@gw\r\n", b"X-A", &[b'v'; 60], &mut out),
            Err(WriteError::BufferTooSmall { .. })
        ));
        let n = insert_param(b"CRCX 1 a@gw\n", b"X-A", b"1", &mut out).unwrap();
        assert_eq!(&out[..n], b"CRCX 1 a@gw\nX-A: 1\r\n");
    }

    #[test]
    fn several_params_go_in_order_in_one_copy() {
        let msg = b"CRCX 1 a@gw MGCP 1.0\r\nC: 1\r\n";
        let mut out = [0u8; 128];
        let p: [(&[u8], &[u8]); 2] = [(b"X-SY-Port", b"5071"), (b"X-SY-Src", b"198.18.0.2:2727")];
        let n = insert_params(msg, &p, &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &b"CRCX 1 a@gw MGCP 1.0\r\nX-SY-Port: 5071\r\nX-SY-Src: 198.18.0.2:2727\r\nC: 1\r\n"[..]
        );
        assert_eq!(insert_params(msg, &[], &mut out), Ok(msg.len()));
        let bad: [(&[u8], &[u8]); 2] = [(b"X-A", b"1"), (b"X:B", b"2")];
        assert!(
            insert_params(msg, &bad, &mut out).is_err(),
            "checked before writing"
        );
    }
}
