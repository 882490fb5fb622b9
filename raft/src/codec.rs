//! Binary encodings of Raft data shared by the log files and the peer protocol.
//!
//! Entry: `u8 version(=1) | be64 term | be64 leader node | be64 index | u8 kind | body`
//! where kind 0 = blank (no body), 1 = normal (body = protobuf `WriteBatch`),
//! 2 = membership (body = JSON of openraft's `Membership`).
//!
//! Applied marker (stored by the state machine with every applied *write*, so a
//! crash inside a batch is replayed from the next write of the batch):
//! `u8 version(=2) | u8 has_entry | log id of the entry (3 × be64) | be32 position |
//! be32 batch length | u8 has_previous | log id of the previous entry (3 × be64) |
//! JSON StoredMembership`. The entry counts as applied when `position + 1 == length`;
//! otherwise the previous entry is the last applied one and the entry is partial.

use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;
use strake_proto::strakepb::WriteBatch;

use crate::types::{Entry, LogId, Membership, Proposal, StoredMembership};

const VERSION: u8 = 1;
const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
const HEADER_LEN: usize = 1 + 8 * 3 + 1;

/// Bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

fn put_log_id(out: &mut Vec<u8>, id: &LogId) {
    out.extend_from_slice(&id.leader_id.term.to_be_bytes());
    out.extend_from_slice(&id.leader_id.node_id.to_be_bytes());
    out.extend_from_slice(&id.index.to_be_bytes());
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

fn get_log_id(buf: &[u8], at: usize) -> LogId {
    LogId::new(CommittedLeaderId::new(get_u64(buf, at), get_u64(buf, at + 8)), get_u64(buf, at + 16))
}

/// Appends the encoding of `entry` to `out`.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    out.push(VERSION);
    put_log_id(out, &entry.log_id);
    match &entry.payload {
        EntryPayload::Blank => out.push(KIND_BLANK),
        EntryPayload::Normal(p) => {
            out.push(KIND_NORMAL);
            p.0.encode(out).expect("a Vec grows as needed");
        }
        EntryPayload::Membership(m) => {
            out.push(KIND_MEMBERSHIP);
            serde_json::to_writer(&mut *out, m).expect("membership serialises");
        }
    }
}

/// Decodes an entry.
pub fn decode_entry(buf: &[u8]) -> Result<Entry, CodecError> {
    if buf.len() < HEADER_LEN || buf[0] != VERSION {
        return Err(CodecError(format!("entry header invalid ({} bytes, version {:?})", buf.len(), buf.first())));
    }
    let log_id = get_log_id(buf, 1);
    let body = &buf[HEADER_LEN..];
    let payload = match buf[HEADER_LEN - 1] {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(Proposal(
            WriteBatch::decode(body).map_err(|e| CodecError(format!("entry {}: {e}", log_id.index)))?,
        )),
        KIND_MEMBERSHIP => EntryPayload::Membership(
            serde_json::from_slice::<Membership>(body)
                .map_err(|e| CodecError(format!("entry {} membership: {e}", log_id.index)))?,
        ),
        k => return Err(CodecError(format!("entry {}: unknown kind {k}", log_id.index))),
    };
    Ok(Entry { log_id, payload })
}

/// The index of an encoded entry, without decoding the rest.
pub fn entry_index(buf: &[u8]) -> Result<u64, CodecError> {
    entry_log_id(buf).map(|id| id.index)
}

/// The log ID of an encoded entry, without decoding the rest.
pub fn entry_log_id(buf: &[u8]) -> Result<LogId, CodecError> {
    if buf.len() < HEADER_LEN || buf[0] != VERSION {
        return Err(CodecError(format!("entry header invalid ({} bytes, version {:?})", buf.len(), buf.first())));
    }
    Ok(get_log_id(buf, 1))
}

/// The JSON of a membership, kept by the state machine between changes.
pub fn membership_json(m: &StoredMembership) -> Vec<u8> {
    serde_json::to_vec(m).expect("membership serialises")
}

/// Where the state machine is in the log, as persisted with each applied write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedPosition {
    /// The last entry fully applied.
    pub last_applied: Option<LogId>,
    /// An entry applied only up to (and including) write `.1` of its batch.
    pub partial: Option<(LogId, u32)>,
    /// The membership in effect.
    pub membership: StoredMembership,
}

const MARKER_VERSION: u8 = 2;
const MARKER_HEADER: usize = 1 + 1 + 24 + 4 + 4 + 1 + 24;

/// The marker stored with write `position` (of `length`) of `entry`, whose
/// predecessor in the log is `previous`.
pub fn encode_applied_marker(
    entry: Option<&LogId>,
    position: u32,
    length: u32,
    previous: Option<&LogId>,
    membership_json: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(MARKER_HEADER + membership_json.len());
    out.push(MARKER_VERSION);
    let put_opt = |out: &mut Vec<u8>, id: Option<&LogId>| match id {
        Some(id) => {
            out.push(1);
            put_log_id(out, id);
        }
        None => {
            out.push(0);
            out.extend_from_slice(&[0u8; 24]);
        }
    };
    put_opt(&mut out, entry);
    out.extend_from_slice(&position.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    put_opt(&mut out, previous);
    out.extend_from_slice(membership_json);
    out
}

/// Parses a marker.
pub fn decode_applied_marker(buf: &[u8]) -> Result<AppliedPosition, CodecError> {
    if buf.len() < MARKER_HEADER || buf[0] != MARKER_VERSION {
        return Err(CodecError("applied marker invalid".into()));
    }
    let entry = (buf[1] == 1).then(|| get_log_id(buf, 2));
    let position = u32::from_be_bytes(buf[26..30].try_into().expect("4 bytes"));
    let length = u32::from_be_bytes(buf[30..34].try_into().expect("4 bytes"));
    let previous = (buf[34] == 1).then(|| get_log_id(buf, 35));
    let membership = serde_json::from_slice(&buf[MARKER_HEADER..])
        .map_err(|e| CodecError(format!("applied marker membership: {e}")))?;
    let complete = position + 1 >= length;
    Ok(AppliedPosition {
        last_applied: if complete { entry } else { previous },
        partial: if complete { None } else { entry.map(|e| (e, position)) },
        membership,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use strake_proto::etcdserverpb::PutRequest;
    use strake_proto::strakepb::write_request::Request;

    #[test]
    fn entries_round_trip() {
        let id = LogId::new(CommittedLeaderId::new(3, 7), 42);
        let put = strake_proto::strakepb::WriteRequest {
            request: Some(Request::Put(PutRequest { key: "k".into(), value: "v".into(), ..Default::default() })),
            proposed_at_ms: 5,
        };
        let nodes: BTreeMap<u64, crate::types::MemberNode> = [(7, Default::default())].into();
        let membership = Membership::new(vec![BTreeSet::from([7])], nodes);
        for payload in
            [EntryPayload::Blank, EntryPayload::Normal(Proposal::single(put)), EntryPayload::Membership(membership)]
        {
            let e = Entry { log_id: id, payload };
            let mut buf = Vec::new();
            encode_entry(&e, &mut buf);
            assert_eq!(entry_index(&buf).unwrap(), 42);
            assert_eq!(decode_entry(&buf).unwrap(), e);
        }
        assert!(decode_entry(&[9, 9]).is_err());
    }

    #[test]
    fn markers_tell_complete_from_partial_entries() {
        let prev = LogId::new(CommittedLeaderId::new(2, 1), 9);
        let entry = LogId::new(CommittedLeaderId::new(2, 1), 10);
        let json = membership_json(&StoredMembership::default());
        let done = decode_applied_marker(&encode_applied_marker(Some(&entry), 4, 5, Some(&prev), &json)).unwrap();
        assert_eq!((done.last_applied, done.partial), (Some(entry), None));
        let partial = decode_applied_marker(&encode_applied_marker(Some(&entry), 1, 5, Some(&prev), &json)).unwrap();
        assert_eq!((partial.last_applied, partial.partial), (Some(prev), Some((entry, 1))));
    }
}
