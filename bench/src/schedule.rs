//! The open-loop schedule: when call `i` is *meant* to start.
//!
//! Start times are a pure function of the call index (constant rate, or a linear ramp from
//! `rate` to `ramp_to` over the run), never of when earlier calls were answered. Latency is
//! measured from these intended times, so a generator that falls behind (or a system under test
//! that queues) shows up as latency instead of being hidden (no coordinated omission).

/// Call start times for a run of `duration_ns` at a constant or linearly ramped rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Calls/s at the start.
    pub rate: f64,
    /// Calls/s at the end (equal to `rate` for a constant rate).
    pub ramp_to: f64,
    /// Run length in nanoseconds.
    pub duration_ns: u64,
}

impl Schedule {
    /// A constant-rate schedule.
    pub fn constant(rate: f64, duration_ns: u64) -> Self {
        Self::ramp(rate, rate, duration_ns)
    }

    /// A linear ramp from `rate` to `ramp_to` calls/s over `duration_ns`.
    pub fn ramp(rate: f64, ramp_to: f64, duration_ns: u64) -> Self {
        Schedule {
            rate: rate.max(0.0),
            ramp_to: ramp_to.max(0.0),
            duration_ns,
        }
    }

    fn secs(&self) -> f64 {
        self.duration_ns as f64 / 1e9
    }

    /// Number of calls the schedule starts: the integral of the rate over the run.
    pub fn total(&self) -> u64 {
        let n = (self.rate + self.ramp_to) / 2.0 * self.secs();
        // Call i starts when N(t) = i, so calls 0..ceil(n) start before the end.
        if n > 0.0 {
            n.ceil() as u64
        } else {
            0
        }
    }

    /// Intended start of call `i` (0-based), in seconds from the run start, as a real number.
    fn time_of_f(&self, i: f64) -> f64 {
        // Calls started by time t: N(t) = r0 t + (r1 - r0) t^2 / (2 D). Solve N(t) = i for t
        // with the cancellation-free form of the quadratic root.
        let d = self.secs();
        let a = if d > 0.0 {
            (self.ramp_to - self.rate) / (2.0 * d)
        } else {
            0.0
        };
        let b = self.rate;
        if a == 0.0 {
            return if b > 0.0 { i / b } else { f64::INFINITY };
        }
        let disc = b * b + 4.0 * a * i;
        if disc < 0.0 {
            return f64::INFINITY;
        }
        let den = b + disc.sqrt();
        if den <= 0.0 {
            f64::INFINITY
        } else {
            2.0 * i / den
        }
    }

    /// Intended start of call `i`, in nanoseconds from the run start; `None` past the end.
    pub fn time_of(&self, i: u64) -> Option<u64> {
        let t = self.time_of_f(i as f64);
        if !t.is_finite() || t >= self.secs() {
            return None;
        }
        Some((t * 1e9).round() as u64)
    }

    /// Rate the schedule asks for at time `t_ns` (calls/s).
    pub fn rate_at(&self, t_ns: u64) -> f64 {
        if self.duration_ns == 0 {
            return self.rate;
        }
        let f = (t_ns as f64 / self.duration_ns as f64).clamp(0.0, 1.0);
        self.rate + (self.ramp_to - self.rate) * f
    }

    /// Mean offered rate over the run (calls/s).
    pub fn mean_rate(&self) -> f64 {
        (self.rate + self.ramp_to) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let s = Schedule::constant(1000.0, 2 * S);
        assert_eq!(s.total(), 2000);
        assert_eq!(s.time_of(0), Some(0));
        assert_eq!(s.time_of(1), Some(1_000_000));
        assert_eq!(s.time_of(1999), Some(1_999_000_000));
        assert_eq!(s.time_of(2000), None);
        for i in 1..2000 {
            let d = s.time_of(i).unwrap() - s.time_of(i - 1).unwrap();
            assert!((999_999..=1_000_001).contains(&d), "gap {d} at {i}");
        }
    }

    #[test]
    fn fractional_rate_counts() {
        let s = Schedule::constant(2.5, 2 * S);
        assert_eq!(s.total(), 5);
        assert_eq!(s.time_of(4), Some(1_600_000_000));
        assert_eq!(s.time_of(5), None);
        let s = Schedule::constant(3.0, S / 2);
        assert_eq!(s.total(), 2); // t = 0 and t = 1/3 s
        assert!(s.time_of(1).is_some() && s.time_of(2).is_none());
    }

    #[test]
    fn ramp_times_match_the_integral() {
        // 100 -> 300 calls/s over 10 s: 2000 calls; N(t) = 100 t + 10 t^2.
        let s = Schedule::ramp(100.0, 300.0, 10 * S);
        assert_eq!(s.total(), 2000);
        // N(5) = 500 + 250 = 750: call 750 starts at 5 s.
        let t = s.time_of(750).unwrap();
        assert!((t as i64 - 5 * S as i64).abs() < 1000, "{t}");
        // Monotone, and gaps shrink as the rate grows.
        let first_gap = s.time_of(1).unwrap() - s.time_of(0).unwrap();
        let last_gap = s.time_of(1999).unwrap() - s.time_of(1998).unwrap();
        assert!(first_gap > 2 * last_gap, "{first_gap} vs {last_gap}");
        let mut prev = 0;
        for i in 0..2000 {
            let t = s.time_of(i).unwrap();
            assert!(t >= prev);
            prev = t;
        }
        assert_eq!(s.time_of(2000), None);
        assert!((s.rate_at(5 * S) - 200.0).abs() < 1e-9);
    }

    #[test]
    fn ramp_down_and_from_zero() {
        let s = Schedule::ramp(300.0, 100.0, 10 * S);
        assert_eq!(s.total(), 2000);
        let t = s.time_of(1999).unwrap();
        assert!(t < 10 * S);
        let s = Schedule::ramp(0.0, 200.0, 10 * S);
        assert_eq!(s.total(), 1000);
        // N(t) = 10 t^2: call 10 at 1 s.
        assert!((s.time_of(10).unwrap() as i64 - S as i64).abs() < 1000);
    }

    #[test]
    fn zero_rate_starts_nothing() {
        let s = Schedule::constant(0.0, 5 * S);
        assert_eq!(s.total(), 0);
        assert_eq!(s.time_of(0), None);
    }
}
