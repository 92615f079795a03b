//! When an idle thread should spin and when it should park: [`SpinPolicy`].
//!
//! Parking (sleeping in `poll()` on an eventfd or socket and being woken) is not free: on this
//! class of machine one park/wake cycle costs the sleeper 5-9 µs of CPU and the waker another
//! 4-6 µs (issue 14's measurement), against 0.28 µs for a bare syscall. Spinning costs exactly
//! the time spun. So a thread that expects its next piece of work within less than one wake
//! cost does better to spin for it; one that expects a longer gap should park at once, and an
//! idle box must cost ≈ 0 CPU. That is the classic spin-then-block rule (spinning for at most
//! the blocking cost is never worse than twice the optimum), made adaptive:
//!
//! - the policy keeps an exponentially weighted average (weight 1/8) of the *idle gap*: the
//!   time from the first round that found nothing to the round that found work again;
//! - it keeps an average of the measured *wake cost* (the caller measures one park/wake cycle
//!   and reports it with [`SpinPolicy::add_wake_cost`]; see below);
//! - on the first empty round it answers [`Idle::Spin`] for up to the wake cost (capped by
//!   [`SpinConfig::max_spin_ns`]) when the averaged gap is below the wake cost, else
//!   [`Idle::Park`] at once.
//!
//! Why gaps seen while parked are not averaged: a thread that parked at once learns only that
//! the work came at some time before it ran again, and that time includes the wake-up latency
//! itself (about one wake cost). Averaging it would make the policy believe every gap is at
//! least a wake cost long, and once parking it would never spin again. So only gaps observed
//! while spinning enter the average (exactly, or as "longer than the spin" when the spin ran
//! out, which is what the decision needs), and while the policy parks it still spins one
//! idle period in [`SpinConfig::probe_every`] (a probe) to notice that gaps became short.
//! A probe costs at most one wake cost per `probe_every` idle periods, and nothing at all
//! while the thread stays idle (an idle period ends only when work arrives).
//!
//! How the wake cost is measured (by the caller; the policy is clock-free and only sees
//! numbers): the processor thread reads its own CPU time (`CLOCK_THREAD_CPUTIME_ID`) before
//! `poll()` and after the eventfd read, on one park in 16 that was woken by work (that read is a
//! syscall, so not on every park), and reports that figure doubled: the sleeper's share is
//! what it can see, the waker's share (the eventfd write or the socket's wake-up) is of the
//! same order and is saved as well when the sleeper spins instead. Before the first sample the
//! policy uses [`SpinConfig::initial_wake_cost_ns`].
//!
//! Why this rule and not a fixed spin: on the 2-core test box at 15,000 calls/s (two in-chassis
//! processors, `cargo xtask run --backend xdp`), the processor threads measured a wake cost of
//! 24-57 µs (the doubled figure), their idle gaps were mostly longer, and the policy parked at
//! once (≈ 1 park per call, 1-2 µs of probe spinning per call). Forcing a spin of one wake
//! cost on every idle period halved the parks (0.5-0.7 per call) but cost 15-23 µs of
//! spinning per call, and processor CPU per call rose from 43-48 µs to 45-56 µs: spinning only
//! pays when gaps are short, which the averaged gap tells.
//!
//! The policy has no clock: the caller passes monotonic nanosecond timestamps, so it is
//! deterministic and tested with a fake clock. It is generic over what "work" and "park" mean
//! (the dispatcher shells can use it as well as the processor thread).

/// One sleep in this many (among those ended by work) has its CPU cost measured for a
/// [`SpinPolicy`]: a measurement costs two [`thread_cpu_ns`] reads, which are syscalls.
pub const WAKE_SAMPLE_EVERY: u64 = 16;

/// The calling thread's CPU time, ns (`CLOCK_THREAD_CPUTIME_ID`: a syscall, not served by
/// the vDSO): what the wake cost is measured with, and what the shells report per call.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Tuning of a [`SpinPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpinConfig {
    /// Wake cost assumed until the first [`SpinPolicy::add_wake_cost`].
    pub initial_wake_cost_ns: u64,
    /// Longest spin whatever the wake cost measures (bounds what a mismeasured cost can burn).
    pub max_spin_ns: u64,
    /// While parking at once, one idle period in this many spins anyway (a probe), so the
    /// policy notices when gaps became short. 0: never probe.
    pub probe_every: u32,
}

impl Default for SpinConfig {
    /// 10 µs assumed wake cost (the middle of issue 14's measurement, sleeper plus waker),
    /// spins capped at 50 µs, a probe every 16 idle periods.
    fn default() -> Self {
        Self {
            initial_wake_cost_ns: 10_000,
            max_spin_ns: 50_000,
            probe_every: 16,
        }
    }
}

/// What an idle thread should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Keep polling for work without sleeping (call [`SpinPolicy::on_empty`] again after the
    /// next empty round).
    Spin,
    /// Sleep until woken.
    Park,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The last round found work.
    Busy,
    /// Idle since `since`, spinning until `until`.
    Spinning { since: u64, until: u64 },
    /// Idle since `since`; parked (or about to) after spinning `spun` ns.
    Parked { since: u64, spun: u64 },
}

/// Decides spin-or-park for one thread; see the module docs.
#[derive(Debug, Clone)]
pub struct SpinPolicy {
    cfg: SpinConfig,
    state: State,
    /// Averaged idle gap, ns (starts "long": a fresh thread parks until it learns otherwise).
    gap_ns: u64,
    /// Averaged wake cost, ns.
    wake_ns: u64,
    /// Idle periods since the last probe, while parking at once.
    since_probe: u32,
    /// Spin phases that ended because work arrived.
    spins_found: u64,
    /// Time spent spinning, ns (found work or not): what the spins cost.
    spun_ns: u64,
}

/// EWMA weight of a new sample: 1/2^WEIGHT_SHIFT.
const WEIGHT_SHIFT: u32 = 3;

fn ewma(avg: u64, sample: u64) -> u64 {
    // avg + (sample - avg) / 8 in signed arithmetic, without overflow for any u64 pair.
    let a = i128::from(avg);
    let s = i128::from(sample);
    let v = a + ((s - a) >> WEIGHT_SHIFT);
    // The result lies between avg and sample, so it fits.
    u64::try_from(v).unwrap_or(avg)
}

impl SpinPolicy {
    /// A policy with `cfg`, believing work is rare until it sees otherwise.
    pub fn new(cfg: SpinConfig) -> Self {
        let wake = cfg.initial_wake_cost_ns.max(1);
        Self {
            cfg,
            state: State::Busy,
            gap_ns: wake.saturating_mul(4),
            wake_ns: wake,
            since_probe: 0,
            spins_found: 0,
            spun_ns: 0,
        }
    }

    /// The averaged idle gap, ns.
    pub fn gap_ns(&self) -> u64 {
        self.gap_ns
    }

    /// The averaged wake cost, ns.
    pub fn wake_cost_ns(&self) -> u64 {
        self.wake_ns
    }

    /// Spin phases that ended because work arrived (each one a park/wake cycle saved).
    pub fn spins_found(&self) -> u64 {
        self.spins_found
    }

    /// Time spent spinning so far, ns (spins that found work and spins that ran out).
    pub fn spun_ns(&self) -> u64 {
        self.spun_ns
    }

    /// Whether the thread is spinning right now (between an [`Idle::Spin`] and the next work).
    pub fn is_spinning(&self) -> bool {
        matches!(self.state, State::Spinning { .. })
    }

    /// How long a spin may last now: the wake cost, capped.
    pub fn spin_budget_ns(&self) -> u64 {
        self.wake_ns.min(self.cfg.max_spin_ns)
    }

    /// Feeds one measured park/wake cycle cost (ns, sleeper and waker together).
    pub fn add_wake_cost(&mut self, ns: u64) {
        self.wake_ns = ewma(self.wake_ns, ns).max(1);
    }

    /// Gaps are clamped to this before averaging, so one long idle stretch moves the average
    /// no further than "clearly longer than a wake" and a few short gaps bring it back.
    fn gap_cap(&self) -> u64 {
        self.wake_ns.saturating_mul(4)
    }

    /// A round found work at `now_ns`: ends the idle period (if any) and learns from it.
    pub fn on_work(&mut self, now_ns: u64) {
        match self.state {
            State::Busy => {}
            State::Spinning { since, .. } => {
                // Exact: the spin was polling when the work showed up.
                let spun = now_ns.saturating_sub(since);
                self.spun_ns = self.spun_ns.saturating_add(spun);
                self.gap_ns = ewma(self.gap_ns, spun.min(self.gap_cap()));
                self.spins_found += 1;
            }
            State::Parked { spun, .. } => {
                if spun > 0 {
                    // The spin ran out: the gap was longer than the spin. Only "long" matters
                    // for the decision, so count it as the cap (a parked wait's own length
                    // includes the wake latency and says nothing more).
                    self.gap_ns = ewma(self.gap_ns, self.gap_cap());
                }
                // Parked at once: the gap is unknown (see the module docs); learn nothing.
            }
        }
        self.state = State::Busy;
    }

    /// A round found nothing at `now_ns`: spin a while longer or park.
    pub fn on_empty(&mut self, now_ns: u64) -> Idle {
        match self.state {
            State::Busy => {
                let budget = self.spin_budget_ns();
                let spin = if self.gap_ns < self.wake_ns {
                    true
                } else if self.cfg.probe_every > 0 {
                    self.since_probe += 1;
                    if self.since_probe >= self.cfg.probe_every {
                        self.since_probe = 0;
                        true
                    } else {
                        false
                    }
                } else {
                    false
                };
                if spin && budget > 0 {
                    self.state = State::Spinning {
                        since: now_ns,
                        until: now_ns.saturating_add(budget),
                    };
                    Idle::Spin
                } else {
                    self.state = State::Parked {
                        since: now_ns,
                        spun: 0,
                    };
                    Idle::Park
                }
            }
            State::Spinning { since, until } => {
                if now_ns < until {
                    Idle::Spin
                } else {
                    let spun = until.saturating_sub(since).max(1);
                    self.spun_ns = self.spun_ns.saturating_add(spun);
                    self.state = State::Parked { since, spun };
                    Idle::Park
                }
            }
            State::Parked { .. } => Idle::Park,
        }
    }
}

impl Default for SpinPolicy {
    fn default() -> Self {
        Self::new(SpinConfig::default())
    }
}

impl crate::Consumer {
    /// Like [`Consumer::unpark`](crate::Consumer::unpark), but reads the eventfd only when
    /// `poll()` reported it readable: after a wake-up caused by another descriptor (the
    /// processor's socket) the read would only return `EAGAIN`, a wasted syscall per wake.
    /// Skipping it is safe: a write that lands after `poll()` returned leaves the counter
    /// set, so the next `poll()` returns at once and that wake-up clears it (one early
    /// wake-up, never a lost one: the queue is checked before every park).
    ///
    /// Why it lives here: it is part of the park protocol this module is about, and keeps the
    /// queue module's code as it is. Returns whether it made a syscall.
    pub fn unpark_after(&mut self, eventfd_readable: bool) -> bool {
        if eventfd_readable {
            self.unpark();
            true
        } else {
            self.clear_parked();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAKE: u64 = 10_000;

    fn policy() -> SpinPolicy {
        SpinPolicy::new(SpinConfig {
            initial_wake_cost_ns: WAKE,
            max_spin_ns: 50_000,
            probe_every: 4,
        })
    }

    /// One idle period of `gap` ns on a fake clock starting at `t`, the caller checking for
    /// work every 500 ns while told to spin. Returns (what the first empty round answered,
    /// whether the work was found while spinning, the clock after).
    fn idle_period(p: &mut SpinPolicy, t: u64, gap: u64) -> (Idle, bool, u64) {
        let first = p.on_empty(t);
        let mut now = t;
        let mut d = first;
        while d == Idle::Spin {
            now += 500;
            if now >= t + gap {
                let spinning = p.is_spinning();
                p.on_work(now);
                return (first, spinning, now);
            }
            d = p.on_empty(now);
        }
        // Parked: woken when the work comes, plus a wake latency.
        let now = now.max(t + gap) + WAKE;
        p.on_work(now);
        (first, false, now)
    }

    #[test]
    fn fresh_policy_parks_at_once() {
        let mut p = policy();
        assert_eq!(p.on_empty(0), Idle::Park);
        assert_eq!(p.on_empty(1_000_000), Idle::Park, "stays parked");
    }

    #[test]
    fn short_gaps_are_learned_by_probes_and_then_spun_for() {
        let mut p = policy();
        let mut t = 0;
        let mut first_answers = vec![];
        for _ in 0..200 {
            let (first, _, now) = idle_period(&mut p, t, 2_000);
            first_answers.push(first);
            t = now + 1_000;
        }
        assert!(p.gap_ns() < WAKE, "gap {} learned", p.gap_ns());
        // Early on it parked (probing one period in 4); at the end it spins every time.
        assert_eq!(first_answers[0], Idle::Park);
        assert!(first_answers[150..].iter().all(|&d| d == Idle::Spin));
        assert!(p.spins_found() >= 150);
    }

    #[test]
    fn spin_never_outlasts_the_wake_cost() {
        let mut p = policy();
        let mut t = 0;
        for _ in 0..200 {
            t = idle_period(&mut p, t, 1_000).2 + 1_000;
        }
        assert_eq!(p.on_empty(t), Idle::Spin);
        assert_eq!(p.on_empty(t + WAKE - 1), Idle::Spin);
        let before = p.spun_ns();
        assert_eq!(p.on_empty(t + WAKE), Idle::Park, "budget is the wake cost");
        assert_eq!(
            p.spun_ns() - before,
            WAKE,
            "a spin that ran out cost its budget"
        );
        assert_eq!(p.on_empty(t + 10 * WAKE), Idle::Park);
    }

    #[test]
    fn long_gaps_bring_it_back_to_parking_at_once() {
        let mut p = policy();
        let mut t = 0;
        for _ in 0..200 {
            t = idle_period(&mut p, t, 1_000).2 + 1_000;
        }
        assert!(p.gap_ns() < WAKE);
        // Traffic slows to one message per 200 µs: each spin runs out and parks.
        let mut spins = 0;
        for _ in 0..40 {
            let (first, found, now) = idle_period(&mut p, t, 200_000);
            assert!(!found);
            spins += usize::from(first == Idle::Spin);
            t = now + 1_000;
        }
        assert!(p.gap_ns() >= WAKE, "gap {}", p.gap_ns());
        assert!(spins < 20, "stopped spinning after a few ({spins})");
        // From then on it spins only on probes: 1 idle period in 4.
        let mut spun = 0;
        for _ in 0..40 {
            let (first, _, now) = idle_period(&mut p, t, 200_000);
            spun += usize::from(first == Idle::Spin);
            t = now + 1_000;
        }
        assert_eq!(spun, 10);
    }

    #[test]
    fn an_idle_thread_stays_parked_and_does_not_probe() {
        let mut p = policy();
        assert_eq!(p.on_empty(0), Idle::Park);
        // Empty rounds after timeouts, with no work in between: one idle period, no probes.
        for i in 1..1_000 {
            assert_eq!(p.on_empty(i * 100_000_000), Idle::Park);
        }
    }

    #[test]
    fn wake_cost_is_averaged_and_sets_the_budget() {
        let mut p = policy();
        for _ in 0..100 {
            p.add_wake_cost(30_000);
        }
        assert!((29_000..=30_000).contains(&p.wake_cost_ns()));
        assert_eq!(p.spin_budget_ns(), p.wake_cost_ns());
        for _ in 0..100 {
            p.add_wake_cost(1_000_000);
        }
        assert_eq!(p.spin_budget_ns(), 50_000, "capped by max_spin_ns");
        // A cheaper wake makes a gap that was worth spinning for not worth it any more.
        let mut p = policy();
        let mut t = 0;
        for _ in 0..200 {
            t = idle_period(&mut p, t, 6_000).2 + 1_000;
        }
        assert_eq!(p.on_empty(t), Idle::Spin);
        p.on_work(t + 6_000);
        for _ in 0..100 {
            p.add_wake_cost(3_000);
        }
        let spins = (0..8)
            .map(|_| {
                let (first, _, now) = idle_period(&mut p, t, 6_000);
                t = now + 1_000;
                first
            })
            .filter(|&d| d == Idle::Spin)
            .count();
        assert!(spins <= 3, "{spins}");
    }

    #[test]
    fn ewma_moves_an_eighth_and_never_overflows() {
        assert_eq!(ewma(800, 0), 700);
        assert_eq!(ewma(0, 800), 100);
        assert_eq!(ewma(u64::MAX, u64::MAX), u64::MAX);
        assert!(ewma(u64::MAX, 0) < u64::MAX);
        assert!(ewma(0, u64::MAX) > 0);
    }

    #[test]
    fn unpark_after_skips_the_read_only_when_told() {
        let (mut p, mut c) = crate::channel(2).unwrap();
        assert!(c.park());
        assert!(p.push_with(|s| s.fill(b"x")));
        p.commit();
        assert_eq!(p.wakes_sent(), 1);
        assert!(!c.unpark_after(false), "no syscall");
        // The eventfd is still set: the next park's poll returns at once.
        let mut pfd = libc::pollfd {
            fd: c.wake_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1);
        assert!(c.unpark_after(true));
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0, "counter cleared");
        assert_eq!(c.drain(4, |_| {}), 1);
    }
}
