//! Wire contracts of strake.
//!
//! * [`etcdserverpb`], [`mvccpb`], [`authpb`], [`v3lockpb`], [`v3electionpb`]: the etcd v3
//!   gRPC API with etcd's package names, service paths and field numbers, so unmodified
//!   etcd clients (etcdctl, kube-apiserver, client libraries) interoperate.
//! * [`strakepb`]: strake's own contracts: what a Raft log entry carries and what
//!   applying it returns.
//!
//! Invariant: nothing here has behaviour; this crate is generated code plus small
//! helpers on the generated types. Every other crate may depend on it.

#![allow(missing_docs)]
#![allow(clippy::all)]

/// MVCC data model: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// Users, roles and permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// The etcd v3 services and their messages.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The v3lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// The v3election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// strake's internal contracts (Raft log payloads, peer protocol).
pub mod strakepb {
    tonic::include_proto!("strakepb");
}
