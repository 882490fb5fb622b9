//! A plain in-memory model of etcd's MVCC keyspace, used as the specification the
//! real [`strake_store::Store`] is checked against, plus request generators.
//!
//! The model keeps the whole keyspace at every revision (`states[r]`), so reads at
//! old revisions are trivial. It follows etcd (server/etcdserver/txn/*.go,
//! server/storage/mvcc/kvstore_txn.go) and /work/shared/reference/etcd-api-facts.md.
//! It is deliberately naive: clarity over speed.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use strake_proto::etcdserverpb::request_op::Request as Op;
use strake_proto::etcdserverpb::response_op::Response as OpResp;
use strake_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use strake_proto::mvccpb::{event::EventType, Event, KeyValue};
use strake_proto::strakepb::{write_request::Request as W, write_result::Result as R, WriteRequest};
use strake_store::StoreError;

/// The small key space: keys that are prefixes of each other so ranges collide.
pub const KEYS: [&str; 6] = ["a", "ab", "abc", "b", "ba", "c"];
/// 1,100 bytes (see `VALUES`).
macro_rules! long_value {
    () => {
        concat!(
            hundred!(),
            hundred!(),
            hundred!(),
            hundred!(),
            hundred!(),
            hundred!(),
            hundred!(),
            hundred!(),
            hundred!(),
            hundred!(),
            hundred!()
        )
    };
}
/// 100 bytes.
macro_rules! hundred {
    () => {
        "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
    };
}
/// Values (few, so VALUE compares and VALUE sorts see ties). The last is longer than
/// a key's head holds whole (`schema::HEAD_WHOLE_RECORD_LIMIT`), so reads of such
/// versions go through `kv`.
pub const VALUES: [&str; 5] = ["", "x", "y", "zz", long_value!()];

/// Lease IDs the generators use.
pub const LEASES: [i64; 3] = [1, 2, 3];
/// TTL of every granted lease.
pub const TTL: i64 = 100;

pub fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// Whether `k` is in etcd's `[key, range_end)` (empty end: just `key`; `"\0"`: every key `>= key`).
pub fn in_range(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => key <= k && k < end,
    }
}

/// The state of the keyspace at one revision.
pub type State = BTreeMap<Bytes, KeyValue>;

/// The model store.
#[derive(Debug, Clone)]
pub struct Model {
    /// `states[r]` is the keyspace at revision `r` (`states[0]` is unused and empty).
    pub states: Vec<State>,
    /// Reads below this revision fail (0: never compacted).
    pub compact: i64,
    /// Lease ID -> granted TTL.
    pub leases: BTreeMap<i64, i64>,
    /// The events of each revision, in order, each with its `prev_kv` (etcd's: the
    /// previous live version, none for a create).
    pub events: BTreeMap<i64, Vec<Event>>,
}

impl Default for Model {
    fn default() -> Self {
        Model { states: vec![State::new(), State::new()], compact: 0, leases: BTreeMap::new(), events: BTreeMap::new() }
    }
}

/// One write transaction in progress on the model.
pub struct ModelTxn {
    pub base: i64,
    pub cur: State,
    pub events: Vec<Event>,
}

impl ModelTxn {
    /// etcd's `storeTxnWrite` read revision: `base + 1` once something changed.
    pub fn read_rev(&self) -> i64 {
        self.base + i64::from(!self.events.is_empty())
    }

    pub fn put(&mut self, p: &PutRequest) -> PutResponse {
        let prev = self.cur.get(&p.key).cloned();
        let rev = self.base + 1;
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |v| v.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(0, |v| v.version) + 1,
            value: if p.ignore_value { prev.as_ref().unwrap().value.clone() } else { p.value.clone() },
            lease: if p.ignore_lease { prev.as_ref().unwrap().lease } else { p.lease },
        };
        self.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv.clone()), prev_kv: prev.clone() });
        self.cur.insert(p.key.clone(), kv);
        PutResponse { header: header(rev), prev_kv: if p.prev_kv { prev } else { None } }
    }

    pub fn delete(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let victims: Vec<KeyValue> =
            self.cur.values().filter(|kv| in_range(&kv.key, &d.key, &d.range_end)).cloned().collect();
        for v in &victims {
            self.delete_key(v);
        }
        DeleteRangeResponse {
            header: header(self.read_rev()),
            deleted: victims.len() as i64,
            prev_kvs: if d.prev_kv { victims } else { vec![] },
        }
    }

    fn delete_key(&mut self, v: &KeyValue) {
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue { key: v.key.clone(), mod_revision: self.base + 1, ..Default::default() }),
            prev_kv: Some(v.clone()),
        });
        self.cur.remove(&v.key);
    }
}

/// etcd's Range evaluation over one state (`executeRange`): fetch, filter on
/// revisions, sort (a non-KEY target without an order ascends), truncate to the
/// limit, strip values; `count` ignores limit and filters.
pub fn eval_range(state: &State, r: &RangeRequest, header_rev: i64) -> RangeResponse {
    let mut kvs: Vec<KeyValue> = state.values().filter(|kv| in_range(&kv.key, &r.key, &r.range_end)).cloned().collect();
    let count = kvs.len() as i64;
    if r.count_only {
        return RangeResponse { header: header(header_rev), kvs: vec![], more: false, count };
    }
    // etcd fetches only `limit + 1` keys (in key order) unless the *requested* order
    // is not NONE or a revision filter is set, even when a non-KEY target then sorts
    // them ascending: with order NONE the sort sees only that first window.
    let filtered =
        r.min_mod_revision != 0 || r.max_mod_revision != 0 || r.min_create_revision != 0 || r.max_create_revision != 0;
    if r.sort_order == SortOrder::None as i32 && !filtered && r.limit > 0 {
        kvs.truncate(r.limit as usize + 1);
    }
    kvs.retain(|kv| {
        (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
    });
    let target = SortTarget::try_from(r.sort_target).unwrap();
    let mut order = SortOrder::try_from(r.sort_order).unwrap();
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    let by = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    // Stable: ties stay in key order (as Go's insertion sort does for small slices).
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by(by),
        SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    RangeResponse { header: header(header_rev), kvs, more, count }
}

/// etcd's `applyCompare`: every key in range must satisfy it; no key compares as a
/// zero KeyValue, except VALUE which is then false.
pub fn compare_holds(c: &Compare, state: &State) -> bool {
    let target = CompareTarget::try_from(c.target).unwrap();
    let kvs: Vec<&KeyValue> = state.values().filter(|kv| in_range(&kv.key, &c.key, &c.range_end)).collect();
    if kvs.is_empty() {
        return target != CompareTarget::Value && compare_kv(c, target, &KeyValue::default());
    }
    kvs.iter().all(|kv| compare_kv(c, target, kv))
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    let ord = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value.as_ref().cmp(v.as_ref()),
        (CompareTarget::Value, _) => kv.value.as_ref().cmp(&b""[..]),
        (CompareTarget::Version, Some(TargetUnion::Version(n))) => kv.version.cmp(n),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(n))) => kv.create_revision.cmp(n),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(n))) => kv.mod_revision.cmp(n),
        (CompareTarget::Lease, Some(TargetUnion::Lease(n))) => kv.lease.cmp(n),
        (CompareTarget::Version, _) => kv.version.cmp(&0),
        (CompareTarget::Create, _) => kv.create_revision.cmp(&0),
        (CompareTarget::Mod, _) => kv.mod_revision.cmp(&0),
        (CompareTarget::Lease, _) => kv.lease.cmp(&0),
    };
    match CompareResult::try_from(c.result).unwrap() {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

fn branch(t: &TxnRequest, ok: bool) -> &[RequestOp] {
    if ok {
        &t.success
    } else {
        &t.failure
    }
}

impl Model {
    /// The current revision.
    pub fn rev(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    pub fn current(&self) -> &State {
        self.states.last().unwrap()
    }

    /// Keys attached to lease `id`: exactly the live keys whose version carries it.
    pub fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.current().values().filter(|kv| kv.lease == id).map(|kv| kv.key.to_vec()).collect()
    }

    fn begin(&self) -> ModelTxn {
        ModelTxn { base: self.rev(), cur: self.current().clone(), events: vec![] }
    }

    fn commit(&mut self, t: ModelTxn) {
        if !t.events.is_empty() {
            let rev = t.base + 1;
            self.states.push(t.cur);
            self.events.insert(rev, t.events);
        }
    }

    /// A standalone Range (etcd's `rangeKeys`): the header carries the *current* revision.
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let current = self.rev();
        if r.revision > current {
            return Err(StoreError::FutureRevision);
        }
        let rev = if r.revision <= 0 { current } else { r.revision };
        if rev < self.compact {
            return Err(StoreError::Compacted);
        }
        Ok(eval_range(&self.states[rev as usize], r, current))
    }

    /// Applies one write request as `Store::apply` does; errors leave the model unchanged.
    pub fn apply(&mut self, req: &WriteRequest) -> R {
        match self.try_apply(req) {
            Ok(r) => r,
            Err(e) => R::Error(strake_store::store::error_result(&e)),
        }
    }

    fn try_apply(&mut self, req: &WriteRequest) -> Result<R, StoreError> {
        match req.request.as_ref().unwrap() {
            W::Put(p) => {
                // etcd's txn.Put: the lease first, then ignore_* needs the key.
                if p.lease != 0 && !self.leases.contains_key(&p.lease) {
                    return Err(StoreError::LeaseNotFound);
                }
                if (p.ignore_value || p.ignore_lease) && !self.current().contains_key(&p.key) {
                    return Err(StoreError::KeyNotFound);
                }
                let mut t = self.begin();
                let resp = t.put(p);
                self.commit(t);
                Ok(R::Put(resp))
            }
            W::DeleteRange(d) => {
                let mut t = self.begin();
                let resp = t.delete(d);
                self.commit(t);
                Ok(R::DeleteRange(resp))
            }
            W::Txn(tr) => Ok(R::Txn(self.txn(tr)?)),
            W::Compaction(c) => Ok(R::Compaction(self.compaction(c)?)),
            W::LeaseGrant(g) => Ok(R::LeaseGrant(self.lease_grant(g)?)),
            W::LeaseRevoke(r) => Ok(R::LeaseRevoke(self.lease_revoke(r)?)),
            other => panic!("the model does not handle {other:?}"),
        }
    }

    fn txn(&mut self, tr: &TxnRequest) -> Result<TxnResponse, StoreError> {
        // Every compare (nested ones too) sees the state before the txn; every op on
        // the chosen path is checked against it before anything runs.
        let pre = self.current().clone();
        self.check_txn_ops(tr, &pre)?;
        let mut t = self.begin();
        let mut resp = self.run_txn(tr, &pre, &mut t);
        resp.header = header(t.read_rev());
        self.commit(t);
        Ok(resp)
    }

    fn check_txn_ops(&self, tr: &TxnRequest, pre: &State) -> Result<(), StoreError> {
        let ok = tr.compare.iter().all(|c| compare_holds(c, pre));
        for op in branch(tr, ok) {
            match op.request.as_ref().unwrap() {
                Op::RequestRange(r) => {
                    if r.revision > self.rev() {
                        return Err(StoreError::FutureRevision);
                    }
                    if r.revision > 0 && r.revision < self.compact {
                        return Err(StoreError::Compacted);
                    }
                }
                Op::RequestPut(p) => {
                    if (p.ignore_value || p.ignore_lease) && !pre.contains_key(&p.key) {
                        return Err(StoreError::KeyNotFound);
                    }
                    if p.lease != 0 && !self.leases.contains_key(&p.lease) {
                        return Err(StoreError::LeaseNotFound);
                    }
                }
                Op::RequestDeleteRange(_) => {}
                Op::RequestTxn(nested) => self.check_txn_ops(nested, pre)?,
            }
        }
        Ok(())
    }

    /// Runs the chosen branch. Nested txn responses carry an empty header (etcd's
    /// `newTxnResp`); put headers are `base + 1`; delete and range headers the
    /// transaction's revision at that point.
    fn run_txn(&self, tr: &TxnRequest, pre: &State, t: &mut ModelTxn) -> TxnResponse {
        let ok = tr.compare.iter().all(|c| compare_holds(c, pre));
        let mut responses = vec![];
        for op in branch(tr, ok) {
            let resp = match op.request.as_ref().unwrap() {
                Op::RequestRange(r) => {
                    let now = t.read_rev();
                    let state =
                        if r.revision > 0 && r.revision < now { &self.states[r.revision as usize] } else { &t.cur };
                    OpResp::ResponseRange(eval_range(state, r, now))
                }
                Op::RequestPut(p) => OpResp::ResponsePut(t.put(p)),
                Op::RequestDeleteRange(d) => OpResp::ResponseDeleteRange(t.delete(d)),
                Op::RequestTxn(nested) => OpResp::ResponseTxn(self.run_txn(nested, pre, t)),
            };
            responses.push(ResponseOp { response: Some(resp) });
        }
        TxnResponse { header: Some(ResponseHeader::default()), succeeded: ok, responses }
    }

    fn compaction(&mut self, c: &CompactionRequest) -> Result<CompactionResponse, StoreError> {
        if c.revision <= self.compact {
            return Err(StoreError::Compacted);
        }
        if c.revision > self.rev() {
            return Err(StoreError::FutureRevision);
        }
        self.compact = c.revision;
        Ok(CompactionResponse { header: header(self.rev()) })
    }

    fn lease_grant(&mut self, g: &LeaseGrantRequest) -> Result<LeaseGrantResponse, StoreError> {
        if self.leases.contains_key(&g.id) {
            return Err(StoreError::LeaseExists);
        }
        self.leases.insert(g.id, g.ttl);
        Ok(LeaseGrantResponse { header: header(self.rev()), id: g.id, ttl: g.ttl, error: String::new() })
    }

    fn lease_revoke(&mut self, r: &LeaseRevokeRequest) -> Result<LeaseRevokeResponse, StoreError> {
        if self.leases.remove(&r.id).is_none() {
            return Err(StoreError::LeaseNotFound);
        }
        let mut t = self.begin();
        let victims: Vec<KeyValue> = t.cur.values().filter(|kv| kv.lease == r.id).cloned().collect();
        for v in &victims {
            t.delete_key(v);
        }
        let resp = LeaseRevokeResponse { header: header(t.read_rev()) };
        self.commit(t);
        Ok(resp)
    }
}

/// The ranges a txn's ops write, for the "key written twice" rule (etcd's
/// `checkIntervals`): a put may not repeat a put nor fall in a delete of the same
/// level or below; deletes may overlap; the two branches of a nested txn are
/// exclusive. `"\0"` as range_end means every key from `key` on.
pub fn txn_writes_a_key_twice(ops: &[RequestOp]) -> bool {
    /// The keys put and the (key, range_end) deleted, `None` on a conflict.
    type Writes = Option<(BTreeSet<Bytes>, Vec<(Bytes, Bytes)>)>;
    fn walk(ops: &[RequestOp]) -> Writes {
        let mut dels: Vec<(Bytes, Bytes)> = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some(Op::RequestDeleteRange(d)) => Some((d.key.clone(), d.range_end.clone())),
                _ => None,
            })
            .collect();
        let hits = |dels: &[(Bytes, Bytes)], k: &[u8]| dels.iter().any(|(key, end)| in_range(k, key, end));
        let mut puts = BTreeSet::new();
        for op in ops {
            let Some(Op::RequestTxn(t)) = &op.request else {
                continue;
            };
            let (puts_then, dels_then) = walk(&t.success)?;
            let (puts_else, dels_else) = walk(&t.failure)?;
            for k in &puts_then {
                if puts.contains(k) || hits(&dels, k) {
                    return None;
                }
                puts.insert(k.clone());
            }
            for k in &puts_else {
                if (puts.contains(k) && !puts_then.contains(k)) || hits(&dels, k) {
                    return None;
                }
                puts.insert(k.clone());
            }
            dels.extend(dels_then);
            dels.extend(dels_else);
        }
        for op in ops {
            let Some(Op::RequestPut(p)) = &op.request else {
                continue;
            };
            if puts.contains(&p.key) || hits(&dels, &p.key) {
                return None;
            }
            puts.insert(p.key.clone());
        }
        Some((puts, dels))
    }
    walk(ops).is_none()
}

pub fn txn_is_duplicate(t: &TxnRequest) -> bool {
    txn_writes_a_key_twice(&t.success) || txn_writes_a_key_twice(&t.failure)
}

// ---------------------------------------------------------------------------------
// Generators. Revisions are drawn as "selectors" and resolved against the current
// revision when the op runs, so they hit the interesting values (old, compacted,
// current, future) whatever the history looks like.
// ---------------------------------------------------------------------------------

/// Which keys an op addresses.
#[derive(Debug, Clone)]
pub enum KeySel {
    Single(usize),
    Prefix(usize),
    FromKey(usize),
    Between(usize, usize),
    All,
}

impl KeySel {
    pub fn key_and_end(&self) -> (Bytes, Bytes) {
        let k = |i: &usize| Bytes::from(KEYS[*i]);
        match self {
            KeySel::Single(i) => (k(i), Bytes::new()),
            KeySel::Prefix(i) => (k(i), Bytes::from(strake_store::prefix_end(KEYS[*i].as_bytes()))),
            KeySel::FromKey(i) => (k(i), Bytes::from_static(b"\0")),
            // May be empty (end <= start): etcd then matches nothing.
            KeySel::Between(i, j) => (k(i), k(j)),
            KeySel::All => (Bytes::from_static(b"\0"), Bytes::from_static(b"\0")),
        }
    }
}

pub fn key_sel() -> impl Strategy<Value = KeySel> {
    let i = 0..KEYS.len();
    prop_oneof![
        4 => i.clone().prop_map(KeySel::Single),
        2 => i.clone().prop_map(KeySel::Prefix),
        1 => i.clone().prop_map(KeySel::FromKey),
        1 => (i.clone(), i).prop_map(|(a, b)| KeySel::Between(a, b)),
        1 => Just(KeySel::All),
    ]
}

/// A revision chosen when the op runs: 0 ("latest"), or one of `1..=current+1`.
#[derive(Debug, Clone, Copy)]
pub struct RevSel(pub u16);

impl RevSel {
    pub fn resolve(self, current: i64) -> i64 {
        if self.0 % 2 == 1 {
            1 + (self.0 as i64 / 2) % (current + 1)
        } else {
            0
        }
    }

    /// Never "latest": for compaction.
    pub fn resolve_positive(self, current: i64) -> i64 {
        1 + (self.0 as i64) % (current + 1)
    }
}

pub fn rev_sel() -> impl Strategy<Value = RevSel> {
    any::<u16>().prop_map(RevSel)
}

#[derive(Debug, Clone)]
pub struct PutSpec {
    pub key: usize,
    pub value: usize,
    pub lease: Option<usize>,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

impl PutSpec {
    pub fn request(&self) -> PutRequest {
        PutRequest {
            key: Bytes::from(KEYS[self.key]),
            // A value or lease together with ignore_* is refused by the API layer.
            value: if self.ignore_value { Bytes::new() } else { Bytes::from(VALUES[self.value]) },
            lease: if self.ignore_lease { 0 } else { self.lease.map_or(0, |i| LEASES[i]) },
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        }
    }
}

pub fn put_spec() -> impl Strategy<Value = PutSpec> {
    (
        0..KEYS.len(),
        0..VALUES.len(),
        proptest::option::weighted(0.2, 0..LEASES.len()),
        any::<bool>(),
        proptest::bool::weighted(0.08),
        proptest::bool::weighted(0.08),
    )
        .prop_map(|(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutSpec {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        })
}

#[derive(Debug, Clone)]
pub struct RangeSpec {
    pub keys: KeySel,
    pub rev: RevSel,
    pub limit: i64,
    pub sort_order: i32,
    pub sort_target: i32,
    pub keys_only: bool,
    pub count_only: bool,
    /// (min_mod, max_mod, min_create, max_create), each 0 (off) or a small revision.
    pub filters: [i64; 4],
}

impl RangeSpec {
    pub fn request(&self, current: i64) -> RangeRequest {
        let (key, range_end) = self.keys.key_and_end();
        RangeRequest {
            key,
            range_end,
            limit: self.limit,
            revision: self.rev.resolve(current),
            sort_order: self.sort_order,
            sort_target: self.sort_target,
            serializable: false,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.filters[0],
            max_mod_revision: self.filters[1],
            min_create_revision: self.filters[2],
            max_create_revision: self.filters[3],
        }
    }
}

pub fn range_spec() -> impl Strategy<Value = RangeSpec> {
    let filter = prop_oneof![7 => Just(0i64), 1 => 1i64..30];
    (
        key_sel(),
        rev_sel(),
        prop_oneof![2 => Just(0i64), 3 => 1i64..3, 1 => Just(-1i64)],
        0i32..3,
        0i32..5,
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.1),
        [filter.clone(), filter.clone(), filter.clone(), filter],
    )
        .prop_map(|(keys, rev, limit, sort_order, sort_target, keys_only, count_only, filters)| RangeSpec {
            keys,
            rev,
            limit,
            sort_order,
            sort_target,
            keys_only,
            count_only,
            filters,
        })
}

#[derive(Debug, Clone)]
pub struct CompareSpec {
    pub keys: KeySel,
    pub target: i32,
    pub result: i32,
    pub int: i64,
    pub value: usize,
}

impl CompareSpec {
    pub fn compare(&self) -> Compare {
        let (key, range_end) = self.keys.key_and_end();
        let target = CompareTarget::try_from(self.target).unwrap();
        let target_union = Some(match target {
            CompareTarget::Version => TargetUnion::Version(self.int % 4),
            CompareTarget::Create => TargetUnion::CreateRevision(self.int),
            CompareTarget::Mod => TargetUnion::ModRevision(self.int),
            CompareTarget::Value => TargetUnion::Value(Bytes::from(VALUES[self.value])),
            CompareTarget::Lease => TargetUnion::Lease(self.int % 4),
        });
        Compare { result: self.result, target: self.target, key, range_end, target_union }
    }
}

pub fn compare_spec() -> impl Strategy<Value = CompareSpec> {
    let keys = prop_oneof![4 => (0..KEYS.len()).prop_map(KeySel::Single), 1 => key_sel()];
    (keys, 0i32..5, 0i32..4, 0i64..12, 0..VALUES.len()).prop_map(|(keys, target, result, int, value)| CompareSpec {
        keys,
        target,
        result,
        int,
        value,
    })
}

#[derive(Debug, Clone)]
pub enum TxnOpSpec {
    Range(RangeSpec),
    Put(PutSpec),
    Delete(KeySel, bool),
    Txn(TxnSpec),
}

#[derive(Debug, Clone)]
pub struct TxnSpec {
    pub compare: Vec<CompareSpec>,
    pub success: Vec<TxnOpSpec>,
    pub failure: Vec<TxnOpSpec>,
}

impl TxnSpec {
    pub fn request(&self, current: i64) -> TxnRequest {
        let ops = |ops: &[TxnOpSpec]| -> Vec<RequestOp> {
            ops.iter()
                .map(|o| RequestOp {
                    request: Some(match o {
                        TxnOpSpec::Range(r) => {
                            let mut req = r.request(current);
                            // Negative revisions in a txn are an etcd oddity (compared with
                            // the -1 "never compacted" marker); not generated.
                            req.revision = req.revision.max(0);
                            Op::RequestRange(req)
                        }
                        TxnOpSpec::Put(p) => Op::RequestPut(p.request()),
                        TxnOpSpec::Delete(k, prev_kv) => {
                            let (key, range_end) = k.key_and_end();
                            Op::RequestDeleteRange(DeleteRangeRequest { key, range_end, prev_kv: *prev_kv })
                        }
                        TxnOpSpec::Txn(t) => Op::RequestTxn(t.request(current)),
                    }),
                })
                .collect()
        };
        TxnRequest {
            compare: self.compare.iter().map(CompareSpec::compare).collect(),
            success: ops(&self.success),
            failure: ops(&self.failure),
        }
    }
}

fn txn_op_spec(depth: u32) -> BoxedStrategy<TxnOpSpec> {
    let leaf = prop_oneof![
        3 => range_spec().prop_map(TxnOpSpec::Range),
        3 => put_spec().prop_map(TxnOpSpec::Put),
        2 => (key_sel(), any::<bool>()).prop_map(|(k, p)| TxnOpSpec::Delete(k, p)),
    ];
    if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![6 => leaf, 1 => txn_spec(depth - 1).prop_map(TxnOpSpec::Txn)].boxed()
    }
}

pub fn txn_spec(depth: u32) -> BoxedStrategy<TxnSpec> {
    (
        proptest::collection::vec(compare_spec(), 0..3),
        proptest::collection::vec(txn_op_spec(depth), 0..4),
        proptest::collection::vec(txn_op_spec(depth), 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnSpec { compare, success, failure })
        .boxed()
}

/// One step of a generated history.
#[derive(Debug, Clone)]
pub enum Step {
    Put(PutSpec),
    Delete(KeySel, bool),
    Txn(TxnSpec),
    Range(RangeSpec),
    Compact(RevSel),
    LeaseGrant(usize),
    LeaseRevoke(usize),
    Reopen,
}

/// Steps that write (and no reads, compactions or reopens): for watch tests.
pub fn write_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => put_spec().prop_map(Step::Put),
        2 => (key_sel(), any::<bool>()).prop_map(|(k, p)| Step::Delete(k, p)),
        3 => txn_spec(1).prop_map(Step::Txn),
        1 => (0..LEASES.len()).prop_map(Step::LeaseGrant),
        1 => (0..LEASES.len()).prop_map(Step::LeaseRevoke),
    ]
}

pub fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => put_spec().prop_map(Step::Put),
        2 => (key_sel(), any::<bool>()).prop_map(|(k, p)| Step::Delete(k, p)),
        4 => txn_spec(2).prop_map(Step::Txn),
        4 => range_spec().prop_map(Step::Range),
        1 => rev_sel().prop_map(Step::Compact),
        2 => (0..LEASES.len()).prop_map(Step::LeaseGrant),
        1 => (0..LEASES.len()).prop_map(Step::LeaseRevoke),
        1 => Just(Step::Reopen),
    ]
}

/// The write request of a step at the current revision, `None` for reads, reopens
/// and txns the API layer refuses (a key written twice).
pub fn write_request(step: &Step, current: i64) -> Option<WriteRequest> {
    let request = match step {
        Step::Put(p) => W::Put(p.request()),
        Step::Delete(k, prev_kv) => {
            let (key, range_end) = k.key_and_end();
            W::DeleteRange(DeleteRangeRequest { key, range_end, prev_kv: *prev_kv })
        }
        Step::Txn(t) => {
            let req = t.request(current);
            if txn_is_duplicate(&req) {
                return None;
            }
            W::Txn(req)
        }
        Step::Compact(r) => W::Compaction(CompactionRequest { revision: r.resolve_positive(current), physical: false }),
        Step::LeaseGrant(i) => W::LeaseGrant(LeaseGrantRequest { ttl: TTL, id: LEASES[*i] }),
        Step::LeaseRevoke(i) => W::LeaseRevoke(LeaseRevokeRequest { id: LEASES[*i] }),
        Step::Range(_) | Step::Reopen => return None,
    };
    Some(WriteRequest { request: Some(request), ..Default::default() })
}

/// A Range over every key at `revision`.
pub fn range_all(revision: i64) -> RangeRequest {
    RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        revision,
        ..Default::default()
    }
}

/// Compact debugging output of a write result.
pub fn short(r: &R) -> String {
    format!("{r:?}")
}

/// Applies a write step to both the store and the model and checks they answer the
/// same. Steps that are not writes (or txns the API layer refuses) are skipped.
pub fn apply_step(store: &strake_store::Store, model: &mut Model, step: &Step, marker: u64) {
    let Some(req) = write_request(step, model.rev()) else {
        return;
    };
    let got = store.apply(&req, &marker.to_be_bytes()).expect("no engine error");
    assert_eq!(got, model.apply(&req), "{req:?}");
}

/// `n` write steps drawn deterministically from `seed` (the same on every run).
pub fn deterministic_writes(n: usize, seed: u64) -> Vec<Step> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = proptest::collection::vec(write_step(), n);
    strategy.new_tree(&mut runner).expect("generate").current()
}
