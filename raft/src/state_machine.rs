//! openraft's state machine for strake: applies committed entries to the store,
//! builds snapshots (a flush in place, or a RocksDB checkpoint to ship), installs
//! received snapshots.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use strake_proto::strakepb::{WriteBatchResult, WriteResult};
use strake_store::Store;

use crate::apply_metrics::ApplyMetrics;
use crate::codec;
use crate::log::LogProgress;
use crate::types::{
    Applied, CheckpointDir, Entry, LogId, MemberNode, SnapshotData, StorageError, StoredMembership, TypeConfig,
};

/// The state machine adapter. Owned by openraft's state-machine task.
pub struct StateMachine {
    store: Store,
    last_applied: Option<LogId>,
    /// An entry whose batch was applied only up to this write (after a crash).
    partial: Option<(LogId, u32)>,
    membership: StoredMembership,
    membership_json: Vec<u8>,
    snapshots: Arc<SnapshotDirs>,
    /// When set, entries are applied only once this member's log holds them durably.
    durable_log: Option<LogProgress>,
    metrics: ApplyMetrics,
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
        let position = read_position(&store)?;
        let membership_json = codec::membership_json(&position.membership);
        Ok(StateMachine {
            store,
            last_applied: position.last_applied,
            partial: position.partial,
            membership: position.membership,
            membership_json,
            snapshots,
            durable_log: None,
            metrics: ApplyMetrics::default(),
        })
    }

    /// Applies an entry only once `log` reports it durable. The leader replicates and
    /// may commit (on its followers' copies) before its own log flush completes; the
    /// store must never get ahead of the local log, or a crash could leave it holding
    /// entries the log lost.
    pub fn with_durable_log(mut self, log: LogProgress) -> StateMachine {
        self.durable_log = Some(log);
        self
    }

    /// Records apply times and batch sizes in `metrics` (see [`ApplyMetrics`]).
    pub fn with_metrics(mut self, metrics: ApplyMetrics) -> StateMachine {
        self.metrics = metrics;
        self
    }

    fn marker(&self, entry: &LogId, position: u32, length: u32) -> Vec<u8> {
        codec::encode_applied_marker(Some(entry), position, length, self.last_applied.as_ref(), &self.membership_json)
    }

    /// Applies one entry. A batch's writes are applied in order and written in as few
    /// RocksDB writes as the store can (see `EntryApply`), each with a marker naming
    /// the position of its last write, so a crash in the middle replays only the rest.
    fn apply_one(&mut self, entry: Entry) -> Result<Applied, StorageError> {
        let engine_error = |e| sm_error(ErrorVerb::Write, e);
        let log_id = entry.log_id;
        let result = match entry.payload {
            EntryPayload::Blank => {
                self.store.apply_marker(&self.marker(&log_id, 0, 1)).map_err(engine_error)?;
                Applied::default()
            }
            EntryPayload::Normal(p) => {
                let length = p.0.requests.len() as u32;
                let done = self.partial.filter(|(id, _)| *id == log_id).map(|(_, pos)| pos);
                let mut results = Vec::with_capacity(length as usize);
                let marker = |pos| self.marker(&log_id, pos, length);
                let mut entry = self.store.begin_entry(&marker);
                for (pos, req) in p.0.requests.iter().enumerate() {
                    let pos = pos as u32;
                    if done.is_some_and(|d| pos <= d) {
                        // Applied before a crash; nobody waits for its result any more.
                        results.push(WriteResult::default());
                        continue;
                    }
                    let r = entry.apply(pos, req).map_err(engine_error)?;
                    results.push(WriteResult { result: Some(r) });
                }
                entry.finish().map_err(engine_error)?;
                if length == 0 {
                    self.store.apply_marker(&self.marker(&log_id, 0, 1)).map_err(engine_error)?;
                }
                Applied(WriteBatchResult { results })
            }
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(log_id), m);
                self.membership_json = codec::membership_json(&self.membership);
                self.store.apply_marker(&self.marker(&log_id, 0, 1)).map_err(engine_error)?;
                Applied::default()
            }
        };
        self.partial = None;
        self.last_applied = Some(log_id);
        Ok(result)
    }

    /// Applies one entry and records how long it took.
    #[allow(clippy::result_large_err)] // openraft's StorageError, as in `apply_one`
    fn apply_timed(&mut self, entry: Entry) -> Result<Applied, StorageError> {
        let index = entry.log_id.index;
        let writes = match &entry.payload {
            EntryPayload::Normal(p) => p.0.requests.len(),
            _ => 0,
        };
        let started = std::time::Instant::now();
        let applied = self.apply_one(entry)?;
        self.metrics.observe(index, writes, started.elapsed());
        Ok(applied)
    }
}

/// Builds snapshots of the store.
pub struct SnapshotBuilder {
    store: Store,
    snapshots: Arc<SnapshotDirs>,
}

fn decode_position(marker: Option<Vec<u8>>) -> Result<codec::AppliedPosition, StorageError> {
    match marker {
        Some(m) => codec::decode_applied_marker(&m).map_err(|e| sm_error(ErrorVerb::Read, e)),
        None => {
            Ok(codec::AppliedPosition { last_applied: None, partial: None, membership: StoredMembership::default() })
        }
    }
}

fn read_position(store: &Store) -> Result<codec::AppliedPosition, StorageError> {
    decode_position(store.applied_marker().map_err(|e| sm_error(ErrorVerb::Read, e))?)
}

/// Snapshot metadata for store content whose marker is `marker`: a partially
/// applied batch counts as not applied (the receiver skips its applied part).
fn meta_from_marker(marker: Option<Vec<u8>>) -> Result<SnapshotMeta<u64, MemberNode>, StorageError> {
    let position = decode_position(marker)?;
    let (last_log_id, last_membership) = (position.last_applied, position.membership);
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        // Entry 0 (the bootstrap membership) is appended before this member can lead,
        // so it is durable before it is applied; the log's durable index cannot tell
        // "entry 0" from "nothing" anyway.
        let last_index = entries.last().map_or(0, |e| e.log_id.index);
        if let (Some(log), Some(before_last)) = (self.durable_log.as_mut(), last_index.checked_sub(1)) {
            log.wait_durable_beyond(before_last).await;
        }
        entries.into_iter().map(|e| self.apply_timed(e)).collect()
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
        let position = decode_position(marker)?;
        let (last_applied, membership) = (position.last_applied, position.membership);
        if last_applied != meta.last_log_id {
            return Err(sm_error(
                ErrorVerb::Write,
                format!("snapshot data is at {last_applied:?} but its metadata says {:?}", meta.last_log_id),
            ));
        }
        self.last_applied = last_applied;
        self.partial = position.partial;
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
