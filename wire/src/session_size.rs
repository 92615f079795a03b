//! Session size: how many capacity units a new session will cost a processor, so the
//! dispatcher can pick by size (claim: selection by announced session size).
//!
//! Resolution order, for SIP and MGCP alike:
//! 1. an explicit value in a configurable header (SIP, default `X-Session-Size`) or extension
//!    parameter (MGCP, default `X-Size`): a decimal number >= 1 is used as is; 0 or anything
//!    malformed is ignored (falls through);
//! 2. otherwise derived from the SDP body:
//!
//!    `units = Σ_{m= lines with port != 0} w(media) + Σ_{b=AS:<kbps> lines} ceil(kbps / kbps_per_unit)`
//!
//!    with `w(audio) = audio_units` (1), `w(video) = video_units` (4), `w(other) = other_units`
//!    (1) and `kbps_per_unit` = 64 (one G.711 call). Every `b=AS` line counts, session- or
//!    media-level: a sender that declares bandwidth twice is charged twice, which errs on the
//!    safe side. Rejected streams (port 0) cost nothing. Arithmetic saturates;
//! 3. otherwise (no header, no SDP, or SDP that yields 0) the size is 1.

use crate::sdp;

/// Where to find an explicit size and how to weigh SDP streams; built once from config and
/// shared by reference on the data path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSizeConfig {
    /// SIP header carrying an explicit size (matched case-insensitively).
    pub sip_header: Vec<u8>,
    /// MGCP extension parameter carrying an explicit size (matched case-insensitively).
    pub mgcp_param: Vec<u8>,
    /// Units per active audio stream.
    pub audio_units: u32,
    /// Units per active video stream.
    pub video_units: u32,
    /// Units per active stream of any other media type.
    pub other_units: u32,
    /// Kbps of `b=AS` bandwidth per unit (rounded up); 0 disables the bandwidth term.
    pub kbps_per_unit: u32,
}

impl Default for SessionSizeConfig {
    fn default() -> Self {
        SessionSizeConfig {
            sip_header: b"X-Session-Size".to_vec(),
            mgcp_param: b"X-Size".to_vec(),
            audio_units: 1,
            video_units: 4,
            other_units: 1,
            kbps_per_unit: 64,
        }
    }
}

/// Size derived from an SDP body with the formula above; `None` when it yields 0 units.
pub fn from_sdp(body: &[u8], cfg: &SessionSizeConfig) -> Option<u32> {
    let mut units: u32 = 0;
    for m in sdp::media(body).filter(|m| m.port != 0) {
        let w = if m.media.eq_ignore_ascii_case(b"audio") {
            cfg.audio_units
        } else if m.media.eq_ignore_ascii_case(b"video") {
            cfg.video_units
        } else {
            cfg.other_units
        };
        units = units.saturating_add(w);
    }
    if cfg.kbps_per_unit > 0 {
        for b in sdp::bandwidths(body).filter(|b| b.modifier.eq_ignore_ascii_case(b"AS")) {
            units = units.saturating_add(b.value.div_ceil(cfg.kbps_per_unit));
        }
    }
    (units > 0).then_some(units)
}

/// Parses an explicit size value: decimal, >= 1, surrounding white space allowed.
pub fn from_value(v: &[u8]) -> Option<u32> {
    crate::scan::parse_digits(v.trim_ascii(), 10)
        .filter(|&n| n >= 1)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

pub(crate) fn resolve(explicit: Option<&[u8]>, sdp: Option<&[u8]>, cfg: &SessionSizeConfig) -> u32 {
    explicit
        .and_then(from_value)
        .or_else(|| sdp.and_then(|b| from_sdp(b, cfg)))
        .unwrap_or(1)
}
