//! What the call agent sends, byte for byte: CRCX to the endpoint pattern at the dispatcher,
//! then MDCX and DLCX to the specific endpoint and connection id the gateway returned.
//!
//! Apart from the state machine in the parent module so that the call flow reads without the
//! byte layout, and the layout can be checked (and tuned: it is on the load generator's hot
//! path) without the timers. Writes through [`wire::out::Out`] into the outbox's fixed buffers
//! and fails with [`WriteError`] rather than truncating.
use wire::{out::Out, WriteError};

use super::{MgcpCa, Step};

impl MgcpCa {
    /// The current command of call `slot` (its step decides which), with its transaction id.
    pub(super) fn write(&self, buf: &mut [u8], slot: u32) -> Result<usize, WriteError> {
        let c = &self.slots[slot as usize];
        let mut w = Out::new(buf);
        let verb: &[u8] = match c.step {
            Step::Crcx => b"CRCX ",
            Step::Mdcx => b"MDCX ",
            _ => b"DLCX ",
        };
        w.put(verb)?;
        w.put_u64(u64::from(c.tid))?;
        w.put(b" ")?;
        if c.step == Step::Crcx {
            w.put(&self.crcx_ep)?;
        } else {
            w.put(&c.ep[..c.ep_len as usize])?;
        }
        w.put(b" MGCP 1.0\r\nC: ")?;
        w.put_hex(c.seq, 16)?;
        w.put(b"\r\n")?;
        match c.step {
            Step::Crcx => {
                w.put(b"L: p:20, a:PCMU\r\nM: recvonly\r\n")?;
                if let Some(n) = self.cfg.session_size {
                    w.put(b"X-Size: ")?;
                    w.put_u64(u64::from(n))?;
                    w.put(b"\r\n")?;
                }
                if !self.sdp.is_empty() {
                    w.put(b"\r\n")?;
                    w.put(&self.sdp)?;
                }
            }
            Step::Mdcx => {
                w.put(b"I: ")?;
                w.put(&c.conn[..c.conn_len as usize])?;
                w.put(b"\r\nM: sendrecv\r\n")?;
            }
            _ => {
                w.put(b"I: ")?;
                w.put(&c.conn[..c.conn_len as usize])?;
                w.put(b"\r\n")?;
            }
        }
        Ok(w.len())
    }
}
