//! The deployment settings both binaries share: `switchyard` starts processors in the chassis,
//! `switchyard-processor` runs one on another host, and both must agree on what a setting means
//! (ids and pool size encoded in tags, the tag key, capacity, media ranges, timers). One type
//! and one parser per value live here; each binary's flags parse through them and each builds
//! its [`ProcessorConfig`] with [`Deployment::processor`]. (They used to parse `--media-ports`
//! differently and split it in two places.)
use std::{fmt, net::SocketAddr, path::Path, str::FromStr, time::Duration};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wire::{
    tag::{TagKey, TagKeys},
    SessionSizeConfig,
};

use crate::thread::ProcessorConfig;

/// An inclusive UDP port range for RTP, `FIRST-LAST`. RTP takes even ports (RTCP the odd one
/// above), so ranges are split on even boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

/// Fewest ports a range may hold: one RTP/RTCP pair for SIP and one for MGCP.
pub const MIN_MEDIA_PORTS: u32 = 4;

impl PortRange {
    /// Ports in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Never: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Part `k` of `n` equal, even-aligned parts (one per processor); `None` when a part would
    /// hold fewer than [`MIN_MEDIA_PORTS`].
    pub fn share(self, n: u16, k: u16) -> Option<PortRange> {
        let each = (self.len() / u32::from(n.max(1))) & !1;
        if each < MIN_MEDIA_PORTS || k >= n.max(1) {
            return None;
        }
        let first = u32::from(self.first) + each * u32::from(k);
        Some(PortRange {
            first: first as u16,
            last: (first + each - 1).min(u32::from(self.last)) as u16,
        })
    }

    /// The (SIP, MGCP) halves, split on an even port.
    pub fn halves(self) -> (PortRange, PortRange) {
        let (first, last) = (self.first, self.last.max(self.first));
        let mid = (first + (((last - first) / 2) & !1))
            .max(first.saturating_add(2))
            .min(last);
        (
            PortRange {
                first,
                last: mid.saturating_sub(1).max(first),
            },
            PortRange { first: mid, last },
        )
    }

    /// As the processors' configs take it.
    pub fn as_pair(self) -> (u16, u16) {
        (self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = String;

    /// `FIRST-LAST`, at least [`MIN_MEDIA_PORTS`] ports.
    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?}: expected FIRST-LAST, e.g. 20000-59999"))?;
        let first: u16 = lo.trim().parse().map_err(|e| format!("{lo:?}: {e}"))?;
        let last: u16 = hi.trim().parse().map_err(|e| format!("{hi:?}: {e}"))?;
        if first > last || u32::from(last) - u32::from(first) + 1 < MIN_MEDIA_PORTS {
            return Err(format!(
                "{s:?}: a media range needs FIRST < LAST and at least {MIN_MEDIA_PORTS} ports"
            ));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Default RTP range of a processor host (and of the whole chassis).
pub const DEFAULT_MEDIA_PORTS: PortRange = PortRange {
    first: 20000,
    last: 59999,
};

/// What every processor of one deployment is configured with.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Processors in the dispatchers' pool (bounds the ids encoded in tags).
    pub pool: u16,
    /// Capacity of each processor in session units (0: unlimited).
    pub capacity: u32,
    /// Delay before the 200 OK (0: answer at once).
    pub answer_delay: Duration,
    /// Send 180 Ringing before the 200 OK.
    pub send_180: bool,
    /// Where session sizes come from.
    pub session_size: SessionSizeConfig,
    /// Keys of the To-tag / connection-id MAC ([`TagKeys::UNKEYED`] without a key file); see
    /// [`tag_keys_from_files`]. Processors mint with `current` only; `previous` matters to
    /// the dispatchers, which verify tags (a processor finds its dialogs by tag, so a tag it
    /// did not mint is simply unknown to it and gets 481).
    pub tag_keys: TagKeys,
    /// Most new-INVITE transactions pending per processor (0: unlimited); beyond it a new
    /// INVITE is answered 503 + `Retry-After` ([`crate::sip::UasConfig::max_pending_invites`]).
    pub max_pending_invites: u32,
}

impl Deployment {
    /// Processor `id`'s configuration: answering from `addr`, RTP from `media`.
    pub fn processor(&self, id: u16, addr: SocketAddr, media: PortRange) -> ProcessorConfig {
        let (sip_media, mgcp_media) = media.halves();
        let mut pc = ProcessorConfig::new(id, self.pool, addr);
        pc.sip.media_ports = sip_media.as_pair();
        pc.sip.answer_delay = self.answer_delay;
        pc.sip.send_180 = self.send_180;
        pc.sip.session_size = self.session_size.clone();
        pc.sip.capacity_units = self.capacity;
        pc.sip.tag_key = self.tag_keys.current;
        pc.sip.max_pending_invites = self.max_pending_invites;
        pc.mgcp.media_ports = mgcp_media.as_pair();
        pc.mgcp.answer_delay = self.answer_delay;
        pc.mgcp.session_size = self.session_size.clone();
        pc.mgcp.capacity_units = self.capacity;
        pc.mgcp.tag_key = self.tag_keys.current;
        pc
    }
}

/// What both binaries log at start when no `--tag-key-file` is given.
pub const UNKEYED_WARNING: &str = "tags are not authenticated: anyone can route in-dialog \
    traffic to a chosen processor; set --tag-key-file";

/// The tag key from a secret file shared by dispatchers and processors (trailing whitespace
/// ignored; an empty file is refused); see [`tag_key`].
pub fn tag_key_from_file(path: &Path) -> std::io::Result<TagKey> {
    let bytes = std::fs::read(path)?;
    let secret = bytes.trim_ascii_end();
    if secret.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("tag key file {} is empty", path.display()),
        ));
    }
    Ok(tag_key(secret))
}

/// The keys from `--tag-key-file` (`current`) and `--tag-key-previous-file` (`previous`, the
/// key being rotated out); unkeyed when neither is given. A previous key without a current
/// one is refused: it would mean minting unauthenticated tags while still accepting old ones.
pub fn tag_keys_from_files(
    current: Option<&Path>,
    previous: Option<&Path>,
) -> Result<TagKeys, String> {
    let read = |flag: &str, p: &Path| {
        tag_key_from_file(p).map_err(|e| format!("reading {flag} {}: {e}", p.display()))
    };
    match (current, previous) {
        (None, None) => Ok(TagKeys::UNKEYED),
        (None, Some(_)) => Err("--tag-key-previous-file needs --tag-key-file".into()),
        (Some(c), p) => Ok(TagKeys {
            current: read("--tag-key-file", c)?,
            previous: p.map(|p| read("--tag-key-previous-file", p)).transpose()?,
        }),
    }
}

/// [`tag_key_from_file`]'s derivation: the first 16 bytes of
/// HMAC-SHA256(secret, "switchyard tag key v2"), the SipHash-2-4 key of the tag MAC. A KDF
/// rather than the raw bytes so that a secret of any length yields a full-strength key and the
/// same secret may also serve as the report key without the two keys being equal; "v2"
/// because v1 derived the 64-bit key of the former mix check, and the two must never coincide.
pub fn tag_key(secret: &[u8]) -> TagKey {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"switchyard tag key v2");
    let full = mac.finalize().into_bytes();
    let mut k = [0u8; 16];
    k.copy_from_slice(&full[..16]);
    // All zero is the public "unkeyed" key; a secret must never land there (odds 2^-128,
    // but the check is free).
    if k == [0; 16] {
        k[0] = 1;
    }
    TagKey::from_bytes(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_once_and_refuse_what_cannot_be_split() {
        assert_eq!("20000-59999".parse::<PortRange>(), Ok(DEFAULT_MEDIA_PORTS));
        assert_eq!(" 1000 - 1003 ".parse::<PortRange>().map(|r| r.len()), Ok(4));
        for bad in ["1000-1002", "2000-1000", "1000", "a-b", "0-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shares_and_halves_do_not_overlap_and_start_even() {
        let r = DEFAULT_MEDIA_PORTS;
        let parts: Vec<_> = (0..3).map(|k| r.share(3, k).unwrap()).collect();
        for w in parts.windows(2) {
            assert!(w[0].last < w[1].first, "{parts:?}");
        }
        for p in &parts {
            let (s, m) = p.halves();
            assert!(s.first % 2 == 0 && m.first % 2 == 0, "{s} {m}");
            assert!(s.first <= s.last && s.last < m.first && m.first <= m.last);
            assert!(p.first <= s.first && m.last <= p.last && m.last <= r.last);
        }
        assert_eq!("1000-1003".parse::<PortRange>().unwrap().share(2, 0), None);
        let small = "1000-1003".parse::<PortRange>().unwrap().halves();
        assert_eq!(small.0.as_pair(), (1000, 1001));
        assert_eq!(small.1.as_pair(), (1002, 1003));
    }

    #[test]
    fn the_tag_key_is_derived_not_copied() {
        let k = tag_key(b"secret");
        assert!(!k.is_unkeyed());
        assert_eq!(k, tag_key(b"secret"));
        assert_ne!(k, tag_key(b"secret2"));
        assert_ne!(k, TagKey::from_bytes(*b"secret\0\0\0\0\0\0\0\0\0\0"));
        // Pinned: every dispatcher and processor of a deployment must derive the same key.
        let mut t = [0u8; wire::tag::TAG_LEN];
        wire::tag::encode(&k, 1, 2, &mut t).unwrap();
        assert_eq!(&t, PINNED_SECRET_TAG);
    }

    const PINNED_SECRET_TAG: &[u8; 32] = b"0001000000000002205190c7471f00c0";

    #[test]
    fn key_files_current_and_previous() {
        let dir = std::env::temp_dir().join(format!("sy-tagkeys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cur, prev, empty) = (dir.join("cur"), dir.join("prev"), dir.join("empty"));
        std::fs::write(&cur, "new secret\n").unwrap();
        std::fs::write(&prev, "old secret").unwrap();
        std::fs::write(&empty, " \n").unwrap();
        assert_eq!(tag_keys_from_files(None, None), Ok(TagKeys::UNKEYED));
        assert_eq!(
            tag_keys_from_files(Some(&cur), None),
            Ok(TagKeys::single(tag_key(b"new secret")))
        );
        assert_eq!(
            tag_keys_from_files(Some(&cur), Some(&prev)),
            Ok(TagKeys {
                current: tag_key(b"new secret"),
                previous: Some(tag_key(b"old secret")),
            })
        );
        assert!(tag_keys_from_files(None, Some(&prev)).is_err());
        let e = tag_keys_from_files(Some(&cur), Some(&empty)).unwrap_err();
        assert!(
            e.contains("--tag-key-previous-file") && e.contains("empty"),
            "{e}"
        );
        assert!(tag_keys_from_files(Some(&dir.join("missing")), None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
