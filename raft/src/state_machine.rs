//! openraft's state machine for strake: applies committed entries to the store,
//! builds snapshots (a flush in place, or a RocksDB checkpoint to ship), installs
//! received snapshots.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use strake_proto::strakepb::{write_result, WriteResult};
use strake_store::Store;

use crate::codec;
use crate::types::{Applied, CheckpointDir, Entry, LogId, MemberNode, SnapshotData, StorageError, StoredMembership, TypeConfig};

/// The state machine adapter. Owned by openraft's state-machine task.
pub struct StateMachine {
    store: Store,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    membership_json: Vec<u8>,
    snapshots: Arc<SnapshotDirs>,
}

/// Where snapshot checkpoints are made and received.
#[derive(Debug)]
pub struct SnapshotDirs {
    root: PathBuf,
    counter: AtomicU64,
}

impl SnapshotDirs {
    /// Snapshot directories live under `root`; leftovers of an earlier run are removed.
    pub fn new(root: PathBuf) -> std::io::Result<SnapshotDirs> {
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::create_dir_all(&root)?;
        Ok(SnapshotDirs { root, counter: AtomicU64::new(0) })
    }

    /// A new, not yet existing, directory path.
    pub fn fresh(&self, kind: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root.join(format!("{kind}-{n}"))
    }
}

fn sm_error(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, openraft::AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// Wraps `store`, reading what it last applied.
    pub fn new(store: Store, snapshots: Arc<SnapshotDirs>) -> Result<StateMachine, StorageError> {
        let (last_applied, membership) = match store.applied_marker().map_err(|e| sm_error(ErrorVerb::Read, e))? {
            Some(m) => codec::decode_applied_marker(&m).map_err(|e| sm_error(ErrorVerb::Read, e))?,
            None => (None, StoredMembership::default()),
        };
        let membership_json = codec::membership_json(&membership);
        Ok(StateMachine { store, last_applied, membership, membership_json, snapshots })
    }

    fn marker(&self) -> Vec<u8> {
        codec::encode_applied_marker(self.last_applied.as_ref(), &self.membership_json)
    }

    fn apply_one(&mut self, entry: Entry) -> Result<Applied, StorageError> {
        self.last_applied = Some(entry.log_id);
        let engine_error = |e| sm_error(ErrorVerb::Write, e);
        match entry.payload {
            EntryPayload::Blank => {
                self.store.apply_marker(&self.marker()).map_err(engine_error)?;
                Ok(Applied::default())
            }
            EntryPayload::Normal(p) => {
                let result = self.store.apply(&p.0, &self.marker()).map_err(engine_error)?;
                Ok(Applied(WriteResult { result: Some(result) }))
            }
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m);
                self.membership_json = codec::membership_json(&self.membership);
                self.store.apply_marker(&self.marker()).map_err(engine_error)?;
                Ok(Applied::default())
            }
        }
    }
}

/// Builds snapshots of the store.
pub struct SnapshotBuilder {
    store: Store,
    snapshots: Arc<SnapshotDirs>,
}

fn meta_from_marker(marker: Option<Vec<u8>>) -> Result<SnapshotMeta<u64, MemberNode>, StorageError> {
    let (last_log_id, last_membership) = match marker {
        Some(m) => codec::decode_applied_marker(&m).map_err(|e| sm_error(ErrorVerb::Read, e))?,
        None => (None, StoredMembership::default()),
    };
    let snapshot_id = match &last_log_id {
        Some(id) => format!("{}-{}-{}", id.leader_id.term, id.leader_id.node_id, id.index),
        None => "empty".to_string(),
    };
    Ok(SnapshotMeta { last_log_id, last_membership, snapshot_id })
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Makes the store durable up to its applied marker; openraft keeps only the
    /// metadata and may then purge the log up to it. Shipping a snapshot to a peer
    /// uses `get_current_snapshot`, which makes a checkpoint.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let marker = tokio::task::spawn_blocking(move || {
            let marker = store.applied_marker()?;
            store.flush()?;
            Ok::<_, strake_store::StoreError>(marker)
        })
        .await
        .map_err(|e| sm_error(ErrorVerb::Write, e))?
        .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let meta = meta_from_marker(marker)?;
        tracing::info!(snapshot = %meta.snapshot_id, "store flushed for a snapshot");
        let _ = &self.snapshots;
        Ok(Snapshot { meta, snapshot: Box::new(SnapshotData::InPlace) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        entries.into_iter().map(|e| self.apply_one(e)).collect()
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone(), snapshots: self.snapshots.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        let dir = self.snapshots.fresh("receive");
        std::fs::create_dir_all(&dir).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        Ok(Box::new(SnapshotData::Checkpoint(Arc::new(CheckpointDir { path: dir }))))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, MemberNode>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let SnapshotData::Checkpoint(dir) = *snapshot else {
            return Err(sm_error(ErrorVerb::Write, "a snapshot to install must carry a checkpoint"));
        };
        let store = self.store.clone();
        let path = dir.path.clone();
        let marker = tokio::task::spawn_blocking(move || store.restore(&path))
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, e))?
            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let (last_applied, membership) = match marker {
            Some(m) => codec::decode_applied_marker(&m).map_err(|e| sm_error(ErrorVerb::Read, e))?,
            None => (None, StoredMembership::default()),
        };
        if last_applied != meta.last_log_id {
            return Err(sm_error(
                ErrorVerb::Write,
                format!("snapshot data is at {last_applied:?} but its metadata says {:?}", meta.last_log_id),
            ));
        }
        self.last_applied = last_applied;
        self.membership = membership;
        self.membership_json = codec::membership_json(&self.membership);
        tracing::info!(snapshot = %meta.snapshot_id, "installed a snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        if self.last_applied.is_none() {
            return Ok(None);
        }
        let store = self.store.clone();
        let dir = self.snapshots.fresh("checkpoint");
        let path = dir.clone();
        let marker = tokio::task::spawn_blocking(move || store.checkpoint(&path))
            .await
            .map_err(|e| sm_error(ErrorVerb::Read, e))?
            .map_err(|e| sm_error(ErrorVerb::Read, e))?;
        let data = SnapshotData::Checkpoint(Arc::new(CheckpointDir { path: dir }));
        Ok(Some(Snapshot { meta: meta_from_marker(marker)?, snapshot: Box::new(data) }))
    }
}

/// The store's view of an applied entry's result, for callers holding an [`Applied`].
pub fn outcome(applied: &Applied) -> Option<&write_result::Result> {
    applied.0.result.as_ref()
}
