//! Raft log micro-benchmarks on real files with real fdatasync:
//! one entry per fsync (a single client), and group commit of 64 concurrent appends.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use strake_proto::etcdserverpb::PutRequest;
use strake_proto::strakepb::{write_request::Request, WriteRequest};
use strake_raft::log::LogStore;
use strake_raft::types::{Entry, Proposal};

fn entry(index: u64) -> Entry {
    let put = PutRequest { key: format!("key{index:08}").into(), value: vec![b'v'; 256].into(), ..Default::default() };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal::single(WriteRequest {
            request: Some(Request::Put(put)),
            proposed_at_ms: 0,
        })),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft_log");
    group.sample_size(20).measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(1));
    group.bench_function("append_1_entry_fsync", |b| {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        let mut next = 1u64;
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (tx, rx) = mpsc::channel();
                log.append_with([entry(next)], Box::new(move |r| tx.send(r).unwrap())).unwrap();
                rx.recv().unwrap().unwrap();
                next += 1;
            }
            start.elapsed()
        });
    });

    const CONCURRENT: u64 = 64;
    group.throughput(Throughput::Elements(CONCURRENT));
    group.bench_function("append_64_concurrent_group_commit", |b| {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        let mut next = 1u64;
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (tx, rx) = mpsc::channel();
                for _ in 0..CONCURRENT {
                    let tx = tx.clone();
                    log.append_with([entry(next)], Box::new(move |r| tx.send(r).unwrap())).unwrap();
                    next += 1;
                }
                for _ in 0..CONCURRENT {
                    rx.recv().unwrap().unwrap();
                }
            }
            start.elapsed()
        });
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_decode_entry", |b| {
        let e = entry(7);
        b.iter(|| {
            let mut buf = Vec::with_capacity(400);
            strake_raft::codec::encode_entry(&e, &mut buf);
            strake_raft::codec::decode_entry(&buf).unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
