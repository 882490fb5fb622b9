//! Store micro-benchmarks: the apply and read paths kube-apiserver exercises most.
//!
//! `cargo bench -p strake-store --bench store -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::request_op::Request as Op;
use strake_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use strake_proto::strakepb::{write_request::Request as W, write_result::Result as R, WriteRequest};
use strake_store::{prefix_end, EngineOptions, KeyRange, SessionMessage, Store, WatchSession, WatchSpec};

const KEY_SPACE: usize = 100_000;
const NAMESPACES: usize = KEY_SPACE / 500;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

fn wr(request: W) -> WriteRequest {
    WriteRequest { request: Some(request), ..Default::default() }
}

fn put(key: &Bytes, value: &Bytes) -> PutRequest {
    PutRequest { key: key.clone(), value: value.clone(), ..Default::default() }
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; 256])
}

/// `/registry/pods/ns<i % 200>/pod<i>`: 200 prefixes of 500 keys each.
fn pod_keys() -> Vec<Bytes> {
    (0..KEY_SPACE).map(|i| Bytes::from(format!("/registry/pods/ns{:03}/pod{:06}", i % NAMESPACES, i))).collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    marker: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &EngineOptions::default()).unwrap();
        Fixture { _dir: dir, store, marker: 0 }
    }

    fn apply(&mut self, req: &WriteRequest) -> R {
        self.marker += 1;
        self.store.apply(req, &self.marker.to_be_bytes()).unwrap()
    }

    /// Writes every key once, 1000 per txn.
    fn fill(&mut self, keys: &[Bytes]) {
        let v = value();
        for chunk in keys.chunks(1000) {
            let success = chunk.iter().map(|k| RequestOp { request: Some(Op::RequestPut(put(k, &v))) }).collect();
            self.apply(&wr(W::Txn(TxnRequest { success, ..Default::default() })));
        }
    }
}

fn bench_put(c: &mut Criterion) {
    let keys = pod_keys();
    let v = value();
    let mut f = Fixture::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("put_256B_random_key_100k", |b| {
        b.iter(|| {
            let req = wr(W::Put(put(&keys[rng.below(KEY_SPACE)], &v)));
            black_box(f.apply(&req))
        })
    });
    group.finish();
}

fn bench_range(c: &mut Criterion) {
    let keys = pod_keys();
    let mut f = Fixture::new();
    f.fill(&keys);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut group = c.benchmark_group("range");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_key", |b| {
        b.iter(|| {
            let req = RangeRequest { key: keys[rng.below(KEY_SPACE)].clone(), ..Default::default() };
            let resp = f.store.range(&req).unwrap();
            debug_assert_eq!(resp.kvs.len(), 1);
            black_box(resp)
        })
    });
    // kube-apiserver's paged List: a prefix of 500 keys, limit 100, with the count.
    group.bench_function("prefix_500_keys_limit_100", |b| {
        b.iter(|| {
            let prefix = format!("/registry/pods/ns{:03}/", rng.below(NAMESPACES));
            let req = RangeRequest {
                key: Bytes::from(prefix.clone()),
                range_end: Bytes::from(prefix_end(prefix.as_bytes())),
                limit: 100,
                ..Default::default()
            };
            let resp = f.store.range(&req).unwrap();
            debug_assert_eq!((resp.kvs.len(), resp.count, resp.more), (100, 500, true));
            black_box(resp)
        })
    });
    group.finish();
}

/// kube-apiserver's update: `Txn(mod_revision(k) == rev ? Put(k) : Get(k))`.
fn bench_txn(c: &mut Criterion) {
    let keys = pod_keys();
    let v = value();
    let mut f = Fixture::new();
    f.fill(&keys);
    let mut mod_revs = Vec::with_capacity(KEY_SPACE);
    for k in &keys {
        let r = f.store.range(&RangeRequest { key: k.clone(), ..Default::default() }).unwrap();
        mod_revs.push(r.kvs[0].mod_revision);
    }
    let mut rng = Rng(0x94D0_49BB_1331_11EB);
    let mut group = c.benchmark_group("txn");
    group.throughput(Throughput::Elements(1));
    group.bench_function("compare_mod_revision_then_put", |b| {
        b.iter(|| {
            let i = rng.below(KEY_SPACE);
            let key = &keys[i];
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Mod as i32,
                    key: key.clone(),
                    range_end: Bytes::new(),
                    target_union: Some(TargetUnion::ModRevision(mod_revs[i])),
                }],
                success: vec![RequestOp { request: Some(Op::RequestPut(put(key, &v))) }],
                failure: vec![RequestOp {
                    request: Some(Op::RequestRange(RangeRequest { key: key.clone(), ..Default::default() })),
                }],
            };
            let R::Txn(resp) = f.apply(&wr(W::Txn(txn))) else { panic!("not a txn response") };
            assert!(resp.succeeded);
            mod_revs[i] = resp.header.unwrap().revision;
        })
    });
    group.finish();
}

/// One Put whose event goes to 100 watchers (one session each, as 100 clients):
/// the time of `apply`, which includes publishing to every session's channel.
/// Draining the sessions is not timed.
fn bench_watch_fanout(c: &mut Criterion) {
    const WATCHERS: usize = 100;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let v = value();
    let mut f = Fixture::new();
    let prefix = b"/registry/events/";
    let mut sessions: Vec<WatchSession> = (0..WATCHERS)
        .map(|_| {
            let mut s = WatchSession::new(f.store.clone());
            let spec = WatchSpec {
                range: KeyRange::new(prefix, &prefix_end(prefix)),
                start_revision: 0,
                prev_kv: true,
                no_put: false,
                no_delete: false,
                progress_notify: false,
            };
            s.create(0, spec).unwrap();
            s
        })
        .collect();
    let mut n = 0u64;
    let mut group = c.benchmark_group("watch");
    group.throughput(Throughput::Elements(1));
    group.bench_function("put_fanout_100_watchers", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let key = Bytes::from(format!("/registry/events/e{:06}", n % 10_000));
                let req = wr(W::Put(put(&key, &v)));
                let start = Instant::now();
                black_box(f.apply(&req));
                timed += start.elapsed();
                for s in &mut sessions {
                    match rt.block_on(s.next()) {
                        SessionMessage::Events { events, .. } => assert_eq!(events.len(), 1),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, bench_put, bench_range, bench_txn, bench_watch_fanout);
criterion_main!(benches);
