//! A smoke run of the load generator: every `strake bench` workload for about a second
//! against a one-member strake and against real etcd (Debian's etcd-server), each
//! ending with operations done and no errors. Speed is not asserted here; the
//! figures come from `strake bench compare` (BENCHMARKS.md).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{runtime, strake_bin};
use strake_jepsen::cluster::{LocalCluster, TargetSpec};

const WORKLOADS: [&str; 11] = [
    "put",
    "put-seq",
    "range-linear",
    "range-serial",
    "txn-cas",
    "txn-mixed",
    "delete",
    "watch-latency",
    "watch-fanout",
    "lease",
    "k8s-mix",
];

/// Runs every workload against `endpoint`; returns the failures.
fn run_suite(endpoint: &str, label: &str, dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    for workload in WORKLOADS {
        let json = dir.join(format!("{label}-{workload}.json"));
        let out = std::process::Command::new(strake_bin())
            .args([
                "bench",
                "run",
                workload,
                "--endpoints",
                endpoint,
                "--duration",
                "1s",
                "--clients",
                "8",
                "--conns",
                "2",
            ])
            .args(["--key-space", "500", "--rate", "200", "--target", label, "--quiet", "--json"])
            .arg(&json)
            .output()
            .expect("run strake bench");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            failures.push(format!("{label} {workload}: exit {:?}\n{text}", out.status.code()));
            continue;
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("summary JSON")).expect("JSON");
        if summary["ops"].as_u64().unwrap_or(0) == 0 {
            failures.push(format!("{label} {workload}: no operations\n{text}"));
        }
        if summary["errors"].as_object().is_none_or(|e| !e.is_empty()) {
            failures.push(format!("{label} {workload}: errors {}", summary["errors"]));
        }
    }
    failures
}

fn smoke(spec: TargetSpec, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut cluster = rt.block_on(LocalCluster::create(spec, dir.path())).expect("lay out");
    rt.block_on(cluster.start(Duration::from_secs(30))).expect("start");
    let failures = run_suite(&cluster.endpoints()[0], label, dir.path());
    cluster.stop_all();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_workload_runs_without_errors_against_strake() {
    smoke(TargetSpec::strake(strake_bin(), 1), "strake");
}

#[test]
fn every_workload_runs_without_errors_against_real_etcd() {
    let etcd = PathBuf::from("/usr/bin/etcd");
    assert!(etcd.exists(), "/usr/bin/etcd missing: scripts/prereqs.sh --test installs etcd-server");
    smoke(TargetSpec::etcd(etcd, 1), "etcd");
}

/// `strake bench dataset` at a tiny scale against `spec`: every phase does work
/// without errors, and its compaction really discarded history (a read at revision 1
/// is refused as compacted afterwards).
fn dataset_smoke(spec: TargetSpec, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut cluster = rt.block_on(LocalCluster::create(spec, dir.path())).expect("lay out");
    rt.block_on(cluster.start(Duration::from_secs(30))).expect("start");
    let endpoint = cluster.endpoints()[0].clone();
    let json = dir.path().join("dataset.json");
    let out = std::process::Command::new(strake_bin())
        .args(["bench", "dataset", "--endpoints", &endpoint, "--keys", "3000", "--val-size", "1024"])
        .args(["--batch", "50", "--clients", "4", "--conns", "2", "--read-duration", "1s", "--overwrite", "0.5"])
        .args(["--load-rate", "20000"])
        .args(["--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("run strake bench dataset");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let old = std::process::Command::new("etcdctl")
        .args(["--endpoints", &endpoint, "get", "k000000000000001", "--rev=1"])
        .env("ETCDCTL_API", "3")
        .output()
        .expect("etcdctl");
    cluster.stop_all();
    assert!(out.status.success(), "{label}: exit {:?}\n{text}", out.status.code());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON");
    let phases = report["phases"].as_array().expect("phases");
    let names: Vec<_> = phases.iter().map(|p| p["phase"].as_str().unwrap_or("")).collect();
    assert_eq!(names, ["load", "read", "overwrite", "compact"], "{label}: {text}");
    for p in phases {
        for part in ["ops", "probe_read", "probe_write"] {
            assert!(p[part]["ops"].as_u64().unwrap_or(0) > 0, "{label}: {} {part} did nothing\n{text}", p["phase"]);
            assert!(p[part]["errors"].as_object().is_some_and(|e| e.is_empty()), "{label}: errors\n{text}");
        }
    }
    assert_eq!(phases[0]["ops"]["ops"].as_u64(), Some(3000 / 50), "{label}: one txn per batch of 50 keys");
    let refused = String::from_utf8_lossy(&old.stderr);
    assert!(
        !old.status.success() && refused.contains("required revision has been compacted"),
        "{label}: revision 1 still readable after the dataset's compaction: {refused}"
    );
}

#[test]
fn dataset_loads_reads_and_compacts_against_strake() {
    dataset_smoke(TargetSpec::strake(strake_bin(), 1), "strake");
}

#[test]
fn dataset_loads_reads_and_compacts_against_real_etcd() {
    dataset_smoke(TargetSpec::etcd(PathBuf::from("/usr/bin/etcd"), 1), "etcd");
}

/// A server's error status reaches the load generator's report intact (code and
/// message), for a request larger than the server's limit: the request is sent over
/// many flow-controlled HTTP/2 frames and the answer is an error without a body.
#[test]
fn server_errors_are_reported_with_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut cluster =
        rt.block_on(LocalCluster::create(TargetSpec::strake(strake_bin(), 1), dir.path())).expect("lay out");
    rt.block_on(cluster.start(Duration::from_secs(30))).expect("start");
    let json = dir.path().join("too-large.json");
    let out = std::process::Command::new(strake_bin())
        .args(["bench", "run", "put", "--endpoints", &cluster.endpoints()[0], "--clients", "1", "--conns", "1"])
        .args(["--total", "3", "--val-size", "1600000", "--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("run strake bench");
    cluster.stop_all();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // A run with errors reports them and exits non-zero.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("error x3: InvalidArgument: etcdserver: request is too large"), "{text}");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("summary")).expect("JSON");
    assert_eq!(summary["errors"]["InvalidArgument: etcdserver: request is too large"], 3, "{summary}");
}

/// `strake bench compare` end to end at its smallest (one round of put against a
/// one-member strake and real etcd): the JSON holds both rounds with the CPU each
/// run cost, and the Markdown the throughput ratio and the CPU per operation.
#[test]
fn compare_reports_both_servers_with_cpu_per_operation() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = std::process::Command::new(strake_bin())
        .args(["bench", "compare", "--quick", "--workloads", "put", "--restart-keys", "0"])
        .args(["--etcd", "/usr/bin/etcd", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run strake bench compare");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "exit {:?}\n{text}", out.status.code());
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("results.json")).expect("results.json")).expect("JSON");
    let rounds = results["rounds"].as_array().expect("rounds");
    let mut targets: Vec<_> = rounds.iter().map(|r| r["target"].as_str().unwrap_or("")).collect();
    targets.sort();
    assert_eq!(targets, ["etcd", "strake"], "{text}");
    for r in rounds {
        let (run, cpu) = (&r["runs"][0], &r["cpu"][0]);
        assert!(run["ops"].as_u64().unwrap_or(0) > 0, "{}: no operations\n{text}", r["target"]);
        assert_eq!(cpu["ops"], run["ops"], "{}: CPU measured over another run", r["target"]);
        for part in ["server_seconds", "client_seconds"] {
            assert!(cpu[part].as_f64().unwrap_or(0.0) > 0.0, "{}: no {part}\n{}", r["target"], r["cpu"]);
        }
    }
    let markdown = std::fs::read_to_string(out_dir.join("results.md")).expect("results.md");
    assert!(markdown.contains("| put |"), "{markdown}");
    let cpu_row = markdown
        .split("CPU per operation")
        .nth(1)
        .and_then(|table| table.lines().find(|l| l.starts_with("| put |")))
        .unwrap_or_else(|| panic!("no CPU table with a put row:\n{markdown}"));
    assert!(cpu_row.contains('×'), "{cpu_row}");
}
