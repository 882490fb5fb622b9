//! The peer transport: Raft RPCs and follower-to-leader requests over tonic, on the
//! members' peer URLs.
//!
//! * [`client`]: openraft's `RaftNetworkFactory` and the calls a follower makes to
//!   the leader (forwarded writes, read-index, lease keep-alive).
//! * [`service`]: the `RaftPeer` gRPC service every member serves.
//! * [`snapshot`]: streaming a checkpoint directory in checksummed chunks.

pub mod client;
pub mod service;
pub mod snapshot;

/// Most bytes a peer message may carry (a batch of entries, a snapshot chunk).
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 << 20;
