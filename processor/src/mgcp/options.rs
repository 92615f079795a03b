//! Parsing of the MGCP parameters the gateway acts on: connection modes (RFC 3435 §3.2.2.6),
//! LocalConnectionOptions (§3.2.2.10) and transaction-id lists in `K:` (§3.2.2.19).

/// Connection modes a gateway must know (§3.2.2.6); anything else is answered 517.
const MODES: &[&str] = &[
    "sendonly", "recvonly", "sendrecv", "confrnce", "inactive", "loopback", "conttest", "netwloop",
    "netwtest", "data", "replcate",
];

/// The canonical (lowercase) mode, or `None` when unsupported.
pub(crate) fn mode(v: &[u8]) -> Option<&'static str> {
    MODES
        .iter()
        .copied()
        .find(|m| m.as_bytes().eq_ignore_ascii_case(v.trim_ascii()))
}

/// The SDP direction attribute that matches a connection mode.
pub(crate) fn sdp_direction(mode: &str) -> &'static str {
    match mode {
        "sendonly" => "sendonly",
        "recvonly" => "recvonly",
        "sendrecv" | "confrnce" | "replcate" | "data" => "sendrecv",
        _ => "inactive",
    }
}

/// Codecs the gateway can announce: (encoding name, static payload type).
const CODECS: &[(&str, u8)] = &[
    ("PCMU", 0),
    ("GSM", 3),
    ("G723", 4),
    ("PCMA", 8),
    ("G722", 9),
    ("G729", 18),
];

/// What the gateway took from `L:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LocalOptions {
    /// Chosen codec (name, payload type), when `a:` was given.
    pub codec: Option<(&'static str, u8)>,
    /// Packetization period in ms (`p:`; the lower bound of a range).
    pub ptime: Option<u32>,
}

/// Why `L:` was refused: the RFC 3435 code and commentary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OptionError(pub u16, pub &'static str);

/// Parses `L:`; options the gateway does not understand are ignored (they are hints), but an
/// `a:` list with no supported codec or a malformed `p:` is refused.
pub(crate) fn local_options(v: &[u8]) -> Result<LocalOptions, OptionError> {
    let mut lo = LocalOptions::default();
    for item in v.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() {
            continue;
        }
        let Some(colon) = item.iter().position(|&b| b == b':') else {
            return Err(OptionError(524, "malformed LocalConnectionOptions"));
        };
        let key = item[..colon].trim_ascii();
        let val = item[colon + 1..].trim_ascii();
        if key.eq_ignore_ascii_case(b"a") {
            let found = val.split(|&b| b == b';').find_map(|c| {
                let c = c.trim_ascii();
                let name = c.split(|&b| b == b'/').next().unwrap_or(c);
                CODECS
                    .iter()
                    .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
                    .copied()
            });
            match found {
                Some(c) => lo.codec = Some(c),
                None => return Err(OptionError(532, "unsupported codec")),
            }
        } else if key.eq_ignore_ascii_case(b"p") {
            let first = val.split(|&b| b == b'-').next().unwrap_or(val);
            let ms = std::str::from_utf8(first.trim_ascii())
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|&n| (1..=1000).contains(&n));
            match ms {
                Some(ms) => lo.ptime = Some(ms),
                None => return Err(OptionError(532, "unsupported packetization period")),
            }
        }
    }
    Ok(lo)
}

/// Whether `tid` is listed in a `K:` value (`6234-6255, 6257`).
#[cfg(test)]
pub(crate) fn k_list_contains(v: &[u8], tid: u32) -> bool {
    k_list(v).any(|(lo, hi)| (lo..=hi).contains(&tid))
}

/// The ranges of a `K:` value; malformed items are skipped.
pub(crate) fn k_list(v: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    v.split(|&b| b == b',').filter_map(|item| {
        let s = std::str::from_utf8(item.trim_ascii()).ok()?;
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let lo: u32 = a.trim().parse().ok()?;
        let hi: u32 = b.trim().parse().ok()?;
        (lo <= hi && hi - lo <= 100_000).then_some((lo, hi))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_options_and_k_lists() {
        assert_eq!(mode(b"RecvOnly"), Some("recvonly"));
        assert_eq!(mode(b"bogus"), None);
        let lo = local_options(b"p:10-20, a:G729;PCMA, e:on, s:off, x-foo:1").unwrap();
        assert_eq!(lo.codec, Some(("G729", 18)));
        assert_eq!(lo.ptime, Some(10));
        assert_eq!(local_options(b"a:AMR").unwrap_err().0, 532);
        assert_eq!(local_options(b"p:zz").unwrap_err().0, 532);
        assert_eq!(local_options(b"nonsense").unwrap_err().0, 524);
        assert!(k_list_contains(b"6234-6255, 6257", 6240));
        assert!(k_list_contains(b"6234-6255, 6257", 6257));
        assert!(!k_list_contains(b"6234-6255, 6257", 6256));
        assert!(!k_list_contains(b"", 1));
    }
}
