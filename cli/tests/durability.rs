//! Durability of a single member: a clean restart keeps everything; a kill -9 in the
//! middle of a stream of writes loses none that were acknowledged.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{channel, runtime, Member};
use strake_proto::etcdserverpb::kv_client::KvClient;
use strake_proto::etcdserverpb::{PutRequest, RangeRequest};

#[test]
fn restart_preserves_keys_revisions_leases_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    for i in 0..50 {
        m.ctl(&["put", &format!("key{i:02}"), &format!("value{i}")]);
    }
    m.ctl(&["del", "key0", "--prefix"]);
    let lease = m.ctl(&["lease", "grant", "600"]).split_whitespace().nth(1).unwrap().to_string();
    m.ctl(&["put", "leased", "v", "--lease", &lease]);
    m.ctl(&["compaction", "20"]);
    let before = m.ctl(&["get", "", "--from-key", "-w", "json"]);
    let hash_before = common::json(&m.ctl(&["endpoint", "hashkv", "-w", "json"]))[0]["HashKV"]["hash"].clone();
    m.stop();
    m.start();
    let after = m.ctl(&["get", "", "--from-key", "-w", "json"]);
    let strip = |s: &str| {
        let mut v = common::json(s);
        v["header"]["raft_term"] = serde_json::Value::Null;
        v
    };
    assert_eq!(strip(&before), strip(&after));
    let hash_after = common::json(&m.ctl(&["endpoint", "hashkv", "-w", "json"]))[0]["HashKV"]["hash"].clone();
    assert_eq!(hash_before, hash_after);
    assert!(m.ctl(&["lease", "list"]).contains(&lease));
    assert!(m.ctl(&["lease", "timetolive", &lease, "--keys"]).contains("[leased]"));
    let out = m.etcdctl(&["get", "key10", "--rev", "5"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("required revision has been compacted"));
    // Writes continue from the restored revision.
    let rev_before = common::json(&before)["header"]["revision"].as_i64().unwrap();
    let j = common::json(&m.ctl(&["put", "next", "x", "-w", "json"]));
    assert_eq!(j["header"]["revision"].as_i64().unwrap(), rev_before + 1);
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshot often so the kill also lands around log purges.
    let mut m = Member::single(dir.path(), &["--snapshot-count", "500"]);
    m.start();
    let rt = runtime();
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let port = m.client_port;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let acked = acked.clone();
            let stop = stop.clone();
            rt.spawn(async move {
                let mut kv = KvClient::new(channel(port).await);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}/{i:06}");
                    let req =
                        PutRequest { key: key.clone().into(), value: format!("v{i}").into(), ..Default::default() };
                    match kv.put(req).await {
                        Ok(resp) => {
                            let rev = resp.into_inner().header.unwrap().revision;
                            acked.lock().unwrap().push((key, rev));
                        }
                        Err(_) => break,
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    m.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = rt.block_on(w);
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "only {} writes were acknowledged before the kill", acked.len());
    m.start();
    let resp = rt.block_on(async {
        let mut kv = KvClient::new(channel(port).await);
        kv.range(RangeRequest { key: "w".into(), range_end: "x".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
    });
    let present: std::collections::HashMap<String, i64> =
        resp.kvs.iter().map(|kv| (String::from_utf8(kv.key.to_vec()).unwrap(), kv.mod_revision)).collect();
    for (key, rev) in &acked {
        assert_eq!(present.get(key), Some(rev), "acknowledged write {key}@{rev} is missing after kill -9");
    }
    // Revisions stayed dense: no revision was handed out twice or skipped.
    let mut revs: Vec<i64> = present.values().copied().collect();
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), present.len());
}

/// The `.wal` segment files of a member's log.
fn wal_segments(m: &Member) -> usize {
    std::fs::read_dir(m.data_dir.join("member/wal"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
        .count()
}

/// With a snapshot count never reached, the log is still bounded by
/// `--log-retention-bytes`: a member snapshots and purges by bytes, and a restart
/// after the purge still has every write.
#[test]
fn the_log_is_purged_by_bytes_when_entries_are_large() {
    let dir = tempfile::tempdir().unwrap();
    let retention = 4 << 20;
    let mut m =
        Member::single(dir.path(), &["--snapshot-count", "1000000", "--log-retention-bytes", &retention.to_string()]);
    m.start();
    let rt = runtime();
    let port = m.client_port;
    // 96 puts of 512 KiB: 48 MiB of records, three 16 MiB segments and more.
    let value = vec![b'v'; 512 << 10];
    rt.block_on(async {
        let mut kv = KvClient::new(channel(port).await);
        for i in 0..96 {
            let req =
                PutRequest { key: format!("big/{i:03}").into(), value: value.clone().into(), ..Default::default() };
            kv.put(req).await.unwrap();
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while wal_segments(&m) > 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(wal_segments(&m) <= 2, "{} log segments remain for a {retention}-byte budget", wal_segments(&m));
    m.stop();
    m.start();
    let (count, first, last) = rt.block_on(async {
        let mut kv = KvClient::new(channel(port).await);
        let count = kv
            .range(RangeRequest {
                key: "big/".into(),
                range_end: "big0".into(),
                count_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .count;
        let get = |key: &'static str| {
            let req = RangeRequest { key: key.into(), ..Default::default() };
            let mut kv = kv.clone();
            async move { kv.range(req).await.unwrap().into_inner().kvs[0].value.clone() }
        };
        (count, get("big/000").await, get("big/095").await)
    });
    assert_eq!(count, 96);
    assert_eq!((first, last), (value.clone().into(), value.into()));
}
