//! Timer queues for the call state machines.
//!
//! Every timer the generator uses has a fixed delay for its kind (a retransmission level, the
//! hold time, the transaction timeout), and it is armed at a time that never goes backwards.
//! So each kind's deadlines arrive already sorted: one FIFO ring per kind is a complete sorted
//! schedule, with O(1) insert and pop and no heap. Cancelling is lazy: a fired entry is checked
//! against the call slot (call sequence number, state) and ignored when stale.
use std::collections::VecDeque;

/// A timer entry: deadline (ns), call slot, call sequence number (staleness check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When it fires.
    pub deadline: u64,
    /// Call slot.
    pub slot: u32,
    /// Sequence number (call index or transaction id) the timer belongs to.
    pub tag: u64,
}

/// A FIFO of entries with one fixed delay.
#[derive(Debug, Clone)]
pub struct Fifo {
    /// The delay every entry is armed with.
    pub delay: u64,
    q: VecDeque<Entry>,
}

impl Fifo {
    /// A queue for timers of `delay` ns, with room for `cap` entries before it grows.
    pub fn new(delay: u64, cap: usize) -> Self {
        Fifo {
            delay,
            q: VecDeque::with_capacity(cap),
        }
    }

    /// Arms a timer at `now + delay`. `now` must not be earlier than the previous call's.
    #[inline]
    pub fn arm(&mut self, now: u64, slot: u32, tag: u64) {
        self.arm_at(now.saturating_add(self.delay), slot, tag);
    }

    /// Arms a timer with an explicit deadline (must not be earlier than the last one armed).
    #[inline]
    pub fn arm_at(&mut self, deadline: u64, slot: u32, tag: u64) {
        debug_assert!(self.q.back().is_none_or(|b| b.deadline <= deadline));
        self.q.push_back(Entry {
            deadline,
            slot,
            tag,
        });
    }

    /// Pops the first entry if it is due at `now`.
    #[inline]
    pub fn pop_due(&mut self, now: u64) -> Option<Entry> {
        if self.q.front()?.deadline <= now {
            self.q.pop_front()
        } else {
            None
        }
    }

    /// Earliest deadline.
    pub fn next(&self) -> Option<u64> {
        self.q.front().map(|e| e.deadline)
    }

    /// Entries queued (including stale ones).
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

/// Earliest deadline over several queues.
pub fn earliest<'a>(qs: impl IntoIterator<Item = &'a Fifo>) -> Option<u64> {
    qs.into_iter().filter_map(Fifo::next).min()
}

/// Parses lowercase/uppercase hex digits; `None` on anything else or overflow.
#[inline]
pub fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_pops_in_deadline_order() {
        let mut f = Fifo::new(100, 4);
        f.arm(0, 1, 10);
        f.arm(5, 2, 11);
        assert_eq!(f.pop_due(99), None);
        assert_eq!(f.next(), Some(100));
        assert_eq!(f.pop_due(100).unwrap().slot, 1);
        assert_eq!(f.pop_due(104), None);
        assert_eq!(f.pop_due(200).unwrap().tag, 11);
        assert!(f.is_empty());
    }

    #[test]
    fn hex_parsing() {
        assert_eq!(parse_hex(b"00ab"), Some(0xab));
        assert_eq!(parse_hex(b"0g"), None);
        assert_eq!(parse_hex(b""), None);
    }
}
