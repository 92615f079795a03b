//! Fixed-capacity tables for the protocol state machines: an open-addressing index from a
//! 128-bit key to a `u32`, and a slab whose slots keep their buffers when freed.
//!
//! Why not `HashMap<Vec<u8>, _>`: a std map grows by rehashing every entry, and a processor's
//! tables fill for the first 64·T1 (32 s) of a run, so each doubling stalled one message for
//! milliseconds; its keys were fresh `Vec`s (an allocation per lookup) hashed with SipHash.
//! Here the capacity is fixed when the state machine starts (the caller derives it from its
//! configuration and documents how) and a full table is an answer ("503, try later"), never a
//! rehash. Keys are already-random 128-bit keyed hashes of the protocol's key fields (see
//! [`KeyHasher`]), so the index needs no hashing of its own beyond a multiply, and two
//! different keys meet only with probability 2⁻¹²⁸ per pair.
//!
//! Linear probing with backward-shift deletion (no tombstones): a lookup never walks past an
//! empty slot, and deletions do not leave garbage that lengthens later probes. The load stays
//! at most 2/3, so the expected probe length stays below 2 for hits and 5 for misses at any
//! size. The key `[0, 0]` marks an empty slot: [`KeyHasher`] never produces it, and an
//! all-zero array is allocated zeroed, so untouched parts of a large table cost no memory.
use wire::hash::{fold_mul, mix};

/// A 128-bit table key; never `[0, 0]` (the empty marker).
pub type Key = [u64; 2];

const EMPTY: Key = [0, 0];

/// Fixed-capacity map from [`Key`] to `u32`; see the module docs.
#[derive(Debug)]
pub struct Table {
    keys: Vec<Key>,
    vals: Vec<u32>,
    mask: usize,
    shift: u32,
    len: usize,
    cap: usize,
}

/// The table holds its capacity of entries; the caller refuses the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("table full ({0} entries)")]
pub struct Full(pub usize);

impl Table {
    /// A table for up to `cap` entries (at least 1), allocated once now.
    pub fn with_capacity(cap: usize) -> Self {
        let cap = cap.max(1);
        // Load at most 2/3: slots ≥ 1.5 × cap, a power of two.
        let slots = (cap + cap / 2 + 1).next_power_of_two().max(8);
        Self {
            keys: vec![EMPTY; slots],
            vals: vec![0; slots],
            mask: slots - 1,
            shift: 64 - slots.trailing_zeros(),
            len: 0,
            cap,
        }
    }

    #[inline]
    fn home(&self, k: &Key) -> usize {
        // Fibonacci hashing of both words: cheap, and the top bits depend on every key bit.
        let x = (k[0] ^ k[1].rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (x >> self.shift) as usize & self.mask
    }

    #[inline]
    fn find(&self, k: &Key) -> Option<usize> {
        let mut i = self.home(k);
        loop {
            let s = self.keys[i];
            if s == *k {
                return Some(i);
            }
            if s == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The value under `k`.
    #[inline]
    pub fn get(&self, k: &Key) -> Option<u32> {
        if *k == EMPTY {
            return None;
        }
        self.find(k).map(|i| self.vals[i])
    }

    /// Whether `k` is present.
    pub fn contains(&self, k: &Key) -> bool {
        self.get(k).is_some()
    }

    /// Sets `k` to `v`, returning the value it replaces; [`Full`] when `k` is new and the
    /// table already holds its capacity (nothing changes then).
    pub fn insert(&mut self, k: Key, v: u32) -> Result<Option<u32>, Full> {
        if k == EMPTY {
            // Unreachable with keys from KeyHasher; refusing keeps the table consistent.
            return Err(Full(self.len));
        }
        let mut i = self.home(&k);
        loop {
            let s = self.keys[i];
            if s == k {
                return Ok(Some(std::mem::replace(&mut self.vals[i], v)));
            }
            if s == EMPTY {
                if self.len >= self.cap {
                    return Err(Full(self.len));
                }
                self.keys[i] = k;
                self.vals[i] = v;
                self.len += 1;
                return Ok(None);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes `k`, returning its value. Backward shift: later entries of the same probe run
    /// move up into the hole, so no tombstone is left.
    pub fn remove(&mut self, k: &Key) -> Option<u32> {
        if *k == EMPTY {
            return None;
        }
        let mut hole = self.find(k)?;
        let v = self.vals[hole];
        self.len -= 1;
        let mut i = hole;
        loop {
            i = (i + 1) & self.mask;
            let s = self.keys[i];
            if s == EMPTY {
                break;
            }
            let home = self.home(&s);
            // Move `s` into the hole unless its home lies cyclically in (hole, i].
            let dist_home = i.wrapping_sub(home) & self.mask;
            let dist_hole = i.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.keys[hole] = s;
                self.vals[hole] = self.vals[i];
                hole = i;
            }
        }
        self.keys[hole] = EMPTY;
        Some(v)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most entries it holds.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Whether a new key would be refused.
    pub fn is_full(&self) -> bool {
        self.len >= self.cap
    }
}

/// Slots of `T` addressed by `u32`, with a free list; at most `cap` live at once.
///
/// A freed slot keeps its value (and so the capacity of any `Vec` inside it) until it is
/// handed out again: the caller resets the fields it uses, so buffers for stored responses are
/// allocated only while the slab grows to its high-water mark, never in steady state.
#[derive(Debug)]
pub struct Slab<T> {
    items: Vec<T>,
    free: Vec<u32>,
    cap: usize,
}

impl<T: Default> Slab<T> {
    /// A slab of up to `cap` items; space for the slot vector is reserved now.
    pub fn with_capacity(cap: usize) -> Self {
        let cap = cap.clamp(1, u32::MAX as usize);
        Self {
            items: Vec::with_capacity(cap),
            free: Vec::with_capacity(cap),
            cap,
        }
    }

    /// A slot to fill (its previous contents, or a default one); `None` when `cap` are live.
    pub fn alloc(&mut self) -> Option<u32> {
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if self.items.len() >= self.cap {
            return None;
        }
        self.items.push(T::default());
        u32::try_from(self.items.len() - 1).ok()
    }

    /// Returns slot `i` to the free list. The caller must not free a slot twice.
    pub fn free(&mut self, i: u32) {
        if (i as usize) < self.items.len() {
            self.free.push(i);
        }
    }

    /// Slot `i` (live or not).
    #[inline]
    pub fn get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize)
    }

    /// Slot `i` (live or not), mutably.
    #[inline]
    pub fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize)
    }

    /// Slots handed out so far, live or free (valid indices are `0..slots()`).
    pub fn slots(&self) -> usize {
        self.items.len()
    }

    /// Live slots.
    pub fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }

    /// Whether no slot is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`Slab::alloc`] would fail.
    pub fn is_full(&self) -> bool {
        self.free.is_empty() && self.items.len() >= self.cap
    }
}

/// Keyed 128-bit hash of protocol key fields, computed without allocating.
///
/// Keyed with a per-process random seed so that a peer cannot choose Call-IDs or branches
/// that collide: the table's probe lengths, and the ~2⁻¹²⁸ chance that two transactions share
/// a key, hold against input chosen without knowing the seed. Each 8-byte word goes through
/// two lanes seeded independently, each a folded 64×64→128-bit multiply (wyhash's "mum": one
/// `mul` per word, where the splitmix finalizer it replaced took two plus three shift-xors:
/// 690 instructions fewer per SIP call, 350 per MGCP call); the key's first half is finished with
/// splitmix, because the table indexes with its low bits. Each field's length is absorbed
/// too, so `("ab", "c")` and `("a", "bc")` differ.
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher {
    seed: [u64; 2],
}

/// An in-progress [`KeyHasher`] hash.
#[derive(Debug, Clone, Copy)]
pub struct KeyState {
    a: u64,
    b: u64,
}

impl KeyHasher {
    /// A hasher with the given seed (use a random one; tests may fix it).
    pub fn new(seed: [u64; 2]) -> Self {
        Self { seed }
    }

    /// Starts a hash.
    #[inline]
    pub fn start(&self) -> KeyState {
        KeyState {
            a: self.seed[0],
            b: self.seed[1] ^ 0x243f_6a88_85a3_08d3,
        }
    }

    /// The key of one byte string.
    pub fn key_of(&self, bytes: &[u8]) -> Key {
        let mut s = self.start();
        s.bytes(bytes);
        s.finish()
    }
}

impl KeyState {
    /// Absorbs one 64-bit word.
    #[inline]
    pub fn word(&mut self, w: u64) {
        self.a = fold_mul(self.a ^ w, 0x9e37_79b9_7f4a_7c15);
        self.b = fold_mul(self.b ^ w, 0xc2b2_ae3d_27d4_eb4f);
    }

    /// Absorbs a byte string and its length.
    #[inline]
    pub fn bytes(&mut self, s: &[u8]) {
        let mut chunks = s.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        // The tail as a zero-padded little-endian word (the same word a copy into a zeroed
        // array gives): from a string of eight bytes or more, its last eight shifted down,
        // one load; from a shorter one, folded byte by byte.
        let r = chunks.remainder().len();
        let tail = match s.len().checked_sub(8).and_then(|at| s.get(at..)) {
            Some(last) if r > 0 => {
                let mut w = [0u8; 8];
                w.copy_from_slice(last);
                u64::from_le_bytes(w) >> (8 * (8 - r))
            }
            Some(_) => 0,
            None => s.iter().rev().fold(0u64, |a, &b| (a << 8) | u64::from(b)),
        };
        // Length in the top byte of the last word keeps field boundaries distinct.
        self.word(tail ^ ((s.len() as u64) << 56) ^ (s.len() as u64));
    }

    /// The key; never `[0, 0]`.
    #[inline]
    pub fn finish(self) -> Key {
        [mix(self.a ^ self.b.rotate_left(17)), self.b | 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table whose home slot can be forced: keys with equal `home` collide.
    fn colliding(t: &Table, home: usize, n: u64) -> Vec<Key> {
        let mut out = vec![];
        let mut x = 1u64;
        while out.len() < n as usize {
            let k = [x, 7];
            if t.home(&k) == home {
                out.push(k);
            }
            x += 1;
        }
        out
    }

    #[test]
    fn insert_get_replace_and_remove() {
        let mut t = Table::with_capacity(4);
        assert_eq!(t.insert([1, 1], 10), Ok(None));
        assert_eq!(t.insert([2, 1], 20), Ok(None));
        assert_eq!(t.insert([1, 1], 11), Ok(Some(10)));
        assert_eq!(t.get(&[1, 1]), Some(11));
        assert_eq!(t.get(&[3, 1]), None);
        assert_eq!(t.get(&EMPTY), None);
        assert_eq!(t.remove(&[1, 1]), Some(11));
        assert_eq!(t.remove(&[1, 1]), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_table_refuses_new_keys_but_replaces_old_ones() {
        let mut t = Table::with_capacity(3);
        for i in 1..=3 {
            t.insert([i, 1], i as u32).unwrap();
        }
        assert!(t.is_full());
        assert_eq!(t.insert([9, 1], 9), Err(Full(3)));
        assert_eq!(t.get(&[9, 1]), None);
        assert_eq!(t.insert([2, 1], 22), Ok(Some(2)));
        t.remove(&[1, 1]);
        assert_eq!(t.insert([9, 1], 9), Ok(None));
    }

    #[test]
    fn collisions_and_backward_shift_keep_every_key_reachable() {
        let mut t = Table::with_capacity(10);
        let slots = t.mask + 1;
        // A run that wraps past the end of the slot array.
        let home = slots - 2;
        let ks = colliding(&t, home, 5);
        for (i, k) in ks.iter().enumerate() {
            t.insert(*k, i as u32).unwrap();
        }
        // Plus one key homed inside the run.
        let other = colliding(&t, 0, 1)[0];
        t.insert(other, 99).unwrap();
        // Remove from the middle, then the head: the rest must still be found.
        assert_eq!(t.remove(&ks[2]), Some(2));
        assert_eq!(t.remove(&ks[0]), Some(0));
        for (i, k) in ks.iter().enumerate() {
            let want = (i != 0 && i != 2).then_some(i as u32);
            assert_eq!(t.get(k), want, "key {i}");
        }
        assert_eq!(t.get(&other), Some(99));
        // No tombstones: the removed slots are empty again.
        assert_eq!(t.len(), 4);
        let empty = t.keys.iter().filter(|k| **k == EMPTY).count();
        assert_eq!(empty, slots - 4);
    }

    #[test]
    fn random_operations_match_a_model() {
        let mut t = Table::with_capacity(64);
        let mut model = std::collections::HashMap::new();
        let mut x = 12345u64;
        for step in 0..20_000u32 {
            x = mix(x);
            // Small key space so that removes and replaces hit.
            let k = [x % 97 + 1, 1];
            if x & 0x100 == 0 {
                let r = t.insert(k, step);
                if model.len() >= 64 && !model.contains_key(&k) {
                    assert_eq!(r, Err(Full(64)));
                } else {
                    assert_eq!(r, Ok(model.insert(k, step)));
                }
            } else {
                assert_eq!(t.remove(&k), model.remove(&k));
            }
            assert_eq!(t.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(t.get(k), Some(*v));
        }
    }

    #[test]
    fn slab_reuses_slots_and_their_buffers() {
        let mut s: Slab<Vec<u8>> = Slab::with_capacity(2);
        let a = s.alloc().unwrap();
        s.get_mut(a).unwrap().extend_from_slice(b"hello");
        let b = s.alloc().unwrap();
        assert_ne!(a, b);
        assert!(s.alloc().is_none(), "capacity 2");
        assert!(s.is_full());
        s.free(a);
        let c = s.alloc().unwrap();
        assert_eq!(c, a);
        let v = s.get_mut(c).unwrap();
        assert!(v.capacity() >= 5, "buffer kept");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn hasher_separates_fields_and_never_yields_empty() {
        let h = KeyHasher::new([1, 2]);
        let key = |parts: &[&[u8]]| {
            let mut s = h.start();
            for p in parts {
                s.bytes(p);
            }
            s.finish()
        };
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_ne!(key(&[b""]), key(&[b"\0"]));
        assert_ne!(key(&[b"12345678"]), key(&[b"12345678", b""]));
        assert_eq!(key(&[b"xyz"]), h.key_of(b"xyz"));
        assert_ne!(KeyHasher::new([3, 4]).key_of(b"xyz"), h.key_of(b"xyz"));
        assert_ne!(key(&[]), EMPTY);
    }

    #[test]
    fn tail_word_is_the_zero_padded_copy() {
        // The previous formulation of `KeyState::bytes`: keys must not change with it.
        fn reference(st: &mut KeyState, s: &[u8]) {
            let mut chunks = s.chunks_exact(8);
            for c in &mut chunks {
                st.word(u64::from_le_bytes(c.try_into().unwrap()));
            }
            let rest = chunks.remainder();
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            st.word(u64::from_le_bytes(w) ^ ((s.len() as u64) << 56) ^ (s.len() as u64));
        }
        let h = KeyHasher::new([0x1234, 0x5678]);
        let data: Vec<u8> = (0..64u32).map(|i| (i * 37 + 255) as u8).collect();
        for len in 0..data.len() {
            let s = &data[..len];
            let mut a = h.start();
            a.bytes(s);
            let mut b = h.start();
            reference(&mut b, s);
            assert_eq!(a.finish(), b.finish(), "length {len}");
        }
    }
}
