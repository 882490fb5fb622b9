//! Long values (ones their key's head only names) are read only when needed: a put or
//! a single-key delete reads the key's head but not the value it replaces (the hub reads that value only
//! for watchers that asked for `prev_kv`, and a watcher whose read fails replays the
//! revision from storage), and a txn compare that is not on the value reads only the
//! head. Its own test binary: the failpoint it arms is process-wide.

use std::time::Duration;

use bytes::Bytes;
use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::{request_op, Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use strake_proto::mvccpb::{event::EventType, Event, KeyValue};
use strake_proto::strakepb::{write_request::Request as W, write_result::Result as R, WriteRequest};
use strake_store::{EngineOptions, KeyRange, SessionMessage, Store, WatchSession, WatchSpec};

/// Longer than a head holds whole (`schema::HEAD_WHOLE_RECORD_LIMIT`).
const LONG: usize = 1100;

/// The cache of newest versions is off: every put finds its key's previous version
/// through the key's head, as after a restart or for keys not written recently.
fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, &EngineOptions { latest_cache_bytes: 0, ..EngineOptions::default() }).expect("open the store")
}

fn put(key: &str, value: &[u8], prev_kv: bool) -> WriteRequest {
    let put = PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::copy_from_slice(value),
        prev_kv,
        ..Default::default()
    };
    WriteRequest { request: Some(W::Put(put)), ..Default::default() }
}

fn delete(key: &str, prev_kv: bool) -> WriteRequest {
    let delete = DeleteRangeRequest { key: Bytes::from(key.to_string()), prev_kv, ..Default::default() };
    WriteRequest { request: Some(W::DeleteRange(delete)), ..Default::default() }
}

fn watch(key: &str, start_revision: i64, prev_kv: bool) -> WatchSpec {
    WatchSpec {
        range: KeyRange::new(key.as_bytes(), &[]),
        start_revision,
        prev_kv,
        no_put: false,
        no_delete: false,
        progress_notify: false,
    }
}

/// Memtable lookups (RocksDB point reads; one per column family read) of one apply.
fn point_reads(store: &Store, req: &WriteRequest) -> u64 {
    rocksdb::perf::set_perf_stats(rocksdb::perf::PerfStatsLevel::EnableCount);
    let mut perf = rocksdb::perf::PerfContext::default();
    perf.reset();
    store.apply(req, b"m").unwrap();
    perf.metric(rocksdb::perf::PerfMetric::GetFromMemtableCount)
}

/// The next message of each of `ids`' watchers, in any order.
async fn events_of(session: &mut WatchSession, ids: &[i64]) -> Vec<(i64, Vec<Event>)> {
    let mut got = Vec::new();
    while got.len() < ids.len() {
        match tokio::time::timeout(Duration::from_secs(20), session.next()).await.expect("events in time") {
            SessionMessage::Events { watch_id, events } => got.push((watch_id, events)),
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort_by_key(|(id, _)| *id);
    got
}

#[test]
fn puts_and_deletes_over_a_long_value_read_only_the_head_unless_they_return_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.apply(&put("k", &[b'l'; LONG], false), b"m").unwrap();
    store.apply(&put("short", b"s", false), b"m").unwrap();
    let without = point_reads(&store, &put("k", &[b'm'; LONG], false));
    let with = point_reads(&store, &put("k", &[b'n'; LONG], true));
    assert!(without < with, "a put read {without} entries without prev_kv and {with} with it");
    // So does a delete, which needs the previous version for its event as well.
    store.apply(&put("d1", &[b'l'; LONG], false), b"m").unwrap();
    store.apply(&put("d2", &[b'l'; LONG], false), b"m").unwrap();
    let delete_without = point_reads(&store, &delete("d1", false));
    let delete_with = point_reads(&store, &delete("d2", true));
    assert!(delete_without < delete_with, "a delete read {delete_without} entries without prev_kv, {delete_with} with");
    // A short value is in its head: returning it costs no extra read.
    let short = point_reads(&store, &put("short", b"t", false));
    assert_eq!(point_reads(&store, &put("short", b"u", true)), short);
    // The previous value returned is whole.
    let R::Put(resp) = store.apply(&put("k", b"o", true), b"m").unwrap() else { panic!("not a put") };
    assert_eq!(resp.prev_kv.unwrap().value, Bytes::from(vec![b'n'; LONG]));
}

#[tokio::test]
async fn watchers_with_prev_kv_get_the_long_values_the_apply_did_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let long = Bytes::from(vec![b'l'; LONG]);
    store.apply(&put("k", &long, false), b"m").unwrap();
    let first = store.revision();
    let mut session = WatchSession::new(store.clone());
    session.create(1, watch("k", first + 1, true)).unwrap();
    session.create(2, watch("k", first + 1, false)).unwrap();
    let mut prev = KeyValue {
        key: "k".into(),
        create_revision: first,
        mod_revision: first,
        version: 1,
        value: long.clone(),
        lease: 0,
    };
    // The second time the hub's read fails: watcher 1 replays the revision from storage.
    for failing in [false, true] {
        if failing {
            fail::cfg("watch-prev-value-read", "return").unwrap();
        }
        store.apply(&put("k", b"short", false), b"m").unwrap();
        fail::remove("watch-prev-value-read");
        let kv = KeyValue {
            mod_revision: store.revision(),
            version: prev.version + 1,
            value: "short".into(),
            ..prev.clone()
        };
        let event = Event { r#type: EventType::Put as i32, kv: Some(kv.clone()), prev_kv: Some(prev.clone()) };
        let want = vec![(1, vec![event.clone()]), (2, vec![Event { prev_kv: None, ..event }])];
        assert_eq!(events_of(&mut session, &[1, 2]).await, want, "the hub's read failed: {failing}");
        // Make the newest value long again.
        store.apply(&put("k", &long, false), b"m").unwrap();
        events_of(&mut session, &[1, 2]).await;
        prev = KeyValue { mod_revision: store.revision(), version: kv.version + 1, value: long.clone(), ..kv };
    }
    // A deletion's previous value is deferred the same way (new watchers, in the hub
    // from the start: watcher 1 may still be replaying from storage).
    let mut fresh = WatchSession::new(store.clone());
    fresh.create(3, watch("k", store.revision() + 1, true)).unwrap();
    fresh.create(4, watch("k", store.revision() + 1, false)).unwrap();
    store.apply(&delete("k", false), b"m").unwrap();
    let kv = KeyValue { key: "k".into(), mod_revision: store.revision(), ..Default::default() };
    let event = Event { r#type: EventType::Delete as i32, kv: Some(kv), prev_kv: Some(prev) };
    let want = vec![(3, vec![event.clone()]), (4, vec![Event { prev_kv: None, ..event }])];
    assert_eq!(events_of(&mut fresh, &[3, 4]).await, want, "deletion");
}

#[test]
fn a_compare_on_the_mod_revision_of_a_long_value_reads_only_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.apply(&put("k", &[b'l'; LONG], false), b"m").unwrap();
    // kube-apiserver's update: mod_revision compare, put on success, get otherwise.
    let cas = |target: CompareTarget, target_union: TargetUnion| {
        let compare = Compare {
            key: "k".into(),
            target: target as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(target_union),
            ..Default::default()
        };
        let put = PutRequest { key: "k".into(), value: vec![b'n'; LONG].into(), ..Default::default() };
        let then = RequestOp { request: Some(request_op::Request::RequestPut(put)) };
        let txn = TxnRequest { compare: vec![compare], success: vec![then], failure: vec![] };
        WriteRequest { request: Some(W::Txn(txn)), ..Default::default() }
    };
    let by_revision = cas(CompareTarget::Mod, TargetUnion::ModRevision(store.revision()));
    let reads_by_revision = point_reads(&store, &by_revision);
    let by_value = cas(CompareTarget::Value, TargetUnion::Value(vec![b'n'; LONG].into()));
    let reads_by_value = point_reads(&store, &by_value);
    assert!(reads_by_revision < reads_by_value, "{reads_by_revision} point reads against {reads_by_value}");
    // Both compares held: two puts.
    assert_eq!(store.revision(), 4);
}
