//! Connections to an etcd v3 cluster: a pool of gRPC channels spread over the
//! endpoints, with the generated KV, Watch and Lease clients.

use std::time::Duration;

use strake_proto::etcdserverpb::kv_client::KvClient;
use strake_proto::etcdserverpb::lease_client::LeaseClient;
use strake_proto::etcdserverpb::watch_client::WatchClient;
use tonic::transport::{Channel, Endpoint};

/// gRPC message size limit the clients accept (etcd's server default is 1.5 MiB in,
/// unlimited out; lists can be large).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A pool of channels.
#[derive(Clone, Debug)]
pub struct Pool {
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
    /// Opens `conns` channels round-robin over `endpoints`.
    pub async fn connect(endpoints: &[String], conns: usize) -> anyhow::Result<Pool> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
        let mut channels = Vec::with_capacity(conns.max(1));
        for i in 0..conns.max(1) {
            let url = endpoint_url(&endpoints[i % endpoints.len()]);
            let ch = Endpoint::from_shared(url.clone())?
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(5))
                .http2_adaptive_window(true)
                .connect()
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to {url}: {e}"))?;
            channels.push(ch);
        }
        Ok(Pool { channels })
    }

    /// The channel for client number `i`.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    /// A KV client on channel `i`.
    pub fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i)).max_decoding_message_size(MAX_MESSAGE_BYTES)
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
