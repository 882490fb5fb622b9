//! Register workload: each key is an independent register; processes read, write
//! and compare-and-set small integers. Checked per key against `etcd-register`.

use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::kv_client::KvClient;
use strake_proto::etcdserverpb::request_op::Request;
use strake_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;

use crate::client::{classify_read, classify_write, CallError};

/// Keys of the register workload.
pub const KEYS: u64 = 8;
/// Distinct values written.
pub const VALUES: i64 = 100;

fn key(k: u64) -> Vec<u8> {
    format!("/jepsen/register/{k}").into_bytes()
}

/// A random operation: (f, key, value).
pub fn generate() -> (String, Value, Value) {
    let mut rng = rand::rng();
    let k = rng.random_range(0..KEYS);
    // Values span VALUES so that an unknown write explains few stale reads; CAS
    // compares against a small range so some of them succeed.
    match rng.random_range(0..10) {
        0..=3 => ("read".into(), json!(k), Value::Null),
        4..=6 => ("write".into(), json!(k), json!(rng.random_range(0..VALUES))),
        _ => ("cas".into(), json!(k), json!([rng.random_range(0..5), rng.random_range(0..VALUES)])),
    }
}

/// Runs one operation; `Ok(value)` is the completion's value.
pub async fn invoke(
    kv: &mut KvClient<Channel>,
    f: &str,
    k: &Value,
    v: &Value,
    _timeout: Duration,
) -> Result<Value, CallError> {
    let k = key(k.as_u64().unwrap_or(0));
    match f {
        "read" => {
            let r =
                kv.range(RangeRequest { key: k.into(), ..Default::default() }).await.map_err(|e| classify_read(&e))?;
            let kvs = r.into_inner().kvs;
            Ok(match kvs.first() {
                Some(kv) => std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .map_or(Value::Null, Value::from),
                None => Value::Null,
            })
        }
        "write" => {
            kv.put(PutRequest { key: k.into(), value: v.to_string().into(), ..Default::default() })
                .await
                .map_err(|e| classify_write(&e))?;
            Ok(v.clone())
        }
        "cas" => {
            let (from, to) = (v[0].clone(), v[1].clone());
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Value as i32,
                    key: k.clone().into(),
                    target_union: Some(TargetUnion::Value(from.to_string().into())),
                    range_end: Default::default(),
                }],
                success: vec![RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: k.into(),
                        value: to.to_string().into(),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            };
            // Only "the compare failed" is a definite, informative failure of a CAS
            // (the model reads it as "the value was not `from`"); any other error is
            // recorded as unknown, never as a compare failure.
            let r = kv.txn(txn).await.map_err(|e| match classify_write(&e) {
                CallError::Fail(m) => CallError::Info(m),
                info => info,
            })?;
            if r.into_inner().succeeded {
                Ok(v.clone())
            } else {
                Err(CallError::Fail("compare failed".into()))
            }
        }
        other => Err(CallError::Fail(format!("unknown function {other}"))),
    }
}
