//! strake's replication layer: openraft over a checksummed, group-committed log and
//! the MVCC store.
//!
//! What it owns: the openraft type configuration ([`types`]), the binary encoding of
//! entries ([`codec`]), the durable log ([`log`]), the state-machine adapter
//! ([`state_machine`], measured in [`apply_metrics`]), the peer transport
//! ([`transport`]), the lessor (lease deadlines, decided by the leader: [`lessor`])
//! and the node that ties them together ([`node`]): proposals (forwarded from
//! followers in batches: [`forward`]), batched ReadIndex barriers, membership
//! changes, the admission of bulk writes ([`admission`]) and the log's byte budget
//! ([`log_retention`]).
//! openraft's tasks run on their own threads ([`core_runtime`]).
//!
//! Invariants: an entry is acknowledged to openraft only after it is fsynced; votes,
//! truncations and purges are durable before they return; the store records each
//! applied entry's log ID in the same atomic batch as its effects, and the log is
//! purged only behind a flushed store, so a crash replays exactly the missing suffix.
//! It knows nothing of the etcd client API: the server crate speaks gRPC to clients.

// openraft's storage and network traits fix the error types (`StorageError`,
// `RPCError`), which are large; boxing them is not ours to choose.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod apply_metrics;
pub mod codec;
pub mod core_runtime;
pub mod error;
pub mod forward;
pub mod lessor;
pub mod log;
pub mod log_retention;
pub mod membership;
mod metric;
pub mod node;
pub mod state_machine;
pub mod transport;
pub mod types;

pub use admission::AdmissionMetrics;
pub use apply_metrics::ApplyMetrics;
pub use error::{LogError, RaftError, StartError};
pub use forward::ForwardMetrics;
pub use log_retention::LogRetention;
pub use membership::{MembershipChange, MembershipView};
pub use node::{NodeConfig, NodeStatus, RaftNode};
pub use types::MemberNode;
