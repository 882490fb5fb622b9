//! The Maintenance service: status, alarms, defragmentation, hashes, snapshots,
//! leadership transfer.

use std::pin::Pin;

use futures::Stream;
use sha2::{Digest, Sha256};
use strake_proto::etcdserverpb::alarm_request::AlarmAction;
use strake_proto::etcdserverpb::maintenance_server::Maintenance;
use strake_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use strake_proto::strakepb::{write_request::Request as W, write_result::Result as R};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::context::{run_blocking, Server, Shared, ETCD_VERSION};
use crate::errors::{server_status, store_status, ServerError};

/// Bytes per Snapshot stream message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 << 10;

/// The Maintenance service.
#[derive(Clone)]
pub struct MaintenanceService {
    server: Shared,
}

impl MaintenanceService {
    /// The service.
    pub fn new(server: Shared) -> MaintenanceService {
        MaintenanceService { server }
    }
}

fn alarm_name(a: i32) -> &'static str {
    match AlarmType::try_from(a) {
        Ok(AlarmType::Nospace) => "NOSPACE",
        Ok(AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}

/// The Status response of this member.
pub fn status(server: &Server) -> StatusResponse {
    let s = server.node.status();
    let engine = server.store.engine();
    StatusResponse {
        header: Some(server.header(0)),
        version: ETCD_VERSION.to_string(),
        db_size: engine.size_bytes() as i64,
        leader: s.leader.unwrap_or(0),
        raft_index: s.last_log_index,
        raft_term: s.term,
        raft_applied_index: s.applied_index,
        errors: server
            .store
            .alarms()
            .iter()
            .map(|a| format!("memberID:{} alarm:{} ", a.member_id, alarm_name(a.alarm)))
            .collect(),
        db_size_in_use: engine.live_bytes() as i64,
        is_learner: s.is_learner,
        storage_version: "3.5.0".to_string(),
        db_size_quota: server.limits.quota_bytes,
        downgrade_info: None,
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let req = request.into_inner();
        if req.action == AlarmAction::Get as i32 {
            let alarms = self
                .server
                .store
                .alarms()
                .into_iter()
                .filter(|a| req.alarm == AlarmType::None as i32 || a.alarm == req.alarm)
                .map(|a| AlarmMember { member_id: a.member_id, alarm: a.alarm })
                .collect();
            return Ok(Response::new(AlarmResponse { header: Some(self.server.header(0)), alarms }));
        }
        match self.server.propose(W::Alarm(req)).await? {
            R::Alarm(mut resp) => {
                self.server.fill(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal("unexpected apply result for alarm")),
        }
    }

    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status(&self.server)))
    }

    async fn defragment(&self, _request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        let store = self.server.store.clone();
        run_blocking(move || store.engine().compact_all()).await?;
        Ok(Response::new(DefragmentResponse { header: Some(self.server.header(0)) }))
    }

    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let store = self.server.store.clone();
        let hash = run_blocking(move || store.hash_all()).await?.map_err(|e| store_status(&e))?;
        Ok(Response::new(HashResponse { header: Some(self.server.header(0)), hash }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        let store = self.server.store.clone();
        let h = run_blocking(move || store.hash_kv(rev)).await?.map_err(|e| store_status(&e))?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.server.header(0)),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    /// Streams a consistent copy of this member's store: a tar archive of a RocksDB
    /// checkpoint followed by the SHA-256 of the archive (32 bytes), as etcd appends
    /// a SHA-256 to its bolt file.
    async fn snapshot(&self, _request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let store = self.server.store.clone();
        let header = self.server.header(0);
        let staging = tempfile::Builder::new()
            .prefix("strake-snapshot")
            .tempdir()
            .map_err(|e| server_status(&ServerError::Internal(format!("cannot stage a snapshot: {e}"))))?;
        let archive = run_blocking(move || -> Result<(tempfile::TempDir, std::path::PathBuf), String> {
            let checkpoint = staging.path().join("checkpoint");
            store.checkpoint(&checkpoint).map_err(|e| e.to_string())?;
            let tar_path = staging.path().join("snapshot.tar");
            let file = std::fs::File::create(&tar_path).map_err(|e| e.to_string())?;
            let mut builder = tar::Builder::new(file);
            builder.append_dir_all("db", &checkpoint).map_err(|e| e.to_string())?;
            builder.into_inner().and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
            Ok((staging, tar_path))
        })
        .await?
        .map_err(|e| server_status(&ServerError::Internal(format!("cannot build a snapshot: {e}"))))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let (_staging, path) = archive;
            let result = (|| -> std::io::Result<()> {
                let total = std::fs::metadata(&path)?.len() + 32;
                let mut file = std::fs::File::open(&path)?;
                let mut hasher = Sha256::new();
                let mut sent = 0u64;
                loop {
                    let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    hasher.update(&buf);
                    sent += n as u64;
                    let msg = SnapshotResponse {
                        header: Some(header),
                        remaining_bytes: total - sent,
                        blob: buf.into(),
                        version: ETCD_VERSION.to_string(),
                    };
                    if tx.blocking_send(Ok(msg)).is_err() {
                        return Ok(());
                    }
                }
                let digest = hasher.finalize().to_vec();
                let msg = SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: 0,
                    blob: digest.into(),
                    version: ETCD_VERSION.to_string(),
                };
                let _ = tx.blocking_send(Ok(msg));
                Ok(())
            })();
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(Status::internal(format!("snapshot stream failed: {e}"))));
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let status = self.server.node.status();
        if !status.is_leader {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        if target == self.server.identity.member_id {
            return Ok(Response::new(MoveLeaderResponse { header: Some(self.server.header(0)) }));
        }
        let (voters, _) = self.server.node.members();
        if !voters.contains(&target) {
            return Err(server_status(&ServerError::BadLeaderTransferee));
        }
        self.server.node.transfer_leadership(target).await.map_err(|e| crate::errors::raft_status(&e))?;
        Ok(Response::new(MoveLeaderResponse { header: Some(self.server.header(0)) }))
    }

    async fn downgrade(&self, _request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(server_status(&ServerError::Unimplemented("Downgrade")))
    }
}
