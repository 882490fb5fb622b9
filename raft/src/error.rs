//! Errors of the replication layer.

use std::path::{Path, PathBuf};

/// Why the Raft log cannot be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A log file is damaged in a way a crash cannot explain.
    #[error("raft log corrupted: {} at offset {offset}: {detail}", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// An I/O error on a log file.
    #[error("raft log I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl LogError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> LogError {
        LogError::Io { path: path.to_path_buf(), source }
    }
}

/// Errors of a running Raft node, as the server needs to tell them apart.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RaftError {
    /// No leader is known (election in progress, or cut off from the majority).
    #[error("etcdserver: no leader")]
    NoLeader,
    /// Leadership changed while the request was in flight.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The request did not complete in time; it may or may not take effect.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// This member is not the leader and the operation needs the leader.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The leader could not be reached at all: the request was not delivered and may
    /// be retried once a leader is reachable (internal; clients see a timeout).
    #[error("etcdserver: request timed out")]
    PeerUnreachable,
    /// The node is shutting down or has failed.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A membership change was refused (etcd's message).
    #[error("{0}")]
    Membership(String),
    /// Anything else, with a description.
    #[error("{0}")]
    Other(String),
}

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The log is unusable.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store is unusable.
    #[error(transparent)]
    Store(#[from] strake_store::StoreError),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
}
