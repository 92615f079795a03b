//! MGCP first lines (RFC 3435 §3.2.1 command header, §3.3 response header).

use super::error::{MgcpError, MgcpErrorKind};
use crate::scan::{find_short, find_ws, is_ws, parse_digits};

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

/// The white-space separated fields of a first line, with their offsets. A first line is a
/// few dozen bytes split by single spaces: the byte loops here are the whole cost, so they
/// walk slices (no per-byte bounds checks) and stop at the first separator.
struct Fields<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    #[inline]
    fn next(&mut self) -> Option<(usize, &'a [u8])> {
        let mut start = self.pos;
        // Fields are nearly always one space apart: a byte loop for the gap.
        while self.line.get(start).is_some_and(|&b| is_ws(b)) {
            start += 1;
        }
        let rest = self.line.get(start..).filter(|r| !r.is_empty())?;
        let len = find_ws(rest);
        self.pos = start + len;
        Some((start, rest.get(..len)?))
    }
}

/// 1..=999999999 (RFC 3435 §3.2.1.2).
#[inline]
fn tid(f: &[u8]) -> Option<u32> {
    parse_digits(f, 9).filter(|&n| n >= 1).map(|n| n as u32)
}

/// Byte classes of endpoint names: the local part is any visible ASCII, the domain a host
/// name (letters, digits, `-._`, and the wildcards `*$`) or a bracketed address.
const EP_LOCAL: u8 = 1;
const EP_DOMAIN: u8 = 2;
const EP_IP: u8 = 4;

const fn endpoint_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b >= 0x21 && b < 0x7f {
            t[i] |= EP_LOCAL;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*' | b'$') {
            t[i] |= EP_DOMAIN;
        }
        if b.is_ascii_hexdigit() || matches!(b, b':' | b'.') {
            t[i] |= EP_IP;
        }
        i += 1;
    }
    t
}

static EP_CLASSES: [u8; 256] = endpoint_classes();

#[inline]
fn all_in(s: &[u8], class: u8) -> bool {
    s.iter().all(|&b| EP_CLASSES[usize::from(b)] & class != 0)
}

// The searches below are over one field of a first line (a few dozen bytes): the word loop
// of `find_short` costs less there than a call into a vector search set up for long input.

fn parse_endpoint(f: &[u8]) -> Option<Endpoint<'_>> {
    let at = find_short(f, b'@')?;
    let local = f.get(..at)?;
    let rest = f.get(at + 1..)?;
    if local.is_empty() || !all_in(local, EP_LOCAL) {
        return None;
    }
    let (domain, port_s) = if rest.first() == Some(&b'[') {
        let close = find_short(rest, b']')?;
        let inner = rest.get(1..close)?;
        if inner.is_empty() || !all_in(inner, EP_IP) {
            return None;
        }
        (rest.get(..close + 1)?, rest.get(close + 1..)?)
    } else {
        let end = find_short(rest, b':').unwrap_or(rest.len());
        let d = rest.get(..end)?;
        if d.is_empty() || !all_in(d, EP_DOMAIN) {
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
    // Every deployed agent sends `1.0`; the general form below stays for the rest.
    if ver == b"1.0" {
        return Some((1, 0));
    }
    let dot = find_short(ver, b'.')?;
    let major = parse_digits(ver.get(..dot)?, 3).filter(|&n| n <= 255)? as u8;
    let minor = parse_digits(ver.get(dot + 1..)?, 3).filter(|&n| n <= 255)? as u8;
    Some((major, minor))
}

/// The verb of a four-letter field, uppercased a word at a time: `None` unless all four are
/// ASCII letters.
#[inline]
fn verb(f: &[u8]) -> Option<Verb> {
    let &[a, b, c, d] = f else {
        return None;
    };
    if ![a, b, c, d].iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    // Letters differ from their uppercase form only in bit 5.
    let up = (u32::from_le_bytes([a, b, c, d]) & !0x2020_2020).to_le_bytes();
    Some(Verb::from_bytes(up))
}

/// Parses the first line `line`, located at `base` in the message (for error offsets).
pub(crate) fn parse(line: &[u8], base: usize) -> Result<Kind<'_>, MgcpError> {
    let e = |kind, off: usize| MgcpError {
        kind,
        at: base + off,
    };
    let mut it = Fields { line, pos: 0 };
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
    let verb = verb(f0).ok_or(e(MgcpErrorKind::Verb, o0))?;
    let (Some((o1, f1)), Some((o2, f2)), Some((o3, f3)), Some((_, f4))) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(e(MgcpErrorKind::CommandLine, line.len()));
    };
    let tid = tid(f1).ok_or(e(MgcpErrorKind::TransactionId, o1))?;
    let endpoint = parse_endpoint(f2).ok_or(e(MgcpErrorKind::Endpoint, o2))?;
    let (major, minor) = parse_version(f3, f4).ok_or(e(MgcpErrorKind::Version, o3))?;
    let profile = match it.next() {
        None => None,
        Some((o5, _)) => match (it.next(), it.next()) {
            (Some((o6, f6)), None) => line.get(o5..o6 + f6.len()),
            _ => return Err(e(MgcpErrorKind::CommandLine, o5)),
        },
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

/// The first parser, kept as the model [`parse`] is tested against.
#[cfg(test)]
mod model {
    use super::*;

    /// Splits `line` into white-space separated fields with their offsets.
    fn fields_model(line: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
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

    fn tid_model(f: &[u8]) -> Option<u32> {
        parse_digits(f, 9).filter(|&n| n >= 1).map(|n| n as u32)
    }

    fn parse_endpoint_model(f: &[u8]) -> Option<Endpoint<'_>> {
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

    fn parse_version_model(name: &[u8], ver: &[u8]) -> Option<(u8, u8)> {
        if !name.eq_ignore_ascii_case(b"MGCP") {
            return None;
        }
        let dot = find_short(ver, b'.')?;
        let major = parse_digits(ver.get(..dot)?, 3).filter(|&n| n <= 255)? as u8;
        let minor = parse_digits(ver.get(dot + 1..)?, 3).filter(|&n| n <= 255)? as u8;
        Some((major, minor))
    }

    /// Parses the first line `line`, located at `base` in the message (for error offsets).
    pub(super) fn parse_model(line: &[u8], base: usize) -> Result<Kind<'_>, MgcpError> {
        let e = |kind, off: usize| MgcpError {
            kind,
            at: base + off,
        };
        let mut it = fields_model(line);
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
            let tid = tid_model(f1).ok_or(e(MgcpErrorKind::TransactionId, o1))?;
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
        let tid = tid_model(f1).ok_or(e(MgcpErrorKind::TransactionId, o1))?;
        let endpoint = parse_endpoint_model(f2).ok_or(e(MgcpErrorKind::Endpoint, o2))?;
        let (major, minor) = parse_version_model(f3, f4).ok_or(e(MgcpErrorKind::Version, o3))?;
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
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    fn first_line() -> impl Strategy<Value = Vec<u8>> {
        let field = prop_oneof![
            Just(b"CRCX".to_vec()),
            Just(b"mdcx".to_vec()),
            Just(b"DlCx".to_vec()),
            Just(b"XYZW".to_vec()),
            Just(b"CRC1".to_vec()),
            Just(b"200".to_vec()),
            Just(b"1000000000".to_vec()),
            Just(b"0".to_vec()),
            Just(b"MGCP".to_vec()),
            Just(b"mgcp".to_vec()),
            Just(b"1.0".to_vec()),
            Just(b"01.000".to_vec()),
            Just(b"256.0".to_vec()),
            Just(b"NCS".to_vec()),
            Just(b"aaln/1@gw.example".to_vec()),
            Just(b"aaln/$@[2001:db8::1]:2427".to_vec()),
            Just(b"*@gw-1.example:70000".to_vec()),
            Just(b"a@b:".to_vec()),
            Just(b"@b".to_vec()),
            Just(b"x@[]".to_vec()),
            "[0-9]{1,10}".prop_map(String::into_bytes),
            "[!-~]{0,12}@[!-~]{0,12}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        let sep = prop_oneof![
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"  ".to_vec()),
            Just(b" \t ".to_vec())
        ];
        (
            proptest::collection::vec((sep.clone(), field), 0..8),
            proptest::option::of(sep),
        )
            .prop_map(|(parts, tail)| {
                let mut v = Vec::new();
                for (i, (s, f)) in parts.into_iter().enumerate() {
                    if i > 0 {
                        v.extend_from_slice(&s);
                    }
                    v.extend_from_slice(&f);
                }
                if let Some(t) = tail {
                    v.extend_from_slice(&t);
                }
                v
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// The word-at-a-time parser gives exactly what the first, field-iterator one gave:
        /// the same kind and fields, or the same error at the same offset.
        #[test]
        fn first_line_parse_equals_model(line in first_line(), base in 0usize..100) {
            prop_assert_eq!(super::parse(&line, base), super::model::parse_model(&line, base));
        }

        #[test]
        fn first_line_parse_equals_model_on_any_bytes(line in proptest::collection::vec(any::<u8>(), 0..48)) {
            prop_assert_eq!(super::parse(&line, 0), super::model::parse_model(&line, 0));
        }
    }
}
