//! [`Store`]: the state machine's front: apply, reads, history, hashes, snapshots.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use strake_proto::etcdserverpb::alarm_request::AlarmAction;
use strake_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, RangeRequest, RangeResponse, ResponseHeader,
};
use strake_proto::mvccpb::{event::EventType, Event, KeyValue};
use strake_proto::strakepb::{write_request, write_result, WriteRequest};

use crate::compact::{self, Compactor};
use crate::engine::{Engine, EngineOptions, EngineSlot};
use crate::error::{Result, StoreError};
use crate::key_range::KeyRange;
use crate::latest::LatestCache;
use crate::lease::{self, LeaseInfo, LeaseTable, MAX_LEASE_TTL_SECONDS};
use crate::live::LiveIndex;
use crate::range;
use crate::schema::{self, KvRecord, CF_KV, CF_LEASE, CF_META, CF_REV};
use crate::txn::{self, TxnContext};
use crate::view::View;
use crate::watch::hub::WatchHub;
use crate::watch::RevisionEvents;
use crate::write::{Pending, WriteTxn};

/// Applying the writes of one log entry, in order, with as few RocksDB writes as
/// possible: consecutive keyspace writes (Put, DeleteRange, Txn) join one pending
/// batch, read each other's changes through its overlay, and are written together
/// with one applied marker. Anything else (leases, compaction, alarms, and txns that
/// read a historical revision) needs the state in RocksDB: the pending batch is
/// written first and the request is written alone.
///
/// Invariants: holds the store's apply lock throughout; nothing pending is visible
/// to readers (the store's revision moves only when a batch is written); the marker
/// written with a batch names the last request in it, so a crash replays exactly the
/// requests after it.
pub struct EntryApply<'s> {
    store: &'s Store,
    engine: Arc<Engine>,
    _lock: parking_lot::MutexGuard<'s, ()>,
    /// Taken only while the apply lock is held.
    latest: parking_lot::MutexGuard<'s, LatestCache>,
    pending: Pending,
    /// Position of the last request applied into `pending`.
    last: Option<u32>,
    marker: &'s dyn Fn(u32) -> Vec<u8>,
}

impl EntryApply<'_> {
    /// Applies the write at `position` of the entry. Errors that are the request's
    /// fault are its result; an engine failure is `Err` and the store must not be
    /// used further.
    pub fn apply(&mut self, position: u32, req: &WriteRequest) -> Result<write_result::Result, StoreError> {
        let alone = runs_alone(req);
        if alone {
            self.write_pending()?;
        }
        let engine = self.engine.clone();
        let mut wtxn = WriteTxn::on(&engine, &self.pending, &self.latest, &self.store.inner.live);
        let (outcome, done) = match self.store.apply_request(req, &mut wtxn) {
            Ok(r) => (r, Some(wtxn.finish())),
            Err(e @ (StoreError::Engine(_) | StoreError::Malformed { .. })) => return Err(e),
            Err(e) => (write_result::Result::Error(error_result(&e)), None),
        };
        if let Some(done) = done {
            self.pending.absorb(done);
        }
        self.last = Some(position);
        if alone {
            self.write_pending()?;
        }
        Ok(outcome)
    }

    /// Writes what is pending and makes it visible.
    pub fn finish(mut self) -> Result<()> {
        self.write_pending()
    }

    fn write_pending(&mut self) -> Result<()> {
        let Some(position) = self.last.take() else { return Ok(()) };
        let revision = self.pending.revision();
        let pending = std::mem::replace(&mut self.pending, Pending::new(revision));
        let events = pending.write(&self.engine, &(self.marker)(position), &mut self.latest, &self.store.inner.live)?;
        self.store.publish(revision, events);
        Ok(())
    }
}

/// Whether a write must see the store's state in RocksDB (nothing pending).
fn runs_alone(req: &WriteRequest) -> bool {
    use write_request::Request as Rq;
    match &req.request {
        Some(Rq::Put(_)) | Some(Rq::DeleteRange(_)) => false,
        Some(Rq::Txn(t)) => txn::reads_history(t),
        _ => true,
    }
}

/// The revision of a store that has never been written (etcd starts at 1).
pub const INITIAL_REVISION: i64 = 1;

/// A chunk of history read for a watcher's catch-up.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Events in revision order, every revision complete.
    pub events: Vec<Event>,
    /// The last revision the read covered (events may stop earlier when empty).
    pub scanned_to: i64,
}

/// The result of HashKV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// CRC-32 of every retained version up to `revision`.
    pub hash: u32,
    /// The compaction revision the hash respects.
    pub compact_revision: i64,
    /// The revision the hash covers.
    pub revision: i64,
}

/// An active alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Alarm {
    /// The member that raised it.
    pub member_id: u64,
    /// The `AlarmType` value.
    pub alarm: i32,
}

/// The MVCC keyspace, leases and watch hub of one member, on RocksDB.
///
/// Invariants: writes happen only through [`Store::begin_entry`] (or [`Store::apply`]
/// for one write), one caller at a time, in log order; applied writes and the marker
/// naming the last of them are written in one atomic batch;
/// `revision` never decreases except by [`Store::restore`]; reads never observe a
/// revision that is not fully written.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    engine: EngineSlot,
    options: EngineOptions,
    revision: AtomicI64,
    compact_revision: AtomicI64,
    leases: LeaseTable,
    alarms: Mutex<Vec<Alarm>>,
    hub: WatchHub,
    compactor: Compactor,
    /// Held while applying and while compaction removes heads (see `schema`).
    apply_lock: Arc<Mutex<()>>,
    /// Newest versions of recently written keys; locked only under `apply_lock`.
    latest: Mutex<LatestCache>,
    /// Every key and when its liveness last changed; written only under `apply_lock`.
    live: RwLock<LiveIndex>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.engine().path().to_path_buf())
            .field("revision", &self.revision())
            .field("compact_revision", &self.compact_revision())
            .finish()
    }
}

impl TxnContext for Store {
    fn lease_exists(&self, id: i64) -> bool {
        self.inner.leases.exists(id)
    }
    fn compact_revision(&self) -> i64 {
        Store::compact_revision(self)
    }
}

impl Store {
    /// Opens the store in directory `dir`, creating it when empty.
    pub fn open(dir: &Path, options: &EngineOptions) -> Result<Store> {
        let engine = Arc::new(Engine::open_current(dir, options)?);
        let loaded = LoadedState::read(&engine, dir)?;
        let live = build_live_index(&engine)?;
        let slot = EngineSlot::new(engine);
        let apply_lock = Arc::new(Mutex::new(()));
        let compactor = Compactor::start(slot.clone(), loaded.compact_finished, apply_lock.clone());
        if loaded.compact_scheduled > loaded.compact_finished {
            tracing::info!(
                scheduled = loaded.compact_scheduled,
                finished = loaded.compact_finished,
                "resuming an interrupted compaction"
            );
            compactor.schedule(loaded.compact_scheduled);
        }
        Ok(Store {
            inner: Arc::new(Inner {
                engine: slot,
                options: options.clone(),
                revision: AtomicI64::new(loaded.revision),
                compact_revision: AtomicI64::new(loaded.compact_scheduled),
                leases: loaded.leases,
                alarms: Mutex::new(loaded.alarms),
                hub: WatchHub::new(loaded.revision),
                compactor,
                apply_lock,
                latest: Mutex::new(LatestCache::new(options.latest_cache_bytes)),
                live: RwLock::new(live),
            }),
        })
    }

    /// Replaces the whole store with the checkpoint in `checkpoint_dir` (a snapshot
    /// received from the leader). The directory is moved into the store. Watchers
    /// fall back to catch-up from the new history (or are cancelled if it is
    /// compacted past them). Returns the applied marker of the new content.
    pub fn restore(&self, checkpoint_dir: &Path) -> Result<Option<Vec<u8>>> {
        let _guard = self.inner.apply_lock.lock();
        let old = self.engine();
        let root =
            old.path().parent().map(Path::to_path_buf).ok_or_else(|| {
                StoreError::Unusable(format!("store directory {} has no parent", old.path().display()))
            })?;
        let engine = Arc::new(Engine::adopt(&root, checkpoint_dir, &self.inner.options)?);
        let loaded = LoadedState::read(&engine, &root)?;
        let marker = engine.get(CF_META, schema::META_APPLIED)?;
        let live = build_live_index(&engine)?;
        old.retire();
        self.inner.engine.replace(engine);
        self.inner.latest.lock().clear();
        self.inner.revision.store(loaded.revision, Ordering::Release);
        self.inner.compact_revision.store(loaded.compact_scheduled, Ordering::Release);
        // After the compaction revision: a reader that counts with the new index
        // then sees the new compaction revision when it checks it.
        *self.inner.live.write() = live;
        self.inner.leases.replace_all(loaded.leases);
        *self.inner.alarms.lock() = loaded.alarms;
        self.inner.compactor.reset(loaded.compact_finished);
        if loaded.compact_scheduled > loaded.compact_finished {
            self.inner.compactor.schedule(loaded.compact_scheduled);
        }
        self.inner.hub.unsync_all(loaded.revision);
        Ok(marker)
    }

    /// The newest revision.
    pub fn revision(&self) -> i64 {
        self.inner.revision.load(Ordering::Acquire)
    }

    /// The compaction revision: reads below it fail.
    pub fn compact_revision(&self) -> i64 {
        self.inner.compact_revision.load(Ordering::Acquire)
    }

    /// The watch hub of this store.
    pub fn hub(&self) -> &WatchHub {
        &self.inner.hub
    }

    /// The storage engine (maintenance operations).
    pub fn engine(&self) -> Arc<Engine> {
        // Callers hold the Arc for the duration of one operation.
        self.inner.engine.get()
    }

    /// The replication layer's marker of the last applied entry, if any.
    pub fn applied_marker(&self) -> Result<Option<Vec<u8>>> {
        self.engine().get(CF_META, schema::META_APPLIED)
    }

    /// Resolves a requested revision; returns it with the current revision.
    fn check_readable(&self, rev: i64) -> Result<(i64, i64)> {
        let current = self.revision();
        if rev > current {
            return Err(StoreError::FutureRevision);
        }
        let rev = if rev <= 0 { current } else { rev };
        if rev < self.compact_revision() {
            return Err(StoreError::Compacted);
        }
        Ok((rev, current))
    }

    /// Serves a Range request from local state (the caller decides about linearizability).
    /// As etcd (`rangeKeys`), the header carries the current revision, also when an
    /// older revision was read.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        txn::check_range(req)?;
        let (rev, current) = self.check_readable(req.revision)?;
        let engine = self.engine();
        let view = View::new(&engine, rev).with_latest(&self.inner.latest).with_live(&self.inner.live);
        let mut resp = range::evaluate(req, &view)?;
        // Compaction may have started during the read; versions below it could be gone.
        if rev < self.compact_revision() {
            return Err(StoreError::Compacted);
        }
        resp.header = Some(header(current));
        Ok(resp)
    }

    /// Evaluates a txn that only reads, on local state at the current revision.
    pub fn read_txn(
        &self,
        req: &strake_proto::etcdserverpb::TxnRequest,
    ) -> Result<strake_proto::etcdserverpb::TxnResponse> {
        let engine = self.engine();
        let mut wtxn = WriteTxn::new(&engine, self.revision(), &self.inner.live);
        let resp = txn::execute(req, &mut wtxn, self)?;
        debug_assert!(!wtxn.changed(), "read_txn must only be given read-only txns");
        Ok(resp)
    }

    /// Applies one committed write. `applied_marker` is stored atomically with its effects.
    /// Errors that are the request's fault are returned as the entry's result and
    /// still record the marker; an engine failure is returned as `Err` and the store
    /// must not be used further.
    pub fn apply(&self, req: &WriteRequest, applied_marker: &[u8]) -> Result<write_result::Result, StoreError> {
        let marker = |_| applied_marker.to_vec();
        let mut entry = self.begin_entry(&marker);
        let outcome = entry.apply(0, req)?;
        entry.finish()?;
        Ok(outcome)
    }

    /// Starts applying the writes of one log entry (see [`EntryApply`]).
    /// `marker(position)` is the applied marker saying that the entry's writes up to
    /// and including `position` are applied.
    pub fn begin_entry<'s>(&'s self, marker: &'s dyn Fn(u32) -> Vec<u8>) -> EntryApply<'s> {
        let lock = self.inner.apply_lock.lock();
        let revision = self.revision();
        EntryApply {
            store: self,
            engine: self.engine(),
            _lock: lock,
            latest: self.inner.latest.lock(),
            pending: Pending::new(revision),
            last: None,
            marker,
        }
    }

    /// Records `applied_marker` for an entry with no effect on the keyspace.
    pub fn apply_marker(&self, applied_marker: &[u8]) -> Result<()> {
        let _guard = self.inner.apply_lock.lock();
        Pending::new(self.revision()).write(
            &self.engine(),
            applied_marker,
            &mut self.inner.latest.lock(),
            &self.inner.live,
        )?;
        Ok(())
    }

    /// Makes a written batch visible: the new revision, then its events to watchers.
    fn publish(&self, revision: i64, events: Vec<RevisionEvents>) {
        if revision != self.revision() {
            self.inner.revision.store(revision, Ordering::Release);
        }
        let engine = self.engine();
        // Runs before any later entry is applied, so no compaction can have removed
        // the previous version (it is the newest at or below the event's revision).
        let prev_value = |key: &[u8], rev: crate::revision::Revision| -> Result<bytes::Bytes> {
            fail::fail_point!("watch-prev-value-read", |_| Err(StoreError::Engine("failpoint".into())));
            match View::new(&engine, rev.main).record_at(key, rev)? {
                Some(record) => Ok(record.value),
                None => Err(schema::malformed(CF_KV, &schema::kv_key(key, rev), "a previous version is missing")),
            }
        };
        for published in &events {
            self.inner.hub.publish(published, &prev_value);
        }
    }

    fn apply_request(&self, req: &WriteRequest, wtxn: &mut WriteTxn<'_>) -> Result<write_result::Result> {
        use write_request::Request as Rq;
        use write_result::Result as Rs;
        self.check_alarms(req)?;
        Ok(match &req.request {
            Some(Rq::Put(p)) => {
                // etcd's txn.Put refuses an unknown lease before `ignore_*` looks for
                // the key (inside a Txn, checkPut does the opposite, see txn.rs).
                if p.lease != 0 && !self.inner.leases.exists(p.lease) {
                    return Err(StoreError::LeaseNotFound);
                }
                txn::check_put_preconditions(p, wtxn, self)?;
                Rs::Put(wtxn.put(p)?)
            }
            Some(Rq::DeleteRange(d)) => Rs::DeleteRange(wtxn.delete_range(d)?),
            Some(Rq::Txn(t)) => Rs::Txn(txn::execute(t, wtxn, self)?),
            Some(Rq::Compaction(c)) => Rs::Compaction(self.apply_compaction(c, wtxn)?),
            Some(Rq::LeaseGrant(g)) => Rs::LeaseGrant(self.apply_lease_grant(g, wtxn)?),
            Some(Rq::LeaseRevoke(r)) => Rs::LeaseRevoke(self.apply_lease_revoke(r, wtxn)?),
            Some(Rq::Alarm(a)) => Rs::Alarm(self.apply_alarm(a, wtxn)?),
            Some(Rq::LeaseCheckpoint(_)) => Rs::LeaseCheckpoint(Default::default()),
            None => return Err(StoreError::Unusable("empty write request".into())),
        })
    }

    /// While NOSPACE is active only requests that free space pass (etcd's capped applier).
    fn check_alarms(&self, req: &WriteRequest) -> Result<()> {
        use write_request::Request as Rq;
        let alarms = self.inner.alarms.lock();
        if alarms.iter().any(|a| a.alarm == AlarmType::Corrupt as i32) {
            if !matches!(req.request, Some(Rq::Alarm(_))) {
                return Err(StoreError::Corrupt);
            }
            return Ok(());
        }
        if alarms.iter().any(|a| a.alarm == AlarmType::Nospace as i32) {
            let blocked = match &req.request {
                Some(Rq::Put(_)) | Some(Rq::LeaseGrant(_)) => true,
                Some(Rq::Txn(t)) => txn_has_put(t),
                _ => false,
            };
            if blocked {
                return Err(StoreError::NoSpace);
            }
        }
        Ok(())
    }

    fn apply_compaction(&self, c: &CompactionRequest, wtxn: &mut WriteTxn<'_>) -> Result<CompactionResponse> {
        if c.revision <= self.compact_revision() {
            return Err(StoreError::Compacted);
        }
        if c.revision > self.revision() {
            return Err(StoreError::FutureRevision);
        }
        wtxn.put_raw(CF_META, schema::META_COMPACT_SCHEDULED.to_vec(), schema::encode_u64(c.revision as u64).to_vec());
        // Logical compaction takes effect now; readers re-check it after reading.
        self.inner.compact_revision.store(c.revision, Ordering::Release);
        self.inner.live.write().forget_deleted_through(c.revision);
        self.inner.compactor.schedule(c.revision);
        Ok(CompactionResponse { header: Some(header(self.revision())) })
    }

    fn apply_lease_grant(&self, g: &LeaseGrantRequest, wtxn: &mut WriteTxn<'_>) -> Result<LeaseGrantResponse> {
        if g.id == 0 {
            return Err(StoreError::LeaseNotFound);
        }
        if g.ttl > MAX_LEASE_TTL_SECONDS {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        if self.inner.leases.exists(g.id) {
            return Err(StoreError::LeaseExists);
        }
        wtxn.put_raw(CF_LEASE, schema::lease_key(g.id).to_vec(), schema::encode_lease_ttl(g.ttl));
        self.inner.leases.insert(g.id, g.ttl);
        Ok(LeaseGrantResponse { header: Some(header(self.revision())), id: g.id, ttl: g.ttl, error: String::new() })
    }

    fn apply_lease_revoke(&self, r: &LeaseRevokeRequest, wtxn: &mut WriteTxn<'_>) -> Result<LeaseRevokeResponse> {
        if !self.inner.leases.exists(r.id) {
            return Err(StoreError::LeaseNotFound);
        }
        let keys = lease::attached_keys(wtxn.engine(), r.id)?;
        for victim in txn::versions_to_revoke(&keys, wtxn)? {
            wtxn.delete_key(&victim);
        }
        wtxn.delete_raw(CF_LEASE, schema::lease_key(r.id).to_vec());
        self.inner.leases.remove(r.id);
        Ok(LeaseRevokeResponse { header: Some(header(wtxn.read_revision())) })
    }

    fn apply_alarm(&self, a: &AlarmRequest, wtxn: &mut WriteTxn<'_>) -> Result<AlarmResponse> {
        let mut alarms = self.inner.alarms.lock();
        let action = AlarmAction::try_from(a.action).unwrap_or(AlarmAction::Get);
        let this = Alarm { member_id: a.member_id, alarm: a.alarm };
        let changed: Vec<Alarm> = match action {
            AlarmAction::Get => alarms.clone(),
            AlarmAction::Activate => {
                if a.alarm == AlarmType::None as i32 {
                    vec![]
                } else {
                    if !alarms.contains(&this) {
                        alarms.push(this);
                    }
                    vec![this]
                }
            }
            AlarmAction::Deactivate => {
                let before = alarms.len();
                alarms.retain(|x| *x != this);
                if alarms.len() < before {
                    vec![this]
                } else {
                    vec![]
                }
            }
        };
        if action != AlarmAction::Get {
            let json = serde_json::to_vec(&*alarms).expect("alarms serialise");
            wtxn.put_raw(CF_META, schema::META_ALARMS.to_vec(), json);
        }
        Ok(AlarmResponse {
            header: Some(header(self.revision())),
            alarms: changed.into_iter().map(|a| AlarmMember { member_id: a.member_id, alarm: a.alarm }).collect(),
        })
    }

    /// The active alarms.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.inner.alarms.lock().clone()
    }

    /// Every lease.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        self.inner.leases.list()
    }

    /// One lease.
    pub fn lease(&self, id: i64) -> Option<LeaseInfo> {
        self.inner.leases.get(id)
    }

    /// The keys attached to lease `id`.
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>> {
        lease::attached_keys(&self.engine(), id)
    }

    /// Waits until compaction at `revision` is physically complete.
    pub async fn wait_compacted(&self, revision: i64) {
        self.inner.compactor.wait_for(revision).await
    }

    /// The events in `[from, to]` whose key is in `range`, at most about `max_events`
    /// (whole revisions). Fails with `Compacted` when `from` is below the compaction.
    pub fn history(&self, range: &KeyRange, from: i64, to: i64, max_events: usize, prev_kv: bool) -> Result<History> {
        if from < self.compact_revision() {
            return Err(StoreError::Compacted);
        }
        let engine = self.engine();
        let upper = schema::rev_key(crate::revision::Revision { main: to + 1, sub: 0 }).to_vec();
        let mut it = engine.iter(CF_REV, Some(upper));
        it.seek(schema::rev_key(crate::revision::Revision { main: from, sub: 0 }));
        // etcd reads an event's prev_kv at `rev - 1`, compacted for an event at the
        // compaction revision: it has none then (also before physical compaction ran).
        let compacted = self.compact_revision();
        let mut events = Vec::new();
        let mut scanned_to = to;
        let mut last_main = from - 1;
        while it.valid() {
            let rev = schema::parse_rev_key(it.key().expect("valid iterator"))?;
            if rev.main != last_main && events.len() >= max_events {
                scanned_to = last_main;
                break;
            }
            last_main = rev.main;
            let key = it.value().expect("valid iterator");
            if range.contains(key) {
                events.push(self.event_at(key, rev, prev_kv && rev.main > compacted)?);
            }
            it.next();
        }
        it.status()?;
        if from < self.compact_revision() {
            return Err(StoreError::Compacted);
        }
        Ok(History { events, scanned_to })
    }

    fn event_at(&self, key: &[u8], rev: crate::revision::Revision, prev_kv: bool) -> Result<Event> {
        let engine = self.engine();
        let raw = schema::kv_key(key, rev);
        let value = engine.get(CF_KV, &raw)?.ok_or_else(|| {
            schema::malformed(CF_REV, &schema::rev_key(rev), "indexes a version missing from the kv column family")
        })?;
        let record = KvRecord::decode(&raw, &value)?;
        let key = bytes::Bytes::copy_from_slice(key);
        let prev = if prev_kv {
            View::new(&engine, rev.main)
                .version_before(&key, rev)?
                .filter(|v| !v.record.tombstone)
                .map(|v| v.to_key_value())
        } else {
            None
        };
        Ok(if record.tombstone {
            Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue { key, mod_revision: rev.main, ..Default::default() }),
                prev_kv: prev,
            }
        } else {
            let v = crate::view::Version { key, rev, record };
            Event { r#type: EventType::Put as i32, kv: Some(v.to_key_value()), prev_kv: prev }
        })
    }

    /// HashKV: a CRC-32 over every version retained at `revision` (0 = current), as
    /// the history looks after compaction, independent of how far physical
    /// compaction has progressed, so members holding the same history agree.
    pub fn hash_kv(&self, revision: i64) -> Result<KvHash> {
        let (rev, _) = self.check_readable(revision)?;
        let compacted = self.compact_revision();
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(CF_KV.as_bytes());
        let engine = self.engine();
        let mut it = engine.iter(CF_KV, None);
        it.seek_to_first();
        let mut current_key: Vec<u8> = Vec::new();
        let mut seen_at_or_below = false;
        while it.valid() {
            let raw = it.key().expect("valid iterator");
            let (enc, version_rev) = schema::split_kv_key(raw)?;
            if enc != current_key.as_slice() {
                current_key = enc.to_vec();
                seen_at_or_below = false;
            }
            if version_rev.main <= rev {
                let value = it.value().expect("valid iterator");
                let newest = version_rev.main <= compacted && !seen_at_or_below;
                if version_rev.main <= compacted {
                    seen_at_or_below = true;
                }
                if !compact::is_discarded(version_rev.main, compacted, newest, schema::is_tombstone(value)) {
                    hasher.update(raw);
                    hasher.update(value);
                }
            }
            it.next();
        }
        it.status()?;
        Ok(KvHash { hash: hasher.finalize(), compact_revision: compacted, revision: rev })
    }

    /// Hash of the whole backend (etcd's test-only Hash RPC).
    pub fn hash_all(&self) -> Result<u32> {
        let engine = self.engine();
        let mut hasher = crc32fast::Hasher::new();
        for cf in schema::ALL_CFS {
            let mut it = engine.iter(cf, None);
            it.seek_to_first();
            while it.valid() {
                hasher.update(it.key().expect("valid iterator"));
                hasher.update(it.value().expect("valid iterator"));
                it.next();
            }
            it.status()?;
        }
        Ok(hasher.finalize())
    }

    /// Makes every applied entry durable in the engine (before log entries may be dropped).
    pub fn flush(&self) -> Result<()> {
        self.engine().flush()
    }

    /// How far RocksDB's flushes and compactions are behind the writes.
    pub fn write_backlog(&self) -> crate::WriteBacklog {
        self.engine().write_backlog()
    }

    /// Writes a consistent copy of the store into the new directory `dir`.
    /// Returns the applied marker of the copy.
    pub fn checkpoint(&self, dir: &Path) -> Result<Option<Vec<u8>>> {
        let _guard = self.inner.apply_lock.lock();
        let engine = self.engine();
        engine.checkpoint(dir)?;
        engine.get(CF_META, schema::META_APPLIED)
    }
}

/// What a store directory says about itself, read at open and after a restore.
struct LoadedState {
    revision: i64,
    compact_scheduled: i64,
    compact_finished: i64,
    alarms: Vec<Alarm>,
    leases: LeaseTable,
}

impl LoadedState {
    fn read(engine: &Engine, dir: &Path) -> Result<LoadedState> {
        let meta_u64 = |name: &[u8]| -> Result<Option<u64>> {
            engine.get(CF_META, name)?.map(|v| schema::decode_u64(name, &v)).transpose()
        };
        match meta_u64(schema::META_FORMAT)? {
            // A new store, or one whose heads stay readable as they are: record that
            // heads written from now on may carry metadata.
            None | Some(schema::FORMAT_WITHOUT_HEAD_METADATA) => {
                let mut batch = rocksdb::WriteBatch::default();
                batch.put_cf(engine.cf(CF_META), schema::META_FORMAT, schema::encode_u64(schema::FORMAT_VERSION));
                engine.write(batch)?;
                engine.flush()?;
            }
            Some(schema::FORMAT_VERSION) => {}
            Some(old @ (schema::FORMAT_WITHOUT_HEADS | schema::FORMAT_WITH_NAMING_HEADS)) => {
                let heads = crate::head::build(engine)?;
                tracing::info!(heads, dir = %dir.display(), "built the key heads of a format-{old} store");
            }
            Some(other) => {
                return Err(StoreError::Unusable(format!(
                    "{} holds store format {other}; this strake reads format {}",
                    dir.display(),
                    schema::FORMAT_VERSION
                )))
            }
        }
        let alarms = match engine.get(CF_META, schema::META_ALARMS)? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| schema::malformed(CF_META, schema::META_ALARMS, &e.to_string()))?,
            None => Vec::new(),
        };
        Ok(LoadedState {
            revision: meta_u64(schema::META_REVISION)?.map_or(INITIAL_REVISION, |v| v as i64),
            compact_scheduled: meta_u64(schema::META_COMPACT_SCHEDULED)?.unwrap_or(0) as i64,
            compact_finished: meta_u64(schema::META_COMPACT_FINISHED)?.unwrap_or(0) as i64,
            alarms,
            leases: LeaseTable::load(engine)?,
        })
    }
}

/// The [`LiveIndex`] of the store in `engine`, logged with its size and build time.
fn build_live_index(engine: &Engine) -> Result<LiveIndex> {
    let started = std::time::Instant::now();
    let live = LiveIndex::build(engine)?;
    tracing::info!(keys = live.len(), elapsed_ms = started.elapsed().as_millis() as u64, "indexed the live keys");
    Ok(live)
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader { revision, ..Default::default() }
}

fn txn_has_put(t: &strake_proto::etcdserverpb::TxnRequest) -> bool {
    use strake_proto::etcdserverpb::request_op::Request;
    t.success.iter().chain(&t.failure).any(|op| match &op.request {
        Some(Request::RequestPut(_)) => true,
        Some(Request::RequestTxn(t)) => txn_has_put(t),
        _ => false,
    })
}

/// An error as the result of an applied entry.
pub fn error_result(e: &StoreError) -> strake_proto::strakepb::WriteError {
    strake_proto::strakepb::WriteError { code: e.class() as i32, message: e.to_string() }
}
