//! An etcd-compatible member: the etcd v3 gRPC services (KV, Watch, Lease, Cluster,
//! Maintenance, Auth, Lock, Election), HTTP endpoints (/health, /livez, /readyz,
//! /version, /metrics) on the client port, etcd's flags, limits and error strings,
//! over strake-raft and strake-store.
//!
//! Invariant: every write reaches the store through Raft (`Server::propose`); every
//! linearizable read passes a ReadIndex barrier first; request limits are checked
//! before anything is proposed. Errors cross to clients through the single table in
//! [`errors`].

pub mod auth;
pub mod authority;
pub mod auto_compact;
pub mod cluster;
pub mod coalesce;
pub mod config;
pub mod context;
pub mod election;
pub mod errors;
pub mod etcd;
pub mod grpc_metrics;
pub mod http;
pub mod ids;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod metrics;
pub mod recipes;
pub mod serve;
pub mod watch;

pub use config::EtcdConfig;
pub use etcd::{EtcdError, EtcdServer};
