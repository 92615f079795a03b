//! Typed MGCP scan errors, mapped to the RFC 3435 return code a gateway would answer with.

/// What was wrong with an MGCP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MgcpErrorKind {
    /// Empty datagram or piggyback segment.
    #[error("empty message")]
    Empty,
    /// The message exceeds [`crate::Limits::max_message_size`].
    #[error("message too large")]
    TooLarge,
    /// A line exceeds [`crate::Limits::max_header_line`].
    #[error("line too long")]
    LineTooLong,
    /// More parameter lines than the view can hold or the limits allow.
    #[error("too many parameters")]
    TooManyParams,
    /// The first line has the wrong number of fields.
    #[error("malformed command line")]
    CommandLine,
    /// The verb is not four letters.
    #[error("malformed verb")]
    Verb,
    /// The transaction id is not a number in 1..=999999999.
    #[error("malformed transaction id")]
    TransactionId,
    /// The endpoint name is not `local@domain[:port]`.
    #[error("malformed endpoint name")]
    Endpoint,
    /// The protocol version is not `MGCP 1.0` (optionally followed by a profile).
    #[error("unsupported protocol version")]
    Version,
    /// The response code is not three digits.
    #[error("malformed response code")]
    ResponseCode,
    /// A parameter line is not `Name: value`.
    #[error("malformed parameter line")]
    ParamLine,
    /// A parameter name is neither an RFC 3435 parameter nor an `X-`/`X+` extension.
    #[error("unknown parameter")]
    UnknownParam,
}

impl MgcpErrorKind {
    /// The RFC 3435 return code for a response rejecting the command: 528 for an
    /// incompatible version, 511 for an unrecognised extension parameter, 510 otherwise.
    pub fn return_code(self) -> u16 {
        match self {
            MgcpErrorKind::Version => 528,
            MgcpErrorKind::UnknownParam => 511,
            _ => 510,
        }
    }
}

/// A scan failure: what was wrong and the byte offset where it was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {at}")]
pub struct MgcpError {
    /// The rule that failed.
    pub kind: MgcpErrorKind,
    /// Byte offset into the scanned buffer.
    pub at: usize,
}
