//! The v3election service: leader election among campaigners holding leases.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use strake_proto::etcdserverpb::request_op::Request as Op;
use strake_proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use strake_proto::mvccpb::KeyValue;
use strake_proto::v3electionpb::election_server::Election;
use strake_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use strake_store::{prefix_end, KeyRange, SessionMessage, WatchSession, WatchSpec};
use tonic::{Request, Response, Status};

use crate::context::{Server, Shared};
use crate::recipes;

/// The Election service.
#[derive(Clone)]
pub struct ElectionService {
    server: Shared,
}

impl ElectionService {
    /// The service.
    pub fn new(server: Shared) -> ElectionService {
        ElectionService { server }
    }
}

fn not_leader() -> Status {
    Status::failed_precondition("election: not leader")
}

fn no_leader() -> Status {
    Status::failed_precondition("election: no leader")
}

fn leader_key(req: Option<LeaderKey>) -> Result<LeaderKey, Status> {
    req.ok_or_else(|| Status::invalid_argument("\"leader\" field must be provided"))
}

fn election_prefix(name: &[u8]) -> Bytes {
    let mut p = name.to_vec();
    p.push(b'/');
    p.into()
}

async fn proclaim(server: &Server, leader: &LeaderKey, value: Bytes) -> Result<(), Status> {
    let put = RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: leader.key.clone(),
            value,
            ignore_lease: true,
            ..Default::default()
        })),
    };
    let resp = recipes::txn(
        server,
        TxnRequest {
            compare: vec![recipes::create_revision_is(&leader.key, leader.rev)],
            success: vec![put],
            failure: vec![],
        },
    )
    .await?;
    if resp.succeeded {
        Ok(())
    } else {
        Err(not_leader())
    }
}

async fn current_leader(server: &Server, name: &[u8]) -> Result<Option<KeyValue>, Status> {
    let resp = server.range(&recipes::first_created(&election_prefix(name))).await?;
    Ok(resp.kvs.into_iter().next())
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let req = request.into_inner();
        let (prefix, key) = recipes::owned_key(&req.name, req.lease);
        let (rev, value, _) = recipes::create_if_absent(&self.server, &key, req.value.clone(), req.lease).await?;
        let leader = LeaderKey { name: req.name.clone(), key: key.clone(), rev, lease: req.lease };
        if value != req.value {
            proclaim(&self.server, &leader, req.value.clone()).await?;
        }
        let header = recipes::wait_deletes(&self.server, &prefix, rev - 1).await?;
        let mut header = Some(header);
        self.server.fill(&mut header);
        Ok(Response::new(CampaignResponse { header, leader: Some(leader) }))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let req = request.into_inner();
        let leader = leader_key(req.leader)?;
        proclaim(&self.server, &leader, req.value).await?;
        Ok(Response::new(ProclaimResponse { header: Some(self.server.header(0)) }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let name = request.into_inner().name;
        let kv = current_leader(&self.server, &name).await?.ok_or_else(no_leader)?;
        Ok(Response::new(LeaderResponse { header: Some(self.server.header(0)), kv: Some(kv) }))
    }

    type ObserveStream = ObserveStream;

    /// Streams the election's leader value every time it changes.
    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let name = request.into_inner().name;
        let server = self.server.clone();
        let stream = async_stream::try_stream! {
            let prefix = election_prefix(&name);
            let mut last: Option<KeyValue> = None;
            loop {
                let resp = server.range(&recipes::first_created(&prefix)).await?;
                let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                let leader = resp.kvs.into_iter().next();
                if let Some(kv) = &leader {
                    if last.as_ref() != Some(kv) {
                        yield LeaderResponse { header: Some(server.header(rev)), kv: Some(kv.clone()) };
                    }
                }
                last = leader;
                // Wait for any change under the prefix after `rev`, then look again.
                let mut session = WatchSession::new(server.store.clone());
                let spec = WatchSpec {
                    range: KeyRange::new(&prefix, &prefix_end(&prefix)),
                    start_revision: rev + 1,
                    prev_kv: false,
                    no_put: false,
                    no_delete: false,
                    progress_notify: false,
                };
                session.create(0, spec).map_err(|e| Status::internal(e.to_string()))?;
                loop {
                    if let SessionMessage::Events { .. } | SessionMessage::Compacted { .. } = session.next().await {
                        break;
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let leader = leader_key(request.into_inner().leader)?;
        let resp = recipes::delete_if_owned(&self.server, &leader.key, leader.rev).await?;
        let mut header = resp.header;
        self.server.fill(&mut header);
        Ok(Response::new(ResignResponse { header }))
    }
}
