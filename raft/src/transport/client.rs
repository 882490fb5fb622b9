//! The client side of the peer protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError as OpenRaftError, RemoteError, ReplicationClosed, StreamingError, Timeout,
    Unreachable,
};
use openraft::network::RPCTypes;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{OptionalSend, Snapshot};
use parking_lot::Mutex;
use strake_proto::strakepb::raft_peer_client::RaftPeerClient;
use strake_proto::strakepb::{
    self, snapshot_chunk, ForwardBatchRequest, JsonMessage, LeaseKeepAliveForward, ReadIndexRequest, SnapshotChunk,
    SnapshotHeader, WriteRequest, WriteResult,
};
use tonic::transport::{Channel, Endpoint};

use super::snapshot::for_each_chunk;
use super::MAX_PEER_MESSAGE_BYTES;
use crate::codec;
use crate::error::RaftError;
use crate::types::{MemberNode, SnapshotData, TypeConfig, Vote};

/// How long a connection attempt to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cache of gRPC channels to peers, by URL. Channels connect lazily and
/// reconnect by themselves (with backoff) after failures.
#[derive(Clone, Default)]
pub struct PeerClients {
    channels: Arc<Mutex<HashMap<String, RaftPeerClient<Channel>>>>,
}

impl std::fmt::Debug for PeerClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClients").field("peers", &self.channels.lock().len()).finish()
    }
}

/// Whether a peer call failed because no connection could be made (its error chain
/// names a connect failure or a refused connection).
fn never_connected(s: &tonic::Status) -> bool {
    if !matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(s);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        // Not "connection reset" and the like: those may follow a delivery.
        let text = e.to_string();
        if text.contains("tcp connect error") || text.contains("error trying to connect") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Maps a peer call's failure. A connection that could not be made means the request
/// was never delivered (safe to retry against the next leader); any other transport
/// failure may have happened after delivery, so its outcome is unknown.
fn status_error(s: &tonic::Status) -> RaftError {
    match s.code() {
        _ if never_connected(s) => RaftError::PeerUnreachable,
        tonic::Code::Unavailable | tonic::Code::Cancelled => RaftError::LeaderChanged,
        tonic::Code::Unknown if s.message() == "transport error" => RaftError::LeaderChanged,
        tonic::Code::DeadlineExceeded => RaftError::Timeout,
        _ => error_from_message(s.message()),
    }
}

/// The error a peer reported by its message (a [`RaftError`]'s text).
fn error_from_message(message: &str) -> RaftError {
    match message {
        m if m == RaftError::NoLeader.to_string() => RaftError::NoLeader,
        m if m == RaftError::NotLeader.to_string() => RaftError::NotLeader,
        m if m == RaftError::LeaderChanged.to_string() => RaftError::LeaderChanged,
        m if m == RaftError::Timeout.to_string() => RaftError::Timeout,
        // The leader is shutting down: for the follower, leadership changes.
        m if m == RaftError::Stopped.to_string() => RaftError::LeaderChanged,
        m => RaftError::Other(m.to_string()),
    }
}

impl PeerClients {
    /// The client for `node` (its first peer URL).
    pub fn get(&self, node: &MemberNode) -> Result<RaftPeerClient<Channel>, RaftError> {
        let url = node.peer_urls.first().ok_or_else(|| RaftError::Other(format!("member {node} has no peer URL")))?;
        let mut map = self.channels.lock();
        if let Some(c) = map.get(url) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| RaftError::Other(format!("bad peer URL {url}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let client = RaftPeerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        map.insert(url.clone(), client.clone());
        Ok(client)
    }

    /// Sends a write to the leader `leader` and returns its result.
    pub async fn forward(
        &self,
        leader: &MemberNode,
        req: WriteRequest,
        timeout: Duration,
    ) -> Result<WriteResult, RaftError> {
        let mut request = tonic::Request::new(req);
        request.set_timeout(timeout);
        let resp = self.get(leader)?.forward(request).await.map_err(|s| status_error(&s))?;
        Ok(resp.into_inner())
    }

    /// Sends writes to the leader `leader` in one call and returns each one's
    /// outcome, in order; `None` when the leader does not know the call (an older
    /// version), in which case none of the writes was proposed.
    pub async fn forward_batch(
        &self,
        leader: &MemberNode,
        requests: Vec<WriteRequest>,
        timeout: Duration,
    ) -> Result<Option<Vec<Result<WriteResult, RaftError>>>, RaftError> {
        let mut request = tonic::Request::new(ForwardBatchRequest { requests });
        request.set_timeout(timeout);
        match self.get(leader)?.forward_batch(request).await {
            Ok(resp) => Ok(Some(
                resp.into_inner()
                    .outcomes
                    .into_iter()
                    .map(|o| match o.result {
                        Some(result) if o.error.is_empty() => Ok(result),
                        _ => Err(error_from_message(&o.error)),
                    })
                    .collect(),
            )),
            Err(s) if s.code() == tonic::Code::Unimplemented => Ok(None),
            Err(s) => Err(status_error(&s)),
        }
    }

    /// Asks the leader for a read index (its commit index, confirmed by a quorum).
    pub async fn read_index(&self, leader: &MemberNode, timeout: Duration) -> Result<u64, RaftError> {
        let mut request = tonic::Request::new(ReadIndexRequest {});
        request.set_timeout(timeout);
        let resp = self.get(leader)?.read_index(request).await.map_err(|s| status_error(&s))?;
        Ok(resp.into_inner().index)
    }

    /// Renews a lease on the leader; returns its TTL (0 when the lease is unknown).
    pub async fn lease_keep_alive(&self, leader: &MemberNode, id: i64, timeout: Duration) -> Result<i64, RaftError> {
        let mut request = tonic::Request::new(LeaseKeepAliveForward { id, ttl: 0, granted_ttl: 0 });
        request.set_timeout(timeout);
        let resp = self.get(leader)?.lease_keep_alive(request).await.map_err(|s| status_error(&s))?;
        Ok(resp.into_inner().ttl)
    }

    /// Asks the leader for a lease's remaining and granted TTL (-1 when unknown).
    pub async fn lease_time_to_live(
        &self,
        leader: &MemberNode,
        id: i64,
        timeout: Duration,
    ) -> Result<(i64, i64), RaftError> {
        let mut request = tonic::Request::new(LeaseKeepAliveForward { id, ttl: 0, granted_ttl: 0 });
        request.set_timeout(timeout);
        let resp = self.get(leader)?.lease_time_to_live(request).await.map_err(|s| status_error(&s))?;
        let r = resp.into_inner();
        Ok((r.ttl, r.granted_ttl))
    }

    /// Asks the leader to execute a membership change.
    pub async fn change_membership(
        &self,
        leader: &MemberNode,
        change: &crate::membership::MembershipChange,
        timeout: Duration,
    ) -> Result<(), RaftError> {
        let mut request =
            tonic::Request::new(JsonMessage { json: serde_json::to_vec(change).expect("serialise").into() });
        request.set_timeout(timeout);
        let resp = self.get(leader)?.change_membership(request).await.map_err(|s| status_error(&s))?;
        let result: Result<(), String> = serde_json::from_slice(&resp.into_inner().json)
            .map_err(|e| RaftError::Other(format!("bad membership reply: {e}")))?;
        result.map_err(RaftError::Membership)
    }

    /// Asks `node` to campaign until it leads.
    pub async fn take_leadership(&self, node: &MemberNode, timeout: Duration) -> Result<(), RaftError> {
        let mut request =
            tonic::Request::new(strakepb::TakeLeadershipRequest { timeout_ms: timeout.as_millis() as u64 });
        request.set_timeout(timeout + Duration::from_secs(1));
        self.get(node)?.take_leadership(request).await.map_err(|s| status_error(&s))?;
        Ok(())
    }

    /// Asks a member who it is.
    pub async fn member_info(
        &self,
        node: &MemberNode,
        timeout: Duration,
    ) -> Result<strakepb::MemberInfoResponse, RaftError> {
        let mut request = tonic::Request::new(strakepb::MemberInfoRequest {});
        request.set_timeout(timeout);
        let resp = self.get(node)?.member_info(request).await.map_err(|s| status_error(&s))?;
        Ok(resp.into_inner())
    }
}

/// openraft's network factory over [`PeerClients`].
#[derive(Clone, Debug, Default)]
pub struct PeerNetwork {
    /// This member's ID.
    pub id: u64,
    /// The shared channels.
    pub clients: PeerClients,
}

/// A connection to one peer, as openraft uses it.
pub struct PeerConnection {
    id: u64,
    target: u64,
    node: MemberNode,
    clients: PeerClients,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerConnection {
        PeerConnection { id: self.id, target, node: node.clone(), clients: self.clients.clone() }
    }
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, MemberNode, OpenRaftError<u64, E>>>;

/// Whether a peer call failed because its deadline passed (tonic reports its own
/// timer as `Cancelled`, with a [`tonic::TimeoutExpired`] in the error's sources).
fn timed_out(s: &tonic::Status) -> bool {
    if s.code() == tonic::Code::DeadlineExceeded {
        return true;
    }
    let mut cause = std::error::Error::source(s);
    while let Some(e) = cause {
        if e.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            return s.code() == tonic::Code::Cancelled;
        }
        cause = e.source();
    }
    false
}

impl PeerConnection {
    /// Maps a failed peer call for openraft. A passed deadline is a `Timeout`, which
    /// openraft retries at once; `Unreachable` makes its replication back off for
    /// 500 ms. An AppendEntries slower than one heartbeat interval (likely on two
    /// busy cores) was reported as unreachable, and commits stalled for 0.6–2 s.
    fn transport_error<E: std::error::Error>(
        &self,
        s: tonic::Status,
        action: RPCTypes,
        timeout: Duration,
    ) -> RPCError<u64, MemberNode, OpenRaftError<u64, E>> {
        if timed_out(&s) {
            return RPCError::Timeout(Timeout { action, id: self.id, target: self.target, timeout });
        }
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::Cancelled => RPCError::Unreachable(Unreachable::new(&s)),
            _ => RPCError::Network(NetworkError::new(&s)),
        }
    }
}

fn decode_json<T: serde::de::DeserializeOwned, E: std::error::Error>(
    bytes: &[u8],
) -> Result<T, RPCError<u64, MemberNode, OpenRaftError<u64, E>>> {
    serde_json::from_slice(bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

impl PeerConnection {
    fn client(&self) -> Result<RaftPeerClient<Channel>, Unreachable> {
        self.clients.get(&self.node).map_err(|e| Unreachable::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        let mut client = self.client()?;
        let entries = rpc
            .entries
            .iter()
            .map(|e| {
                let mut buf = Vec::new();
                codec::encode_entry(e, &mut buf);
                bytes::Bytes::from(buf)
            })
            .collect();
        let mut request = tonic::Request::new(strakepb::AppendEntriesRequest {
            vote_json: serde_json::to_vec(&rpc.vote).expect("serialise").into(),
            prev_log_id_json: serde_json::to_vec(&rpc.prev_log_id).expect("serialise").into(),
            leader_commit_json: serde_json::to_vec(&rpc.leader_commit).expect("serialise").into(),
            entries,
        });
        request.set_timeout(option.hard_ttl());
        let resp = client
            .append_entries(request)
            .await
            .map_err(|s| self.transport_error(s, RPCTypes::AppendEntries, option.hard_ttl()))?;
        let result: Result<AppendEntriesResponse<u64>, OpenRaftError<u64>> = decode_json(&resp.into_inner().json)?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        let mut client = self.client()?;
        let mut request =
            tonic::Request::new(JsonMessage { json: serde_json::to_vec(&rpc).expect("serialise").into() });
        request.set_timeout(option.hard_ttl());
        let resp =
            client.vote(request).await.map_err(|s| self.transport_error(s, RPCTypes::Vote, option.hard_ttl()))?;
        let result: Result<VoteResponse<u64>, OpenRaftError<u64>> = decode_json(&resp.into_inner().json)?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let mut client = self.client()?;
        let SnapshotData::Checkpoint(dir) = *snapshot.snapshot else {
            return Err(StreamingError::Network(NetworkError::new(&std::io::Error::other(
                "only checkpoint snapshots can be sent",
            ))));
        };
        let header = SnapshotChunk {
            chunk: Some(snapshot_chunk::Chunk::Header(SnapshotHeader {
                vote_json: serde_json::to_vec(&vote).expect("serialise").into(),
                meta_json: serde_json::to_vec(&snapshot.meta).expect("serialise").into(),
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        tx.send(header).await.map_err(|_| StreamingError::Closed(ReplicationClosed::new("sender gone")))?;
        let reader = tokio::task::spawn_blocking(move || {
            let dir = dir; // keep the checkpoint alive while it is read
            for_each_chunk(&dir.path, |c| {
                tx.blocking_send(SnapshotChunk { chunk: Some(snapshot_chunk::Chunk::File(c)) }).is_ok()
            })
        });
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        request.set_timeout(option.hard_ttl());
        let send = client.install_snapshot(request);
        let resp = tokio::select! {
            r = send => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        reader
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let ttl = option.hard_ttl();
        let resp = resp.map_err(|s| {
            match self.transport_error::<openraft::error::Infallible>(s, RPCTypes::InstallSnapshot, ttl) {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                other => StreamingError::Network(NetworkError::new(&other)),
            }
        })?;
        let result: Result<SnapshotResponse<u64>, Fatal<u64>> = serde_json::from_slice(&resp.into_inner().json)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_timeouts_and_refused_connections_are_not() {
        let tonic_timer = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(tonic_timer.code(), tonic::Code::Cancelled);
        assert!(timed_out(&tonic_timer), "tonic's own request timeout");
        assert!(timed_out(&tonic::Status::deadline_exceeded("deadline")));
        assert!(!timed_out(&tonic::Status::cancelled("stream closed")));
        assert!(!timed_out(&tonic::Status::unavailable("tcp connect error")));
        let conn = PeerConnection {
            id: 1,
            target: 2,
            node: MemberNode { name: "b".into(), peer_urls: vec![], client_urls: vec![] },
            clients: PeerClients::default(),
        };
        let ttl = Duration::from_millis(100);
        let e = conn.transport_error::<openraft::error::Infallible>(tonic_timer, RPCTypes::AppendEntries, ttl);
        assert!(matches!(&e, RPCError::Timeout(t) if t.target == 2 && t.id == 1), "{e:?}");
        let e = conn.transport_error::<openraft::error::Infallible>(
            tonic::Status::unavailable("connection refused"),
            RPCTypes::AppendEntries,
            ttl,
        );
        assert!(matches!(e, RPCError::Unreachable(_)), "{e:?}");
    }
}
