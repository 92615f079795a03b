//! MGCP response building (RFC 3435 §3.3): gateways answer 200/250/4xx/5xx with parameters
//! and an optional session description, into a caller buffer.

use crate::out::{Out, WriteError};
use crate::scan::has_cr_or_lf;

/// Writes `<code> <tid> <commentary>` + parameter lines + optional blank line and SDP into
/// `out`; returns the length. `params` are `(name, value)` pairs such as `(b"I", b"FDE234C8")`.
/// Lines end in CRLF.
pub fn write_response(
    code: u16,
    tid: u32,
    commentary: &[u8],
    params: &[(&[u8], &[u8])],
    sdp: Option<&[u8]>,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    if code > 999 {
        return Err(WriteError::InvalidInput("return code"));
    }
    if !(1..=999_999_999).contains(&tid) {
        return Err(WriteError::InvalidInput("transaction id"));
    }
    if has_cr_or_lf(commentary) {
        return Err(WriteError::InvalidInput("commentary"));
    }
    for (n, v) in params {
        if n.is_empty()
            || !n
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'+')
            || has_cr_or_lf(v)
        {
            return Err(WriteError::InvalidInput("parameter"));
        }
    }
    let mut o = Out::new(out);
    let digits = [
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ];
    o.put(&digits)?;
    o.put(b" ")?;
    o.put_u64(u64::from(tid))?;
    if !commentary.is_empty() {
        o.put(b" ")?;
        o.put(commentary)?;
    }
    o.put(b"\r\n")?;
    for (n, v) in params {
        o.put(n)?;
        o.put(b": ")?;
        o.put(v)?;
        o.put(b"\r\n")?;
    }
    if let Some(s) = sdp {
        o.put(b"\r\n")?;
        o.put(s)?;
    }
    Ok(o.len())
}
