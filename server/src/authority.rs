//! [`AuthorityFix`]: accepts the `:authority` that etcdctl 3.4 sends on some
//! connections, which HTTP/2 servers in Rust refuse.
//!
//! etcdctl 3.4 (Debian 12's `etcd-client`) dials `endpoint status` and
//! `endpoint hashkv` as `passthrough:///http://host:port`, and its grpc-go then sends
//! `:authority: http://host:port`. etcd's grpc-go server ignores the authority; the
//! `h2` crate finds it malformed and resets the stream with PROTOCOL_ERROR, so those
//! commands failed against strake.
//!
//! This wrapper sits between the socket and hyper and reads the client's frames
//! until the first request's header block is complete. If that block's authority is
//! valid (every other client), the connection is passed through untouched from then
//! on, at no cost. If not, every header block of the connection is decoded (HPACK,
//! keeping the client's dynamic table), the scheme is cut from `:authority`, and the
//! block is encoded again for hyper.
//!
//! Invariants: bytes reach hyper in the order the client sent them; a connection
//! leaves [`Mode::Rewrite`] never, and [`Mode::Passthrough`] is entered only between
//! header blocks, so hyper's HPACK decoder always sees one consistent encoder (the
//! client's, or this wrapper's).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Frames written here stay within the size every HTTP/2 peer must accept.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// The HPACK dynamic table size hyper's decoder allows (the protocol's default).
const HPACK_TABLE_SIZE: usize = 4096;
/// A header block larger than this is left for hyper to refuse.
const MAX_BLOCK_BYTES: usize = 1 << 20;
/// Bytes read from the socket at a time while frames are inspected.
const READ_CHUNK: usize = 16 << 10;

/// What the wrapper does with the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the preface and the first complete header block.
    Sniff,
    /// The first request's authority was malformed: every header block is rewritten.
    Rewrite,
    /// Not HTTP/2, or a valid authority: bytes go straight through.
    Passthrough,
}

/// A header block being gathered from a HEADERS frame and its CONTINUATIONs.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    /// The 5 priority bytes of the HEADERS frame, when it carried them.
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as received, for passing them on unchanged.
    raw: Vec<u8>,
}

/// A client connection whose header blocks' `:authority` is repaired when the
/// client sends a URL there (see the module doc). Writes go straight through.
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    preface_checked: bool,
    /// Read from the socket, not inspected yet.
    input: BytesMut,
    /// Inspected, not handed to the reader yet.
    output: BytesMut,
    block: Option<PendingBlock>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
}

impl<S> AuthorityFix<S> {
    /// Wraps the accepted connection `inner`.
    pub fn new(inner: S) -> AuthorityFix<S> {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HPACK_TABLE_SIZE);
        AuthorityFix {
            inner,
            mode: Mode::Sniff,
            preface_checked: false,
            input: BytesMut::new(),
            output: BytesMut::new(),
            block: None,
            decoder,
            encoder: loona_hpack::Encoder::new(),
        }
    }

    /// Moves what can be inspected from `input` to `output`.
    fn process(&mut self) {
        if !self.preface_checked {
            let n = self.input.len().min(PREFACE.len());
            if self.input[..n] != PREFACE[..n] {
                self.pass_through();
                return;
            }
            if n < PREFACE.len() {
                return;
            }
            self.output.extend_from_slice(&self.input.split_to(PREFACE.len()));
            self.preface_checked = true;
        }
        while self.mode != Mode::Passthrough && self.input.len() >= FRAME_HEADER_LEN {
            let len =
                (usize::from(self.input[0]) << 16) | (usize::from(self.input[1]) << 8) | usize::from(self.input[2]);
            if self.input.len() < FRAME_HEADER_LEN + len {
                return;
            }
            let frame = self.input.split_to(FRAME_HEADER_LEN + len);
            self.frame(&frame);
        }
        if self.mode == Mode::Passthrough {
            self.pass_through();
        }
    }

    /// From now on bytes go straight through.
    fn pass_through(&mut self) {
        if let Some(block) = self.block.take() {
            self.output.extend_from_slice(&block.raw);
        }
        let rest = self.input.split();
        self.output.extend_from_slice(&rest);
        self.mode = Mode::Passthrough;
    }

    fn frame(&mut self, frame: &[u8]) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER_LEN..];
        let continues = self.block.as_ref().is_some_and(|b| b.stream_id == stream_id);
        if kind == TYPE_CONTINUATION && continues {
            let block = self.block.as_mut().expect("checked above");
            block.fragment.extend_from_slice(payload);
            block.raw.extend_from_slice(frame);
        } else if kind == TYPE_HEADERS && self.block.is_none() {
            match parse_headers_payload(flags, payload) {
                Some((priority, fragment)) => {
                    self.block = Some(PendingBlock {
                        stream_id,
                        end_stream: flags & FLAG_END_STREAM != 0,
                        priority,
                        fragment: fragment.to_vec(),
                        raw: frame.to_vec(),
                    })
                }
                None => {
                    // Malformed padding: hyper refuses it; nothing to repair.
                    self.output.extend_from_slice(frame);
                    self.mode = Mode::Passthrough;
                    return;
                }
            }
        } else {
            // Not part of a header block (or a protocol error hyper will report).
            if let Some(block) = self.block.take() {
                self.output.extend_from_slice(&block.raw);
            }
            self.output.extend_from_slice(frame);
            return;
        }
        let complete = flags & FLAG_END_HEADERS != 0;
        let too_large = self.block.as_ref().is_some_and(|b| b.raw.len() > MAX_BLOCK_BYTES);
        if too_large {
            self.mode = Mode::Passthrough;
        } else if complete {
            let block = self.block.take().expect("a block is pending");
            self.finish_block(block);
        }
    }

    /// Decodes a complete header block and passes it on, repaired if need be.
    fn finish_block(&mut self, block: PendingBlock) {
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let decoded = self.decoder.decode_with_cb(&block.fragment, |name, value| {
            headers.push((name.into_owned(), value.into_owned()));
        });
        if decoded.is_err() {
            // Garbage for hyper too; once rewriting, its decoder state is ours,
            // so the raw bytes make it fail the connection, as it should.
            self.output.extend_from_slice(&block.raw);
            self.mode = Mode::Passthrough;
            return;
        }
        if self.mode == Mode::Sniff {
            if headers.iter().all(|(n, v)| n != b":authority" || authority_is_valid(v)) {
                self.output.extend_from_slice(&block.raw);
                self.mode = Mode::Passthrough;
                return;
            }
            tracing::debug!("client sent a URL as :authority; rewriting this connection's header blocks");
            self.mode = Mode::Rewrite;
        }
        let mut repaired: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            if name == b":authority" {
                match repair_authority(&value) {
                    Some(v) => repaired.push((name, v)),
                    None => continue,
                }
            } else {
                repaired.push((name, value));
            }
        }
        let fragment = self.encoder.encode(repaired.iter().map(|(n, v)| (&n[..], &v[..])));
        write_header_frames(&mut self.output, &block, &fragment);
    }
}

/// The priority bytes and header block fragment of a HEADERS payload, or `None`
/// when its padding is malformed.
fn parse_headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut body = payload;
    if flags & FLAG_PADDED != 0 {
        let (&pad, rest) = body.split_first()?;
        body = rest.get(..rest.len().checked_sub(usize::from(pad))?)?;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        priority = Some(body.get(..5)?.try_into().ok()?);
        body = &body[5..];
    }
    Some((priority, body))
}

/// Writes `fragment` as a HEADERS frame (and CONTINUATIONs) for `block`'s stream.
fn write_header_frames(out: &mut BytesMut, block: &PendingBlock, fragment: &[u8]) {
    let first_room = MAX_FRAME_PAYLOAD - if block.priority.is_some() { 5 } else { 0 };
    let (first, mut rest) = fragment.split_at(fragment.len().min(first_room));
    let mut flags = if block.end_stream { FLAG_END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    let priority = block.priority.as_ref().map_or(&[][..], |p| &p[..]);
    put_frame_header(out, priority.len() + first.len(), TYPE_HEADERS, flags, block.stream_id);
    out.put_slice(priority);
    out.put_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        let flags = if after.is_empty() { FLAG_END_HEADERS } else { 0 };
        put_frame_header(out, chunk.len(), TYPE_CONTINUATION, flags, block.stream_id);
        out.put_slice(chunk);
        rest = after;
    }
}

fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id);
}

fn authority_is_valid(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// The authority inside a URL sent as `:authority`, or `None` (drop the header)
/// when there is none.
fn repair_authority(value: &[u8]) -> Option<Vec<u8>> {
    if authority_is_valid(value) {
        return Some(value.to_vec());
    }
    let uri = http::Uri::try_from(value).ok()?;
    Some(uri.authority()?.as_str().as_bytes().to_vec())
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Passthrough {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream: hand over whatever is left and report the end.
                this.pass_through();
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.process();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame_header(&mut out, payload.len(), kind, flags, stream_id);
        out.put_slice(payload);
        out.to_vec()
    }

    fn request_headers(authority: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/etcdserverpb.Maintenance/Status"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    /// A client's bytes: preface, SETTINGS, then for each request a HEADERS frame
    /// (the block split over a CONTINUATION) and a DATA frame.
    fn client_bytes(authority: &str, requests: u32) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        for i in 0..requests {
            let stream = 1 + 2 * i;
            let headers = request_headers(authority);
            let block = encoder.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
            let (a, b) = block.split_at(block.len() / 2);
            out.extend(frame(TYPE_HEADERS, 0, stream, a));
            out.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, stream, b));
            out.extend(frame(0x0, FLAG_END_STREAM, stream, b"\0\0\0\0\x02hi"));
        }
        out
    }

    async fn through_fix(input: Vec<u8>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move {
            // Small writes, so frames arrive split at arbitrary points.
            for chunk in input.chunks(7) {
                client.write_all(chunk).await.unwrap();
            }
            client.shutdown().await.unwrap();
        });
        let mut out = Vec::new();
        AuthorityFix::new(server).read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        out
    }

    /// Splits HTTP/2 bytes (after the preface) into (type, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    #[tokio::test]
    async fn a_url_as_authority_is_cut_to_host_and_port_on_every_request() {
        let out = through_fix(client_bytes("http://127.0.0.1:2379", 3)).await;
        assert!(out.starts_with(PREFACE));
        let mut decoder = loona_hpack::Decoder::new();
        let mut requests = 0;
        for (kind, flags, stream, payload) in frames(&out[PREFACE.len()..]) {
            match kind {
                TYPE_HEADERS => {
                    assert_ne!(flags & FLAG_END_HEADERS, 0, "a small block fits one frame");
                    let headers = decoder.decode(&payload).expect("hyper can decode the rewritten block");
                    assert_eq!(headers, request_headers("127.0.0.1:2379"), "stream {stream}");
                    requests += 1;
                }
                0x0 => assert_eq!(payload, b"\0\0\0\0\x02hi", "DATA passes unchanged"),
                0x4 => assert!(payload.is_empty()),
                other => panic!("unexpected frame type {other}"),
            }
        }
        assert_eq!(requests, 3);
    }

    #[tokio::test]
    async fn a_valid_authority_and_http1_pass_through_byte_for_byte() {
        let h2 = client_bytes("127.0.0.1:2379", 3);
        assert_eq!(through_fix(h2.clone()).await, h2);
        let h1 = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n\r\n".to_vec();
        assert_eq!(through_fix(h1.clone()).await, h1);
        let short = b"PRI".to_vec();
        assert_eq!(through_fix(short.clone()).await, short, "a truncated preface is handed on at the end");
    }

    #[test]
    fn padding_and_priority_are_parsed_and_bad_padding_refused() {
        let payload = [2u8, 1, 2, 3, 4, 5, b'x', b'y', 0, 0];
        let (priority, fragment) = parse_headers_payload(FLAG_PADDED | FLAG_PRIORITY, &payload).unwrap();
        assert_eq!(priority, Some([1, 2, 3, 4, 5]));
        assert_eq!(fragment, b"xy");
        assert!(parse_headers_payload(FLAG_PADDED, &[9, 1, 2]).is_none());
        assert_eq!(repair_authority(b"https://h:1/"), Some(b"h:1".to_vec()));
        assert_eq!(repair_authority(b"h:1"), Some(b"h:1".to_vec()));
        assert_eq!(repair_authority(b"not a url"), None);
    }
}
