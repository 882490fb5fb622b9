//! Binary encodings of Raft data shared by the log files and the peer protocol.
//!
//! Entry: `u8 version(=1) | be64 term | be64 leader node | be64 index | u8 kind | body`
//! where kind 0 = blank (no body), 1 = normal (body = protobuf `WriteRequest`),
//! 2 = membership (body = JSON of openraft's `Membership`).
//!
//! Applied marker (stored by the state machine with every applied entry):
//! `u8 version(=1) | u8 has_log_id | be64 term | be64 node | be64 index | JSON StoredMembership`.

use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;
use strake_proto::strakepb::WriteRequest;

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
            WriteRequest::decode(body).map_err(|e| CodecError(format!("entry {}: {e}", log_id.index)))?,
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
    if buf.len() < HEADER_LEN || buf[0] != VERSION {
        return Err(CodecError("entry header invalid".into()));
    }
    Ok(get_u64(buf, 17))
}

/// The JSON of a membership, kept by the state machine between changes.
pub fn membership_json(m: &StoredMembership) -> Vec<u8> {
    serde_json::to_vec(m).expect("membership serialises")
}

/// The marker the store saves with each applied entry.
pub fn encode_applied_marker(last: Option<&LogId>, membership_json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 24 + membership_json.len());
    out.push(VERSION);
    match last {
        Some(id) => {
            out.push(1);
            put_log_id(&mut out, id);
        }
        None => {
            out.push(0);
            out.extend_from_slice(&[0u8; 24]);
        }
    }
    out.extend_from_slice(membership_json);
    out
}

/// Parses a marker.
pub fn decode_applied_marker(buf: &[u8]) -> Result<(Option<LogId>, StoredMembership), CodecError> {
    if buf.len() < 26 || buf[0] != VERSION {
        return Err(CodecError("applied marker invalid".into()));
    }
    let last = (buf[1] == 1).then(|| get_log_id(buf, 2));
    let membership =
        serde_json::from_slice(&buf[26..]).map_err(|e| CodecError(format!("applied marker membership: {e}")))?;
    Ok((last, membership))
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
        let put = WriteRequest {
            request: Some(Request::Put(PutRequest { key: "k".into(), value: "v".into(), ..Default::default() })),
            proposed_at_ms: 5,
        };
        let nodes: BTreeMap<u64, crate::types::MemberNode> = [(7, Default::default())].into();
        let membership = Membership::new(vec![BTreeSet::from([7])], nodes);
        for payload in [EntryPayload::Blank, EntryPayload::Normal(Proposal(put)), EntryPayload::Membership(membership)] {
            let e = Entry { log_id: id, payload };
            let mut buf = Vec::new();
            encode_entry(&e, &mut buf);
            assert_eq!(entry_index(&buf).unwrap(), 42);
            assert_eq!(decode_entry(&buf).unwrap(), e);
        }
        assert!(decode_entry(&[9, 9]).is_err());
    }
}
