//! The open-loop driver: one thread, K non-blocking sockets, a schedule of call start times,
//! and a sans-IO [`Engine`] (SIP UAC, MGCP call agent, or blast).
//!
//! Each loop iteration starts every call whose intended time has come (never waiting for
//! responses), fires due timers, flushes the outbox with `sendmmsg`, and drains the sockets with
//! `recvmmsg`. When nothing is due for a while it sleeps in `ppoll` until the next start time or
//! timer, or a datagram arrives.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    hist::Latency,
    net::{IoStats, Outbox, Sockets},
    schedule::Schedule,
};

/// Counts shown in the progress line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    /// Calls started.
    pub started: u64,
    /// Calls completed.
    pub completed: u64,
    /// Calls failed.
    pub failed: u64,
    /// Retransmissions sent.
    pub retransmissions: u64,
}

/// A call-flow state machine driven by the loop; time is ns since the run start.
pub trait Engine {
    /// Starts call `index`, intended at `intended` (≤ `now`). Returns false if it was not
    /// started (counted by the engine as a failure).
    fn start(&mut self, now: u64, intended: u64, index: u64, out: &mut Outbox) -> bool;
    /// Handles one received datagram; may queue up to two messages.
    fn on_datagram(&mut self, now: u64, src: SocketAddr, data: &[u8], out: &mut Outbox);
    /// Fires timers due at `now`, while the outbox has room.
    fn on_timers(&mut self, now: u64, out: &mut Outbox);
    /// Earliest pending timer (possibly stale), if any.
    fn next_timer(&self) -> Option<u64>;
    /// Calls in progress.
    fn in_flight(&self) -> u64;
    /// Progress counters.
    fn progress(&self) -> Progress;
    /// The latency histograms this engine records.
    fn histograms(&self) -> Vec<&Latency>;
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Call start times.
    pub schedule: Schedule,
    /// After the last start, wait at most this long for calls in flight.
    pub drain_ns: u64,
    /// Print a progress line on stderr every second.
    pub progress: bool,
}

/// What the loop measured besides the engine's own counters.
#[derive(Debug, Clone, Serialize)]
pub struct LoopResult {
    /// Calls the schedule asked for.
    pub scheduled: u64,
    /// Scheduled calls actually handed to the engine.
    pub offered: u64,
    /// Wall time from the first intended start to the loop's end (s).
    pub elapsed_s: f64,
    /// Wall time from the first to the last call start (s).
    pub send_span_s: f64,
    /// Calls still in flight when the drain limit ended the run.
    pub unfinished: u64,
    /// Socket counters.
    pub io: IoStats,
    /// Outbox overflows (messages that could not be queued).
    pub outbox_overflow: u64,
}

/// Runs `engine` over `socks` until the schedule is done and calls have drained (or the drain
/// limit passed). `lag` records how late each call start was against its intended time.
pub fn run_loop<E: Engine>(
    engine: &mut E,
    socks: &mut Sockets,
    out: &mut Outbox,
    cfg: &LoopConfig,
    lag: &mut Latency,
) -> LoopResult {
    let epoch = Instant::now();
    let now_ns = || epoch.elapsed().as_nanos() as u64;
    let mut pfds: Vec<libc::pollfd> = socks
        .fds()
        .into_iter()
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let sched = cfg.schedule;
    let scheduled = sched.total();
    let mut next_idx = 0u64;
    let mut next_at = sched.time_of(0);
    let mut offered = 0u64;
    let mut last_start = 0u64;
    let mut next_progress = 1_000_000_000u64;
    let mut last_prog = (0u64, 0u64);
    let mut idle_rounds = 0u32;
    let end_of_schedule = sched.duration_ns;
    let mut deadline = u64::MAX;
    loop {
        let now = now_ns();
        let mut work = 0usize;
        // 1. Starts due by now, in schedule order (open loop: never waits for answers).
        while let Some(at) = next_at {
            if at > now {
                break;
            }
            if out.room() < 1 {
                socks.flush(out);
            }
            lag.record(now - at);
            if engine.start(now, at, next_idx, out) {
                offered += 1;
                last_start = now;
            }
            next_idx += 1;
            next_at = sched.time_of(next_idx);
            work += 1;
            if work.is_multiple_of(256) {
                socks.flush(out);
            }
        }
        // 2. Timers.
        loop {
            engine.on_timers(now, out);
            if out.room() > 0 {
                break;
            }
            socks.flush(out);
        }
        socks.flush(out);
        // 3. Receive.
        for s in 0..socks.len() {
            for _ in 0..16 {
                if out.room() < 2 * crate::net::BATCH {
                    socks.flush(out);
                }
                let n = {
                    let t = now_ns();
                    // Borrow split: the closure needs the engine and the outbox, not `socks`.
                    let (eng, o) = (&mut *engine, &mut *out);
                    socks.recv_batch(s, |src, bytes| eng.on_datagram(t, src, bytes, o))
                };
                work += n;
                if n < crate::net::BATCH {
                    break;
                }
            }
        }
        socks.flush(out);

        let now = now_ns();
        if cfg.progress && now >= next_progress {
            let p = engine.progress();
            let secs = now as f64 / 1e9;
            eprintln!(
                "[{secs:6.1}s] offered {:>8.0}/s  started {:>9}  completed {:>9} ({:>8.0}/s)  failed {:>6}  in-flight {:>7}  rtx {:>6}",
                (p.started - last_prog.0) as f64,
                p.started,
                p.completed,
                (p.completed - last_prog.1) as f64,
                p.failed,
                engine.in_flight(),
                p.retransmissions,
            );
            last_prog = (p.started, p.completed);
            next_progress += 1_000_000_000;
        }
        if next_at.is_none() {
            if deadline == u64::MAX {
                deadline = end_of_schedule.max(now).saturating_add(cfg.drain_ns);
            }
            if engine.in_flight() == 0 || now >= deadline {
                break;
            }
        }
        if work > 0 {
            idle_rounds = 0;
            continue;
        }
        idle_rounds = idle_rounds.saturating_add(1);
        // Sleep until the next start or timer (minus a little slack), or a datagram.
        let mut wake = next_at.unwrap_or(deadline).min(next_progress);
        if let Some(t) = engine.next_timer() {
            wake = wake.min(t);
        }
        let gap = wake.saturating_sub(now);
        if gap > 60_000 && idle_rounds > 4 {
            let _ = udp_batch::wait_readable(&mut pfds, (gap - 50_000).min(100_000_000));
        } else if gap > 5_000 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    let end = now_ns();
    let first = sched.time_of(0).unwrap_or(0);
    LoopResult {
        scheduled,
        offered,
        elapsed_s: Duration::from_nanos(end.saturating_sub(first)).as_secs_f64(),
        send_span_s: Duration::from_nanos(last_start.saturating_sub(first)).as_secs_f64(),
        unfinished: engine.in_flight(),
        io: socks.stats,
        outbox_overflow: out.overflow,
    }
}
