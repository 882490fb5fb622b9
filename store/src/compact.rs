//! Compaction: discarding history below a revision.
//!
//! Compacting at `C` is logical at once (reads and watches below `C` fail with
//! `ErrCompacted`) and physical in the background: for every key written in
//! `[previous compaction, C]`, every version older than its newest version `<= C`
//! is deleted, and that newest version too when it is a tombstone below `C` (a
//! tombstone at exactly `C` stays, as in etcd since #18274, so a watcher starting at
//! `C` still receives the deletion; the next compaction removes it). The `rev` index
//! entries of deleted versions go in the same batch. A key's versions are always
//! removed in one batch, so readers never see an older version resurface. Progress
//! is persisted (`META_COMPACT_FINISHED`); after a crash the work resumes, and every
//! step is idempotent.

use std::collections::BTreeSet;
use std::time::Duration;

use parking_lot::Mutex;
use rocksdb::WriteBatch;
use std::sync::Arc;

use crate::engine::{Engine, EngineSlot};
use crate::error::Result;
use crate::keycodec;
use crate::revision::Revision;
use crate::schema::{self, CF_HEAD, CF_KV, CF_META, CF_REV};

/// Distinct keys handled per batch of physical compaction.
pub const KEYS_PER_BATCH: usize = 1000;
/// Pause between batches so foreground writes keep flowing.
pub const PAUSE_BETWEEN_BATCHES: Duration = Duration::from_millis(2);

/// Physically removes the history below `target`, given that everything below
/// `finished` is already gone. Persists `target` as finished at the end.
/// `apply_lock` is the store's: held while heads of removed tombstones are checked
/// and deleted, so a version applied meanwhile cannot lose its head.
pub fn compact_physically(engine: &Engine, finished: i64, target: i64, apply_lock: &Mutex<()>) -> Result<()> {
    // From `finished` itself: a tombstone kept at the previous target goes now.
    let mut cursor = Revision { main: finished.max(0), sub: 0 };
    loop {
        let (keys, next) = keys_written_between(engine, cursor, target)?;
        let mut batch = WriteBatch::default();
        let mut removed_tombstones = Vec::new();
        // One iterator per batch: the keys come sorted, so its seeks only move forward.
        let mut versions = engine.iter(CF_KV, None);
        for key in &keys {
            if let Some(t) = remove_superseded(engine, &mut versions, key, target, &mut batch)? {
                removed_tombstones.push((keycodec::encode(key), t));
            }
        }
        // Only heads need the lock; most batches remove no tombstone.
        let guard = (!removed_tombstones.is_empty()).then(|| apply_lock.lock());
        for (encoded, tombstone) in &removed_tombstones {
            if let Some(head) = engine.get(CF_HEAD, encoded)? {
                if schema::parse_head_value(encoded, &head)?.settled(encoded)?.0 == *tombstone {
                    batch.delete_cf(engine.cf(CF_HEAD), encoded);
                }
            }
        }
        match next {
            Some(next) => {
                engine.write(batch)?;
                drop(guard);
                cursor = next;
                std::thread::sleep(PAUSE_BETWEEN_BATCHES);
            }
            None => {
                batch.put_cf(engine.cf(CF_META), schema::META_COMPACT_FINISHED, schema::encode_u64(target as u64));
                engine.write(batch)?;
                return Ok(());
            }
        }
    }
}

/// Up to [`KEYS_PER_BATCH`] distinct keys with a version in `[from, target]`, and
/// where to continue (`None` when the scan reached `target`).
fn keys_written_between(engine: &Engine, from: Revision, target: i64) -> Result<(BTreeSet<Vec<u8>>, Option<Revision>)> {
    let upper = schema::rev_key(Revision { main: target + 1, sub: 0 }).to_vec();
    let mut it = engine.iter(CF_REV, Some(upper));
    it.seek(schema::rev_key(from));
    let mut keys = BTreeSet::new();
    while it.valid() {
        let rev = schema::parse_rev_key(it.key().expect("valid iterator"))?;
        if keys.len() >= KEYS_PER_BATCH {
            return Ok((keys, Some(rev)));
        }
        keys.insert(it.value().expect("valid iterator").to_vec());
        it.next();
    }
    it.status()?;
    Ok((keys, None))
}

/// Adds to `batch` the deletion of every version of `key` that compaction at
/// `target` discards (a tombstone at `target` itself is kept, see the module doc).
/// Returns the revision of the key's newest version `<= target` when it is a removed
/// tombstone (its head goes too unless a newer version exists).
fn remove_superseded(
    engine: &Engine,
    it: &mut rocksdb::DBRawIterator<'_>,
    key: &[u8],
    target: i64,
    batch: &mut WriteBatch,
) -> Result<Option<Revision>> {
    let prefix = keycodec::encode(key);
    it.seek(schema::kv_seek_at(key, target));
    let mut newest = true;
    let mut removed_tombstone = None;
    while it.valid() {
        let raw = it.key().expect("valid iterator");
        if !raw.starts_with(&prefix) {
            break;
        }
        let (_, rev) = schema::split_kv_key(raw)?;
        let tombstone = schema::is_tombstone(it.value().expect("valid iterator"));
        let keep = newest && (rev.main == target || !tombstone);
        if !keep {
            batch.delete_cf(engine.cf(CF_KV), raw);
            batch.delete_cf(engine.cf(CF_REV), schema::rev_key(rev));
            if newest {
                removed_tombstone = Some(rev);
            }
        }
        newest = false;
        it.next();
    }
    it.status()?;
    Ok(removed_tombstone)
}

/// Whether compaction at `compacted` discards the version at `rev` of a key, given
/// whether it is the key's newest version `<= compacted` and whether it is a tombstone,
/// as HashKV counts it: a tombstone at `compacted` itself is not counted, whether or
/// not physical compaction keeps it (etcd's kvHasher does the same).
pub fn is_discarded(rev: i64, compacted: i64, newest_at_or_below: bool, tombstone: bool) -> bool {
    rev <= compacted && (!newest_at_or_below || tombstone)
}

enum Job {
    Compact(i64),
    Reset(i64),
}

/// A background thread running physical compactions one after another, always on
/// the engine currently in the slot.
pub struct Compactor {
    /// `None` only while dropping.
    tx: Option<std::sync::mpsc::Sender<Job>>,
    finished: tokio::sync::watch::Receiver<i64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Compactor {
    /// Stops the thread (after its current job) and waits for it: it holds the
    /// engine, so without the join the database would stay open (and locked) for a
    /// while after the store is dropped, and reopening it would fail.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Compactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor").field("finished", &*self.finished.borrow()).finish()
    }
}

impl Compactor {
    /// Starts the thread; `finished` is the revision already compacted physically.
    pub fn start(engine: EngineSlot, finished: i64, apply_lock: Arc<Mutex<()>>) -> Compactor {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let (done_tx, done_rx) = tokio::sync::watch::channel(finished);
        let thread = std::thread::Builder::new()
            .name("strake-compactor".into())
            .spawn(move || {
                let mut finished = finished;
                while let Ok(job) = rx.recv() {
                    let mut target = match job {
                        Job::Compact(t) => t,
                        Job::Reset(f) => {
                            finished = f;
                            let _ = done_tx.send(f);
                            continue;
                        }
                    };
                    loop {
                        match rx.try_recv() {
                            Ok(Job::Compact(newer)) => target = target.max(newer),
                            Ok(Job::Reset(f)) => {
                                finished = f;
                                let _ = done_tx.send(f);
                            }
                            Err(_) => break,
                        }
                    }
                    if target <= finished {
                        continue;
                    }
                    match compact_physically(&engine.get(), finished, target, &apply_lock) {
                        Ok(()) => {
                            finished = target;
                            let _ = done_tx.send(finished);
                        }
                        Err(e) => tracing::error!(error = %e, target, "physical compaction failed"),
                    }
                }
            })
            .expect("spawn the compactor thread");
        Compactor { tx: Some(tx), finished: done_rx, thread: Some(thread) }
    }

    fn send(&self, job: Job) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(job);
        }
    }

    /// Forgets the progress of the previous store content (after a restore).
    pub fn reset(&self, finished: i64) {
        self.send(Job::Reset(finished));
    }

    /// Asks for physical compaction up to `revision`.
    pub fn schedule(&self, revision: i64) {
        self.send(Job::Compact(revision));
    }

    /// Waits until compaction up to `revision` is physically done.
    pub async fn wait_for(&self, revision: i64) {
        let mut rx = self.finished.clone();
        let _ = rx.wait_for(|done| *done >= revision).await;
    }

    /// The revision up to which compaction is physically done.
    pub fn finished(&self) -> i64 {
        *self.finished.borrow()
    }
}
