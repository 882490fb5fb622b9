//! [`Server`]: what every gRPC service of a member shares: the Raft node, the store,
//! identity, limits, metrics; and the two paths every request takes (propose a
//! write through Raft; serve a read, linearizable or serializable).

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use strake_proto::etcdserverpb::alarm_request::AlarmAction;
use strake_proto::etcdserverpb::{AlarmRequest, AlarmType, RangeRequest, RangeResponse, ResponseHeader};
use strake_proto::strakepb::{write_request, write_result, WriteRequest};
use strake_raft::RaftNode;
use strake_store::{Store, StoreError};
use tonic::Status;

use crate::errors::{applied_error_status, raft_status, server_status, store_status, ServerError};
use crate::metrics::Metrics;

/// Request limits (etcd's flags).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// --max-request-bytes.
    pub max_request_bytes: usize,
    /// --max-txn-ops.
    pub max_txn_ops: usize,
    /// --quota-backend-bytes (resolved).
    pub quota_bytes: i64,
    /// Smallest lease TTL granted, seconds (ceil(1.5 × election timeout)).
    pub min_lease_ttl_seconds: i64,
}

/// Identity of this member.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Member ID.
    pub member_id: u64,
    /// Cluster ID.
    pub cluster_id: u64,
    /// --name.
    pub name: String,
    /// Advertised client URLs.
    pub client_urls: Vec<String>,
    /// Advertised peer URLs.
    pub peer_urls: Vec<String>,
}

/// State shared by all services of one member.
pub struct Server {
    /// Replication.
    pub node: RaftNode,
    /// The local state machine.
    pub store: Store,
    /// Who we are.
    pub identity: Identity,
    /// Limits.
    pub limits: Limits,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Interval of progress notifications for watchers that ask for them.
    pub progress_notify_interval: Duration,
}

/// The version strake reports as its etcd version (≥ 3.5.13 so kube-apiserver uses
/// watch progress requests).
pub const ETCD_VERSION: &str = "3.5.21";
/// The cluster version strake reports.
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";

impl Server {
    /// A response header at `revision` (0 = the store's current revision).
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision: if revision == 0 { self.store.revision() } else { revision },
            raft_term: self.node.status().term,
        }
    }

    /// Fills in the identity fields of a header produced by the store.
    pub fn fill(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map_or(0, |h| h.revision);
        *header = Some(self.header(revision));
    }

    /// Proposes a write through Raft and returns its result or etcd's error.
    pub async fn propose(&self, request: write_request::Request) -> Result<write_result::Result, Status> {
        let req = WriteRequest { request: Some(request), proposed_at_ms: unix_ms() };
        if req.encoded_len() > self.limits.max_request_bytes {
            return Err(server_status(&ServerError::RequestTooLarge));
        }
        self.check_quota(&req).await?;
        self.metrics.proposals_pending.inc();
        let result = self.node.propose(req).await;
        self.metrics.proposals_pending.dec();
        match result {
            Ok(write_result::Result::Error(e)) => Err(applied_error_status(&e)),
            Ok(r) => {
                self.metrics.proposals_applied.inc();
                Ok(r)
            }
            Err(e) => {
                self.metrics.proposals_failed.inc();
                Err(raft_status(&e))
            }
        }
    }

    /// etcd's quota check: a write that would take the backend over the quota raises
    /// the NOSPACE alarm (through Raft) and fails.
    async fn check_quota(&self, req: &WriteRequest) -> Result<(), Status> {
        let grows = matches!(
            req.request,
            Some(write_request::Request::Put(_))
                | Some(write_request::Request::Txn(_))
                | Some(write_request::Request::LeaseGrant(_))
        );
        if !grows {
            return Ok(());
        }
        let size = self.store.engine().recent_size_bytes() as i64;
        if size + req.encoded_len() as i64 <= self.limits.quota_bytes {
            return Ok(());
        }
        let already = self.store.alarms().iter().any(|a| a.alarm == AlarmType::Nospace as i32);
        if !already {
            tracing::warn!(size, quota = self.limits.quota_bytes, "backend quota exceeded; raising the NOSPACE alarm");
            let alarm = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.identity.member_id,
                alarm: AlarmType::Nospace as i32,
            };
            let wrapped =
                WriteRequest { request: Some(write_request::Request::Alarm(alarm)), proposed_at_ms: unix_ms() };
            self.node.propose(wrapped).await.map_err(|e| raft_status(&e))?;
        }
        Err(store_status(&StoreError::NoSpace))
    }

    /// Serves a Range: linearizable (ReadIndex barrier first) unless serializable.
    pub async fn range(&self, req: &RangeRequest) -> Result<RangeResponse, Status> {
        if !req.serializable {
            self.node.read_barrier().await.map_err(|e| raft_status(&e))?;
        }
        // A point read is a few microseconds; anything wider may scan, so it runs off
        // the async threads.
        let mut resp = if req.range_end.is_empty() {
            self.store.range(req)
        } else {
            let store = self.store.clone();
            let req = req.clone();
            run_blocking(move || store.range(&req)).await?
        }
        .map_err(|e| store_status(&e))?;
        self.fill(&mut resp.header);
        self.metrics.range_total.inc();
        Ok(resp)
    }
}

/// Runs blocking store work off the async threads.
pub async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("task failed: {e}")))
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Shared handle to the server state.
pub type Shared = Arc<Server>;
