//! Lease workload: each process repeatedly grants a lease, attaches a key, keeps the
//! lease alive while reading the key, then revokes it and reads again. Checked:
//! a key never vanishes while its lease was kept alive within its TTL (no early
//! expiry), and never survives its revoked lease.

use std::time::Duration;

use serde_json::{json, Value};
use strake_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
};

use crate::client::{classify_read, classify_write, CallError, Clients};
use crate::history::Event;

/// Granted TTL, seconds.
pub const TTL_SECONDS: i64 = 4;
/// Keep-alive/read rounds per lease.
pub const ROUNDS: u32 = 6;

/// Where a process is in its grant / attach / keep-alive / revoke cycle.
#[derive(Debug, Default)]
pub struct LeaseSession {
    step: u32,
    lease: i64,
}

impl LeaseSession {
    /// The next operation of `process`: (f, key, input).
    pub fn next(&self, process: i64) -> (String, Value, Value) {
        let key = json!(format!("/jepsen/lease/{process}"));
        match self.step {
            0 => ("grant".into(), key, json!(TTL_SECONDS)),
            1 => ("put".into(), key, json!(self.lease)),
            s if s < 2 + 2 * ROUNDS => {
                if s % 2 == 0 {
                    ("keepalive".into(), key, json!(self.lease))
                } else {
                    ("read".into(), key, json!(self.lease))
                }
            }
            s if s == 2 + 2 * ROUNDS => ("revoke".into(), key, json!(self.lease)),
            _ => ("read".into(), key, json!(self.lease)),
        }
    }

    /// Runs the operation and advances the cycle.
    pub async fn invoke(&mut self, c: &mut Clients, f: &str, key: &Value) -> Result<Value, CallError> {
        let Clients { kv, leases, .. } = c;
        let k = key.as_str().unwrap_or_default().to_string();
        let result = match f {
            "grant" => {
                let r = leases
                    .lease_grant(LeaseGrantRequest { ttl: TTL_SECONDS, id: 0 })
                    .await
                    .map_err(|e| classify_write(&e))?;
                self.lease = r.into_inner().id;
                Ok(json!(self.lease))
            }
            "put" => {
                kv.put(PutRequest { key: k.into(), value: "held".into(), lease: self.lease, ..Default::default() })
                    .await
                    .map_err(|e| classify_write(&e))?;
                Ok(json!(self.lease))
            }
            "keepalive" => {
                let mut s = leases
                    .lease_keep_alive(tokio_stream::iter(vec![LeaseKeepAliveRequest { id: self.lease }]))
                    .await
                    .map_err(|e| classify_read(&e))?
                    .into_inner();
                let r = s.message().await.map_err(|e| classify_read(&e))?;
                let ttl = r.map_or(0, |r| r.ttl);
                if ttl <= 0 {
                    // The lease is gone: start a new cycle.
                    self.step = 0;
                    return Err(CallError::Fail("lease not found".into()));
                }
                Ok(json!(ttl))
            }
            "read" => {
                // Read half a TTL after the renewal: a lease that expires early
                // (before its TTL) is caught with its key gone.
                if self.step >= 2 && self.step < 2 + 2 * ROUNDS {
                    tokio::time::sleep(Duration::from_millis(TTL_SECONDS as u64 * 500)).await;
                }
                let r = kv
                    .range(RangeRequest { key: k.into(), ..Default::default() })
                    .await
                    .map_err(|e| classify_read(&e))?;
                Ok(match r.into_inner().kvs.first() {
                    Some(kv) => json!(kv.lease),
                    None => Value::Null,
                })
            }
            "revoke" => {
                leases.lease_revoke(LeaseRevokeRequest { id: self.lease }).await.map_err(|e| classify_write(&e))?;
                Ok(json!(self.lease))
            }
            other => Err(CallError::Fail(format!("unknown function {other}"))),
        };
        if result.is_ok() {
            self.step += 1;
            if self.step > 3 + 2 * ROUNDS {
                self.step = 0;
            }
        } else if f == "grant" || f == "put" {
            self.step = 0;
        }
        result
    }
}

/// Checks a lease history; returns violations.
pub fn check(events: &[Event]) -> Vec<String> {
    let mut problems = Vec::new();
    let ops = crate::history::pair(events).unwrap_or_default();
    let mut by_process: std::collections::BTreeMap<i64, Vec<&crate::history::Operation>> = Default::default();
    for op in &ops {
        by_process.entry(op.process).or_default().push(op);
    }
    let ttl_ns = (TTL_SECONDS as u64) * 1_000_000_000;
    for (p, ops) in by_process {
        // The lease was renewed no earlier than the invocation of the last successful
        // grant or keep-alive, so it lives at least until that time plus the TTL.
        let mut alive_from: Option<u64> = None;
        let mut attached = false;
        let mut revoked = false;
        for op in ops {
            let ok = op.outcome == crate::history::Outcome::Ok;
            match (op.f.as_str(), ok) {
                ("grant", true) => {
                    alive_from = Some(op.call);
                    attached = false;
                    revoked = false;
                }
                ("put", true) => attached = true,
                ("keepalive", true) => alive_from = Some(op.call),
                ("revoke", true) => revoked = true,
                ("revoke", false) | ("grant", false) | ("put", false) => {
                    // Unknown: stop reasoning about this lease.
                    attached = false;
                    alive_from = None;
                }
                ("read", true) => {
                    let present = !op.output.is_null();
                    if attached && !revoked && !present {
                        if let Some(t) = alive_from {
                            if op.ret != u64::MAX && op.ret < t + ttl_ns {
                                problems.push(format!(
                                    "process {p}: key of lease {} gone {:.2} s after a renewal of a {TTL_SECONDS} s lease (lease expired early)",
                                    op.input,
                                    (op.ret - t) as f64 / 1e9
                                ));
                            }
                        }
                    }
                    if attached && revoked && present {
                        problems.push(format!("process {p}: key outlived its revoked lease {}", op.input));
                    }
                    if !present {
                        attached = false;
                    }
                }
                _ => {}
            }
        }
    }
    problems.truncate(50);
    problems
}
