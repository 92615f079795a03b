//! Parsing of the MGCP parameters the gateway acts on: connection modes (RFC 3435 §3.2.2.6),
//! LocalConnectionOptions (§3.2.2.10) and transaction-id lists in `K:` (§3.2.2.19).

/// Connection modes a gateway must know (§3.2.2.6); anything else is answered 517.
const MODES: &[&str] = &[
    "sendonly", "recvonly", "sendrecv", "confrnce", "inactive", "loopback", "conttest", "netwloop",
    "netwtest", "data", "replcate",
];

/// The canonical (lowercase) mode, or `None` when unsupported. Every mode but `data` is
/// eight letters, so the value is compared as one lowercased word: `x | 0x20` is a lowercase
/// letter exactly when `x` is a letter, which makes the word compare a case-insensitive
/// compare against these all-letter names (the list search it replaces cost more than the
/// rest of CRCX's parameter handling).
pub(crate) fn mode(v: &[u8]) -> Option<&'static str> {
    let v = v.trim_ascii();
    if let Ok(w) = <[u8; 8]>::try_from(v) {
        let w = u64::from_le_bytes(w) | 0x2020_2020_2020_2020;
        return MODE_WORDS.iter().find(|(mw, _)| *mw == w).map(|&(_, m)| m);
    }
    v.eq_ignore_ascii_case(b"data").then_some("data")
}

/// [`MODES`] as little-endian words; 0 (which no lowercased value equals) for the names
/// that are not eight letters long.
const MODE_WORDS: [(u64, &str); MODES.len()] = {
    let mut t = [(0u64, ""); MODES.len()];
    let mut i = 0;
    while i < MODES.len() {
        let m = MODES[i].as_bytes();
        t[i] = (if m.len() == 8 { le_word(m) } else { 0 }, MODES[i]);
        i += 1;
    }
    t
};

/// Up to the first eight bytes of `s` as a little-endian word (zero-padded), for the tables
/// built at compile time.
const fn le_word(s: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut j = 0;
    while j < s.len() && j < 8 {
        w |= (s[j] as u64) << (8 * j);
        j += 1;
    }
    w
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

/// [`CODECS`] names uppercased into words with their lengths, for one compare per entry.
const CODEC_WORDS: [(u32, usize, (&str, u8)); CODECS.len()] = {
    let mut t = [(0u32, 0usize, ("", 0u8)); CODECS.len()];
    let mut i = 0;
    while i < CODECS.len() {
        let n = CODECS[i].0.as_bytes();
        // Every name is at most four bytes, so the word fits a `u32`.
        t[i] = (le_word(n) as u32, n.len(), CODECS[i]);
        i += 1;
    }
    t
};

/// The codec named `name` (case-insensitive), if the gateway can announce it.
fn codec(name: &[u8]) -> Option<(&'static str, u8)> {
    if name.is_empty() || name.len() > 4 {
        return None;
    }
    let mut w = [0u8; 4];
    for (d, s) in w.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    let w = u32::from_le_bytes(w);
    CODEC_WORDS
        .iter()
        .find(|&&(cw, len, _)| cw == w && len == name.len())
        .map(|&(_, _, c)| c)
}

/// What `str::parse::<u32>` accepts (an optional `+`, then digits), without the UTF-8
/// check and the generic parser.
fn parse_u32(s: &[u8]) -> Option<u32> {
    let d = s.strip_prefix(b"+").unwrap_or(s);
    if d.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &b in d {
        let x = b.wrapping_sub(b'0');
        if x > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(x))?;
    }
    Some(v)
}

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
        let key = item.get(..colon).unwrap_or_default().trim_ascii();
        let val = item.get(colon + 1..).unwrap_or_default().trim_ascii();
        match key {
            [b'a' | b'A'] => {
                let found = val.split(|&b| b == b';').find_map(|c| {
                    let c = c.trim_ascii();
                    codec(c.split(|&b| b == b'/').next().unwrap_or(c))
                });
                match found {
                    Some(c) => lo.codec = Some(c),
                    None => return Err(OptionError(532, "unsupported codec")),
                }
            }
            [b'p' | b'P'] => {
                let first = val.split(|&b| b == b'-').next().unwrap_or(val);
                match parse_u32(first.trim_ascii()).filter(|&n| (1..=1000).contains(&n)) {
                    Some(ms) => lo.ptime = Some(ms),
                    None => return Err(OptionError(532, "unsupported packetization period")),
                }
            }
            _ => {}
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

/// The first list-search forms of [`mode`] and [`local_options`], kept as the models the
/// word compares are tested against.
#[cfg(test)]
mod model {
    use super::*;

    pub(super) fn mode_model(v: &[u8]) -> Option<&'static str> {
        MODES
            .iter()
            .copied()
            .find(|m| m.as_bytes().eq_ignore_ascii_case(v.trim_ascii()))
    }

    /// Parses `L:`; options the gateway does not understand are ignored (they are hints), but an
    /// `a:` list with no supported codec or a malformed `p:` is refused.
    pub(super) fn local_options_model(v: &[u8]) -> Result<LocalOptions, OptionError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("p:20".to_string()),
            Just("P: +10 - 20".to_string()),
            Just("p:0".to_string()),
            Just("p:4294967296".to_string()),
            Just("a:PCMU".to_string()),
            Just("a: g729 ;pcma".to_string()),
            Just("A:GSM/8000".to_string()),
            Just("a:GSM\u{0}".to_string()),
            Just("a:AMR".to_string()),
            Just("e:on".to_string()),
            Just("nonsense".to_string()),
            Just(" ".to_string()),
            "[aAp]:[ +0-9a-zA-Z;/-]{0,10}",
            "[ -~]{0,8}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// The word compares decide exactly as the list searches they replace.
        #[test]
        fn options_equal_models(items in proptest::collection::vec(piece(), 0..5), m in prop_oneof![
            Just("sendrecv".to_string()), Just("RecvOnly".to_string()), Just(" data ".to_string()),
            Just("DATA".to_string()), Just("recvonl@".to_string()), "[a-zA-Z@\\[` ]{0,10}",
        ]) {
            let v = items.join(",");
            prop_assert_eq!(local_options(v.as_bytes()), model::local_options_model(v.as_bytes()));
            prop_assert_eq!(mode(m.as_bytes()), model::mode_model(m.as_bytes()));
        }
    }

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
