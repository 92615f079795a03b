//! RFC 3435 §3.5.5 piggybacking: several messages in one datagram, separated by a line holding
//! a single `.`. Splitting is a separate pass so each segment gets its own view.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Iterator over the messages of one datagram; see [`split_piggybacked`].
#[derive(Clone, Debug)]
pub struct Piggybacked<'a> {
    rest: &'a [u8],
}

/// Splits a datagram into its piggybacked messages. A datagram without separators yields
/// itself; empty segments (e.g. after a trailing `.`) are skipped.
pub fn split_piggybacked(datagram: &[u8]) -> Piggybacked<'_> {
    Piggybacked { rest: datagram }
}

/// The `\n.` searcher, built once: building one per datagram cost half the search.
static SEPARATOR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n."));

/// The first separator line (a line holding only `.`) in `buf`: `(start, next)`, where
/// `start` is where the `.` is and `next` the first byte after its line end (CRLF or LF), or
/// `buf.len()` for a final `.` with no line end.
///
/// A separator starts the buffer or follows an LF, so only `\n.` pairs (found by one vector
/// search) and a leading `.` are candidates: walking every line cost a search per line, and
/// almost every datagram holds one message and no separator at all.
fn separator(buf: &[u8]) -> Option<(usize, usize)> {
    let ends_line = |dot: usize| match buf.get(dot + 1..) {
        Some([]) => Some(buf.len()),
        Some([b'\n', ..]) => Some(dot + 2),
        Some([b'\r', b'\n', ..]) => Some(dot + 3),
        _ => None,
    };
    if buf.first() == Some(&b'.') {
        if let Some(next) = ends_line(0) {
            return Some((0, next));
        }
    }
    SEPARATOR
        .find_iter(buf)
        .find_map(|lf| ends_line(lf + 1).map(|next| (lf + 1, next)))
}

impl<'a> Iterator for Piggybacked<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let buf = self.rest;
            let (seg, rest) = match separator(buf) {
                Some((start, next)) => (
                    buf.get(..start).unwrap_or(&[]),
                    buf.get(next..).unwrap_or(&[]),
                ),
                None => (buf, &[][..]),
            };
            self.rest = rest;
            if !seg.iter().all(|&b| b == b'\r' || b == b'\n') {
                return Some(seg);
            }
        }
    }
}
