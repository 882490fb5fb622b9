//! The Cluster service: membership as etcd shows it.

use strake_proto::etcdserverpb::cluster_server::Cluster;
use strake_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::context::{Server, Shared};
use crate::errors::raft_status;

/// The Cluster service.
#[derive(Clone)]
pub struct ClusterService {
    server: Shared,
}

impl ClusterService {
    /// The service.
    pub fn new(server: Shared) -> ClusterService {
        ClusterService { server }
    }
}

/// The members as etcd lists them: voters and learners, with their attributes.
pub fn member_list(server: &Server) -> Vec<Member> {
    let (voters, nodes) = server.node.members();
    nodes
        .into_iter()
        .map(|(id, n)| Member {
            id,
            name: n.name,
            peer_ur_ls: n.peer_urls,
            client_ur_ls: n.client_urls,
            is_learner: !voters.contains(&id),
        })
        .collect()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(Status::unimplemented("MemberAdd is not implemented by strake yet"))
    }

    async fn member_remove(&self, _request: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Status::unimplemented("MemberRemove is not implemented by strake yet"))
    }

    async fn member_update(&self, _request: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::unimplemented("MemberUpdate is not implemented by strake yet"))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.server.node.read_barrier().await.map_err(|e| raft_status(&e))?;
        }
        Ok(Response::new(MemberListResponse { header: Some(self.server.header(0)), members: member_list(&self.server) }))
    }

    async fn member_promote(
        &self,
        _request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Status::unimplemented("MemberPromote is not implemented by strake yet"))
    }
}
