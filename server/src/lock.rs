//! The v3lock service: a distributed mutex held by a lease.

use strake_proto::etcdserverpb::{DeleteRangeRequest, ResponseHeader};
use strake_proto::strakepb::{write_request::Request as W, write_result::Result as R};
use strake_proto::v3lockpb::lock_server::Lock;
use strake_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use crate::context::Shared;
use crate::recipes;

/// The Lock service.
#[derive(Clone)]
pub struct LockService {
    server: Shared,
}

impl LockService {
    /// The service.
    pub fn new(server: Shared) -> LockService {
        LockService { server }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    /// Queues `name/<lease>` (create revision orders the queue) and returns once every
    /// older holder is gone, provided the lease still holds the key (etcd#11408).
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let req = request.into_inner();
        let (prefix, key) = recipes::owned_key(&req.name, req.lease);
        let (my_rev, _, _) = recipes::create_if_absent(&self.server, &key, Default::default(), req.lease).await?;
        let header = recipes::wait_deletes(&self.server, &prefix, my_rev - 1).await?;
        match recipes::current(&self.server, &key).await? {
            Some(kv) if kv.create_revision == my_rev => {}
            _ => return Err(Status::failed_precondition("etcdserver: requested lease not found")),
        }
        let mut header = Some(header);
        self.server.fill(&mut header);
        Ok(Response::new(LockResponse { header, key }))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let key = request.into_inner().key;
        let header = match self.server.propose(W::DeleteRange(DeleteRangeRequest { key, ..Default::default() })).await?
        {
            R::DeleteRange(r) => r.header,
            _ => return Err(Status::internal("unexpected apply result for unlock")),
        };
        let mut header: Option<ResponseHeader> = header;
        self.server.fill(&mut header);
        Ok(Response::new(UnlockResponse { header }))
    }
}
