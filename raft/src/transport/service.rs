//! The `RaftPeer` gRPC service: what a member answers to its peers.

use std::sync::Arc;
use std::time::Instant;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{Snapshot, SnapshotMeta};
use strake_proto::strakepb::raft_peer_server::{RaftPeer, RaftPeerServer};
use strake_proto::strakepb::{
    self, snapshot_chunk, ForwardBatchRequest, ForwardBatchResponse, ForwardOutcome, JsonMessage,
    LeaseKeepAliveForward, MemberInfoRequest, MemberInfoResponse, ReadIndexRequest, ReadIndexResponse, SnapshotChunk,
    TakeLeadershipRequest, TakeLeadershipResponse, WriteRequest, WriteResult,
};
use tonic::{Request, Response, Status, Streaming};

use super::snapshot::{sync_dir_files, write_chunk};
use super::MAX_PEER_MESSAGE_BYTES;
use crate::codec;
use crate::error::RaftError;
use crate::membership::MembershipChange;
use crate::node::RaftNode;
use crate::types::{CheckpointDir, MemberNode, SnapshotData, Vote};

/// Serves the peer protocol for one node.
#[derive(Clone, Debug)]
pub struct PeerService {
    node: RaftNode,
    name: String,
}

impl PeerService {
    /// The tonic service for `node`, whose member name is `name`.
    pub fn server(node: RaftNode, name: String) -> RaftPeerServer<PeerService> {
        RaftPeerServer::new(PeerService { node, name })
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
    }
}

fn json<T: serde::Serialize>(v: &T) -> Response<JsonMessage> {
    Response::new(JsonMessage { json: serde_json::to_vec(v).expect("serialise").into() })
}

fn bad_request(what: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("malformed {what}: {e}"))
}

fn raft_status(e: RaftError) -> Status {
    match e {
        RaftError::Timeout => Status::deadline_exceeded(e.to_string()),
        RaftError::Membership(_) => Status::failed_precondition(e.to_string()),
        RaftError::Stopped => Status::unavailable(e.to_string()),
        _ => Status::failed_precondition(e.to_string()),
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<strakepb::AppendEntriesRequest>,
    ) -> Result<Response<JsonMessage>, Status> {
        let r = request.into_inner();
        let entries = r
            .entries
            .iter()
            .map(|b| codec::decode_entry(b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_request("entry", e))?;
        let rpc = AppendEntriesRequest {
            vote: serde_json::from_slice(&r.vote_json).map_err(|e| bad_request("vote", e))?,
            prev_log_id: serde_json::from_slice(&r.prev_log_id_json).map_err(|e| bad_request("prev_log_id", e))?,
            leader_commit: serde_json::from_slice(&r.leader_commit_json)
                .map_err(|e| bad_request("leader_commit", e))?,
            entries,
        };
        Ok(json(&self.node.raft().append_entries(rpc).await))
    }

    async fn vote(&self, request: Request<JsonMessage>) -> Result<Response<JsonMessage>, Status> {
        let rpc: VoteRequest<u64> =
            serde_json::from_slice(&request.into_inner().json).map_err(|e| bad_request("vote request", e))?;
        Ok(json(&self.node.raft().vote(rpc).await))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<JsonMessage>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(SnapshotChunk { chunk: Some(snapshot_chunk::Chunk::Header(h)) }) => h,
            _ => return Err(Status::invalid_argument("a snapshot stream starts with its header")),
        };
        let vote: Vote = serde_json::from_slice(&header.vote_json).map_err(|e| bad_request("vote", e))?;
        let meta: SnapshotMeta<u64, MemberNode> =
            serde_json::from_slice(&header.meta_json).map_err(|e| bad_request("snapshot meta", e))?;
        let dir = Arc::new(CheckpointDir { path: self.node.snapshot_dirs().fresh("receive") });
        std::fs::create_dir_all(&dir.path).map_err(|e| Status::internal(e.to_string()))?;
        while let Some(chunk) = stream.message().await? {
            let Some(snapshot_chunk::Chunk::File(file)) = chunk.chunk else {
                return Err(Status::invalid_argument("only file chunks may follow the header"));
            };
            // The task holds the directory: if this stream is dropped mid-chunk, the
            // directory goes only after the write ends.
            let held = dir.clone();
            tokio::task::spawn_blocking(move || write_chunk(&held.path, &file))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        let path = dir.path.clone();
        tokio::task::spawn_blocking(move || sync_dir_files(&path))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(snapshot = %meta.snapshot_id, "received a snapshot");
        let snapshot = Snapshot { meta, snapshot: Box::new(SnapshotData::Checkpoint(dir)) };
        Ok(json(&self.node.raft().install_full_snapshot(vote, snapshot).await))
    }

    async fn forward(&self, request: Request<WriteRequest>) -> Result<Response<WriteResult>, Status> {
        let deadline = tokio::time::Instant::now() + self.node.request_timeout();
        if !self.node.status().is_leader {
            return Err(raft_status(RaftError::NotLeader));
        }
        let result = self.node.propose_local(request.into_inner(), deadline).await.map_err(raft_status)?;
        Ok(Response::new(WriteResult { result: Some(result) }))
    }

    async fn forward_batch(
        &self,
        request: Request<ForwardBatchRequest>,
    ) -> Result<Response<ForwardBatchResponse>, Status> {
        // Tests: a member of an older version, which does not know this call.
        fail::fail_point!("peer-forward-batch-unimplemented", |_| Err(Status::unimplemented("ForwardBatch")));
        let deadline = tokio::time::Instant::now() + self.node.request_timeout();
        if !self.node.status().is_leader {
            return Err(raft_status(RaftError::NotLeader));
        }
        // Polled in order, the proposals join the batcher's queue in order.
        let proposals = request.into_inner().requests.into_iter().map(|req| self.node.propose_local(req, deadline));
        let outcomes = futures::future::join_all(proposals)
            .await
            .into_iter()
            .map(|outcome| match outcome {
                Ok(result) => {
                    ForwardOutcome { result: Some(WriteResult { result: Some(result) }), error: String::new() }
                }
                Err(e) => ForwardOutcome { result: None, error: e.to_string() },
            })
            .collect();
        Ok(Response::new(ForwardBatchResponse { outcomes }))
    }

    async fn read_index(&self, _request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        if !self.node.status().is_leader {
            return Err(raft_status(RaftError::NotLeader));
        }
        let deadline = tokio::time::Instant::now() + self.node.request_timeout();
        let index = self.node.local_read_index(deadline).await.map_err(raft_status)?;
        Ok(Response::new(ReadIndexResponse { index }))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<LeaseKeepAliveForward>,
    ) -> Result<Response<LeaseKeepAliveForward>, Status> {
        if !self.node.lessor().is_primary() {
            return Err(raft_status(RaftError::NotLeader));
        }
        let id = request.into_inner().id;
        let ttl = self.node.lessor().keep_alive(self.node.store(), id, Instant::now());
        Ok(Response::new(LeaseKeepAliveForward { id, ttl, granted_ttl: ttl }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseKeepAliveForward>,
    ) -> Result<Response<LeaseKeepAliveForward>, Status> {
        if !self.node.lessor().is_primary() {
            return Err(raft_status(RaftError::NotLeader));
        }
        let id = request.into_inner().id;
        let (ttl, granted_ttl) = self.node.lessor().time_to_live(self.node.store(), id, Instant::now());
        Ok(Response::new(LeaseKeepAliveForward { id, ttl, granted_ttl }))
    }

    async fn member_info(&self, _request: Request<MemberInfoRequest>) -> Result<Response<MemberInfoResponse>, Status> {
        Ok(Response::new(MemberInfoResponse {
            member_id: self.node.id(),
            cluster_id: self.node.cluster_id(),
            name: self.name.clone(),
            membership_json: serde_json::to_vec(&self.node.membership_view()).expect("serialise").into(),
        }))
    }

    async fn change_membership(&self, request: Request<JsonMessage>) -> Result<Response<JsonMessage>, Status> {
        let change: MembershipChange =
            serde_json::from_slice(&request.into_inner().json).map_err(|e| bad_request("membership change", e))?;
        match self.node.change_membership_local(change).await {
            Ok(()) => Ok(json(&Ok::<(), String>(()))),
            Err(RaftError::Membership(m)) => Ok(json(&Err::<(), String>(m))),
            Err(e) => Err(raft_status(e)),
        }
    }

    async fn take_leadership(
        &self,
        request: Request<TakeLeadershipRequest>,
    ) -> Result<Response<TakeLeadershipResponse>, Status> {
        let timeout = std::time::Duration::from_millis(request.into_inner().timeout_ms);
        self.node.take_leadership(timeout).await.map_err(raft_status)?;
        Ok(Response::new(TakeLeadershipResponse {}))
    }
}
