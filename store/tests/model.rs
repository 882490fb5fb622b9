//! Model-based tests: random histories run against both the real store and the
//! in-memory model of `common`, comparing every response field, the revision and the
//! compaction revision after every step, and everything readable after reopens.

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use strake_proto::etcdserverpb::request_op::Request as Op;
use strake_proto::etcdserverpb::response_op::Response as OpResp;
use strake_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader,
    TxnRequest,
};
use strake_proto::strakepb::{write_request::Request as W, write_result::Result as R, WriteRequest};
use strake_store::{EngineOptions, Store, StoreError};

/// Opens the store with a cache of newest versions small enough (about 8 keys per
/// generation) that the apply path both hits and misses it.
fn open(dir: &std::path::Path) -> Store {
    let options = EngineOptions { latest_cache_bytes: 2 * 1024, ..EngineOptions::default() };
    Store::open(dir, &options).expect("open the store")
}

fn wr(request: W) -> WriteRequest {
    WriteRequest { request: Some(request), ..Default::default() }
}

/// Everything observable must agree: revisions, every revision's keyspace (and the
/// errors below the compaction and above the head), leases and their keys.
fn check_everything(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.revision(), model.rev(), "revision");
    prop_assert_eq!(store.compact_revision(), model.compact, "compact revision");
    for rev in 1..=model.rev() + 1 {
        let req = range_all(rev);
        prop_assert_eq!(store.range(&req), model.range(&req), "full range at revision {}", rev);
    }
    let leases: Vec<(i64, i64)> = store.leases().iter().map(|l| (l.id, l.granted_ttl)).collect();
    let want: Vec<(i64, i64)> = model.leases.iter().map(|(id, ttl)| (*id, *ttl)).collect();
    prop_assert_eq!(leases, want, "leases");
    for id in LEASES {
        prop_assert_eq!(store.lease_keys(id).unwrap(), model.lease_keys(id), "keys of lease {}", id);
        prop_assert_eq!(store.lease(id).map(|l| l.granted_ttl), model.leases.get(&id).copied());
    }
    Ok(())
}

fn run_history(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut model = Model::default();
    let mut last_marker: Option<Vec<u8>> = None;
    for (i, step) in steps.iter().enumerate() {
        let current = model.rev();
        match step {
            Step::Reopen => {
                let hash = store.hash_kv(0).unwrap();
                drop(store);
                store = open(dir.path());
                check_everything(&store, &model)?;
                prop_assert_eq!(store.applied_marker().unwrap(), last_marker.clone(), "applied marker after reopen");
                prop_assert_eq!(store.hash_kv(0).unwrap(), hash, "HashKV survives a reopen");
            }
            Step::Range(r) => {
                let req = r.request(current);
                prop_assert_eq!(store.range(&req), model.range(&req), "step {}: {:?}", i, req);
            }
            _ => {
                if let Step::Txn(t) = step {
                    let req = t.request(current);
                    let checked = strake_store::txn::check_txn(&req, 128);
                    if txn_is_duplicate(&req) {
                        prop_assert_eq!(checked, Err(StoreError::DuplicateKey), "step {}: {:?}", i, req);
                        continue;
                    }
                    prop_assert_eq!(checked, Ok(()), "step {}: {:?}", i, req);
                    if is_read_only(&req) {
                        // The local (serializable) path for read-only txns.
                        let got = match store.read_txn(&req) {
                            Ok(t) => R::Txn(t),
                            Err(e) => R::Error(strake_store::store::error_result(&e)),
                        };
                        prop_assert_eq!(got, model.clone().apply(&wr(W::Txn(req.clone()))), "read_txn {:?}", req);
                    }
                }
                let req = write_request(step, current).expect("a write");
                let marker = (i as u64).to_be_bytes().to_vec();
                let got = store.apply(&req, &marker).expect("no engine error");
                let want = model.apply(&req);
                prop_assert_eq!(got, want, "step {}: {:?}", i, req);
                last_marker = Some(marker);
            }
        }
        prop_assert_eq!(store.revision(), model.rev(), "revision after step {}", i);
        prop_assert_eq!(store.compact_revision(), model.compact, "compact revision after step {}", i);
        prop_assert_eq!(store.range(&range_all(0)), model.range(&range_all(0)), "keyspace after step {}", i);
    }
    check_everything(&store, &model)?;
    // And once more after a final reopen.
    drop(store);
    let store = open(dir.path());
    check_everything(&store, &model)
}

/// Runs the write steps in log entries of `sizes[i]` writes each, applied together
/// as the state machine does (one pending batch per run of keyspace writes), and
/// checks every result, the state after each entry, the marker, and a reopen.
fn run_entries(steps: &[Step], sizes: &[usize]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut model = Model::default();
    let mut steps = steps.iter().filter(|s| !matches!(s, Step::Range(_) | Step::Reopen));
    for (entry, &size) in sizes.iter().enumerate() {
        let mut requests = Vec::new();
        let mut want = Vec::new();
        for step in steps.by_ref().take(size) {
            if let Some(req) = write_request(step, model.rev()) {
                want.push(model.apply(&req));
                requests.push(req);
            }
        }
        let marker = |pos: u32| format!("entry {entry} position {pos}").into_bytes();
        let mut apply = store.begin_entry(&marker);
        let mut got = Vec::new();
        for (pos, req) in requests.iter().enumerate() {
            got.push(apply.apply(pos as u32, req).expect("no engine error"));
        }
        apply.finish().expect("no engine error");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert_eq!(g, w, "entry {} write {}: {:?}", entry, i, requests[i]);
        }
        prop_assert_eq!(store.revision(), model.rev(), "revision after entry {}", entry);
        prop_assert_eq!(store.range(&range_all(0)), model.range(&range_all(0)), "keyspace after entry {}", entry);
        if !requests.is_empty() {
            let last = format!("entry {entry} position {}", requests.len() - 1).into_bytes();
            prop_assert_eq!(store.applied_marker().unwrap(), Some(last), "marker after entry {}", entry);
        }
    }
    check_everything(&store, &model)?;
    drop(store);
    store = open(dir.path());
    check_everything(&store, &model)
}

/// etcd's `IsTxnReadonly`: no put or delete in any branch, nested ones included.
fn is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(Op::RequestRange(_)) | None => true,
        Some(Op::RequestTxn(n)) => is_read_only(n),
        Some(_) => false,
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(
        setup in proptest::collection::vec(put_spec().prop_map(Step::Put), 0..8),
        steps in proptest::collection::vec(any_step(), 1..70),
    ) {
        let steps: Vec<Step> = setup.into_iter().chain(steps).collect();
        run_history(&steps)?;
    }

    /// Several writes per log entry, applied together: later writes must see earlier
    /// ones of the same entry (through the pending batch), in every kind of request.
    #[test]
    fn entries_of_many_writes_match_model(
        setup in proptest::collection::vec(put_spec().prop_map(Step::Put), 0..8),
        steps in proptest::collection::vec(prop_oneof![3 => txn_spec(2).prop_map(Step::Txn), 4 => any_step()], 1..60),
        sizes in proptest::collection::vec(1usize..12, 1..12),
    ) {
        let steps: Vec<Step> = setup.into_iter().chain(steps).collect();
        let mut sizes = sizes;
        sizes.push(steps.len());
        run_entries(&steps, &sizes)?;
    }

    /// Mostly transactions: nested branches, compares over ranges, reads inside txns.
    #[test]
    fn txns_match_model(
        setup in proptest::collection::vec(put_spec().prop_map(Step::Put), 3..12),
        txns in proptest::collection::vec(prop_oneof![4 => txn_spec(2).prop_map(Step::Txn), 1 => any_step()], 1..30),
    ) {
        let steps: Vec<Step> = setup.into_iter().chain(txns).collect();
        run_history(&steps)?;
    }
}

// ---------------------------------------------------------------------------------
// Fixed regressions for the differences the model found (each also covered above).
// ---------------------------------------------------------------------------------

fn put(key: &str, value: &str) -> WriteRequest {
    wr(W::Put(PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        ..Default::default()
    }))
}

fn rev_of(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().unwrap().revision
}

/// etcd's `rangeKeys` answers with the current revision in the header, whatever
/// revision was read.
#[test]
fn historical_range_reports_the_current_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for v in ["1", "2", "3"] {
        store.apply(&put("k", v), b"m").unwrap();
    }
    let resp = store.range(&RangeRequest { key: "k".into(), revision: 2, ..Default::default() }).unwrap();
    assert_eq!(resp.kvs[0].value, "1");
    assert_eq!(rev_of(&resp.header), 4);
    // Inside a txn too: the header is the txn's revision at that point.
    let txn = TxnRequest {
        success: vec![
            RequestOp { request: Some(Op::RequestPut(PutRequest { key: "z".into(), ..Default::default() })) },
            RequestOp {
                request: Some(Op::RequestRange(RangeRequest { key: "k".into(), revision: 2, ..Default::default() })),
            },
        ],
        ..Default::default()
    };
    let Ok(R::Txn(t)) = store.apply(&wr(W::Txn(txn)), b"m") else { panic!() };
    let Some(OpResp::ResponseRange(r)) = &t.responses[1].response else { panic!() };
    assert_eq!((r.kvs[0].value.as_ref(), rev_of(&r.header)), (&b"1"[..], 5));
}

/// etcd's txn headers: a delete that deleted nothing before any change reports the
/// revision before the txn; a nested txn's response has an empty header.
#[test]
fn txn_response_headers_are_etcds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.apply(&put("a", "1"), b"m").unwrap();
    let del_missing = RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: "nope".into(), ..Default::default() })),
    };
    let put_b = RequestOp { request: Some(Op::RequestPut(PutRequest { key: "b".into(), ..Default::default() })) };
    let nested =
        RequestOp { request: Some(Op::RequestTxn(TxnRequest { success: vec![put_b.clone()], ..Default::default() })) };
    let txn = TxnRequest { success: vec![del_missing, nested], ..Default::default() };
    let Ok(R::Txn(t)) = store.apply(&wr(W::Txn(txn)), b"m") else { panic!() };
    assert_eq!(rev_of(&t.header), 3);
    let Some(OpResp::ResponseDeleteRange(d)) = &t.responses[0].response else { panic!() };
    assert_eq!((d.deleted, rev_of(&d.header)), (0, 2));
    let Some(OpResp::ResponseTxn(n)) = &t.responses[1].response else { panic!() };
    assert_eq!(n.header, Some(ResponseHeader::default()));
    let Some(OpResp::ResponsePut(p)) = &n.responses[0].response else { panic!() };
    assert_eq!(rev_of(&p.header), 3);
}

/// etcd's Put checks the lease before `ignore_value` needs the key.
#[test]
fn put_checks_the_lease_before_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let req = wr(W::Put(PutRequest { key: "k".into(), ignore_value: true, lease: 7, ..Default::default() }));
    let got = store.apply(&req, b"m").unwrap();
    assert_eq!(got, R::Error(strake_store::store::error_result(&StoreError::LeaseNotFound)));
}

/// Dropping the store and opening it again at once must work, even while the
/// background compactor is busy (it shares the database).
#[test]
fn reopen_right_after_drop_with_compaction_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    for round in 0..15 {
        let store = open(dir.path());
        assert_eq!(store.revision(), model.rev(), "round {round}");
        assert_eq!(store.compact_revision(), model.compact, "round {round}");
        for i in 0..300 {
            let req = put(&format!("key{:03}", i % 150), &format!("v{round}.{i}"));
            assert_eq!(store.apply(&req, b"m").unwrap(), model.apply(&req));
        }
        let req = wr(W::Compaction(CompactionRequest { revision: model.rev() - 10, physical: false }));
        assert_eq!(store.apply(&req, b"m").unwrap(), model.apply(&req));
        assert_eq!(store.range(&range_all(0)), model.range(&range_all(0)));
    }
}

/// Leases survive a reopen, and revoking one after the reopen deletes its keys in
/// one revision.
#[test]
fn lease_revoke_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let reqs = [
        wr(W::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 5 })),
        wr(W::Put(PutRequest { key: "x".into(), value: "1".into(), lease: 5, ..Default::default() })),
        wr(W::Put(PutRequest { key: "y".into(), value: "2".into(), lease: 5, ..Default::default() })),
        wr(W::Put(PutRequest { key: "z".into(), value: "3".into(), lease: 5, ..Default::default() })),
        wr(W::Put(PutRequest { key: "y".into(), value: "4".into(), ..Default::default() })),
    ];
    {
        let store = open(dir.path());
        for r in &reqs {
            assert_eq!(store.apply(r, b"m").unwrap(), model.apply(r));
        }
    }
    let store = open(dir.path());
    let revoke = wr(W::LeaseRevoke(strake_proto::etcdserverpb::LeaseRevokeRequest { id: 5 }));
    assert_eq!(store.apply(&revoke, b"m").unwrap(), model.apply(&revoke));
    assert_eq!(store.revision(), 6);
    assert_eq!(store.range(&range_all(0)), model.range(&range_all(0)));
    assert_eq!(model.events[&6].len(), 2);
}

/// etcd's `checkTxnRequest`: at most `max` compares or ops per branch, a nested txn
/// gets the budget its parent left; compares need a key; an empty op is refused
/// ("key not found").
#[test]
fn check_txn_limits_are_etcds() {
    use strake_proto::etcdserverpb::Compare;
    use strake_store::txn::check_txn;
    let put = |k: usize| RequestOp {
        request: Some(Op::RequestPut(PutRequest { key: Bytes::from(format!("k{k}")), ..Default::default() })),
    };
    let puts = |n: usize, from: usize| (from..from + n).map(put).collect::<Vec<_>>();
    let txn = |success: Vec<RequestOp>| TxnRequest { success, ..Default::default() };
    assert_eq!(check_txn(&txn(puts(128, 0)), 128), Ok(()));
    assert_eq!(check_txn(&txn(puts(129, 0)), 128), Err(StoreError::TooManyOps));
    let compares = vec![Compare { key: "c".into(), ..Default::default() }; 129];
    assert_eq!(check_txn(&TxnRequest { compare: compares, ..Default::default() }, 128), Err(StoreError::TooManyOps));
    // 100 ops at the top leave 28 for a nested txn.
    let nested = |n: usize| {
        let mut ops = puts(99, 0);
        ops.push(RequestOp { request: Some(Op::RequestTxn(txn(puts(n, 1000)))) });
        txn(ops)
    };
    assert_eq!(check_txn(&nested(28), 128), Ok(()));
    assert_eq!(check_txn(&nested(29), 128), Err(StoreError::TooManyOps));
    let empty_key = TxnRequest { compare: vec![Compare::default()], ..Default::default() };
    assert_eq!(check_txn(&empty_key, 128), Err(StoreError::EmptyKey));
    assert_eq!(check_txn(&txn(vec![RequestOp { request: None }]), 128), Err(StoreError::KeyNotFound));
}

/// A store restored from another's checkpoint (a snapshot install) holds exactly the
/// source's state, survives a reopen, and goes on like the source.
#[test]
fn restore_from_checkpoint_matches_the_source() {
    let (a_dir, b_dir, spare) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(a_dir.path());
    let mut model = Model::default();
    for (i, step) in deterministic_writes(150, 7).iter().enumerate() {
        apply_step(&a, &mut model, step, i as u64);
    }
    let req = wr(W::Compaction(CompactionRequest { revision: model.rev() / 2, physical: false }));
    assert_eq!(a.apply(&req, b"last").unwrap(), model.apply(&req));
    let cp = spare.path().join("cp");
    assert_eq!(a.checkpoint(&cp).unwrap(), Some(b"last".to_vec()));

    let b = open(b_dir.path());
    let mut other = Model::default();
    for (i, step) in deterministic_writes(40, 8).iter().enumerate() {
        apply_step(&b, &mut other, step, i as u64);
    }
    assert_eq!(b.restore(&cp).unwrap(), Some(b"last".to_vec()));
    check_everything(&b, &model).unwrap();
    assert_eq!(b.hash_kv(0).unwrap(), a.hash_kv(0).unwrap());
    let mut model_b = model.clone();
    for (i, step) in deterministic_writes(60, 9).iter().enumerate() {
        apply_step(&a, &mut model, step, i as u64);
        apply_step(&b, &mut model_b, step, i as u64);
    }
    drop(b);
    let b = open(b_dir.path());
    check_everything(&b, &model_b).unwrap();
    assert_eq!(b.hash_kv(0).unwrap(), a.hash_kv(0).unwrap());
}

/// Keys with long histories: a full-detail scan steps over older versions (by seeking
/// past keys with many), and reads at old revisions jump over newer ones. Every
/// revision's full range and lists with a limit (full versions, then a count) must
/// match the model.
#[test]
fn ranges_over_keys_with_long_histories_match_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut model = Model::default();
    let mut writes = Vec::new();
    for round in 0..8 {
        writes.extend((0..30).map(|k| put(&format!("key{k:02}"), &format!("v{round}"))));
    }
    writes.extend(
        (0..30)
            .step_by(7)
            .map(|k| wr(W::DeleteRange(DeleteRangeRequest { key: format!("key{k:02}").into(), ..Default::default() }))),
    );
    writes.extend((0..30).step_by(3).map(|k| put(&format!("key{k:02}"), "late")));
    for req in writes {
        assert_eq!(store.apply(&req, b"m").unwrap(), model.apply(&req), "{req:?}");
    }
    for rev in 1..=model.rev() {
        for limit in [0, 5, 20] {
            let req = RangeRequest { limit, ..range_all(rev) };
            assert_eq!(store.range(&req), model.range(&req), "{req:?}");
        }
    }
}
