//! Typed scan errors, shaped so a SIP element can answer `400 <reason>` citing the problem.

/// What was wrong with a SIP message.
///
/// One variant per rule the scanner enforces, so callers (and the RFC 4475 table test) can tell
/// the failures apart; `Display` is a short phrase usable as (part of) a 400 reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SipErrorKind {
    /// The datagram is empty (or only CRLF keep-alives).
    #[error("empty message")]
    Empty,
    /// The datagram exceeds [`crate::Limits::max_message_size`].
    #[error("message too large")]
    TooLarge,
    /// The datagram ends before the blank line that closes the header section.
    #[error("truncated header section")]
    Truncated,
    /// A physical line exceeds [`crate::Limits::max_header_line`].
    #[error("header line too long")]
    LineTooLong,
    /// More header lines than the view can hold or the limits allow.
    #[error("too many headers")]
    TooManyHeaders,
    /// The start line does not have the `A SP B SP C` shape (extra, missing or trailing SP).
    #[error("malformed start line")]
    StartLine,
    /// The request method is not a token.
    #[error("malformed method")]
    Method,
    /// The Request-URI is malformed (no scheme, `<>`, LWS, escaped headers in a SIP URI, ...).
    #[error("malformed Request-URI")]
    RequestUri,
    /// The SIP version is not `SIP/2.0`.
    #[error("unsupported SIP version")]
    Version,
    /// The status code is not three digits in 100..=699.
    #[error("malformed status code")]
    StatusCode,
    /// A header line has no colon, an empty or non-token name, or starts with white space.
    #[error("malformed header line")]
    HeaderLine,
    /// A Via header value does not follow the `via-parm` grammar.
    #[error("malformed Via header")]
    Via,
    /// A To, From or Contact value is not a valid name-addr / addr-spec; names the header.
    #[error("malformed {0} header")]
    NameAddr(&'static str),
    /// The CSeq is not `1*DIGIT LWS method` with a number below 2^31.
    #[error("malformed CSeq header")]
    CSeq,
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
    /// The Call-ID is empty or holds characters outside `word`.
    #[error("malformed Call-ID header")]
    CallId,
    /// Max-Forwards is not a number in 0..=255.
    #[error("malformed Max-Forwards header")]
    MaxForwards,
    /// Content-Length is not a non-negative decimal number.
    #[error("malformed Content-Length header")]
    ContentLength,
    /// Content-Length announces more body than the datagram holds.
    #[error("Content-Length larger than message")]
    ContentLengthTooLarge,
    /// The Date header is not in the GMT form RFC 3261 requires.
    #[error("malformed Date header")]
    Date,
    /// A header the scanner needs to classify the message (CSeq, Via) is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
}

/// A scan failure: what was wrong and the byte offset in the input where it was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {at}")]
pub struct SipError {
    /// The rule that failed.
    pub kind: SipErrorKind,
    /// Byte offset into the scanned buffer.
    pub at: usize,
}

impl SipError {
    pub(crate) fn new(kind: SipErrorKind, at: usize) -> Self {
        SipError { kind, at }
    }
}
