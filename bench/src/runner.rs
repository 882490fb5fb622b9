//! Running a workload: preload, concurrent clients (or watchers and a writer),
//! optional rate limit, HDR histograms, a progress bar.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use strake_proto::etcdserverpb::watch_request::RequestUnion;
use strake_proto::etcdserverpb::{PutRequest, TxnRequest, WatchCreateRequest, WatchRequest};
use tokio::sync::Mutex;

use crate::client::Pool;
use crate::report::{new_histogram, Summary};
use crate::workload::{self, ClientState, Counters, KeySpec, Workload};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Endpoints, host:port or URLs.
    pub endpoints: Vec<String>,
    /// Concurrent clients (or watchers for watch workloads).
    pub clients: usize,
    /// gRPC connections shared by the clients.
    pub conns: usize,
    /// Stop after this many operations...
    pub total: Option<u64>,
    /// ...or after this long.
    pub duration: Duration,
    /// Keys and values.
    pub keys: KeySpec,
    /// Operations per second for all clients together (the writer's rate for watch workloads).
    pub rate: Option<f64>,
    /// Label of the target in reports.
    pub target: String,
    /// Show a progress bar.
    pub progress: bool,
}

struct Outcome {
    hist: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome { hist: new_histogram(), errors: BTreeMap::new() }
    }
    fn record(&mut self, started: Instant, result: Result<(), tonic::Status>) {
        match result {
            Ok(()) => {
                let _ = self.hist.record(started.elapsed().as_micros().max(1) as u64);
            }
            Err(e) => *self.errors.entry(format!("{:?}: {}", e.code(), e.message())).or_default() += 1,
        }
    }
    fn merge(&mut self, other: Outcome) {
        let _ = self.hist.add(other.hist);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

fn progress(opts: &RunOptions, label: &str) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let bar = match opts.total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new(opts.duration.as_secs().max(1)),
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>24} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Writes the keys a workload reads or updates, in batches of 100 per txn.
pub async fn preload(pool: &Pool, workload: Workload, keys: &KeySpec, conns: usize) -> anyhow::Result<()> {
    let total = if workload == Workload::K8sMix {
        workload::k8s_objects(keys) * workload::K8S_RESOURCES.len() as u64
    } else {
        keys.key_space
    };
    let spec = keys.clone();
    let key_of = move |n: u64| {
        if workload == Workload::K8sMix {
            let per = workload::k8s_objects(&spec);
            workload::k8s_key((n / per) as usize, n % per)
        } else {
            spec.key(n)
        }
    };
    const BATCH: u64 = 100;
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..conns.max(1) * 4)
        .map(|i| {
            let mut kv = pool.kv(i);
            let next = next.clone();
            let value = keys.value();
            let key_of = key_of.clone();
            tokio::spawn(async move {
                loop {
                    let start = next.fetch_add(BATCH, Ordering::Relaxed);
                    if start >= total {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let ops = (start..(start + BATCH).min(total))
                        .map(|n| strake_proto::etcdserverpb::RequestOp {
                            request: Some(strake_proto::etcdserverpb::request_op::Request::RequestPut(PutRequest {
                                key: key_of(n).into(),
                                value: value.clone().into(),
                                ..Default::default()
                            })),
                        })
                        .collect();
                    kv.txn(TxnRequest { compare: vec![], success: ops, failure: vec![] }).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Runs `workload` and returns its summary.
pub async fn run(workload: Workload, opts: &RunOptions) -> anyhow::Result<Summary> {
    let pool = Pool::connect(&opts.endpoints, opts.conns).await?;
    if workload.needs_preload() {
        preload(&pool, workload, &opts.keys, opts.conns).await?;
    }
    if workload.is_watch() {
        return run_watch(workload, opts, &pool).await;
    }
    let bar = progress(opts, workload.name());
    let counters = Arc::new(Counters::default());
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut k8s_watchers = Vec::new();
    if workload == Workload::K8sMix {
        for r in 0..workload::K8S_RESOURCES.len() {
            let prefix = format!("{}{}/", workload::K8S_PREFIX, workload::K8S_RESOURCES[r]).into_bytes();
            k8s_watchers.push(spawn_watcher(&pool, r, prefix, true, None, None).await?);
        }
    }
    let tasks: Vec<_> = (0..opts.clients.max(1))
        .map(|c| {
            let pool = pool.clone();
            let opts = opts.clone();
            let counters = counters.clone();
            let issued = issued.clone();
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut kv = pool.kv(c);
                let mut state = ClientState::default();
                let mut out = Outcome::new();
                loop {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if opts.total.is_some_and(|t| n >= t) || Instant::now() >= deadline {
                        break;
                    }
                    if let Some(rate) = opts.rate {
                        let due = started + Duration::from_secs_f64(n as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let t = Instant::now();
                    let r =
                        workload::run_op(workload, c, opts.clients, &mut kv, &pool, &opts.keys, &mut state, &counters)
                            .await;
                    out.record(t, r);
                    if opts.total.is_some() {
                        bar.inc(1);
                    }
                }
                out
            })
        })
        .collect();
    let ticker = {
        let bar = bar.clone();
        let timed = opts.total.is_none();
        tokio::spawn(async move {
            if timed {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    bar.inc(1);
                }
            }
        })
    };
    let mut total = Outcome::new();
    for t in tasks {
        total.merge(t.await?);
    }
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    for w in k8s_watchers {
        w.stop.store(true, Ordering::Relaxed);
    }
    Ok(Summary::new(workload.name(), &opts.target, &total.hist, total.errors, elapsed))
}

struct WatcherHandle {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Outcome>,
}

/// Opens a watch and records, for every event, `now - sent` where the value of the
/// event holds the send time (µs since `base`) — when `base` is given.
async fn spawn_watcher(
    pool: &Pool,
    i: usize,
    key: Vec<u8>,
    prefix: bool,
    base: Option<Instant>,
    ready: Option<Arc<tokio::sync::Barrier>>,
) -> anyhow::Result<WatcherHandle> {
    let mut client = pool.watch(i);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let range_end = if prefix { workload::prefix_end(&key) } else { vec![] };
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..Default::default()
        })),
    })
    .await?;
    let mut stream = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let task = tokio::spawn(async move {
        let _keep_sender_open = tx;
        let mut out = Outcome::new();
        let mut created = false;
        while !stop2.load(Ordering::Relaxed) {
            let msg = match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    out.record(Instant::now(), Err(e));
                    break;
                }
                Ok(Some(Ok(m))) => m,
            };
            if msg.created && !created {
                created = true;
                if let Some(b) = &ready {
                    b.wait().await;
                }
            }
            let Some(base) = base else { continue };
            let now = base.elapsed().as_micros() as u64;
            for ev in msg.events {
                let sent: u64 = ev
                    .kv
                    .as_ref()
                    .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.split(':').next()?.parse().ok())
                    .unwrap_or(now);
                let _ = out.hist.record(now.saturating_sub(sent).max(1));
            }
        }
        out
    });
    Ok(WatcherHandle { stop, task })
}

async fn run_watch(workload: Workload, opts: &RunOptions, pool: &Pool) -> anyhow::Result<Summary> {
    let base = Instant::now();
    let watchers = opts.clients.max(1);
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    let (key, prefix) = match workload {
        Workload::WatchLatency => (b"/watch-latency/".to_vec(), true),
        _ => (b"/watch-fanout-hot-key".to_vec(), false),
    };
    let mut handles = Vec::new();
    for i in 0..watchers {
        handles.push(spawn_watcher(pool, i, key.clone(), prefix, Some(base), Some(ready.clone())).await?);
    }
    ready.wait().await;
    let rate = opts.rate.unwrap_or(500.0);
    let bar = progress(opts, workload.name());
    let writer_errors = Arc::new(Mutex::new(BTreeMap::new()));
    let started = Instant::now();
    let mut kv = pool.kv(watchers);
    let mut n = 0u64;
    while started.elapsed() < opts.duration && opts.total.is_none_or(|t| n < t) {
        let due = started + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let k = if prefix {
            [key.clone(), format!("{}", n % opts.keys.key_space.max(1)).into_bytes()].concat()
        } else {
            key.clone()
        };
        let sent = base.elapsed().as_micros();
        let mut value = format!("{sent}:").into_bytes();
        value.resize(opts.keys.val_size.max(value.len()), b'v');
        if let Err(e) = kv.put(PutRequest { key: k.into(), value: value.into(), ..Default::default() }).await {
            *writer_errors.lock().await.entry(format!("{:?}: {}", e.code(), e.message())).or_default() += 1;
        }
        n += 1;
        if n.is_multiple_of((rate as u64).max(1)) {
            bar.inc(1);
        }
    }
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut total = Outcome::new();
    for h in handles {
        h.stop.store(true, Ordering::Relaxed);
        total.merge(h.task.await?);
    }
    for (k, v) in writer_errors.lock().await.iter() {
        *total.errors.entry(k.clone()).or_default() += v;
    }
    let expected = n * watchers as u64;
    if total.hist.len() < expected {
        *total.errors.entry("events missing".into()).or_default() += expected - total.hist.len();
    }
    Ok(Summary::new(workload.name(), &opts.target, &total.hist, total.errors, elapsed))
}
