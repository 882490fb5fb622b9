//! Short runs of `strake jepsen run` so the harness cannot rot: a 3-member strake
//! cluster under kill and partition faults must check valid, real etcd must check
//! valid, and strake with each injected bug (failpoints armed by the hidden
//! `--experimental-failpoints` flag) must be caught with exit code 1.

mod common;

use std::process::Output;

use common::strake_bin;

/// Runs `strake jepsen run` with `args` (plus a private output directory and no
/// progress bar); returns the exit code and stdout.
fn jepsen_run(args: &[&str]) -> (i32, String) {
    let out = tempfile::tempdir().unwrap();
    let Output { status, stdout, stderr } = std::process::Command::new(strake_bin())
        .args(["jepsen", "run", "--quiet", "--out"])
        .arg(out.path())
        .args(args)
        .output()
        .expect("run strake jepsen");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let code = status.code().unwrap_or(-1);
    if code == 2 {
        panic!("harness error\nstdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&stderr));
    }
    (code, stdout)
}

/// Server flags that keep elections short so faults resolve within a short run.
const FAST: [&str; 2] = ["--server-arg=--heartbeat-interval=50", "--server-arg=--election-timeout=500"];

fn with_fast<'a>(args: &[&'a str]) -> Vec<&'a str> {
    FAST.iter().copied().chain(args.iter().copied()).collect()
}

#[test]
fn strake_register_under_kill_and_partition_is_valid() {
    let (code, out) = jepsen_run(&with_fast(&[
        "--workload=register",
        "--duration=25s",
        "--faults=kill,partition-leader,pause",
        "--nemesis-interval=3s",
        "--nemesis-duration=3s",
        "--op-timeout=1s",
    ]));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("valid"), "{out}");
    assert!(!out.contains(" 0 faults"), "no fault was injected: {out}");
}

#[test]
fn strake_append_and_watch_under_kill_are_valid() {
    for workload in ["--workload=append", "--workload=watch"] {
        let (code, out) = jepsen_run(&with_fast(&[
            workload,
            "--duration=10s",
            "--faults=kill-leader",
            "--nemesis-interval=2s",
            "--nemesis-duration=2s",
            "--op-timeout=1s",
        ]));
        assert_eq!(code, 0, "{workload}: {out}");
    }
}

#[test]
fn strake_register_under_membership_changes_is_valid() {
    let (code, out) = jepsen_run(&with_fast(&[
        "--workload=register",
        "--duration=16s",
        "--faults=membership",
        "--nemesis-interval=3s",
        "--nemesis-duration=4s",
        "--op-timeout=1s",
    ]));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains(" 0 faults"), "no member was removed: {out}");
}

/// A lease-based lock is safe only with fencing: holders that stall past their
/// lease TTL lose increments without it and none with it.
#[test]
fn lock_is_safe_only_with_fencing() {
    let (code, out) = jepsen_run(&with_fast(&["--workload=lock", "--duration=15s", "--concurrency=4"]));
    assert_eq!(code, 0, "fenced lock: {out}");
    let (code, out) = jepsen_run(&with_fast(&["--workload=lock-unfenced", "--duration=15s", "--concurrency=4"]));
    assert_eq!(code, 1, "unfenced lock was not caught: {out}");
    assert!(out.contains("mutual exclusion violated"), "{out}");
}

#[test]
fn real_etcd_register_under_kill_is_valid() {
    if !std::path::Path::new("/usr/bin/etcd").exists() {
        panic!("/usr/bin/etcd missing: scripts/prereqs.sh --test installs etcd-server");
    }
    let (code, out) = jepsen_run(&[
        "--target=etcd-debian",
        "--server-arg=--heartbeat-interval=50",
        "--server-arg=--election-timeout=500",
        "--workload=register",
        "--duration=15s",
        "--faults=kill,partition",
        "--nemesis-interval=3s",
        "--nemesis-duration=3s",
        "--op-timeout=1s",
    ]);
    assert_eq!(code, 0, "{out}");
}

/// Runs strake with `failpoint` armed and expects the harness to report an anomaly.
fn injected_bug_is_found(failpoint: &str, args: &[&str]) {
    let env = format!("--server-env=FAILPOINTS={failpoint}=return");
    let mut all = with_fast(args);
    all.extend(["--server-arg=--experimental-failpoints", env.as_str()]);
    let (code, out) = jepsen_run(&all);
    assert_eq!(code, 1, "{failpoint} was not detected: {out}");
    assert!(out.starts_with("INVALID"), "{out}");
}

#[test]
fn skipped_watch_event_is_found() {
    injected_bug_is_found("watch-skip-event", &["--workload=watch", "--duration=8s"]);
}

#[test]
fn duplicated_watch_event_is_found() {
    injected_bug_is_found("watch-duplicate-event", &["--workload=watch", "--duration=8s"]);
}

#[test]
fn early_lease_expiry_is_found() {
    injected_bug_is_found("lease-early-expiry", &["--workload=lease", "--duration=15s"]);
}

#[test]
fn write_acknowledged_before_fsync_is_lost_on_crash_and_found() {
    injected_bug_is_found(
        "log-ack-before-write",
        &[
            "--members=1",
            "--workload=register",
            "--duration=20s",
            "--faults=kill",
            "--nemesis-interval=4s",
            "--nemesis-duration=1s",
        ],
    );
}

#[test]
fn stale_read_without_read_index_is_found() {
    injected_bug_is_found(
        "read-barrier-skip",
        &[
            "--workload=register",
            "--duration=20s",
            "--faults=partition-leader",
            "--nemesis-interval=3s",
            "--nemesis-duration=6s",
            "--op-timeout=1s",
        ],
    );
}
