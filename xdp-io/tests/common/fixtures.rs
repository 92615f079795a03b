//! Loader for the golden XDP frames in `testdata/xdp/frames.txt`, generated with scapy by
//! `testdata/xdp/gen_frames.py` (independently of the code under test; see that script for the
//! format and `testdata/README.md` for how to regenerate).
//!
//! Depends on nothing of the crate under test: expectations come from the fixture file only.

use std::net::SocketAddr;

use dispatcher_common::Counter;

/// `testdata/xdp/frames.txt`, seen from this crate.
pub fn frames_path() -> String {
    format!("{}/xdp/frames.txt", super::TESTDATA)
}

/// An XDP action, as the program returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `XDP_ABORTED`.
    Aborted,
    /// `XDP_DROP`.
    Drop,
    /// `XDP_PASS`.
    Pass,
    /// `XDP_REDIRECT`.
    Redirect,
}

impl Action {
    /// The action's value in `enum xdp_action` (linux/bpf.h).
    pub fn code(self) -> u32 {
        match self {
            Action::Aborted => 0,
            Action::Drop => 1,
            Action::Pass => 2,
            Action::Redirect => 4,
        }
    }
}

/// What user-space `frame::parse` must make of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseExpect {
    /// Accepted, with these fields.
    Ok(Parsed),
    /// Rejected because a header is truncated or impossible (`Truncated` or `Malformed`).
    Malformed,
    /// Rejected: this ethertype is not IP (after at most one VLAN tag).
    NotIp(u16),
    /// Rejected: this IP protocol / IPv6 next header is not UDP.
    NotUdp(u8),
    /// Rejected: an IPv4 fragment.
    Fragment,
}

/// The fields of an accepted frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Datagram source.
    pub src: SocketAddr,
    /// Datagram destination.
    pub dst: SocketAddr,
    /// VLAN TCI, if tagged.
    pub vlan: Option<u16>,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// Where the UDP payload starts in the frame.
    pub payload_offset: usize,
    /// UDP payload length (from the UDP length field).
    pub payload_len: usize,
}

/// The source-guard maps a case runs under (`config:`); the default is `open`. Prefixes are
/// kept as written: the test turns them into the loader's type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardFixture {
    /// `allow=`: the allow-list.
    pub allow: Vec<String>,
    /// `rate=RATE/BURST`.
    pub rate: Option<(u32, u32)>,
    /// `exempt=`: rate-limit exemptions.
    pub exempt: Vec<String>,
}

/// One golden frame.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Unique case name.
    pub name: String,
    /// What the XDP program must return.
    pub action: Action,
    /// The one counter that must increment.
    pub counter: Counter,
    /// What `frame::parse` must return.
    pub parse: ParseExpect,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
    /// The source guard it runs under.
    pub config: GuardFixture,
    /// Runs before the checked ones, each `REDIRECT redirected` (`prime:`).
    pub prime: u32,
    /// Checked runs, each giving `action` and `counter` (`repeat:`, at least 1).
    pub repeat: u32,
}

/// Every fixture in [`frames_path`]; panics with the case and line on anything unexpected, so
/// a bad file fails the tests instead of silently testing less.
pub fn load() -> Vec<Fixture> {
    let path = frames_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("XDP frame fixtures missing at {path}: {e}"));
    let fixtures = parse_fixtures(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(!fixtures.is_empty(), "{path} holds no fixtures");
    fixtures
}

/// The 22 cases the hand-built golden list had before the fixtures; they must stay covered.
pub const ORIGINAL_CASES: [&str; 22] = [
    "ipv4 udp 5060",
    "ipv4 udp 2427",
    "ipv6 udp 5060",
    "vlan ipv4 udp 5060",
    "vlan ipv6 udp 2427",
    "ipv4 udp 5099 (processor port)",
    "ipv4 udp 22",
    "ipv4 tcp 5060",
    "ipv4 icmp",
    "arp",
    "ipv4 first fragment to 5060",
    "ipv4 later fragment",
    "ipv6 with extension header",
    "ethernet header only",
    "truncated ipv4 header",
    "truncated udp header",
    "ipv4 ihl < 5",
    "ipv4 ethertype with version 5",
    "udp length beyond frame",
    "udp length < 8",
    "vlan tag truncated",
    "truncated ipv6 header",
];

/// Panics unless every case of [`ORIGINAL_CASES`] is among `fixtures`.
pub fn assert_original_cases_covered(fixtures: &[Fixture]) {
    let missing: Vec<&str> = ORIGINAL_CASES
        .iter()
        .copied()
        .filter(|n| !fixtures.iter().any(|f| f.name == *n))
        .collect();
    assert!(missing.is_empty(), "fixtures lost cases: {missing:?}");
}

/// Parses the text format described in `gen_frames.py`.
pub fn parse_fixtures(text: &str) -> Result<Vec<Fixture>, String> {
    let mut out: Vec<Fixture> = Vec::new();
    let mut block: Vec<(usize, &str, &str)> = Vec::new();
    for (i, line) in text.lines().enumerate().chain([(usize::MAX, "")]) {
        let line = line.trim_end();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if !block.is_empty() {
                let f = fixture(&block)?;
                if out.iter().any(|o| o.name == f.name) {
                    return Err(format!("duplicate case name {:?}", f.name));
                }
                out.push(f);
                block.clear();
            }
            continue;
        }
        let (key, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("line {}: expected `key: value`", i + 1))?;
        block.push((i + 1, key, value.trim()));
    }
    Ok(out)
}

type Block<'a> = [(usize, &'a str, &'a str)];

/// The one value of `key` in a block.
fn value<'a>(block: &Block<'a>, key: &str) -> Result<&'a str, String> {
    let mut it = block.iter().filter(|(_, k, _)| *k == key);
    match (it.next(), it.next()) {
        (Some((_, _, v)), None) => Ok(v),
        (None, _) => Err(format!("no `{key}`")),
        (Some(_), Some((l, _, _))) => Err(format!("line {l}: second `{key}`")),
    }
}

fn fixture(block: &Block<'_>) -> Result<Fixture, String> {
    let first = block[0].0;
    let get = |key: &str| value(block, key).map_err(|e| format!("case at line {first}: {e}"));
    let name = get("name")?.to_string();
    let ctx = |e: String| format!("case {name:?} (line {first}): {e}");
    for (l, k, _) in block {
        let known = [
            "name", "xdp", "parse", "src", "dst", "vlan", "ttl", "payload", "frame", "config",
            "prime", "repeat",
        ];
        if !known.contains(k) {
            return Err(ctx(format!("line {l}: unknown key `{k}`")));
        }
    }
    let (action, counter) = get("xdp")?
        .split_once(' ')
        .ok_or_else(|| ctx("xdp: expected `VERDICT counter`".into()))?;
    let action = match action {
        "ABORTED" => Action::Aborted,
        "DROP" => Action::Drop,
        "PASS" => Action::Pass,
        "REDIRECT" => Action::Redirect,
        other => return Err(ctx(format!("unknown XDP verdict {other:?}"))),
    };
    let counter = match counter {
        "redirected" => Counter::Redirected,
        "passed" => Counter::Passed,
        "malformed" => Counter::Malformed,
        "no_socket" => Counter::NoSocket,
        "dropped_not_allowed" => Counter::DroppedNotAllowed,
        "dropped_rate" => Counter::DroppedRate,
        other => return Err(ctx(format!("unknown counter {other:?}"))),
    };
    let parse = get("parse")?;
    let parse = match parse.split_once(' ').unwrap_or((parse, "")) {
        ("ok", "") => ParseExpect::Ok(parsed(block).map_err(ctx)?),
        ("malformed", "") => ParseExpect::Malformed,
        ("fragment", "") => ParseExpect::Fragment,
        ("not-ip", v) => ParseExpect::NotIp(
            v.strip_prefix("0x")
                .and_then(|h| u16::from_str_radix(h, 16).ok())
                .ok_or_else(|| ctx(format!("not-ip: bad ethertype {v:?}")))?,
        ),
        ("not-udp", v) => {
            ParseExpect::NotUdp(v.parse().map_err(|_| ctx(format!("not-udp: bad {v:?}")))?)
        }
        _ => return Err(ctx(format!("unknown parse expectation {parse:?}"))),
    };
    if !matches!(parse, ParseExpect::Ok(_)) {
        for k in ["src", "dst", "vlan", "ttl", "payload"] {
            if value(block, k).is_ok() {
                return Err(ctx(format!("`{k}` given for a frame parse rejects")));
            }
        }
    }
    let frame = hex(get("frame")?).map_err(ctx)?;
    if let ParseExpect::Ok(p) = &parse {
        if p.payload_offset + p.payload_len > frame.len() {
            return Err(ctx("payload beyond the frame".into()));
        }
    }
    let config = match value(block, "config") {
        Ok(c) => guard_config(c).map_err(ctx)?,
        Err(_) => GuardFixture::default(),
    };
    let count = |k: &str, default: u32| -> Result<u32, String> {
        match value(block, k) {
            Ok(v) => v.parse().map_err(|_| ctx(format!("{k}: bad count {v:?}"))),
            Err(_) => Ok(default),
        }
    };
    let prime = count("prime", 0)?;
    let repeat = count("repeat", 1)?;
    if repeat == 0 {
        return Err(ctx("repeat: must be at least 1".into()));
    }
    Ok(Fixture {
        name,
        action,
        counter,
        parse,
        frame,
        config,
        prime,
        repeat,
    })
}

/// `open`, or space-separated `allow=CIDR[,CIDR]`, `rate=RATE/BURST`, `exempt=CIDR[,CIDR]`.
fn guard_config(text: &str) -> Result<GuardFixture, String> {
    let mut g = GuardFixture::default();
    if text == "open" {
        return Ok(g);
    }
    for item in text.split_whitespace() {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("config: {item:?} is not KEY=VALUE"))?;
        let list = || v.split(',').map(str::to_owned).collect::<Vec<_>>();
        match k {
            "allow" => g.allow = list(),
            "exempt" => g.exempt = list(),
            "rate" => {
                let (r, b) = v
                    .split_once('/')
                    .ok_or_else(|| format!("config: rate {v:?} is not RATE/BURST"))?;
                let n = |x: &str| x.parse().map_err(|_| format!("config: rate {v:?}"));
                g.rate = Some((n(r)?, n(b)?));
            }
            _ => return Err(format!("config: unknown item {k:?}")),
        }
    }
    Ok(g)
}

fn parsed(block: &Block<'_>) -> Result<Parsed, String> {
    let get = |k: &str| value(block, k);
    let addr = |k: &str| -> Result<SocketAddr, String> {
        let v = get(k)?;
        v.parse().map_err(|e| format!("{k}: {v:?}: {e}"))
    };
    let num = |k: &str, v: &str| -> Result<usize, String> {
        v.parse().map_err(|e| format!("{k}: {v:?}: {e}"))
    };
    let vlan = match get("vlan")? {
        "none" => None,
        v => Some(u16::try_from(num("vlan", v)?).map_err(|e| format!("vlan: {e}"))?),
    };
    let ttl = u8::try_from(num("ttl", get("ttl")?)?).map_err(|e| format!("ttl: {e}"))?;
    let payload = get("payload")?;
    let (off, len) = payload
        .split_once(' ')
        .ok_or_else(|| format!("payload: expected `OFFSET LENGTH`, got {payload:?}"))?;
    Ok(Parsed {
        src: addr("src")?,
        dst: addr("dst")?,
        vlan,
        ttl,
        payload_offset: num("payload offset", off)?,
        payload_len: num("payload length", len)?,
    })
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.is_ascii() || !s.len().is_multiple_of(2) {
        return Err("frame: not an even number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("frame: bad hex at digit {i}"))
        })
        .collect()
}
