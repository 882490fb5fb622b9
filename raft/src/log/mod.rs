//! The durable Raft log: checksummed segment files, group-committed appends.
//!
//! * [`format`]: the on-disk format (the spec).
//! * [`writer`]: the thread that performs every file write, in order.
//! * [`segment_file`]: one segment as the writer writes it, with direct I/O where
//!   the file system allows it.
//! * [`prealloc`]: zero-filled segment files, the next one prepared in the background.
//! * [`reclaim`]: deleting purged segments on a background thread.
//! * [`metrics`]: fsync times and bytes written, under etcd's metric names.
//! * this module: [`LogStore`], openraft's `RaftLogStorage`, and its reader.
//!
//! Durability contract with openraft: `append` returns at once and calls the
//! flush callback only after the entries are fsynced; `save_vote`, `truncate` and
//! `purge` return only once durable. Entries are readable as soon as `append`
//! returns (from memory), so the leader can replicate while its own fsync runs.

pub mod format;
pub mod metrics;
mod prealloc;
mod reclaim;
mod segment_file;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use parking_lot::Mutex;

use crate::codec;
use crate::error::LogError;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
pub use metrics::LogMetrics;
pub use writer::FlushCallback;
use writer::{Command, Writer};

/// File holding the durable vote.
pub const VOTE_FILE: &str = "vote";
/// File holding the last purged log ID.
pub const PURGED_FILE: &str = "purged";
/// Most record bytes replication puts in one AppendEntries (at least one entry is
/// always sent). openraft gives an AppendEntries one heartbeat interval to complete,
/// so a batch must cross the wire and be fsynced by the follower well within that: a
/// follower behind by many large values, sent its whole backlog at once, would time
/// out on every attempt and never catch up. etcd caps raft messages at 1 MiB for the
/// same reason.
pub const REPLICATION_BATCH_BYTES: usize = 2 << 20;
/// Encoded bytes of the entries kept decoded in memory (for apply and for followers
/// a little behind); older entries are read from disk. The cached copies are decoded
/// from the log's own encoding, so they own exactly their bytes: caching the entries
/// as proposed pinned the gRPC receive buffers their fields were sliced from, and
/// 64 MiB of accounted entries held over 400 MiB.
pub const ENTRY_CACHE_BYTES: usize = 16 << 20;

struct Slot {
    log_id: LogId,
    segment: u64,
    offset: u64,
    len: u32,
    cached: Option<Entry>,
}

struct Index {
    slots: VecDeque<Slot>,
    last_purged: Option<LogId>,
    /// Segment receiving appends, and the offset of the next record in it.
    tail_segment: u64,
    tail_offset: u64,
    /// First index of every segment on disk.
    segments: Vec<u64>,
    read_handles: BTreeMap<u64, Arc<File>>,
    cached_bytes: usize,
    durable: u64,
    vote: Option<Vote>,
}

/// State shared by the log store, its readers and the writer thread.
pub(crate) struct Shared {
    dir: PathBuf,
    index: Mutex<Index>,
    /// `Index::durable`, for tasks that wait for it to move.
    durable_tx: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn mark_durable(&self, upto: u64) {
        let mut ix = self.index.lock();
        ix.durable = ix.durable.max(upto);
        self.durable_tx.send_replace(ix.durable);
        evict(&mut ix);
    }

    /// After a truncation: nothing beyond `upto` is durable. The writer calls this
    /// once every append queued before the truncation has been marked, so an fsync
    /// of entries that were since cut off cannot count for the entries that replace
    /// them.
    pub(crate) fn cap_durable(&self, upto: u64) {
        let mut ix = self.index.lock();
        ix.durable = ix.durable.min(upto);
        self.durable_tx.send_replace(ix.durable);
    }

    /// Reads the entries in `[start, end)` that are still in the log, stopping early once
    /// they add up to more than `byte_budget` record bytes (at least one is returned).
    fn read_entries(&self, start: u64, end: u64, byte_budget: usize) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        // Entries not cached in memory: their position in `out` and where they are on disk.
        let mut misses: Vec<(usize, LogId, u64, u64, u32)> = Vec::new();
        {
            let ix = self.index.lock();
            let Some(first) = ix.slots.front().map(|s| s.log_id.index) else { return Ok(out) };
            let from = start.max(first);
            let to = end.min(first + ix.slots.len() as u64);
            let mut bytes = 0usize;
            for i in from..to {
                let slot = &ix.slots[(i - first) as usize];
                bytes += slot.len as usize;
                if !out.is_empty() && bytes > byte_budget {
                    break;
                }
                match &slot.cached {
                    Some(e) => out.push(e.clone()),
                    None => {
                        misses.push((out.len(), slot.log_id, slot.segment, slot.offset, slot.len));
                        out.push(Entry { log_id: slot.log_id, payload: openraft::EntryPayload::Blank });
                    }
                }
            }
        }
        for (position, log_id, segment, offset, len) in misses {
            out[position] = self.read_from_disk(segment, offset, len).map_err(|err| read_error(log_id, err))?;
        }
        Ok(out)
    }

    fn read_from_disk(&self, segment: u64, offset: u64, len: u32) -> io::Result<Entry> {
        let file = {
            let mut ix = self.index.lock();
            match ix.read_handles.get(&segment) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(File::open(format::segment_path(&self.dir, segment))?);
                    ix.read_handles.insert(segment, f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0u8; format::RECORD_HEADER_LEN + len as usize];
        file.read_exact_at(&mut buf, offset)?;
        let crc = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
        let payload = &buf[format::RECORD_HEADER_LEN..];
        if crc32fast::hash(payload) != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "checksum mismatch in {} at offset {offset}",
                    format::segment_path(&self.dir, segment).display()
                ),
            ));
        }
        codec::decode_entry(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.0))
    }
}

/// Drops cached copies of durable entries, oldest first, beyond the cache budget.
fn evict(ix: &mut Index) {
    let durable = ix.durable;
    let mut i = 0;
    while ix.cached_bytes > ENTRY_CACHE_BYTES && i < ix.slots.len() {
        let slot = &mut ix.slots[i];
        if slot.log_id.index > durable {
            break;
        }
        if slot.cached.take().is_some() {
            ix.cached_bytes -= slot.len as usize;
        }
        i += 1;
    }
}

/// Bytes of a record whose payload is `len` bytes.
fn record_bytes(len: u32) -> u64 {
    (format::RECORD_HEADER_LEN + len as usize) as u64
}

fn read_error(log_id: LogId, e: io::Error) -> StorageError {
    StorageIOError::new(ErrorSubject::Log(log_id), ErrorVerb::Read, openraft::AnyError::new(&e)).into()
}

fn write_error(subject: ErrorSubject<u64>, e: io::Error) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Write, openraft::AnyError::new(&e)).into()
}

/// openraft's log storage for strake.
pub struct LogStore {
    shared: Arc<Shared>,
    tx: std::sync::mpsc::Sender<Command>,
}

/// A reader of the log usable concurrently with the store.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Opens the log in `dir`, recovering from a torn tail. Refuses to open a log with
    /// any other damage, naming the file and offset.
    pub fn open(dir: &Path) -> Result<LogStore, LogError> {
        LogStore::open_measured(dir, LogMetrics::default())
    }

    /// [`LogStore::open`], with the writer thread recording into `metrics`.
    pub fn open_measured(dir: &Path, metrics: LogMetrics) -> Result<LogStore, LogError> {
        std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
        let vote = read_meta::<Vote>(dir, VOTE_FILE)?;
        let last_purged = read_meta::<LogId>(dir, PURGED_FILE)?;
        let index = load_segments(dir, vote, last_purged)?;
        let (durable_tx, _) = tokio::sync::watch::channel(index.durable);
        let shared = Arc::new(Shared { dir: dir.to_path_buf(), index: Mutex::new(index), durable_tx });
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = Writer::new(dir.to_path_buf(), shared.clone(), metrics);
        std::thread::Builder::new()
            .name("strake-raft-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::io(dir, e))?;
        Ok(LogStore { shared, tx })
    }

    fn send(&self, cmd: Command) -> Result<(), io::Error> {
        self.tx.send(cmd).map_err(|_| io::Error::other("the raft log writer has stopped"))
    }

    async fn call(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<io::Result<()>>) -> Command,
    ) -> Result<(), io::Error> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(make(done))?;
        wait.await.map_err(|_| io::Error::other("the raft log writer has stopped"))?
    }

    /// Appends `entries` (contiguous, following the last entry). They are readable at
    /// once; `on_durable` runs on the writer thread once they are fsynced, possibly
    /// together with other appends (group commit).
    pub fn append_with(&self, entries: impl IntoIterator<Item = Entry>, on_durable: FlushCallback) -> io::Result<()> {
        let mut bytes = Vec::new();
        let mut payload = Vec::new();
        let (segment, create, offset, last_index) = {
            let mut ix = self.shared.index.lock();
            let mut create = false;
            let mut iter = entries.into_iter().peekable();
            let Some(first) = iter.peek() else {
                drop(ix);
                on_durable(Ok(()));
                return Ok(());
            };
            if ix.tail_offset >= format::SEGMENT_TARGET_BYTES {
                let seg = first.log_id.index;
                ix.tail_segment = seg;
                ix.tail_offset = 0;
                ix.segments.push(seg);
                create = true;
            } else if ix.tail_offset == 0 {
                // An empty tail segment is named after the first entry it receives.
                let seg = first.log_id.index;
                let old = ix.tail_segment;
                ix.segments.retain(|s| *s != old);
                ix.segments.push(seg);
                ix.tail_segment = seg;
                create = true;
            }
            let segment = ix.tail_segment;
            let offset = ix.tail_offset;
            let mut last_index = 0;
            for entry in iter {
                payload.clear();
                codec::encode_entry(&entry, &mut payload);
                let at = offset + bytes.len() as u64;
                format::frame(&payload, &mut bytes);
                last_index = entry.log_id.index;
                let cached = codec::decode_entry(&payload).ok();
                debug_assert!(cached.is_some(), "an entry just encoded decodes");
                if cached.is_some() {
                    ix.cached_bytes += payload.len();
                }
                ix.slots.push_back(Slot {
                    log_id: entry.log_id,
                    segment,
                    offset: at,
                    len: payload.len() as u32,
                    cached,
                });
            }
            ix.tail_offset = offset + bytes.len() as u64;
            (segment, create, offset, last_index)
        };
        self.send(Command::Append { segment, create, offset, bytes, last_index, callback: on_durable })
    }

    /// The index of the last entry known to be durable.
    pub fn durable_index(&self) -> u64 {
        self.shared.index.lock().durable
    }

    /// A handle that follows the log's appends and fsyncs (usable after the store
    /// has moved into openraft).
    pub fn progress(&self) -> LogProgress {
        LogProgress { shared: self.shared.clone(), durable: self.shared.durable_tx.subscribe() }
    }
}

/// Follows how far the log is appended and how far it is durable. Cheap to clone.
#[derive(Clone)]
pub struct LogProgress {
    shared: Arc<Shared>,
    durable: tokio::sync::watch::Receiver<u64>,
}

impl LogProgress {
    /// The index of the last entry appended (durable or not).
    pub fn last_appended(&self) -> u64 {
        let ix = self.shared.index.lock();
        ix.slots.back().map_or_else(|| ix.last_purged.map_or(0, |l| l.index), |s| s.log_id.index)
    }

    /// Record bytes of the entries after `index` that the log holds.
    pub fn bytes_after(&self, index: u64) -> u64 {
        let ix = self.shared.index.lock();
        ix.slots.iter().rev().take_while(|s| s.log_id.index > index).map(|s| record_bytes(s.len)).sum()
    }

    /// The highest index up to which the log may be purged so that the entries up to
    /// `upto` it keeps hold at most `keep` record bytes (`None`: they all fit).
    pub fn purge_point(&self, upto: u64, keep: u64) -> Option<u64> {
        let ix = self.shared.index.lock();
        let mut kept = 0u64;
        for slot in ix.slots.iter().rev().skip_while(|s| s.log_id.index > upto) {
            kept += record_bytes(slot.len);
            if kept > keep {
                return Some(slot.log_id.index);
            }
        }
        None
    }

    /// Waits until an entry after `index` is durable.
    pub async fn wait_durable_beyond(&mut self, index: u64) {
        // An error means the log is gone: nothing will become durable, stop waiting.
        let _ = self.durable.wait_for(|d| *d > index).await;
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, LogError> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(&path, e)),
    };
    let body = format::unframe_meta(&bytes).ok_or_else(|| LogError::Corrupt {
        file: path.clone(),
        offset: 0,
        detail: "checksum mismatch".into(),
    })?;
    serde_json::from_slice(body).map(Some).map_err(|e| LogError::Corrupt {
        file: path,
        offset: 4,
        detail: e.to_string(),
    })
}

/// Overwrites the torn record at `at` (and anything up to the last non-zero byte)
/// with zeros, keeping the file's preallocated size, and syncs it.
fn zero_torn_tail(path: &Path, bytes: &[u8], at: u64) -> io::Result<()> {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1) as u64;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    if end > at {
        f.write_all_at(&vec![0u8; (end - at) as usize], at)?;
    }
    f.sync_all()
}

fn load_segments(dir: &Path, vote: Option<Vote>, last_purged: Option<LogId>) -> Result<Index, LogError> {
    let mut segments: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| LogError::io(dir, e))?
        .filter_map(|d| d.ok())
        .filter_map(|d| d.file_name().to_str().and_then(format::parse_segment_name))
        .collect();
    segments.sort_unstable();
    // The first index the log may hold (entries below it were purged).
    let first_kept = last_purged.map_or(0, |l| l.index + 1);
    let mut slots: VecDeque<Slot> = VecDeque::new();
    let mut tail = (first_kept, 0u64);
    let mut kept = Vec::new();
    for (n, &seg) in segments.iter().enumerate() {
        let path = format::segment_path(dir, seg);
        let last = n + 1 == segments.len();
        // A segment wholly below the purge point is left over from a purge whose
        // reclaimer had not deleted it yet (or may be deleting it right now).
        if !last && segments[n + 1] <= first_kept {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(LogError::io(&path, e)),
                _ => continue,
            }
        }
        let bytes = std::fs::read(&path).map_err(|e| LogError::io(&path, e))?;
        let (records, end) = format::scan(&bytes, last).map_err(|c| LogError::Corrupt {
            file: path.clone(),
            offset: c.offset,
            detail: c.detail,
        })?;
        for (expected, rec) in (seg..).zip(&records) {
            let start = rec.offset as usize + format::RECORD_HEADER_LEN;
            let payload = &bytes[start..start + rec.len as usize];
            // Only the header: the CRC vouches for the rest, and decoding every entry
            // made opening a log of 1M bulk-loaded keys (293 MiB) take 2.4 s. Entries
            // are decoded when read (apply, replication), from the page cache.
            let log_id = codec::entry_log_id(payload).map_err(|e| LogError::Corrupt {
                file: path.clone(),
                offset: rec.offset,
                detail: e.0,
            })?;
            if log_id.index != expected {
                return Err(LogError::Corrupt {
                    file: path.clone(),
                    offset: rec.offset,
                    detail: format!("entry index {} where {expected} was expected", log_id.index),
                });
            }
            if log_id.index < first_kept {
                continue;
            }
            if let Some(prev) = slots.back() {
                if log_id.index != prev.log_id.index + 1 {
                    return Err(LogError::Corrupt {
                        file: path.clone(),
                        offset: rec.offset,
                        detail: format!("entries {}..{} are missing", prev.log_id.index + 1, log_id.index),
                    });
                }
            }
            if slots.is_empty() && log_id.index != first_kept {
                return Err(LogError::Corrupt {
                    file: path.clone(),
                    offset: rec.offset,
                    detail: format!("entries {}..{} are missing", first_kept, log_id.index),
                });
            }
            slots.push_back(Slot { log_id, segment: seg, offset: rec.offset, len: rec.len, cached: None });
        }
        let len = match end {
            format::ScanEnd::Clean => bytes.len() as u64,
            format::ScanEnd::Zeros(at) => at,
            format::ScanEnd::TornTail(at) => {
                tracing::warn!(file = %path.display(), offset = at, "zeroing a torn record at the end of the raft log");
                zero_torn_tail(&path, &bytes, at).map_err(|e| LogError::io(&path, e))?;
                at
            }
        };
        if records.is_empty() && !last {
            // Preallocated but never written (a crash right after creating it).
            std::fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?;
            continue;
        }
        if !slots.is_empty() || last {
            kept.push(seg);
        }
        tail = (seg, len);
    }
    if kept.is_empty() {
        tail = (first_kept, 0);
    }
    let durable = slots.back().map_or(first_kept.saturating_sub(1), |s| s.log_id.index);
    let mut index = Index {
        slots,
        last_purged,
        tail_segment: tail.0,
        tail_offset: tail.1,
        segments: if kept.is_empty() { vec![tail.0] } else { kept },
        read_handles: BTreeMap::new(),
        cached_bytes: 0,
        durable,
        vote,
    };
    evict(&mut index);
    Ok(index)
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e + 1,
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        self.shared.read_entries(start, end, usize::MAX)
    }

    /// What replication sends in one AppendEntries: at most [`REPLICATION_BATCH_BYTES`].
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        self.shared.read_entries(start, end, REPLICATION_BATCH_BYTES)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        self.shared.read_entries(start, end, usize::MAX)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let ix = self.shared.index.lock();
        let last_purged_log_id = ix.last_purged;
        let last_log_id = ix.slots.back().map(|s| s.log_id).or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader { shared: self.shared.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let body = serde_json::to_vec(vote).expect("votes serialise");
        self.call(|done| Command::SaveVote { body, done }).await.map_err(|e| write_error(ErrorSubject::Vote, e))?;
        self.shared.index.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.shared.index.lock().vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_with(entries, Box::new(move |r| callback.log_io_completed(r)))
            .map_err(|e| write_error(ErrorSubject::Logs, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let (segment, offset, remove) = {
            let mut ix = self.shared.index.lock();
            let Some(first) = ix.slots.front().map(|s| s.log_id.index) else { return Ok(()) };
            if log_id.index < first {
                return Ok(());
            }
            let pos = (log_id.index - first) as usize;
            if pos >= ix.slots.len() {
                return Ok(());
            }
            let (segment, offset) = (ix.slots[pos].segment, ix.slots[pos].offset);
            for slot in ix.slots.drain(pos..).collect::<Vec<_>>() {
                if slot.cached.is_some() {
                    ix.cached_bytes -= slot.len as usize;
                }
            }
            let remove: Vec<u64> = ix.segments.iter().copied().filter(|s| *s > segment).collect();
            ix.segments.retain(|s| *s <= segment);
            for s in &remove {
                ix.read_handles.remove(s);
            }
            ix.tail_segment = segment;
            ix.tail_offset = offset;
            ix.durable = ix.durable.min(log_id.index.saturating_sub(1));
            self.shared.durable_tx.send_replace(ix.durable);
            (segment, offset, remove)
        };
        let keep_upto = log_id.index.saturating_sub(1);
        self.call(|done| Command::Truncate { segment, offset, remove, keep_upto, done })
            .await
            .map_err(|e| write_error(ErrorSubject::Log(log_id), e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let remove = {
            let mut ix = self.shared.index.lock();
            while ix.slots.front().is_some_and(|s| s.log_id.index <= log_id.index) {
                let slot = ix.slots.pop_front().expect("checked");
                if slot.cached.is_some() {
                    ix.cached_bytes -= slot.len as usize;
                }
            }
            ix.last_purged = Some(log_id);
            // A segment can go once the next one starts at or below the purge point + 1.
            let segs = ix.segments.clone();
            let remove: Vec<u64> = segs.windows(2).filter(|w| w[1] <= log_id.index + 1).map(|w| w[0]).collect();
            ix.segments.retain(|s| !remove.contains(s));
            for s in &remove {
                ix.read_handles.remove(s);
            }
            if ix.slots.is_empty() && ix.tail_offset == 0 {
                // Nothing left: the next append starts a segment named after it.
                ix.tail_segment = log_id.index + 1;
                ix.segments = vec![ix.tail_segment];
            }
            remove
        };
        let body = serde_json::to_vec(&log_id).expect("log ids serialise");
        self.call(|done| Command::Purge { body, remove, done })
            .await
            .map_err(|e| write_error(ErrorSubject::Log(log_id), e))
    }
}
