//! Deterministic tests of the Raft log's edge cases on real files: segment rolls,
//! truncation across segments, purge behind segments, reopening after each, and
//! recovery from damage.

use std::sync::mpsc;

use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use strake_proto::etcdserverpb::PutRequest;
use strake_proto::strakepb::{write_request::Request, WriteRequest};
use strake_raft::log::{format, LogStore};
use strake_raft::types::{Entry, Proposal};

fn entry(term: u64, index: u64, value_len: usize) -> Entry {
    let put = PutRequest { key: format!("k{index}").into(), value: vec![b'x'; value_len].into(), ..Default::default() };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Proposal::single(WriteRequest {
            request: Some(Request::Put(put)),
            proposed_at_ms: 0,
        })),
    }
}

fn append(log: &LogStore, entries: Vec<Entry>) {
    let (tx, rx) = mpsc::channel();
    log.append_with(entries, Box::new(move |r| tx.send(r).unwrap())).unwrap();
    rx.recv().unwrap().unwrap();
}

/// Writes entries `0..count` of term 1 (values of `value_len` bytes) to a fresh log in
/// `dir` and closes it.
fn write_entries(dir: &std::path::Path, count: u64, value_len: usize) {
    let log = LogStore::open(dir).unwrap();
    for i in 0..count {
        append(&log, vec![entry(1, i, value_len)]);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn indexes(log: &mut LogStore, rt: &tokio::runtime::Runtime) -> Vec<(u64, u64)> {
    rt.block_on(log.try_get_log_entries(0..u64::MAX))
        .unwrap()
        .into_iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

fn segments(dir: &std::path::Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| format::parse_segment_name(e.unwrap().file_name().to_str().unwrap()))
        .collect();
    v.sort();
    v
}

/// Entries big enough that a few hundred fill a 64 MiB segment.
const BIG: usize = 300 << 10;

#[test]
fn segments_roll_and_reopen_keeps_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    write_entries(dir.path(), 500, BIG);
    assert!(segments(dir.path()).len() >= 2, "the log rolled into several segments");
    let mut log = LogStore::open(dir.path()).unwrap();
    let got = indexes(&mut log, &rt);
    assert_eq!(got.len(), 500);
    assert!(got.iter().enumerate().all(|(i, (_, idx))| *idx == i as u64));
}

#[test]
fn truncate_across_segments_then_append_a_new_term() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut log = LogStore::open(dir.path()).unwrap();
    for i in 0..500 {
        append(&log, vec![entry(1, i, BIG)]);
    }
    let before = segments(dir.path());
    // A new leader overwrites everything from index 100 (inside the first segment).
    rt.block_on(log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 100))).unwrap();
    assert!(segments(dir.path()).len() < before.len(), "later segments are deleted");
    append(&log, (100..110).map(|i| entry(2, i, 10)).collect());
    let got = indexes(&mut log, &rt);
    assert_eq!(got.len(), 110);
    assert_eq!(got[99], (1, 99));
    assert_eq!(got[100], (2, 100));
    drop(log);
    let mut reopened = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut reopened, &rt), got);
}

#[test]
fn purge_deletes_whole_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut log = LogStore::open(dir.path()).unwrap();
    for i in 0..500 {
        append(&log, vec![entry(1, i, BIG)]);
    }
    let segs = segments(dir.path());
    let purge_to = segs[1] + 5;
    let first_path = format::segment_path(dir.path(), segs[0]);
    let first_bytes = std::fs::read(&first_path).unwrap();
    rt.block_on(log.purge(LogId::new(CommittedLeaderId::new(1, 1), purge_to))).unwrap();
    // The purge point is durable at once; the segments below it are deleted by the
    // reclaimer thread shortly after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while segments(dir.path()).contains(&segs[0]) {
        assert!(std::time::Instant::now() < deadline, "the first segment is never deleted");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let state = rt.block_on(log.get_log_state()).unwrap();
    assert_eq!(state.last_purged_log_id.unwrap().index, purge_to);
    let got = indexes(&mut log, &rt);
    assert_eq!(got.first().unwrap().1, purge_to + 1);
    drop(log);
    // A crash before the reclaimer got to a segment leaves it behind: opening deletes it.
    std::fs::write(&first_path, first_bytes).unwrap();
    let mut reopened = LogStore::open(dir.path()).unwrap();
    assert!(!first_path.exists(), "a leftover purged segment is deleted at open");
    let again = indexes(&mut reopened, &rt);
    assert_eq!(again.first().unwrap().1, purge_to + 1);
    assert_eq!(again.last().unwrap().1, 499);
    // Purging everything, then appending, names the new segment after its first entry.
    rt.block_on(reopened.purge(LogId::new(CommittedLeaderId::new(1, 1), 499))).unwrap();
    append(&reopened, vec![entry(1, 500, 10)]);
    drop(reopened);
    let mut last = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut last, &rt), vec![(1, 500)]);
}

#[test]
fn votes_are_durable_and_entries_beyond_the_cache_are_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        let vote = openraft::Vote::new(7, 3);
        rt.block_on(log.save_vote(&vote)).unwrap();
        // More bytes than the entry cache holds: early entries are evicted from memory.
        for i in 0..300 {
            append(&log, vec![entry(1, i, BIG)]);
        }
        let got = indexes(&mut log, &rt);
        assert_eq!(got.len(), 300);
    }
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(rt.block_on(log.read_vote()).unwrap(), Some(openraft::Vote::new(7, 3)));
    let first = rt.block_on(log.try_get_log_entries(0..1)).unwrap();
    match &first[0].payload {
        EntryPayload::Normal(p) => match &p.0.requests[0].request {
            Some(Request::Put(put)) => assert_eq!(put.value.len(), BIG),
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_gap_between_segments_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), 500, BIG);
    let segs = segments(dir.path());
    std::fs::remove_file(dir.path().join(format::segment_name(segs[1]))).unwrap();
    let err = LogStore::open(dir.path()).err().expect("refuses to open").to_string();
    assert!(err.contains("raft log corrupted"), "{err}");
}

#[test]
fn replication_reads_are_bounded_in_bytes_but_never_empty() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut log = LogStore::open(dir.path()).unwrap();
    for i in 1..=40 {
        append(&log, vec![entry(1, i, BIG)]);
    }
    let mut reader = rt.block_on(log.get_log_reader());
    let batch = rt.block_on(reader.limited_get_log_entries(1, 41)).unwrap();
    let budget = strake_raft::log::REPLICATION_BATCH_BYTES;
    assert!(batch.len() > 1 && batch.len() < 40, "{} entries of {BIG} bytes for a {budget}-byte budget", batch.len());
    assert!(batch.len() * BIG <= budget);
    let got: Vec<u64> = batch.iter().map(|e| e.log_id.index).collect();
    assert_eq!(got, (1..=batch.len() as u64).collect::<Vec<_>>());
    // One entry larger than the budget still goes alone.
    append(&log, vec![entry(1, 41, budget + 1)]);
    let alone = rt.block_on(reader.limited_get_log_entries(41, 42)).unwrap();
    assert_eq!(alone.len(), 1);
    // A full read is not limited.
    assert_eq!(rt.block_on(reader.try_get_log_entries(1..42)).unwrap().len(), 41);
}

#[test]
fn segments_are_preallocated_and_a_torn_record_in_that_space_is_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    write_entries(dir.path(), 10, 100);
    let seg = dir.path().join(format::segment_name(segments(dir.path())[0]));
    let bytes = std::fs::read(&seg).unwrap();
    assert_eq!(bytes.len() as u64, format::SEGMENT_TARGET_BYTES, "the segment is preallocated");
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    // A crash in the middle of the next append: a header and part of a payload.
    let mut torn = bytes.clone();
    torn[end..end + 8].copy_from_slice(&[0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef]);
    torn[end + 8..end + 40].fill(b'x');
    std::fs::write(&seg, &torn).unwrap();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut log, &rt).len(), 10, "the torn record is dropped");
        let zeroed = std::fs::read(&seg).unwrap();
        assert_eq!(zeroed.len() as u64, format::SEGMENT_TARGET_BYTES, "the preallocation is kept");
        assert!(zeroed[end..].iter().all(|b| *b == 0), "the torn bytes are zeroed");
        for i in 10..15 {
            append(&log, vec![entry(1, i, 100)]);
        }
    }
    let mut log = LogStore::open(dir.path()).unwrap();
    let got: Vec<u64> = indexes(&mut log, &rt).into_iter().map(|(_, i)| i).collect();
    assert_eq!(got, (0..15).collect::<Vec<_>>());
}

#[test]
fn progress_reports_appends_at_once_and_durability_after_the_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let log = LogStore::open(dir.path()).unwrap();
    let mut progress = log.progress();
    assert_eq!(progress.last_appended(), 0);
    append(&log, vec![entry(1, 1, 10)]);
    assert_eq!(progress.last_appended(), 1);
    // Durable beyond 0: resolves at once; beyond 1: only once entry 2 is synced.
    rt.block_on(progress.wait_durable_beyond(0));
    let (tx, rx) = mpsc::channel();
    log.append_with(vec![entry(1, 2, 10)], Box::new(move |r| tx.send(r).unwrap())).unwrap();
    assert_eq!(progress.last_appended(), 2, "an append counts before its fsync");
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), progress.wait_durable_beyond(1))
            .await
            .expect("entry 2 becomes durable")
    });
    rx.recv().unwrap().unwrap();
    assert_eq!(log.durable_index(), 2);
    let waiting = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_millis(100), progress.wait_durable_beyond(2)).await
    });
    assert!(waiting.is_err(), "nothing beyond entry 2 is durable");
}

/// A truncation must not let the fsync of entries it cut off count for the entries
/// that replace them: an append still queued when the truncation is issued is
/// synced first, and the durable index is then capped at the truncation point.
#[test]
fn a_truncation_caps_durability_even_behind_a_queued_append() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut log = LogStore::open(dir.path()).unwrap();
    append(&log, vec![entry(1, 1, 10), entry(1, 2, 10)]);
    let (tx, rx) = mpsc::channel();
    log.append_with(vec![entry(1, 3, 10), entry(1, 4, 10), entry(1, 5, 10)], Box::new(move |r| tx.send(r).unwrap()))
        .unwrap();
    rt.block_on(log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 3))).unwrap();
    rx.recv().unwrap().unwrap();
    assert_eq!(log.durable_index(), 2, "entries 3..=5 were cut off; nothing beyond 2 is durable");
    append(&log, vec![entry(2, 3, 10)]);
    assert_eq!(log.durable_index(), 3);
    assert_eq!(indexes(&mut log, &rt), vec![(1, 1), (1, 2), (2, 3)]);
}

/// Opening the log checks every record's CRC and entry header but decodes no entry
/// (decoding 293 MiB of bulk-loaded entries took 2.4 s of a restart): entries are
/// decoded when read. A payload that does not decode under a valid CRC (written
/// wrong, not damaged on disk) is then reported for that entry, and the entries
/// around it still read.
#[test]
fn reopening_decodes_entries_only_when_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    write_entries(dir.path(), 3, 100);
    // Rewrite entry 1's body (after its 26-byte header) as bytes that are not a
    // protobuf message, with a CRC that matches them.
    let path = dir.path().join(format::segment_name(0));
    let mut bytes = std::fs::read(&path).unwrap();
    let first_len = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let second = format::RECORD_HEADER_LEN + first_len;
    let len = u32::from_be_bytes(bytes[second..second + 4].try_into().unwrap()) as usize;
    let payload = second + format::RECORD_HEADER_LEN;
    bytes[payload + 26..payload + len].fill(0xff);
    let crc = crc32fast::hash(&bytes[payload..payload + len]);
    bytes[second + 4..second + 8].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let mut log = LogStore::open(dir.path()).unwrap();
    let err = rt.block_on(log.try_get_log_entries(1..2)).unwrap_err();
    assert!(err.to_string().contains("entry 1"), "{err}");
    for i in [0, 2] {
        let got = rt.block_on(log.try_get_log_entries(i..i + 1)).unwrap();
        assert_eq!(got[0].log_id.index, i);
    }
}

/// The byte accounting behind the log's byte budget (`log_retention`): record bytes
/// after an index, and the purge point that keeps a number of bytes up to an index.
#[test]
fn bytes_after_and_purge_point_count_record_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogStore::open(dir.path()).unwrap();
    // Keys k1..k9: entries of equal size.
    append(&log, (1..=9).map(|i| entry(1, i, 1000)).collect());
    let progress = log.progress();
    let total = progress.bytes_after(0);
    let one = total / 9;
    assert_eq!(one * 9, total, "entries of equal size have equal records");
    assert!(one > 1000 + format::RECORD_HEADER_LEN as u64);
    assert_eq!(progress.bytes_after(6), 3 * one);
    assert_eq!(progress.bytes_after(9), 0);
    // Keeping 2.5 entries' bytes up to index 8 keeps 8 and 7; 6 and below may go.
    assert_eq!(progress.purge_point(8, 2 * one + one / 2), Some(6));
    assert_eq!(progress.purge_point(8, 2 * one), Some(6));
    assert_eq!(progress.purge_point(8, 8 * one), None);
    assert_eq!(progress.purge_point(9, 0), Some(9));
}
