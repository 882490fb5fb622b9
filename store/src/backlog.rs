//! How far RocksDB's background work (flushes, level-0 compactions) is behind the
//! writes, and whether that is close to the point where RocksDB slows or stops them.
//!
//! RocksDB throttles writes itself once level 0 holds
//! [`LEVEL0_SLOWDOWN_FILES`] files (to 16 MiB/s) and stops them while
//! [`MAX_WRITE_BUFFERS`] memtables are full. Either happens on the apply thread,
//! so it holds up every write and every linearizable read behind it, however
//! small. [`WriteBacklog::is_near_throttling`] says when the backlog is within a
//! margin of those limits, so the replication layer can hold back the bulk writes
//! that cause it before RocksDB holds back everything.

/// RocksDB's default: writes slow down at this many level-0 files in a column family.
pub const LEVEL0_SLOWDOWN_FILES: u64 = 20;
/// RocksDB's `max_write_buffer_number`: writes stop once this many full memtables
/// of a column family wait for their flush. One more than RocksDB's default, so a
/// forced flush (a snapshot) while another flush runs does not stop writes.
pub const MAX_WRITE_BUFFERS: u64 = 3;
/// Level-0 files at which the backlog counts as near throttling.
pub const LEVEL0_NEAR_FILES: u64 = 12;
/// Memtables waiting for their flush at which the backlog counts as near throttling
/// (one short of a stop).
pub const IMMUTABLE_NEAR: u64 = MAX_WRITE_BUFFERS - 1;
// The margins sit below RocksDB's limits.
const _: () = assert!(LEVEL0_NEAR_FILES < LEVEL0_SLOWDOWN_FILES && IMMUTABLE_NEAR < MAX_WRITE_BUFFERS);

/// One reading of RocksDB's write backlog, the worst column family's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteBacklog {
    /// Most level-0 SST files in one column family.
    pub level0_files: u64,
    /// Most full memtables waiting for their flush in one column family.
    pub immutable_memtables: u64,
    /// RocksDB is slowing writes down now.
    pub writes_delayed: bool,
    /// RocksDB is stopping writes now.
    pub writes_stopped: bool,
}

impl WriteBacklog {
    /// Whether RocksDB throttles writes now or will soon if writes keep coming
    /// faster than its background work.
    pub fn is_near_throttling(&self) -> bool {
        self.writes_delayed
            || self.writes_stopped
            || self.level0_files >= LEVEL0_NEAR_FILES
            || self.immutable_memtables >= IMMUTABLE_NEAR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_below_rocksdb_limits() {
        let calm = WriteBacklog { level0_files: 4, immutable_memtables: 1, ..Default::default() };
        assert!(!calm.is_near_throttling());
        assert!(WriteBacklog { level0_files: LEVEL0_NEAR_FILES, ..calm }.is_near_throttling());
        assert!(WriteBacklog { immutable_memtables: IMMUTABLE_NEAR, ..calm }.is_near_throttling());
        assert!(WriteBacklog { writes_delayed: true, ..calm }.is_near_throttling());
        assert!(WriteBacklog { writes_stopped: true, ..calm }.is_near_throttling());
    }
}
