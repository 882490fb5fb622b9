//! The on-disk format of the Raft log. This module is the specification.
//!
//! The log is a directory of segment files named `{first_index:020}.wal`, each a
//! sequence of records:
//!
//! ```text
//! record := be32 length | be32 crc32(payload) | payload (length bytes)
//! payload := an encoded entry (see `codec`)
//! ```
//!
//! Segments are preallocated when a spare is ready: a new segment is then a file of
//! [`SEGMENT_TARGET_BYTES`] zeros, written and synced before its first record, so an
//! `fdatasync` after an append only flushes data (appending to a growing file also
//! has to flush its size and block map, which made every log sync on ext4 about twice
//! as slow). Otherwise (no spare ready yet) a segment is a plain growing file. Records
//! are followed by zeros up to the file's end, or by the end of the file; a zero
//! record header means "no more records" (a payload is never empty).
//!
//! Entries are contiguous: each record's index is the previous one's plus one, across
//! segments. A crash can leave a torn record at the end of the last segment (short
//! header, short payload, or a bad checksum on the final record, each followed by
//! nothing but zeros); recovery zeroes it. Any other damage (a bad checksum followed
//! by more data, a zero header followed by data, a gap in indexes, a torn record in a
//! segment that is not the last) is corruption: the log refuses to open and names
//! the file and offset.
//!
//! Beside the segments: `vote` (the durable vote) and `purged` (the last purged log
//! ID), each `be32 crc32(body) | body` with a JSON body, replaced atomically by
//! writing a temporary file, syncing it, renaming it over the old one and syncing
//! the directory.

use std::path::{Path, PathBuf};

/// Bytes before a record's payload.
pub const RECORD_HEADER_LEN: usize = 8;
/// A segment is closed and a new one started once it exceeds this size; new
/// segments are preallocated to it.
pub const SEGMENT_TARGET_BYTES: u64 = 16 << 20;
/// The largest payload a record may have (a 1.5 MiB request plus slack); larger
/// lengths are corruption.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Appends a record holding `payload` to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Name of the segment whose first entry is `first_index`.
pub fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.wal")
}

/// Parses a segment file name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

/// Path of a segment.
pub fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(segment_name(first_index))
}

/// One record found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLoc {
    /// Offset of the record's header in the file.
    pub offset: u64,
    /// Length of the payload.
    pub len: u32,
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// The records end at this offset; only zeros (preallocated space) follow.
    Zeros(u64),
    /// A torn record starts at this offset; nothing but it and zeros follow.
    TornTail(u64),
}

/// Damage that is not a torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Offset of the bad record.
    pub offset: u64,
    /// What is wrong.
    pub detail: String,
}

/// Finds the records in the bytes of one segment. `last_segment` allows a torn tail.
pub fn scan(bytes: &[u8], last_segment: bool) -> Result<(Vec<RecordLoc>, ScanEnd), Corruption> {
    let mut records = Vec::new();
    let mut at = 0usize;
    let total = bytes.len();
    let torn = |at: usize, detail: &str| -> Result<(Vec<RecordLoc>, ScanEnd), Corruption> {
        Err(Corruption { offset: at as u64, detail: detail.to_string() })
    };
    let zeros_from = |at: usize| bytes[at..].iter().all(|b| *b == 0);
    while at < total {
        let rest = total - at;
        if zeros_from(at) && rest < RECORD_HEADER_LEN {
            return Ok((records, ScanEnd::Zeros(at as u64)));
        }
        if rest < RECORD_HEADER_LEN {
            if last_segment {
                return Ok((records, ScanEnd::TornTail(at as u64)));
            }
            return torn(at, "truncated record header");
        }
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len == 0 && crc == 0 {
            // The preallocated space after the last record.
            if zeros_from(at) {
                return Ok((records, ScanEnd::Zeros(at as u64)));
            }
            return torn(at, "zeroed record header followed by data");
        }
        if len > MAX_RECORD_BYTES {
            if last_segment && at + RECORD_HEADER_LEN + len > total {
                return Ok((records, ScanEnd::TornTail(at as u64)));
            }
            return torn(at, &format!("record length {len} exceeds the maximum"));
        }
        let end = at + RECORD_HEADER_LEN + len;
        if end > total {
            if last_segment {
                return Ok((records, ScanEnd::TornTail(at as u64)));
            }
            return torn(at, "record runs past the end of the segment");
        }
        if crc32fast::hash(&bytes[at + RECORD_HEADER_LEN..end]) != crc {
            if last_segment && zeros_from(end) {
                return Ok((records, ScanEnd::TornTail(at as u64)));
            }
            return torn(at, "checksum mismatch");
        }
        records.push(RecordLoc { offset: at as u64, len: len as u32 });
        at = end;
    }
    Ok((records, ScanEnd::Clean))
}

/// Frames a small metadata file body (`vote`, `purged`).
pub fn frame_meta(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks and strips the frame of a metadata file.
pub fn unframe_meta(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < 4 {
        return None;
    }
    let crc = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
    (crc32fast::hash(&bytes[4..]) == crc).then_some(&bytes[4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_records() -> Vec<u8> {
        let mut b = Vec::new();
        frame(b"hello", &mut b);
        frame(b"world!", &mut b);
        b
    }

    #[test]
    fn clean_scan() {
        let b = two_records();
        let (recs, end) = scan(&b, true).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(end, ScanEnd::Clean);
        assert_eq!(recs[1].offset, 13);
    }

    #[test]
    fn torn_tails_are_recognised_only_at_the_end() {
        let b = two_records();
        // From 17 on the cut keeps a non-zero byte of the second record (its length).
        for cut in 17..b.len() {
            let (recs, end) = scan(&b[..cut], true).unwrap();
            assert_eq!(recs.len(), 1);
            assert_eq!(end, ScanEnd::TornTail(13));
            assert!(scan(&b[..cut], false).is_err());
        }
        let mut bad_last = two_records();
        *bad_last.last_mut().unwrap() ^= 1;
        assert_eq!(scan(&bad_last, true).unwrap().1, ScanEnd::TornTail(13));
    }

    #[test]
    fn preallocated_zeros_end_the_records_in_any_segment() {
        let b = two_records();
        for pad in [1, 7, 8, 100] {
            let mut padded = b.clone();
            padded.resize(b.len() + pad, 0);
            for last in [true, false] {
                let (recs, end) = scan(&padded, last).unwrap();
                assert_eq!(recs.len(), 2);
                assert_eq!(end, ScanEnd::Zeros(b.len() as u64));
            }
        }
        assert_eq!(scan(&[0u8; 64], false).unwrap(), (vec![], ScanEnd::Zeros(0)));
    }

    #[test]
    fn a_torn_record_in_preallocated_space_is_a_tail_only_in_the_last_segment() {
        let b = two_records();
        for cut in 14..b.len() {
            let mut torn = b[..cut].to_vec();
            torn.resize(b.len() + 64, 0);
            let (recs, end) = scan(&torn, true).unwrap();
            assert_eq!(recs.len(), 1);
            if b[13..cut].iter().all(|x| *x == 0) {
                // Only zeros of the record made it: the same as no write at all.
                assert_eq!(end, ScanEnd::Zeros(13), "cut at {cut}");
                continue;
            }
            assert_eq!(end, ScanEnd::TornTail(13), "cut at {cut}");
            assert!(scan(&torn, false).is_err(), "cut at {cut}");
        }
        // Data after a zero header is damage, not preallocated space.
        let mut hole = vec![0u8; 8];
        hole.extend_from_slice(&b);
        hole.resize(hole.len() + 64, 0);
        assert!(scan(&hole, true).unwrap_err().detail.contains("zeroed record header"));
    }

    #[test]
    fn corruption_in_the_middle_is_refused() {
        let mut b = two_records();
        b[9] ^= 0xff; // payload of the first record
        let err = scan(&b, true).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(err.detail.contains("checksum"));
    }

    #[test]
    fn meta_frames() {
        let f = frame_meta(b"{}");
        assert_eq!(unframe_meta(&f), Some(&b"{}"[..]));
        let mut bad = f.clone();
        bad[5] ^= 1;
        assert_eq!(unframe_meta(&bad), None);
    }
}
