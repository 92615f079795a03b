//! Memory for the big regions the packet path touches at random or in sequence (the
//! dispatcher's affinity table, tens of MB; each queue's data arena, 16 MB at the default
//! depth): transparent huge pages, and every page faulted in before the first packet.
//!
//! Why: each new INVITE looks up and inserts a random slot of the affinity table, and its
//! bytes are copied into the next stretch of a queue's arena. With 4 KiB pages the table costs
//! a TLB miss (a page walk, two-dimensional under a hypervisor) on most lookups, and memory
//! the allocator hands out zeroed (mapped on first touch) costs a page fault and a page clear
//! on the packet path, once per 4 KiB, until the whole region has been touched. A profile of
//! the dispatcher thread at 20,000 calls/s had `Affinity::get` at 16 % of its samples and
//! page-fault work (from the copy into the queue arenas, which a fresh process keeps touching
//! for its first ~50,000 messages) at 7 %.
//!
//! The order matters: `madvise(MADV_HUGEPAGE)` only shapes faults that have not happened yet,
//! so the region must be advised before anything writes it. (`vec![x; n]` of a type that is
//! not a primitive writes every element on allocation; a table built that way kept its 4 KiB
//! pages.) With 2 MiB pages (where `/sys/kernel/mm/transparent_hugepage/enabled` is `always`
//! or `madvise`) one TLB entry covers 2 MiB of table. Where huge pages are unavailable, the
//! fill still faults every page in at start. The memory is therefore committed at start: a
//! queue of `depth` slots holds `(depth + 2) × 4,032` bytes whatever the traffic.

const HUGE: usize = 2 << 20;

/// A boxed slice of `len` copies of `fill`, advised for huge pages before it is written and
/// then written whole, so no page of it faults later.
pub fn table<T: Copy>(len: usize, fill: T) -> Box<[T]> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    let spare = v.spare_capacity_mut();
    advise_huge(spare.as_mut_ptr() as usize, std::mem::size_of_val(spare));
    v.resize(len, fill);
    v.into_boxed_slice()
}

/// `len` zero bytes, advised for huge pages before anything touches them and then faulted in
/// one write per page: the same guarantee as [`table`] for a byte arena, at a cost that does
/// not grow with the bytes (4,096 writes for 16 MB, where a fill is 16 million in a debug
/// build, slow enough that a test which sends as soon as the sockets are bound saw none of its
/// datagrams read).
pub fn zeroed(len: usize) -> Box<[u8]> {
    // Zeroed by the allocator: a fresh mapping for a large `len`, no page touched yet.
    let mut b = vec![0u8; len].into_boxed_slice();
    advise_huge(b.as_mut_ptr() as usize, len);
    for i in (0..len).step_by(4096) {
        // A volatile write the compiler keeps (its value is already there): faults the page.
        let p: *mut u8 = &mut b[i];
        // SAFETY: `p` points at a live byte of `b`.
        unsafe { std::ptr::write_volatile(p, 0) };
    }
    b
}

/// Asks for huge pages over the 2 MiB-aligned part of `[start, start + len)`. Best effort.
fn advise_huge(start: usize, len: usize) {
    let lo = start.next_multiple_of(HUGE);
    let hi = (start + len) & !(HUGE - 1);
    if hi > lo {
        // SAFETY: [lo, hi) lies inside an allocation the caller owns and has not handed out;
        // MADV_HUGEPAGE changes no contents and no mapping the program relies on.
        unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_holds_len_copies_of_its_fill() {
        #[derive(Clone, Copy, PartialEq, Debug)]
        struct E(u64, u32);
        let t = table(3 << 20, E(7, 9));
        assert_eq!(t.len(), 3 << 20);
        assert!(t.iter().all(|e| *e == E(7, 9)));
        assert!(table(0, 0u8).is_empty());
    }

    /// Pages of `t` (its page-aligned interior) that are not resident, by `mincore(2)`.
    fn not_resident<T>(t: &[T]) -> usize {
        let page = 4096;
        let start = (t.as_ptr() as usize).next_multiple_of(page);
        let end = (t.as_ptr() as usize + std::mem::size_of_val(t)) & !(page - 1);
        let pages = (end - start) / page;
        let mut vec = vec![0u8; pages];
        // SAFETY: [start, end) is page-aligned and mapped (inside `t`'s allocation); `vec`
        // has one byte per page of it.
        let rc =
            unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 0).count()
    }

    #[test]
    fn every_page_is_resident_before_the_first_use() {
        // The property the packet path relies on: nothing faults later. A zeroed allocation
        // (calloc) fails it: its pages are mapped on first touch.
        let t = table(16 << 20, 0u8);
        assert_eq!(not_resident(&t), 0);
        let z = zeroed(40 << 20);
        assert_eq!(not_resident(&z), 0);
        assert!(z.iter().all(|&b| b == 0));
        // Above glibc's largest mmap threshold (32 MiB), so always a fresh mapping.
        let lazy = vec![0u8; 40 << 20];
        assert!(
            not_resident(&lazy) > 0,
            "the check can fail: calloc'd pages are lazy"
        );
        let t = table(1 << 20, [0u64; 2]);
        assert_eq!(not_resident(&t), 0);
    }
}
