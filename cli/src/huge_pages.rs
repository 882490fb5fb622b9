//! Transparent huge pages off for a server process.
//!
//! mimalloc asks the kernel for transparent huge pages on its arenas
//! (`madvise(MADV_HUGEPAGE)`) and returns memory it has not used for a while with
//! `MADV_DONTNEED`. Under a write load the two fight: memory freed by one batch and
//! touched again by the next is faulted back in as a whole 2 MiB page, which the
//! kernel zeroes first (`clear_page_erms` under `do_huge_pmd_anonymous_page` was
//! 3% of a 1-member put profile and 7% of a 3-member one, on the apply thread). With
//! huge pages off a fault zeroes 4 KiB. Nothing else in strake asks for huge pages;
//! RocksDB's block cache and memtables come from the same allocator.

/// Disables transparent huge pages for this process and its future children
/// (`prctl(PR_SET_THP_DISABLE)`). A failure (an old kernel) is logged and ignored:
/// the server only runs slower.
pub fn disable_transparent_huge_pages() {
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(%error, "could not turn transparent huge pages off");
    }
}
