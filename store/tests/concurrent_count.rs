//! Counting while the apply path rewrites heads in place: every count and every
//! page of a count-and-list at one revision must match that revision exactly. A
//! head can change under the iterator (RocksDB rewrites a memtable value in place
//! when the new one is not longer), so the scan must notice a torn head (by its
//! checksum) and a head newer than its view, and read those the slow way.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use strake_proto::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use strake_proto::strakepb::{write_request::Request as W, WriteRequest};
use strake_store::{EngineOptions, Store};

/// Keys overwritten every round, always live.
const STEADY: usize = 50;
/// Pairs of keys of which exactly one is live at every revision.
const PAIRS: usize = 20;

fn put_op(key: String, value: &[u8]) -> RequestOp {
    let put = PutRequest { key: Bytes::from(key), value: Bytes::copy_from_slice(value), ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestPut(put)) }
}

fn delete_op(key: String) -> RequestOp {
    let delete = DeleteRangeRequest { key: Bytes::from(key), ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestDeleteRange(delete)) }
}

fn txn(ops: Vec<RequestOp>) -> WriteRequest {
    WriteRequest { request: Some(W::Txn(TxnRequest { success: ops, ..Default::default() })), ..Default::default() }
}

/// Round `round` of the writer: rewrites the steady keys, and in every pair deletes
/// the live key and creates the other, in one revision each.
fn round_writes(round: usize) -> Vec<WriteRequest> {
    let value = [b'a' + (round % 26) as u8; 64];
    let mut writes = vec![txn((0..STEADY).map(|i| put_op(format!("s/{i:03}"), &value)).collect())];
    let (from, to) = if round.is_multiple_of(2) { ("x", "y") } else { ("y", "x") };
    for i in 0..PAIRS {
        writes.push(txn(vec![delete_op(format!("p/{i:03}/{from}")), put_op(format!("p/{i:03}/{to}"), &value)]));
    }
    writes
}

#[test]
fn counts_stay_exact_while_heads_are_rewritten_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &EngineOptions::default()).expect("open the store");
    let mut initial: Vec<RequestOp> = (0..STEADY).map(|i| put_op(format!("s/{i:03}"), &[b'z'; 64])).collect();
    initial.extend((0..PAIRS).map(|i| put_op(format!("p/{i:03}/x"), &[b'z'; 64])));
    store.apply(&txn(initial), b"m").unwrap();
    let expected = (STEADY + PAIRS) as i64;
    let stop = AtomicBool::new(false);
    let counted = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut round = 1;
            while !stop.load(Ordering::Relaxed) {
                for w in round_writes(round) {
                    store.apply(&w, b"m").unwrap();
                }
                round += 1;
            }
            round
        });
        let mut counts = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(3) {
            let all = RangeRequest {
                key: Bytes::from_static(b"\0"),
                range_end: Bytes::from_static(b"\0"),
                ..Default::default()
            };
            let only_count = store.range(&RangeRequest { count_only: true, ..all.clone() }).unwrap();
            assert_eq!(only_count.count, expected, "count_only at revision {:?}", only_count.header);
            let page = store.range(&RangeRequest { limit: 5, ..all }).unwrap();
            assert_eq!(page.count, expected, "count of a page at revision {:?}", page.header);
            assert_eq!(page.kvs.len(), 5);
            assert!(page.more);
            counts += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let rounds = writer.join().unwrap();
        assert!(rounds > 10, "the writer ran only {rounds} rounds");
        counts
    });
    assert!(counted > 10, "only {counted} counts ran");
}
