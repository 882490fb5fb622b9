//! The client recipes etcd runs server-side for the Lock and Election services:
//! create-if-absent under a prefix with a lease, and waiting for every older key
//! under the prefix to be deleted (the queue order is the keys' create revisions).

use bytes::Bytes;
use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use strake_proto::etcdserverpb::request_op::Request as Op;
use strake_proto::etcdserverpb::response_op::Response as OpResp;
use strake_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use strake_proto::mvccpb::{event::EventType, KeyValue};
use strake_proto::strakepb::{write_request::Request as W, write_result::Result as R};
use strake_store::{prefix_end, KeyRange, SessionMessage, WatchSession, WatchSpec};
use tonic::Status;

use crate::context::Server;

/// The key a lease owns under `prefix` (etcd: prefix + "/" + lease in hex).
pub fn owned_key(name: &[u8], lease: i64) -> (Bytes, Bytes) {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    let mut key = prefix.clone();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    (Bytes::from(prefix), Bytes::from(key))
}

/// Runs a txn through Raft.
pub async fn txn(server: &Server, req: TxnRequest) -> Result<TxnResponse, Status> {
    match server.propose(W::Txn(req)).await? {
        R::Txn(resp) => Ok(resp),
        _ => Err(Status::internal("unexpected apply result for txn")),
    }
}

/// A compare of `key`'s create revision with `rev`.
pub fn create_revision_is(key: &Bytes, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.clone(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        range_end: Bytes::new(),
    }
}

fn get(key: &Bytes) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(RangeRequest { key: key.clone(), ..Default::default() })) }
}

/// The oldest key (lowest create revision) under `prefix`, as a RangeRequest.
pub fn first_created(prefix: &Bytes) -> RangeRequest {
    RangeRequest {
        key: prefix.clone(),
        range_end: prefix_end(prefix).into(),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// Creates `key` with `value` and `lease` unless it exists. Returns the key's create
/// revision, its current value, and the txn header.
pub async fn create_if_absent(
    server: &Server,
    key: &Bytes,
    value: Bytes,
    lease: i64,
) -> Result<(i64, Bytes, ResponseHeader), Status> {
    let put = RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.clone(),
            value: value.clone(),
            lease,
            ..Default::default()
        })),
    };
    let resp = txn(
        server,
        TxnRequest { compare: vec![create_revision_is(key, 0)], success: vec![put], failure: vec![get(key)] },
    )
    .await?;
    let header = resp.header.unwrap_or_default();
    if resp.succeeded {
        return Ok((header.revision, value, header));
    }
    match resp.responses.first().and_then(|r| r.response.as_ref()) {
        Some(OpResp::ResponseRange(r)) if !r.kvs.is_empty() => {
            Ok((r.kvs[0].create_revision, r.kvs[0].value.clone(), header))
        }
        _ => Err(Status::internal("create-if-absent: key vanished")),
    }
}

/// Waits until no key under `prefix` has a create revision at or below `max_rev`.
pub async fn wait_deletes(server: &Server, prefix: &Bytes, max_rev: i64) -> Result<ResponseHeader, Status> {
    loop {
        let req = RangeRequest {
            key: prefix.clone(),
            range_end: prefix_end(prefix).into(),
            limit: 1,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            max_create_revision: max_rev,
            ..Default::default()
        };
        let resp = server.range(&req).await?;
        let header = resp.header.unwrap_or_default();
        let Some(last) = resp.kvs.first() else { return Ok(header) };
        wait_delete(server, &last.key, header.revision + 1).await?;
    }
}

/// Waits for a DELETE event of `key` at or after revision `from`.
pub async fn wait_delete(server: &Server, key: &Bytes, from: i64) -> Result<(), Status> {
    let mut session = WatchSession::new(server.store.clone());
    let spec = WatchSpec {
        range: KeyRange::new(key, &[]),
        start_revision: from,
        prev_kv: false,
        no_put: true,
        no_delete: false,
        progress_notify: false,
    };
    session.create(0, spec).map_err(|e| Status::internal(e.to_string()))?;
    loop {
        match session.next().await {
            SessionMessage::Events { events, .. } if events.iter().any(|e| e.r#type == EventType::Delete as i32) => {
                return Ok(());
            }
            SessionMessage::Compacted { .. } => {
                // History is gone; look again at the present state.
                return Ok(());
            }
            _ => {}
        }
    }
}

/// Deletes `key` if its create revision is still `rev`.
pub async fn delete_if_owned(server: &Server, key: &Bytes, rev: i64) -> Result<TxnResponse, Status> {
    let del = RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: key.clone(), ..Default::default() })),
    };
    txn(server, TxnRequest { compare: vec![create_revision_is(key, rev)], success: vec![del], failure: vec![] }).await
}

/// The current value of `key`, if it exists (linearizable).
pub async fn current(server: &Server, key: &Bytes) -> Result<Option<KeyValue>, Status> {
    let resp = server.range(&RangeRequest { key: key.clone(), ..Default::default() }).await?;
    Ok(resp.kvs.into_iter().next())
}
