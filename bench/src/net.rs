//! Non-blocking UDP sockets with batched `sendmmsg`/`recvmmsg` (over [`udp_batch`]), and the
//! [`Outbox`] the sans-IO engines write their datagrams into.
//!
//! Everything here is allocated once at set-up; the steady path only fills preallocated
//! buffers and header arrays.
use std::{
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::{AsRawFd, RawFd},
};

use udp_batch::{Busy, RecvBatch, SendBatch};

/// Datagrams per `sendmmsg`/`recvmmsg` call.
pub const BATCH: usize = 64;

/// Waits for room this many times (1 ms each) per `sendmmsg` batch before counting a datagram
/// as refused: the generator would rather slow down than drop.
const SEND_POLLS: u32 = 100;

#[derive(Clone, Copy, Debug)]
struct OutMsg {
    sock: u16,
    dst: SocketAddr,
    off: u32,
    len: u32,
}

/// A bounded batch of datagrams to send, built in place by the engines.
pub struct Outbox {
    msg_cap: usize,
    slots: usize,
    data: Vec<u8>,
    msgs: Vec<OutMsg>,
    /// Messages whose builder ran out of space (not sent).
    pub overflow: u64,
}

impl Outbox {
    /// Room for `slots` messages of at most `msg_cap` bytes each.
    pub fn new(slots: usize, msg_cap: usize) -> Self {
        Outbox {
            msg_cap,
            slots,
            data: vec![0; slots * msg_cap],
            msgs: Vec::with_capacity(slots),
            overflow: 0,
        }
    }

    /// Free message slots.
    pub fn room(&self) -> usize {
        self.slots - self.msgs.len()
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Largest message size.
    pub fn msg_cap(&self) -> usize {
        self.msg_cap
    }

    /// Queues a datagram for socket `sock` to `dst`, written by `build` into a buffer of
    /// `msg_cap` bytes; `build` returns the length or `None` when the message did not fit.
    /// Returns false (and counts an overflow) when nothing was queued.
    pub fn push(
        &mut self,
        sock: usize,
        dst: SocketAddr,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let i = self.msgs.len();
        if i >= self.slots {
            self.overflow += 1;
            return false;
        }
        let off = i * self.msg_cap;
        let buf = &mut self.data[off..off + self.msg_cap];
        match build(buf) {
            Some(len) if len <= self.msg_cap => {
                self.msgs.push(OutMsg {
                    sock: sock as u16,
                    dst,
                    off: off as u32,
                    len: len as u32,
                });
                true
            }
            _ => {
                self.overflow += 1;
                false
            }
        }
    }

    /// Queued messages: (socket index, destination, bytes).
    pub fn iter(&self) -> impl Iterator<Item = (usize, SocketAddr, &[u8])> + '_ {
        self.msgs.iter().map(|m| {
            (
                m.sock as usize,
                m.dst,
                &self.data[m.off as usize..(m.off + m.len) as usize],
            )
        })
    }

    /// Forgets all queued messages.
    pub fn clear(&mut self) {
        self.msgs.clear();
    }
}

/// I/O counters of a set of sockets.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct IoStats {
    /// Datagrams handed to the kernel.
    pub datagrams_sent: u64,
    /// Bytes handed to the kernel.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Datagrams not sent: the kernel refused them (buffer full after retries, unreachable).
    pub send_errors: u64,
    /// `sendmmsg` calls.
    pub send_calls: u64,
    /// `recvmmsg` calls that returned data.
    pub recv_calls: u64,
    /// Every `recvmmsg` call, including those that found nothing (`EAGAIN`).
    pub recv_syscalls: u64,
    /// `ppoll` calls (the loop's waits).
    pub poll_calls: u64,
    /// Received datagrams truncated to the receive buffer.
    pub truncated: u64,
}

impl IoStats {
    /// Adds another set of sockets' counters (generator threads merged).
    pub fn merge(&mut self, o: &IoStats) {
        self.datagrams_sent += o.datagrams_sent;
        self.bytes_sent += o.bytes_sent;
        self.datagrams_received += o.datagrams_received;
        self.bytes_received += o.bytes_received;
        self.send_errors += o.send_errors;
        self.send_calls += o.send_calls;
        self.recv_calls += o.recv_calls;
        self.recv_syscalls += o.recv_syscalls;
        self.poll_calls += o.poll_calls;
        self.truncated += o.truncated;
    }

    /// Syscalls the loop made: `sendmmsg` + `recvmmsg` + `ppoll` (the `poll`s a full send
    /// buffer makes `sendmmsg` wait in are not counted).
    pub fn syscalls(&self) -> u64 {
        self.send_calls + self.recv_syscalls + self.poll_calls
    }
}

/// K sockets with preallocated `sendmmsg`/`recvmmsg` state.
pub struct Sockets {
    socks: Vec<UdpSocket>,
    locals: Vec<SocketAddr>,
    /// Only its borrowed [`SendBatch::send`] is used: the Outbox holds the bytes.
    send: SendBatch,
    recv: RecvBatch,
    /// Counters.
    pub stats: IoStats,
}

impl Sockets {
    /// Binds `k` sockets on `local_ip` (ephemeral ports, or `first_port`, `first_port + 1`...).
    pub fn bind(local: SocketAddr, k: usize, recv_cap: usize) -> io::Result<Self> {
        let mut socks = Vec::with_capacity(k);
        let mut locals = Vec::with_capacity(k);
        for i in 0..k {
            let mut a = local;
            if a.port() != 0 {
                a.set_port(a.port() + i as u16);
            }
            let s = udp_batch::bind(a, 16 << 20)?;
            locals.push(s.local_addr()?);
            socks.push(s);
        }
        Ok(Sockets {
            socks,
            locals,
            send: SendBatch::new(BATCH, 1),
            recv: RecvBatch::new(BATCH, recv_cap),
            stats: IoStats::default(),
        })
    }

    /// Local addresses, by socket index.
    pub fn locals(&self) -> &[SocketAddr] {
        &self.locals
    }

    /// Number of sockets.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// True without sockets.
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// Raw fds, for `poll`.
    pub fn fds(&self) -> Vec<RawFd> {
        self.socks.iter().map(|s| s.as_raw_fd()).collect()
    }

    /// Sends everything in `out` (grouped per socket, `sendmmsg` batches) and clears it.
    pub fn flush(&mut self, out: &mut Outbox) {
        if out.is_empty() {
            return;
        }
        let Sockets {
            socks, send, stats, ..
        } = self;
        for (s, sock) in socks.iter().enumerate() {
            let datagrams = out.iter().filter(|m| m.0 == s).map(|(_, dst, bytes)| {
                stats.bytes_sent += bytes.len() as u64;
                (dst, bytes)
            });
            let st = send.send(sock, datagrams, Busy::Wait { polls: SEND_POLLS });
            stats.datagrams_sent += st.sent;
            stats.send_errors += st.errors;
            stats.send_calls += st.calls;
        }
        out.clear();
    }

    /// Receives up to one batch on socket `s` and hands each datagram to `f(src, bytes)`.
    /// Returns the number received (0 when nothing was waiting).
    pub fn recv_batch(&mut self, s: usize, mut f: impl FnMut(SocketAddr, &[u8])) -> usize {
        // Err: an ICMP error reported on the socket; like EAGAIN, nothing to read.
        self.stats.recv_syscalls += 1;
        let n = self.recv.recv(&self.socks[s]).unwrap_or(0);
        if n == 0 {
            return 0;
        }
        self.stats.recv_calls += 1;
        self.stats.datagrams_received += n as u64;
        for d in self.recv.iter() {
            if d.truncated() {
                self.stats.truncated += 1;
            }
            self.stats.bytes_received += d.payload().len() as u64;
            let Some(src) = d.src() else {
                continue;
            };
            f(src, d.payload());
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_bounds_and_overflow() {
        let mut o = Outbox::new(2, 16);
        let dst: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(o.push(0, dst, |b| {
            b[..3].copy_from_slice(b"abc");
            Some(3)
        }));
        assert!(!o.push(1, dst, |_| None));
        assert!(o.push(1, dst, |_| Some(16)));
        assert!(!o.push(1, dst, |_| Some(1)));
        assert_eq!(o.overflow, 2);
        let v: Vec<_> = o.iter().map(|(s, _, b)| (s, b.len())).collect();
        assert_eq!(v, vec![(0, 3), (1, 16)]);
        assert_eq!(o.iter().next().unwrap().2, b"abc");
        o.clear();
        assert_eq!(o.room(), 2);
    }

    #[test]
    fn loopback_batch_send_receive() {
        let mut a = Sockets::bind("127.0.0.1:0".parse().unwrap(), 1, 2048).unwrap();
        let mut b = Sockets::bind("127.0.0.1:0".parse().unwrap(), 1, 2048).unwrap();
        let mut o = Outbox::new(100, 64);
        for i in 0..100u8 {
            o.push(0, b.locals()[0], |buf| {
                buf[0] = i;
                Some(1)
            });
        }
        a.flush(&mut o);
        assert_eq!(a.stats.datagrams_sent, 100);
        let mut got = Vec::new();
        let t = std::time::Instant::now();
        while got.len() < 100 && t.elapsed().as_secs() < 5 {
            b.recv_batch(0, |src, bytes| {
                assert_eq!(src, a.locals()[0]);
                got.push(bytes[0]);
            });
        }
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
    }
}
