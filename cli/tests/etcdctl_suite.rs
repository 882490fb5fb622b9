//! Real etcdctl (Debian's etcd-client) against `strake etcd`: every command family
//! etcd users rely on, against a single member and against a 3-member cluster with
//! etcdctl given all three endpoints.

mod common;

use std::time::{Duration, Instant};

use common::{etcdctl_stdin, http_get, json, metric_value, Cluster, Member, Target};

/// Runs `suite` against a fresh single member.
fn single(suite: fn(&Target, &std::path::Path)) {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    suite(&m.target(), dir.path());
}

/// Runs `suite` against a fresh 3-member cluster.
fn three(suite: fn(&Target, &std::path::Path)) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    c.start();
    suite(&c.target(), dir.path());
}

macro_rules! suite_tests {
    ($($suite:ident),* $(,)?) => {
        mod single_member {
            $(#[test] fn $suite() { super::single(super::$suite) })*
        }
        mod three_members {
            $(#[test] fn $suite() { super::three(super::$suite) })*
        }
    };
}

suite_tests!(kv_commands, watch_commands, lease_commands, maintenance_commands, lock_and_election);

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

fn kv_commands(m: &Target, _dir: &std::path::Path) {
    assert_eq!(m.ctl(&["put", "a", "1"]).trim(), "OK");
    for (k, v) in [("b", "2"), ("b1", "3"), ("c", "4")] {
        m.ctl(&["put", k, v]);
    }
    // A fresh store starts at revision 1: four puts end at 5.
    let j = json(&m.ctl(&["get", "a", "-w", "json"]));
    assert_eq!(j["header"]["revision"], 5);
    assert_eq!(j["kvs"][0]["create_revision"], 2);
    assert_eq!(j["kvs"][0]["version"], 1);
    assert_eq!(lines(&m.ctl(&["get", "b", "--prefix"])), ["b", "2", "b1", "3"]);
    assert_eq!(lines(&m.ctl(&["get", "b", "--from-key", "--keys-only"])), ["b", "b1", "c"]);
    let limited = json(&m.ctl(&["get", "", "--from-key", "--limit", "2", "-w", "json"]));
    assert_eq!(limited["kvs"].as_array().unwrap().len(), 2);
    assert_eq!(limited["more"], true);
    assert_eq!(limited["count"], 4);
    assert_eq!(
        lines(&m.ctl(&["get", "", "--from-key", "--sort-by=VALUE", "--order=DESCEND", "--keys-only"])),
        ["c", "b1", "b", "a"]
    );
    m.ctl(&["put", "a", "10"]);
    assert_eq!(lines(&m.ctl(&["get", "a", "--rev", "2"])), ["a", "1"]);
    assert_eq!(lines(&m.ctl(&["get", "a"])), ["a", "10"]);
    let j = json(&m.ctl(&["get", "a", "-w", "json"]));
    assert_eq!(j["kvs"][0]["version"], 2);
    assert_eq!(j["kvs"][0]["mod_revision"], 6);
    // Delete with prev-kv prints the count and the deleted pairs.
    assert_eq!(lines(&m.ctl(&["del", "b", "--prefix", "--prev-kv"])), ["2", "b", "2", "b1", "3"]);
    assert!(m.ctl(&["get", "b", "--prefix"]).trim().is_empty());
    // Txn: both branches.
    let txn = |input: &str| {
        let out = etcdctl_stdin(&m.endpoint(), &["txn"], input);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let ok = txn("value(\"a\") = \"10\"\n\nput t yes\n\nput t no\n\n");
    assert_eq!(lines(&ok), ["SUCCESS", "OK"]);
    assert_eq!(lines(&m.ctl(&["get", "t", "--print-value-only"])), ["yes"]);
    let failed = txn("mod(\"a\") = \"2\"\n\nput t yes2\n\nget a\n\n");
    assert_eq!(lines(&failed), ["FAILURE", "a", "10"]);
    assert_eq!(lines(&m.ctl(&["get", "t", "--print-value-only"])), ["yes"]);
    // Compaction, then reads below it fail with etcd's error.
    let rev = json(&m.ctl(&["get", "a", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    assert!(m.ctl(&["compaction", &rev.to_string()]).contains(&format!("compacted revision {rev}")));
    let out = m.etcdctl(&["get", "a", "--rev", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("etcdserver: mvcc: required revision has been compacted"));
    let out = m.etcdctl(&["get", "a", "--rev", &(rev + 100).to_string()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("etcdserver: mvcc: required revision is a future revision"));
    // The latest values survive compaction.
    assert_eq!(lines(&m.ctl(&["get", "a"])), ["a", "10"]);
}

fn watch_commands(m: &Target, _dir: &std::path::Path) {
    let watcher = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={}", m.endpoint()), "watch", "w", "--prefix", "--prev-kv"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    m.ctl(&["put", "w1", "a"]);
    m.ctl(&["put", "w2", "b"]);
    m.ctl(&["put", "w1", "c"]);
    m.ctl(&["del", "w1"]);
    m.ctl(&["put", "other", "x"]);
    std::thread::sleep(Duration::from_millis(700));
    let _ = std::process::Command::new("kill").arg(watcher.id().to_string()).status();
    let out = watcher.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        lines(&text),
        ["PUT", "w1", "a", "PUT", "w2", "b", "PUT", "w1", "a", "w1", "c", "DELETE", "w1", "c", "w1"],
        "watch output:\n{text}"
    );
    // Replaying history from a revision delivers exactly the events from there on.
    let replay = std::process::Command::new("timeout")
        .args(["3", "etcdctl", &format!("--endpoints={}", m.endpoint()), "watch", "w1", "--rev", "2"])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    let text = String::from_utf8(replay.stdout).unwrap();
    assert_eq!(lines(&text), ["PUT", "w1", "a", "PUT", "w1", "c", "DELETE", "w1"], "replay:\n{text}");
}

fn lease_commands(m: &Target, _dir: &std::path::Path) {
    let granted = m.ctl(&["lease", "grant", "30"]);
    let id = granted.split_whitespace().nth(1).expect("lease id").to_string();
    assert!(granted.contains("granted with TTL(30s)"), "{granted}");
    m.ctl(&["put", "lk1", "v", "--lease", &id]);
    m.ctl(&["put", "lk2", "v", "--lease", &id]);
    let ttl = m.ctl(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([lk1 lk2])"), "{ttl}");
    assert!(m.ctl(&["lease", "keep-alive", "--once", &id]).contains("keepalived with TTL(30)"));
    assert!(m.ctl(&["lease", "list"]).contains(&id));
    // A put with an unknown lease fails with etcd's error.
    let out = m.etcdctl(&["put", "x", "y", "--lease", "1234abcd"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("etcdserver: requested lease not found"));
    assert!(m.ctl(&["lease", "revoke", &id]).contains("revoked"));
    assert!(m.ctl(&["get", "lk", "--prefix"]).trim().is_empty());
    assert!(m.ctl(&["lease", "timetolive", &id]).contains("already expired"));
    // Expiry: a 2 s lease (etcd's minimum) deletes its key without keep-alives.
    let short = m.ctl(&["lease", "grant", "2"]);
    let sid = short.split_whitespace().nth(1).unwrap().to_string();
    m.ctl(&["put", "ephemeral", "v", "--lease", &sid]);
    assert_eq!(lines(&m.ctl(&["get", "ephemeral", "--print-value-only"])), ["v"]);
    let start = Instant::now();
    while !m.ctl(&["get", "ephemeral"]).trim().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(8), "lease did not expire");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(start.elapsed() >= Duration::from_millis(1500), "lease expired early: {:?}", start.elapsed());
}

fn maintenance_commands(m: &Target, dir: &std::path::Path) {
    m.ctl(&["put", "k", "v"]);
    let status = json(&m.ctl(&["endpoint", "status", "-w", "json"]));
    let statuses: Vec<&serde_json::Value> = status.as_array().unwrap().iter().map(|e| &e["Status"]).collect();
    assert_eq!(statuses.len(), m.endpoints.len());
    let leader = &statuses[0]["leader"];
    assert!(statuses.iter().all(|s| &s["leader"] == leader), "one leader everywhere");
    assert!(statuses.iter().any(|s| &s["header"]["member_id"] == leader), "the leader is a member");
    for s in &statuses {
        assert!(s["version"].as_str().unwrap() >= "3.5.13");
        assert!(s["raftIndex"].as_u64().unwrap() >= 2);
    }
    let health = m.etcdctl(&["endpoint", "health"]);
    assert!(health.status.success());
    // etcdctl 3.4 prints the health line on stderr.
    assert!(String::from_utf8_lossy(&health.stderr).contains("is healthy"), "{health:?}");
    // HashKV hashes what the first endpoint has applied; a follower may
    // still be applying the last put. A linearizable read through that
    // endpoint waits until it has, so the hashes below see every write.
    let first = Target { endpoints: vec![m.endpoints[0].clone()], members: vec![] };
    first.ctl(&["get", "k"]);
    let h1 = json(&m.ctl(&["endpoint", "hashkv", "-w", "json"]));
    let h2 = json(&m.ctl(&["endpoint", "hashkv", "-w", "json"]));
    assert_eq!(h1[0]["HashKV"]["hash"], h2[0]["HashKV"]["hash"]);
    m.ctl(&["put", "k", "v2"]);
    first.ctl(&["get", "k"]);
    let h3 = json(&m.ctl(&["endpoint", "hashkv", "-w", "json"]));
    assert_ne!(h1[0]["HashKV"]["hash"], h3[0]["HashKV"]["hash"]);
    // etcdctl 3.4 dials `endpoint status`/`hashkv` to a URL endpoint with the URL
    // itself as the HTTP/2 :authority; etcd accepts that, and so must strake.
    let urls = Target { endpoints: m.endpoints.iter().map(|e| format!("http://{e}")).collect(), members: vec![] };
    let status = json(&urls.ctl(&["endpoint", "status", "-w", "json"]));
    assert_eq!(status.as_array().unwrap().len(), m.endpoints.len(), "{status}");
    let hashes = json(&urls.ctl(&["endpoint", "hashkv", "-w", "json"]));
    assert_eq!(hashes[0]["HashKV"]["hash"], h3[0]["HashKV"]["hash"]);
    let cluster = m.ctl(&["endpoint", "status", "--cluster"]);
    assert_eq!(cluster.lines().count(), m.endpoints.len(), "{cluster}");
    let members = m.ctl(&["member", "list"]);
    for (name, peer, client) in &m.members {
        assert!(members.contains(&format!("started, {name}, {peer}, {client}, false")), "{members}");
    }
    // etcdctl takes a snapshot from exactly one endpoint.
    let snap = dir.join("snap.db");
    assert!(first.ctl(&["snapshot", "save", snap.to_str().unwrap()]).contains("Snapshot saved"));
    let bytes = std::fs::read(&snap).unwrap();
    assert!(bytes.len() > 1000);
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    use sha2::Digest;
    assert_eq!(sha2::Sha256::digest(body).as_slice(), trailer, "the snapshot ends with the SHA-256 of the archive");
    assert!(m.ctl(&["defrag"]).contains("Finished defragmenting"));
    assert!(m.ctl(&["alarm", "list"]).trim().is_empty());
    assert_eq!(lines(&m.ctl(&["get", "k", "--print-value-only"])), ["v2"]);
}

fn lock_and_election(m: &Target, dir: &std::path::Path) {
    let ep = format!("--endpoints={}", m.endpoint());
    // Contender 1 holds the lock for 1.5 s; contender 2 must wait for it.
    let script = dir.join("hold.sh");
    std::fs::write(&script, "#!/bin/sh\ndate +%s.%N\nsleep 1.5\ndate +%s.%N\n").unwrap();
    let first = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&ep, "lock", "mylock", "sh", script.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let second = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&ep, "lock", "mylock", "date", "+%s.%N"])
        .output()
        .unwrap();
    let first = first.wait_with_output().unwrap();
    let t: Vec<f64> = String::from_utf8(first.stdout).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    let t2: f64 = String::from_utf8(second.stdout).unwrap().trim().parse().unwrap();
    assert!(t2 >= t[1], "second holder ran at {t2} before the first released at {}", t[1]);

    // `elect -l` observes leadership until interrupted: read what it prints in 1.5 s.
    let observe = || {
        let out = std::process::Command::new("timeout")
            .args(["1.5", "etcdctl", &ep, "elect", "-l", "myelect"])
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    // Election: the first campaigner leads; the second only after the first resigns.
    let leader1 = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&ep, "elect", "myelect", "p1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(observe().contains("p1"));
    let mut leader2 = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&ep, "elect", "myelect", "p2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let seen = observe();
    assert!(seen.contains("p1") && !seen.contains("p2"), "p2 must wait: {seen}");
    // etcdctl elect resigns on SIGINT.
    let _ = std::process::Command::new("kill").args(["-INT", &leader1.id().to_string()]).status();
    let _ = leader1.wait_with_output();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if observe().contains("p2") {
            break;
        }
        assert!(Instant::now() < deadline, "p2 never became leader");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = leader2.kill();
    let _ = leader2.wait();
}

#[test]
fn http_endpoints_and_wal_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    let (code, body) = http_get(m.client_port, "/health").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"health\":\"true\""), "{body}");
    let (code, body) = http_get(m.client_port, "/version").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("etcdserver") && body.contains("etcdcluster"), "{body}");
    assert_eq!(http_get(m.client_port, "/livez").unwrap().0, 200);
    assert_eq!(http_get(m.client_port, "/readyz").unwrap().0, 200);
    let (_, metrics) = http_get(m.client_port, "/metrics").unwrap();
    assert!(metrics.contains("etcd_server_has_leader 1"), "{metrics}");
    assert!(metrics.contains("etcd_server_is_leader 1"));
    // The log has synced at least the bootstrap entries.
    let fsyncs = metric_value(&metrics, "etcd_disk_wal_fsync_duration_seconds_count");
    assert!(fsyncs >= 1.0, "{metrics}");
    assert!(metric_value(&metrics, "etcd_disk_wal_write_bytes_total") > 0.0, "{metrics}");
    m.ctl(&["put", "metrics-key", "v"]);
    let (_, after) = http_get(m.client_port, "/metrics").unwrap();
    assert!(metric_value(&after, "etcd_disk_wal_fsync_duration_seconds_count") > fsyncs, "{after}");
    // The put was applied in an entry of one write; nothing took 100 ms.
    assert!(
        metric_value(&after, "strake_apply_entry_duration_seconds_count")
            > metric_value(&metrics, "strake_apply_entry_duration_seconds_count"),
        "{after}"
    );
    assert!(metric_value(&after, "strake_apply_entry_writes_count") >= 1.0, "{after}");
    assert!(after.contains("etcd_server_slow_apply_total"), "{after}");
    // No bulk write was held for RocksDB's backlog (a small put never is).
    assert_eq!(metric_value(&after, "strake_bulk_write_backlog_hold_seconds_count"), 0.0, "{after}");
    // The server turned transparent huge pages off for itself (`huge_pages.rs`).
    let status = std::fs::read_to_string(format!("/proc/{}/status", m.pid())).unwrap();
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}

#[test]
fn grpc_metrics_count_rpcs_by_method_and_status_with_etcds_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &["--metrics", "extensive"]);
    m.start();
    m.ctl(&["put", "a", "1"]);
    m.ctl(&["put", "a", "2"]);
    let empty_key = m.etcdctl(&["put", "", "3"]);
    assert!(!empty_key.status.success());
    assert!(String::from_utf8_lossy(&empty_key.stderr).contains("key is not provided"));
    let (_, metrics) = http_get(m.client_port, "/metrics").unwrap();
    let put = [("grpc_service", "etcdserverpb.KV"), ("grpc_method", "Put"), ("grpc_type", "unary")];
    let with_code = |code| [put[0], put[1], put[2], ("grpc_code", code)];
    assert_eq!(labelled_value(&metrics, "grpc_server_started_total", &put), 3.0);
    assert_eq!(labelled_value(&metrics, "grpc_server_handled_total", &with_code("OK")), 2.0);
    assert_eq!(labelled_value(&metrics, "grpc_server_handled_total", &with_code("InvalidArgument")), 1.0);
    assert_eq!(labelled_value(&metrics, "grpc_server_handled_total", &with_code("Canceled")), 0.0);
    assert_eq!(labelled_value(&metrics, "grpc_server_msg_received_total", &put), 3.0);
    // An error is answered in the headers, without a message.
    assert_eq!(labelled_value(&metrics, "grpc_server_msg_sent_total", &put), 2.0);
    assert_eq!(labelled_value(&metrics, "grpc_server_handling_seconds_count", &put), 3.0);
    // Series exist before the first call, as go-grpc-prometheus makes them.
    let watch = [("grpc_service", "etcdserverpb.Watch"), ("grpc_method", "Watch"), ("grpc_type", "bidi_stream")];
    assert_eq!(labelled_value(&metrics, "grpc_server_started_total", &watch), 0.0);
    assert!(metric_value(&metrics, "etcd_network_client_grpc_received_bytes_total") > 0.0);
    assert!(metric_value(&metrics, "etcd_network_client_grpc_sent_bytes_total") > 0.0);
    assert!(metric_value(&metrics, "process_resident_memory_bytes") > 0.0);
}

#[test]
fn watch_gauges_count_live_streams_and_watchers_and_drop_with_the_stream() {
    use strake_proto::etcdserverpb::watch_client::WatchClient;
    use strake_proto::etcdserverpb::watch_request::RequestUnion;
    use strake_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};

    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    let port = m.client_port;
    let gauges = || watch_gauges(port);
    let rt = common::runtime();
    rt.block_on(async {
        let mut client = WatchClient::new(common::channel(port).await);
        let create = |key: &str| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.to_owned().into(),
                ..Default::default()
            })),
        };
        let requests =
            tokio_stream::StreamExt::chain(tokio_stream::iter(vec![create("a"), create("b")]), tokio_stream::pending());
        let mut stream = client.watch(requests).await.unwrap().into_inner();
        for _ in 0..2 {
            let created = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap();
            assert!(created.unwrap().created);
        }
        assert_eq!(gauges(), (1.0, 2.0));
    });
    // The client goes away (its connection closes) without cancelling its watchers.
    drop(rt);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauges() != (0.0, 0.0) {
        assert!(Instant::now() < deadline, "gauges after the stream closed: {:?}", gauges());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_watch_stream_reset_by_the_client_frees_its_watchers_while_the_connection_stays() {
    use prost::Message;
    use strake_proto::etcdserverpb::watch_request::RequestUnion;
    use strake_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};

    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    let port = m.client_port;
    let gauges = || watch_gauges(port);
    let rt = common::runtime();
    rt.block_on(async {
        // A raw HTTP/2 client, so the test controls the frames: Go's gRPC cancels a
        // stream with RST_STREAM(CANCEL) and keeps the connection for other calls.
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = http::Request::post(format!("http://127.0.0.1:{port}/etcdserverpb.Watch/Watch"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        for key in ["a", "b"] {
            let create = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: key.as_bytes().to_vec().into(),
                    ..Default::default()
                })),
            };
            let message = create.encode_to_vec();
            let mut frame = vec![0u8];
            frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
            frame.extend_from_slice(&message);
            send.send_data(frame.into(), false).unwrap();
        }
        let mut body = response.await.unwrap().into_body();
        let mut received = 0;
        while gauges() != (1.0, 2.0) {
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.data()).await.unwrap().unwrap().unwrap();
            received += chunk.len();
            assert!(received < 4096, "no second watcher after {received} bytes: {:?}", gauges());
        }
        // Reset only: the response body is still held.
        send.send_reset(h2::Reason::CANCEL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while gauges() != (0.0, 0.0) {
            assert!(Instant::now() < deadline, "gauges after the stream was reset: {:?}", gauges());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(body);
        let (_, metrics) = http_get(port, "/metrics").unwrap();
        let watch = [("grpc_service", "etcdserverpb.Watch"), ("grpc_method", "Watch"), ("grpc_type", "bidi_stream")];
        let canceled = [watch[0], watch[1], watch[2], ("grpc_code", "Canceled")];
        assert_eq!(labelled_value(&metrics, "grpc_server_started_total", &watch), 1.0);
        assert_eq!(labelled_value(&metrics, "grpc_server_handled_total", &canceled), 1.0);
        // The connection still serves calls.
        let (response, _send) = client
            .send_request(
                http::Request::post(format!("http://127.0.0.1:{port}/etcdserverpb.Watch/Watch"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(())
                    .unwrap(),
                false,
            )
            .unwrap();
        assert_eq!(response.await.unwrap().status(), 200);
    });
}

/// The member's (watch streams, watchers) gauges.
fn watch_gauges(port: u16) -> (f64, f64) {
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    (
        metric_value(&metrics, "etcd_debugging_mvcc_watch_stream_total"),
        metric_value(&metrics, "etcd_debugging_mvcc_watcher_total"),
    )
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn labelled_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} with {labels:?}"))
}
