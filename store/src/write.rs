//! Write transactions: the changes of one applied request, all at one revision, and
//! [`Pending`], the changes of several requests applied together.
//!
//! Changes accumulate as raw operations and in an overlay (key → newest version
//! after this transaction) so later operations of the same transaction see earlier
//! ones, as in etcd. A transaction may sit on top of a [`Pending`] batch of earlier
//! requests of the same log entry that are not in RocksDB yet: its reads see them
//! through the batch's overlay. [`Pending::write`] writes the batch together with the
//! new revision and the applied-entry marker, atomically, in one RocksDB write.

use std::collections::BTreeMap;

use bytes::Bytes;
use parking_lot::RwLock;
use rocksdb::WriteBatch;
use strake_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
};
use strake_proto::mvccpb::{event::EventType, Event, KeyValue};

use crate::engine::Engine;
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::latest::LatestCache;
use crate::live::{self, LiveIndex};
use crate::range::{self, VisibleSource};
use crate::revision::Revision;
use crate::schema::{self, KvRecord, CF_HEAD, CF_KV, CF_LEASE_KEYS, CF_META, CF_REV};
use crate::view::{Detail, Prior, Version, View};
use crate::watch::{DeferredPrev, RevisionEvents};

/// Newest version of each key a transaction or batch changed (`None`: deleted).
type Overlay = BTreeMap<Bytes, Option<Version>>;

/// One raw change to a column family.
enum RawOp {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Delete(&'static str, Vec<u8>),
}

/// Changes of requests already applied (in order) but not yet written to RocksDB.
///
/// Invariants: `revision` is the store's revision once the batch is written; every
/// overlay entry is the newest version of its key at `revision`; `events` hold one
/// entry per revision the batch created, in order.
pub struct Pending {
    /// The revision RocksDB holds (everything below the batch).
    committed: i64,
    revision: i64,
    overlay: Overlay,
    ops: Vec<RawOp>,
    events: Vec<RevisionEvents>,
}

static EMPTY_OVERLAY: Overlay = BTreeMap::new();

impl Pending {
    /// An empty batch over a store whose revision is `committed`.
    pub fn new(committed: i64) -> Pending {
        Pending { committed, revision: committed, overlay: Overlay::new(), ops: Vec::new(), events: Vec::new() }
    }

    /// The revision after the batch.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Adds a finished transaction's changes.
    pub fn absorb(&mut self, done: Finished) {
        self.revision = done.revision;
        self.overlay.extend(done.overlay);
        self.ops.extend(done.ops);
        if !done.events.is_empty() {
            self.events.push(RevisionEvents {
                revision: done.revision,
                events: done.events,
                deferred_prev: done.deferred_prev,
            });
        }
    }

    /// Writes everything, with the new revision and `applied_marker`, in one atomic
    /// RocksDB write, then records the new versions in `latest` and in `live`.
    /// Returns the events to publish, one entry per revision.
    pub fn write(
        self,
        engine: &Engine,
        applied_marker: &[u8],
        latest: &mut LatestCache,
        live: &RwLock<LiveIndex>,
    ) -> Result<Vec<RevisionEvents>> {
        let mut batch = WriteBatch::default();
        for op in self.ops {
            match op {
                RawOp::Put(cf, k, v) => batch.put_cf(engine.cf(cf), k, v),
                RawOp::Delete(cf, k) => batch.delete_cf(engine.cf(cf), k),
            }
        }
        let meta = engine.cf(CF_META);
        if self.revision != self.committed {
            batch.put_cf(meta, schema::META_REVISION, schema::encode_u64(self.revision as u64));
        }
        batch.put_cf(meta, schema::META_APPLIED, applied_marker);
        engine.write(batch)?;
        let mut changes = live::changes(&self.overlay, self.committed, self.revision).peekable();
        if changes.peek().is_some() {
            live.write().absorb(changes);
        }
        latest.absorb(&self.overlay);
        Ok(self.events)
    }
}

/// A transaction's changes, ready to join a [`Pending`] batch.
pub struct Finished {
    revision: i64,
    overlay: Overlay,
    ops: Vec<RawOp>,
    events: Vec<Event>,
    deferred_prev: Vec<DeferredPrev>,
}

/// A write transaction in progress at revision `base + 1`.
///
/// Reads see, newest first: this transaction's overlay, the pending batch's overlay,
/// the apply path's cache of newest versions (when given), then RocksDB at the
/// batch's committed revision. Ranges are counted with the store's index of live
/// keys (which holds every change RocksDB holds), corrected for the keys the two
/// overlays changed.
pub struct WriteTxn<'a> {
    engine: &'a Engine,
    /// The revision RocksDB holds.
    committed: i64,
    /// The revision before this transaction (the pending batch's).
    base: i64,
    pending: &'a Overlay,
    /// Newest versions at `committed`, when the transaction runs on the apply path.
    latest: Option<&'a LatestCache>,
    /// The store's index of live keys: counts ranges (see [`WriteTxn::count_changed`]).
    live: &'a RwLock<LiveIndex>,
    overlay: Overlay,
    ops: Vec<RawOp>,
    events: Vec<Event>,
    /// Events whose `prev_kv` lacks its value (see [`DeferredPrev`]).
    deferred_prev: Vec<DeferredPrev>,
}

impl<'a> WriteTxn<'a> {
    /// Starts a transaction over a store whose current revision is `base`, with
    /// nothing pending; `live` is the store's index of live keys.
    pub fn new(engine: &'a Engine, base: i64, live: &'a RwLock<LiveIndex>) -> WriteTxn<'a> {
        WriteTxn::with_base(engine, base, base, &EMPTY_OVERLAY, None, live)
    }

    /// Starts a transaction on top of `pending` (not yet in RocksDB); `latest` holds
    /// newest versions as of RocksDB's state below `pending`.
    pub fn on(
        engine: &'a Engine,
        pending: &'a Pending,
        latest: &'a LatestCache,
        live: &'a RwLock<LiveIndex>,
    ) -> WriteTxn<'a> {
        WriteTxn::with_base(engine, pending.committed, pending.revision, &pending.overlay, Some(latest), live)
    }

    fn with_base(
        engine: &'a Engine,
        committed: i64,
        base: i64,
        pending: &'a Overlay,
        latest: Option<&'a LatestCache>,
        live: &'a RwLock<LiveIndex>,
    ) -> WriteTxn<'a> {
        WriteTxn {
            engine,
            committed,
            base,
            pending,
            latest,
            live,
            overlay: Overlay::new(),
            ops: Vec::new(),
            events: Vec::new(),
            deferred_prev: Vec::new(),
        }
    }

    /// The engine the transaction writes to.
    pub fn engine(&self) -> &'a Engine {
        self.engine
    }

    /// The revision before this transaction.
    pub fn base(&self) -> i64 {
        self.base
    }

    /// Whether anything changed so far.
    pub fn changed(&self) -> bool {
        !self.events.is_empty()
    }

    /// The revision reads inside the transaction observe (etcd: `base + 1` once
    /// something changed, so reads see the transaction's own writes).
    pub fn read_revision(&self) -> i64 {
        if self.changed() {
            self.base + 1
        } else {
            self.base
        }
    }

    fn next_rev(&self) -> Revision {
        Revision { main: self.base + 1, sub: self.events.len() as i64 }
    }

    /// The live version of `key` as this transaction sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Version>> {
        match self.known(key) {
            Some(v) => Ok(v),
            None => View::new(self.engine, self.committed).get(key),
        }
    }

    /// The live version of `key` as a put needs it: without a long value its head
    /// only names (see [`View::prior_of`]).
    pub fn prior(&self, key: &[u8]) -> Result<Option<Prior>> {
        match self.known(key) {
            Some(v) => Ok(v.map(Prior::Loaded)),
            None => View::new(self.engine, self.committed).prior_of(key),
        }
    }

    /// The newest version of `key` if this transaction, the pending batch or the
    /// cache of newest versions knows it (`Some(None)`: deleted).
    fn known(&self, key: &[u8]) -> Option<Option<Version>> {
        if let Some(v) = self.overlay.get(key).or_else(|| self.pending.get(key)) {
            return Some(v.clone());
        }
        self.latest.and_then(|latest| latest.get(key))
    }

    /// Evaluates a Range inside the transaction at the current revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        if req.revision > 0 && req.revision < self.read_revision() {
            // A historical read inside a txn cannot see the overlay. The header, as
            // etcd's, is the transaction's revision, not the one read. Revisions of a
            // pending batch are not in RocksDB yet: such txns run on an empty batch
            // (see `needs_committed_state`).
            debug_assert!(req.revision <= self.committed, "historical read of a pending revision");
            let mut resp = range::evaluate(req, &View::new(self.engine, req.revision))?;
            resp.header = Some(ResponseHeader { revision: self.read_revision(), ..Default::default() });
            return Ok(resp);
        }
        range::evaluate(req, self)
    }

    /// Applies a Put. Checks (lease exists, key exists for `ignore_*`) were done by the caller.
    ///
    /// The previous value is read only when the request needs it (`prev_kv`,
    /// `ignore_value`) or the key's head holds it anyway; otherwise the event's
    /// `prev_kv` goes without it, marked for the hub to read ([`DeferredPrev`]).
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let prev = if req.prev_kv || req.ignore_value {
            self.get(&req.key)?.map(Prior::Loaded)
        } else {
            self.prior(&req.key)?
        };
        let rev = self.next_rev();
        let meta = prev.as_ref().map(Prior::meta);
        let value = match &prev {
            Some(Prior::Loaded(p)) if req.ignore_value => p.record.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match meta {
            Some(m) if req.ignore_lease => m.lease,
            _ => req.lease,
        };
        let record = KvRecord {
            tombstone: false,
            create_revision: meta.map_or(rev.main, |m| m.create_revision),
            version: meta.map_or(0, |m| m.version) + 1,
            lease,
            value,
        };
        let key = req.key.clone();
        self.relink_lease(&key, meta.map_or(0, |m| m.lease), lease);
        let version = Version { key: key.clone(), rev, record };
        self.write_version(&version);
        let prev_kv = prev.as_ref().map(Prior::to_key_value);
        let event = Event { r#type: EventType::Put as i32, kv: Some(version.to_key_value()), prev_kv: prev_kv.clone() };
        self.push_event(event, prev.as_ref());
        self.overlay.insert(key, Some(version));
        Ok(PutResponse {
            header: Some(ResponseHeader { revision: rev.main, ..Default::default() }),
            prev_kv: if req.prev_kv { prev_kv } else { None },
        })
    }

    /// Applies a DeleteRange. A single key deleted without `prev_kv` is found by its
    /// head alone (as a put's previous version, see [`WriteTxn::put`]).
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut victims = Vec::new();
        match &range {
            KeyRange::Single(key) if !req.prev_kv => victims.extend(self.prior(key)?),
            _ => self.scan(&range, Detail::Full, &mut |v| {
                victims.extend(v.map(Prior::Loaded));
                Some(Detail::Full)
            })?,
        }
        let mut prev_kvs = Vec::new();
        for victim in &victims {
            self.delete_key(victim);
            if req.prev_kv {
                prev_kvs.push(victim.to_key_value());
            }
        }
        Ok(DeleteRangeResponse {
            header: Some(ResponseHeader { revision: self.read_revision(), ..Default::default() }),
            deleted: victims.len() as i64,
            prev_kvs,
        })
    }

    /// Writes a tombstone for the live version `victim`.
    pub fn delete_key(&mut self, victim: &Prior) {
        let rev = self.next_rev();
        let key = victim.key().clone();
        let tombstone = Version {
            key: key.clone(),
            rev,
            record: KvRecord { tombstone: true, create_revision: 0, version: 0, lease: 0, value: Bytes::new() },
        };
        self.relink_lease(&key, victim.meta().lease, 0);
        self.write_version(&tombstone);
        self.push_event(
            Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue { key: key.clone(), mod_revision: rev.main, ..Default::default() }),
                prev_kv: Some(victim.to_key_value()),
            },
            Some(victim),
        );
        self.overlay.insert(key, None);
    }

    /// Records an event whose `prev_kv` is `prev`'s, marking it for the hub when
    /// `prev`'s value was not read.
    fn push_event(&mut self, event: Event, prev: Option<&Prior>) {
        if let Some(Prior::Named { rev, .. }) = prev {
            self.deferred_prev.push(DeferredPrev { event: self.events.len(), rev: *rev });
        }
        self.events.push(event);
    }

    fn write_version(&mut self, v: &Version) {
        let record = v.record.encode();
        self.put_raw(CF_HEAD, schema::kv_lower_bound(&v.key), schema::head_value(v.rev, &record));
        self.put_raw(CF_KV, schema::kv_key(&v.key, v.rev), record);
        self.put_raw(CF_REV, schema::rev_key(v.rev).to_vec(), v.key.to_vec());
    }

    fn relink_lease(&mut self, key: &[u8], old: i64, new: i64) {
        if old == new {
            return;
        }
        if old != 0 {
            self.delete_raw(CF_LEASE_KEYS, schema::lease_key_entry(old, key));
        }
        if new != 0 {
            self.put_raw(CF_LEASE_KEYS, schema::lease_key_entry(new, key), Vec::new());
        }
    }

    /// Adds a raw write outside the keyspace (leases, alarms, meta).
    pub fn put_raw(&mut self, cf: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(RawOp::Put(cf, key, value));
    }

    /// Adds a raw delete outside the keyspace (leases, alarms, meta).
    pub fn delete_raw(&mut self, cf: &'static str, key: Vec<u8>) {
        self.ops.push(RawOp::Delete(cf, key));
    }

    /// Ends the transaction: its changes, to be added to a [`Pending`] batch.
    pub fn finish(self) -> Finished {
        Finished {
            revision: self.read_revision(),
            overlay: self.overlay,
            ops: self.ops,
            events: self.events,
            deferred_prev: self.deferred_prev,
        }
    }
}

impl VisibleSource for WriteTxn<'_> {
    fn revision(&self) -> i64 {
        self.read_revision()
    }

    /// Only the key's head: a long value it only names is not read.
    fn key_without_value(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        Ok(self.prior(key)?.map(|p| p.to_key_value()))
    }

    fn scan(
        &self,
        range: &KeyRange,
        detail: Detail,
        visit: &mut dyn FnMut(Option<Version>) -> Option<Detail>,
    ) -> Result<()> {
        if let KeyRange::Single(key) = range {
            // One key (a Txn compare, a get inside a Txn): the same lookup order as a
            // Put's, so the apply path's cache of newest versions answers it.
            if let Some(v) = self.get(key)? {
                visit(if detail == Detail::Full { Some(v) } else { None });
            }
            return Ok(());
        }
        let base = View::new(self.engine, self.committed);
        let changes = self.changes_in(range);
        if changes.is_empty() {
            return base.scan(range, detail, visit);
        }
        // Merge the stored versions with the changes, in key order, as the caller
        // consumes them: a range with a limit stops reading at its limit.
        let mut changes = changes.into_iter().peekable();
        let mut detail = detail;
        let mut stopped = false;
        let mut emit = |v: &Version| {
            let item = if detail == Detail::Full { Some(v.clone()) } else { None };
            visit(item).map(|next| detail = next).is_some()
        };
        base.scan(range, Detail::Full, |stored: Option<Version>| {
            // Keys are needed to merge, so stored versions come in full.
            let Some(stored) = stored else { return Some(Detail::Full) };
            while let Some((_, changed)) = changes.next_if(|(key, _)| **key < stored.key) {
                if changed.as_ref().is_some_and(|v| !emit(v)) {
                    stopped = true;
                    return None;
                }
            }
            let newest = match changes.next_if(|(key, _)| **key == stored.key) {
                Some((_, changed)) => changed.as_ref(),
                None => Some(&stored),
            };
            if newest.is_some_and(|v| !emit(v)) {
                stopped = true;
                return None;
            }
            Some(Detail::Full)
        })?;
        if !stopped {
            for (_, changed) in changes {
                if changed.as_ref().is_some_and(|v| !emit(v)) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Counts with the index at the committed revision, then corrects for the keys
    /// of `range` the pending batch and this transaction changed.
    fn count(&self, range: &KeyRange) -> Result<Option<i64>> {
        if let KeyRange::Single(_) = range {
            return Ok(None);
        }
        let base = View::new(self.engine, self.committed).with_live(self.live);
        let Some(stored) = base.count(range)? else { return Ok(None) };
        Ok(Some(stored + self.count_changed(&base, range)?))
    }
}

impl WriteTxn<'_> {
    /// For a count: how many more keys of `range` are live after the pending batch
    /// and this transaction than at the committed revision (`base`), negative when
    /// they deleted more than they created.
    fn count_changed(&self, base: &View<'_>, range: &KeyRange) -> Result<i64> {
        let mut delta = 0;
        for (key, now) in self.changes_in(range) {
            let before = base.get(key)?.is_some();
            delta += i64::from(now.is_some()) - i64::from(before);
        }
        Ok(delta)
    }

    /// The keys of `range` the pending batch and this transaction changed, with
    /// their newest version (`None`: deleted); the transaction's own changes take
    /// precedence over the batch's.
    fn changes_in(&self, range: &KeyRange) -> BTreeMap<&Bytes, &Option<Version>> {
        let mut changes = BTreeMap::new();
        for overlay in [self.pending, &self.overlay] {
            changes.extend(in_range(overlay, range));
        }
        changes
    }
}

/// The entries of `overlay` in `range`, in key order.
fn in_range<'o>(overlay: &'o Overlay, range: &KeyRange) -> impl Iterator<Item = (&'o Bytes, &'o Option<Version>)> {
    use std::ops::Bound;
    let start = Bound::Included(range.start());
    let end = match range {
        KeyRange::Single(k) => Bound::Included(k.as_slice()),
        KeyRange::Bounded { end, .. } => Bound::Excluded(end.as_slice()),
        KeyRange::From(_) => Bound::Unbounded,
    };
    // `BTreeMap::range` panics on a start after the end.
    (!range.is_empty()).then(|| overlay.range::<[u8], _>((start, end))).into_iter().flatten()
}
