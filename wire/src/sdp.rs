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
///
/// The fields are what `splitn(4, ' ')` gives (media, port, proto, the rest as formats), with
/// each SP found a word at a time instead of by a byte-by-byte split.
fn parse_media(rest: &[u8]) -> Option<Media<'_>> {
    use crate::scan::find_short;
    let s1 = find_short(rest, b' ')?;
    let media = rest.get(..s1).filter(|m| !m.is_empty())?;
    let r1 = rest.get(s1 + 1..)?;
    let s2 = find_short(r1, b' ')?;
    let port_field = r1.get(..s2)?;
    let r2 = r1.get(s2 + 1..)?;
    let (proto, formats) = match find_short(r2, b' ') {
        Some(s3) => (r2.get(..s3)?, r2.get(s3 + 1..)?),
        None => (r2, &[][..]),
    };
    let proto = Some(proto).filter(|p| !p.is_empty())?;
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
    lines(sdp).filter_map(media_line)
}

/// One line of [`lines`] as a media description: `None` unless it is a well-formed `m=`
/// line. For callers that walk the lines once for several purposes (an answer needs the
/// media and the offer's direction attribute).
#[inline]
pub fn media_line(line: &[u8]) -> Option<Media<'_>> {
    line.strip_prefix(b"m=").and_then(parse_media)
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

    /// The previous `splitn` formulation of [`super::parse_media`].
    fn parse_media_reference(rest: &[u8]) -> Option<super::Media<'_>> {
        let mut it = rest.splitn(4, |&b| b == b' ');
        let media = it.next().filter(|m| !m.is_empty())?;
        let port_field = it.next()?;
        let proto = it.next().filter(|p| !p.is_empty())?;
        let formats = it.next().unwrap_or(&[]);
        let mut pf = port_field.splitn(2, |&b| b == b'/');
        let port = super::num(pf.next()?).filter(|&p| p <= 65535)? as u16;
        let port_count = match pf.next() {
            Some(c) => Some(super::num(c).filter(|&c| c <= 65535)? as u16),
            None => None,
        };
        Some(super::Media {
            media,
            port,
            port_count,
            proto,
            formats,
        })
    }

    proptest! {
        #[test]
        fn media_lines_parse_like_the_splitn_version(v in prop_oneof![
            prop::collection::vec(
                prop_oneof![Just(b' '), Just(b'/'), Just(b'0'), Just(b'7'), Just(b'a'), any::<u8>()],
                0..40,
            ),
            (
                "(audio|video|)", "(0|6000|70000|1/2|2/|x|)", "(RTP/AVP|)", "( 0 8| 96|  | |)",
                "( |  )",
            )
                .prop_map(|(m, p, pr, f, sep)| format!("{m}{sep}{p} {pr}{f}").into_bytes()),
        ]) {
            prop_assert_eq!(super::parse_media(&v), parse_media_reference(&v));
        }
    }

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
