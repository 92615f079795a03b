//! Forwarding over the LAN (claim 4): messages for processors on other hosts are collected in a
//! preallocated [`udp_batch::SendBatch`] during one receive batch and sent with one `sendmmsg`
//! when the shell flushes ([`crate::links::Links::flush`]), so the per-packet cost stays a
//! copy, not a syscall.
use std::{
    io,
    net::{SocketAddr, UdpSocket},
};

use fabric::SLOT_BYTES;
use udp_batch::{Busy, SendBatch};

/// Messages per `sendmmsg`.
pub const BATCH: usize = 64;

/// The LAN forwarding socket and one batch of outgoing datagrams.
pub struct Forwarder {
    sock: UdpSocket,
    batch: SendBatch,
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams the kernel refused (counted; the sender retransmits).
    pub errors: u64,
}

impl Forwarder {
    /// Wraps `sock` (bound to the dispatcher's LAN address).
    pub fn new(sock: UdpSocket) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Self {
            sock,
            batch: SendBatch::new(BATCH, SLOT_BYTES),
            sent: 0,
            errors: 0,
        })
    }

    /// Queues a copy of `bytes` for `dst` (flushing first if the batch is full); false when it
    /// is longer than a fabric slot.
    pub fn queue(&mut self, dst: SocketAddr, bytes: &[u8]) -> bool {
        if bytes.len() > SLOT_BYTES {
            return false;
        }
        if self.batch.is_full() {
            self.flush();
        }
        self.batch.push(dst, bytes)
    }

    /// Sends everything queued with `sendmmsg`; a datagram the kernel refuses is counted and
    /// skipped, never waited for.
    pub fn flush(&mut self) {
        let st = self.batch.flush(&self.sock, Busy::Skip);
        self.sent += st.sent;
        self.errors += st.errors;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_reach_their_destinations() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut f = Forwarder::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        for i in 0..(BATCH + 10) {
            assert!(f.queue(a.local_addr().unwrap(), &(i as u32).to_be_bytes()));
        }
        assert!(!f.queue(a.local_addr().unwrap(), &[0; SLOT_BYTES + 1]));
        f.flush();
        assert_eq!((f.sent, f.errors), ((BATCH + 10) as u64, 0));
        let mut buf = [0u8; 16];
        for i in 0..(BATCH + 10) {
            let n = a.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &(i as u32).to_be_bytes(), "order kept");
        }
    }
}
