//! Lock workload: processes take turns holding one v3lock lock (attached to a
//! lease kept alive in the background) and, while holding it, increment a shared
//! counter by a read followed by a write. Now and then a holder stalls longer than
//! the lease TTL with its keep-alives stopped, as a process in a long GC pause
//! would: its lease expires, the lock passes on, and the stalled holder wakes up
//! believing it still holds the lock.
//!
//! Two variants show why a lease-based lock needs fencing:
//! * fenced ([`Fencing::Fenced`]): the write is a Txn that succeeds only while the
//!   holder's lock key still exists (the key's creation revision is the fencing
//!   token). A stalled holder's write fails, so no increment is lost.
//! * unfenced: a plain Put. The stalled holder overwrites the next holder's
//!   increment, and the check reports two holders inside the critical section.
//!
//! Checked: no two successful writes store the same counter value (each
//! successful write read the value the previous one wrote).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::request_op::Request;
use strake_proto::etcdserverpb::{
    Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use strake_proto::v3lockpb::{LockRequest, UnlockRequest};

use crate::client::{classify_read, classify_write, CallError, Clients};
use crate::history::{pair, Event, Outcome};

/// The lock's name.
const LOCK: &str = "/jepsen/lock/mutex";
/// The counter incremented inside the critical section.
const COUNTER: &str = "/jepsen/lock/counter";
/// TTL of the lease each holder attaches to its lock key, seconds.
pub const TTL_SECONDS: i64 = 2;
/// Keep-alive period while the holder runs normally.
const KEEPALIVE_EVERY: Duration = Duration::from_millis(500);
/// A stall: longer than the TTL, so the lease expires while the holder sleeps.
const STALL: Duration = Duration::from_millis(TTL_SECONDS as u64 * 1000 + 1500);
/// One stall in this many critical sections.
const STALL_ONE_IN: u32 = 3;

/// Whether critical-section writes are fenced by the lock key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// Write only while the lock key exists (a Txn comparing its creation revision).
    Fenced,
    /// Plain puts.
    Unfenced,
}

/// Where a process is in its acquire / read / write / release cycle. Dropping it
/// stops the keep-alives, so the lease (and the lock) expire on their own.
#[derive(Debug)]
pub struct LockSession {
    fencing: Fencing,
    step: u32,
    lease: i64,
    key: Vec<u8>,
    read: i64,
    keepalive: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for LockSession {
    fn drop(&mut self) {
        self.stop_keepalive();
    }
}

impl LockSession {
    /// A process that holds nothing yet.
    pub fn new(fencing: Fencing) -> LockSession {
        LockSession { fencing, step: 0, lease: 0, key: vec![], read: 0, keepalive: None }
    }

    fn stop_keepalive(&mut self) {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
    }

    /// The next operation: (f, key, input).
    pub fn next(&self) -> (String, Value, Value) {
        let key = json!(LOCK);
        match self.step {
            0 => ("acquire".into(), key, Value::Null),
            1 => ("read".into(), key, Value::Null),
            2 => ("write".into(), key, json!(self.read + 1)),
            _ => ("release".into(), key, Value::Null),
        }
    }

    /// A client-side pause to take before the next operation (outside the history):
    /// sometimes, between the read and the write, the holder stalls with its
    /// keep-alives stopped for longer than the lease TTL.
    pub fn stall(&mut self) -> Option<Duration> {
        if self.step == 2 && rand::rng().random_range(0..STALL_ONE_IN) == 0 {
            self.stop_keepalive();
            return Some(STALL);
        }
        None
    }

    /// Runs the operation and advances the cycle.
    pub async fn invoke(&mut self, c: &mut Clients, f: &str) -> Result<Value, CallError> {
        let result = match f {
            "acquire" => self.acquire(c).await,
            "read" => {
                let r =
                    c.kv.range(RangeRequest { key: COUNTER.into(), ..Default::default() })
                        .await
                        .map_err(|e| classify_read(&e))?;
                let value =
                    r.into_inner().kvs.first().map_or(0, |kv| String::from_utf8_lossy(&kv.value).parse().unwrap_or(0));
                self.read = value;
                Ok(json!(value))
            }
            "write" => self.write(c).await,
            "release" => {
                self.stop_keepalive();
                let unlocked = c.locks.unlock(UnlockRequest { key: std::mem::take(&mut self.key).into() }).await;
                let _ = c.leases.lease_revoke(LeaseRevokeRequest { id: self.lease }).await;
                unlocked.map(|_| Value::Null).map_err(|e| classify_write(&e))
            }
            other => Err(CallError::Fail(format!("unknown function {other}"))),
        };
        self.step = match (f, &result) {
            ("acquire", Ok(_)) => 1,
            ("acquire", Err(_)) | ("release", _) => 0,
            ("read", Ok(_)) => 2,
            _ => 3,
        };
        result
    }

    async fn acquire(&mut self, c: &mut Clients) -> Result<Value, CallError> {
        let grant = c
            .leases
            .lease_grant(LeaseGrantRequest { ttl: TTL_SECONDS, id: 0 })
            .await
            .map_err(|e| classify_write(&e))?;
        self.lease = grant.into_inner().id;
        self.keepalive = Some(spawn_keepalive(c.clone(), self.lease));
        let r =
            c.locks.lock(LockRequest { name: LOCK.into(), lease: self.lease }).await.map_err(|e| classify_write(&e))?;
        self.key = r.into_inner().key.to_vec();
        Ok(json!(String::from_utf8_lossy(&self.key)))
    }

    async fn write(&mut self, c: &mut Clients) -> Result<Value, CallError> {
        let value = self.read + 1;
        let put = PutRequest { key: COUNTER.into(), value: value.to_string().into(), ..Default::default() };
        match self.fencing {
            Fencing::Unfenced => {
                c.kv.put(put).await.map_err(|e| classify_write(&e))?;
            }
            Fencing::Fenced => {
                let still_held = Compare {
                    result: CompareResult::Greater as i32,
                    target: CompareTarget::Create as i32,
                    key: self.key.clone().into(),
                    target_union: Some(TargetUnion::CreateRevision(0)),
                    range_end: Default::default(),
                };
                let txn = TxnRequest {
                    compare: vec![still_held],
                    success: vec![RequestOp { request: Some(Request::RequestPut(put)) }],
                    failure: vec![],
                };
                let r = c.kv.txn(txn).await.map_err(|e| classify_write(&e))?;
                if !r.into_inner().succeeded {
                    return Err(CallError::Fail("lock lost (lease expired): fenced write refused".into()));
                }
            }
        }
        Ok(json!(value))
    }
}

/// Keeps `lease` alive until aborted. The returned task produces the keep-alive
/// requests: aborting it stops them even though the HTTP/2 connection may keep the
/// request stream itself open.
fn spawn_keepalive(mut c: Clients, lease: i64) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        if let Ok(r) = c.leases.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
            let mut responses = r.into_inner();
            while let Ok(Some(_)) = responses.message().await {}
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEEPALIVE_EVERY);
        loop {
            tick.tick().await;
            if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                return;
            }
        }
    })
}

/// Checks a lock history: every successful write must store a distinct counter
/// value; two writes of the same value were made by two processes that both
/// believed they held the lock. Returns the violations.
pub fn check(events: &[Event]) -> Vec<String> {
    let mut writers: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for op in pair(events).unwrap_or_default() {
        if op.f == "write" && op.outcome == Outcome::Ok {
            if let Some(v) = op.output.as_i64() {
                writers.entry(v).or_default().push(op.process);
            }
        }
    }
    let mut problems: Vec<String> = writers
        .iter()
        .filter(|(_, ps)| ps.len() > 1)
        .map(|(v, ps)| {
            format!("mutual exclusion violated: processes {ps:?} each wrote counter={v} after reading {}; an increment was lost", v - 1)
        })
        .collect();
    problems.truncate(50);
    problems
}
