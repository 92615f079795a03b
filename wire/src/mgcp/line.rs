//! MGCP first lines (RFC 3435 §3.2.1 command header, §3.3 response header).

use super::error::{MgcpError, MgcpErrorKind};
use crate::scan::{find_short, is_ws, parse_digits};

/// An MGCP command verb. Unknown four-letter verbs are kept (uppercased) so a gateway can
/// answer 504 "unknown command" with the verb it did not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Verb {
    Crcx,
    Mdcx,
    Dlcx,
    Rqnt,
    Ntfy,
    Auep,
    Aucx,
    Epcf,
    Rsip,
    /// Any other four-letter verb, uppercased.
    Other([u8; 4]),
}

impl Verb {
    fn from_bytes(b: [u8; 4]) -> Verb {
        match &b {
            b"CRCX" => Verb::Crcx,
            b"MDCX" => Verb::Mdcx,
            b"DLCX" => Verb::Dlcx,
            b"RQNT" => Verb::Rqnt,
            b"NTFY" => Verb::Ntfy,
            b"AUEP" => Verb::Auep,
            b"AUCX" => Verb::Aucx,
            b"EPCF" => Verb::Epcf,
            b"RSIP" => Verb::Rsip,
            _ => Verb::Other(b),
        }
    }

    /// The verb as sent on the wire (uppercase).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Verb::Crcx => b"CRCX",
            Verb::Mdcx => b"MDCX",
            Verb::Dlcx => b"DLCX",
            Verb::Rqnt => b"RQNT",
            Verb::Ntfy => b"NTFY",
            Verb::Auep => b"AUEP",
            Verb::Aucx => b"AUCX",
            Verb::Epcf => b"EPCF",
            Verb::Rsip => b"RSIP",
            Verb::Other(b) => b,
        }
    }
}

/// An endpoint name `local@domain[:port]` (RFC 3435 §2.1.1, §3.2.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint<'a> {
    /// The whole name as written.
    pub name: &'a [u8],
    /// Local part, e.g. `aaln/1`, possibly with wildcards.
    pub local: &'a [u8],
    /// Domain: a host name or `[ip]` (brackets kept).
    pub domain: &'a [u8],
    /// Port suffix, if any.
    pub port: Option<u16>,
}

impl Endpoint<'_> {
    /// Whether the local part uses the "all of" (`*`) or "any of" (`$`) wildcard, i.e. the
    /// command does not address one endpoint and the gateway picks or fans out.
    pub fn is_wildcard(&self) -> bool {
        self.local.iter().any(|&b| b == b'*' || b == b'$')
    }

    /// Whether the local part uses the "any of" (`$`) wildcard (the gateway picks one).
    pub fn is_any_of(&self) -> bool {
        self.local.contains(&b'$')
    }
}

/// Protocol version and optional profile (`MGCP 1.0 NCS 1.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    /// Major version (1).
    pub major: u8,
    /// Minor version (0).
    pub minor: u8,
    /// Profile name and version as written (`NCS 1.0`), if present.
    pub profile: Option<&'a [u8]>,
}

/// Command or response, with the first-line fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A command from a call agent (or a gateway's NTFY/RSIP).
    Command {
        /// The verb.
        verb: Verb,
        /// Transaction id, 1..=999999999: the dedupe key for retransmissions.
        tid: u32,
        /// Addressed endpoint.
        endpoint: Endpoint<'a>,
        /// Protocol version.
        version: Version<'a>,
    },
    /// A response.
    Response {
        /// Return code 000..=999.
        code: u16,
        /// Transaction id of the command answered.
        tid: u32,
        /// Commentary text (possibly empty).
        commentary: &'a [u8],
    },
}

/// Splits `line` into white-space separated fields with their offsets.
fn fields(line: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while line.get(pos).is_some_and(|&b| is_ws(b)) {
            pos += 1;
        }
        let s = pos;
        while line.get(pos).is_some_and(|&b| !is_ws(b)) {
            pos += 1;
        }
        (pos > s).then(|| (s, line.get(s..pos).unwrap_or(&[])))
    })
}

fn tid(f: &[u8]) -> Option<u32> {
    parse_digits(f, 9).filter(|&n| n >= 1).map(|n| n as u32)
}

// The searches below are over one field of a first line (a few dozen bytes): the word loop
// of `find_short` costs less there than a call into a vector search set up for long input.

fn parse_endpoint(f: &[u8]) -> Option<Endpoint<'_>> {
    let at = find_short(f, b'@')?;
    let local = f.get(..at)?;
    let rest = f.get(at + 1..)?;
    if local.is_empty() || local.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
        return None;
    }
    let (domain, port_s) = if rest.first() == Some(&b'[') {
        let close = find_short(rest, b']')?;
        let inner = rest.get(1..close)?;
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (rest.get(..close + 1)?, rest.get(close + 1..)?)
    } else {
        let end = find_short(rest, b':').unwrap_or(rest.len());
        let d = rest.get(..end)?;
        if d.is_empty()
            || !d.iter().all(|&b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*' | b'$')
            })
        {
            return None;
        }
        (d, rest.get(end..)?)
    };
    let port = match port_s {
        [] => None,
        [b':', p @ ..] => Some(parse_digits(p, 5).filter(|&n| n <= 65535)? as u16),
        _ => return None,
    };
    Some(Endpoint {
        name: f,
        local,
        domain,
        port,
    })
}

fn parse_version(name: &[u8], ver: &[u8]) -> Option<(u8, u8)> {
    if !name.eq_ignore_ascii_case(b"MGCP") {
        return None;
    }
    let dot = find_short(ver, b'.')?;
    let major = parse_digits(ver.get(..dot)?, 3).filter(|&n| n <= 255)? as u8;
    let minor = parse_digits(ver.get(dot + 1..)?, 3).filter(|&n| n <= 255)? as u8;
    Some((major, minor))
}

/// Parses the first line `line`, located at `base` in the message (for error offsets).
pub(crate) fn parse(line: &[u8], base: usize) -> Result<Kind<'_>, MgcpError> {
    let e = |kind, off: usize| MgcpError {
        kind,
        at: base + off,
    };
    let mut it = fields(line);
    let Some((o0, f0)) = it.next() else {
        return Err(e(MgcpErrorKind::CommandLine, 0));
    };
    if f0.first().is_some_and(|b| b.is_ascii_digit()) {
        let code = match parse_digits(f0, 3) {
            Some(c) if f0.len() == 3 => c as u16,
            _ => return Err(e(MgcpErrorKind::ResponseCode, o0)),
        };
        let Some((o1, f1)) = it.next() else {
            return Err(e(MgcpErrorKind::TransactionId, line.len()));
        };
        let tid = tid(f1).ok_or(e(MgcpErrorKind::TransactionId, o1))?;
        let commentary = match it.next() {
            Some((o2, _)) => line.get(o2..).unwrap_or(&[]),
            None => &[],
        };
        return Ok(Kind::Response {
            code,
            tid,
            commentary,
        });
    }
    let verb = match f0 {
        [a, b, c, d] if f0.iter().all(|x| x.is_ascii_alphabetic()) => Verb::from_bytes([
            a.to_ascii_uppercase(),
            b.to_ascii_uppercase(),
            c.to_ascii_uppercase(),
            d.to_ascii_uppercase(),
        ]),
        _ => return Err(e(MgcpErrorKind::Verb, o0)),
    };
    let (Some((o1, f1)), Some((o2, f2)), Some((o3, f3)), Some((_, f4))) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(e(MgcpErrorKind::CommandLine, line.len()));
    };
    let tid = tid(f1).ok_or(e(MgcpErrorKind::TransactionId, o1))?;
    let endpoint = parse_endpoint(f2).ok_or(e(MgcpErrorKind::Endpoint, o2))?;
    let (major, minor) = parse_version(f3, f4).ok_or(e(MgcpErrorKind::Version, o3))?;
    let profile = match (it.next(), it.next(), it.next()) {
        (None, _, _) => None,
        (Some((o5, _)), Some((o6, f6)), None) => line.get(o5..o6 + f6.len()),
        (Some((o5, _)), _, _) => return Err(e(MgcpErrorKind::CommandLine, o5)),
    };
    Ok(Kind::Command {
        verb,
        tid,
        endpoint,
        version: Version {
            major,
            minor,
            profile,
        },
    })
}
