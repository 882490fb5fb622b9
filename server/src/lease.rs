//! The Lease service: grant, revoke, keep-alive stream, time-to-live, list.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use strake_proto::etcdserverpb::lease_server::Lease;
use strake_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use strake_proto::strakepb::{write_request::Request as W, write_result::Result as R};
use strake_store::{StoreError, MAX_LEASE_TTL_SECONDS};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::context::Shared;
use crate::errors::{raft_status, store_status};

/// The Lease service.
#[derive(Clone)]
pub struct LeaseService {
    server: Shared,
}

impl LeaseService {
    /// The service.
    pub fn new(server: Shared) -> LeaseService {
        LeaseService { server }
    }
}

/// A fresh lease ID: positive, random (IDs are chosen before proposing, so every
/// member applies the same one).
fn new_lease_id() -> i64 {
    loop {
        let id = (rand::random::<u64>() >> 1) as i64;
        if id != 0 {
            return id;
        }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL_SECONDS {
            return Err(store_status(&StoreError::LeaseTtlTooLarge));
        }
        req.ttl = req.ttl.max(self.server.limits.min_lease_ttl_seconds);
        let chosen = req.id != 0;
        loop {
            if !chosen {
                req.id = new_lease_id();
            }
            match self.server.propose(W::LeaseGrant(req)).await {
                Ok(R::LeaseGrant(mut resp)) => {
                    self.server.fill(&mut resp.header);
                    return Ok(Response::new(resp));
                }
                Ok(_) => return Err(Status::internal("unexpected apply result for lease grant")),
                // A random ID collided with an existing lease: pick another.
                Err(s) if !chosen && s.message() == StoreError::LeaseExists.to_string() => continue,
                Err(s) => return Err(s),
            }
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        match self.server.propose(W::LeaseRevoke(request.into_inner())).await? {
            R::LeaseRevoke(mut resp) => {
                self.server.fill(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal("unexpected apply result for lease revoke")),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let server = self.server.clone();
        tokio::spawn(async move {
            while let Some(req) = requests.next().await {
                let req = match req {
                    Ok(r) => r,
                    Err(_) => return,
                };
                let resp = match server.node.lease_keep_alive(req.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse { header: Some(server.header(0)), id: req.id, ttl }),
                    Err(e) => Err(raft_status(&e)),
                };
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let (ttl, granted_ttl) = self.server.node.lease_time_to_live(req.id).await.map_err(|e| raft_status(&e))?;
        if ttl == -1 {
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header: Some(self.server.header(0)),
                id: req.id,
                ttl: -1,
                ..Default::default()
            }));
        }
        let keys = if req.keys {
            self.server.store.lease_keys(req.id).map_err(|e| store_status(&e))?.into_iter().map(Into::into).collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(LeaseTimeToLiveResponse {
            header: Some(self.server.header(0)),
            id: req.id,
            ttl,
            granted_ttl,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self.server.store.leases().into_iter().map(|l| LeaseStatus { id: l.id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: Some(self.server.header(0)), leases }))
    }
}
