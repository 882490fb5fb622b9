//! The on-disk format of the store: every column family, key and value layout.
//!
//! This module is the specification; no other module builds or parses stored bytes.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `kv` | `memcmp(user_key) ++ be64(!main) ++ be64(!sub)` | [`KvRecord`] |
//! | `rev` | `be64(main) ++ be64(sub)` | raw user key |
//! | `lease` | `be64(lease_id)` | `varint(ttl_seconds)` |
//! | `lease_keys` | `be64(lease_id) ++ raw user key` | empty |
//! | `meta` | one of the `META_*` names | see each constant |
//! | `head` | `memcmp(user_key)` | `be64(main) ++ be64(sub) ++ body ++ be32(crc32 of what precedes)`: the key's newest version; `body` is its [`KvRecord`], or when the record is longer than [`HEAD_WHOLE_RECORD_LIMIT`] the tag `3` and the record's three varints without its value (format 3 wrote the put tag `1` alone) |
//!
//! * `kv` holds every retained version of every key. Revisions are stored inverted, so
//!   for one user key the newest version comes first and "the version visible at
//!   revision R" is a single seek to `memcmp(key) ++ be64(!R)`.
//! * `rev` indexes the same versions by revision for watch replay and compaction;
//!   an entry exists exactly when the `kv` version it names exists.
//! * `head` holds the newest version of every key that has one: whole (a copy of its
//!   `kv` entry, tombstones included) up to [`HEAD_WHOLE_RECORD_LIMIT`], else named
//!   by its revision with the record's metadata (create revision, version, lease), so
//!   a put, which needs those of the key's previous version, reads only the head and
//!   not the value it replaces. Reading at a revision not older than a key's newest version
//!   (the usual case: the current revision) needs only its head (and for a named one
//!   the `kv` entry it names): a single-key read is one point read, and counting and
//!   listing visit one entry per key instead of stepping over every retained version
//!   in `kv`. A head is written
//!   in the same batch as the version it copies; compaction deletes a head only
//!   together with the tombstone it holds (under the store's apply lock, so no newer
//!   version can slip in between).
//!   Heads are rewritten in place in the memtable (RocksDB's `inplace_update_support`
//!   on this column family) when the new value is not longer, so a key updated many
//!   times between flushes usually has one memtable entry, not one per update for
//!   every scan to step over. An iterator may then read a value while it is being
//!   overwritten: the checksum detects such a torn read (the reader checks its own
//!   copy of the bytes), and the reader reads the head again with a point read, which
//!   RocksDB serialises with the update.
//! * `lease_keys` lists, for each lease, the keys whose latest version is attached to it.
//! * Revisions are positive `i64` values stored as `u64`.
//!
//! A `KvRecord` value: one tag byte (`1` put, `2` tombstone), then
//! `varint(create_revision) varint(version) varint(lease as u64)`, then the value bytes.
//! A tombstone carries zeros and no value.

use crate::error::{Result, StoreError};
use crate::keycodec;
use crate::revision::Revision;

/// MVCC versions by key.
pub const CF_KV: &str = "kv";
/// Version index by revision.
pub const CF_REV: &str = "rev";
/// Leases and their granted TTL.
pub const CF_LEASE: &str = "lease";
/// Keys attached to each lease.
pub const CF_LEASE_KEYS: &str = "lease_keys";
/// Small named values (see the `META_*` constants).
pub const CF_META: &str = "meta";
/// The newest version of each key.
pub const CF_HEAD: &str = "head";
/// Every column family, in creation order.
pub const ALL_CFS: [&str; 6] = [CF_KV, CF_REV, CF_LEASE, CF_LEASE_KEYS, CF_META, CF_HEAD];

/// `be64(format version)`: the layout version; a store refuses other versions.
pub const META_FORMAT: &[u8] = b"format";
/// `be64(revision)`: the current (newest) revision.
pub const META_REVISION: &[u8] = b"revision";
/// `be64(revision)`: the compaction revision that was requested most recently.
pub const META_COMPACT_SCHEDULED: &[u8] = b"compact_scheduled";
/// `be64(revision)`: the compaction revision whose physical deletion has finished.
pub const META_COMPACT_FINISHED: &[u8] = b"compact_finished";
/// Opaque bytes from the replication layer describing the last applied log entry.
/// Written in the same atomic batch as the data that entry produced.
pub const META_APPLIED: &[u8] = b"applied";
/// JSON list of active alarms.
pub const META_ALARMS: &[u8] = b"alarms";

/// The layout version written by this code. Version 1 had no `head` column family,
/// version 2 had heads naming the newest version without holding it; opening such a
/// store (re)builds every head (see `head::build`). Version 3 named long records
/// without their metadata; this code still reads such heads, and opening a version-3
/// store only records version 4 (so older binaries, which cannot read the metadata
/// heads written from then on, refuse the store).
pub const FORMAT_VERSION: u64 = 4;
/// The last layout version whose named heads carried no record metadata.
pub const FORMAT_WITHOUT_HEAD_METADATA: u64 = 3;
/// The last layout version without `head`.
pub const FORMAT_WITHOUT_HEADS: u64 = 1;
/// The last layout version whose heads only named the newest version.
pub const FORMAT_WITH_NAMING_HEADS: u64 = 2;

const TAG_PUT: u8 = 1;
const TAG_TOMBSTONE: u8 = 2;
/// Head body tag: a put named by its revision, followed by its record's varints.
const TAG_NAMED: u8 = 3;
const REV_LEN: usize = 16;
/// Length of a head's checksum.
const HEAD_CRC_LEN: usize = 4;

/// Key of a version in `kv`.
pub fn kv_key(user_key: &[u8], rev: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(keycodec::encoded_len(user_key.len()) + REV_LEN);
    keycodec::encode_into(user_key, &mut out);
    push_inverted_rev(&mut out, rev);
    out
}

/// The smallest `kv` key of `user_key` whose version is at or below `rev`
/// (seek target for "visible at rev").
pub fn kv_seek_at(user_key: &[u8], main: i64) -> Vec<u8> {
    kv_key(user_key, Revision { main, sub: i64::MAX })
}

/// The seek target for "versions of keys `>= user_key`" (also the prefix shared by
/// every version of `user_key`).
pub fn kv_lower_bound(user_key: &[u8]) -> Vec<u8> {
    keycodec::encode(user_key)
}

/// The longest encoded [`KvRecord`] (value plus a few bytes) a head holds whole. A
/// head of a longer one names the version instead, and readers fetch it from `kv`.
/// Copying a value into its head costs write volume in proportion to its size, while
/// what it saves (a `kv` lookup per key read) does not grow with it: with every value
/// copied, 2M keys of 2 KiB took twice the disk and loaded slower than in any run
/// without (120 s against 76–99 s, BENCHMARKS.md session 11).
pub const HEAD_WHOLE_RECORD_LIMIT: usize = 1024;

/// The `head` value for version `rev` of a key, whose `kv` value (a [`KvRecord`],
/// encoded) is `record`: the record itself, or when it is longer than
/// [`HEAD_WHOLE_RECORD_LIMIT`] (always a put) the named tag and the record's
/// metadata varints.
pub fn head_value(rev: Revision, record: &[u8]) -> Vec<u8> {
    let named = record.len() > HEAD_WHOLE_RECORD_LIMIT;
    let body = if named { &record[1..1 + varints_len(&record[1..], 3)] } else { record };
    let mut out = Vec::with_capacity(REV_LEN + 1 + body.len() + HEAD_CRC_LEN);
    out.extend_from_slice(&(rev.main as u64).to_be_bytes());
    out.extend_from_slice(&(rev.sub as u64).to_be_bytes());
    if named {
        out.push(TAG_NAMED);
    }
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Length of the first `count` varints of `bytes` (all of `bytes` if it ends first).
fn varints_len(bytes: &[u8], count: usize) -> usize {
    let mut ends = bytes.iter().enumerate().filter(|(_, b)| **b & 0x80 == 0).map(|(i, _)| i + 1);
    ends.nth(count - 1).unwrap_or(bytes.len())
}

/// What a put's [`KvRecord`] says besides its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// See [`KvRecord::create_revision`].
    pub create_revision: i64,
    /// See [`KvRecord::version`].
    pub version: i64,
    /// See [`KvRecord::lease`].
    pub lease: i64,
}

/// What a head holds of the key's newest version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadBody<'a> {
    /// The version's encoded [`KvRecord`] (see [`is_tombstone`], [`KvRecord::decode`]).
    Whole(&'a [u8]),
    /// A put too long to copy: its record is in `kv` only, under the head's revision.
    /// The head carries the record's metadata, except heads written by format 3.
    Named(Option<RecordMeta>),
}

impl HeadBody<'_> {
    /// Whether the newest version is a tombstone (tombstones are always whole).
    pub fn is_tombstone(&self) -> bool {
        matches!(self, HeadBody::Whole(record) if is_tombstone(record))
    }
}

/// What a `head` value read from RocksDB says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRead<'a> {
    /// The revision of the key's newest version and what the head holds of it.
    Newest(Revision, HeadBody<'a>),
    /// The checksum does not match: an iterator read the value while the apply path
    /// rewrote it in place. Read it again with a point read.
    Torn,
}

impl<'a> HeadRead<'a> {
    /// The head of a point read, which cannot be torn (RocksDB serialises it with
    /// in-place updates): a checksum mismatch there is damage (`key` names it).
    pub fn settled(self, key: &[u8]) -> Result<(Revision, HeadBody<'a>)> {
        match self {
            HeadRead::Newest(rev, body) => Ok((rev, body)),
            HeadRead::Torn => Err(malformed(CF_HEAD, key, "head checksum mismatch")),
        }
    }
}

/// Parses a `head` value (`key` is for the error message). A value read through an
/// iterator must be the caller's own copy: checked and parsed bytes must be the same.
pub fn parse_head_value<'a>(key: &[u8], value: &'a [u8]) -> Result<HeadRead<'a>> {
    if value.len() < REV_LEN + 1 + HEAD_CRC_LEN {
        return Err(malformed(CF_HEAD, key, "head too short"));
    }
    let (checked, crc) = value.split_at(value.len() - HEAD_CRC_LEN);
    if crc32fast::hash(checked) != u32::from_be_bytes(crc.try_into().expect("4 bytes")) {
        return Ok(HeadRead::Torn);
    }
    let (rev, body) = checked.split_at(REV_LEN);
    let body = match body {
        [TAG_PUT] => HeadBody::Named(None),
        [TAG_NAMED, meta @ ..] => {
            let mut meta = meta;
            let mut varint =
                || prost::encoding::decode_varint(&mut meta).map_err(|e| malformed(CF_HEAD, key, &e.to_string()));
            let (create_revision, version, lease) = (varint()? as i64, varint()? as i64, varint()? as i64);
            HeadBody::Named(Some(RecordMeta { create_revision, version, lease }))
        }
        [TAG_PUT | TAG_TOMBSTONE, _, ..] => HeadBody::Whole(body),
        _ => return Err(malformed(CF_HEAD, key, "bad head body")),
    };
    let main = u64::from_be_bytes(rev[..8].try_into().expect("8 bytes")) as i64;
    let sub = u64::from_be_bytes(rev[8..].try_into().expect("8 bytes")) as i64;
    Ok(HeadRead::Newest(Revision { main, sub }, body))
}

/// A seek target after every `kv` version and the `head` of the key encoded as
/// `encoded` and before any greater key (encodings are prefix-free, so any greater
/// key differs from `encoded` within its length).
pub fn after_key(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + REV_LEN + 1);
    out.extend_from_slice(encoded);
    out.extend_from_slice(&[0xff; REV_LEN + 1]);
    out
}

/// Whether a stored `kv` value is a tombstone, without decoding it.
pub fn is_tombstone(value: &[u8]) -> bool {
    value.first() == Some(&TAG_TOMBSTONE)
}

/// A `kv` key splits into the encoded user key and the revision.
pub fn split_kv_key(key: &[u8]) -> Result<(&[u8], Revision)> {
    if key.len() < REV_LEN + 9 {
        return Err(malformed(CF_KV, key, "key too short"));
    }
    let (enc, rev) = key.split_at(key.len() - REV_LEN);
    let main = !u64::from_be_bytes(rev[..8].try_into().expect("8 bytes"));
    let sub = !u64::from_be_bytes(rev[8..].try_into().expect("8 bytes"));
    Ok((enc, Revision { main: main as i64, sub: sub as i64 }))
}

/// Decodes the user key of a `kv` key.
pub fn decode_user_key(encoded: &[u8]) -> Result<Vec<u8>> {
    keycodec::decode(encoded).ok_or_else(|| malformed(CF_KV, encoded, "bad key encoding"))
}

fn push_inverted_rev(out: &mut Vec<u8>, rev: Revision) {
    out.extend_from_slice(&(!(rev.main as u64)).to_be_bytes());
    out.extend_from_slice(&(!(rev.sub as u64)).to_be_bytes());
}

/// Key of a revision in `rev`.
pub fn rev_key(rev: Revision) -> [u8; REV_LEN] {
    let mut out = [0u8; REV_LEN];
    out[..8].copy_from_slice(&(rev.main as u64).to_be_bytes());
    out[8..].copy_from_slice(&(rev.sub as u64).to_be_bytes());
    out
}

/// Parses a `rev` key.
pub fn parse_rev_key(key: &[u8]) -> Result<Revision> {
    if key.len() != REV_LEN {
        return Err(malformed(CF_REV, key, "key is not 16 bytes"));
    }
    Ok(Revision {
        main: u64::from_be_bytes(key[..8].try_into().expect("8 bytes")) as i64,
        sub: u64::from_be_bytes(key[8..].try_into().expect("8 bytes")) as i64,
    })
}

/// Key of a lease in `lease`.
pub fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

/// Parses a `lease` key.
pub fn parse_lease_key(key: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| malformed(CF_LEASE, key, "key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes) as i64)
}

/// Key of an attachment in `lease_keys`.
pub fn lease_key_entry(id: i64, user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + user_key.len());
    out.extend_from_slice(&lease_key(id));
    out.extend_from_slice(user_key);
    out
}

/// Encodes a TTL for the `lease` column family.
pub fn encode_lease_ttl(ttl: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    prost::encoding::encode_varint(ttl as u64, &mut out);
    out
}

/// Decodes a TTL from the `lease` column family.
pub fn decode_lease_ttl(key: &[u8], mut value: &[u8]) -> Result<i64> {
    prost::encoding::decode_varint(&mut value).map(|v| v as i64).map_err(|e| malformed(CF_LEASE, key, &e.to_string()))
}

/// A big-endian u64 meta value.
pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Parses a big-endian u64 meta value.
pub fn decode_u64(name: &[u8], value: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| malformed(CF_META, name, "value is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// One stored version of a key: a put or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRecord {
    /// `true` for a tombstone (the key was deleted at this revision).
    pub tombstone: bool,
    /// Revision of the put that created the key's current generation (0 for tombstones).
    pub create_revision: i64,
    /// Number of puts in the current generation, 1 for the creating put (0 for tombstones).
    pub version: i64,
    /// Attached lease, 0 for none.
    pub lease: i64,
    /// The value bytes.
    pub value: bytes::Bytes,
}

impl KvRecord {
    /// Serialises the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 30 + self.value.len());
        out.push(if self.tombstone { TAG_TOMBSTONE } else { TAG_PUT });
        prost::encoding::encode_varint(self.create_revision as u64, &mut out);
        prost::encoding::encode_varint(self.version as u64, &mut out);
        prost::encoding::encode_varint(self.lease as u64, &mut out);
        out.extend_from_slice(&self.value);
        out
    }

    /// Parses a record; `key` is only used to name the bad entry in errors.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<KvRecord> {
        let (tombstone, meta, value) = split_record(key, value)?;
        let RecordMeta { create_revision, version, lease } = meta;
        Ok(KvRecord { tombstone, create_revision, version, lease, value: bytes::Bytes::copy_from_slice(value) })
    }

    /// What an encoded record says besides its value (zeros for a tombstone),
    /// without copying the value.
    pub fn decode_meta(key: &[u8], value: &[u8]) -> Result<RecordMeta> {
        Ok(split_record(key, value)?.1)
    }
}

/// An encoded record's parts: whether it is a tombstone, its metadata, its value.
fn split_record<'a>(key: &[u8], value: &'a [u8]) -> Result<(bool, RecordMeta, &'a [u8])> {
    let bad = |d: &str| malformed(CF_KV, key, d);
    let (&tag, mut rest) = value.split_first().ok_or_else(|| bad("empty value"))?;
    let tombstone = match tag {
        TAG_PUT => false,
        TAG_TOMBSTONE => true,
        _ => return Err(bad("unknown record tag")),
    };
    let mut varint = || prost::encoding::decode_varint(&mut rest).map_err(|e| bad(&e.to_string()));
    let meta = RecordMeta { create_revision: varint()? as i64, version: varint()? as i64, lease: varint()? as i64 };
    Ok((tombstone, meta, rest))
}

/// The error for bytes that do not decode.
pub fn malformed(cf: &str, key: &[u8], detail: &str) -> StoreError {
    StoreError::Malformed { location: format!("column family '{cf}', key {}", hex(key)), detail: detail.to_string() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(64).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_sort_first_and_keys_keep_order() {
        let a1 = kv_key(b"a", Revision { main: 1, sub: 0 });
        let a2 = kv_key(b"a", Revision { main: 2, sub: 0 });
        let b1 = kv_key(b"b", Revision { main: 1, sub: 0 });
        assert!(a2 < a1);
        assert!(a1 < b1);
        assert!(kv_seek_at(b"a", 1) <= a1);
        assert!(kv_seek_at(b"a", 1) > a2);
        let (enc, rev) = split_kv_key(&a2).unwrap();
        assert_eq!(decode_user_key(enc).unwrap(), b"a");
        assert_eq!(rev, Revision { main: 2, sub: 0 });
    }

    #[test]
    fn heads_round_trip_and_a_torn_head_is_detected() {
        let rev = Revision { main: 7, sub: 2 };
        let record = KvRecord { tombstone: false, create_revision: 3, version: 2, lease: 0, value: "old".into() };
        let head = head_value(rev, &record.encode());
        let HeadRead::Newest(got_rev, HeadBody::Whole(got)) = parse_head_value(b"k", &head).unwrap() else {
            panic!("not whole")
        };
        assert_eq!((got_rev, KvRecord::decode(b"k", got).unwrap()), (rev, record));
        // A read that saw part of the old value and part of the new one.
        let newer = KvRecord { tombstone: true, create_revision: 0, version: 0, lease: 0, value: "".into() };
        let newer = head_value(Revision { main: 9, sub: 0 }, &newer.encode());
        let mut torn = head.clone();
        torn[..newer.len()].copy_from_slice(&newer);
        torn[..8].copy_from_slice(&head[..8]);
        assert_eq!(parse_head_value(b"k", &torn).unwrap(), HeadRead::Torn);
        assert!(matches!(HeadRead::Torn.settled(b"k"), Err(StoreError::Malformed { .. })));
        assert!(parse_head_value(b"k", &head[..5]).is_err());
        let mut bad_tag = head_value(rev, &[9, 0, 0, 0]);
        assert!(parse_head_value(b"k", &bad_tag).is_err());
        bad_tag[0] ^= 1;
        assert_eq!(parse_head_value(b"k", &bad_tag).unwrap(), HeadRead::Torn);
    }

    #[test]
    fn a_long_record_is_named_not_copied() {
        let rev = Revision { main: 4, sub: 0 };
        let long = KvRecord { tombstone: false, create_revision: 4, version: 1, lease: 0, value: vec![7; 1024].into() };
        let long = KvRecord { create_revision: 300, version: 2, lease: 1 << 40, ..long };
        let head = head_value(rev, &long.encode());
        assert_eq!(head.len(), 16 + 1 + 2 + 1 + 6 + 4);
        let meta = RecordMeta { create_revision: 300, version: 2, lease: 1 << 40 };
        assert_eq!(parse_head_value(b"k", &head).unwrap(), HeadRead::Newest(rev, HeadBody::Named(Some(meta))));
        // Format 3 named a long record by its put tag alone.
        let mut legacy = head[..16].to_vec();
        legacy.push(TAG_PUT);
        legacy.extend_from_slice(&crc32fast::hash(&legacy).to_be_bytes());
        assert_eq!(parse_head_value(b"k", &legacy).unwrap(), HeadRead::Newest(rev, HeadBody::Named(None)));
        let short = KvRecord { value: vec![7; 1000].into(), ..long };
        assert!(matches!(
            parse_head_value(b"k", &head_value(rev, &short.encode())).unwrap(),
            HeadRead::Newest(_, HeadBody::Whole(_))
        ));
    }

    #[test]
    fn record_round_trip_and_corruption() {
        let r = KvRecord { tombstone: false, create_revision: 5, version: 3, lease: 77, value: "v".into() };
        assert_eq!(KvRecord::decode(b"k", &r.encode()).unwrap(), r);
        assert!(matches!(KvRecord::decode(b"k", &[9, 1, 1, 1]), Err(StoreError::Malformed { .. })));
        assert!(matches!(KvRecord::decode(b"k", &[]), Err(StoreError::Malformed { .. })));
    }
}
