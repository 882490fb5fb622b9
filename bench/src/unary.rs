//! [`KvConn`]: etcd's KV service over one HTTP/2 connection, driven directly with the
//! `h2` crate.
//!
//! The load generator shares the machine's cores with the server it measures, so
//! every microsecond it spends per request is taken from the server. Through tonic's
//! `Channel` a unary call crosses a tower buffer (a channel to a worker task) and a
//! task spawned per request to stream its body; here a call is one HEADERS and one
//! DATA frame queued from the caller's own task, and the answer is read there too.
//! Only the connection's task sits between the caller and the socket.
//!
//! Answers follow the gRPC wire protocol: a status in the headers (an error without a
//! body) or a body of length-prefixed messages followed by trailers with
//! `grpc-status`; statuses become [`tonic::Status`] exactly as tonic would make them.
//! A lost connection is not re-established: its calls fail with `Unavailable`.

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use strake_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Response, Status};

/// Per-stream and per-connection HTTP/2 receive windows: large enough that a big
/// Range answer is not paced by window updates.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// One HTTP/2 connection to an etcd endpoint, for KV calls. Cheap to clone (clones
/// share the connection).
#[derive(Clone, Debug)]
pub struct KvConn {
    send: h2::client::SendRequest<Bytes>,
    /// `http://host:port`, the prefix of every request URI.
    origin: String,
    max_message_bytes: usize,
}

impl KvConn {
    /// Connects to `url` (`http://host:port`) and starts the connection's task.
    pub async fn connect(url: &str, max_message_bytes: usize) -> anyhow::Result<KvConn> {
        let origin = url.trim_end_matches('/').to_string();
        let authority = origin
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("{url}: only http:// endpoints are supported"))?;
        let tcp = tokio::net::TcpStream::connect(authority).await?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(1 << 20)
            .handshake(tcp)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "bench connection closed");
            }
        });
        Ok(KvConn { send, origin, max_message_bytes })
    }

    /// KV.Range.
    pub async fn range(&mut self, req: RangeRequest) -> Result<Response<RangeResponse>, Status> {
        self.unary("/etcdserverpb.KV/Range", &req).await
    }

    /// KV.Put.
    pub async fn put(&mut self, req: PutRequest) -> Result<Response<PutResponse>, Status> {
        self.unary("/etcdserverpb.KV/Put", &req).await
    }

    /// KV.DeleteRange.
    pub async fn delete_range(&mut self, req: DeleteRangeRequest) -> Result<Response<DeleteRangeResponse>, Status> {
        self.unary("/etcdserverpb.KV/DeleteRange", &req).await
    }

    /// KV.Txn.
    pub async fn txn(&mut self, req: TxnRequest) -> Result<Response<TxnResponse>, Status> {
        self.unary("/etcdserverpb.KV/Txn", &req).await
    }

    /// KV.Compact.
    pub async fn compact(&mut self, req: CompactionRequest) -> Result<Response<CompactionResponse>, Status> {
        self.unary("/etcdserverpb.KV/Compact", &req).await
    }

    /// One unary call: the request message out, one response message or a status back.
    async fn unary<Req: Message, Resp: Message + Default>(
        &mut self,
        path: &str,
        req: &Req,
    ) -> Result<Response<Resp>, Status> {
        let request = http::Request::post(format!("{}{path}", self.origin))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut send = self.send.clone().ready().await.map_err(unavailable)?;
        let (answer, mut stream) = send.send_request(request, false).map_err(unavailable)?;
        stream.send_data(frame(req), true).map_err(unavailable)?;
        let answer = answer.await.map_err(unavailable)?;
        if let Some(status) = Status::from_header_map(answer.headers()).filter(|s| s.code() != tonic::Code::Ok) {
            return Err(status);
        }
        let mut body = answer.into_body();
        let mut bytes = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(unavailable)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if bytes.len() + chunk.len() > self.max_message_bytes + 5 {
                return Err(Status::resource_exhausted(format!(
                    "response larger than {} bytes",
                    self.max_message_bytes
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.map_err(unavailable)?.unwrap_or_default();
        match Status::from_header_map(&trailers) {
            Some(status) if status.code() != tonic::Code::Ok => return Err(status),
            Some(_) => {}
            None => return Err(Status::internal("response ended without grpc-status")),
        }
        decode(bytes.freeze()).map(Response::new)
    }
}

/// A message with its gRPC prefix (uncompressed, big-endian length).
fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode(&mut out).expect("capacity reserved");
    out.freeze()
}

/// The single message of a unary response body.
fn decode<M: Message + Default>(mut body: Bytes) -> Result<M, Status> {
    if body.len() < 5 {
        return Err(Status::internal("response without a message"));
    }
    if body[0] != 0 {
        return Err(Status::internal("compressed responses are not supported"));
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    if body.len() != len {
        return Err(Status::internal(format!("response message of {} bytes, prefix says {len}", body.len())));
    }
    M::decode(body).map_err(|e| Status::internal(format!("cannot decode the response: {e}")))
}

fn unavailable(e: h2::Error) -> Status {
    Status::unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_message_decodes_back() {
        let put = PutRequest { key: b"k".to_vec().into(), value: vec![7; 300].into(), ..Default::default() };
        assert_eq!(decode::<PutRequest>(frame(&put)).unwrap(), put);
    }

    #[test]
    fn a_truncated_or_compressed_body_is_an_error() {
        let mut framed = frame(&PutRequest { key: b"k".to_vec().into(), ..Default::default() }).to_vec();
        assert!(decode::<PutRequest>(Bytes::from(framed[..framed.len() - 1].to_vec())).is_err());
        framed[0] = 1;
        assert!(decode::<PutRequest>(Bytes::from(framed)).is_err());
        assert!(decode::<PutRequest>(Bytes::from_static(&[0, 0])).is_err());
    }
}
