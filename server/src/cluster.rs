//! The Cluster service: membership as etcd shows and changes it.

use strake_proto::etcdserverpb::cluster_server::Cluster;
use strake_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use strake_raft::{MemberNode, MembershipChange};
use tonic::{Request, Response, Status};

use crate::context::{unix_ms, Server, Shared};
use crate::errors::raft_status;
use crate::ids;

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

    async fn change(&self, change: MembershipChange) -> Result<(), Status> {
        self.server.node.change_membership(change).await.map_err(|e| raft_status(&e))
    }
}

fn to_member(id: u64, n: MemberNode, voter: bool) -> Member {
    Member { id, name: n.name, peer_ur_ls: n.peer_urls, client_ur_ls: n.client_urls, is_learner: !voter }
}

/// The members as etcd lists them: voters and learners, with their attributes.
pub fn member_list(server: &Server) -> Vec<Member> {
    let view = server.node.membership_view();
    view.nodes.into_iter().map(|(id, n)| to_member(id, n, view.voters.contains(&id))).collect()
}

fn check_urls(urls: &[String]) -> Result<(), Status> {
    if urls.is_empty() {
        return Err(Status::invalid_argument("etcdserver: member peer URLs are not provided"));
    }
    for u in urls {
        url::Url::parse(u).map_err(|e| Status::invalid_argument(format!("etcdserver: invalid peer URL {u:?}: {e}")))?;
    }
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let req = request.into_inner();
        check_urls(&req.peer_ur_ls)?;
        let token = format!("{:x}", self.server.identity.cluster_id);
        let id = ids::member_id(&req.peer_ur_ls, &token, Some(unix_ms() as u64));
        let node = MemberNode { name: String::new(), peer_urls: req.peer_ur_ls.clone(), client_urls: vec![] };
        let change = if req.is_learner {
            MembershipChange::AddLearner { id, node: node.clone() }
        } else {
            MembershipChange::AddVoter { id, node: node.clone() }
        };
        self.change(change).await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.server.header(0)),
            member: Some(to_member(id, node, !req.is_learner)),
            members: member_list(&self.server),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.change(MembershipChange::Remove { id: request.into_inner().id }).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.server.header(0)),
            members: member_list(&self.server),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        check_urls(&req.peer_ur_ls)?;
        let view = self.server.node.membership_view();
        let mut node = view
            .nodes
            .get(&req.id)
            .cloned()
            .ok_or_else(|| Status::not_found(strake_raft::membership::messages::MEMBER_NOT_FOUND))?;
        node.peer_urls = req.peer_ur_ls;
        self.change(MembershipChange::UpdateNode { id: req.id, node }).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.server.header(0)),
            members: member_list(&self.server),
        }))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.server.node.read_barrier().await.map_err(|e| raft_status(&e))?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(self.server.header(0)),
            members: member_list(&self.server),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.change(MembershipChange::Promote { id: request.into_inner().id }).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.server.header(0)),
            members: member_list(&self.server),
        }))
    }
}
