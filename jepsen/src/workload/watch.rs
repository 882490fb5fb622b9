//! Watch workload: writers put unique values under a prefix while watchers stream
//! it from revision 1, reconnecting to any member and resuming at last seen + 1.
//! Checks etcd's watch guarantees against the acknowledged writes: ordered, unique,
//! atomic per revision, reliable (nothing acknowledged is missing, nothing invented),
//! resumable, and every watcher converges on the same log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strake_proto::etcdserverpb::watch_client::WatchClient;
use strake_proto::etcdserverpb::watch_request::RequestUnion;
use strake_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
use tonic::transport::Endpoint;

/// The watched prefix.
pub const PREFIX: &str = "/jepsen/watch/";
/// Keys written.
pub const KEYS: u64 = 4;

/// An event as a watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenEvent {
    /// The revision.
    pub revision: i64,
    /// The key.
    pub key: String,
    /// The value ("" for deletes).
    pub value: String,
    /// Which response (per watcher, counting from 0) carried it.
    pub response: u64,
}

/// What one watcher saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatcherLog {
    /// Watcher number.
    pub id: usize,
    /// Events in arrival order.
    pub events: Vec<SeenEvent>,
    /// (requested start revision, first revision delivered after it) per (re)connection.
    pub resumes: Vec<(i64, Option<i64>)>,
    /// Errors seen (reconnects).
    pub errors: Vec<String>,
}

/// How long (in half-seconds without any message, after the run ended) a watcher
/// waits for the final revision before it gives up; the checker then reports what
/// never arrived.
const GIVE_UP_AFTER_QUIET_HALF_SECONDS: u32 = 10;

/// Streams `PREFIX` from revision 1 until `stop` is set and `until` (the final
/// revision, once known) has been seen, switching members on errors.
pub async fn watch(
    id: usize,
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
    until: Arc<std::sync::atomic::AtomicI64>,
) -> WatcherLog {
    let mut log = WatcherLog { id, ..Default::default() };
    let mut next_rev = 1i64;
    let mut member = id % endpoints.len();
    let mut responses = 0u64;
    loop {
        let done = |next: i64| {
            stop.load(Ordering::Relaxed) && until.load(Ordering::Relaxed) > 0 && next > until.load(Ordering::Relaxed)
        };
        if done(next_rev) {
            return log;
        }
        let url = format!("http://{}", endpoints[member]);
        member = (member + 1) % endpoints.len();
        let Ok(ch) = Endpoint::from_shared(url).expect("url").connect_timeout(Duration::from_secs(1)).connect().await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut client = WatchClient::new(ch);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: PREFIX.into(),
                range_end: crate::workload_prefix_end(PREFIX.as_bytes()).into(),
                start_revision: next_rev,
                ..Default::default()
            })),
        };
        let _ = tx.send(create).await;
        let Ok(resp) = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = resp.into_inner();
        log.resumes.push((next_rev, None));
        // Quiet half-seconds since the run ended: a server that lost the final
        // revision's event would otherwise be waited for forever.
        let mut quiet_after_stop = 0u32;
        loop {
            let msg = match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                Err(_) => {
                    if done(next_rev) {
                        return log;
                    }
                    if stop.load(Ordering::Relaxed) && until.load(Ordering::Relaxed) > 0 {
                        quiet_after_stop += 1;
                        if quiet_after_stop >= GIVE_UP_AFTER_QUIET_HALF_SECONDS {
                            log.errors.push(format!(
                                "no event for {} s after the run ended; revision {} never arrived",
                                GIVE_UP_AFTER_QUIET_HALF_SECONDS / 2,
                                until.load(Ordering::Relaxed)
                            ));
                            return log;
                        }
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    log.errors.push(e.message().to_string());
                    break;
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(m))) => m,
            };
            quiet_after_stop = 0;
            if msg.canceled {
                log.errors.push(format!("canceled: {} (compact revision {})", msg.cancel_reason, msg.compact_revision));
                break;
            }
            for e in &msg.events {
                let kv = e.kv.clone().unwrap_or_default();
                if let Some(last) = log.resumes.last_mut() {
                    if last.1.is_none() {
                        last.1 = Some(kv.mod_revision);
                    }
                }
                log.events.push(SeenEvent {
                    revision: kv.mod_revision,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value: String::from_utf8_lossy(&kv.value).into_owned(),
                    response: responses,
                });
                next_rev = next_rev.max(kv.mod_revision + 1);
            }
            if !msg.events.is_empty() {
                responses += 1;
            }
        }
    }
}

/// An acknowledged (or unknown) write, from the history.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Revision from the response header, for acknowledged writes.
    pub revision: Option<i64>,
}

/// Checks the watchers' logs against the writes. Returns violations (empty = valid).
pub fn check(logs: &[WatcherLog], writes: &[WriteRecord], final_revision: i64) -> Vec<String> {
    let mut problems = Vec::new();
    let by_value: BTreeMap<&str, &WriteRecord> = writes.iter().map(|w| (w.value.as_str(), w)).collect();
    let mut canonical: Option<&Vec<SeenEvent>> = None;
    for log in logs {
        let w = log.id;
        // Ordered and unique.
        let mut seen = BTreeSet::new();
        for pair in log.events.windows(2) {
            if pair[1].revision < pair[0].revision {
                problems
                    .push(format!("watcher {w}: revision went back from {} to {}", pair[0].revision, pair[1].revision));
            }
        }
        for e in &log.events {
            if !seen.insert((e.revision, e.key.clone())) {
                problems.push(format!("watcher {w}: duplicate event {} at revision {}", e.key, e.revision));
            }
            // Nothing invented: each event is a write the clients made.
            match by_value.get(e.value.as_str()) {
                None => problems
                    .push(format!("watcher {w}: event {}={} at {} matches no write", e.key, e.value, e.revision)),
                Some(wr) => {
                    if wr.key != e.key || wr.revision.is_some_and(|r| r != e.revision) {
                        problems.push(format!(
                            "watcher {w}: event {}={} at {} but the write was {}@{:?}",
                            e.key, e.value, e.revision, wr.key, wr.revision
                        ));
                    }
                }
            }
        }
        // Atomic: one revision's events arrive in one response.
        let mut resp_of: BTreeMap<i64, u64> = BTreeMap::new();
        for e in &log.events {
            if let Some(r) = resp_of.insert(e.revision, e.response) {
                if r != e.response {
                    problems.push(format!("watcher {w}: revision {} split across responses", e.revision));
                }
            }
        }
        // Resumable: after each (re)connection the first event is at or after the start.
        for (start, first) in &log.resumes {
            if let Some(f) = first {
                if f < start {
                    problems.push(format!("watcher {w}: resumed at {start} but got revision {f}"));
                }
            }
        }
        // Reliable: every acknowledged write up to the final revision was delivered.
        let delivered: BTreeSet<(i64, &str)> = log.events.iter().map(|e| (e.revision, e.value.as_str())).collect();
        for wr in writes {
            if let Some(r) = wr.revision {
                if r <= final_revision && !delivered.contains(&(r, wr.value.as_str())) {
                    problems
                        .push(format!("watcher {w}: acknowledged write {}={} at {r} never arrived", wr.key, wr.value));
                }
            }
        }
        // Convergence: every watcher saw the same log.
        let cut: Vec<SeenEvent> = log.events.iter().filter(|e| e.revision <= final_revision).cloned().collect();
        match canonical {
            None => canonical = Some(&log.events),
            Some(c) => {
                let c: Vec<(i64, &str)> =
                    c.iter().filter(|e| e.revision <= final_revision).map(|e| (e.revision, e.value.as_str())).collect();
                let mine: Vec<(i64, &str)> = cut.iter().map(|e| (e.revision, e.value.as_str())).collect();
                if c != mine {
                    problems.push(format!("watcher {w}: its log differs from watcher {}'s", logs[0].id));
                }
            }
        }
    }
    problems.truncate(50);
    problems
}
