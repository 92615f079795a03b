//! Selection policies (claims 7, 8, 15, 16): which processor gets a new dialog.
//!
//! Every policy honours two hard limits, whatever it optimises: a processor's capacity in
//! session units, and its queue having room. A processor that fits neither is skipped; when no
//! processor fits, the caller answers 503 (SIP) / 403 or 409 (MGCP) itself.
//!
//! The router calls [`Selector::select`] again with a growing exclusion mask when a push into
//! the chosen processor's queue fails, so "next candidate" is each policy's own second choice,
//! not Kamailio's "next in the list" (which dumps a failed member's whole load on its neighbour).
//!
//! Weights (`weight`, default 1) give a processor a proportional share of new dialogs:
//! round-robin is the smooth weighted round-robin of nginx (a weight-3 member gets 3 of every 4
//! picks against a weight-1 one, interleaved, not in bursts); `hash` is weighted rendezvous
//! hashing (score `w / -ln(u)`, so a member's share of keys is its weight over the sum, and
//! changing one weight moves keys only to or from that member); least-loaded compares load
//! divided by weight. `size-aware` ignores weights: capacities already say how much each
//! processor takes. With all weights equal every policy decides exactly as it does unweighted.

/// Most processors one dispatcher serves (the exclusion mask is a `u64`).
pub const MAX_PROCESSORS: usize = 64;

/// How new dialogs are spread over processors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Lowest reported load (units in use relative to capacity, plus queue depth), chosen by
    /// power-of-two-choices so that stale reports do not make every dispatcher herd onto the
    /// same processor.
    LeastLoaded,
    /// The session size the message announces must fit; among those that fit, the processor
    /// with the most free capacity wins (the OpenSIPS `load_balancer` model).
    SizeAware,
    /// Each processor in turn.
    RoundRobin,
    /// Rendezvous hash of the Call-ID: identical on every dispatcher without shared state, and
    /// adding or removing a processor moves only that processor's share of keys.
    Hash,
}

/// What the selector needs to know about one processor right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberState {
    /// Session units assigned and not yet released.
    pub in_use: u64,
    /// Capacity in units; 0 means unlimited.
    pub capacity: u32,
    /// Messages waiting in its queue.
    pub depth: usize,
    /// Queue slots.
    pub queue_capacity: usize,
    /// Reporting load recently (a silent processor is out of selection).
    pub alive: bool,
    /// Relative share of new dialogs (≥ 1).
    pub weight: u32,
    /// New-INVITE transactions it holds pending: its last report plus the INVITEs handed to
    /// it since.
    pub pending: u32,
    /// Its cap on those (0: unlimited, or not a new INVITE being placed).
    pub max_pending: u32,
}

impl MemberState {
    fn fits(&self, size: u32) -> bool {
        self.alive
            && self.depth < self.queue_capacity
            && (self.max_pending == 0 || self.pending < self.max_pending)
            && (self.capacity == 0 || self.in_use + u64::from(size) <= u64::from(self.capacity))
    }

    /// Load in parts per million of capacity (or absolute units when unlimited), queue
    /// included, divided by the weight.
    fn load(&self) -> u64 {
        let busy = self.in_use + self.depth as u64;
        let load = if self.capacity == 0 {
            busy.saturating_mul(1_000)
        } else {
            busy.saturating_mul(1_000_000_000) / u64::from(self.capacity)
        };
        load / u64::from(self.weight.max(1))
    }

    fn free(&self) -> u64 {
        if self.capacity == 0 {
            u64::MAX
        } else {
            u64::from(self.capacity).saturating_sub(self.in_use)
        }
    }
}

/// Policy state: a round-robin cursor, the smooth weighted round-robin's current weights, and
/// a cheap PRNG for power-of-two-choices.
#[derive(Debug, Clone)]
pub struct Selector {
    policy: Policy,
    next: usize,
    current: [i64; MAX_PROCESSORS],
    rng: u64,
}

/// `mix(k ^ 0x5ca1_ab1e)` for every processor id: the per-member half of the rendezvous score,
/// computed at compile time so a score costs one `mix`, not two.
const MEMBER_SALT: [u64; MAX_PROCESSORS] = {
    let mut t = [0u64; MAX_PROCESSORS];
    let mut k = 0;
    while k < MAX_PROCESSORS {
        t[k] = wire::hash::mix(k as u64 ^ 0x5ca1_ab1e);
        k += 1;
    }
    t
};

/// Rendezvous score of `key` on processor `k`: the processor with the highest score owns it.
#[inline]
pub fn rendezvous_score(key: u64, k: usize) -> u64 {
    use wire::hash::mix;
    let salt = match MEMBER_SALT.get(k) {
        Some(&s) => s,
        None => mix(k as u64 ^ 0x5ca1_ab1e),
    };
    mix(key ^ salt)
}

/// The two members with the highest rendezvous scores for `key` among `n` (≥ 2), best first.
/// Each member's score is computed once (scores of distinct members never tie: `mix` is a
/// bijection and the salts differ).
fn top_two(key: u64, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 1);
    let (mut sa, mut sb) = (rendezvous_score(key, 0), rendezvous_score(key, 1));
    if sb > sa {
        (a, b) = (1, 0);
        (sa, sb) = (sb, sa);
    }
    for k in 2..n {
        let s = rendezvous_score(key, k);
        if s > sa {
            (a, b) = (k, a);
            (sa, sb) = (s, sa);
        } else if s > sb {
            b = k;
            sb = s;
        }
    }
    (a, b)
}

/// Weighted rendezvous score: `w / -ln(u)` with `u` the hash mapped into (0, 1).
fn weighted_score(h: u64, weight: u32) -> f64 {
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight.max(1)) / -u.ln()
}

/// Whether every usable member among `n` has the same weight (the unweighted fast path).
fn uniform_weights(
    n: usize,
    usable: &impl Fn(usize) -> bool,
    state: &impl Fn(usize) -> MemberState,
) -> bool {
    let mut w = None;
    (0..n)
        .filter(|&k| usable(k))
        .all(|k| *w.get_or_insert(state(k).weight) == state(k).weight)
}

impl Selector {
    /// A selector for `policy`; `seed` decorrelates dispatchers' random choices.
    pub fn new(policy: Policy, seed: u64) -> Self {
        Self {
            policy,
            next: 0,
            current: [0; MAX_PROCESSORS],
            rng: seed | 1,
        }
    }

    /// The policy in use.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn rand(&mut self, n: usize) -> usize {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % n.max(1)
    }

    /// Picks a processor among `n` for a session of `size` units, skipping those in `excluded`
    /// (bit k set) and those that do not fit. `key` is the Call-ID hash (for [`Policy::Hash`]).
    pub fn select(
        &mut self,
        n: usize,
        size: u32,
        key: u64,
        excluded: u64,
        state: impl Fn(usize) -> MemberState,
    ) -> Option<usize> {
        let n = n.min(MAX_PROCESSORS);
        let usable = |k: usize| excluded & (1 << k) == 0 && state(k).fits(size);
        match self.policy {
            Policy::RoundRobin if uniform_weights(n, &usable, &state) => {
                let found = (0..n).map(|i| (self.next + i) % n).find(|&k| usable(k))?;
                self.next = (found + 1) % n;
                Some(found)
            }
            Policy::RoundRobin => {
                // Smooth weighted round-robin: every usable member gains its weight, the
                // richest is picked and pays the total.
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for k in (0..n).filter(|&k| usable(k)) {
                    let w = i64::from(state(k).weight.max(1));
                    total += w;
                    self.current[k] += w;
                    if best.is_none_or(|b| self.current[k] > self.current[b]) {
                        best = Some(k);
                    }
                }
                let b = best?;
                self.current[b] -= total;
                Some(b)
            }
            Policy::Hash if uniform_weights(n, &usable, &state) => (0..n)
                .filter(|&k| usable(k))
                .max_by_key(|&k| rendezvous_score(key, k)),
            Policy::Hash => (0..n).filter(|&k| usable(k)).max_by(|&a, &b| {
                let score = |k: usize| weighted_score(rendezvous_score(key, k), state(k).weight);
                score(a).total_cmp(&score(b)).then(b.cmp(&a))
            }),
            Policy::SizeAware => (0..n)
                .filter(|&k| usable(k))
                // Most free capacity; among equals the least loaded, then the lowest index.
                .max_by_key(|&k| {
                    let s = state(k);
                    (s.free(), u64::MAX - s.load(), usize::MAX - k)
                }),
            Policy::LeastLoaded => {
                // The two candidates come from the key (the Call-ID, or the MGCP transaction)
                // when there is one: another dispatcher that gets a retransmission of an INVITE
                // this one placed (its flow moved, e.g. when this one failed) weighs the same
                // pair, so with similar load views it finds the original processor. Without a
                // key, two random ones.
                let (a, b) = if key != 0 && n > 1 {
                    top_two(key, n)
                } else {
                    let a = self.rand(n);
                    (a, (a + 1 + self.rand(n.saturating_sub(1).max(1))) % n)
                };
                // Each candidate's state once (it is a pure read, but not free).
                let fit = |k: usize, s: &MemberState| excluded & (1 << k) == 0 && s.fits(size);
                let (sa, sb) = (state(a), state(b));
                let pick = match (fit(a, &sa), a != b && fit(b, &sb)) {
                    (true, true) => Some(if sb.load() < sa.load() { b } else { a }),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => None,
                };
                // Both samples unusable: fall back to the least loaded of all that fit.
                pick.or_else(|| {
                    (0..n)
                        .filter(|&k| usable(k))
                        .min_by_key(|&k| state(k).load())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(in_use: u64, capacity: u32) -> MemberState {
        MemberState {
            in_use,
            capacity,
            depth: 0,
            queue_capacity: 1024,
            alive: true,
            weight: 1,
            pending: 0,
            max_pending: 0,
        }
    }

    #[test]
    fn round_robin_cycles_and_skips_full() {
        let mut s = Selector::new(Policy::RoundRobin, 1);
        let states = [st(0, 10), st(10, 10), st(0, 10)];
        let picks: Vec<_> = (0..4)
            .map(|_| s.select(3, 1, 0, 0, |k| states[k]).unwrap())
            .collect();
        assert_eq!(picks, [0, 2, 0, 2], "processor 1 is at capacity");
    }

    #[test]
    fn size_aware_respects_capacities() {
        let mut s = Selector::new(Policy::SizeAware, 1);
        // Simulate: capacities 10, 20, 30 units; sessions of size 1..=5 until nothing fits.
        let caps = [10u32, 20, 30];
        let mut used = [0u64; 3];
        let mut placed = 0u64;
        for i in 0..200 {
            let size = 1 + (i % 5) as u32;
            let snapshot = used;
            if let Some(k) = s.select(3, size, 0, 0, |k| st(snapshot[k], caps[k])) {
                used[k] += u64::from(size);
                placed += u64::from(size);
            }
        }
        for k in 0..3 {
            assert!(
                used[k] <= u64::from(caps[k]),
                "processor {k} over capacity: {used:?}"
            );
        }
        assert!(placed >= 57, "packing left too much unused: {used:?}");
        // Most-free-first keeps the relative fill even.
        let fill: Vec<f64> = (0..3)
            .map(|k| used[k] as f64 / f64::from(caps[k]))
            .collect();
        assert!(fill.iter().all(|f| *f > 0.8), "uneven fill {fill:?}");
    }

    #[test]
    fn least_loaded_prefers_the_idle_processor() {
        let mut s = Selector::new(Policy::LeastLoaded, 7);
        let states = [st(90, 100), st(10, 100), st(95, 100), st(99, 100)];
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[s.select(4, 1, 0, 0, |k| states[k]).unwrap()] += 1;
        }
        // Processor 1 wins every pair it is in (about half of all pairs).
        assert!(
            counts[1] > counts[0] && counts[1] > counts[2] && counts[1] > counts[3],
            "{counts:?}"
        );
        assert!(
            counts[3] < counts[0],
            "the most loaded one wins least: {counts:?}"
        );
    }

    #[test]
    fn least_loaded_with_a_key_is_the_same_on_every_dispatcher() {
        // Two selectors with different seeds (two dispatchers) and the same load view choose
        // the same processor for every key, and still prefer the idle one.
        let mut a = Selector::new(Policy::LeastLoaded, 7);
        let mut b = Selector::new(Policy::LeastLoaded, 1234);
        let states = [
            st(90, 100),
            st(10, 100),
            st(95, 100),
            st(99, 100),
            st(50, 100),
        ];
        let mut counts = [0; 5];
        for i in 0..5000u64 {
            let key = wire::hash::stable_key(format!("call-{i}").as_bytes(), b"", b"");
            let pa = a.select(5, 1, key, 0, |k| states[k]).unwrap();
            assert_eq!(Some(pa), b.select(5, 1, key, 0, |k| states[k]));
            counts[pa] += 1;
        }
        // Each pair of the 10 is about as likely as the others. Processor 1 (the idlest) wins
        // the 4 pairs it is in (about 40%), processor 4 wins 3, 0 wins 2, 2 wins 1, and the
        // busiest, 3, none.
        assert!(counts[1] > 1600, "{counts:?}");
        assert!(counts[2] < counts[0] && counts[0] < counts[4], "{counts:?}");
        assert_eq!(counts[3], 0, "{counts:?}");
    }

    #[test]
    fn the_salt_table_gives_the_two_mix_score() {
        use wire::hash::mix;
        for key in [0u64, 1, 42, 0xdead_beef, u64::MAX] {
            for k in 0..MAX_PROCESSORS + 3 {
                assert_eq!(
                    rendezvous_score(key, k),
                    mix(key ^ mix(k as u64 ^ 0x5ca1_ab1e)),
                    "key {key} member {k}"
                );
            }
        }
    }

    #[test]
    fn top_two_is_the_two_best_rendezvous_scores() {
        for key in 1..200u64 {
            let (a, b) = top_two(key, 6);
            let mut all: Vec<usize> = (0..6).collect();
            all.sort_by_key(|&k| std::cmp::Reverse(rendezvous_score(key, k)));
            assert_eq!((a, b), (all[0], all[1]), "key {key}");
        }
        assert_eq!(top_two(5, 2).0 + top_two(5, 2).1, 1);
    }

    #[test]
    fn least_loaded_falls_back_when_samples_do_not_fit() {
        let mut s = Selector::new(Policy::LeastLoaded, 3);
        let states = [st(100, 100), st(100, 100), st(100, 100), st(5, 100)];
        for _ in 0..100 {
            assert_eq!(s.select(4, 1, 0, 0, |k| states[k]), Some(3));
        }
    }

    #[test]
    fn hash_moves_only_the_removed_share() {
        let mut s = Selector::new(Policy::Hash, 1);
        let keys: Vec<u64> = (0..20_000u64).map(wire::hash::mix).collect();
        let all = |k: usize| st(0, 0).with_alive(k != usize::MAX);
        let before: Vec<usize> = keys
            .iter()
            .map(|&h| s.select(8, 1, h, 0, all).unwrap())
            .collect();
        // Remove processor 5 (excluded); only keys that were on 5 may move.
        let after: Vec<usize> = keys
            .iter()
            .map(|&h| s.select(8, 1, h, 1 << 5, all).unwrap())
            .collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let on5 = before.iter().filter(|&&k| k == 5).count();
        assert_eq!(moved, on5, "only processor 5's keys move");
        assert!(
            (moved as f64) < keys.len() as f64 / 8.0 * 1.15,
            "moved {moved} of {} (≤ ~1/N expected)",
            keys.len()
        );
        // Adding a ninth processor moves only the keys it now owns.
        let grown: Vec<usize> = keys
            .iter()
            .map(|&h| s.select(9, 1, h, 0, all).unwrap())
            .collect();
        for (b, g) in before.iter().zip(&grown) {
            assert!(b == g || *g == 8, "a key moved between old processors");
        }
        // Same answer on another dispatcher instance: no shared state.
        let mut other = Selector::new(Policy::Hash, 999);
        assert!(keys
            .iter()
            .zip(&before)
            .all(|(&h, &k)| other.select(8, 1, h, 0, all) == Some(k)));
    }

    #[test]
    fn nothing_fits_means_none() {
        for p in [
            Policy::LeastLoaded,
            Policy::SizeAware,
            Policy::RoundRobin,
            Policy::Hash,
        ] {
            let mut s = Selector::new(p, 1);
            assert_eq!(s.select(3, 5, 1, 0, |_| st(8, 10)), None, "{p:?}");
            let mut full = st(0, 0);
            full.depth = full.queue_capacity;
            assert_eq!(
                s.select(3, 1, 1, 0, |_| full),
                None,
                "{p:?} with full queues"
            );
            assert_eq!(
                s.select(3, 1, 1, 0b111, |_| st(0, 0)),
                None,
                "{p:?} all excluded"
            );
        }
    }

    fn weighted(weights: &[u32]) -> impl Fn(usize) -> MemberState + '_ {
        |k| MemberState {
            weight: weights[k],
            ..st(0, 0)
        }
    }

    #[test]
    fn weighted_round_robin_gives_each_its_share_interleaved() {
        let mut s = Selector::new(Policy::RoundRobin, 1);
        let w = [3, 1, 2];
        let picks: Vec<usize> = (0..12)
            .map(|_| s.select(3, 1, 0, 0, weighted(&w)).unwrap())
            .collect();
        let count = |k| picks.iter().filter(|&&p| p == k).count();
        assert_eq!((count(0), count(1), count(2)), (6, 2, 4));
        // Smooth: the heavy member never takes three in a row.
        assert!(
            picks
                .windows(3)
                .all(|x| !(x[0] == 0 && x[1] == 0 && x[2] == 0)),
            "{picks:?}"
        );
    }

    #[test]
    fn weighted_hash_shares_follow_weights_and_equal_weights_decide_as_unweighted() {
        let mut s = Selector::new(Policy::Hash, 1);
        let w = [1, 3];
        let n = 20_000u64;
        let heavy = (0..n)
            .filter(|&i| s.select(2, 1, wire::hash::mix(i), 0, weighted(&w)) == Some(1))
            .count() as f64
            / n as f64;
        assert!(
            (heavy - 0.75).abs() < 0.02,
            "share of the weight-3 member: {heavy}"
        );
        let mut plain = Selector::new(Policy::Hash, 1);
        let eq = [2, 2, 2];
        for i in 0..500u64 {
            let key = wire::hash::mix(i);
            assert_eq!(
                s.select(3, 1, key, 0, weighted(&eq)),
                plain.select(3, 1, key, 0, |_| st(0, 0))
            );
        }
    }

    #[test]
    fn least_loaded_divides_load_by_weight() {
        let mut s = Selector::new(Policy::LeastLoaded, 5);
        // Member 1 has twice the load but four times the weight: it is the less loaded.
        let states = [
            MemberState {
                weight: 1,
                ..st(10, 0)
            },
            MemberState {
                weight: 4,
                ..st(20, 0)
            },
        ];
        for _ in 0..20 {
            assert_eq!(s.select(2, 1, 0, 0, |k| states[k]), Some(1));
        }
    }

    impl MemberState {
        fn with_alive(mut self, alive: bool) -> Self {
            self.alive = alive;
            self
        }
    }
}
