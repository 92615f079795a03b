//! The open-loop driver: one thread, K non-blocking sockets, a schedule of call start times,
//! and a sans-IO [`Engine`] (SIP UAC, MGCP call agent, or blast).
//!
//! Each loop iteration starts every call whose intended time has come (never waiting for
//! responses), fires due timers, flushes the outbox with `sendmmsg`, then sleeps in one `ppoll`
//! (ns timeout, timer slack lowered to 1 µs) until the next start time or timer, or a datagram
//! arrives, and drains with `recvmmsg` only the sockets `ppoll` reported readable. It never
//! spins: the issue this came from measured ≈ 200 µs of generator CPU per call at 5,000
//! calls/s from a `yield_now`/`spin_loop` wait and ≈ 32 `recvmmsg` per call from draining
//! every socket every round. Several threads may run one loop each over a share of the
//! schedule ([`Share`]), each with its own sockets and engine, on one shared epoch.
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
    /// This loop's share of the schedule: it starts calls `share.first`, `share.first +
    /// share.step`, ... (one share per generator thread).
    pub share: Share,
}

/// Which calls of the schedule one generator thread starts: `first`, `first + step`, ...
///
/// Splitting by index (not by time) keeps every thread on the same intended timeline, so N
/// threads together offer exactly the schedule, interleaved, and each call's latency is still
/// measured from its own intended start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// The first call index (the thread's number).
    pub first: u64,
    /// Threads in all (at least 1).
    pub step: u64,
}

impl Share {
    /// The whole schedule (one thread).
    pub const ALL: Share = Share { first: 0, step: 1 };

    /// Thread `i` of `n`.
    pub fn of(i: usize, n: usize) -> Self {
        let step = n.max(1) as u64;
        Share {
            first: (i as u64).min(step - 1),
            step,
        }
    }

    /// The `k`-th call index of this share.
    pub fn index(&self, k: u64) -> u64 {
        self.first
            .saturating_add(k.saturating_mul(self.step.max(1)))
    }

    /// How many of `total` calls (indices `0..total`) fall in this share.
    pub fn count(&self, total: u64) -> u64 {
        let step = self.step.max(1);
        if self.first >= total {
            0
        } else {
            (total - self.first).div_ceil(step)
        }
    }
}

/// Longest single wait: bounds how stale the progress line and the drain deadline can get.
pub const MAX_WAIT_NS: u64 = 100_000_000;

/// How long the loop may sleep in `ppoll` at `now`: until the earliest of the next call
/// start, the next engine timer, the drain deadline and the next progress line, at most
/// [`MAX_WAIT_NS`]; 0 when one of them is already due (then `ppoll` only checks readiness).
///
/// A pure function so that the waiting logic is testable without a clock: the loop never
/// sleeps past work that is due, and never spins while nothing is.
pub fn wait_ns(
    now: u64,
    next_start: Option<u64>,
    next_timer: Option<u64>,
    deadline: u64,
    next_progress: Option<u64>,
) -> u64 {
    let wake = [next_start, next_timer, next_progress]
        .into_iter()
        .flatten()
        .fold(deadline, u64::min);
    wake.saturating_sub(now).min(MAX_WAIT_NS)
}

/// Socket batches drained per readable socket per round at most: bounds one round's
/// receive work so that due starts are not delayed behind a long backlog.
const MAX_DRAIN_BATCHES: usize = 8;

/// Timer slack asked for the generator thread (ns). Linux's default of 50 µs would make every
/// `ppoll` sleep up to 50 µs late, i.e. send lag at the rates the bench runs (a start every
/// 33-200 µs).
pub const TIMER_SLACK_NS: u64 = 1_000;

/// Sets the calling thread's timer slack to `ns` (`prctl(PR_SET_TIMERSLACK)`); false when
/// the kernel refused.
pub fn set_timer_slack(ns: u64) -> bool {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long argument and touches only the
    // calling thread's scheduling attributes.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) == 0 }
}

/// The calling thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`), in ns.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What the loop measured besides the engine's own counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoopResult {
    /// Calls the schedule asked for (of this loop's share).
    pub scheduled: u64,
    /// Scheduled calls actually handed to the engine.
    pub offered: u64,
    /// Wall time from the first intended start to the loop's end (s).
    pub elapsed_s: f64,
    /// Wall time from the first to the last call start (s).
    pub send_span_s: f64,
    /// Calls still in flight when the drain limit ended the run.
    pub unfinished: u64,
    /// Socket counters (with the syscall counts).
    pub io: IoStats,
    /// Outbox overflows (messages that could not be queued).
    pub outbox_overflow: u64,
    /// CPU time of the loop's thread over the loop (ns).
    pub cpu_ns: u64,
    /// Loop rounds (each but the last ends in one `ppoll`).
    pub rounds: u64,
    /// Generator threads merged into this result.
    pub threads: u64,
}

impl LoopResult {
    /// Adds another thread's result: counts sum, spans take the longer.
    pub fn merge(&mut self, o: &LoopResult) {
        self.scheduled += o.scheduled;
        self.offered += o.offered;
        self.elapsed_s = self.elapsed_s.max(o.elapsed_s);
        self.send_span_s = self.send_span_s.max(o.send_span_s);
        self.unfinished += o.unfinished;
        self.io.merge(&o.io);
        self.outbox_overflow += o.outbox_overflow;
        self.cpu_ns += o.cpu_ns;
        self.rounds += o.rounds;
        self.threads += o.threads;
    }
}

/// Runs `engine` over `socks` until its share of the schedule is done and calls have drained
/// (or the drain limit passed). `lag` records how late each call start was against its
/// intended time. `epoch` is the run's time zero, shared by every generator thread.
///
/// Each round: every start that is due is sent (one batch: open loop, the intended times
/// stand and lateness is recorded as send lag), due timers fire, the outbox is flushed with
/// `sendmmsg`, then one `ppoll` sleeps until the next start or timer or a readable socket
/// ([`wait_ns`]), and only the sockets it reported readable are drained with `recvmmsg`.
pub fn run_loop<E: Engine>(
    engine: &mut E,
    socks: &mut Sockets,
    out: &mut Outbox,
    cfg: &LoopConfig,
    lag: &mut Latency,
    epoch: Instant,
) -> LoopResult {
    set_timer_slack(TIMER_SLACK_NS);
    let cpu0 = thread_cpu_ns();
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
    let share = cfg.share;
    let total = sched.total();
    let scheduled = share.count(total);
    let time_of = |k: u64| {
        let i = share.index(k);
        if i < total {
            sched.time_of(i)
        } else {
            None
        }
    };
    let mut k = 0u64;
    let mut next_at = time_of(0);
    let first = next_at.unwrap_or(0);
    let mut offered = 0u64;
    let mut last_start = 0u64;
    let mut next_progress = 1_000_000_000u64;
    let mut last_prog = (0u64, 0u64);
    let end_of_schedule = sched.duration_ns;
    let mut deadline = u64::MAX;
    let mut rounds = 0u64;
    loop {
        rounds += 1;
        let now = now_ns();
        // 1. Starts due by now, in schedule order (open loop: never waits for answers).
        let mut batch = 0usize;
        while let Some(at) = next_at {
            if at > now {
                break;
            }
            if out.room() < 1 {
                socks.flush(out);
            }
            lag.record(now - at);
            if engine.start(now, at, share.index(k), out) {
                offered += 1;
                last_start = now;
            }
            k += 1;
            next_at = time_of(k);
            batch += 1;
            if batch.is_multiple_of(256) {
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
        // 3. Wait for the next start or timer, or a datagram; then receive on what is
        // readable only.
        let wait = wait_ns(
            now_ns(),
            next_at,
            engine.next_timer(),
            deadline,
            cfg.progress.then_some(next_progress),
        );
        socks.stats.poll_calls += 1;
        // Err (EINTR is already 0): treated as nothing readable; the next round retries.
        if udp_batch::wait_readable(&mut pfds, wait).unwrap_or(0) == 0 {
            continue;
        }
        for (s, p) in pfds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            for _ in 0..MAX_DRAIN_BATCHES {
                if out.room() < 2 * crate::net::BATCH {
                    socks.flush(out);
                }
                let n = {
                    let t = now_ns();
                    // Borrow split: the closure needs the engine and the outbox, not `socks`.
                    let (eng, o) = (&mut *engine, &mut *out);
                    socks.recv_batch(s, |src, bytes| eng.on_datagram(t, src, bytes, o))
                };
                if n < crate::net::BATCH {
                    break;
                }
            }
        }
        socks.flush(out);
    }
    let end = now_ns();
    LoopResult {
        scheduled,
        offered,
        elapsed_s: Duration::from_nanos(end.saturating_sub(first)).as_secs_f64(),
        send_span_s: Duration::from_nanos(last_start.saturating_sub(first)).as_secs_f64(),
        unfinished: engine.in_flight(),
        io: socks.stats,
        outbox_overflow: out.overflow,
        cpu_ns: thread_cpu_ns().saturating_sub(cpu0),
        rounds,
        threads: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn shares_split_the_calls_by_index_exactly_once() {
        for n in 1..=4usize {
            for total in [0u64, 1, 7, 10, 101] {
                let mut seen = vec![0u32; total as usize];
                let mut counted = 0;
                for t in 0..n {
                    let s = Share::of(t, n);
                    counted += s.count(total);
                    let mut k = 0;
                    while s.index(k) < total {
                        assert_eq!(s.index(k) % n as u64, t as u64);
                        seen[s.index(k) as usize] += 1;
                        k += 1;
                    }
                    assert_eq!(k, s.count(total));
                }
                assert_eq!(counted, total, "n={n} total={total}");
                assert!(seen.iter().all(|&c| c == 1), "n={n} total={total}");
            }
        }
        assert_eq!(Share::of(1, 3).count(10), 3); // 1, 4, 7
        assert_eq!(Share::ALL.count(10), 10);
    }

    #[test]
    fn wait_is_until_the_earliest_due_thing() {
        // A start due now or in the past: no sleep.
        assert_eq!(wait_ns(1_000, Some(900), None, u64::MAX, None), 0);
        assert_eq!(wait_ns(1_000, Some(1_000), Some(5_000), u64::MAX, None), 0);
        // The earliest of start, timer, progress and deadline.
        assert_eq!(
            wait_ns(1_000, Some(3_000), Some(2_500), u64::MAX, None),
            1_500
        );
        assert_eq!(wait_ns(1_000, Some(3_000), None, 2_000, Some(9_000)), 1_000);
        assert_eq!(wait_ns(1_000, None, None, 50_000, Some(40_000)), 39_000);
        // Nothing at all: the bounded wait, so a stop is noticed.
        assert_eq!(wait_ns(0, None, None, u64::MAX, None), MAX_WAIT_NS);
        assert_eq!(
            wait_ns(0, Some(u64::MAX - 1), None, u64::MAX, None),
            MAX_WAIT_NS
        );
    }

    #[test]
    fn results_merge_sums_counts_and_keeps_the_longer_span() {
        let mut a = LoopResult {
            scheduled: 5,
            offered: 5,
            elapsed_s: 1.0,
            send_span_s: 0.9,
            cpu_ns: 100,
            rounds: 7,
            threads: 1,
            ..Default::default()
        };
        a.io.poll_calls = 7;
        let mut b = a.clone();
        b.elapsed_s = 2.0;
        b.io.recv_syscalls = 3;
        a.merge(&b);
        assert_eq!(
            (a.scheduled, a.offered, a.cpu_ns, a.threads),
            (10, 10, 200, 2)
        );
        assert_eq!((a.io.poll_calls, a.io.recv_syscalls), (14, 3));
        assert_eq!(a.elapsed_s, 2.0);
        assert_eq!(a.io.syscalls(), 17);
    }

    /// Sends one datagram per call to an echo peer; a call completes when its echo returns.
    struct Echo {
        dst: SocketAddr,
        started: Vec<u64>,
        done: u64,
    }

    impl Engine for Echo {
        fn start(&mut self, _: u64, _: u64, index: u64, out: &mut Outbox) -> bool {
            self.started.push(index);
            out.push(0, self.dst, |b| {
                b[..8].copy_from_slice(&index.to_le_bytes());
                Some(8)
            })
        }
        fn on_datagram(&mut self, _: u64, _: SocketAddr, _: &[u8], _: &mut Outbox) {
            self.done += 1;
        }
        fn on_timers(&mut self, _: u64, _: &mut Outbox) {}
        fn next_timer(&self) -> Option<u64> {
            None
        }
        fn in_flight(&self) -> u64 {
            self.started.len() as u64 - self.done
        }
        fn progress(&self) -> Progress {
            Progress::default()
        }
        fn histograms(&self) -> Vec<&Latency> {
            Vec::new()
        }
    }

    /// An echo peer on loopback that answers `n` datagrams (bounded in time).
    fn echo_peer(n: usize) -> (SocketAddr, std::thread::JoinHandle<usize>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let addr = s.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut got, t, mut buf) = (0, Instant::now(), [0u8; 64]);
            while got < n && t.elapsed() < Duration::from_secs(10) {
                if let Ok((len, src)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..len], src);
                    got += 1;
                }
            }
            got
        });
        (addr, h)
    }

    fn run_echo(
        n_calls: u64,
        rate: f64,
        share: Share,
        dst: SocketAddr,
        epoch: Instant,
    ) -> (Echo, LoopResult) {
        let mut socks = Sockets::bind("127.0.0.1:0".parse().unwrap(), 2, 64).unwrap();
        let mut out = Outbox::new(64, 64);
        let mut lag = Latency::new("send_lag", "lag");
        let mut e = Echo {
            dst,
            started: Vec::new(),
            done: 0,
        };
        let cfg = LoopConfig {
            schedule: Schedule::constant(rate, (n_calls as f64 / rate * 1e9) as u64),
            drain_ns: 2_000_000_000,
            progress: false,
            share,
        };
        let r = run_loop(&mut e, &mut socks, &mut out, &cfg, &mut lag, epoch);
        assert_eq!(lag.hist.len(), r.offered);
        (e, r)
    }

    #[test]
    fn the_loop_waits_instead_of_spinning_and_counts_its_syscalls() {
        let n = 100u64;
        let (dst, peer) = echo_peer(n as usize);
        // 100 calls at 1,000/s: 100 ms of schedule.
        let (e, r) = run_echo(n, 1_000.0, Share::ALL, dst, Instant::now());
        assert_eq!(peer.join().unwrap(), n as usize);
        assert_eq!((r.offered, e.done, r.unfinished), (n, n, 0));
        assert_eq!(r.io.datagrams_received, n);
        // One ppoll per round but the last (which ends the loop), and rounds per call
        // bounded: a start wake and an echo wake each, plus a few early or spurious ones. A
        // spinning loop makes thousands.
        assert_eq!(r.io.poll_calls + 1, r.rounds);
        assert!(r.rounds <= 6 * n, "{} rounds for {n} calls", r.rounds);
        // recvmmsg only on sockets ppoll reported readable: at most one per echo here
        // (each batch short), never 16 per socket per round.
        assert!(
            r.io.recv_syscalls >= 1 && r.io.recv_syscalls <= n,
            "{:?}",
            r.io
        );
        assert!(r.io.send_calls >= 1 && r.io.send_calls <= n, "{:?}", r.io);
        assert_eq!(
            r.io.syscalls(),
            r.io.send_calls + r.io.recv_syscalls + r.io.poll_calls
        );
        // Waiting costs little CPU: far below the 100 ms of wall time the schedule spans.
        assert!(r.cpu_ns < 60_000_000, "{} ns of CPU", r.cpu_ns);
    }

    #[test]
    fn two_threads_start_every_call_once() {
        let n = 60u64;
        let (dst, peer) = echo_peer(n as usize);
        let epoch = Instant::now();
        let (a, b) = std::thread::scope(|s| {
            let h0 = s.spawn(|| run_echo(n, 1_000.0, Share::of(0, 2), dst, epoch));
            let h1 = s.spawn(|| run_echo(n, 1_000.0, Share::of(1, 2), dst, epoch));
            (h0.join().unwrap(), h1.join().unwrap())
        });
        assert_eq!(peer.join().unwrap(), n as usize);
        let mut all: Vec<u64> = a.0.started.iter().chain(&b.0.started).copied().collect();
        assert!(a.0.started.iter().all(|i| i % 2 == 0));
        assert!(b.0.started.iter().all(|i| i % 2 == 1));
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
        let mut m = a.1.clone();
        m.merge(&b.1);
        assert_eq!((m.scheduled, m.offered, m.threads), (n, n, 2));
        assert_eq!(m.io.datagrams_received, n);
    }
}
