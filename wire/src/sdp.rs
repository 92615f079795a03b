//! The two SDP (RFC 8866) line types session sizing needs: `m=` and `b=`. Only iterators over
//! the body bytes: the dispatcher never needs a full SDP model, and skipping malformed lines
//! (rather than failing) keeps sizing best-effort, as the fallback to 1 unit expects.

/// One `m=<media> <port>[/<count>] <proto> <fmt> ...` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Media<'a> {
    /// Media type: `audio`, `video`, `application`, ...
    pub media: &'a [u8],
    /// Transport port; 0 means the stream is disabled or rejected.
    pub port: u16,
    /// The `/<count>` suffix, if any (number of consecutive ports).
    pub port_count: Option<u16>,
    /// Transport protocol, e.g. `RTP/AVP`.
    pub proto: &'a [u8],
    /// The format list as written (payload types), possibly empty.
    pub formats: &'a [u8],
}

/// One `b=<modifier>:<value>` line (value in kbps for `AS`/`CT`, bps for `TIAS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bandwidth<'a> {
    /// Modifier: `AS`, `CT`, `TIAS`, `RS`, `RR`, ...
    pub modifier: &'a [u8],
    /// Bandwidth value.
    pub value: u32,
}

/// Lines of an SDP body, CRLF or LF terminated, terminators removed.
pub fn lines(sdp: &[u8]) -> impl Iterator<Item = &[u8]> {
    Lines { rest: Some(sdp) }
}

/// The pieces `split(|&b| b == b'\n')` gives (the last one after the final LF, possibly empty),
/// each without a trailing CR; the LF is found a word at a time ([`crate::scan::find_short`]),
/// which costs a fraction of a byte-by-byte split on lines this short.
struct Lines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        let line = match crate::scan::find_short(rest, b'\n') {
            Some(i) => {
                self.rest = rest.get(i + 1..);
                rest.get(..i).unwrap_or(&[])
            }
            None => {
                self.rest = None;
                rest
            }
        };
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

fn num(s: &[u8]) -> Option<u64> {
    crate::scan::parse_digits(s, 10)
}

/// Parses an `m=` line (without the `m=` check); `None` if malformed.
fn parse_media(rest: &[u8]) -> Option<Media<'_>> {
    let mut it = rest.splitn(4, |&b| b == b' ');
    let media = it.next().filter(|m| !m.is_empty())?;
    let port_field = it.next()?;
    let proto = it.next().filter(|p| !p.is_empty())?;
    let formats = it.next().unwrap_or(&[]);
    let mut pf = port_field.splitn(2, |&b| b == b'/');
    let port = num(pf.next()?).filter(|&p| p <= 65535)? as u16;
    let port_count = match pf.next() {
        Some(c) => Some(num(c).filter(|&c| c <= 65535)? as u16),
        None => None,
    };
    Some(Media {
        media,
        port,
        port_count,
        proto,
        formats,
    })
}

/// Iterates the well-formed `m=` lines of an SDP body, in order.
pub fn media(sdp: &[u8]) -> impl Iterator<Item = Media<'_>> {
    lines(sdp).filter_map(|l| l.strip_prefix(b"m=").and_then(parse_media))
}

/// Iterates the well-formed `b=` lines of an SDP body (session and media level), in order.
pub fn bandwidths(sdp: &[u8]) -> impl Iterator<Item = Bandwidth<'_>> {
    lines(sdp).filter_map(|l| {
        let rest = l.strip_prefix(b"b=")?;
        let colon = memchr::memchr(b':', rest)?;
        let modifier = rest.get(..colon).filter(|m| !m.is_empty())?;
        let value = num(rest.get(colon + 1..)?.trim_ascii())?;
        Some(Bandwidth {
            modifier,
            value: u32::try_from(value).unwrap_or(u32::MAX),
        })
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lines_split_like_the_byte_split(v in prop::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'm'), any::<u8>()], 0..80,
        )) {
            let want: Vec<&[u8]> = v
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect();
            let got: Vec<&[u8]> = super::lines(&v).collect();
            prop_assert_eq!(got, want);
        }
    }
}
