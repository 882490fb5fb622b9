//! Replicated strake: 3- and 5-member clusters of real processes on 127.0.0.1,
//! driven by the real etcdctl and a gRPC client, under crashes and membership changes.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{channel, http_get, json, metric_value, pause, runtime, Cluster, Member};
use strake_proto::etcdserverpb::kv_client::KvClient;
use strake_proto::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest};

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

/// Fast elections keep the tests short; etcd's defaults are 100/1000 ms.
const FAST: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];

#[test]
fn three_members_serve_etcdctl_from_any_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path(), 3, &FAST);
    c.start();
    let leader = c.leader(Duration::from_secs(10));
    // Every member answers, writes from followers are forwarded to the leader.
    for (i, m) in c.members.iter().enumerate() {
        assert_eq!(m.ctl(&["put", &format!("from{i}"), &format!("v{i}")]).trim(), "OK");
    }
    for m in &c.members {
        assert_eq!(lines(&m.ctl(&["get", "from", "--prefix", "--keys-only"])), ["from0", "from1", "from2"]);
    }
    // Member list: three started members with names and client URLs.
    let list = c.ctl(&["member", "list"]);
    assert_eq!(lines(&list).len(), 3, "{list}");
    for m in &c.members {
        assert!(list.contains(&format!("started, {}, {}, {}, false", m.name, m.peer_url(), m.client_url())), "{list}");
    }
    // Status: the same leader everywhere, applied indexes converge.
    let statuses: Vec<serde_json::Value> = c.members.iter().map(|m| m.status().unwrap()).collect();
    let leader_id = statuses[leader]["header"]["member_id"].clone();
    assert!(statuses.iter().all(|s| s["leader"] == leader_id));
    // Txn, lease, watch, compaction through the three endpoints.
    let out = common::etcdctl_stdin(
        &c.endpoints().join(","),
        &["txn"],
        "value(\"from0\") = \"v0\"\n\nput t ok\n\nput t bad\n\n",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    let lease = c.ctl(&["lease", "grant", "60"]).split_whitespace().nth(1).unwrap().to_string();
    for m in &c.members {
        assert!(m.ctl(&["lease", "keep-alive", "--once", &lease]).contains("TTL(60)"));
        assert!(m.ctl(&["lease", "timetolive", &lease]).contains("granted with TTL(60s)"));
    }
    let rev = json(&c.ctl(&["put", "last", "x", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    // Every member reaches the same history: HashKV at one revision is equal.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A member that has not applied `rev` yet refuses it (future revision): retry.
        let hashes: Vec<Option<u64>> = c.members.iter().map(|m| m.try_hash_kv(rev)).collect();
        if hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "hashes differ: {hashes:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.ctl(&["compaction", &rev.to_string()]).contains("compacted"));
    // Serializable reads from a follower see the replicated data.
    let follower = (leader + 1) % 3;
    let got = c.members[follower].ctl(&["get", "last", "--consistency=s", "--print-value-only"]);
    assert_eq!(got.trim(), "x");
}

fn write_until_stopped(
    rt: &tokio::runtime::Runtime,
    ports: Vec<u16>,
    acked: Arc<Mutex<Vec<(String, i64)>>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..6)
        .map(|w| {
            let ports = ports.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            rt.spawn(async move {
                let mut i = 0u64;
                let mut target = w % ports.len();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", ports[target]))
                        .unwrap()
                        .timeout(Duration::from_secs(10))
                        .connect()
                        .await
                    else {
                        target = (target + 1) % ports.len();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let mut kv = KvClient::new(ch);
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("w{w}/{i:06}");
                        let req = PutRequest { key: key.clone().into(), value: "v".into(), ..Default::default() };
                        i += 1;
                        match kv.put(req).await {
                            Ok(r) => acked.lock().unwrap().push((key, r.into_inner().header.unwrap().revision)),
                            Err(_) => {
                                target = (target + 1) % ports.len();
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

fn all_keys(port: u16, rt: &tokio::runtime::Runtime) -> HashMap<String, i64> {
    rt.block_on(async {
        let mut kv = KvClient::new(channel(port).await);
        let r = kv
            .range(RangeRequest { key: "w".into(), range_end: "x".into(), serializable: true, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        r.kvs.into_iter().map(|kv| (String::from_utf8(kv.key.to_vec()).unwrap(), kv.mod_revision)).collect()
    })
}

#[test]
fn killing_the_leader_loses_no_acknowledged_write_and_it_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path(), 3, &[&FAST[..], &["--snapshot-count", "300"]].concat());
    c.start();
    let rt = runtime();
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ports: Vec<u16> = c.members.iter().map(|m| m.client_port).collect();
    let writers = write_until_stopped(&rt, ports, acked.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let old = c.leader(Duration::from_secs(5));
    c.members[old].kill9();
    let killed_at = Instant::now();
    let new_leader = c.leader(Duration::from_secs(10));
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, old);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = rt.block_on(w);
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "only {} acknowledged writes", acked.len());
    eprintln!("{} acknowledged writes; new leader after {failover:?}", acked.len());
    // Wait for the survivors to apply everything, then check every acknowledged write.
    let last_rev = acked.iter().map(|(_, r)| *r).max().unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    for &i in &survivors {
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.members[i].status().unwrap()["header"]["revision"].as_i64().unwrap() < last_rev {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        }
        let keys = all_keys(c.members[i].client_port, &rt);
        for (k, rev) in &acked {
            assert_eq!(keys.get(k), Some(rev), "member {i} lacks acknowledged {k}@{rev}");
        }
    }
    // The killed member restarts, catches up (by log or snapshot) and agrees.
    c.members[old].start();
    let rev = json(&c.ctl(&["put", "after", "restart", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A member that has not applied `rev` yet refuses it (future revision): retry.
        let hashes: Vec<Option<u64>> = c.members.iter().map(|m| m.try_hash_kv(rev)).collect();
        if hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "hashes differ after restart: {hashes:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let keys = all_keys(c.members[old].client_port, &rt);
    for (k, rev) in &acked {
        assert_eq!(keys.get(k), Some(rev), "restarted member lacks {k}@{rev}");
    }
}

#[test]
fn five_members_survive_two_simultaneous_kills() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path(), 5, &FAST);
    c.start();
    c.ctl(&["put", "before", "1"]);
    let leader = c.leader(Duration::from_secs(10));
    let victims = [leader, (leader + 1) % 5];
    for v in victims {
        c.members[v].kill9();
    }
    c.leader(Duration::from_secs(10));
    assert_eq!(c.ctl(&["put", "after", "2"]).trim(), "OK");
    assert_eq!(lines(&c.ctl(&["get", "", "--from-key", "--keys-only"])), ["after", "before"]);
    for v in victims {
        c.members[v].start();
    }
    let rev = json(&c.ctl(&["put", "end", "3", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A member that has not applied `rev` yet refuses it (future revision): retry.
        let hashes: Vec<Option<u64>> = c.members.iter().map(|m| m.try_hash_kv(rev)).collect();
        if hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "hashes differ: {hashes:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn lease_expiry_survives_a_leader_kill_neither_early_nor_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path(), 3, &FAST);
    c.start();
    let leader = c.leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    let granted_at = Instant::now();
    let lease = c.members[follower].ctl(&["lease", "grant", "4"]).split_whitespace().nth(1).unwrap().to_string();
    c.members[follower].ctl(&["put", "eph", "v", "--lease", &lease]);
    std::thread::sleep(Duration::from_millis(1000));
    c.members[leader].kill9();
    c.leader(Duration::from_secs(10));
    // The new leader gives the lease a full TTL from its promotion: the key must live
    // at least the original 4 s, and go within TTL + a few election timeouts.
    loop {
        let present = !c.members[follower].ctl(&["get", "eph", "--consistency=s"]).trim().is_empty();
        let age = granted_at.elapsed();
        if !present {
            assert!(age >= Duration::from_secs(4), "lease expired early, after {age:?}");
            break;
        }
        assert!(age < Duration::from_secs(12), "lease never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn membership_learner_catch_up_by_snapshot_promote_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let slow = ["--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "20"];
    let mut c = Cluster::new(dir.path(), 3, &[&FAST[..], &slow].concat());
    c.start();
    // Enough writes that the log is purged behind snapshots: the learner needs one.
    for i in 0..400 {
        c.members[i % 3].ctl(&["put", &format!("k{i:04}"), "v"]);
    }
    let mut new = Member::single(&dir.path().join("m4"), &[&FAST[..], &slow].concat());
    new.name = "m4".into();
    let added = c.ctl(&["member", "add", "m4", "--learner", &format!("--peer-urls={}", new.peer_url())]);
    assert!(added.contains("added to cluster"), "{added}");
    let mut initial: Vec<String> = c.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect();
    initial.push(format!("m4={}", new.peer_url()));
    new.initial_cluster = initial.join(",");
    new.state = "existing".into();
    new.spawn();
    // The learner catches up: its store reaches the cluster's revision.
    let rev = json(&c.ctl(&["get", "k0000", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = new.status() {
            if s["header"]["revision"].as_i64().unwrap_or(0) >= rev {
                assert_eq!(s["isLearner"], true);
                break;
            }
        }
        if Instant::now() > deadline {
            for m in &c.members {
                eprintln!("--- {} log:\n{}", m.name, m.log_text());
            }
            panic!("learner did not catch up; log:\n{}", new.log_text());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(new.log_text().contains("installed a snapshot"), "the learner caught up by snapshot");
    assert_eq!(new.ctl(&["get", "k0399", "--consistency=s", "--print-value-only"]).trim(), "v");
    let id = new.id_hex();
    // The learner has applied everything, but the leader learns how far it matched
    // only from its next replication response: until then etcd's rule refuses the
    // promotion ("in sync with leader"), and an operator retries.
    let eps = c.endpoints();
    let deadline = Instant::now() + Duration::from_secs(10);
    let promoted = loop {
        let out = common::etcdctl(&eps, &["member", "promote", &id]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            stderr.contains("can only promote a learner member which is in sync with leader")
                && Instant::now() < deadline,
            "promote failed: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(promoted.contains("promoted"), "{promoted}");
    c.members.push(new);
    let list = c.ctl(&["member", "list"]);
    assert!(list.contains("started, m4,") && !list.contains("true"), "{list}");
    // Remove a follower, then the leader; the cluster keeps serving.
    let leader = c.leader(Duration::from_secs(10));
    let follower = (leader + 1) % 4;
    let fid = c.members[follower].id_hex();
    assert!(c.ctl(&["member", "remove", &fid]).contains("removed"));
    c.members[follower].kill9();
    assert_eq!(c.ctl(&["put", "after-remove", "1"]).trim(), "OK");
    let lid = c.members[leader].id_hex();
    assert!(c.ctl(&["member", "remove", &lid]).contains("removed"));
    c.members[leader].kill9();
    c.leader(Duration::from_secs(10));
    assert_eq!(c.ctl(&["put", "after-leader-remove", "1"]).trim(), "OK");
    let list = c.ctl(&["member", "list"]);
    assert_eq!(lines(&list).len(), 2, "{list}");
    // Errors as etcd words them.
    let out = common::etcdctl(
        &c.endpoints()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leader && *i != follower)
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>(),
        &["member", "remove", "1234"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("member not found"), "{out:?}");
}

#[test]
fn a_watch_resumed_on_another_member_gets_exactly_the_missed_events() {
    use strake_proto::etcdserverpb::watch_client::WatchClient;
    use strake_proto::etcdserverpb::watch_request::RequestUnion;
    use strake_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};

    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path(), 3, &FAST);
    c.start();
    let rt = runtime();
    let watch_from = |port: u16, start: i64, want: usize| -> Vec<(String, i64)> {
        rt.block_on(async {
            let mut client = WatchClient::new(channel(port).await);
            let req = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: "r/".into(),
                    range_end: "r0".into(),
                    start_revision: start,
                    ..Default::default()
                })),
            };
            let mut stream =
                client.watch(tokio_stream::iter(vec![req]).chain(tokio_stream::pending())).await.unwrap().into_inner();
            let mut seen = Vec::new();
            while seen.len() < want {
                let msg =
                    tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
                for e in msg.events {
                    let kv = e.kv.unwrap();
                    seen.push((String::from_utf8(kv.key.to_vec()).unwrap(), kv.mod_revision));
                }
            }
            seen
        })
    };
    use tokio_stream::StreamExt;
    let mut revs = Vec::new();
    for i in 0..10 {
        let j = json(&c.members[i % 3].ctl(&["put", &format!("r/{i}"), "v", "-w", "json"]));
        revs.push(j["header"]["revision"].as_i64().unwrap());
    }
    // A watcher on member 0 saw the first four events, then "disconnected".
    let first: Vec<(String, i64)> = watch_from(c.members[0].client_port, revs[0], 4).into_iter().take(4).collect();
    assert_eq!(first.len(), 4);
    // The leader changes; the watcher resumes at last seen + 1 on another member.
    let leader = c.leader(Duration::from_secs(5));
    c.members[leader].kill9();
    c.leader(Duration::from_secs(10));
    let other = (0..3).find(|i| *i != leader && *i != 0).unwrap_or((leader + 1) % 3);
    let mut resumed = watch_from(c.members[other].client_port, first[3].1 + 1, 6);
    resumed.truncate(6);
    let expected: Vec<(String, i64)> = (4..10).map(|i| (format!("r/{i}"), revs[i])).collect();
    assert_eq!(resumed, expected);
}

/// Bytes under `dir`, recursively.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

#[test]
fn disk_use_stays_bounded_under_a_steady_write_load() {
    // 640 MiB of writes (1280 puts of 512 KiB over 8 keys) with the log purged behind
    // snapshots and old revisions compacted as kube-apiserver does: every member's log
    // and store stay a small multiple of one log segment (64 MiB) and the live data.
    let dir = tempfile::tempdir().unwrap();
    let args = ["--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "50"];
    let mut c = Cluster::new(dir.path(), 3, &[&FAST[..], &args[..]].concat());
    c.start();
    let rt = runtime();
    let value = vec![b'v'; 512 << 10];
    let mut peak = [0u64; 3];
    rt.block_on(async {
        let mut kv = KvClient::new(channel(c.members[0].client_port).await).max_decoding_message_size(4 << 20);
        for i in 0..1280 {
            let key = format!("big/{}", i % 8);
            let put = kv
                .put(PutRequest { key: key.into(), value: value.clone().into(), ..Default::default() })
                .await
                .expect("put");
            if i % 160 == 159 {
                let revision = put.into_inner().header.expect("header").revision - 8;
                kv.compact(CompactionRequest { revision, physical: true }).await.expect("compact");
                for (j, m) in c.members.iter().enumerate() {
                    peak[j] = peak[j].max(dir_bytes(&m.data_dir));
                }
            }
        }
    });
    const MIB: u64 = 1 << 20;
    eprintln!("peak data-dir MiB per member: {:?}", peak.iter().map(|p| p / MIB).collect::<Vec<_>>());
    for (j, p) in peak.iter().enumerate() {
        assert!(*p < 400 * MIB, "member {} used {} MiB for 640 MiB written", j + 1, p / MIB);
    }
}

#[test]
fn a_follower_paused_behind_100_mib_of_large_values_catches_up_from_the_log() {
    // The backlog (200 puts of 512 KiB) is far more than one peer message may carry
    // and than can cross in one heartbeat interval (openraft's deadline for an
    // AppendEntries): the leader must send it in bounded batches. The default
    // snapshot count keeps every entry in the log, so no snapshot can stand in.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path(), 3, &FAST);
    c.start();
    let leader = c.leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    let rt = runtime();
    let value = vec![b'v'; 512 << 10];
    pause(c.members[follower].pid(), true);
    let last = rt.block_on(async {
        let mut kv = KvClient::new(channel(c.members[leader].client_port).await);
        let mut last = 0;
        for i in 0..200 {
            let key = format!("big/{}", i % 8);
            let put = kv.put(PutRequest { key: key.into(), value: value.clone().into(), ..Default::default() });
            last = put.await.expect("put").into_inner().header.expect("header").revision;
        }
        last
    });
    pause(c.members[follower].pid(), false);
    let caught_up = rt.block_on(async {
        let mut kv = KvClient::new(channel(c.members[follower].client_port).await).max_decoding_message_size(8 << 20);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let read =
                kv.range(RangeRequest { key: b"big/0".to_vec().into(), serializable: true, ..Default::default() });
            if let Ok(r) = read.await {
                if r.into_inner().header.expect("header").revision >= last {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    });
    assert!(caught_up, "the follower did not reach revision {last} within 60 s of resuming");
    let hashes: Vec<u64> = c.members.iter().map(|m| m.hash_kv(last)).collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "HashKV differs: {hashes:?}");
}

/// The leader replicates while its own log flush runs (strake's openraft patch), and
/// still answers a write only once its own copy is durable. Member m1's disk is made
/// slow (every log fsync takes 2 s longer) and m1 is made leader: a put through it
/// is committed on the followers' copies and applied by a follower long before the
/// 2 s are up, while the put itself returns only after them.
#[test]
fn a_leader_with_a_slow_disk_commits_on_its_followers_and_acknowledges_after_its_own_fsync() {
    const DELAY_MS: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path(), 3, &FAST);
    c.members[0].extra_args.push("--experimental-failpoints".into());
    c.members[0].env.push(("FAILPOINTS".into(), format!("log-sync-delay=return({DELAY_MS})")));
    c.start();
    let leader = c.leader(Duration::from_secs(30));
    if leader != 0 {
        let out = c.members[leader].ctl(&["move-leader", &c.members[0].id_hex()]);
        assert!(out.contains("Leadership transferred"), "{out}");
    }
    assert_eq!(c.leader(Duration::from_secs(30)), 0);

    let slow_leader = c.members[0].endpoint();
    let started = Instant::now();
    let put = std::thread::spawn(move || {
        let out = common::etcdctl(&[slow_leader], &["put", "slow", "v"]);
        (out, started.elapsed())
    });
    let follower_saw_it = loop {
        let got = c.members[1].ctl(&["get", "slow", "--consistency=s", "--print-value-only"]);
        if got.trim() == "v" {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the follower never applied the put");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, acknowledged) = put.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        follower_saw_it < Duration::from_millis(DELAY_MS * 3 / 4),
        "a follower applied the put only after {follower_saw_it:?}: replication waited for the leader's fsync"
    );
    assert!(
        acknowledged >= Duration::from_millis(DELAY_MS),
        "the put was acknowledged after {acknowledged:?}, before the leader's own fsync ({DELAY_MS} ms)"
    );
}

/// Writes sent to a follower by many clients at once reach the leader in batches
/// (`ForwardBatch`), and each client gets its own write's result; a leader that does
/// not know the batch call (an older version, simulated by a failpoint on every
/// member) gets them one by one, and no write fails.
#[test]
fn writes_through_a_follower_are_forwarded_in_batches_and_one_by_one_to_an_older_leader() {
    const CLIENTS: usize = 48;
    const PUTS: usize = 10;
    for older_leader in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster::new(dir.path(), 3, &FAST);
        if older_leader {
            for m in &mut c.members {
                m.extra_args.push("--experimental-failpoints".into());
                m.env.push(("FAILPOINTS".into(), "peer-forward-batch-unimplemented=return".into()));
            }
        }
        c.start();
        let leader = c.leader(Duration::from_secs(10));
        let follower = (leader + 1) % 3;
        let port = c.members[follower].client_port;
        // Each client's (key, revision of its put's answer).
        let answered: Vec<(String, i64)> = runtime().block_on(async {
            let ch = channel(port).await;
            let clients = (0..CLIENTS).map(|t| {
                let mut kv = KvClient::new(ch.clone());
                tokio::spawn(async move {
                    let mut answered = Vec::new();
                    for i in 0..PUTS {
                        let key = format!("fw/{t:02}/{i}");
                        let put =
                            PutRequest { key: key.clone().into(), value: key.clone().into(), ..Default::default() };
                        let resp = kv.put(put).await.expect("a forwarded put succeeds").into_inner();
                        answered.push((key, resp.header.unwrap().revision));
                    }
                    answered
                })
            });
            let mut all = Vec::new();
            for client in clients.collect::<Vec<_>>() {
                all.extend(client.await.unwrap());
            }
            all
        });
        // Every answer is its own write's: the revision it names is the key's.
        let stored: HashMap<String, i64> = runtime().block_on(async {
            let mut kv = KvClient::new(channel(c.members[leader].client_port).await);
            let range = RangeRequest { key: "fw/".into(), range_end: "fw0".into(), ..Default::default() };
            let kvs = kv.range(range).await.unwrap().into_inner().kvs;
            kvs.into_iter().map(|kv| (String::from_utf8(kv.key.to_vec()).unwrap(), kv.mod_revision)).collect()
        });
        assert_eq!(stored.len(), CLIENTS * PUTS);
        for (key, revision) in &answered {
            assert_eq!(stored.get(key), Some(revision), "the answer to the put of {key} names another write");
        }
        let (_, metrics) = http_get(port, "/metrics").unwrap();
        let forwarded = metric_value(&metrics, "strake_forwarded_writes_total");
        let calls = metric_value(&metrics, "strake_forward_batch_writes_count");
        assert!(forwarded >= (CLIENTS * PUTS) as f64, "{metrics}");
        if older_leader {
            // Batches were tried, refused, and the writes went one by one.
            assert!(forwarded > (CLIENTS * PUTS) as f64 && calls >= 1.0, "{metrics}");
        } else {
            assert!(calls < forwarded, "no two writes shared a call: {calls} calls for {forwarded} writes");
        }
    }
}
