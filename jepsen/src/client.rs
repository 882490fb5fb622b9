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
/// definite, and so is a connection that could not be opened (the request was never
/// sent; Jepsen's etcd client records a refused connection as `fail` too); timeouts,
/// other unavailability and leadership changes are not.
pub fn classify_write(status: &tonic::Status) -> CallError {
    let msg = format!("{:?}: {}", status.code(), status.message());
    if never_sent(status) {
        return CallError::Fail(msg);
    }
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

/// Whether the call failed while opening its connection, before the request could
/// be written (tonic reports hyper's connector error as "tcp connect error").
fn never_sent(status: &tonic::Status) -> bool {
    status.code() == Code::Unavailable && status.message().starts_with("tcp connect error")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_to_a_closed_port_is_a_definite_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut kv = connect(&format!("127.0.0.1:{port}"), Duration::from_secs(1)).await.unwrap();
        let put = strake_proto::etcdserverpb::PutRequest { key: "k".into(), ..Default::default() };
        let status = kv.put(put).await.expect_err("nothing listens there");
        assert!(matches!(classify_write(&status), CallError::Fail(_)), "{status:?}");
    }

    #[test]
    fn a_timeout_or_a_lost_leader_is_indeterminate() {
        for status in [tonic::Status::deadline_exceeded("timeout"), tonic::Status::unavailable("leader changed")] {
            assert!(matches!(classify_write(&status), CallError::Info(_)));
        }
    }
}
