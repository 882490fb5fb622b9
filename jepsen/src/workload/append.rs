//! List-append workload (Elle): transactions of appends and reads over a few keys.
//! Each key holds a JSON list. A transaction reads every key it touches in one Txn,
//! then commits its appends in a second Txn guarded by the mod revisions it read;
//! if a guard fails, the transaction definitely did not happen.

use rand::Rng;
use serde_json::{json, Value};
use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::kv_client::KvClient;
use strake_proto::etcdserverpb::request_op::Request;
use strake_proto::etcdserverpb::response_op::Response;
use strake_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;

use crate::client::{classify_read, classify_write, CallError};

/// Keys of the append workload.
pub const KEYS: u64 = 4;

fn key(k: i64) -> Vec<u8> {
    format!("/jepsen/append/{k}").into_bytes()
}

/// A random transaction of 1–4 micro-operations; appended values come from
/// `values`, so they are unique across processes.
pub fn generate_unique(values: &std::sync::atomic::AtomicI64) -> Value {
    let mut rng = rand::rng();
    let n = rng.random_range(1..=4);
    let ops: Vec<Value> = (0..n)
        .map(|_| {
            let k = rng.random_range(0..KEYS as i64);
            if rng.random_bool(0.5) {
                json!(["r", k, null])
            } else {
                json!(["append", k, values.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1])
            }
        })
        .collect();
    Value::Array(ops)
}

/// Runs a transaction; returns it with read results filled in.
pub async fn invoke(kv: &mut KvClient<Channel>, txn: &Value) -> Result<Value, CallError> {
    let ops = txn.as_array().cloned().unwrap_or_default();
    let mut keys: Vec<i64> = ops.iter().filter_map(|m| m[1].as_i64()).collect();
    keys.sort_unstable();
    keys.dedup();
    let reads: Vec<RequestOp> = keys
        .iter()
        .map(|k| RequestOp {
            request: Some(Request::RequestRange(RangeRequest { key: key(*k).into(), ..Default::default() })),
        })
        .collect();
    let snapshot =
        kv.txn(TxnRequest { compare: vec![], success: reads, failure: vec![] }).await.map_err(|e| classify_read(&e))?;
    let mut state: std::collections::BTreeMap<i64, (Vec<Value>, i64)> = Default::default();
    for (k, r) in keys.iter().zip(snapshot.into_inner().responses) {
        let (list, rev) = match r.response {
            Some(Response::ResponseRange(rr)) => match rr.kvs.first() {
                Some(kv) => (serde_json::from_slice::<Vec<Value>>(&kv.value).unwrap_or_default(), kv.mod_revision),
                None => (vec![], 0),
            },
            _ => (vec![], 0),
        };
        state.insert(*k, (list, rev));
    }
    let mut result = Vec::new();
    let mut writes: std::collections::BTreeMap<i64, Vec<Value>> = Default::default();
    for m in &ops {
        let k = m[1].as_i64().unwrap_or(0);
        let current = writes.get(&k).cloned().unwrap_or_else(|| state[&k].0.clone());
        if m[0] == "r" {
            result.push(json!(["r", k, current]));
        } else {
            let mut next = current;
            next.push(m[2].clone());
            writes.insert(k, next);
            result.push(m.clone());
        }
    }
    if writes.is_empty() {
        return Ok(Value::Array(result));
    }
    let compare = keys
        .iter()
        .map(|k| Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key(*k).into(),
            target_union: Some(TargetUnion::ModRevision(state[k].1)),
            range_end: Default::default(),
        })
        .collect();
    let puts = writes
        .iter()
        .map(|(k, list)| RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key(*k).into(),
                value: serde_json::to_vec(list).expect("serialise").into(),
                ..Default::default()
            })),
        })
        .collect();
    let r = kv.txn(TxnRequest { compare, success: puts, failure: vec![] }).await.map_err(|e| classify_write(&e))?;
    if r.into_inner().succeeded {
        Ok(Value::Array(result))
    } else {
        Err(CallError::Fail("a key changed since it was read".into()))
    }
}
