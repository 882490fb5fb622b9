//! One write transaction: the changes of one applied request, all at one revision.
//!
//! Changes accumulate in a RocksDB write batch and in an overlay (key → newest
//! version after this transaction) so later operations of the same transaction see
//! earlier ones, as in etcd. [`WriteTxn::finish`] writes the batch together with the
//! new revision and the applied-entry marker, atomically.

use std::collections::BTreeMap;

use bytes::Bytes;
use rocksdb::WriteBatch;
use strake_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
};
use strake_proto::mvccpb::{event::EventType, Event, KeyValue};

use crate::engine::Engine;
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::range::{self, VisibleSource};
use crate::revision::Revision;
use crate::schema::{self, KvRecord, CF_HEAD, CF_KV, CF_LEASE_KEYS, CF_META, CF_REV};
use crate::view::{Detail, Version, View};

/// A write transaction in progress at revision `base + 1`.
pub struct WriteTxn<'a> {
    engine: &'a Engine,
    base: i64,
    overlay: BTreeMap<Bytes, Option<Version>>,
    batch: WriteBatch,
    events: Vec<Event>,
}

/// What a finished write transaction produced.
#[derive(Debug)]
pub struct Committed {
    /// The store's revision after the transaction (`base` if nothing changed).
    pub revision: i64,
    /// The events of the transaction, in change order, all at `revision`.
    pub events: Vec<Event>,
}

impl<'a> WriteTxn<'a> {
    /// Starts a transaction over a store whose current revision is `base`.
    pub fn new(engine: &'a Engine, base: i64) -> WriteTxn<'a> {
        WriteTxn { engine, base, overlay: BTreeMap::new(), batch: WriteBatch::default(), events: Vec::new() }
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
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => View::new(self.engine, self.base).get(key),
        }
    }

    /// Evaluates a Range inside the transaction at the current revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        if req.revision > 0 && req.revision < self.read_revision() {
            // A historical read inside a txn cannot see the overlay. The header, as
            // etcd's, is the transaction's revision, not the one read.
            let mut resp = range::evaluate(req, &View::new(self.engine, req.revision))?;
            resp.header = Some(ResponseHeader { revision: self.read_revision(), ..Default::default() });
            return Ok(resp);
        }
        range::evaluate(req, self)
    }

    /// Applies a Put. Checks (lease exists, key exists for `ignore_*`) were done by the caller.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let prev = self.get(&req.key)?;
        let rev = self.next_rev();
        let (value, lease) = match &prev {
            Some(p) => (
                if req.ignore_value { p.record.value.clone() } else { req.value.clone() },
                if req.ignore_lease { p.record.lease } else { req.lease },
            ),
            None => (req.value.clone(), req.lease),
        };
        let record = KvRecord {
            tombstone: false,
            create_revision: prev.as_ref().map_or(rev.main, |p| p.record.create_revision),
            version: prev.as_ref().map_or(0, |p| p.record.version) + 1,
            lease,
            value,
        };
        let key = req.key.clone();
        self.relink_lease(&key, prev.as_ref().map_or(0, |p| p.record.lease), lease);
        let version = Version { key: key.clone(), rev, record };
        self.write_version(&version);
        let prev_kv = prev.as_ref().map(Version::to_key_value);
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(version.to_key_value()),
            prev_kv: prev_kv.clone(),
        });
        self.overlay.insert(key, Some(version));
        Ok(PutResponse {
            header: Some(ResponseHeader { revision: rev.main, ..Default::default() }),
            prev_kv: if req.prev_kv { prev_kv } else { None },
        })
    }

    /// Applies a DeleteRange.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut victims = Vec::new();
        self.scan(&range, Detail::Full, &mut |v| {
            victims.extend(v);
            Some(Detail::Full)
        })?;
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
    pub fn delete_key(&mut self, victim: &Version) {
        let rev = self.next_rev();
        let tombstone = Version {
            key: victim.key.clone(),
            rev,
            record: KvRecord { tombstone: true, create_revision: 0, version: 0, lease: 0, value: Bytes::new() },
        };
        self.relink_lease(&victim.key, victim.record.lease, 0);
        self.write_version(&tombstone);
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue { key: victim.key.clone(), mod_revision: rev.main, ..Default::default() }),
            prev_kv: Some(victim.to_key_value()),
        });
        self.overlay.insert(victim.key.clone(), None);
    }

    fn write_version(&mut self, v: &Version) {
        self.batch.put_cf(self.engine.cf(CF_KV), schema::kv_key(&v.key, v.rev), v.record.encode());
        self.batch.put_cf(self.engine.cf(CF_REV), schema::rev_key(v.rev), &v.key);
        let head = schema::head_value(v.rev, v.record.tombstone);
        self.batch.put_cf(self.engine.cf(CF_HEAD), schema::kv_lower_bound(&v.key), head);
    }

    fn relink_lease(&mut self, key: &[u8], old: i64, new: i64) {
        if old == new {
            return;
        }
        let cf = self.engine.cf(CF_LEASE_KEYS);
        if old != 0 {
            self.batch.delete_cf(cf, schema::lease_key_entry(old, key));
        }
        if new != 0 {
            self.batch.put_cf(cf, schema::lease_key_entry(new, key), []);
        }
    }

    /// Adds a raw change outside the keyspace (leases, alarms, meta) to the batch.
    pub fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// Writes everything, with the new revision and `applied_marker`, in one batch.
    pub fn finish(mut self, applied_marker: &[u8]) -> Result<Committed> {
        let revision = self.read_revision();
        let meta = self.engine.cf(CF_META);
        if self.changed() {
            self.batch.put_cf(meta, schema::META_REVISION, schema::encode_u64(revision as u64));
        }
        self.batch.put_cf(meta, schema::META_APPLIED, applied_marker);
        self.engine.write(self.batch)?;
        Ok(Committed { revision, events: self.events })
    }
}

impl VisibleSource for WriteTxn<'_> {
    fn revision(&self) -> i64 {
        self.read_revision()
    }

    fn scan(
        &self,
        range: &KeyRange,
        detail: Detail,
        visit: &mut dyn FnMut(Option<Version>) -> Option<Detail>,
    ) -> Result<()> {
        let base = View::new(self.engine, self.base);
        if self.overlay.is_empty() {
            return base.scan(range, detail, visit);
        }
        // Merge the stored versions with this transaction's overlay, in key order.
        let mut stored = Vec::new();
        base.scan(range, Detail::Full, &mut |v| {
            stored.extend(v);
            Some(Detail::Full)
        })?;
        let mut merged: BTreeMap<Bytes, Version> = stored.into_iter().map(|v| (v.key.clone(), v)).collect();
        for (key, v) in &self.overlay {
            if range.contains(key) {
                match v {
                    Some(v) => merged.insert(key.clone(), v.clone()),
                    None => merged.remove(key),
                };
            }
        }
        let mut detail = detail;
        for (_, v) in merged {
            let item = if detail == Detail::Full { Some(v) } else { None };
            match visit(item) {
                Some(d) => detail = d,
                None => break,
            }
        }
        Ok(())
    }
}
