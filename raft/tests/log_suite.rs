//! openraft's storage conformance suite run against strake's log store and state
//! machine, on real files.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use strake_raft::log::LogStore;
use strake_raft::state_machine::{SnapshotDirs, StateMachine};
use strake_raft::types::{StorageError, TypeConfig};
use strake_store::{EngineOptions, Store};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(&dir.path().join("wal")).expect("open log");
        let store = Store::open(&dir.path().join("db"), &EngineOptions::default()).expect("open store");
        let snaps = Arc::new(SnapshotDirs::new(dir.path().join("snap")).expect("snap dir"));
        let sm = StateMachine::new(store, snaps)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("the storage suite passes");
}
