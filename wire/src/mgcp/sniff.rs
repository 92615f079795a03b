//! What can be read from a datagram before (or without) a full scan: whether it is MGCP at
//! all, and the transaction id of a command that failed to scan.
//!
//! A processor's socket receives SIP and MGCP alike, and an unscannable command still deserves
//! an error response, which the call agent can only match by transaction id (RFC 3435 §3.4).
//! Both rules are deliberately loose line matching; the scanner stays the authority on what is
//! well-formed.

/// Whether a datagram looks like MGCP: a 4-letter verb or a 3-digit response code as the first
/// token of its first non-blank line, and no `SIP/2.0` on that line (SIP's `INFO` has four
/// letters too, and a SIP status line starts with `SIP/2.0`).
pub fn looks_like_mgcp(b: &[u8]) -> bool {
    let start = b
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(b.len());
    let rest = b.get(start..).unwrap_or(&[]);
    let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    let line = rest.get(..line_end).unwrap_or(&[]);
    if line.windows(7).any(|w| w.eq_ignore_ascii_case(b"SIP/2.0")) {
        return false;
    }
    let tok_end = line
        .iter()
        .position(|&c| c == b' ' || c == b'\t')
        .unwrap_or(line.len());
    let tok = line.get(..tok_end).unwrap_or(&[]);
    (tok.len() == 4 && tok.iter().all(u8::is_ascii_alphabetic))
        || (tok.len() == 3 && tok.iter().all(u8::is_ascii_digit))
}

/// The transaction id of a command line `VERB tid ...`, read without a full scan, so an error
/// can still be answered (RFC 3435 §3.4: responses carry the command's id).
///
/// The first non-blank line is used. `None` for a response (first word starts with a digit:
/// responses are never answered), and when the id is not 1 to 9 decimal digits with a value
/// of at least 1 (RFC 3435 §3.2.1.2: 1..999999999).
pub fn leading_tid(msg: &[u8]) -> Option<u32> {
    let line = msg
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .find(|l| !l.is_empty())?;
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let verb = words.next()?;
    if verb.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let tid = words.next()?;
    if tid.is_empty() || tid.len() > 9 || !tid.iter().all(u8::is_ascii_digit) {
        return None;
    }
    tid.iter()
        .try_fold(0u32, |a, &d| {
            a.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
        .filter(|&t| t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mgcp_detection() {
        assert!(looks_like_mgcp(b"CRCX 1 a@gw MGCP 1.0\r\n"));
        assert!(looks_like_mgcp(b"\r\nRQNT 1 a@gw MGCP 1.0\r\n"));
        assert!(looks_like_mgcp(b"000 12\r\n"));
        assert!(!looks_like_mgcp(b"INFO sip:a@b SIP/2.0\r\n"));
        assert!(!looks_like_mgcp(b"SIP/2.0 200 OK\r\n"));
        assert!(!looks_like_mgcp(b"BYE sip:a@b SIP/2.0\r\n"));
        assert!(!looks_like_mgcp(b""));
        assert!(!looks_like_mgcp(b"\r\n\r\n"));
    }

    #[test]
    fn tid_of_commands_only() {
        assert_eq!(
            leading_tid(b"CRCX 1234 a@gw MGCP 1.0\r\nC: x\r\n"),
            Some(1234)
        );
        assert_eq!(leading_tid(b"\r\n  MDCX\t77 a@gw MGCP 1.0\r\n"), Some(77));
        assert_eq!(leading_tid(b"FROB 999999999"), Some(999_999_999));
        assert_eq!(leading_tid(b"200 1234 OK\r\n"), None, "a response");
        for bad in [
            &b"CRCX 0 a@gw"[..],
            b"CRCX 1234567890 a@gw",
            b"CRCX +5 a@gw",
            b"CRCX x1 a@gw",
            b"CRCX",
            b"",
            b"\r\n\r\n",
        ] {
            assert_eq!(leading_tid(bad), None, "{bad:?}");
        }
        // Loose by design: the verb is not checked, only that it is not a response code.
        assert_eq!(leading_tid(b"\xff\xfe 12"), Some(12));
    }
}
