//! Bad input gets etcd's error (or a clear message) and loses nothing.

mod common;

use std::time::Duration;

use common::{channel, runtime, Member};
use strake_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strake_proto::etcdserverpb::kv_client::KvClient;
use strake_proto::etcdserverpb::request_op::Request;
use strake_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::Code;

fn put_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.to_string().into(),
            value: "v".into(),
            ..Default::default()
        })),
    }
}

#[test]
fn requests_over_limits_are_refused_with_etcds_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    let rt = runtime();
    rt.block_on(async {
        let mut kv = KvClient::new(channel(m.client_port).await)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        kv.put(PutRequest { key: "keep".into(), value: "me".into(), ..Default::default() }).await.unwrap();
        // Over --max-request-bytes (1.5 MiB) but under the gRPC limit: etcd's message.
        let big = PutRequest { key: "big".into(), value: vec![7u8; 1_600_000].into(), ..Default::default() };
        let e = kv.put(big).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(e.message(), "etcdserver: request is too large");
        // Over the gRPC receive limit (max-request-bytes + 512 KiB): refused by the transport.
        let huge = PutRequest { key: "huge".into(), value: vec![7u8; 3_000_000].into(), ..Default::default() };
        let e = kv.put(huge).await.unwrap_err();
        assert_ne!(e.code(), Code::Ok);
        // Too many ops in one txn.
        let txn = TxnRequest { success: (0..129).map(|i| put_op(&format!("k{i}"))).collect(), ..Default::default() };
        let e = kv.txn(txn).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: too many operations in txn request"));
        // The same key twice.
        let txn = TxnRequest { success: vec![put_op("d"), put_op("d")], ..Default::default() };
        let e = kv.txn(txn).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"));
        // Exactly 128 ops are fine, and a compare on a missing value fails (etcd's rule).
        let cmp = Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: "missing".into(),
            target_union: Some(TargetUnion::Value(Default::default())),
            range_end: Default::default(),
        };
        let txn = TxnRequest {
            compare: vec![cmp],
            success: vec![],
            failure: (0..128).map(|i| put_op(&format!("k{i}"))).collect(),
        };
        let r = kv.txn(txn).await.unwrap().into_inner();
        assert!(!r.succeeded);
        // Unknown lease.
        let e = kv
            .put(PutRequest { key: "l".into(), value: "v".into(), lease: 42, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::NotFound, "etcdserver: requested lease not found"));
        // Future revision; a negative revision means "latest", as in etcd.
        let e =
            kv.range(RangeRequest { key: "keep".into(), revision: 1_000_000, ..Default::default() }).await.unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision")
        );
        let r = kv
            .range(RangeRequest { key: "keep".into(), revision: -5, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.kvs.len(), 1);
        // Empty key.
        let e = kv.range(RangeRequest::default()).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
        // ignore_value with a value.
        let e = kv
            .put(PutRequest { key: "keep".into(), value: "x".into(), ignore_value: true, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(e.message(), "etcdserver: value is provided");
        // Nothing was lost or half-applied.
        let r = kv
            .range(RangeRequest { key: "\0".into(), range_end: "\0".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.kvs.len(), 129, "keep + k0..k127");
        assert_eq!(r.header.unwrap().revision, 3);
    });
}

#[test]
fn malformed_protobuf_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    let rt = runtime();
    rt.block_on(async {
        // A gRPC frame whose payload is not a valid RangeRequest.
        let mut grpc = tonic::client::Grpc::new(channel(m.client_port).await);
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Range");
        let codec = RawCodec;
        let e = grpc
            .unary::<Vec<u8>, Vec<u8>, _>(tonic::Request::new(vec![0x0a, 0xff, 0xff, 0xff]), path, codec)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Internal, "{e:?}");
    });
    assert!(m.ctl(&["put", "still", "works"]).contains("OK"));
}

/// A codec that sends raw bytes, to put malformed protobuf on the wire.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut v = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

fn wal_segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let wal = dir.join("data/member/wal");
    let mut v: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

#[test]
fn torn_wal_tail_is_dropped_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    for i in 0..20 {
        m.ctl(&["put", &format!("t{i:02}"), "v"]);
    }
    m.kill9();
    // Simulate a crash in the middle of appending: half a record after the last one,
    // in the segment's preallocated zeros.
    let seg = wal_segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = records_end(&bytes);
    let torn = [0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3];
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&seg, &bytes).unwrap();
    m.start();
    assert!(m.log_text().contains("zeroing a torn record"), "{}", m.log_text());
    let keys = m.ctl(&["get", "t", "--prefix", "--keys-only"]);
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 20);
}

#[test]
fn corrupted_wal_record_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    for i in 0..20 {
        m.ctl(&["put", &format!("c{i:02}"), "value"]);
    }
    m.kill9();
    let seg = wal_segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let middle = records_end(&bytes) / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let out = m.run_to_exit(Duration::from_secs(30));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("raft log corrupted"), "{stderr}");
    assert!(stderr.contains(seg.file_name().unwrap().to_str().unwrap()), "the message names the file: {stderr}");
    assert!(stderr.contains("offset"), "{stderr}");
}

#[test]
fn corrupted_vote_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &[]);
    m.start();
    m.kill9();
    let vote = dir.path().join("data/member/wal/vote");
    let mut bytes = std::fs::read(&vote).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x55;
    std::fs::write(&vote, &bytes).unwrap();
    let out = m.run_to_exit(Duration::from_secs(30));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vote") && stderr.contains("checksum"), "{stderr}");
}

#[test]
fn a_write_over_the_backend_quota_raises_nospace_and_the_data_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::single(dir.path(), &["--quota-backend-bytes", &(4u64 << 20).to_string()]);
    m.start();
    let rt = runtime();
    let refused = rt.block_on(async {
        let mut kv = KvClient::new(channel(m.client_port).await);
        for i in 0..200 {
            let put =
                PutRequest { key: format!("q/{i}").into(), value: vec![b'q'; 100 << 10].into(), ..Default::default() };
            if let Err(e) = kv.put(put).await {
                return Some((i, e));
            }
        }
        None
    });
    let (written, e) = refused.expect("20 MiB of puts fit in a 4 MiB quota");
    assert!(written > 0, "the first put was refused: the quota counts more than the data");
    assert_eq!((e.code(), e.message()), (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"));
    assert!(m.ctl(&["alarm", "list"]).contains("alarm:NOSPACE"));
    // Everything written before the alarm is still there, and further writes are refused.
    let count = m.ctl(&["get", "q/", "--prefix", "--limit=1", "-w", "json"]);
    assert_eq!(common::json(&count)["count"].as_i64(), Some(written as i64), "{count}");
    let out = m.etcdctl(&["put", "more", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("database space exceeded"));
    // Deleting is allowed under NOSPACE (etcd's capped applier).
    assert!(m.ctl(&["del", "q/", "--prefix"]).trim() == written.to_string());
}

/// Where a segment's records end: the rest of the file is preallocated zeros.
fn records_end(segment: &[u8]) -> usize {
    segment.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)
}
