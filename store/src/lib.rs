//! strake's state machine: the etcd MVCC keyspace on RocksDB.
//!
//! What it owns: revisions (one per write transaction that changes something),
//! versions of keys with create/mod revision and version, tombstones, Range with every
//! etcd option, Put/DeleteRange/Txn, compaction (logical at once, physical in the
//! background), HashKV, leases (existence and TTL; not their clocks), alarms, and the
//! watch hub that streams each revision's events to watchers.
//!
//! What it must never know: Raft, the network, clocks. Every write enters through
//! [`Store::apply`] in log order, carrying an opaque marker of the log entry that the
//! store persists in the same atomic batch as the entry's effects, so replaying the
//! log after a crash is idempotent. The same entries applied to the same state give
//! the same state, responses and events on every member.
//!
//! Module map: [`schema`] (on-disk format, the spec), [`keycodec`] (order-preserving
//! key encoding), [`engine`] (RocksDB), [`backlog`] (how far RocksDB's background
//! work is behind), [`view`] (reads at a revision), [`latest`] (the apply path's
//! cache of newest versions), [`live`] (every key in memory, for counting),
//! [`range`] (Range options), [`write`] (one write transaction), [`txn`] (Txn
//! semantics and validation), [`lease`], [`compact`], [`watch`], [`store`] (the
//! front).

pub mod backlog;
pub mod compact;
pub mod engine;
pub mod error;
pub mod head;
pub mod key_range;
pub mod keycodec;
pub mod latest;
pub mod lease;
pub mod live;
pub mod range;
pub mod revision;
pub mod schema;
pub mod store;
pub mod txn;
pub mod view;
pub mod watch;
pub mod write;

pub use backlog::WriteBacklog;
pub use engine::EngineOptions;
pub use error::{ErrorClass, Result, StoreError};
pub use key_range::{prefix_end, KeyRange};
pub use lease::{LeaseInfo, MAX_LEASE_TTL_SECONDS};
pub use store::{Alarm, History, KvHash, Store, INITIAL_REVISION};
pub use watch::session::{WatchCreateError, WatchSession};
pub use watch::{SessionMessage, WatchSpec};
