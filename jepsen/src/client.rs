//! The harness's etcd client: one connection per process, every call bounded by a
//! timeout, and errors classified the way Jepsen does: a definite failure (`fail`)
//! or an unknown outcome (`info`: it may have happened).

use std::time::Duration;

use strake_proto::etcdserverpb::kv_client::KvClient;
use strake_proto::etcdserverpb::lease_client::LeaseClient;
use strake_proto::v3lockpb::lock_client::LockClient;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// How a failed call is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Certainly had no effect.
    Fail(String),
    /// May or may not have had an effect.
    Info(String),
}

impl CallError {
    /// The error text.
    pub fn message(&self) -> &str {
        match self {
            CallError::Fail(m) | CallError::Info(m) => m,
        }
    }
}

/// Classifies a gRPC error of a *write*. Errors etcd returns before proposing are
/// definite; timeouts, unavailability and leadership changes are not.
pub fn classify_write(status: &tonic::Status) -> CallError {
    let msg = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::PermissionDenied
        | Code::Unauthenticated => CallError::Fail(msg),
        _ => CallError::Info(msg),
    }
}

/// Whether an error message says the member could not be reached at all (refused
/// or reset connection), as opposed to a member that answered or timed out.
pub fn unreachable(message: &str) -> bool {
    message.starts_with("Unavailable") && (message.contains("connect") || message.contains("transport"))
}

/// Reads have no effect: every read error is a failure.
pub fn classify_read(status: &tonic::Status) -> CallError {
    CallError::Fail(format!("{:?}: {}", status.code(), status.message()))
}

/// A KV client for one member with a per-call timeout.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<KvClient<Channel>, String> {
    Ok(KvClient::new(channel(endpoint, timeout).await?))
}

/// A lazily connecting channel to one member with a per-call timeout.
pub async fn channel(endpoint: &str, timeout: Duration) -> Result<Channel, String> {
    let url = if endpoint.starts_with("http") { endpoint.to_string() } else { format!("http://{endpoint}") };
    let ch = Endpoint::from_shared(url.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(ch)
}

/// The clients one harness process uses, all over one channel to one member.
#[derive(Debug, Clone)]
pub struct Clients {
    /// KV service.
    pub kv: KvClient<Channel>,
    /// Lease service.
    pub leases: LeaseClient<Channel>,
    /// v3lock service.
    pub locks: LockClient<Channel>,
}

impl Clients {
    /// Clients for `endpoint` with a per-call timeout.
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Clients, String> {
        let ch = channel(endpoint, timeout).await?;
        Ok(Clients { kv: KvClient::new(ch.clone()), leases: LeaseClient::new(ch.clone()), locks: LockClient::new(ch) })
    }
}
