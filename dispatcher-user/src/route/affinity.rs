//! The short-lived affinity table: which processor got an INVITE transaction, so that its
//! retransmissions, its CANCEL and the ACK for a non-2xx final response (all sent to the
//! well-known port with the same Call-ID, From-tag and top-Via branch, RFC 3261 §9.1 and
//! §17.1.1.3) reach the same processor.
//!
//! Open addressing over a fixed, power-of-two array of 16-byte entries: O(1) insert and lookup
//! in a probe window of [`WINDOW`] slots, no allocation after construction, bounded memory.
//! When a window has no free or expired slot, the entry closest to expiry is evicted and
//! counted: under overload the oldest transactions lose affinity first, and a retransmission
//! that lost it is treated as a new dialog by policy (the processor that first got it answers
//! the duplicate's transaction anyway by Call-ID).

/// Slots examined per operation.
pub const WINDOW: usize = 8;

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Entry {
    /// Key hash; 0 marks an empty slot (a real hash of 0 is mapped to 1).
    key: u64,
    /// Expiry in whole seconds since the table's clock origin.
    expires_s: u32,
    processor: u16,
    _pad: u16,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 16);

/// Counters of the table's work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AffinityStats {
    /// Entries inserted.
    pub inserted: u64,
    /// Live entries evicted because their window was full.
    pub evicted: u64,
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
}

impl AffinityStats {
    /// Adds another table's counters (one table per dispatcher thread).
    pub fn add(&mut self, o: &Self) {
        self.inserted += o.inserted;
        self.evicted += o.evicted;
        self.hits += o.hits;
        self.misses += o.misses;
    }
}

/// The table.
pub struct Affinity {
    slots: Box<[Entry]>,
    mask: usize,
    ttl_s: u32,
    stats: AffinityStats,
}

impl Affinity {
    /// A table of at least `capacity` entries (power of two), entries living `ttl_s` seconds.
    pub fn new(capacity: usize, ttl_s: u32) -> Self {
        let cap = capacity.max(WINDOW).next_power_of_two();
        // Huge pages and no page faults on the packet path (see `fabric::mem`).
        let slots = fabric::mem::table(cap, Entry::default());
        Self {
            slots,
            mask: cap - 1,
            ttl_s,
            stats: AffinityStats::default(),
        }
    }

    /// Bytes of memory the table holds (fixed at construction).
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Entry>()
    }

    /// Counters so far.
    pub fn stats(&self) -> AffinityStats {
        self.stats
    }

    fn window(&self, key: u64) -> impl Iterator<Item = usize> {
        let (start, mask) = (key as usize & self.mask, self.mask);
        (0..WINDOW).map(move |i| (start + i) & mask)
    }

    /// The processor recorded for `key`, if its entry has not expired at `now_s`.
    pub fn get(&mut self, key: u64, now_s: u32) -> Option<u16> {
        for i in self.window(key) {
            let e = self.slots[i];
            if e.key == key && e.expires_s > now_s {
                self.stats.hits += 1;
                return Some(e.processor);
            }
        }
        self.stats.misses += 1;
        None
    }

    /// Records `key → processor` until `now_s + ttl`.
    pub fn insert(&mut self, key: u64, processor: u16, now_s: u32) {
        let expires_s = now_s.saturating_add(self.ttl_s);
        let mut victim = None::<(usize, u32)>;
        for i in self.window(key) {
            let e = self.slots[i];
            if e.key == 0 || e.key == key || e.expires_s <= now_s {
                self.slots[i] = Entry {
                    key,
                    expires_s,
                    processor,
                    _pad: 0,
                };
                self.stats.inserted += 1;
                return;
            }
            if victim.is_none_or(|(_, exp)| e.expires_s < exp) {
                victim = Some((i, e.expires_s));
            }
        }
        if let Some((i, _)) = victim {
            self.slots[i] = Entry {
                key,
                expires_s,
                processor,
                _pad: 0,
            };
            self.stats.inserted += 1;
            self.stats.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::hash::stable_key as key;

    #[test]
    fn insert_get_and_expire() {
        let mut t = Affinity::new(1024, 70);
        let k = key(b"call-1", b"tag-a", b"z9hG4bK1");
        t.insert(k, 3, 100);
        assert_eq!(t.get(k, 100), Some(3));
        assert_eq!(t.get(k, 169), Some(3));
        assert_eq!(t.get(k, 170), None, "expired at now + ttl");
        assert_ne!(k, key(b"call-1", b"tag-a", b"z9hG4bK2"));
        assert_ne!(
            key(b"ab", b"c", b""),
            key(b"a", b"bc", b""),
            "fields are separated"
        );
    }

    #[test]
    fn full_window_evicts_the_oldest_and_counts() {
        let mut t = Affinity::new(WINDOW, 70);
        // Capacity == window: every key shares the one window.
        for i in 0..WINDOW as u32 {
            t.insert(key(&i.to_le_bytes(), b"", b""), i as u16, i);
        }
        let newest = key(b"newest", b"", b"");
        t.insert(newest, 99, 20);
        let s = t.stats();
        assert_eq!(s.evicted, 1);
        assert_eq!(t.get(newest, 20), Some(99));
        assert_eq!(
            t.get(key(&0u32.to_le_bytes(), b"", b""), 20),
            None,
            "oldest evicted"
        );
        assert_eq!(t.get(key(&1u32.to_le_bytes(), b"", b""), 20), Some(1));
    }

    #[test]
    fn memory_is_16_bytes_per_entry() {
        let t = Affinity::new(1 << 20, 70);
        assert_eq!(t.memory_bytes(), 16 << 20);
    }
}
