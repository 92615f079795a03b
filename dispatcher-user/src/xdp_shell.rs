//! The AF_XDP I/O shell: the dispatcher thread's loop over its queues' rx rings.
//!
//! Frames come from the XDP program's redirect, are located as UDP datagrams in place (no copy)
//! and handed to the [`Router`]; its own answers are built in UMEM frames and sent from the tx
//! ring in the same batch. When every ring is empty the thread sleeps in `poll()` on the
//! sockets (or spins, for benchmarks), so an idle dispatcher costs no CPU.
use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
};

use dispatcher_common::PortProto;
use fabric::{
    coalesce::{Coalescer, Wait},
    idle::{Idle as SpinOrPark, SpinPolicy, WAKE_SAMPLE_EVERY},
};

use xdp_io::{
    frame::{self, FrameAddr},
    xsk::XskQueue,
};

use crate::{
    links::Dispatch,
    route::Inbound,
    stats::{PublishTimer, Published},
};

/// How the dispatcher thread waits when its rings are empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Idle {
    /// Sleep in `poll()` (default: no CPU when idle, one wake-up syscall per busy period).
    Poll,
    /// Busy-poll the rings (lowest latency, burns the pinned core).
    Spin,
}

/// Counters of frames the shell could not hand to the core.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct XdpShellStats {
    /// Frames that were not a readable UDP datagram (should not happen: the XDP program checked).
    pub bad_frames: u64,
    /// Datagrams to a port that is not configured (map and config disagree).
    pub unknown_port: u64,
    /// Replies that could not be queued for transmit (no free frame or ring slot).
    pub reply_not_sent: u64,
    /// CPU time of the dispatcher thread, ns (filled in when it stops).
    pub cpu_ns: u64,
    /// Times the thread waited in `poll()` for a frame (idle or light traffic).
    #[serde(default)]
    pub polls: u64,
    /// Timed coalescing sleeps under load (see [`fabric::coalesce`]).
    #[serde(default)]
    pub coalesced_sleeps: u64,
    /// Idle periods the spin policy spun through until a frame came (a sleep saved each;
    /// see [`fabric::idle`]).
    #[serde(default)]
    pub spins: u64,
    /// The spin policy's averaged sleep/wake cost when the thread stopped, ns.
    #[serde(default)]
    pub wake_cost_ns: u64,
}

impl XdpShellStats {
    /// Adds another dispatcher thread's counters (the wake cost: the larger).
    pub fn add(&mut self, o: &Self) {
        let Self {
            bad_frames,
            unknown_port,
            reply_not_sent,
            cpu_ns,
            polls,
            coalesced_sleeps,
            spins,
            wake_cost_ns,
        } = *o;
        self.bad_frames += bad_frames;
        self.unknown_port += unknown_port;
        self.reply_not_sent += reply_not_sent;
        self.cpu_ns += cpu_ns;
        self.polls += polls;
        self.coalesced_sleeps += coalesced_sleeps;
        self.spins += spins;
        self.wake_cost_ns = self.wake_cost_ns.max(wake_cost_ns);
    }
}

/// Maps a destination port to its protocol; tiny, so a linear scan beats hashing.
#[derive(Debug, Clone)]
pub struct PortTable(pub Vec<(u16, PortProto)>);

impl PortTable {
    fn lookup(&self, port: u16) -> Option<PortProto> {
        self.0
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, proto)| *proto)
    }
}

/// Runs until `stop` is set. `coalesce_ns`: the coalescing delay under load (0: always wait
/// for a frame in `poll()`); see [`fabric::coalesce`].
#[allow(clippy::too_many_arguments)]
pub fn run(
    queues: &mut [XskQueue],
    ports: &PortTable,
    core: &mut Dispatch,
    idle: Idle,
    coalesce_ns: u64,
    stop: &AtomicBool,
    stats: &mut XdpShellStats,
    published: &Published,
) {
    let mut timer = PublishTimer::default();
    let rx_total = |qs: &[XskQueue]| qs.iter().map(|q| q.stats().rx_frames).sum::<u64>();
    let mut pfds: Vec<libc::pollfd> = queues
        .iter()
        .map(|q| libc::pollfd {
            fd: q.fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut policy = SpinPolicy::default();
    let mut sleeps = 0u64;
    let mut coalescer = Coalescer::new(coalesce_ns);
    if idle == Idle::Poll && coalesce_ns > 0 {
        fabric::coalesce::set_timer_slack(fabric::coalesce::TIMER_SLACK_NS);
    }
    while !stop.load(Ordering::Relaxed) {
        let mut got = 0;
        let now_ns = fabric::monotonic_ns();
        if timer.due(now_ns) {
            core.publish(now_ns, rx_total(queues), published);
        }
        core.begin_batch(now_ns);
        for q in queues.iter_mut() {
            got += q.rx_batch(64, |bytes, tx| {
                let f = match frame::parse(bytes) {
                    Ok(f) => f,
                    Err(_) => {
                        stats.bad_frames += 1;
                        return;
                    }
                };
                let Some(proto) = ports.lookup(f.dst.port()) else {
                    stats.unknown_port += 1;
                    return;
                };
                let msg = Inbound {
                    proto,
                    src: f.src,
                    dst: SocketAddr::new(f.dst.ip(), f.dst.port()),
                    payload: f.payload,
                };
                if let Some(body) = core.handle(now_ns, &msg) {
                    let addr = FrameAddr::reply_to(&f);
                    let h = frame::header_len(&addr);
                    if !tx.send(|buf| {
                        buf.get_mut(h..h + body.len())?.copy_from_slice(body);
                        frame::write_headers(buf, &addr, body.len()).ok()
                    }) {
                        stats.reply_not_sent += 1;
                    }
                }
            });
            core.flush();
        }
        if got > 0 {
            coalescer.record(now_ns, got as usize);
            policy.on_work(now_ns);
            continue;
        }
        for q in queues.iter_mut() {
            q.idle_maintenance();
        }
        // Spin only while frames are expected sooner than a sleep/wake costs (see
        // `fabric::idle`); then sleep for the coalescing delay under load, or until a frame.
        if idle == Idle::Spin || policy.on_empty(now_ns) == SpinOrPark::Spin {
            std::hint::spin_loop();
            continue;
        }
        sleeps += 1;
        let sample = sleeps.is_multiple_of(WAKE_SAMPLE_EVERY);
        let cpu_before = if sample {
            crate::stats::thread_cpu_ns()
        } else {
            0
        };
        // What one wake-up costs: the sleeper's share, doubled for the waker's after a poll
        // (as the processor threads count it); a timed sleep has no waker.
        let share = match coalescer.wait(now_ns) {
            Wait::Sleep(ns) => {
                stats.coalesced_sleeps += 1;
                fabric::coalesce::sleep_ns(ns);
                1
            }
            Wait::Event => {
                stats.polls += 1;
                // SAFETY: pfds is a valid pollfd array for the call.
                let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
                if rc > 0 {
                    2
                } else {
                    0
                }
            }
        };
        if sample && share > 0 {
            let cost = crate::stats::thread_cpu_ns().saturating_sub(cpu_before);
            policy.add_wake_cost(cost.saturating_mul(share));
        }
    }
    stats.spins = policy.spins_found();
    stats.wake_cost_ns = policy.wake_cost_ns();
    core.publish(fabric::monotonic_ns(), rx_total(queues), published);
}
