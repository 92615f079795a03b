//! Source prefixes for the XDP source guard (`--allow-source`, `--rate-exempt`): an IPv4 or
//! IPv6 address and a prefix length, written `198.18.0.0/15`, `2001:db8::/32`, or a bare
//! address (a host: /32 or /128).
use std::{fmt, net::IpAddr, str::FromStr};

use thiserror::Error;

/// An IPv4 or IPv6 prefix with its host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix does not parse; each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PrefixError {
    /// The part before `/` is not an IP address.
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    Address(String),
    /// The part after `/` is not a number.
    #[error("prefix length {0:?} is not a number")]
    Length(String),
    /// The length exceeds the family's address width.
    #[error("prefix length {len} is longer than an {family} address ({max} bits)")]
    TooLong {
        /// Given length.
        len: u32,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// 32 or 128.
        max: u8,
    },
    /// Bits beyond the length are set: most likely a typo, so it is refused, not masked.
    #[error("{given} has host bits set beyond /{len}; did you mean {suggest}?")]
    HostBits {
        /// What was written.
        given: String,
        /// Its length.
        len: u8,
        /// The network it most likely meant.
        suggest: Prefix,
    },
}

impl Prefix {
    /// `addr/len`; `None` when `len` exceeds the address width or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let p = Self { addr, len };
        (len <= p.max_len() && p.masked() == p).then_some(p)
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether the length is 0 (the prefix covers every address of its family).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn max_len(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The same prefix with every bit beyond `len` cleared (`len` ≤ the address width).
    fn masked(&self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let m = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & m).into())
            }
        };
        Self {
            addr,
            len: self.len,
        }
    }

    /// Whether `ip` falls inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                Self {
                    addr: ip,
                    len: self.len,
                }
                .masked()
                    == *self
            }
            _ => false,
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let s = s.trim();
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| PrefixError::Address(a.to_owned()))?;
        let (family, max) = if addr.is_ipv4() {
            ("IPv4", 32)
        } else {
            ("IPv6", 128)
        };
        let len = match l {
            None => max,
            Some(l) => {
                let n: u32 = l.parse().map_err(|_| PrefixError::Length(l.to_owned()))?;
                if n > u32::from(max) {
                    return Err(PrefixError::TooLong {
                        len: n,
                        family,
                        max,
                    });
                }
                n as u8
            }
        };
        let p = Self { addr, len };
        let m = p.masked();
        if m != p {
            return Err(PrefixError::HostBits {
                given: s.to_owned(),
                len,
                suggest: m,
            });
        }
        Ok(p)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        assert_eq!(p("198.18.0.0/15").len(), 15);
        assert_eq!(
            p("198.18.0.0/15").addr(),
            "198.18.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(p("2001:db8::/32").len(), 32);
        assert_eq!(p("198.18.0.2").len(), 32);
        assert_eq!(p("2001:db8:5e::2").len(), 128);
        assert_eq!(p("0.0.0.0/0").len(), 0);
        assert!(p("::/0").is_empty());
        assert_eq!(p(" 10.0.0.0/8 ").to_string(), "10.0.0.0/8");
        assert_eq!(p("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(p("198.18.0.2/32").to_string(), "198.18.0.2/32");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Prefix>().unwrap_err();
        assert!(matches!(err("198.18.0.0/"), PrefixError::Length(_)));
        assert!(matches!(err("198.18.0.0/x"), PrefixError::Length(_)));
        assert!(matches!(err("example.com/8"), PrefixError::Address(_)));
        assert!(matches!(err(""), PrefixError::Address(_)));
        assert!(matches!(err("198.18.0/16"), PrefixError::Address(_)));
        assert!(matches!(
            err("198.18.0.0/33"),
            PrefixError::TooLong {
                len: 33,
                max: 32,
                ..
            }
        ));
        assert!(matches!(
            err("::/129"),
            PrefixError::TooLong { max: 128, .. }
        ));
        let e = err("198.18.0.2/24");
        assert_eq!(
            e.to_string(),
            "198.18.0.2/24 has host bits set beyond /24; did you mean 198.18.0.0/24?"
        );
        assert_eq!(
            err("2001:db8::1/32").to_string(),
            "2001:db8::1/32 has host bits set beyond /32; did you mean 2001:db8::/32?"
        );
        assert_eq!(
            err("1.2.3.4/40").to_string(),
            "prefix length 40 is longer than an IPv4 address (32 bits)"
        );
    }

    #[test]
    fn contains_matches_only_its_family_and_bits() {
        let net = p("198.18.0.0/15");
        assert!(net.contains("198.19.255.255".parse().unwrap()));
        assert!(!net.contains("198.20.0.0".parse().unwrap()));
        assert!(!net.contains("::ffff:198.18.0.1".parse().unwrap()));
        assert!(p("::/0").contains("2001:db8::1".parse().unwrap()));
        assert!(!p("::/0").contains("10.0.0.1".parse().unwrap()));
        assert!(p("0.0.0.0/0").contains("10.0.0.1".parse().unwrap()));
        assert_eq!(Prefix::new("10.0.0.1".parse().unwrap(), 8), None);
        assert_eq!(
            Prefix::new("10.0.0.0".parse().unwrap(), 8),
            Some(p("10.0.0.0/8"))
        );
    }
}
