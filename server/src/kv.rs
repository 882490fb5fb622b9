//! The KV service: Range, RangeStream, Put, DeleteRange, Txn, Compact.

use std::pin::Pin;

use futures::Stream;
use prost::Message;
use strake_proto::etcdserverpb::kv_server::Kv;
use strake_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
};
use strake_proto::strakepb::{write_request::Request as W, write_result::Result as R};
use strake_store::{txn, StoreError};
use tonic::{Request, Response, Status};

use crate::context::Shared;
use crate::errors::{server_status, store_status, ServerError};

/// KV service over a member.
#[derive(Clone)]
pub struct KvService {
    server: Shared,
}

impl KvService {
    /// The service.
    pub fn new(server: Shared) -> KvService {
        KvService { server }
    }
}

fn unexpected(what: &str) -> Status {
    Status::internal(format!("unexpected apply result for {what}"))
}

/// Keys per RangeStream chunk.
pub const RANGE_STREAM_CHUNK_KEYS: i64 = 1000;

type RangeStream = Pin<Box<dyn Stream<Item = Result<RangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = request.into_inner();
        txn::check_range(&req).map_err(|e| store_status(&e))?;
        Ok(Response::new(self.server.range(&req).await?))
    }

    type RangeStreamStream = RangeStream;

    /// Streams a range in chunks of [`RANGE_STREAM_CHUNK_KEYS`] at one pinned revision;
    /// `more` and `count` come with the last chunk (etcd 3.7). Sorting and revision
    /// filters are refused with Unimplemented, as etcd does.
    async fn range_stream(&self, request: Request<RangeRequest>) -> Result<Response<Self::RangeStreamStream>, Status> {
        let req = request.into_inner();
        txn::check_range(&req).map_err(|e| store_status(&e))?;
        if req.sort_order != 0
            || req.sort_target != 0
            || req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0
        {
            return Err(Status::unimplemented("etcdserver: RangeStream does not support sorting or revision filters"));
        }
        // The first chunk pins the revision (and pays the linearizable barrier).
        let mut first = req.clone();
        first.limit = if req.limit > 0 { req.limit.min(RANGE_STREAM_CHUNK_KEYS) } else { RANGE_STREAM_CHUNK_KEYS };
        let head = self.server.range(&first).await?;
        let server = self.server.clone();
        let stream = async_stream::try_stream! {
            // Later chunks read at the revision of the first: the one asked for, or the
            // revision current when the stream started.
            let revision = if req.revision > 0 { req.revision } else { head.header.as_ref().map_or(0, |h| h.revision) };
            let total = head.count;
            let mut sent = head.kvs.len() as i64;
            let mut more = head.more;
            let mut last_key = head.kvs.last().map(|kv| kv.key.clone());
            let mut chunk = head;
            loop {
                let want_more = more && (req.limit <= 0 || sent < req.limit);
                if !want_more || last_key.is_none() {
                    chunk.count = total;
                    chunk.more = more && req.limit > 0 && sent >= req.limit;
                    server.fill(&mut chunk.header);
                    yield RangeStreamResponse { range_response: Some(chunk) };
                    break;
                }
                let header = chunk.header.take();
                let kvs = std::mem::take(&mut chunk.kvs);
                let _ = header;
                yield RangeStreamResponse { range_response: Some(RangeResponse { kvs, ..Default::default() }) };
                let mut next_req = req.clone();
                let mut start = last_key.clone().unwrap_or_default().to_vec();
                start.push(0);
                next_req.key = start.into();
                next_req.revision = revision;
                next_req.serializable = true;
                let remaining = if req.limit > 0 { req.limit - sent } else { i64::MAX };
                next_req.limit = remaining.min(RANGE_STREAM_CHUNK_KEYS);
                let next = server.range(&next_req).await?;
                sent += next.kvs.len() as i64;
                more = next.more;
                last_key = next.kvs.last().map(|kv| kv.key.clone());
                chunk = next;
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        txn::check_put(&req).map_err(|e| store_status(&e))?;
        match self.server.propose(W::Put(req)).await? {
            R::Put(mut resp) => {
                self.server.fill(&mut resp.header);
                self.server.metrics.put_total.inc();
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("put")),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = request.into_inner();
        txn::check_delete(&req).map_err(|e| store_status(&e))?;
        match self.server.propose(W::DeleteRange(req)).await? {
            R::DeleteRange(mut resp) => {
                self.server.fill(&mut resp.header);
                self.server.metrics.delete_total.inc();
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("delete")),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = request.into_inner();
        if req.encoded_len() > self.server.limits.max_request_bytes {
            return Err(server_status(&ServerError::RequestTooLarge));
        }
        txn::check_txn(&req, self.server.limits.max_txn_ops).map_err(|e| store_status(&e))?;
        let mut resp = if is_read_only(&req) {
            self.read_only_txn(req).await?
        } else {
            match self.server.propose(W::Txn(req)).await? {
                R::Txn(resp) => resp,
                _ => return Err(unexpected("txn")),
            }
        };
        fill_txn(&self.server, &mut resp);
        self.server.metrics.txn_total.inc();
        Ok(Response::new(resp))
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let req = request.into_inner();
        let physical = req.physical;
        let revision = req.revision;
        match self.server.propose(W::Compaction(req)).await? {
            R::Compaction(mut resp) => {
                if physical {
                    self.server.store.wait_compacted(revision).await;
                }
                self.server.fill(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("compaction")),
        }
    }
}

impl KvService {
    /// A txn whose every branch only reads is served like a Range (no log entry):
    /// linearizable barrier, then evaluation on local state.
    async fn read_only_txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        self.server.node.read_barrier().await.map_err(|e| crate::errors::raft_status(&e))?;
        let store = self.server.store.clone();
        crate::context::run_blocking(move || store.read_txn(&req)).await?.map_err(|e: StoreError| store_status(&e))
    }
}

/// Whether no op of the txn (in any branch, recursively) writes.
pub fn is_read_only(req: &TxnRequest) -> bool {
    use strake_proto::etcdserverpb::request_op::Request;
    req.success.iter().chain(&req.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) | None => true,
        Some(Request::RequestTxn(t)) => is_read_only(t),
        Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
    })
}

/// etcd fills the identity fields of the top-level header only; nested responses keep
/// what the store produced.
fn fill_txn(server: &crate::context::Server, resp: &mut TxnResponse) {
    server.fill(&mut resp.header);
}
