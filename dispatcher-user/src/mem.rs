//! Memory set-up for the big tables the dispatcher thread probes at random (the affinity
//! table, tens of MB): transparent huge pages, and every page faulted in at start.
//!
//! Why: each new INVITE looks up and inserts a random slot of the affinity table. With 4 KiB
//! pages that is a TLB miss (a page walk) on most lookups, and, in a table allocated zeroed
//! (calloc: pages mapped on first touch), a page fault plus a page clear on the first touch of
//! each page during the run. A profile of the dispatcher thread at 15,000 calls/s put
//! `Affinity::get` at 9 % of its samples and page-fault work at 2 % more. With 2 MiB pages
//! (where the kernel allows them: `/sys/kernel/mm/transparent_hugepage/enabled` set to
//! `always` or `madvise`) one TLB entry covers 32,768 slots, and touching the table once at
//! start moves every fault off the packet path.

/// Asks for huge pages over the 2 MiB-aligned part of `buf` and touches every page of it.
/// Best effort: where huge pages are unavailable the touch still faults the pages in.
pub fn prepare_table<T: Copy>(buf: &mut [T]) {
    const HUGE: usize = 2 << 20;
    let start = buf.as_mut_ptr() as usize;
    let len = std::mem::size_of_val(buf);
    let lo = start.next_multiple_of(HUGE);
    let hi = (start + len) & !(HUGE - 1);
    if hi > lo {
        // SAFETY: [lo, hi) lies inside `buf`'s allocation; MADV_HUGEPAGE changes no contents.
        unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
    }
    let per_page = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    for i in (0..buf.len()).step_by(per_page) {
        // A volatile self-copy: a write the compiler keeps, leaving the contents as they are.
        let p: *mut T = &mut buf[i];
        // SAFETY: `p` points at a live, initialised element of `buf`.
        unsafe { std::ptr::write_volatile(p, std::ptr::read_volatile(p)) };
    }
}
