//! Transactions: static validation (op limits, duplicate keys), compare evaluation,
//! and execution of the chosen branch, with etcd's semantics.
//!
//! Order of evaluation, as etcd: first every compare on the path (the top-level
//! compares, then those of nested txns in the chosen branch) is evaluated against the
//! state *before* the transaction; then every operation on the path is checked
//! (ranges against the retained history, puts against leases and `ignore_*`); only
//! then do the operations run, in order, each seeing the previous ones.

use std::collections::HashSet;

use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::request_op::Request;
use strake_proto::etcdserverpb::response_op::Response;
use strake_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse,
};
use strake_proto::mvccpb::KeyValue;

use crate::error::{Result, StoreError};
use crate::key_range::KeyRange;
use crate::range::VisibleSource;
use crate::view::{Detail, Prior};
use crate::write::WriteTxn;

/// Validates a Range request's shape (the API layer calls this before serving).
pub fn check_range(req: &RangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

/// Validates a Put request's shape.
pub fn check_put(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(StoreError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(StoreError::LeaseProvided);
    }
    Ok(())
}

/// Validates a DeleteRange request's shape.
pub fn check_delete(req: &DeleteRangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

/// Validates a Txn before it is proposed: at most `max_ops` compares and ops per
/// branch (a nested txn gets what its parent left), every compare and op
/// well-formed, and no key written twice on any path.
pub fn check_txn(req: &TxnRequest, max_ops: usize) -> Result<()> {
    check_txn_ops(req, max_ops)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

/// etcd's `checkTxnRequest`/`checkRequestOp`.
fn check_txn_ops(req: &TxnRequest, max_ops: usize) -> Result<()> {
    let used = req.compare.len().max(req.success.len()).max(req.failure.len());
    if used > max_ops {
        return Err(StoreError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(StoreError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => check_range(r)?,
            Some(Request::RequestPut(r)) => check_put(r)?,
            Some(Request::RequestDeleteRange(r)) => check_delete(r)?,
            Some(Request::RequestTxn(t)) => check_txn_ops(t, max_ops - used)?,
            // An empty op: etcd answers ErrGRPCKeyNotFound.
            None => return Err(StoreError::KeyNotFound),
        }
    }
    Ok(())
}

/// The keys put and ranges deleted by a list of ops (and their nested txns), failing
/// on overlaps as etcd's `checkIntervals` does: a put may not repeat a put or fall in
/// a delete; deletes may overlap each other; the two branches of a nested txn are
/// exclusive, so they may write the same key.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<KeyRange>)> {
    let mut dels: Vec<KeyRange> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(KeyRange::new(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let hits_delete = |dels: &[KeyRange], key: &[u8]| dels.iter().any(|d| d.contains(key));
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits_delete(&dels, k) {
                return Err(StoreError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || hits_delete(&dels, k) {
                return Err(StoreError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else { continue };
        let key = p.key.to_vec();
        if puts.contains(&key) || hits_delete(&dels, &key) {
            return Err(StoreError::DuplicateKey);
        }
        puts.insert(key);
    }
    Ok((puts, dels))
}

/// Evaluates one compare against `source` (etcd's `applyCompare`): every key in the
/// compare's range must satisfy it; a missing key compares as zeros, except that a
/// VALUE compare on a missing key is always false.
pub fn compare_holds(cmp: &Compare, source: &dyn VisibleSource) -> Result<bool> {
    let range = KeyRange::new(&cmp.key, &cmp.range_end);
    let target = CompareTarget::try_from(cmp.target).unwrap_or(CompareTarget::Version);
    match &range {
        // kube-apiserver's update compares one key's mod revision: no value needed.
        KeyRange::Single(key) if target != CompareTarget::Value => {
            return Ok(compare_kv(cmp, target, &source.key_without_value(key)?.unwrap_or_default()));
        }
        _ => {}
    }
    let mut any = false;
    let mut all = true;
    source.scan(&range, Detail::Full, &mut |v| {
        any = true;
        let kv = v.map(|v| v.to_key_value()).unwrap_or_default();
        if !compare_kv(cmp, target, &kv) {
            all = false;
            return None;
        }
        Some(Detail::Full)
    })?;
    if !any {
        return Ok(target != CompareTarget::Value && compare_kv(cmp, target, &KeyValue::default()));
    }
    Ok(all)
}

fn compare_kv(cmp: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    let int_operand = |want: fn(&TargetUnion) -> Option<i64>| cmp.target_union.as_ref().and_then(want).unwrap_or(0);
    let ordering = match target {
        CompareTarget::Value => {
            let operand = match &cmp.target_union {
                Some(TargetUnion::Value(v)) => v.as_ref(),
                _ => &[][..],
            };
            kv.value.as_ref().cmp(operand)
        }
        CompareTarget::Create => kv.create_revision.cmp(&int_operand(|t| match t {
            TargetUnion::CreateRevision(r) => Some(*r),
            _ => None,
        })),
        CompareTarget::Mod => kv.mod_revision.cmp(&int_operand(|t| match t {
            TargetUnion::ModRevision(r) => Some(*r),
            _ => None,
        })),
        CompareTarget::Version => kv.version.cmp(&int_operand(|t| match t {
            TargetUnion::Version(r) => Some(*r),
            _ => None,
        })),
        CompareTarget::Lease => kv.lease.cmp(&int_operand(|t| match t {
            TargetUnion::Lease(r) => Some(*r),
            _ => None,
        })),
    };
    match CompareResult::try_from(cmp.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

/// The branch taken at each txn on the path, in depth-first order.
struct TxnPath(Vec<bool>);

fn compute_path(req: &TxnRequest, source: &dyn VisibleSource, path: &mut Vec<bool>) -> Result<()> {
    let mut ok = true;
    for cmp in &req.compare {
        if !compare_holds(cmp, source)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    for op in branch(req, ok) {
        if let Some(Request::RequestTxn(t)) = &op.request {
            compute_path(t, source, path)?;
        }
    }
    Ok(())
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// Things a txn needs to know about the store beyond the keyspace.
pub trait TxnContext {
    /// Whether lease `id` exists.
    fn lease_exists(&self, id: i64) -> bool;
    /// The oldest revision still readable.
    fn compact_revision(&self) -> i64;
}

/// Whether any branch of the txn (nested ones included) reads at an explicit revision.
pub fn reads_history(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match &op.request {
        Some(Request::RequestRange(r)) => r.revision != 0,
        Some(Request::RequestTxn(n)) => reads_history(n),
        _ => false,
    })
}

/// Pre-checks every op on the path against the state before the txn.
fn check_path_ops(
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    txn: &WriteTxn<'_>,
    ctx: &dyn TxnContext,
) -> Result<()> {
    let ok = path[*at];
    *at += 1;
    for op in branch(req, ok) {
        match &op.request {
            Some(Request::RequestRange(r)) => {
                if r.revision > txn.base() {
                    return Err(StoreError::FutureRevision);
                }
                if r.revision > 0 && r.revision < ctx.compact_revision() {
                    return Err(StoreError::Compacted);
                }
            }
            Some(Request::RequestPut(p)) => check_put_preconditions(p, txn, ctx)?,
            Some(Request::RequestTxn(t)) => check_path_ops(t, path, at, txn, ctx)?,
            Some(Request::RequestDeleteRange(_)) | None => {}
        }
    }
    Ok(())
}

/// What a Put needs from the current state: its lease exists, and for `ignore_*`,
/// the key exists.
pub fn check_put_preconditions(p: &PutRequest, txn: &WriteTxn<'_>, ctx: &dyn TxnContext) -> Result<()> {
    if (p.ignore_value || p.ignore_lease) && txn.get(&p.key)?.is_none() {
        return Err(StoreError::KeyNotFound);
    }
    if p.lease != 0 && !ctx.lease_exists(p.lease) {
        return Err(StoreError::LeaseNotFound);
    }
    Ok(())
}

/// Runs a whole Txn request inside `txn`.
pub fn execute(req: &TxnRequest, txn: &mut WriteTxn<'_>, ctx: &dyn TxnContext) -> Result<TxnResponse> {
    let mut path = Vec::new();
    compute_path(req, txn, &mut path)?;
    check_path_ops(req, &path, &mut 0, txn, ctx)?;
    let mut resp = run_path(req, &TxnPath(path), &mut 0, txn)?;
    // etcd sets only the top-level header to the txn's final revision. Inner
    // responses keep what each op reported when it ran (a put `base + 1`; a delete or
    // range the txn's revision at that point); nested txns keep an empty header.
    resp.header = Some(ResponseHeader { revision: txn.read_revision(), ..Default::default() });
    Ok(resp)
}

fn run_path(req: &TxnRequest, path: &TxnPath, at: &mut usize, txn: &mut WriteTxn<'_>) -> Result<TxnResponse> {
    let succeeded = path.0[*at];
    *at += 1;
    let mut responses = Vec::with_capacity(branch(req, succeeded).len());
    for op in branch(req, succeeded) {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(txn.range(r)?)),
            Some(Request::RequestPut(p)) => Some(Response::ResponsePut(txn.put(p)?)),
            Some(Request::RequestDeleteRange(d)) => Some(Response::ResponseDeleteRange(txn.delete_range(d)?)),
            Some(Request::RequestTxn(t)) => Some(Response::ResponseTxn(run_path(t, path, at, txn)?)),
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse { header: Some(ResponseHeader::default()), succeeded, responses })
}

/// The versions a lease's revocation deletes, given as live versions (long values
/// not read, see [`WriteTxn::prior`]).
pub fn versions_to_revoke(keys: &[Vec<u8>], txn: &WriteTxn<'_>) -> Result<Vec<Prior>> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        if let Some(v) = txn.prior(k)? {
            out.push(v);
        }
    }
    Ok(out)
}
