//! RFC 3435 §3.5.5 piggybacking: several messages in one datagram, separated by a line holding
//! a single `.`. Splitting is a separate pass so each segment gets its own view.

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

impl<'a> Iterator for Piggybacked<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let buf = self.rest;
            let mut pos = 0;
            let (seg, rest) = loop {
                match crate::scan::line_at(buf, pos) {
                    Some((end, next)) => {
                        if buf.get(pos..end) == Some(b".") {
                            break (
                                buf.get(..pos).unwrap_or(&[]),
                                buf.get(next..).unwrap_or(&[]),
                            );
                        }
                        pos = next;
                    }
                    None => {
                        if buf.get(pos..) == Some(b".") {
                            break (buf.get(..pos).unwrap_or(&[]), &[][..]);
                        }
                        break (buf, &[][..]);
                    }
                }
            };
            self.rest = rest;
            if !seg.iter().all(|&b| b == b'\r' || b == b'\n') {
                return Some(seg);
            }
        }
    }
}
