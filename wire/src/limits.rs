/// Upper bounds the scanners enforce before doing any work that scales with the input.
///
/// They exist so that a hostile datagram costs a bounded amount of time and stack, and so the
/// operator can tighten them for a deployment without recompiling the parsers. Offsets inside
/// the views are stored as `u16`, so `max_message_size` is additionally capped at 65535 (the
/// largest UDP payload) whatever value is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes (capped at 65535).
    pub max_message_size: usize,
    /// Most header lines (SIP) or parameter lines (MGCP) kept per message; the view's fixed
    /// array may be smaller, in which case the array size wins.
    pub max_headers: usize,
    /// Longest physical line accepted, in bytes, excluding its terminator.
    pub max_header_line: usize,
}

impl Limits {
    /// Largest value `max_message_size` can take effect with: views store `u16` offsets.
    pub const ABSOLUTE_MAX_MESSAGE: usize = u16::MAX as usize;

    pub(crate) fn message_cap(&self) -> usize {
        self.max_message_size.min(Self::ABSOLUTE_MAX_MESSAGE)
    }
}

impl Default for Limits {
    /// Defaults sized for UDP signalling: one datagram, 64 headers, 4 KiB lines.
    fn default() -> Self {
        Limits {
            max_message_size: 65535,
            max_headers: 64,
            max_header_line: 4096,
        }
    }
}
