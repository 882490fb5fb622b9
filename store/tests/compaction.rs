//! Compaction: physical removal of exactly the superseded versions, readability of
//! everything at and above the compaction revision, and HashKV that does not depend
//! on how far physical compaction has got, equal across stores with one history.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use strake_proto::etcdserverpb::request_op::Request as Op;
use strake_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use strake_proto::mvccpb::event::EventType;
use strake_proto::strakepb::{write_request::Request as W, WriteRequest};
use strake_store::schema::{self, CF_HEAD, CF_KV, CF_META, CF_REV};
use strake_store::{EngineOptions, KvHash, Store, StoreError};

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, &EngineOptions::default()).expect("open the store")
}

fn wr(request: W) -> WriteRequest {
    WriteRequest { request: Some(request), ..Default::default() }
}

fn put(key: &str, value: &str) -> W {
    W::Put(PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        ..Default::default()
    })
}

fn delete(key: &str) -> W {
    W::DeleteRange(DeleteRangeRequest { key: Bytes::from(key.to_string()), ..Default::default() })
}

fn compact(revision: i64) -> W {
    W::Compaction(CompactionRequest { revision, physical: false })
}

/// A version as stored: (user key, main revision, tombstone).
type Stored = BTreeSet<(Vec<u8>, i64, bool)>;

/// Every version in the `kv` column family, checked against the `rev` index (each
/// version has exactly one index entry naming its key, and nothing else is indexed).
fn stored_versions(store: &Store) -> Stored {
    let engine = store.engine();
    let mut kv = Stored::new();
    let mut kv_revs = BTreeSet::new();
    let mut it = engine.iter(CF_KV, None);
    it.seek_to_first();
    while it.valid() {
        let (enc, rev) = schema::split_kv_key(it.key().unwrap()).unwrap();
        let key = schema::decode_user_key(enc).unwrap();
        kv_revs.insert((rev.main, rev.sub, key.clone()));
        assert!(kv.insert((key, rev.main, schema::is_tombstone(it.value().unwrap()))), "one version per revision");
        it.next();
    }
    it.status().unwrap();
    let mut index = BTreeSet::new();
    let mut it = engine.iter(CF_REV, None);
    it.seek_to_first();
    while it.valid() {
        let rev = schema::parse_rev_key(it.key().unwrap()).unwrap();
        index.insert((rev.main, rev.sub, it.value().unwrap().to_vec()));
        it.next();
    }
    it.status().unwrap();
    assert_eq!(index, kv_revs, "the rev index names exactly the stored versions");
    // Every key with a stored version has a head naming its newest one, and no other
    // head exists.
    let mut newest: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    let mut it = engine.iter(CF_KV, None);
    it.seek_to_first();
    while it.valid() {
        let (enc, rev) = schema::split_kv_key(it.key().unwrap()).unwrap();
        newest.entry(enc.to_vec()).or_insert_with(|| schema::head_value(rev, it.value().unwrap()));
        it.next();
    }
    let mut heads: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    let mut it = engine.iter(CF_HEAD, None);
    it.seek_to_first();
    while it.valid() {
        heads.insert(it.key().unwrap().to_vec(), it.value().unwrap().to_vec());
        it.next();
    }
    assert_eq!(heads, newest, "heads hold exactly each key's newest stored version");
    kv
}

/// What must remain after physical compaction at `compacted`: every version above
/// it, and each key's newest version at or below it unless that is a tombstone
/// below `compacted` (a tombstone at `compacted` itself stays, as in etcd).
fn expected_versions(model: &Model, compacted: i64) -> Stored {
    let mut all: std::collections::BTreeMap<Vec<u8>, Vec<(i64, bool)>> = Default::default();
    for (rev, events) in &model.events {
        for e in events {
            let key = e.kv.as_ref().unwrap().key.to_vec();
            all.entry(key).or_default().push((*rev, e.r#type == EventType::Delete as i32));
        }
    }
    let mut out = Stored::new();
    for (key, versions) in all {
        let newest_below = versions.iter().rfind(|(rev, _)| *rev <= compacted).copied();
        for (rev, tombstone) in versions {
            let keep = rev > compacted || (Some((rev, tombstone)) == newest_below && (!tombstone || rev == compacted));
            if keep {
                out.insert((key.clone(), rev, tombstone));
            }
        }
    }
    out
}

fn hashes(store: &Store, from: i64) -> Vec<KvHash> {
    (from..=store.revision()).map(|r| store.hash_kv(r).unwrap()).collect()
}

/// Checks every read at and above the compaction and the errors below it.
fn check_reads(store: &Store, model: &Model) {
    for rev in 1..=model.rev() {
        let req = range_all(rev);
        let got = store.range(&req);
        if rev < model.compact {
            assert_eq!(got, Err(StoreError::Compacted), "revision {rev}");
        } else {
            assert_eq!(got, model.range(&req), "revision {rev}");
        }
    }
}

/// Many overwrites and deletes, then compaction at a revision that deletes a key.
fn churn(store: &Store, model: &mut Model) -> i64 {
    let step = |model: &mut Model, req: W| {
        let req = wr(req);
        assert_eq!(store.apply(&req, b"m").unwrap(), model.apply(&req));
    };
    for round in 0..12 {
        for i in 0..40 {
            if (i + round) % 7 == 6 {
                step(model, delete(&format!("key{i:02}")));
            } else if i % 3 != 2 || round % 4 == 3 {
                step(model, put(&format!("key{i:02}"), &format!("r{round}")));
            }
        }
    }
    step(model, delete("key05"));
    let deleted_at = model.rev();
    for i in 10..20 {
        step(model, put(&format!("key{i:02}"), "late"));
    }
    deleted_at
}

#[tokio::test]
async fn physical_compaction_removes_exactly_the_superseded_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut model = Model::default();
    let c = churn(&store, &mut model);
    assert_eq!(stored_versions(&store), expected_versions(&model, 0), "nothing removed before compaction");

    let req = wr(compact(c));
    assert_eq!(store.apply(&req, b"m").unwrap(), model.apply(&req));
    let during = hashes(&store, c);
    check_reads(&store, &model);
    store.wait_compacted(c).await;
    assert_eq!(hashes(&store, c), during, "HashKV does not depend on physical progress");
    let kept = stored_versions(&store);
    assert_eq!(kept, expected_versions(&model, c));
    assert!(kept.contains(&(b"key05".to_vec(), c, true)), "the tombstone at the compaction revision stays");
    check_reads(&store, &model);

    // A second store with the same history (compacting in two steps) hashes the same.
    let dir2 = tempfile::tempdir().unwrap();
    let twin = open(dir2.path());
    let mut twin_model = Model::default();
    churn(&twin, &mut twin_model);
    for rev in [c / 3, c] {
        let req = wr(compact(rev));
        assert_eq!(twin.apply(&req, b"m").unwrap(), twin_model.apply(&req));
    }
    twin.wait_compacted(c).await;
    assert_eq!(hashes(&twin, c), during, "same history, same HashKV");
    assert_eq!(stored_versions(&twin), kept);

    // The next compaction also removes the tombstone kept at the previous one.
    let later = model.rev();
    let req = wr(compact(later));
    assert_eq!(store.apply(&req, b"m").unwrap(), model.apply(&req));
    let during = hashes(&store, later);
    store.wait_compacted(later).await;
    assert_eq!(hashes(&store, later), during);
    let kept = stored_versions(&store);
    assert_eq!(kept, expected_versions(&model, later));
    assert!(!kept.iter().any(|(k, ..)| k == b"key05"), "key05 is gone entirely");
    check_reads(&store, &model);

    // Everything survives a reopen.
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.compact_revision(), later);
    assert_eq!(stored_versions(&store), kept);
    assert_eq!(hashes(&store, later), during);
    check_reads(&store, &model);
}

/// HashKV taken while a long physical compaction is under way equals the one taken
/// after it finished.
#[tokio::test]
async fn hash_is_stable_while_physical_compaction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    const KEYS: usize = 40_000;
    let txn = |round: usize, first: usize| {
        let success = (first..first + 1000)
            .map(|i| {
                let op = if (i + round) % 5 == 4 {
                    Op::RequestDeleteRange(DeleteRangeRequest {
                        key: Bytes::from(format!("k{i:06}")),
                        ..Default::default()
                    })
                } else {
                    Op::RequestPut(PutRequest {
                        key: Bytes::from(format!("k{i:06}")),
                        value: Bytes::from(format!("{round}")),
                        ..Default::default()
                    })
                };
                RequestOp { request: Some(op) }
            })
            .collect();
        wr(W::Txn(TxnRequest { success, ..Default::default() }))
    };
    for round in 0..3 {
        for first in (0..KEYS).step_by(1000) {
            store.apply(&txn(round, first), b"m").unwrap();
        }
    }
    let target = store.revision() - 5;
    store.apply(&wr(compact(target)), b"m").unwrap();
    let mut during = vec![];
    let mut in_flight = 0;
    loop {
        let done = futures_now(store.wait_compacted(target));
        during.push(store.hash_kv(0).unwrap());
        if done {
            break;
        }
        in_flight += 1;
    }
    store.wait_compacted(target).await;
    let after = store.hash_kv(0).unwrap();
    for h in &during {
        assert_eq!(*h, after);
    }
    assert!(in_flight > 0, "the hash was never taken while compaction ran; make the data larger");
}

/// Polls a future once.
fn futures_now<F: std::future::Future>(f: F) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    f.as_mut().poll(&mut cx).is_ready()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    /// Two stores that apply the same random operations (with compactions) agree on
    /// HashKV at every retained revision, before and after physical compaction, and
    /// keep exactly the versions the model says.
    #[test]
    fn same_operations_same_hash(
        steps in proptest::collection::vec(prop_oneof![8 => write_step(), 1 => rev_sel().prop_map(Step::Compact)], 1..80),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (s1, s2) = (open(d1.path()), open(d2.path()));
        let (mut m1, mut m2) = (Model::default(), Model::default());
        for (i, step) in steps.iter().enumerate() {
            apply_step(&s1, &mut m1, step, i as u64);
            apply_step(&s2, &mut m2, step, i as u64);
        }
        let compacted = m1.compact.max(1);
        let early = hashes(&s1, compacted);
        rt.block_on(s1.wait_compacted(m1.compact));
        rt.block_on(s2.wait_compacted(m2.compact));
        prop_assert_eq!(hashes(&s1, compacted), early.clone());
        prop_assert_eq!(hashes(&s2, compacted), early);
        prop_assert_eq!(stored_versions(&s1), expected_versions(&m1, m1.compact));
        prop_assert_eq!(stored_versions(&s2), stored_versions(&s1));
        check_reads(&s1, &m1);
    }
}

/// A format-2 store's heads only named each key's newest version (17 bytes); opening
/// it rebuilds them to hold the versions, and reads and writes go on from there.
#[test]
fn a_store_whose_heads_only_name_versions_gets_them_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for k in ["a", "b", "c"] {
        store.apply(&wr(put(k, "1")), b"x").unwrap();
    }
    store.apply(&wr(delete("b")), b"x").unwrap();
    let before = stored_versions(&store);
    {
        let engine = store.engine();
        let mut batch = rocksdb::WriteBatch::default();
        let mut it = engine.iter(CF_HEAD, None);
        it.seek_to_first();
        while it.valid() {
            let key = it.key().unwrap();
            let (rev, body) = schema::parse_head_value(key, it.value().unwrap()).unwrap().settled(key).unwrap();
            let mut naming = schema::rev_key(rev).to_vec();
            naming.push(if body.is_tombstone() { 2 } else { 1 });
            batch.put_cf(engine.cf(CF_HEAD), key, naming);
            it.next();
        }
        batch.put_cf(engine.cf(CF_META), schema::META_FORMAT, schema::encode_u64(schema::FORMAT_WITH_NAMING_HEADS));
        engine.write(batch).unwrap();
    }
    drop(store);
    let store = open(dir.path());
    assert_eq!(stored_versions(&store), before, "heads rebuilt (checked inside)");
    let all = RangeRequest { key: "a".into(), range_end: "z".into(), ..Default::default() };
    let count = RangeRequest { count_only: true, ..all.clone() };
    assert_eq!(store.range(&count).unwrap().count, 2);
    store.apply(&wr(put("a", "2")), b"x").unwrap();
    let listed = store.range(&all).unwrap();
    assert_eq!(listed.kvs.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(), vec![Bytes::from("2"), "1".into()]);
    let format = store.engine().get(CF_META, schema::META_FORMAT).unwrap().unwrap();
    assert_eq!(schema::decode_u64(schema::META_FORMAT, &format).unwrap(), schema::FORMAT_VERSION);
}

/// A format-3 store named long records by their tag alone, without the metadata a
/// put needs: such heads stay readable, a put over one reads the record it names, and
/// opening the store records format 4 so that older binaries refuse it.
#[test]
fn a_format_3_store_keeps_its_heads_and_puts_over_them_read_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let long = "l".repeat(1100);
    store.apply(&wr(put("a", &long)), b"x").unwrap();
    store.apply(&wr(put("a", &long)), b"x").unwrap();
    {
        let engine = store.engine();
        let head = engine.get(CF_HEAD, &schema::kv_lower_bound(b"a")).unwrap().unwrap();
        let mut legacy = head[..16].to_vec();
        legacy.push(1);
        legacy.extend_from_slice(&crc32fast::hash(&legacy).to_be_bytes());
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(engine.cf(CF_HEAD), schema::kv_lower_bound(b"a"), legacy);
        batch.put_cf(engine.cf(CF_META), schema::META_FORMAT, schema::encode_u64(schema::FORMAT_WITHOUT_HEAD_METADATA));
        engine.write(batch).unwrap();
    }
    drop(store);
    let store = open(dir.path());
    let get = RangeRequest { key: "a".into(), ..Default::default() };
    assert_eq!(store.range(&get).unwrap().kvs[0].value, Bytes::from(long.clone()));
    store.apply(&wr(put("a", "short")), b"x").unwrap();
    let kv = store.range(&get).unwrap().kvs.remove(0);
    assert_eq!((kv.create_revision, kv.version, kv.value), (2, 3, Bytes::from("short")));
    let format = store.engine().get(CF_META, schema::META_FORMAT).unwrap().unwrap();
    assert_eq!(schema::decode_u64(schema::META_FORMAT, &format).unwrap(), schema::FORMAT_VERSION);
    stored_versions(&store);
}

/// Counting and listing read heads with an iterator while the apply path rewrites them
/// in place: during a stream of updates to existing keys every read sees every key,
/// with a whole value.
#[test]
fn counts_stay_exact_while_heads_are_rewritten_in_place() {
    const KEYS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()));
    let key = |i: usize| format!("k{i:03}");
    for i in 0..KEYS {
        store.apply(&wr(put(&key(i), "v---")), b"x").unwrap();
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            for round in 0..200 {
                for i in 0..KEYS {
                    store.apply(&wr(put(&key(i), &format!("v{round:03}"))), b"x").unwrap();
                }
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        })
    };
    let count = RangeRequest { key: "k".into(), range_end: "l".into(), count_only: true, ..Default::default() };
    let list = RangeRequest { count_only: false, limit: 10, ..count.clone() };
    let mut reads = 0;
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        assert_eq!(store.range(&count).unwrap().count, KEYS as i64);
        let listed = store.range(&list).unwrap();
        assert_eq!((listed.count, listed.kvs.len()), (KEYS as i64, 10));
        assert!(listed.kvs.iter().all(|kv| kv.value.len() == 4 && kv.version >= 1), "{listed:?}");
        reads += 1;
    }
    writer.join().unwrap();
    assert!(reads > 0);
    // Values keep their length, so a head is rewritten in place until its record
    // grows: once, when the version (a varint) reaches 128. Not in place: 201 each.
    let entries = store.engine().int_property(CF_HEAD, "rocksdb.num-entries-active-mem-table").unwrap();
    assert!(entries <= 2 * KEYS as u64, "{entries} head entries in the memtable for {KEYS} keys");
    stored_versions(&store);
}

#[test]
fn a_store_written_before_the_head_index_gets_one_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
        store.apply(&wr(put(k, "1")), &[i as u8]).unwrap();
        store.apply(&wr(put(k, "2")), &[i as u8]).unwrap();
    }
    store.apply(&wr(delete("b")), b"x").unwrap();
    let before = stored_versions(&store);
    // Make it a format-1 store: no heads.
    {
        let engine = store.engine();
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_range_cf(engine.cf(CF_HEAD), &[][..], &[0xff; 64][..]);
        batch.put_cf(engine.cf(CF_META), schema::META_FORMAT, schema::encode_u64(schema::FORMAT_WITHOUT_HEADS));
        engine.write(batch).unwrap();
    }
    drop(store);
    let store = open(dir.path());
    assert_eq!(stored_versions(&store), before, "heads rebuilt (checked inside)");
    let all = RangeRequest { key: "a".into(), range_end: "z".into(), count_only: true, ..Default::default() };
    assert_eq!(store.range(&all).unwrap().count, 3);
    let format = store.engine().get(CF_META, schema::META_FORMAT).unwrap().unwrap();
    assert_eq!(schema::decode_u64(schema::META_FORMAT, &format).unwrap(), schema::FORMAT_VERSION);
}
