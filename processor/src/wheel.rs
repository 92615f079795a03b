//! A hashed timer wheel for the protocol timers (SIP Timer G/H/I/J, answer delay, lingering
//! transactions; MGCP's response-cache expiry).
//!
//! Why a wheel rather than a `BinaryHeap`: the heap costs O(log n) per insert and cannot
//! cancel, so every rescheduled or finished transaction left a stale entry behind to be popped
//! later, and it grew (reallocating) with the first 32 s of traffic. Here insert and cancel are
//! O(1) (intrusive doubly-linked lists through a node slab, pre-sized), and a timer that is
//! cancelled is gone.
//!
//! Layout: [`SLOTS`] slots of [`TICK_NS`] (≈ 1.05 ms), one lap ≈ 8.6 s. A deadline goes to
//! the slot of its tick; deadlines more than a lap away (Timer H at 64·T1 = 32 s) share slots
//! with nearer ones and are skipped when their slot comes round early, so they are visited
//! once per lap (about 4 times for 32 s) — cheaper than a second wheel level for this mix.
//! Deadlines keep full nanosecond precision: a timer fires in the first [`Wheel::expire`]
//! whose `now` is at or after it (never late, never early), whatever the tick.
//!
//! [`Wheel::next_deadline`] is a lower bound, never later than the earliest live timer: each
//! slot keeps the least deadline put in it (exact after each scan; only a cancel can leave it
//! lower than the truth, which makes the answer early, never late). The answer is cached
//! until the next [`Wheel::expire`] (an insert only lowers it, a cancel may leave it early), so
//! a shell asking after every datagram pays the slot walk once per timer round, not per call.
const TICK_SHIFT: u32 = 20;
/// Width of one slot in nanoseconds (2²⁰ ns ≈ 1.05 ms).
pub const TICK_NS: u64 = 1 << TICK_SHIFT;
/// Slots in one lap (8192 × 1.05 ms ≈ 8.6 s).
pub const SLOTS: usize = 8192;
const MASK: u64 = SLOTS as u64 - 1;
const NIL: u32 = u32::MAX;

/// Handle of a scheduled timer, for [`Wheel::cancel`]; stale handles are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId {
    idx: u32,
    gen: u32,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    deadline: u64,
    data: u64,
    prev: u32,
    next: u32,
    /// Slot it is linked into, or `NIL` when free.
    slot: u32,
    gen: u32,
}

/// The wheel; see the module docs. `data` is the caller's: what to do when the timer fires.
#[derive(Debug)]
pub struct Wheel {
    nodes: Vec<Node>,
    free: Vec<u32>,
    heads: Vec<u32>,
    /// Least deadline linked into each slot (`u64::MAX` when empty).
    slot_min: Vec<u64>,
    /// One bit per non-empty slot, to skip empty ones.
    occupied: Vec<u64>,
    /// Tick up to which every slot has been scanned; deadlines before it go to its slot.
    cursor: u64,
    len: usize,
    /// Cached [`Wheel::next_deadline`] (`None` = recompute).
    next: std::cell::Cell<Option<u64>>,
}

impl Wheel {
    /// A wheel with room for `cap` timers reserved now (it grows, allocating, beyond that).
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            nodes: Vec::with_capacity(cap),
            free: Vec::with_capacity(cap),
            heads: vec![NIL; SLOTS],
            slot_min: vec![u64::MAX; SLOTS],
            occupied: vec![0; SLOTS / 64],
            cursor: 0,
            len: 0,
            next: std::cell::Cell::new(None),
        }
    }

    /// Timers scheduled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `data` to fire at `deadline` (ns).
    pub fn insert(&mut self, deadline: u64, data: u64) -> TimerId {
        let tick = (deadline >> TICK_SHIFT).max(self.cursor);
        let slot = (tick & MASK) as u32;
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.nodes.push(Node {
                    deadline: 0,
                    data: 0,
                    prev: NIL,
                    next: NIL,
                    slot: NIL,
                    gen: 0,
                });
                // More than u32::MAX timers cannot be held by any caller's tables.
                (self.nodes.len() - 1) as u32
            }
        };
        let head = self.heads[slot as usize];
        let n = &mut self.nodes[idx as usize];
        n.deadline = deadline;
        n.data = data;
        n.prev = NIL;
        n.next = head;
        n.slot = slot;
        let gen = n.gen;
        if head != NIL {
            self.nodes[head as usize].prev = idx;
        }
        let s = slot as usize;
        self.heads[s] = idx;
        self.slot_min[s] = self.slot_min[s].min(deadline);
        self.occupied[s / 64] |= 1 << (s % 64);
        self.len += 1;
        if let Some(n) = self.next.get() {
            self.next.set(Some(n.min(deadline)));
        }
        TimerId { idx, gen }
    }

    fn unlink(&mut self, idx: u32) {
        let n = self.nodes[idx as usize];
        let s = n.slot as usize;
        if n.prev == NIL {
            self.heads[s] = n.next;
        } else {
            self.nodes[n.prev as usize].next = n.next;
        }
        if n.next != NIL {
            self.nodes[n.next as usize].prev = n.prev;
        }
        if self.heads[s] == NIL {
            self.occupied[s / 64] &= !(1 << (s % 64));
            self.slot_min[s] = u64::MAX;
        }
        let n = &mut self.nodes[idx as usize];
        n.slot = NIL;
        n.gen = n.gen.wrapping_add(1);
        self.free.push(idx);
        self.len -= 1;
    }

    /// Cancels a timer; returns its data, or `None` if it already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<u64> {
        let n = self.nodes.get(id.idx as usize)?;
        if n.slot == NIL || n.gen != id.gen {
            return None;
        }
        let data = n.data;
        self.unlink(id.idx);
        Some(data)
    }

    /// Removes every timer due at `now` (deadline ≤ `now`) and appends its data to `due` (in
    /// slot order). Timers the caller schedules while handling them at or before `now` are
    /// found by the next call, so callers loop until `due` comes back empty.
    pub fn expire(&mut self, now: u64, due: &mut Vec<u64>) {
        self.next.set(None);
        if self.len == 0 {
            self.cursor = self.cursor.max(now >> TICK_SHIFT);
            return;
        }
        let now_tick = now >> TICK_SHIFT;
        // Slots to visit: cursor..=now_tick, at most one lap.
        let span = now_tick.saturating_sub(self.cursor).min(MASK);
        let first = self.cursor;
        for t in first..=first + span {
            let s = (t & MASK) as usize;
            if self.occupied[s / 64] & (1 << (s % 64)) == 0 {
                continue;
            }
            self.scan_slot(s, now, due);
        }
        self.cursor = self.cursor.max(now_tick);
    }

    fn scan_slot(&mut self, s: usize, now: u64, due: &mut Vec<u64>) {
        let mut i = self.heads[s];
        let mut least = u64::MAX;
        while i != NIL {
            let n = self.nodes[i as usize];
            if n.deadline <= now {
                due.push(n.data);
                self.unlink(i);
            } else {
                least = least.min(n.deadline);
            }
            i = n.next;
        }
        if self.heads[s] != NIL {
            self.slot_min[s] = least;
        }
    }

    /// Earliest time anything may be due; `None` when empty. Never later than the earliest
    /// timer; early only after a cancel (see the module docs).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        if let Some(n) = self.next.get() {
            return Some(n);
        }
        let mut best = u64::MAX;
        let start = (self.cursor & MASK) as usize;
        let mut d = 0usize;
        while d < SLOTS {
            let Some(off) = self.next_occupied(start, d) else {
                break;
            };
            // A slot `off` steps ahead holds nothing before the start of that tick.
            let earliest = (self.cursor + off as u64) << TICK_SHIFT;
            if off > 0 && best <= earliest {
                break;
            }
            best = best.min(self.slot_min[(start + off) % SLOTS]);
            d = off + 1;
        }
        self.next.set(Some(best));
        Some(best)
    }

    /// Distance (≥ `from`) from slot `start` to the next occupied slot, within one lap.
    fn next_occupied(&self, start: usize, from: usize) -> Option<usize> {
        let mut d = from;
        while d < SLOTS {
            let s = (start + d) % SLOTS;
            let word = self.occupied[s / 64] >> (s % 64);
            if word != 0 {
                let step = word.trailing_zeros() as usize;
                // Stay within the current word (it does not wrap past the slot array end).
                return Some(d + step).filter(|&x| x < SLOTS);
            }
            d += 64 - s % 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn expire(w: &mut Wheel, now: u64) -> Vec<u64> {
        let mut v = vec![];
        w.expire(now, &mut v);
        v.sort_unstable();
        v
    }

    #[test]
    fn fires_at_the_deadline_never_before() {
        let mut w = Wheel::with_capacity(4);
        w.insert(10 * MS + 1, 1);
        w.insert(10 * MS, 2);
        assert_eq!(w.next_deadline(), Some(10 * MS));
        assert!(expire(&mut w, 10 * MS - 1).is_empty());
        assert_eq!(expire(&mut w, 10 * MS), [2]);
        assert_eq!(w.next_deadline(), Some(10 * MS + 1));
        assert_eq!(expire(&mut w, 10 * MS + 1), [1]);
        assert_eq!(w.next_deadline(), None);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_removes_and_stale_handles_are_ignored() {
        let mut w = Wheel::with_capacity(4);
        let a = w.insert(5 * MS, 1);
        let b = w.insert(5 * MS, 2);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        // The node is reused; the old handle must not cancel the new timer.
        let c = w.insert(7 * MS, 3);
        assert_eq!(w.cancel(a), None);
        assert_eq!(expire(&mut w, 6 * MS), [2]);
        assert_eq!(w.cancel(b), None, "already fired");
        assert_eq!(w.cancel(c), Some(3));
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn far_deadlines_survive_laps_and_fire_on_time() {
        let lap = SLOTS as u64 * TICK_NS;
        let mut w = Wheel::with_capacity(4);
        let t0 = 1_000 * MS;
        w.expire(t0, &mut vec![]);
        // Same slot as a near timer, three laps later.
        w.insert(t0 + 3 * lap + 5 * MS, 9);
        w.insert(t0 + 5 * MS, 1);
        assert_eq!(w.next_deadline(), Some(t0 + 5 * MS));
        assert_eq!(expire(&mut w, t0 + 5 * MS), [1]);
        assert_eq!(w.next_deadline(), Some(t0 + 3 * lap + 5 * MS));
        // Step through the laps one deadline at a time, as a shell would.
        let mut now = t0 + 5 * MS;
        let mut fired = vec![];
        while let Some(d) = w.next_deadline() {
            assert!(d >= now, "no busy loop on a past deadline");
            now = d;
            fired.extend(expire(&mut w, now));
        }
        assert_eq!(fired, [9]);
        assert_eq!(now, t0 + 3 * lap + 5 * MS);
    }

    #[test]
    fn wraps_around_the_slot_array() {
        let mut w = Wheel::with_capacity(8);
        // Put the cursor just before the end of the array.
        let base = (SLOTS as u64 - 2) * TICK_NS;
        w.expire(base, &mut vec![]);
        for i in 0..6u64 {
            w.insert(base + i * TICK_NS, i);
        }
        assert_eq!(w.next_deadline(), Some(base));
        assert_eq!(expire(&mut w, base + 2 * TICK_NS), [0, 1, 2]);
        assert_eq!(w.next_deadline(), Some(base + 3 * TICK_NS));
        assert_eq!(expire(&mut w, base + 10 * TICK_NS), [3, 4, 5]);
    }

    #[test]
    fn a_jump_of_many_laps_fires_everything_due() {
        let mut w = Wheel::with_capacity(8);
        for i in 0..100u64 {
            w.insert(i * 97 * MS, i);
        }
        let far = 100 * SLOTS as u64 * TICK_NS;
        w.insert(far + 1, 1000);
        let got = expire(&mut w, far);
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(w.next_deadline(), Some(far + 1));
    }

    #[test]
    fn past_deadlines_fire_on_the_next_expire() {
        let mut w = Wheel::with_capacity(2);
        w.expire(50 * MS, &mut vec![]);
        w.insert(10 * MS, 7);
        assert_eq!(w.next_deadline(), Some(10 * MS));
        assert_eq!(expire(&mut w, 50 * MS), [7]);
    }

    #[test]
    fn next_deadline_is_never_late_against_a_model() {
        let mut w = Wheel::with_capacity(64);
        let mut live: Vec<(TimerId, u64)> = vec![];
        let mut x = 99u64;
        let mut now = 0u64;
        for step in 0..5_000u64 {
            x = wire::hash::mix(x);
            match x % 4 {
                0 | 1 => {
                    let d = now + (x >> 8) % (20_000 * MS);
                    live.push((w.insert(d, step), d));
                }
                2 if !live.is_empty() => {
                    let (id, _) = live.swap_remove((x >> 8) as usize % live.len());
                    assert!(w.cancel(id).is_some());
                }
                _ => {
                    now += (x >> 8) % (700 * MS);
                    let mut due = vec![];
                    w.expire(now, &mut due);
                    let before = live.len();
                    live.retain(|(_, d)| *d > now);
                    assert_eq!(due.len(), before - live.len(), "everything due fired");
                }
            }
            let truth = live.iter().map(|(_, d)| *d).min();
            match (w.next_deadline(), truth) {
                (Some(a), Some(b)) => assert!(a <= b, "late: {a} > {b}"),
                (None, None) => {}
                other => panic!("{other:?}"),
            }
        }
    }
}
