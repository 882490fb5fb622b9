//! Workloads: what each harness process does, and how the resulting history is
//! checked.
//!
//! * [`register`]: read / write / compare-and-set on many keys (linearizability per key).
//! * [`append`]: Elle list-append transactions (strict serializability).
//! * [`watch`]: watchers must see every revision once, in order, consistent with reads.
//! * [`lease`]: keys vanish with their lease, never before its TTL.
//! * [`lock`]: v3lock mutual exclusion, with and without fencing.
//!
//! [`ProcessState`] is what one harness process carries between operations.

pub mod append;
pub mod lease;
pub mod lock;
pub mod register;
pub mod watch;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strake_proto::etcdserverpb::PutRequest;

use crate::client::{classify_write, CallError, Clients};

/// The workloads the runner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Per-key register with CAS.
    Register,
    /// List-append transactions.
    Append,
    /// Watches against writes.
    Watch,
    /// Lease grant, keep-alive, revoke, with attached keys.
    Lease,
    /// v3lock holders incrementing a counter, writes fenced by the lock key.
    Lock,
    /// The same without fencing: shows that a lease-based lock alone is unsafe.
    LockUnfenced,
}

/// The state one harness process keeps between operations: its clients (one
/// member) and where it is in a multi-step workload. A process whose operation had
/// an unknown outcome is retired and replaced by a fresh state.
#[derive(Debug)]
pub struct ProcessState {
    kind: WorkloadKind,
    clients: Clients,
    lease: lease::LeaseSession,
    lock: lock::LockSession,
}

impl ProcessState {
    /// A process of workload `kind` talking to `endpoint`.
    pub async fn connect(kind: WorkloadKind, endpoint: &str, timeout: Duration) -> Result<ProcessState, String> {
        let fencing = if kind == WorkloadKind::LockUnfenced { lock::Fencing::Unfenced } else { lock::Fencing::Fenced };
        Ok(ProcessState {
            kind,
            clients: Clients::connect(endpoint, timeout).await?,
            lease: lease::LeaseSession::default(),
            lock: lock::LockSession::new(fencing),
        })
    }

    /// A client-side pause to take (outside the history) before the next operation.
    pub fn stall(&mut self) -> Option<Duration> {
        match self.kind {
            WorkloadKind::Lock | WorkloadKind::LockUnfenced => self.lock.stall(),
            _ => None,
        }
    }

    /// The next operation of `process`: (f, key, input). `values` hands out unique
    /// values to write.
    pub fn next(&mut self, process: i64, values: &AtomicI64) -> (String, Value, Value) {
        match self.kind {
            WorkloadKind::Register => register::generate(),
            WorkloadKind::Append => ("txn".to_string(), Value::Null, append::generate_unique(values)),
            WorkloadKind::Watch => {
                let v = values.fetch_add(1, Ordering::Relaxed);
                ("write".to_string(), json!(v as u64 % watch::KEYS), json!(format!("v{v}")))
            }
            WorkloadKind::Lease => self.lease.next(process),
            WorkloadKind::Lock | WorkloadKind::LockUnfenced => self.lock.next(),
        }
    }

    /// Runs one operation: its output and, for watch writes, the revision it created.
    pub async fn invoke(
        &mut self,
        f: &str,
        key: &Value,
        input: &Value,
        timeout: Duration,
    ) -> Result<(Value, Option<i64>), CallError> {
        let kv = &mut self.clients.kv;
        match self.kind {
            WorkloadKind::Register => register::invoke(kv, f, key, input, timeout).await.map(|v| (v, None)),
            WorkloadKind::Append => append::invoke(kv, input).await.map(|v| (v, None)),
            WorkloadKind::Watch => {
                let put = PutRequest {
                    key: format!("{}{}", watch::PREFIX, key).into(),
                    value: input.as_str().unwrap_or("").to_string().into(),
                    ..Default::default()
                };
                let r = kv.put(put).await.map_err(|e| classify_write(&e))?;
                Ok((input.clone(), r.into_inner().header.map(|h| h.revision)))
            }
            WorkloadKind::Lease => self.lease.invoke(&mut self.clients, f, key).await.map(|v| (v, None)),
            WorkloadKind::Lock | WorkloadKind::LockUnfenced => {
                self.lock.invoke(&mut self.clients, f).await.map(|v| (v, None))
            }
        }
    }
}
