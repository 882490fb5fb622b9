//! The workloads, one operation at a time, in the spirit of etcd's tools/benchmark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};
use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::request_op::Request as Op;
use strake_proto::etcdserverpb::response_op::Response as OpResp;
use strake_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};

use crate::client::Pool;
use crate::unary::KvConn;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Put random keys.
    Put,
    /// Put sequential keys.
    PutSeq,
    /// Linearizable single-key Range over preloaded keys.
    RangeLinear,
    /// Serializable single-key Range over preloaded keys.
    RangeSerial,
    /// kube-apiserver's update: Txn(mod_revision == cached ? Put : Get).
    TxnCas,
    /// Txn with a compare, two puts and a range.
    TxnMixed,
    /// Delete preloaded keys.
    Delete,
    /// W watchers on a prefix, one writer at --rate: put-sent → event-received latency.
    WatchLatency,
    /// W watchers on one hot key, one writer at --rate.
    WatchFanout,
    /// Lease grant, keep-alive, revoke.
    Lease,
    /// A Kubernetes-like mix: paged prefix lists, CAS updates, creates, gets, watches.
    K8sMix,
}

impl Workload {
    /// The command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::PutSeq => "put-seq",
            Workload::RangeLinear => "range-linear",
            Workload::RangeSerial => "range-serial",
            Workload::TxnCas => "txn-cas",
            Workload::TxnMixed => "txn-mixed",
            Workload::Delete => "delete",
            Workload::WatchLatency => "watch-latency",
            Workload::WatchFanout => "watch-fanout",
            Workload::Lease => "lease",
            Workload::K8sMix => "k8s-mix",
        }
    }

    /// Whether the watchers (not the clients) are measured.
    pub fn is_watch(&self) -> bool {
        matches!(self, Workload::WatchLatency | Workload::WatchFanout)
    }

    /// Whether keys must exist before measuring.
    pub fn needs_preload(&self) -> bool {
        matches!(
            self,
            Workload::RangeLinear | Workload::RangeSerial | Workload::TxnCas | Workload::Delete | Workload::K8sMix
        )
    }
}

/// Sizes and shapes of keys and values.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// Bytes per key (keys are zero-padded decimal numbers with a prefix).
    pub key_size: usize,
    /// Bytes per value.
    pub val_size: usize,
    /// Number of distinct keys.
    pub key_space: u64,
}

impl KeySpec {
    /// Key number `n`, `key_size` bytes long (at least the digits).
    pub fn key(&self, n: u64) -> Vec<u8> {
        let digits = format!("{n}");
        let width = self.key_size.max(digits.len() + 1);
        let mut k = vec![b'k'];
        k.extend(std::iter::repeat_n(b'0', width - 1 - digits.len()));
        k.extend_from_slice(digits.as_bytes());
        k
    }

    /// A value of `val_size` bytes.
    pub fn value(&self) -> Vec<u8> {
        vec![b'v'; self.val_size]
    }
}

/// The prefix of the Kubernetes-like keyspace.
pub const K8S_PREFIX: &str = "/registry/";
/// Resources of the Kubernetes-like mix.
pub const K8S_RESOURCES: [&str; 4] = ["pods", "configmaps", "services/specs", "leases"];

/// Key of object `n` of resource `r` in the Kubernetes-like mix.
pub fn k8s_key(r: usize, n: u64) -> Vec<u8> {
    format!("{K8S_PREFIX}{}/default/obj-{n:08}", K8S_RESOURCES[r % K8S_RESOURCES.len()]).into_bytes()
}

/// The range end of a prefix.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest { key: key.into(), value: value.into(), ..Default::default() })),
    }
}

fn get_op(key: Vec<u8>) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(RangeRequest { key: key.into(), ..Default::default() })) }
}

fn mod_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.to_vec().into(),
        target_union: Some(TargetUnion::ModRevision(rev)),
        range_end: Default::default(),
    }
}

/// Per-client state kept between operations.
#[derive(Debug, Default)]
pub struct ClientState {
    /// Cached mod revisions of keys this client updates (CAS workloads).
    pub mod_revs: std::collections::HashMap<Vec<u8>, i64>,
    /// Leases granted and not yet revoked.
    pub leases: Vec<i64>,
    /// Step of a multi-RPC cycle.
    pub step: u64,
}

/// Shared sequence for sequential keys and deletes.
#[derive(Debug, Default)]
pub struct Counters {
    /// Next sequential key.
    pub next_key: AtomicU64,
    /// Next object to create in the Kubernetes-like mix.
    pub next_object: AtomicU64,
}

/// A uniform random number in `0..n` (the thread RNG is not held across awaits).
fn below(n: u64) -> u64 {
    rand::rng().random_range(0..n.max(1))
}

/// One operation of `workload` by client `client`.
// The runner's hot loop passes each piece it owns by reference; a struct of them
// would only be rebuilt per call.
#[allow(clippy::too_many_arguments)]
pub async fn run_op(
    workload: Workload,
    client: usize,
    clients: usize,
    kv: &mut KvConn,
    pool: &Pool,
    spec: &KeySpec,
    state: &mut ClientState,
    counters: &Arc<Counters>,
) -> Result<(), tonic::Status> {
    match workload {
        Workload::Put => {
            let k = spec.key(below(spec.key_space));
            kv.put(PutRequest { key: k.into(), value: spec.value().into(), ..Default::default() }).await?;
        }
        Workload::PutSeq => {
            let n = counters.next_key.fetch_add(1, Ordering::Relaxed) % spec.key_space;
            kv.put(PutRequest { key: spec.key(n).into(), value: spec.value().into(), ..Default::default() }).await?;
        }
        Workload::RangeLinear | Workload::RangeSerial => {
            let k = spec.key(below(spec.key_space));
            let serializable = workload == Workload::RangeSerial;
            kv.range(RangeRequest { key: k.into(), serializable, ..Default::default() }).await?;
        }
        Workload::TxnCas => {
            // Each client owns the keys congruent to its number: updates rarely conflict,
            // as with kube-apiserver objects.
            let per_client = (spec.key_space / clients as u64).max(1);
            let n = (below(per_client) * clients as u64 + client as u64) % spec.key_space;
            cas_update(kv, spec.key(n), spec.value(), state).await?;
        }
        Workload::TxnMixed => {
            let a = spec.key(below(spec.key_space));
            let b = spec.key(below(spec.key_space));
            let c = spec.key(below(spec.key_space));
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Greater as i32,
                    target: CompareTarget::Version as i32,
                    key: a.clone().into(),
                    target_union: Some(TargetUnion::Version(-1)),
                    range_end: Default::default(),
                }],
                success: if a == b {
                    vec![put_op(a, spec.value()), get_op(c)]
                } else {
                    vec![put_op(a, spec.value()), put_op(b, spec.value()), get_op(c)]
                },
                failure: vec![],
            };
            kv.txn(txn).await?;
        }
        Workload::Delete => {
            let n = counters.next_key.fetch_add(1, Ordering::Relaxed);
            kv.delete_range(DeleteRangeRequest { key: spec.key(n % spec.key_space).into(), ..Default::default() })
                .await?;
        }
        Workload::Lease => {
            let mut lease = pool.lease(client);
            match state.step % 3 {
                0 => {
                    let r = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await?.into_inner();
                    state.leases.push(r.id);
                }
                1 => {
                    let id = *state.leases.last().unwrap_or(&0);
                    let mut stream = lease
                        .lease_keep_alive(tokio_stream::iter(vec![LeaseKeepAliveRequest { id }]))
                        .await?
                        .into_inner();
                    stream.message().await?;
                }
                _ => {
                    if let Some(id) = state.leases.pop() {
                        lease.lease_revoke(LeaseRevokeRequest { id }).await?;
                    }
                }
            }
            state.step += 1;
        }
        Workload::K8sMix => k8s_op(kv, client, spec, state, counters).await?,
        Workload::WatchLatency | Workload::WatchFanout => unreachable!("watch workloads are driven by the runner"),
    }
    Ok(())
}

/// kube-apiserver's optimistic update of one object.
async fn cas_update(
    kv: &mut KvConn,
    key: Vec<u8>,
    value: Vec<u8>,
    state: &mut ClientState,
) -> Result<(), tonic::Status> {
    let rev = match state.mod_revs.get(&key) {
        Some(r) => *r,
        None => {
            let r = kv.range(RangeRequest { key: key.clone().into(), ..Default::default() }).await?.into_inner();
            r.kvs.first().map_or(0, |kv| kv.mod_revision)
        }
    };
    let resp = kv
        .txn(TxnRequest {
            compare: vec![mod_is(&key, rev)],
            success: vec![put_op(key.clone(), value)],
            failure: vec![get_op(key.clone())],
        })
        .await?
        .into_inner();
    let new_rev = if resp.succeeded {
        resp.header.map_or(0, |h| h.revision)
    } else {
        match resp.responses.first().and_then(|r| r.response.as_ref()) {
            Some(OpResp::ResponseRange(r)) => r.kvs.first().map_or(0, |kv| kv.mod_revision),
            _ => 0,
        }
    };
    state.mod_revs.insert(key, new_rev);
    Ok(())
}

/// Objects per resource preloaded for the Kubernetes-like mix.
pub fn k8s_objects(spec: &KeySpec) -> u64 {
    (spec.key_space / K8S_RESOURCES.len() as u64).max(1)
}

async fn k8s_op(
    kv: &mut KvConn,
    client: usize,
    spec: &KeySpec,
    state: &mut ClientState,
    counters: &Arc<Counters>,
) -> Result<(), tonic::Status> {
    let r = below(K8S_RESOURCES.len() as u64) as usize;
    let objects = k8s_objects(spec);
    let dice = below(100);
    if dice < 5 {
        // A paged list: one page of 500 with the count, as the apiserver pages.
        let prefix = format!("{K8S_PREFIX}{}/", K8S_RESOURCES[r]).into_bytes();
        let start = k8s_key(r, below(objects));
        kv.range(RangeRequest {
            key: start.into(),
            range_end: prefix_end(&prefix).into(),
            limit: 500,
            ..Default::default()
        })
        .await?;
    } else if dice < 65 {
        let n = below(objects);
        cas_update(kv, k8s_key(r, n), spec.value(), state).await?;
    } else if dice < 80 {
        let n = objects + counters.next_object.fetch_add(1, Ordering::Relaxed) * 7 + client as u64;
        let key = k8s_key(r, n);
        kv.txn(TxnRequest {
            compare: vec![mod_is(&key, 0)],
            success: vec![put_op(key, spec.value())],
            failure: vec![],
        })
        .await?;
    } else {
        let n = below(objects);
        kv.range(RangeRequest { key: k8s_key(r, n).into(), ..Default::default() }).await?;
    }
    Ok(())
}
