//! The openraft type configuration of strake and the application types it carries.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use strake_proto::strakepb::{WriteBatch, WriteBatchResult};

/// A member as Raft sees it: etcd's member attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// Human-readable name (`--name`); empty until the member has started.
    pub name: String,
    /// URLs peers use to reach this member.
    pub peer_urls: Vec<String>,
    /// URLs clients use to reach this member; empty until the member has started.
    pub client_urls: Vec<String>,
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

/// The application data of a log entry: a batch of client writes, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal(pub WriteBatch);

impl Proposal {
    /// A batch of one write.
    pub fn single(req: strake_proto::strakepb::WriteRequest) -> Proposal {
        Proposal(WriteBatch { requests: vec![req] })
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} writes", self.0.requests.len())
    }
}

/// What applying a log entry returned: one result per write of the batch (none for
/// blank and membership entries).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied(pub WriteBatchResult);

fn ser_prost<M: Message, S: Serializer>(m: &M, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(&m.encode_to_vec())
}

fn de_prost<'de, M: Message + Default, D: Deserializer<'de>>(d: D) -> Result<M, D::Error> {
    let bytes: Vec<u8> = serde_bytes_compat::deserialize(d)?;
    M::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
}

mod serde_bytes_compat {
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser_prost(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_prost(d).map(Proposal)
    }
}

impl Serialize for Applied {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser_prost(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Applied {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_prost(d).map(Applied)
    }
}

/// Snapshot data: a RocksDB checkpoint directory of the store, or nothing when a
/// snapshot was only "built" (made durable in place) for log compaction.
#[derive(Debug, Clone)]
pub enum SnapshotData {
    /// The store was flushed; openraft only keeps the metadata of built snapshots.
    InPlace,
    /// A checkpoint directory; removed from disk when the last handle is dropped.
    Checkpoint(Arc<CheckpointDir>),
}

/// A directory deleted when dropped.
#[derive(Debug)]
pub struct CheckpointDir {
    /// Where it is.
    pub path: PathBuf,
}

impl Drop for CheckpointDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a snapshot directory");
            }
        }
    }
}

openraft::declare_raft_types!(
    /// strake's Raft types: u64 member IDs (as etcd shows them), etcd member
    /// attributes as nodes, client writes as application data.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// A log ID of strake's Raft.
pub type LogId = openraft::LogId<u64>;
/// A vote of strake's Raft.
pub type Vote = openraft::Vote<u64>;
/// A log entry of strake's Raft.
pub type Entry = openraft::Entry<TypeConfig>;
/// The membership of strake's Raft.
pub type Membership = openraft::Membership<u64, MemberNode>;
/// A membership with the log ID that introduced it.
pub type StoredMembership = openraft::StoredMembership<u64, MemberNode>;
/// The openraft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<u64>;

/// The voter IDs of a membership's last configuration.
pub fn voter_ids(m: &Membership) -> BTreeSet<u64> {
    m.voter_ids().collect()
}
