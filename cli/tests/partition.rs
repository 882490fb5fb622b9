//! Network partitions through a proxy on every peer link: the minority refuses
//! linearizable reads and writes with etcd's errors and never serves stale data;
//! the majority keeps serving; after healing, everyone converges.

mod common;

use std::time::{Duration, Instant};

use common::{json, ProxiedCluster};

const FAST: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn isolated_leader_refuses_and_the_majority_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = ProxiedCluster::new(dir.path(), 3, &FAST);
    pc.start();
    let c = &pc.cluster;
    let old = c.leader(Duration::from_secs(10));
    c.ctl(&["put", "k", "before"]);
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let old_id = c.members[old].status().unwrap()["header"]["member_id"].as_u64().unwrap();
    pc.links.partition(&[old], &others);

    // The majority elects a new leader and serves writes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_leader = loop {
        let l = c.members[others[0]].status().map_or(0, |s| s["leader"].as_u64().unwrap_or(0));
        if l != 0 && l != old_id {
            break l;
        }
        assert!(Instant::now() < deadline, "the majority did not elect a new leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(new_leader, 0);
    assert_eq!(c.members[others[0]].ctl(&["put", "k", "after"]).trim(), "OK");

    // The isolated old leader must neither accept writes nor serve a stale read.
    let w = c.members[old].etcdctl(&["put", "k", "minority", "--command-timeout=10s"]);
    assert!(!w.status.success(), "a minority write succeeded");
    let e = stderr(&w);
    assert!(
        e.contains("etcdserver: request timed out")
            || e.contains("etcdserver: leader changed")
            || e.contains("no leader"),
        "{e}"
    );
    let r = c.members[old].etcdctl(&["get", "k", "--command-timeout=10s"]);
    assert!(!r.status.success(), "a minority linearizable read succeeded: {}", String::from_utf8_lossy(&r.stdout));
    let e = stderr(&r);
    assert!(
        e.contains("etcdserver: request timed out") || e.contains("no leader") || e.contains("leader changed"),
        "{e}"
    );
    // A serializable read may be stale, by definition, and still answers.
    let s = c.members[old].ctl(&["get", "k", "--consistency=s", "--print-value-only"]);
    assert_eq!(s.trim(), "before");

    // Heal: everyone converges on the majority's history.
    pc.links.heal();
    let rev =
        json(&c.members[others[0]].ctl(&["put", "healed", "1", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok =
            c.members.iter().all(|m| m.status().is_some_and(|s| s["header"]["revision"].as_i64().unwrap_or(0) >= rev));
        if ok {
            let hashes: Vec<u64> = c.members.iter().map(|m| m.hash_kv(rev)).collect();
            if hashes.iter().all(|h| *h == hashes[0]) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "members did not converge after healing");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.members[old].ctl(&["get", "k", "--print-value-only"]).trim(), "after");
}

#[test]
fn an_isolated_follower_refuses_linearizable_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = ProxiedCluster::new(dir.path(), 3, &FAST);
    pc.start();
    let c = &pc.cluster;
    let leader = c.leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    c.ctl(&["put", "x", "1"]);
    let rest: Vec<usize> = (0..3).filter(|i| *i != follower).collect();
    pc.links.partition(&[follower], &rest);
    c.members[leader].ctl(&["put", "x", "2"]);
    let r = c.members[follower].etcdctl(&["get", "x", "--command-timeout=10s"]);
    assert!(!r.status.success(), "stale linearizable read: {}", String::from_utf8_lossy(&r.stdout));
    pc.links.heal();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = c.members[follower].etcdctl(&["get", "x", "--print-value-only"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "2" {
            break;
        }
        assert!(Instant::now() < deadline, "follower did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn move_leader_hands_over_and_watches_on_followers_keep_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = ProxiedCluster::new(dir.path(), 3, &FAST);
    pc.start();
    let c = &pc.cluster;
    let leader = c.leader(Duration::from_secs(10));
    let target = (leader + 1) % 3;
    let watcher_member = (leader + 2) % 3;
    let watch = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={}", c.members[watcher_member].endpoint()), "watch", "mv", "--prefix"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.ctl(&["put", "mv1", "a"]);
    let target_id = c.members[target].id_hex();
    let out = c.members[leader].ctl(&["move-leader", &target_id]);
    assert!(out.contains("Leadership transferred"), "{out}");
    assert_eq!(c.leader(Duration::from_secs(10)), target);
    c.ctl(&["put", "mv2", "b"]);
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill").arg(watch.id().to_string()).status();
    let text = String::from_utf8(watch.wait_with_output().unwrap().stdout).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines, ["PUT", "mv1", "a", "PUT", "mv2", "b"], "{text}");
}
