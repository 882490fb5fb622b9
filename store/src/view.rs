//! Reading the MVCC keyspace as it was at one revision.
//!
//! A version of a key is visible at revision `R` when it is the newest version with
//! `main <= R`; a visible tombstone means the key does not exist at `R`. Every read
//! starts from the key's `head` (its newest version: whole, or named when its record
//! is long): when that is not newer than `R` it is the answer (a named one is then
//! read from `kv` by its revision), otherwise the read seeks the key's versions in
//! `kv`.
//! New versions written concurrently have `main > R` and send the read to `kv`, where
//! they are skipped; the only deletions (compaction) remove versions invisible at
//! every revision the caller may read (the caller checks the compaction revision, see
//! `Store`) and never a key's newest version unless it is a tombstone, whose head goes
//! in the same batch.

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use strake_proto::mvccpb::KeyValue;

use crate::engine::Engine;
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::keycodec;
use crate::latest::LatestCache;
use crate::live::LiveIndex;
use crate::revision::Revision;
use crate::schema::{self, HeadBody, HeadRead, KvRecord, RecordMeta, CF_HEAD, CF_KV};

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

/// A key's live newest version as a write needs it: the metadata a put carries forward
/// (create revision, version, lease) always, the value only when already at hand
/// (a put, a single-key delete, a lease revocation or a compare not on the value
/// needs no more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// The whole version (its head held it, or a cache or the batch had it).
    Loaded(Version),
    /// A long record its head only names: read it from `kv` at `rev` when needed.
    Named {
        /// The user key.
        key: Bytes,
        /// Where the version was written.
        rev: Revision,
        /// Its record without the value.
        meta: RecordMeta,
    },
}

impl Prior {
    /// The user key.
    pub fn key(&self) -> &Bytes {
        match self {
            Prior::Loaded(v) => &v.key,
            Prior::Named { key, .. } => key,
        }
    }

    /// The version's record without its value.
    pub fn meta(&self) -> RecordMeta {
        match self {
            Prior::Loaded(v) => RecordMeta {
                create_revision: v.record.create_revision,
                version: v.record.version,
                lease: v.record.lease,
            },
            Prior::Named { meta, .. } => *meta,
        }
    }

    /// The etcd view of the version; its value is empty when not [`Prior::Loaded`].
    pub fn to_key_value(&self) -> KeyValue {
        match self {
            Prior::Loaded(v) => v.to_key_value(),
            Prior::Named { key, rev, meta } => KeyValue {
                key: key.clone(),
                create_revision: meta.create_revision,
                mod_revision: rev.main,
                version: meta.version,
                value: Bytes::new(),
                lease: meta.lease,
            },
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
    live: Option<&'a RwLock<LiveIndex>>,
}

impl<'a> View<'a> {
    /// A view at revision `rev` (the caller validated it against the retained history).
    pub fn new(engine: &'a Engine, rev: i64) -> View<'a> {
        View { engine, rev, latest: None, live: None }
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

    /// Also counts ranges with the store's index of live keys, which must hold every
    /// change up to the view's revision (see [`LiveIndex`]).
    pub fn with_live(mut self, live: &'a RwLock<LiveIndex>) -> View<'a> {
        self.live = Some(live);
        self
    }

    /// The number of keys of `range` live at the view's revision, when the view has
    /// an index of live keys (`None`: count by scanning). Keys whose liveness changed
    /// after the view's revision are read at it, after the index is released.
    pub fn count(&self, range: &KeyRange) -> Result<Option<i64>> {
        let Some(live) = self.live else { return Ok(None) };
        let counted = LiveIndex::count(live, range, self.rev);
        let mut count = counted.live;
        for key in &counted.unsure {
            if self.get(key)?.is_some() {
                count += 1;
            }
        }
        Ok(Some(count))
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
    /// Usually one point read, of the key's `head` (through the bloom filters in SST
    /// files and memtables, no iterator). Only a view older than the key's newest
    /// version seeks in `kv`.
    pub fn version_of(&self, key: &[u8]) -> Result<Option<Version>> {
        if let Some(v) = self.cached_newest(key) {
            return Ok(Some(v));
        }
        self.read_head(key, |key, rev, body| self.version_from_head(key, rev, body))
    }

    /// The live version of `key` visible at the view's revision as a put needs it:
    /// one point read of its head, without reading a long value the head only names.
    pub fn prior_of(&self, key: &[u8]) -> Result<Option<Prior>> {
        if let Some(v) = self.cached_newest(key) {
            return Ok(Some(Prior::Loaded(v)));
        }
        self.read_head(key, |key, rev, body| match body {
            HeadBody::Named(Some(meta)) if rev.main <= self.rev => Ok(Some(Prior::Named { key, rev, meta })),
            _ => Ok(self.version_from_head(key, rev, body)?.filter(|v| !v.record.tombstone).map(Prior::Loaded)),
        })
    }

    /// Reads the head of `key` with a point read and gives it to `read`.
    fn read_head<T>(
        &self,
        key: &[u8],
        read: impl FnOnce(Bytes, Revision, HeadBody<'_>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let encoded = schema::kv_lower_bound(key);
        let found = self.engine.get_with(CF_HEAD, &encoded, |value| -> Result<Option<T>> {
            let (rev, body) = schema::parse_head_value(&encoded, value)?.settled(&encoded)?;
            read(Bytes::copy_from_slice(key), rev, body)
        })?;
        // A missing head means the key has no version at all (heads are written with
        // every version; compaction drops a head only with the last versions of a
        // deleted key).
        Ok(found.transpose()?.flatten())
    }

    /// The record of version `rev` of `key`, if `kv` holds it.
    pub fn record_at(&self, key: &[u8], rev: Revision) -> Result<Option<KvRecord>> {
        let raw_key = schema::kv_key(key, rev);
        self.engine.get_with(CF_KV, &raw_key, |v| KvRecord::decode(&raw_key, v))?.transpose()
    }

    /// The version of `key` visible at the view's revision, tombstones included,
    /// given the key's head (`rev`, `body`): the head's own version when it is not
    /// newer than the view (fetched from `kv` when the head only names it), else the
    /// one found by seeking the key's versions in `kv`.
    fn version_from_head(&self, key: Bytes, rev: Revision, body: HeadBody<'_>) -> Result<Option<Version>> {
        if rev.main > self.rev {
            return self.seek_version_of(&key);
        }
        let record = match body {
            HeadBody::Whole(record) => KvRecord::decode(&key, record)?,
            HeadBody::Named(_) => match self.record_at(&key, rev)? {
                Some(record) => record,
                // The newest version of a key is removed only with its head.
                None => return self.seek_version_of(&key),
            },
        };
        Ok(Some(Version { key, rev, record }))
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
    /// One `head` entry per key: a head not newer than the view is the visible
    /// version itself, so neither listing nor counting steps over retained versions.
    pub fn scan(
        &self,
        range: &KeyRange,
        mut detail: Detail,
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
        let mut it = self.engine.iter(CF_HEAD, range.end().map(keycodec::encode));
        it.seek(schema::kv_lower_bound(range.start()));
        // The head being looked at, copied: the apply path may rewrite it in place.
        let mut head = Vec::new();
        while it.valid() {
            let enc = it.key().expect("valid iterator");
            head.clear();
            head.extend_from_slice(it.value().expect("valid iterator"));
            if let Some(item) = self.visible_in_scan(enc, &mut head, detail)? {
                match visit(item) {
                    Some(next) => detail = next,
                    None => return Ok(()),
                }
            }
            it.next();
        }
        Ok(it.status()?)
    }

    /// For [`View::scan`]: whether the key encoded as `enc`, whose head an iterator
    /// read as `head`, is live at the view's revision (`None`: not), and at `detail`
    /// its version.
    fn visible_in_scan(&self, enc: &[u8], head: &mut Vec<u8>, detail: Detail) -> Result<Option<Option<Version>>> {
        let mut parsed = schema::parse_head_value(enc, head)?;
        if parsed == HeadRead::Torn {
            head.clear();
            if self.engine.get_with(CF_HEAD, enc, |v| head.extend_from_slice(v))?.is_none() {
                // Compaction removed the deleted key meanwhile.
                return Ok(None);
            }
            parsed = schema::parse_head_value(enc, head)?;
        }
        let (rev, body) = parsed.settled(enc)?;
        if rev.main <= self.rev && (body.is_tombstone() || detail == Detail::Presence) {
            return Ok((!body.is_tombstone()).then_some(None));
        }
        let version = self.version_from_head(Bytes::from(schema::decode_user_key(enc)?), rev, body)?;
        Ok(version.filter(|v| !v.record.tombstone).map(|v| (detail == Detail::Full).then_some(v)))
    }
}
