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

/// The client-facing RPCs (etcdserverpb, v3lockpb, v3electionpb), generated from the
/// .proto files by the build script, for per-method metrics.
pub mod rpcs {
    /// One RPC: its gRPC service and method names and whether each side streams.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Rpc {
        /// Fully qualified service name, e.g. `etcdserverpb.KV`.
        pub service: &'static str,
        /// Method name, e.g. `Range`.
        pub method: &'static str,
        /// The client sends a stream of messages.
        pub client_streaming: bool,
        /// The server answers with a stream of messages.
        pub server_streaming: bool,
    }

    impl Rpc {
        /// go-grpc-prometheus's `grpc_type` label: `unary`, `client_stream`,
        /// `server_stream` or `bidi_stream`.
        pub fn grpc_type(&self) -> &'static str {
            match (self.client_streaming, self.server_streaming) {
                (false, false) => "unary",
                (true, false) => "client_stream",
                (false, true) => "server_stream",
                (true, true) => "bidi_stream",
            }
        }

        /// The HTTP/2 `:path` of the RPC, `/service/method`.
        pub fn path(&self) -> String {
            format!("/{}/{}", self.service, self.method)
        }
    }

    include!(concat!(env!("OUT_DIR"), "/client_rpcs.rs"));
}
