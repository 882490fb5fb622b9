//! Connections to an etcd v3 cluster: a pool of connections spread over the
//! endpoints. KV calls go over lean HTTP/2 connections ([`KvConn`]); Watch and
//! Lease, which stream, use tonic's generated clients on channels that connect on
//! first use.

use std::time::Duration;

use strake_proto::etcdserverpb::lease_client::LeaseClient;
use strake_proto::etcdserverpb::watch_client::WatchClient;
use tonic::transport::{Channel, Endpoint};

use crate::unary::KvConn;

/// gRPC message size limit the clients accept (etcd's server default is 1.5 MiB in,
/// unlimited out; lists can be large).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 receive window of a Watch/Lease connection (see `Pool::connect`).
const WATCH_CONNECTION_WINDOW: u32 = 16 << 20;
/// HTTP/2 receive window of one Watch/Lease stream.
const WATCH_STREAM_WINDOW: u32 = 1 << 20;

/// A pool of connections: `kv[i]` and `channels[i]` go to the same endpoint.
#[derive(Clone, Debug)]
pub struct Pool {
    kv: Vec<KvConn>,
    channels: Vec<Channel>,
}

/// Normalises "127.0.0.1:2379" or "http://..." to a URL.
pub fn endpoint_url(e: &str) -> String {
    if e.starts_with("http://") || e.starts_with("https://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

impl Pool {
    /// Opens `conns` KV connections round-robin over `endpoints` (and prepares as
    /// many channels for Watch and Lease, connected on first use).
    pub async fn connect(endpoints: &[String], conns: usize) -> anyhow::Result<Pool> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
        let mut kv = Vec::with_capacity(conns.max(1));
        let mut channels = Vec::with_capacity(conns.max(1));
        for i in 0..conns.max(1) {
            let url = endpoint_url(&endpoints[i % endpoints.len()]);
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, KvConn::connect(&url, MAX_MESSAGE_BYTES))
                .await
                .map_err(|_| anyhow::anyhow!("cannot connect to {url}: timed out"))?
                .map_err(|e| anyhow::anyhow!("cannot connect to {url}: {e}"))?;
            kv.push(conn);
            let ch = Endpoint::from_shared(url.clone())?
                .tcp_nodelay(true)
                .connect_timeout(CONNECT_TIMEOUT)
                // Fixed, large windows: h2 (0.4.20 on) sends GOAWAY ENHANCE_YOUR_CALM
                // once the small DATA frames it holds unread exceed half the
                // connection window, and a hundred watch streams on one connection
                // each receive one small frame per event. With the adaptive window
                // (small on loopback) an overloaded watch run lost whole connections.
                .initial_connection_window_size(WATCH_CONNECTION_WINDOW)
                .initial_stream_window_size(WATCH_STREAM_WINDOW)
                .connect_lazy();
            channels.push(ch);
        }
        Ok(Pool { kv, channels })
    }

    /// The channel for client number `i`.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    /// KV connection number `i` (modulo the pool's size).
    pub fn kv(&self, i: usize) -> KvConn {
        self.kv[i % self.kv.len()].clone()
    }

    /// A Watch client on channel `i`.
    pub fn watch(&self, i: usize) -> WatchClient<Channel> {
        WatchClient::new(self.channel(i)).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A Lease client on channel `i`.
    pub fn lease(&self, i: usize) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel(i))
    }
}
