//! Reading the MVCC keyspace as it was at one revision.
//!
//! A version of a key is visible at revision `R` when it is the newest version with
//! `main <= R`; a visible tombstone means the key does not exist at `R`. A scan is one
//! RocksDB iterator; a single-key read is a point read of the key's `head` and then of
//! the version it names. Either way new versions written concurrently have `main > R`
//! and are skipped (a head newer than `R` sends the read to an iterator), and the only
//! deletions (compaction) remove versions invisible at every revision the caller may
//! read (the caller checks the compaction revision, see `Store`) and never a key's
//! newest version unless it is a tombstone, whose head goes in the same batch.

use bytes::Bytes;
use parking_lot::Mutex;
use strake_proto::mvccpb::KeyValue;

use crate::engine::Engine;
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::keycodec;
use crate::latest::LatestCache;
use crate::revision::Revision;
use crate::schema::{self, HeadRead, KvRecord, CF_HEAD, CF_KV};

/// A stored version together with its key and revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The user key.
    pub key: Bytes,
    /// Where the version was written.
    pub rev: Revision,
    /// What was written.
    pub record: KvRecord,
}

impl Version {
    /// The etcd view of a live version.
    pub fn to_key_value(&self) -> KeyValue {
        KeyValue {
            key: self.key.clone(),
            create_revision: self.record.create_revision,
            mod_revision: self.rev.main,
            version: self.record.version,
            value: self.record.value.clone(),
            lease: self.record.lease,
        }
    }
}

/// How much of each visible version a scan needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Key, revision and the whole record.
    Full,
    /// Only whether a live version exists (for counting): nothing is decoded.
    Presence,
}

/// Read access to the `kv` column family at a fixed revision.
pub struct View<'a> {
    engine: &'a Engine,
    rev: i64,
    latest: Option<&'a Mutex<LatestCache>>,
}

impl<'a> View<'a> {
    /// A view at revision `rev` (the caller validated it against the retained history).
    pub fn new(engine: &'a Engine, rev: i64) -> View<'a> {
        View { engine, rev, latest: None }
    }

    /// Also answers single-key reads from the apply path's cache of newest versions
    /// when it can: the cache is never locked for long here (a busy cache is skipped),
    /// and its entry is used only when visible at the view's revision. That is exact:
    /// the cache absorbs every write before its revision is published, so its entry
    /// is the key's newest version at some revision at or after the view's; if that
    /// version is not newer than the view, nothing newer exists up to the view's
    /// revision. A deleted key (`None` in the cache) says nothing about when it was
    /// deleted, so it falls back to RocksDB.
    pub fn with_latest(mut self, latest: &'a Mutex<LatestCache>) -> View<'a> {
        self.latest = Some(latest);
        self
    }

    /// The key's newest version from the cache, if the cache is free, knows the key
    /// alive, and that version is visible at the view's revision.
    fn cached_newest(&self, key: &[u8]) -> Option<Version> {
        let cache = self.latest?.try_lock()?;
        match cache.get(key)? {
            Some(v) if v.rev.main <= self.rev => Some(v),
            _ => None,
        }
    }

    /// The revision this view reads at.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// The newest version of `key` at or below the view's revision, tombstones included.
    ///
    /// Usually two point reads: the key's `head` and, when that version is visible
    /// at the view's revision, exactly that `kv` entry (found through the bloom
    /// filters, no iterator). Only a view older than the key's newest version seeks.
    pub fn version_of(&self, key: &[u8]) -> Result<Option<Version>> {
        if let Some(v) = self.cached_newest(key) {
            return Ok(Some(v));
        }
        match self.version_from_head(key)? {
            HeadLookup::Found(v) => Ok(v),
            HeadLookup::MustSeek => self.seek_version_of(key),
        }
    }

    /// [`View::version_of`] through the key's `head`. A missing head means the key
    /// has no version at all (heads are written with every version; compaction drops
    /// a head only with the last versions of a deleted key). The newest version never
    /// disappears while it is the head, except a tombstone that compaction removes
    /// between the two reads: then the caller seeks.
    fn version_from_head(&self, key: &[u8]) -> Result<HeadLookup> {
        let encoded = schema::kv_lower_bound(key);
        let rev = match self.point_read_head(&encoded)? {
            None => return Ok(HeadLookup::Found(None)),
            Some((rev, _)) => rev,
        };
        if rev.main > self.rev {
            return Ok(HeadLookup::MustSeek);
        }
        let raw_key = schema::kv_key(key, rev);
        match self.engine.get_with(CF_KV, &raw_key, |v| KvRecord::decode(&raw_key, v))? {
            Some(record) => {
                Ok(HeadLookup::Found(Some(Version { key: Bytes::copy_from_slice(key), rev, record: record? })))
            }
            // Compaction removed a deleted key's tombstone after we read its head.
            None => Ok(HeadLookup::MustSeek),
        }
    }

    /// The head of the key encoded as `encoded`, by a point read (never torn).
    fn point_read_head(&self, encoded: &[u8]) -> Result<Option<(Revision, bool)>> {
        self.engine.get_with(CF_HEAD, encoded, |v| schema::parse_head_value(encoded, v)?.settled(encoded))?.transpose()
    }

    /// [`View::version_of`] by seeking the `kv` versions of `key`.
    fn seek_version_of(&self, key: &[u8]) -> Result<Option<Version>> {
        let prefix = keycodec::encode(key);
        let mut it = self.engine.iter(CF_KV, None);
        it.seek(schema::kv_seek_at(key, self.rev));
        if !it.valid() {
            it.status()?;
            return Ok(None);
        }
        let raw_key = it.key().expect("valid iterator");
        if !raw_key.starts_with(&prefix) {
            return Ok(None);
        }
        let (_, rev) = schema::split_kv_key(raw_key)?;
        let record = KvRecord::decode(raw_key, it.value().expect("valid iterator"))?;
        Ok(Some(Version { key: Bytes::copy_from_slice(key), rev, record }))
    }

    /// The live version of `key` visible at the view's revision.
    pub fn get(&self, key: &[u8]) -> Result<Option<Version>> {
        Ok(self.version_of(key)?.filter(|v| !v.record.tombstone))
    }

    /// The version of `key` older than `rev` (the previous one), tombstones included.
    pub fn version_before(&self, key: &[u8], rev: Revision) -> Result<Option<Version>> {
        let prefix = keycodec::encode(key);
        let mut it = self.engine.iter(CF_KV, None);
        let at = schema::kv_key(key, rev);
        it.seek(&at);
        if it.valid() && it.key() == Some(at.as_slice()) {
            it.next();
        }
        if !it.valid() {
            it.status()?;
            return Ok(None);
        }
        let raw_key = it.key().expect("valid iterator");
        if !raw_key.starts_with(&prefix) {
            return Ok(None);
        }
        let (_, rev) = schema::split_kv_key(raw_key)?;
        let record = KvRecord::decode(raw_key, it.value().expect("valid iterator"))?;
        Ok(Some(Version { key: Bytes::copy_from_slice(key), rev, record }))
    }

    /// Calls `visit` for every live version visible in `range`, in key order. `visit`
    /// returns the detail it needs for the next versions, or `None` to stop.
    ///
    /// Full versions come from `kv`; mere presence (counting) comes from `head`, one
    /// entry per key, so a count does not step over every retained version.
    pub fn scan(
        &self,
        range: &KeyRange,
        detail: Detail,
        mut visit: impl FnMut(Option<Version>) -> Option<Detail>,
    ) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        if let KeyRange::Single(key) = range {
            if let Some(v) = self.get(key)? {
                visit(if detail == Detail::Full { Some(v) } else { None });
            }
            return Ok(());
        }
        let upper = range.end().map(keycodec::encode);
        let mut phase = (detail, schema::kv_lower_bound(range.start()));
        loop {
            let (detail, from) = &phase;
            let end = match detail {
                Detail::Full => self.scan_versions(from, upper.clone(), &mut visit)?,
                Detail::Presence => self.scan_heads(from, upper.clone(), &mut visit)?,
            };
            match end {
                Some(next) => phase = next,
                None => return Ok(()),
            }
        }
    }

    /// The full-detail part of [`View::scan`], from the encoded key `from`. Returns
    /// how it ended: `visit` asked for mere presence, or to stop, or the range ended.
    fn scan_versions(
        &self,
        from: &[u8],
        upper: Option<Vec<u8>>,
        visit: &mut impl FnMut(Option<Version>) -> Option<Detail>,
    ) -> Result<PhaseEnd> {
        let mut it = self.engine.iter(CF_KV, upper);
        it.seek(from);
        while it.valid() {
            let raw_key = it.key().expect("valid iterator");
            let (enc, rev) = schema::split_kv_key(raw_key)?;
            if rev.main > self.rev {
                // Versions newer than the view: jump to the newest one at or below it.
                let mut target = enc.to_vec();
                target.extend_from_slice(&(!(self.rev as u64)).to_be_bytes());
                target.extend_from_slice(&[0u8; 8]);
                it.seek(&target);
                continue;
            }
            let enc = enc.to_vec();
            let value = it.value().expect("valid iterator");
            if !schema::is_tombstone(value) {
                let record = KvRecord::decode(raw_key, value)?;
                let key = Bytes::from(schema::decode_user_key(&enc)?);
                if let Some(end) = end_of_phase(visit(Some(Version { key, rev, record })), Detail::Full, &enc) {
                    return Ok(end);
                }
            }
            skip_older_versions(&mut it, &enc);
        }
        it.status()?;
        Ok(None)
    }

    /// The presence part of [`View::scan`], from the encoded key `from`: one `head`
    /// entry per key. A head newer than the view (the key changed since) falls back
    /// to looking up the version visible at the view's revision. Returns
    /// how it ended: `visit` asked for full versions, or to stop, or the range ended.
    fn scan_heads(
        &self,
        from: &[u8],
        upper: Option<Vec<u8>>,
        visit: &mut impl FnMut(Option<Version>) -> Option<Detail>,
    ) -> Result<PhaseEnd> {
        let mut it = self.engine.iter(CF_HEAD, upper);
        it.seek(from);
        while it.valid() {
            let enc = it.key().expect("valid iterator");
            let head = match schema::parse_head_value(enc, it.value().expect("valid iterator"))? {
                HeadRead::Newest(rev, tombstone) => Some((rev, tombstone)),
                HeadRead::Torn => self.point_read_head(enc)?,
            };
            let live = match head {
                Some((rev, tombstone)) if rev.main <= self.rev => !tombstone,
                // Changed after the view's revision, or compaction just removed it.
                _ => self.get(&schema::decode_user_key(enc)?)?.is_some(),
            };
            if live {
                if let Some(end) = end_of_phase(visit(None), Detail::Presence, enc) {
                    return Ok(end);
                }
            }
            it.next();
        }
        it.status()?;
        Ok(None)
    }
}

/// What a key's `head` says about the version a view sees.
enum HeadLookup {
    /// The newest version is visible at the view's revision (or the key has none).
    Found(Option<Version>),
    /// The key changed after the view's revision (or compaction just removed it):
    /// the view must seek.
    MustSeek,
}

/// How a phase of [`View::scan`] ended: `None` when the scan is over, or the detail
/// to go on with and the seek target to go on from.
type PhaseEnd = Option<(Detail, Vec<u8>)>;

/// What `answer` (from `visit`, for the key encoded as `encoded`) means for a scan
/// phase reading at `phase` detail: `None` to go on in this phase, or how it ends.
fn end_of_phase(answer: Option<Detail>, phase: Detail, encoded: &[u8]) -> Option<PhaseEnd> {
    match answer {
        Some(d) if d == phase => None,
        Some(d) => Some(Some((d, schema::after_key(encoded)))),
        None => Some(None),
    }
}

/// Moves the iterator past every remaining version of the key encoded as `enc`.
fn skip_older_versions(it: &mut rocksdb::DBRawIterator<'_>, enc: &[u8]) {
    const NEXT_BEFORE_SEEK: usize = 4;
    for _ in 0..NEXT_BEFORE_SEEK {
        it.next();
        match it.key() {
            Some(k) if k.starts_with(enc) => continue,
            _ => return,
        }
    }
    let mut last = enc.to_vec();
    last.extend_from_slice(&[0xff; 16]);
    it.seek(&last);
    if it.key() == Some(last.as_slice()) {
        it.next();
    }
}
