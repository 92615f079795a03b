//! Load reports over the LAN (claims 4, 7, 12, 15): a processor on another host tells its
//! dispatchers how loaded it is, and that it is alive, a few times a second.
//!
//! Wire format, version 2 (all integers big-endian), 64 bytes plus a 16-byte tag:
//!
//! ```text
//!  0  "SYLR"           magic
//!  4  u8  version = 2 (1 is accepted: its bytes 56..64 were reserved, zero)
//!  5  u8  flags (0)
//!  6  u16 processor id (its index in every dispatcher's processor list)
//!  8  u64 sequence number (strictly increasing per sender; replays are rejected)
//! 16  u64 sender clock, ns (informational)
//! 24  u32 active sessions
//! 28  u32 capacity in units (0: unlimited)
//! 32  u64 units in use
//! 40  u64 units released, ever
//! 48  u64 units rejected, ever
//! 56  u32 new-INVITE transactions pending (answered, not yet acknowledged)
//! 60  u32 the processor's cap on those (0: unlimited)
//! 64  [16] HMAC-SHA256(key, bytes 0..64), truncated
//! ```
//!
//! The tag is keyed with a secret shared by the dispatchers and their processors, so a stranger
//! on the LAN cannot make a dead processor look alive, or an idle one look busy, and so poison
//! selection. Anything that fails to decode is rejected with a typed error the dispatcher counts.
//!
//! Version 2 added the pending-INVITE count and cap, so a dispatcher stops selecting a remote
//! processor at its cap (as it does for in-chassis ones) instead of learning it from the
//! processor's 503s. It reuses version 1's reserved bytes, and a version-1 report decodes with
//! both at 0 (unknown, unlimited): dispatchers and processors can be upgraded in either order.
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// Bytes of a report, tag included.
pub const REPORT_LEN: usize = 80;
const BODY_LEN: usize = 64;
const MAGIC: &[u8; 4] = b"SYLR";
const VERSION: u8 = 2;

/// What a processor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// The processor's id (its index in the dispatchers' lists).
    pub id: u16,
    /// Strictly increasing per sender.
    pub seq: u64,
    /// Sender clock, ns.
    pub sent_ns: u64,
    /// Active sessions (SIP dialogs + MGCP connections).
    pub active: u32,
    /// Capacity in units (0: unlimited).
    pub capacity: u32,
    /// Units in use now.
    pub units_in_use: u64,
    /// Units released, ever.
    pub released_units: u64,
    /// Units rejected, ever.
    pub rejected_units: u64,
    /// New-INVITE transactions pending now (version 2; 0 in version 1).
    pub pending_invites: u32,
    /// The processor's cap on them (0: unlimited, or a version-1 sender).
    pub max_pending_invites: u32,
}

/// Why a datagram is not an acceptable report.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ReportError {
    /// Not 80 bytes.
    #[error("report of {0} bytes (expected {REPORT_LEN})")]
    Length(usize),
    /// Not a Switchyard load report.
    #[error("bad magic")]
    Magic,
    /// A version this build does not speak.
    #[error("unsupported report version {0}")]
    Version(u8),
    /// The tag does not verify: wrong key, or tampered.
    #[error("authentication failed (wrong key or tampered report)")]
    Auth,
}

/// A shared report key; derive it from the operator's secret with [`ReportKey::new`].
#[derive(Clone)]
pub struct ReportKey(Vec<u8>);

impl std::fmt::Debug for ReportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReportKey(..)")
    }
}

impl ReportKey {
    /// A key from secret bytes (any length; HMAC handles it).
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    /// Reads the key from a file (trailing whitespace ignored). An empty key is refused: an
    /// unauthenticated LAN would let anybody steer selection.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        let key = bytes.trim_ascii_end();
        if key.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("report key file {} is empty", path.display()),
            ));
        }
        Ok(Self::new(key))
    }

    fn tag(&self, body: &[u8]) -> [u8; 16] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut t = [0u8; 16];
        t.copy_from_slice(&full[..16]);
        t
    }
}

impl Report {
    /// Encodes and signs.
    pub fn encode(&self, key: &ReportKey) -> [u8; REPORT_LEN] {
        let mut b = [0u8; REPORT_LEN];
        b[0..4].copy_from_slice(MAGIC);
        b[4] = VERSION;
        b[6..8].copy_from_slice(&self.id.to_be_bytes());
        b[8..16].copy_from_slice(&self.seq.to_be_bytes());
        b[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
        b[24..28].copy_from_slice(&self.active.to_be_bytes());
        b[28..32].copy_from_slice(&self.capacity.to_be_bytes());
        b[32..40].copy_from_slice(&self.units_in_use.to_be_bytes());
        b[40..48].copy_from_slice(&self.released_units.to_be_bytes());
        b[48..56].copy_from_slice(&self.rejected_units.to_be_bytes());
        b[56..60].copy_from_slice(&self.pending_invites.to_be_bytes());
        b[60..64].copy_from_slice(&self.max_pending_invites.to_be_bytes());
        let tag = key.tag(&b[..BODY_LEN]);
        b[BODY_LEN..].copy_from_slice(&tag);
        b
    }

    /// Verifies and decodes.
    pub fn decode(b: &[u8], key: &ReportKey) -> Result<Self, ReportError> {
        let b: &[u8; REPORT_LEN] = b.try_into().map_err(|_| ReportError::Length(b.len()))?;
        if &b[0..4] != MAGIC {
            return Err(ReportError::Magic);
        }
        if b[4] != VERSION && b[4] != 1 {
            return Err(ReportError::Version(b[4]));
        }
        let want = key.tag(&b[..BODY_LEN]);
        // Constant-time compare: the tag is a secret-dependent value.
        let diff = want
            .iter()
            .zip(&b[BODY_LEN..])
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
            return Err(ReportError::Auth);
        }
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        Ok(Self {
            id: u16_at(6),
            seq: u64_at(8),
            sent_ns: u64_at(16),
            active: u32_at(24),
            capacity: u32_at(28),
            units_in_use: u64_at(32),
            released_units: u64_at(40),
            rejected_units: u64_at(48),
            pending_invites: u32_at(56),
            max_pending_invites: u32_at(60),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            id: 3,
            seq: 42,
            sent_ns: 7,
            active: 10,
            capacity: 100,
            units_in_use: 12,
            released_units: 1000,
            rejected_units: 4,
            pending_invites: 17,
            max_pending_invites: 100,
        }
    }

    #[test]
    fn round_trip() {
        let k = ReportKey::new(b"secret");
        assert_eq!(Report::decode(&sample().encode(&k), &k), Ok(sample()));
    }

    #[test]
    fn a_version_1_report_decodes_with_no_pending_information() {
        let k = ReportKey::new(b"secret");
        let v1 = Report {
            pending_invites: 0,
            max_pending_invites: 0,
            ..sample()
        };
        let mut b = v1.encode(&k);
        b[4] = 1;
        let tag = k.tag(&b[..BODY_LEN]);
        b[BODY_LEN..].copy_from_slice(&tag);
        assert_eq!(Report::decode(&b, &k), Ok(v1));
    }

    #[test]
    fn wrong_key_tamper_and_garbage_are_rejected() {
        let k = ReportKey::new(b"secret");
        let b = sample().encode(&k);
        assert_eq!(
            Report::decode(&b, &ReportKey::new(b"other")),
            Err(ReportError::Auth)
        );
        for i in 0..REPORT_LEN {
            let mut t = b;
            t[i] ^= 0x01;
            assert!(Report::decode(&t, &k).is_err(), "flip at {i} accepted");
        }
        assert_eq!(Report::decode(&b[..79], &k), Err(ReportError::Length(79)));
        let mut v = b;
        v[4] = 3;
        assert_eq!(Report::decode(&v, &k), Err(ReportError::Version(3)));
        assert_eq!(Report::decode(&[0u8; 80], &k), Err(ReportError::Magic));
    }
}
