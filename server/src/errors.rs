//! The one table that maps strake's errors onto gRPC statuses with etcd's codes and
//! exact messages (clients match on the message text).

use strake_raft::RaftError;
use strake_store::{ErrorClass, StoreError};
use tonic::{Code, Status};

/// Errors the server itself raises.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ServerError {
    /// The request exceeds --max-request-bytes.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// A watch or lease stream request that makes no sense.
    #[error("{0}")]
    InvalidArgument(String),
    /// The RPC is not implemented.
    #[error("{0} is not implemented by strake yet")]
    Unimplemented(&'static str),
    /// Local I/O failed.
    #[error("{0}")]
    Internal(String),
    /// A lease TTL above the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// MoveLeader to a member that cannot lead.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// Member operations.
    #[error("etcdserver: {0}")]
    Membership(String),
}

fn class_code(class: ErrorClass) -> Code {
    match class {
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::OutOfRange => Code::OutOfRange,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::ResourceExhausted => Code::ResourceExhausted,
        ErrorClass::FailedPrecondition => Code::FailedPrecondition,
        ErrorClass::Internal => Code::Internal,
    }
}

/// A store error as etcd reports it.
pub fn store_status(e: &StoreError) -> Status {
    Status::new(class_code(e.class()), e.to_string())
}

/// A replication error as etcd reports it.
pub fn raft_status(e: &RaftError) -> Status {
    let code = match e {
        RaftError::NoLeader
        | RaftError::LeaderChanged
        | RaftError::Timeout
        | RaftError::PeerUnreachable
        | RaftError::Stopped => Code::Unavailable,
        RaftError::NotLeader => Code::FailedPrecondition,
        RaftError::Membership(m) if m.contains("member not found") => Code::NotFound,
        RaftError::Membership(_) => Code::FailedPrecondition,
        RaftError::Other(_) => Code::Unavailable,
    };
    Status::new(code, e.to_string())
}

/// A server error as a status.
pub fn server_status(e: &ServerError) -> Status {
    let code = match e {
        ServerError::RequestTooLarge | ServerError::InvalidArgument(_) | ServerError::LeaseTtlTooLarge => {
            Code::InvalidArgument
        }
        ServerError::Unimplemented(_) => Code::Unimplemented,
        ServerError::Internal(_) => Code::Internal,
        ServerError::BadLeaderTransferee => Code::FailedPrecondition,
        ServerError::Membership(m) if m.contains("not found") => Code::NotFound,
        ServerError::Membership(_) => Code::FailedPrecondition,
    };
    let code = if *e == ServerError::LeaseTtlTooLarge { Code::OutOfRange } else { code };
    Status::new(code, e.to_string())
}

/// The status for an error result of an applied entry (it crossed the log as text).
pub fn applied_error_status(err: &strake_proto::strakepb::WriteError) -> Status {
    store_status(&StoreError::from_message(&err.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_codes_and_messages() {
        let s = store_status(&StoreError::Compacted);
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
        assert_eq!(store_status(&StoreError::LeaseNotFound).code(), Code::NotFound);
        assert_eq!(store_status(&StoreError::NoSpace).code(), Code::ResourceExhausted);
        assert_eq!(store_status(&StoreError::TooManyOps).message(), "etcdserver: too many operations in txn request");
        assert_eq!(raft_status(&RaftError::NoLeader).message(), "etcdserver: no leader");
        assert_eq!(server_status(&ServerError::RequestTooLarge).code(), Code::InvalidArgument);
        let e = strake_proto::strakepb::WriteError { code: 0, message: StoreError::DuplicateKey.to_string() };
        assert_eq!(applied_error_status(&e).code(), Code::InvalidArgument);
    }
}
