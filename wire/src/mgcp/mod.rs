//! MGCP (RFC 3435) message views: command/response line, parameter lines, SDP body, and
//! splitting of piggybacked datagrams; plus the rules read or written without a full scan
//! (MGCP detection, the transaction id of an unscannable command, inserted parameters).
//!
//! Like the SIP view, [`Message::parse`] validates once and stores parameter lines as byte
//! ranges in a fixed inline array; accessors return slices of the input.

mod error;
mod line;
mod piggyback;
mod relay;
mod response;
mod sniff;

pub use error::{MgcpError, MgcpErrorKind};
pub use line::{Endpoint, Kind, Verb, Version};
pub use piggyback::{split_piggybacked, Piggybacked};
pub use relay::{
    insert_param, insert_params, relay_source_param, relayed_source, RELAY_SOURCE_PARAM,
};
pub use response::write_response;
pub use sniff::{leading_tid, looks_like_mgcp};

use crate::scan::{is_ws, line_at_short, Span};
use crate::session_size::{self, SessionSizeConfig};
use crate::Limits;

/// Default number of parameter lines a [`Message`] can hold.
pub const DEFAULT_MAX_PARAMS: usize = 64;

/// Whether `name` is an RFC 3435 parameter name (§3.2.2, plus the response-only ones),
/// case-insensitively: `B C I N X L M R S D O P E Z Z2 I2 F Q T RM RD A ES PL MD K`. Anything
/// else must be an `X-`/`X+` extension, otherwise the message is rejected with 511. A `match`
/// on the folded bytes, not a search of a list: every parameter line asks.
fn is_known_param(name: &[u8]) -> bool {
    match *name {
        [a] => matches!(
            a.to_ascii_uppercase(),
            b'B' | b'C'
                | b'I'
                | b'N'
                | b'X'
                | b'L'
                | b'M'
                | b'R'
                | b'S'
                | b'D'
                | b'O'
                | b'P'
                | b'E'
                | b'Z'
                | b'F'
                | b'Q'
                | b'T'
                | b'A'
                | b'K'
        ),
        [a, b] => matches!(
            [a.to_ascii_uppercase(), b.to_ascii_uppercase()],
            [b'Z', b'2']
                | [b'I', b'2']
                | [b'R', b'M']
                | [b'R', b'D']
                | [b'E', b'S']
                | [b'P', b'L']
                | [b'M', b'D']
        ),
        _ => false,
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Param {
    name: Span,
    value: Span,
}

/// One parameter line: name as written and trimmed value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamField<'a> {
    /// Parameter name (`I`, `ES`, `X-Size`, ...), as written.
    pub name: &'a [u8],
    /// Value, trimmed.
    pub value: &'a [u8],
}

/// A scanned MGCP message (one piggyback segment).
#[derive(Clone, Debug)]
pub struct Message<'a, const N: usize = DEFAULT_MAX_PARAMS> {
    buf: &'a [u8],
    kind: Kind<'a>,
    params: [Param; N],
    count: u16,
    /// For each letter `A`..=`Z`, one more than the index of the first single-letter
    /// parameter of that name (0: none), so [`Message::param`] is one load: a gateway asks
    /// for a dozen letters per command, and a search per ask cost more than the parse.
    first: [u16; 26],
    sdp: Option<Span>,
}

/// `A`..=`Z` (either case) as 0..=25.
#[inline]
fn letter_index(b: u8) -> Option<usize> {
    let l = b.to_ascii_uppercase().wrapping_sub(b'A');
    (l < 26).then_some(usize::from(l))
}

fn fail<T>(kind: MgcpErrorKind, at: usize) -> Result<T, MgcpError> {
    Err(MgcpError { kind, at })
}

impl<'a> Message<'a> {
    /// Scans one MGCP message (split piggybacked datagrams first with
    /// [`split_piggybacked`]). Never panics or allocates.
    pub fn parse(buf: &'a [u8], limits: &Limits) -> Result<Self, MgcpError> {
        Self::parse_with_capacity(buf, limits)
    }
}

impl<'a, const N: usize> Message<'a, N> {
    /// Like [`Message::parse`] with a parameter array of `N` entries.
    pub fn parse_with_capacity(buf: &'a [u8], limits: &Limits) -> Result<Self, MgcpError> {
        // Filled in place inside the returned `Result`, through one exit, as the SIP view
        // is. The view is ~700 bytes; the compiler still builds it on the stack and copies it
        // to the caller once (~100 instructions per message): callers that only borrow the
        // view use [`Message::parse_then`], which has no copy.
        let mut out = Ok(Message::empty(buf));
        if let Ok(msg) = &mut out {
            if let Err(e) = msg.fill(limits) {
                out = Err(e);
            }
        }
        out
    }

    /// Scans `buf` like [`Message::parse_with_capacity`] and lends the view to `f` where it
    /// was built; returns what `f` returns. For a caller that handles each message in place
    /// (a gateway): the view is never moved, so its copy out is saved.
    #[inline]
    pub fn parse_then<R>(
        buf: &'a [u8],
        limits: &Limits,
        f: impl FnOnce(&Message<'a, N>) -> R,
    ) -> Result<R, MgcpError> {
        let mut msg = Message::empty(buf);
        msg.fill(limits)?;
        Ok(f(&msg))
    }

    /// A view of `buf` with nothing scanned yet (the kind is a placeholder until
    /// [`Message::fill`] sets it).
    #[inline(always)]
    fn empty(buf: &'a [u8]) -> Self {
        Message {
            buf,
            kind: Kind::Response {
                code: 0,
                tid: 0,
                commentary: &[],
            },
            params: [Param::default(); N],
            count: 0,
            first: [0; 26],
            sdp: None,
        }
    }

    /// Scans the first line and the parameter lines of `self.buf` into `self`;
    /// [`Message::parse_with_capacity`]'s body.
    #[inline(always)]
    fn fill(&mut self, limits: &Limits) -> Result<(), MgcpError> {
        let buf = self.buf;
        let cap = limits.message_cap();
        if buf.len() > cap {
            return fail(MgcpErrorKind::TooLarge, cap);
        }
        let max_params = limits.max_headers.min(N).min(u16::MAX as usize);
        let max_line = limits.max_header_line;
        let mut pos = 0;
        while matches!(buf.get(pos), Some(b'\r' | b'\n')) {
            pos += 1;
        }
        if pos >= buf.len() {
            return fail(MgcpErrorKind::Empty, pos);
        }
        let (le, mut next) = line_at_short(buf, pos).unwrap_or((buf.len(), buf.len()));
        if le - pos > max_line {
            return fail(MgcpErrorKind::LineTooLong, pos);
        }
        self.kind = line::parse(buf.get(pos..le).unwrap_or(&[]), pos)?;
        let buf = self.buf;
        let msg = self;
        while next < buf.len() {
            let ls = next;
            let (le, nx) = line_at_short(buf, ls).unwrap_or((buf.len(), buf.len()));
            next = nx;
            if le == ls {
                if nx < buf.len() {
                    msg.sdp = Some(Span::new(nx, buf.len()));
                }
                break;
            }
            if le - ls > max_line {
                return fail(MgcpErrorKind::LineTooLong, ls);
            }
            let line = buf.get(ls..le).unwrap_or(&[]);
            // Nearly every line is a one-letter name and a colon (`C: 1A3C4`): that shape
            // skips the general name scan and the extension test.
            let (name_len, ws) = match line {
                [a, b':', ..] if a.is_ascii_alphanumeric() => (1, 0),
                _ => {
                    let name_len = line
                        .iter()
                        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'+')
                        .count();
                    let rest = line.get(name_len..).unwrap_or(&[]);
                    let ws = rest.iter().take_while(|&&b| is_ws(b)).count();
                    if name_len == 0 || rest.get(ws) != Some(&b':') {
                        return fail(MgcpErrorKind::ParamLine, ls);
                    }
                    (name_len, ws)
                }
            };
            let name = line.get(..name_len).unwrap_or(&[]);
            let is_ext = name.len() > 2
                && (name.starts_with(b"X-")
                    || name.starts_with(b"x-")
                    || name.starts_with(b"X+")
                    || name.starts_with(b"x+"));
            if !is_ext && !is_known_param(name) {
                return fail(MgcpErrorKind::UnknownParam, ls);
            }
            let mut vs = ls + name_len + ws + 1;
            while buf.get(vs).is_some_and(|&b| is_ws(b)) && vs < le {
                vs += 1;
            }
            let mut ve = le;
            while ve > vs && buf.get(ve - 1).is_some_and(|&b| is_ws(b)) {
                ve -= 1;
            }
            let idx = msg.count as usize;
            if idx >= max_params {
                return fail(MgcpErrorKind::TooManyParams, ls);
            }
            if let Some(slot) = msg.params.get_mut(idx) {
                *slot = Param {
                    name: Span::new(ls, ls + name_len),
                    value: Span::new(vs, ve),
                };
            }
            msg.count += 1;
            if let [letter] = *name {
                if let Some(f) = letter_index(letter).and_then(|l| msg.first.get_mut(l)) {
                    if *f == 0 {
                        *f = msg.count;
                    }
                }
            }
        }
        Ok(())
    }

    /// Command (verb, transaction id, endpoint, version) or response (code, tid, commentary).
    pub fn kind(&self) -> Kind<'a> {
        self.kind
    }

    /// The transaction id of a command or response: the retransmission-dedupe key.
    pub fn tid(&self) -> u32 {
        match self.kind {
            Kind::Command { tid, .. } | Kind::Response { tid, .. } => tid,
        }
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// All parameter lines in order.
    pub fn params(&self) -> impl Iterator<Item = ParamField<'a>> + '_ {
        let buf = self.buf;
        self.params
            .iter()
            .take(self.count as usize)
            .map(move |p| ParamField {
                name: p.name.get(buf),
                value: p.value.get(buf),
            })
    }

    /// The first value of a single-letter parameter (`b'I'` for ConnectionId, `b'C'` for
    /// CallId, ...), case-insensitive. Inlined: a gateway asks a dozen times per command,
    /// and the lookup is a few loads against a call's overhead.
    #[inline]
    pub fn param(&self, name: u8) -> Option<&'a [u8]> {
        let Some(l) = letter_index(name) else {
            return self.param_named(&[name]);
        };
        let i = usize::from(*self.first.get(l)?).checked_sub(1)?;
        self.params.get(i).map(|p| p.value.get(self.buf))
    }

    /// The first value of a parameter by full name (`b"ES"`, `b"X-Size"`), case-insensitive.
    pub fn param_named(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.params()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }

    /// The session description after the blank line, if any.
    pub fn sdp(&self) -> Option<&'a [u8]> {
        self.sdp.map(|s| s.get(self.buf))
    }

    /// Session size in units: the configured extension parameter (default `X-Size`), else the
    /// SDP formula of [`crate::session_size`], else 1.
    pub fn session_size(&self, cfg: &SessionSizeConfig) -> u32 {
        session_size::resolve(self.param_named(&cfg.mgcp_param), self.sdp(), cfg)
    }
}
