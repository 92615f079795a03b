//! Wake-up coalescing: how a polling thread with nothing to do should wait.
//!
//! Waiting for an event (`poll()` on a ring or an eventfd) wakes the thread at the first
//! datagram, so under steady load it pays one sleep/wake cycle per datagram: 5-9 µs of CPU on
//! the sleeper plus the waker's eventfd write here, against ~1.5 µs for deciding the datagram.
//! A timed sleep costs about the same once, but whatever arrived meanwhile is handled in one
//! batch, so the wake cost is shared by every datagram of the batch. The price is latency: a
//! datagram waits up to the sleep (plus timer slack) before it is read.
//!
//! Both the CPU saved and the latency added depend on the batch a sleep gathers, i.e. on the
//! sleep over the averaged arrival gap, so the sleep follows the gap:
//! - it is [`TARGET_BATCH`] gaps long, so that a wake-up serves about that many datagrams
//!   whatever the rate, capped by the configured delay (the latency budget per hop): at high
//!   rates the sleep, and the latency it adds, shrink;
//! - the thread sleeps only when the capped sleep still gathers [`MIN_BATCH`] datagrams;
//!   below that rate it waits for the event instead. A sleep serving one or two datagrams
//!   saves next to nothing and adds its whole length to their latency, and an idle thread
//!   costs nothing.
//!
//! Measured with `cargo xtask bench --call-rate 20000 --ladder 5000,20000 --peer none` on
//! this 2-core VM: a fixed 250 µs sleep whenever the gap was below it cost the dispatcher
//! 2.8 µs per call at 20,000 calls/s (~5 datagrams per wake-up); a fixed 500 µs sleep cut that
//! to 1.8-2.2 µs but took the INVITE → 200 p99 at 5,000 calls/s from 0.63 to 1.13 ms, as
//! sleeps there gathered 2.5-3.75 datagrams. This policy (500 µs cap, [`TARGET_BATCH`] 10,
//! [`MIN_BATCH`] 4): 1.7-2.1 µs at 20,000/s, and at 5,000/s, where every thread waits for
//! events, p50 53 µs and p99 0.54 ms (the dispatcher's CPU per call there rose from ~8 to
//! ~10 µs: a wake-up per datagram).
//!
//! This is the interrupt-coalescing idea of NICs (`ethtool -C rx-usecs`, adaptive-rx)
//! applied to the consumer threads. Deterministic: the caller passes the clock; tests drive
//! it with numbers.

/// Default coalescing delay, the longest sleep: 500 µs. A timed sleep and wake cost this VM
/// 5-18 µs of the sleeper's CPU (measured by the dispatcher's spin policy), so batching pays
/// only with several datagrams per wake-up; with [`TARGET_BATCH`] the sleep reaches this cap
/// at 20,000 datagrams/s and shortens above. It adds at most 0.5 ms per hop, small beside a
/// 4 ms p99 budget and nothing beside SIP's T1 of 500 ms.
pub const DEFAULT_DELAY_NS: u64 = 500_000;

/// Datagrams a sleep is sized to gather: the sleep is this many averaged gaps (capped by the
/// delay). 10 keeps the wake-up's share of a datagram's CPU near a tenth of a wake-up.
pub const TARGET_BATCH: u64 = 10;

/// The fewest datagrams the capped sleep must be expected to gather for the thread to sleep
/// at all; below that it waits for the event (see the module docs).
pub const MIN_BATCH: u64 = 4;

/// Length of the window the arrival rate is measured over.
const WINDOW_NS: u64 = 2_000_000;

/// How an idle thread should wait now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Wait for an event (a datagram, an eventfd write), up to the caller's own timeout.
    Event,
    /// Sleep this long without waking for events, then look again.
    Sleep(u64),
}

/// Chooses between waiting for an event and a timed sleep from the recent arrival rate; see
/// the module docs.
#[derive(Debug, Clone)]
pub struct Coalescer {
    delay_ns: u64,
    window_start: u64,
    window_items: u64,
    /// Averaged gap between arrivals (ns), `u64::MAX` before anything arrived.
    gap_ns: u64,
}

impl Coalescer {
    /// A coalescer sleeping at most `delay_ns` under load; 0 never sleeps (always
    /// [`Wait::Event`]).
    pub fn new(delay_ns: u64) -> Self {
        Self {
            delay_ns,
            window_start: 0,
            window_items: 0,
            gap_ns: u64::MAX,
        }
    }

    /// Records `n` items (datagrams, queue messages) handled at `now_ns`.
    #[inline]
    pub fn record(&mut self, now_ns: u64, n: usize) {
        self.window_items += n as u64;
        self.roll(now_ns);
    }

    fn roll(&mut self, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.window_start);
        if elapsed < WINDOW_NS {
            return;
        }
        let gap = match self.window_items {
            0 => u64::MAX,
            k => elapsed / k,
        };
        // Halve towards the new window: two windows (4 ms) follow a change of rate.
        self.gap_ns = if self.gap_ns == u64::MAX || gap == u64::MAX {
            gap
        } else {
            self.gap_ns / 2 + gap / 2
        };
        self.window_start = now_ns;
        self.window_items = 0;
    }

    /// The averaged gap between arrivals (ns), `None` while nothing arrives.
    pub fn gap_ns(&self) -> Option<u64> {
        (self.gap_ns != u64::MAX).then_some(self.gap_ns)
    }

    /// How to wait at `now_ns`, the rings being empty.
    #[inline]
    pub fn wait(&mut self, now_ns: u64) -> Wait {
        self.roll(now_ns);
        // `gap_ns` is u64::MAX before anything arrived: the products saturate, no sleep.
        if self.delay_ns > 0 && self.gap_ns.saturating_mul(MIN_BATCH) <= self.delay_ns {
            Wait::Sleep(self.delay_ns.min(self.gap_ns.saturating_mul(TARGET_BATCH)))
        } else {
            Wait::Event
        }
    }
}

/// Sleeps `ns` on `CLOCK_MONOTONIC` (not woken by events; a signal ends it early, which only
/// means an early look at the rings).
pub fn sleep_ns(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; the remainder pointer may be null.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &ts, std::ptr::null_mut()) };
}

/// Timer slack the coalescing threads ask for (1 µs).
pub const TIMER_SLACK_NS: u64 = 1_000;

/// Sets the calling thread's timer slack to `ns` (the kernel's default is 50 µs, which would
/// half again every coalescing sleep). Best effort: an error leaves the default.
pub fn set_timer_slack(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long value and no pointers.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    /// Feeds one item every `gap` ns for `span` ns starting at `t`; returns the end time.
    fn feed(c: &mut Coalescer, mut t: u64, gap: u64, span: u64) -> u64 {
        let end = t + span;
        while t < end {
            c.record(t, 1);
            t += gap;
        }
        t
    }

    #[test]
    fn idle_and_slow_traffic_wait_for_events() {
        let mut c = Coalescer::new(100 * US);
        assert_eq!(c.wait(0), Wait::Event, "nothing seen yet");
        let t = feed(&mut c, 0, 500 * US, 20 * WINDOW_NS);
        assert_eq!(c.wait(t), Wait::Event, "2,000/s: one per 500 µs");
        let gap = c.gap_ns().expect("traffic seen") / US;
        assert!(
            (400..=600).contains(&gap),
            "averaged gap {gap} µs for 500 µs"
        );
    }

    #[test]
    fn frequent_arrivals_sleep_for_the_delay_and_silence_ends_it() {
        let mut c = Coalescer::new(300 * US);
        let t = feed(&mut c, 0, 33 * US, 4 * WINDOW_NS);
        assert_eq!(c.wait(t), Wait::Sleep(300 * US), "30,000/s: 9 per sleep");
        // Traffic stops: within two windows it waits for events again.
        assert_eq!(
            c.wait(t + WINDOW_NS + 1),
            Wait::Sleep(300 * US),
            "one quiet window halves"
        );
        assert_eq!(
            c.wait(t + 3 * WINDOW_NS),
            Wait::Event,
            "quiet: back to events"
        );
    }

    #[test]
    fn the_rate_threshold_is_min_batch_arrivals_per_delay() {
        // 400 µs delay: sleeps from one arrival per 100 µs (4 per sleep) on.
        for (gap, sleeps) in [(50 * US, true), (95 * US, true), (110 * US, false)] {
            let mut c = Coalescer::new(400 * US);
            let t = feed(&mut c, 0, gap, 10 * WINDOW_NS);
            assert_eq!(matches!(c.wait(t), Wait::Sleep(_)), sleeps, "gap {gap}");
        }
    }

    #[test]
    fn above_the_cap_rate_the_sleep_is_target_batch_gaps() {
        let mut c = Coalescer::new(DEFAULT_DELAY_NS);
        // 20,000/s: ten gaps are the whole delay.
        let t = feed(&mut c, 0, 50 * US, 10 * WINDOW_NS);
        assert_eq!(c.wait(t), Wait::Sleep(DEFAULT_DELAY_NS));
        // 40,000/s: half as long, so the added latency falls with the rate.
        let t = feed(&mut c, t, 25 * US, 10 * WINDOW_NS);
        match c.wait(t) {
            Wait::Sleep(ns) => assert!(
                (240 * US..=260 * US).contains(&ns),
                "{ns} ns for ten 25 µs gaps"
            ),
            Wait::Event => panic!("40,000/s must coalesce"),
        }
        // 5,000/s: the 500 µs cap would gather 2.5, below MIN_BATCH: wait for the event.
        let t = feed(&mut c, t, 200 * US, 10 * WINDOW_NS);
        assert_eq!(c.wait(t), Wait::Event);
    }

    #[test]
    fn a_zero_delay_never_sleeps() {
        let mut c = Coalescer::new(0);
        let t = feed(&mut c, 0, US, 4 * WINDOW_NS);
        assert_eq!(c.wait(t), Wait::Event);
    }

    #[test]
    fn timed_sleep_returns() {
        let t = std::time::Instant::now();
        set_timer_slack(TIMER_SLACK_NS);
        sleep_ns(200 * US);
        let e = t.elapsed();
        assert!(e >= std::time::Duration::from_micros(200), "{e:?}");
        assert!(e < std::time::Duration::from_secs(1), "{e:?}");
    }
}
