//! Checking a history for linearizability: compile against a model, split into
//! independent partitions (P-compositionality), search each in parallel, and on a
//! violation find the first operation that cannot be linearized (as Knossos reports
//! it), the last correct one before it, and a small failing sub-history.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::formats::{self, Format};
use crate::history::{self, Event, Operation, Outcome, INFINITY};
use crate::model::{self, Model};
use crate::wgl::{self, SearchOp, Verdict};

/// The models a history can be checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Single register, initially absent; failed CAS is a definite compare failure.
    EtcdRegister,
    /// Knossos' CAS register, initially 0; nil reads are unknown.
    CasRegister,
    /// Knossos' multi-register transactions over x and y (initially 0).
    MultiRegister,
    /// A lock.
    Mutex,
    /// Porcupine's key-value get/put/append.
    KvAppend,
    /// Elle list-append transactions (serializability, not linearizability).
    ListAppend,
}

/// An operation as reported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpSummary {
    /// Position of the completion event in the file (the invocation's when none).
    pub index: usize,
    /// Process.
    pub process: i64,
    /// Function.
    pub f: String,
    /// Key, if any.
    pub key: serde_json::Value,
    /// Input.
    pub input: serde_json::Value,
    /// Output.
    pub output: serde_json::Value,
    /// Outcome.
    pub outcome: Outcome,
}

impl OpSummary {
    fn of(op: &Operation) -> OpSummary {
        OpSummary {
            index: op.complete_index.unwrap_or(op.invoke_index),
            process: op.process,
            f: op.f.clone(),
            key: op.key.clone(),
            input: op.input.clone(),
            output: op.output.clone(),
            outcome: op.outcome,
        }
    }
}

/// Where a history stops being linearizable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    /// The partition (key) that failed, if partitioned.
    pub partition: Option<String>,
    /// The first operation that cannot be linearized.
    pub op: Option<OpSummary>,
    /// Event index of the last ok completion before it.
    pub previous_ok: Option<usize>,
    /// Operation ids of the longest linearizable prefix found.
    pub longest_linearized: Vec<usize>,
    /// A small sub-history that is still not linearizable.
    pub minimal: Vec<OpSummary>,
}

/// Per-partition statistics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionStat {
    /// Key.
    pub key: Option<String>,
    /// Operations.
    pub ops: usize,
    /// Answer.
    pub verdict: Verdict,
    /// Search steps.
    pub steps: u64,
}

/// The outcome of checking a history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    /// The file.
    pub file: String,
    /// Its format.
    pub format: Option<Format>,
    /// The model.
    pub model: ModelKind,
    /// Overall answer.
    pub verdict: Verdict,
    /// Operations checked (after dropping those with no effect).
    pub ops: usize,
    /// Wall time, milliseconds.
    pub elapsed_ms: f64,
    /// Partitions.
    pub partitions: Vec<PartitionStat>,
    /// Where it fails, for non-linearizable histories.
    pub failure: Option<Failure>,
    /// Transactional anomalies found (list-append).
    pub anomalies: Vec<String>,
    /// Consistency models ruled out (list-append).
    pub not: Vec<String>,
    /// Human-readable notes.
    pub notes: Vec<String>,
}

/// Exit code for a verdict: 0 valid, 1 anomaly, 2 undecided.
pub fn exit_code(v: Verdict) -> i32 {
    match v {
        Verdict::Linearizable => 0,
        Verdict::NotLinearizable => 1,
        Verdict::Unknown => 2,
    }
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Unreadable input.
    #[error(transparent)]
    Format(#[from] formats::FormatError),
    /// Events that do not pair.
    #[error(transparent)]
    History(#[from] history::HistoryError),
    /// Operations the model does not understand.
    #[error("{0}")]
    Model(String),
}

/// How long shrinking a failure may take.
pub const SHRINK_BUDGET: Duration = Duration::from_secs(2);

fn compile<M: Model>(model: &M, ops: &[&Operation]) -> Result<Vec<SearchOp<M::Op>>, CheckError> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        if let Some(c) = model.compile(op).map_err(CheckError::Model)? {
            out.push(SearchOp { id: op.id, call: op.call, ret: op.ret, op: c });
        }
    }
    Ok(out)
}

/// `op` as it looked when only events before `k` had happened. A failed operation
/// stays failed: like Knossos, the checker knows up front that it did nothing.
fn truncated(op: &Operation, k: usize) -> Operation {
    let mut o = op.clone();
    if o.outcome != Outcome::Fail && o.complete_index.is_none_or(|c| c >= k) {
        o.outcome = Outcome::Info;
        o.output = serde_json::Value::Null;
        o.ret = INFINITY;
        o.complete_index = None;
    }
    o
}

fn linearizable<M: Model>(model: &M, ops: &[Operation], deadline: Option<Instant>) -> Result<Verdict, CheckError> {
    let refs: Vec<&Operation> = ops.iter().collect();
    let compiled = compile(model, &refs)?;
    Ok(wgl::search(model, &compiled, deadline, &AtomicBool::new(false)).verdict)
}

/// Finds the first completion after which the history cannot be linearized, by
/// binary search on history prefixes; then shrinks the failing prefix.
fn analyse<M: Model>(
    model: &M,
    ops: &[&Operation],
    all_ops: &[Operation],
    partition: Option<String>,
    longest: Vec<usize>,
) -> Result<Failure, CheckError> {
    let end = ops.iter().filter_map(|o| o.complete_index.or(Some(o.invoke_index))).max().unwrap_or(0) + 1;
    let prefix =
        |k: usize| -> Vec<Operation> { ops.iter().filter(|o| o.invoke_index < k).map(|o| truncated(o, k)).collect() };
    let (mut lo, mut hi) = (0usize, end);
    // Invariant: prefix(lo) is linearizable, prefix(hi) is not.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match linearizable(model, &prefix(mid), None)? {
            Verdict::NotLinearizable => hi = mid,
            _ => lo = mid,
        }
    }
    let failing_event = hi - 1;
    let op = ops.iter().find(|o| o.complete_index == Some(failing_event)).map(|o| OpSummary::of(o));
    let previous_ok = all_ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| o.complete_index)
        .filter(|c| *c < failing_event)
        .max();
    // Shrink: drop operations while the rest stays non-linearizable.
    let mut kept: Vec<Operation> = prefix(hi);
    let deadline = Instant::now() + SHRINK_BUDGET;
    let mut i = kept.len();
    while i > 0 && Instant::now() < deadline {
        i -= 1;
        if kept[i].complete_index == Some(failing_event) {
            continue;
        }
        let mut candidate = kept.clone();
        candidate.remove(i);
        if linearizable(model, &candidate, Some(deadline))? == Verdict::NotLinearizable {
            kept = candidate;
        }
    }
    Ok(Failure {
        partition,
        op,
        previous_ok,
        longest_linearized: longest,
        minimal: kept.iter().map(OpSummary::of).collect(),
    })
}

/// Checks operations against `model`, by partition when `partition` is set and the
/// model allows it.
/// With `explain`, a violation is analysed (first failing operation, shrunk window).
pub fn check_ops<M: Model>(
    model: &M,
    ops: &[Operation],
    partition: bool,
    budget: Option<Duration>,
    explain: bool,
) -> Result<(Verdict, Vec<PartitionStat>, Option<Failure>, usize), CheckError> {
    let mut parts: BTreeMap<Option<String>, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        let key = if partition { model.partition(op) } else { None };
        parts.entry(key).or_default().push(op);
    }
    let mut compiled = Vec::new();
    let mut total = 0;
    for (k, v) in &parts {
        let c = compile(model, v)?;
        total += c.len();
        compiled.push((k.clone(), c));
    }
    let deadline = budget.map(|b| Instant::now() + b);
    let cancel = AtomicBool::new(false);
    let results: StdMutex<Vec<(Option<String>, wgl::SearchResult, usize)>> = StdMutex::new(Vec::new());
    // Rounds of growing step budgets over the undecided partitions, so an easy
    // violation in one partition is found before a long search in another.
    let mut pending: Vec<usize> = (0..compiled.len()).collect();
    let mut round_budget: u64 = 20_000;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    while !pending.is_empty() && !cancel.load(Ordering::Relaxed) {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let undecided: StdMutex<Vec<usize>> = StdMutex::new(Vec::new());
        let last_round = round_budget >= 1 << 40 || deadline.is_some_and(|d| Instant::now() > d);
        let budget_now = if last_round { u64::MAX } else { round_budget };
        std::thread::scope(|s| {
            for _ in 0..workers.min(pending.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&p) = pending.get(i) else { return };
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let (key, part) = &compiled[p];
                    let r = wgl::search_bounded(model, part, deadline, &cancel, budget_now);
                    if r.verdict == Verdict::Unknown && !last_round && !cancel.load(Ordering::Relaxed) {
                        undecided.lock().expect("not poisoned").push(p);
                        continue;
                    }
                    if r.verdict == Verdict::NotLinearizable {
                        cancel.store(true, Ordering::Relaxed);
                    }
                    results.lock().expect("not poisoned").push((key.clone(), r, part.len()));
                });
            }
        });
        pending = undecided.into_inner().expect("not poisoned");
        pending.sort_unstable();
        round_budget = round_budget.saturating_mul(8);
    }
    let results = results.into_inner().expect("not poisoned");
    let stats: Vec<PartitionStat> = results
        .iter()
        .map(|(k, r, n)| PartitionStat { key: k.clone(), ops: *n, verdict: r.verdict, steps: r.steps })
        .collect();
    let verdict = if results.iter().any(|(_, r, _)| r.verdict == Verdict::NotLinearizable) {
        Verdict::NotLinearizable
    } else if results.len() == compiled.len() && results.iter().all(|(_, r, _)| r.verdict == Verdict::Linearizable) {
        Verdict::Linearizable
    } else {
        Verdict::Unknown
    };
    let failure = match results.iter().find(|(_, r, _)| r.verdict == Verdict::NotLinearizable) {
        Some((key, r, _)) if explain => Some(analyse(model, &parts[key], ops, key.clone(), r.longest.clone())?),
        Some((key, r, _)) => Some(Failure {
            partition: key.clone(),
            op: None,
            previous_ok: None,
            longest_linearized: r.longest.clone(),
            minimal: vec![],
        }),
        None => None,
    };
    Ok((verdict, stats, failure, total))
}

/// Checks `events` against the model `kind`.
pub fn check_events(
    events: &[Event],
    kind: ModelKind,
    partition: bool,
    budget: Option<Duration>,
    explain: bool,
) -> Result<CheckReport, CheckError> {
    let started = Instant::now();
    let mut report = CheckReport {
        file: String::new(),
        format: None,
        model: kind,
        verdict: Verdict::Unknown,
        ops: 0,
        elapsed_ms: 0.0,
        partitions: vec![],
        failure: None,
        anomalies: vec![],
        not: vec![],
        notes: vec![],
    };
    if kind == ModelKind::ListAppend {
        let r = crate::elle::check(events, budget.unwrap_or(crate::elle::CYCLE_SEARCH_BUDGET))?;
        report.verdict = if r.anomalies.is_empty() { Verdict::Linearizable } else { Verdict::NotLinearizable };
        report.ops = r.txns;
        report.anomalies =
            r.anomalies.iter().map(|a| a.kind.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        report.not = r.not;
        report.notes = r.anomalies.iter().take(20).map(|a| a.to_string()).collect();
        report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        return Ok(report);
    }
    let ops = history::pair(events)?;
    let (verdict, partitions, failure, n) = match kind {
        ModelKind::EtcdRegister => check_ops(&model::Register::etcd(), &ops, partition, budget, explain)?,
        ModelKind::CasRegister => check_ops(&model::Register::cas(), &ops, partition, budget, explain)?,
        ModelKind::MultiRegister => {
            let m = model::MultiRegister { initial: [("x".to_string(), 0), ("y".to_string(), 0)].into() };
            check_ops(&m, &ops, partition, budget, explain)?
        }
        ModelKind::Mutex => check_ops(&model::Mutex, &ops, partition, budget, explain)?,
        ModelKind::KvAppend if partition => check_ops(&model::KvAppend, &ops, true, budget, explain)?,
        ModelKind::KvAppend => check_ops(&model::KvMap, &ops, false, budget, explain)?,
        ModelKind::ListAppend => unreachable!("handled above"),
    };
    report.verdict = verdict;
    report.partitions = partitions;
    report.failure = failure;
    report.ops = n;
    report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(report)
}

/// Reads and checks a history file.
pub fn check_file(
    path: &Path,
    kind: ModelKind,
    format: Option<Format>,
    partition: bool,
    budget: Option<Duration>,
    explain: bool,
) -> Result<CheckReport, CheckError> {
    let (format, events) = formats::read(path, format)?;
    let mut report = check_events(&events, kind, partition, budget, explain)?;
    report.file = path.display().to_string();
    report.format = Some(format);
    Ok(report)
}
