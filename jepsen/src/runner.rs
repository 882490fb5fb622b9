//! Running a test: start a cluster, drive concurrent processes while a nemesis
//! injects faults, heal, record the history, check it, write the report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::{self, CheckReport, ModelKind};
use crate::client::{self, CallError};
use crate::cluster::{LocalCluster, TargetSpec};
use crate::history::{Event, EventType};
use crate::nemesis::{self, Fault};
use crate::wgl::Verdict;
use crate::workload::{self, WorkloadKind};

/// How to run a test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// The cluster.
    pub target: TargetSpec,
    /// What the processes do.
    pub workload: WorkloadKind,
    /// How long the clients run.
    pub duration: Duration,
    /// Concurrent processes.
    pub concurrency: usize,
    /// Operations per second, all processes together.
    pub rate: f64,
    /// Faults to choose from (empty: none).
    pub faults: Vec<Fault>,
    /// Time between faults.
    pub nemesis_interval: Duration,
    /// How long a fault lasts.
    pub nemesis_duration: Duration,
    /// Per-operation timeout (then the outcome is unknown).
    pub op_timeout: Duration,
    /// Where the history, report and server logs go.
    pub out: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
}

/// A nemesis window, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    /// Start, ns since the test began.
    pub start: u64,
    /// End.
    pub end: u64,
    /// What happened.
    pub label: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    /// Overall answer.
    pub verdict: Verdict,
    /// Operations by outcome (ok, fail, info).
    pub counts: [u64; 3],
    /// The linearizability / transactional check.
    pub check: Option<CheckReport>,
    /// Violations found by the watch, lease or lock checkers.
    pub problems: Vec<String>,
    /// Fault windows.
    pub windows: Vec<Window>,
    /// Files written.
    pub history: PathBuf,
    /// The HTML report.
    pub report: PathBuf,
}

struct Recorder {
    started: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }
    fn push(&self, mut e: Event) {
        e.time = Some(self.now());
        self.events.lock().expect("not poisoned").push(e);
    }
}

fn event(
    process: i64,
    kind: EventType,
    f: &str,
    key: &Value,
    value: Value,
    error: Option<String>,
    node: &str,
) -> Event {
    Event {
        process: Some(process),
        kind,
        f: f.into(),
        key: key.clone(),
        value,
        time: None,
        error,
        node: Some(node.into()),
    }
}

/// Runs the test described by `cfg`.
pub async fn run(cfg: RunConfig) -> anyhow::Result<RunOutcome> {
    std::fs::create_dir_all(&cfg.out)?;
    let mut target = cfg.target.clone();
    target.proxied = cfg.faults.iter().any(Fault::needs_proxy);
    let cluster_dir = cfg.out.join("cluster");
    let cluster = Arc::new(tokio::sync::Mutex::new(LocalCluster::create(target, &cluster_dir).await?));
    cluster.lock().await.start(Duration::from_secs(60)).await?;
    let endpoints = cluster.lock().await.endpoints();
    let rec = Arc::new(Recorder { started: Instant::now(), events: Mutex::new(Vec::new()) });
    let stop = Arc::new(AtomicBool::new(false));
    let ops_done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + cfg.duration;
    let bar = if cfg.progress {
        let b = ProgressBar::new(cfg.duration.as_secs());
        b.set_style(
            ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len}s {msg}")
                .expect("template"),
        );
        b.set_prefix(format!("{} {:?}", cfg.target.name, cfg.workload));
        b
    } else {
        ProgressBar::hidden()
    };

    // Watchers run beside the writers for the watch workload.
    let final_rev = Arc::new(AtomicI64::new(0));
    let watchers: Vec<_> = if cfg.workload == WorkloadKind::Watch {
        (0..3)
            .map(|i| tokio::spawn(workload::watch::watch(i, endpoints.clone(), stop.clone(), final_rev.clone())))
            .collect()
    } else {
        vec![]
    };

    let next_value = Arc::new(AtomicI64::new(0));
    let workers: Vec<_> = (0..cfg.concurrency)
        .map(|w| {
            let endpoints = endpoints.clone();
            let rec = rec.clone();
            let cfg = cfg.clone();
            let ops_done = ops_done.clone();
            let next_value = next_value.clone();
            tokio::spawn(async move {
                let mut process = w as i64;
                let mut member = w % endpoints.len();
                let connect =
                    |member: usize| workload::ProcessState::connect(cfg.workload, &endpoints[member], cfg.op_timeout);
                let mut state = connect(member).await.expect("endpoint");
                let per_worker = Duration::from_secs_f64(cfg.concurrency as f64 / cfg.rate.max(0.1));
                while Instant::now() < deadline {
                    if let Some(pause) = state.stall() {
                        tokio::time::sleep(pause).await;
                    }
                    let started = Instant::now();
                    let node = endpoints[member].clone();
                    let (f, key, value) = state.next(process, &next_value);
                    rec.push(event(process, EventType::Invoke, &f, &key, value.clone(), None, &node));
                    let call = state.invoke(&f, &key, &value, cfg.op_timeout);
                    let result = match tokio::time::timeout(cfg.op_timeout, call).await {
                        Ok(r) => r,
                        Err(_) => Err(CallError::Info("timeout".into())),
                    };
                    match result {
                        Ok((out, rev)) => {
                            let mut e = event(process, EventType::Ok, &f, &key, out, None, &node);
                            if let Some(r) = rev {
                                e.error = Some(format!("revision {r}"));
                            }
                            rec.push(e);
                        }
                        Err(CallError::Fail(m)) => {
                            rec.push(event(process, EventType::Fail, &f, &key, value.clone(), Some(m), &node))
                        }
                        Err(CallError::Info(m)) => {
                            let moved = client::unreachable(&m);
                            rec.push(event(process, EventType::Info, &f, &key, value.clone(), Some(m), &node));
                            // An unknown outcome retires the process. Its successor
                            // stays on the same member (as Jepsen binds threads to
                            // nodes, so a deposed leader keeps being asked) unless
                            // that member cannot be reached at all.
                            process += cfg.concurrency as i64;
                            if moved {
                                member = (member + 1) % endpoints.len();
                            }
                            state = connect(member).await.expect("endpoint");
                        }
                    }
                    ops_done.fetch_add(1, Ordering::Relaxed);
                    if let Some(rest) = per_worker.checked_sub(started.elapsed()) {
                        tokio::time::sleep(rest).await;
                    }
                }
            })
        })
        .collect();

    // The nemesis: a fault every interval, held for its duration, then healed.
    let windows: Arc<Mutex<Vec<Window>>> = Arc::default();
    let nemesis = {
        let cluster = cluster.clone();
        let windows = windows.clone();
        let rec = rec.clone();
        let faults = cfg.faults.clone();
        let (interval, hold) = (cfg.nemesis_interval, cfg.nemesis_duration);
        let bar = bar.clone();
        tokio::spawn(async move {
            if faults.is_empty() {
                return;
            }
            loop {
                tokio::time::sleep(interval).await;
                if Instant::now() + hold > deadline {
                    return;
                }
                let fault = *faults.choose(&mut rand::rng()).expect("non-empty");
                let applied = nemesis::inject(&mut *cluster.lock().await, fault).await;
                let Some((applied, label)) = applied else { continue };
                let start = rec.now();
                bar.set_message(label.clone());
                rec.push(Event {
                    process: None,
                    kind: EventType::Info,
                    f: "start".into(),
                    key: Value::Null,
                    value: Value::String(label.clone()),
                    time: None,
                    error: None,
                    node: None,
                });
                tokio::time::sleep(hold).await;
                nemesis::heal(&mut *cluster.lock().await, &applied).await;
                rec.push(Event {
                    process: None,
                    kind: EventType::Info,
                    f: "stop".into(),
                    key: Value::Null,
                    value: Value::String(label.clone()),
                    time: None,
                    error: None,
                    node: None,
                });
                windows.lock().expect("not poisoned").push(Window { start, end: rec.now(), label });
                bar.set_message(String::new());
            }
        })
    };
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.set_position(cfg.duration.as_secs().min(rec.started.elapsed().as_secs()));
    }
    for w in workers {
        let _ = w.await;
    }
    nemesis.abort();
    // Heal everything and let the cluster recover.
    {
        let mut c = cluster.lock().await;
        if let Some(l) = &c.links {
            l.heal();
        }
        for i in 0..c.nodes.len() {
            if c.nodes[i].is_paused() {
                c.pause(i, false);
            }
            if !c.nodes[i].is_running() {
                let _ = c.start_node(i);
            }
        }
        for i in 0..c.nodes.len() {
            c.wait_healthy(i, Duration::from_secs(60)).await?;
        }
    }
    bar.finish_and_clear();
    let events = rec.events.lock().expect("not poisoned").clone();
    let history_path = cfg.out.join("history.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&history_path)?);
        for e in &events {
            crate::history::write_jsonl(&mut f, e)?;
        }
    }
    let mut counts = [0u64; 3];
    for e in &events {
        match (e.process, e.kind) {
            (Some(_), EventType::Ok) => counts[0] += 1,
            (Some(_), EventType::Fail) => counts[1] += 1,
            (Some(_), EventType::Info) => counts[2] += 1,
            _ => {}
        }
    }
    let windows = windows.lock().expect("not poisoned").clone();
    let (verdict, check, problems) = match cfg.workload {
        WorkloadKind::Register => {
            let r = check::check_events(&events, ModelKind::EtcdRegister, true, Some(Duration::from_secs(300)), true)?;
            (r.verdict, Some(r), vec![])
        }
        WorkloadKind::Append => {
            let r = check::check_events(&events, ModelKind::ListAppend, true, Some(Duration::from_secs(60)), true)?;
            (r.verdict, Some(r), vec![])
        }
        WorkloadKind::Lease | WorkloadKind::Lock | WorkloadKind::LockUnfenced => {
            let problems = if cfg.workload == WorkloadKind::Lease {
                workload::lease::check(&events)
            } else {
                workload::lock::check(&events)
            };
            (if problems.is_empty() { Verdict::Linearizable } else { Verdict::NotLinearizable }, None, problems)
        }
        WorkloadKind::Watch => {
            let mut kv = client::connect(&endpoints[0], Duration::from_secs(10)).await.map_err(anyhow::Error::msg)?;
            let head = kv
                .range(strake_proto::etcdserverpb::RangeRequest {
                    key: "/jepsen/watch/".into(),
                    range_end: crate::workload_prefix_end(b"/jepsen/watch/").into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let rev = head.header.map_or(0, |h| h.revision);
            final_rev.store(rev, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
            let mut logs = Vec::new();
            for w in watchers {
                logs.push(tokio::time::timeout(Duration::from_secs(60), w).await??);
            }
            let writes: Vec<workload::watch::WriteRecord> = events
                .iter()
                // Acknowledged writes must appear; unknown ones may.
                .filter(|e| e.process.is_some() && matches!(e.kind, EventType::Ok | EventType::Info))
                .map(|e| workload::watch::WriteRecord {
                    key: format!("{}{}", workload::watch::PREFIX, e.key),
                    value: e.value.as_str().unwrap_or("").to_string(),
                    revision: e.error.as_deref().and_then(|r| r.strip_prefix("revision ")).and_then(|r| r.parse().ok()),
                })
                .collect();
            let mut problems = workload::watch::check(&logs, &writes, rev);
            // Consistent with the KV state: the last event of each key is its value.
            for kv in &head.kvs {
                let key = String::from_utf8_lossy(&kv.key);
                let last = logs.first().and_then(|l| l.events.iter().rev().find(|e| e.key == key));
                if last.map(|e| e.value.as_bytes()) != Some(&kv.value[..]) {
                    problems.push(format!("the final value of {key} differs from the last watch event"));
                }
            }
            std::fs::write(cfg.out.join("watches.json"), serde_json::to_vec_pretty(&logs)?)?;
            (if problems.is_empty() { Verdict::Linearizable } else { Verdict::NotLinearizable }, None, problems)
        }
    };
    if cfg.workload != WorkloadKind::Watch {
        stop.store(true, Ordering::Relaxed);
    }
    let report_path = cfg.out.join("report.html");
    std::fs::write(&report_path, crate::report::html(&cfg, &events, &windows, check.as_ref(), &problems, verdict))?;
    let outcome = RunOutcome { verdict, counts, check, problems, windows, history: history_path, report: report_path };
    std::fs::write(cfg.out.join("results.json"), serde_json::to_vec_pretty(&outcome)?)?;
    cluster.lock().await.stop_all();
    Ok(outcome)
}

/// A put for the watch workload; returns the value and the write's revision.
/// Where the server logs of a run are.
pub fn logs_dir(out: &Path) -> PathBuf {
    out.join("cluster")
}
