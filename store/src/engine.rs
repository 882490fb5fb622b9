//! RocksDB: opening the database, its tuning, and access to the column families.
//!
//! Writes go to RocksDB with its own write-ahead log disabled: the Raft log is the
//! durable record, and every write batch carries the applied-entry marker of the log
//! entry that produced it (see [`crate::schema::META_APPLIED`]). Column families are
//! flushed atomically (`atomic_flush`), so after a crash the database holds a prefix
//! of the applied entries, consistent across column families, and the replication
//! layer replays the rest of the log. [`Engine::flush`] makes everything applied so
//! far durable; the replication layer calls it before it may discard log entries.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBRawIterator, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};

use crate::backlog::{self, WriteBacklog};
use crate::error::{Result, StoreError};
use crate::schema;

/// Tuning of the storage engine and the store's memory.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Budget of the apply path's cache of newest versions ([`crate::latest`]), bytes.
    pub latest_cache_bytes: usize,
    /// Shared block cache, bytes.
    pub block_cache_bytes: usize,
    /// Memtable size per column family, bytes.
    pub write_buffer_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { latest_cache_bytes: 32 << 20, block_cache_bytes: 64 << 20, write_buffer_bytes: 32 << 20 }
    }
}

/// The opened RocksDB database with strake's column families.
///
/// A store directory holds generations `gen-N/` of the database and a file `current`
/// naming the live one; installing a snapshot adopts a checkpoint as the next
/// generation. A retired generation is deleted when its last user drops it.
pub struct Engine {
    db: Option<DB>,
    path: PathBuf,
    write_options: WriteOptions,
    retired: std::sync::atomic::AtomicBool,
    /// The last size measured, and when.
    recent_size: parking_lot::Mutex<Option<(std::time::Instant, u64)>>,
}

/// How stale [`Engine::recent_size_bytes`] may be.
pub const SIZE_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

impl Drop for Engine {
    fn drop(&mut self) {
        drop(self.db.take());
        if self.retired.load(std::sync::atomic::Ordering::Acquire) {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a retired store generation");
            }
        }
    }
}

/// The engine currently serving, replaceable when a snapshot is installed.
#[derive(Clone)]
pub struct EngineSlot(std::sync::Arc<parking_lot::RwLock<std::sync::Arc<Engine>>>);

impl EngineSlot {
    /// A slot holding `engine`.
    pub fn new(engine: std::sync::Arc<Engine>) -> EngineSlot {
        EngineSlot(std::sync::Arc::new(parking_lot::RwLock::new(engine)))
    }

    /// The current engine.
    pub fn get(&self) -> std::sync::Arc<Engine> {
        self.0.read().clone()
    }

    /// Installs `engine`, returning the previous one.
    pub fn replace(&self, engine: std::sync::Arc<Engine>) -> std::sync::Arc<Engine> {
        std::mem::replace(&mut *self.0.write(), engine)
    }
}

const CURRENT_FILE: &str = "current";
/// Read-ahead of [`Engine::iter_once`].
const BULK_READAHEAD_BYTES: usize = 2 << 20;

fn generation_dir(root: &Path, n: u64) -> PathBuf {
    root.join(format!("gen-{n}"))
}

fn read_current(root: &Path) -> Result<Option<u64>> {
    let path = root.join(CURRENT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .strip_prefix("gen-")
            .and_then(|n| n.parse().ok())
            .map(Some)
            .ok_or_else(|| StoreError::Unusable(format!("{} does not name a generation: {text:?}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Unusable(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write_current(root: &Path, n: u64) -> Result<()> {
    let io = |e: std::io::Error| StoreError::Unusable(format!("cannot update {}/current: {e}", root.display()));
    let tmp = root.join("current.tmp");
    std::fs::write(&tmp, format!("gen-{n}\n")).map_err(io)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, root.join(CURRENT_FILE)).map_err(io)?;
    std::fs::File::open(root).and_then(|f| f.sync_all()).map_err(io)
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("path", &self.path).finish()
    }
}

impl Engine {
    /// Opens the live generation under the store directory `root`, creating the first
    /// one in an empty directory and removing generations that are not live.
    pub fn open_current(root: &Path, options: &EngineOptions) -> Result<Engine> {
        std::fs::create_dir_all(root)
            .map_err(|e| StoreError::Unusable(format!("cannot create {}: {e}", root.display())))?;
        let n = match read_current(root)? {
            Some(n) => n,
            None => {
                write_current(root, 0)?;
                0
            }
        };
        remove_other_generations(root, n);
        Engine::open(&generation_dir(root, n), options)
    }

    /// Makes the checkpoint directory `checkpoint` the next generation under `root`
    /// and opens it. The caller retires the previous engine.
    pub fn adopt(root: &Path, checkpoint: &Path, options: &EngineOptions) -> Result<Engine> {
        let n = read_current(root)?.unwrap_or(0) + 1;
        let dir = generation_dir(root, n);
        std::fs::rename(checkpoint, &dir).map_err(|e| {
            StoreError::Unusable(format!("cannot move {} to {}: {e}", checkpoint.display(), dir.display()))
        })?;
        let engine = Engine::open(&dir, options)?;
        write_current(root, n)?;
        Ok(engine)
    }

    /// Marks this generation for deletion once it is no longer used.
    pub fn retire(&self) {
        self.retired.store(true, std::sync::atomic::Ordering::Release);
    }

    fn db(&self) -> &DB {
        self.db.as_ref().expect("the database is open until the engine is dropped")
    }

    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path, options: &EngineOptions) -> Result<Engine> {
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_atomic_flush(true);
        db_opts.set_paranoid_checks(true);
        // Three background jobs on a 2-core machine: one flush and one compaction,
        // and a second compaction only while RocksDB sees compaction pressure (8
        // level-0 files in a column family). Atomic flushes give every column family
        // a level-0 file per flush, and with one compaction thread busy with `kv`
        // the small ones piled up to RocksDB's slowdown: a 20 GiB load held its bulk
        // writes 14× less long with the second thread (BENCHMARKS.md, session 15).
        // Four jobs with subcompactions made that load 40% slower. Level-0 triggers
        // stay at RocksDB's defaults: raising them to 40/64 ended write slowdowns
        // but made random point reads on 20 GiB 30% slower (more level-0 files to
        // look in); the replication layer holds bulk writes back instead (backlog).
        db_opts.set_max_background_jobs(3);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_bytes_per_sync(1 << 20);
        // Required by in-place head updates (below); the apply path writes from one
        // thread anyway.
        db_opts.set_allow_concurrent_memtable_write(false);
        let cfs = schema::ALL_CFS.iter().map(|name| {
            let mut cf_opts = Options::default();
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            // Index and filter blocks live in the block cache, partitioned into
            // 4 KiB pieces under a pinned top level. Whole, a 64 MiB SST's filter
            // or index is larger than one shard of the cache; it could never stay
            // cached, and with 10M keys every point read re-read and re-checksummed
            // megabytes of filters (83% of the server's CPU while loading 20 GiB).
            table.set_cache_index_and_filter_blocks(true);
            table.set_cache_index_and_filter_blocks_with_high_priority(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_partition_filters(true);
            table.set_metadata_block_size(4096);
            table.set_pin_top_level_index_and_filter(true);
            if [schema::CF_KV, schema::CF_LEASE, schema::CF_HEAD].contains(name) {
                table.set_bloom_filter(10.0, false);
                // Point reads (a key's head, and a version a head names) skip
                // memtables that do not hold the key.
                cf_opts.set_memtable_whole_key_filtering(true);
                cf_opts.set_memtable_prefix_bloom_ratio(0.05);
            }
            if *name == schema::CF_HEAD {
                // A key's head is overwritten in its memtable entry instead of adding
                // an entry per update: counting and listing step over one entry per
                // key, not over every update since the last flush (k8s-mix: +8%).
                // Readers detect a value torn by a concurrent rewrite (see schema).
                cf_opts.set_inplace_update_support(true);
            }
            cf_opts.set_block_based_table_factory(&table);
            cf_opts.set_write_buffer_size(options.write_buffer_bytes);
            cf_opts.set_max_write_buffer_number(backlog::MAX_WRITE_BUFFERS as i32);
            cf_opts.set_level_zero_slowdown_writes_trigger(backlog::LEVEL0_SLOWDOWN_FILES as i32);
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            cf_opts.set_level_compaction_dynamic_level_bytes(true);
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(|e| {
            StoreError::Unusable(format!("cannot open the store at {}: {}", path.display(), e.into_string()))
        })?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(Engine {
            db: Some(db),
            path: path.to_path_buf(),
            write_options,
            retired: Default::default(),
            recent_size: Default::default(),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The handle of a column family from [`schema::ALL_CFS`].
    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.db().cf_handle(name).expect("every column family is created at open")
    }

    /// Applies a batch atomically.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        Ok(self.db().write_opt(batch, &self.write_options)?)
    }

    /// Reads one value.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db().get_cf(self.cf(cf), key)?)
    }

    /// Reads one value and hands it to `f` without copying it out of RocksDB.
    pub fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        Ok(self.db().get_pinned_cf(self.cf(cf), key)?.map(|v| f(&v)))
    }

    /// A raw iterator over a column family, optionally bounded above (exclusive).
    pub fn iter(&self, cf: &str, upper_bound: Option<Vec<u8>>) -> DBRawIterator<'_> {
        let mut opts = ReadOptions::default();
        if let Some(upper) = upper_bound {
            opts.set_iterate_upper_bound(upper);
        }
        self.db().raw_iterator_cf_opt(self.cf(cf), opts)
    }

    /// A raw iterator for reading a whole column family once (building an index at
    /// open): its blocks bypass the block cache, which they would only flush, and
    /// files are read ahead in large pieces.
    pub fn iter_once(&self, cf: &str) -> DBRawIterator<'_> {
        let mut opts = ReadOptions::default();
        opts.fill_cache(false);
        opts.set_readahead_size(BULK_READAHEAD_BYTES);
        self.db().raw_iterator_cf_opt(self.cf(cf), opts)
    }

    /// Makes everything written so far durable (memtables to SST files).
    pub fn flush(&self) -> Result<()> {
        let cfs: Vec<&ColumnFamily> = schema::ALL_CFS.iter().map(|n| self.cf(n)).collect();
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(true);
        Ok(self.db().flush_cfs_opt(&cfs, &opts)?)
    }

    /// A consistent copy of the database in `dir` (hard links where possible).
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        let cp = rocksdb::checkpoint::Checkpoint::new(self.db())?;
        Ok(cp.create_checkpoint(dir)?)
    }

    /// Bytes the database occupies on disk (SST files plus memtables).
    pub fn size_bytes(&self) -> u64 {
        let size =
            self.sum_property("rocksdb.total-sst-files-size") + self.sum_property("rocksdb.cur-size-all-mem-tables");
        *self.recent_size.lock() = Some((std::time::Instant::now(), size));
        size
    }

    /// [`Engine::size_bytes`] as measured at most [`SIZE_REFRESH`] ago: the quota
    /// check runs on every write, and reading RocksDB's properties takes its mutex
    /// once per column family.
    pub fn recent_size_bytes(&self) -> u64 {
        if let Some((at, size)) = *self.recent_size.lock() {
            if at.elapsed() < SIZE_REFRESH {
                return size;
            }
        }
        self.size_bytes()
    }

    /// Estimated bytes of live data.
    pub fn live_bytes(&self) -> u64 {
        self.sum_property("rocksdb.estimate-live-data-size") + self.sum_property("rocksdb.cur-size-all-mem-tables")
    }

    fn sum_property(&self, name: &str) -> u64 {
        schema::ALL_CFS.iter().filter_map(|cf| self.int_property(cf, name)).sum()
    }

    /// How far flushes and level-0 compactions are behind the writes (see
    /// [`crate::backlog`]). Reads two properties per column family and two of the
    /// database, each under RocksDB's mutex: callers sample it, not per write.
    pub fn write_backlog(&self) -> WriteBacklog {
        let db = self.db();
        let mut backlog = WriteBacklog {
            writes_delayed: db.property_int_value("rocksdb.actual-delayed-write-rate").ok().flatten().unwrap_or(0) > 0,
            writes_stopped: db.property_int_value("rocksdb.is-write-stopped").ok().flatten().unwrap_or(0) > 0,
            ..Default::default()
        };
        for name in schema::ALL_CFS {
            let level0 = db
                .property_value_cf(self.cf(name), "rocksdb.num-files-at-level0")
                .ok()
                .flatten()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            backlog.level0_files = backlog.level0_files.max(level0);
            let immutable = self.int_property(name, "rocksdb.num-immutable-mem-table").unwrap_or(0);
            backlog.immutable_memtables = backlog.immutable_memtables.max(immutable);
        }
        backlog
    }

    /// One of RocksDB's integer properties (`rocksdb.*`) of a column family.
    pub fn int_property(&self, cf: &str, name: &str) -> Option<u64> {
        self.db().property_int_value_cf(self.cf(cf), name).ok().flatten()
    }

    /// Stops RocksDB's flushes and compactions and waits for running ones, before the
    /// process exits: C++ static destructors run at exit, and a background job still
    /// running then aborts the process ("pthread lock: Invalid argument").
    pub fn stop_background_work(&self) {
        self.db().cancel_all_background_work(true);
    }

    /// Compacts every column family fully: reclaims the space of deleted versions.
    pub fn compact_all(&self) {
        for name in schema::ALL_CFS {
            self.db().compact_range_cf::<&[u8], &[u8]>(self.cf(name), None, None);
        }
    }

    /// Reads every entry of every column family with checksum verification, so a
    /// damaged SST file is found now rather than on first use. Names the file.
    pub fn verify_all(&self) -> Result<()> {
        for name in schema::ALL_CFS {
            let mut opts = ReadOptions::default();
            opts.set_verify_checksums(true);
            opts.fill_cache(false);
            let mut it = self.db().raw_iterator_cf_opt(self.cf(name), opts);
            it.seek_to_first();
            while it.valid() {
                it.next();
            }
            it.status().map_err(|e| {
                StoreError::Unusable(format!(
                    "data corruption in {} (column family '{name}'): {}",
                    self.path.display(),
                    e.into_string()
                ))
            })?;
        }
        Ok(())
    }
}

fn remove_other_generations(root: &Path, live: u64) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("gen-")).and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if n != live {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a stale store generation");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_backlog_counts_level0_files() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &EngineOptions::default()).unwrap();
        assert_eq!(engine.write_backlog(), WriteBacklog::default());
        // Three flushes leave three level-0 files: RocksDB compacts level 0 at four.
        for i in 0..3u8 {
            let mut batch = WriteBatch::default();
            batch.put_cf(engine.cf(schema::CF_KV), [i], b"value");
            engine.write(batch).unwrap();
            engine.flush().unwrap();
        }
        let backlog = engine.write_backlog();
        assert_eq!(backlog.level0_files, 3);
        assert_eq!(backlog.immutable_memtables, 0);
        assert!(!backlog.is_near_throttling());
    }
}
