//! The plain-socket I/O shell: `recvmmsg` batches from one UDP socket per well-known port, fed
//! to the same [`Router`] as the AF_XDP shell; the dispatcher's own answers go out with `sendto`
//! (they are the exception: OPTIONS, 4xx/5xx, overload). For machines without XDP or without privileges.
use std::{
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
};

use dispatcher_common::PortProto;
use udp_batch::RecvBatch;

use crate::{
    links::Dispatch,
    route::Inbound,
    stats::{PublishTimer, Published},
};

/// Datagrams per `recvmmsg` call.
const BATCH: usize = 64;
/// Largest datagram accepted; larger ones are truncated by the kernel and counted.
const MAX_DGRAM: usize = 65_536;

/// Counters of the UDP shell itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UdpStats {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// `recvmmsg` calls that returned data.
    pub rx_batches: u64,
    /// Datagrams longer than the receive buffer (dropped, counted).
    pub truncated: u64,
    /// Replies sent by the dispatcher itself.
    pub tx_replies: u64,
    /// Replies the kernel refused (buffer full, unreachable), counted.
    pub tx_errors: u64,
    /// CPU time of the dispatcher thread, ns (filled in when it stops).
    pub cpu_ns: u64,
    /// Times the thread waited in `poll()` for a datagram (idle or light traffic).
    #[serde(default)]
    pub polls: u64,
    /// Timed coalescing sleeps under load (see [`fabric::coalesce`]).
    #[serde(default)]
    pub coalesced_sleeps: u64,
}

impl UdpStats {
    /// Adds another dispatcher thread's counters.
    pub fn add(&mut self, o: &Self) {
        let Self {
            rx_datagrams,
            rx_batches,
            truncated,
            tx_replies,
            tx_errors,
            cpu_ns,
            polls,
            coalesced_sleeps,
        } = *o;
        self.rx_datagrams += rx_datagrams;
        self.rx_batches += rx_batches;
        self.truncated += truncated;
        self.tx_replies += tx_replies;
        self.tx_errors += tx_errors;
        self.cpu_ns += cpu_ns;
        self.polls += polls;
        self.coalesced_sleeps += coalesced_sleeps;
    }
}

/// One bound well-known socket and its protocol.
pub struct Listener {
    sock: UdpSocket,
    proto: PortProto,
    local: SocketAddr,
}

impl Listener {
    /// Binds `addr` for `proto`, non-blocking, with a large receive buffer.
    pub fn bind(addr: SocketAddr, proto: PortProto) -> io::Result<Self> {
        let sock = UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        // Failure only means a smaller buffer (capped by net.core.rmem_max).
        let _ = udp_batch::set_recv_buffer(&sock, 8 << 20);
        let local = sock.local_addr()?;
        Ok(Self { sock, proto, local })
    }

    /// `threads` sockets on `addr` for `proto`, one per dispatcher thread: an SO_REUSEPORT
    /// group whose reuseport program keeps every source (address and port) on one socket
    /// ([`udp_batch::reuseport`]), so a transaction's retransmissions and CANCEL reach the
    /// thread that saw its INVITE. One thread: a plain socket.
    pub fn group(addr: SocketAddr, proto: PortProto, threads: usize) -> io::Result<Vec<Self>> {
        let socks = udp_batch::reuseport::bind_group(addr, threads.max(1))?;
        socks
            .into_iter()
            .map(|sock| {
                sock.set_nonblocking(true)?;
                let _ = udp_batch::set_recv_buffer(&sock, 8 << 20);
                let local = sock.local_addr()?;
                Ok(Self { sock, proto, local })
            })
            .collect()
    }

    /// The bound address (resolves port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Runs the UDP shell until `stop` is set: poll the listeners, drain each with `recvmmsg`,
/// hand every datagram to `core`. Under load (`coalesce_ns` > 0) it sleeps that long instead
/// of polling, so one wake-up serves several datagrams (see [`fabric::coalesce`]).
pub fn run(
    listeners: &[Listener],
    core: &mut Dispatch,
    coalesce_ns: u64,
    stop: &AtomicBool,
    stats: &mut UdpStats,
    published: &Published,
) -> io::Result<()> {
    let mut timer = PublishTimer::default();
    let mut batch = RecvBatch::new(BATCH, MAX_DGRAM);
    let mut pfds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|l| libc::pollfd {
            fd: l.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut coalescer = fabric::coalesce::Coalescer::new(coalesce_ns);
    if coalesce_ns > 0 {
        fabric::coalesce::set_timer_slack(fabric::coalesce::TIMER_SLACK_NS);
    }
    while !stop.load(Ordering::Relaxed) {
        let now_ns = fabric::monotonic_ns();
        if timer.due(now_ns) {
            core.publish(now_ns, stats.rx_datagrams, published);
        }
        match coalescer.wait(now_ns) {
            fabric::coalesce::Wait::Sleep(ns) => {
                stats.coalesced_sleeps += 1;
                fabric::coalesce::sleep_ns(ns);
            }
            fabric::coalesce::Wait::Event => {
                stats.polls += 1;
                // A signal only ends the wait early (Ok(0)); the drain below finds nothing.
                udp_batch::wait_readable(&mut pfds, 100_000_000)?;
            }
        }
        for l in listeners {
            loop {
                let n = batch.recv(&l.sock)?;
                if n == 0 {
                    break;
                }
                stats.rx_batches += 1;
                let now_ns = fabric::monotonic_ns();
                coalescer.record(now_ns, n);
                core.begin_batch(now_ns);
                for d in batch.iter() {
                    stats.rx_datagrams += 1;
                    if d.truncated() {
                        stats.truncated += 1;
                        continue;
                    }
                    let Some(src) = d.src() else {
                        continue;
                    };
                    let msg = Inbound {
                        proto: l.proto,
                        src,
                        dst: l.local,
                        payload: d.payload(),
                    };
                    if let Some(reply) = core.handle(now_ns, &msg) {
                        match l.sock.send_to(reply, src) {
                            Ok(_) => stats.tx_replies += 1,
                            Err(_) => stats.tx_errors += 1,
                        }
                    }
                }
                core.flush();
                if n < BATCH {
                    break;
                }
            }
        }
    }
    core.publish(fabric::monotonic_ns(), stats.rx_datagrams, published);
    Ok(())
}
