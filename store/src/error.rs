//! The store's error type. Messages that etcd clients match on are etcd's, byte for byte.

/// How an error maps onto a gRPC status code, without this crate knowing gRPC.
/// The server crate turns each class into the matching `tonic::Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is malformed or violates a limit (gRPC `InvalidArgument`).
    InvalidArgument,
    /// A revision outside the retained history (gRPC `OutOfRange`).
    OutOfRange,
    /// A referenced object does not exist (gRPC `NotFound`).
    NotFound,
    /// A quota is exhausted (gRPC `ResourceExhausted`).
    ResourceExhausted,
    /// The request conflicts with existing state (gRPC `FailedPrecondition`).
    FailedPrecondition,
    /// The storage engine failed; the node cannot serve (gRPC `Internal`/`DataLoss`).
    Internal,
}

/// Everything that can go wrong inside the store.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A read or watch below the compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A read at a revision the store has not reached.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put or txn referenced a lease that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant asked for an ID that is taken.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A grant asked for a TTL above the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// `ignore_value`/`ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// An empty key where one is required.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// More operations in one txn than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// The same key is written twice in one txn.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// The NOSPACE alarm is active.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is active.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// RocksDB failed (I/O error, corruption detected by a block checksum, ...).
    #[error("storage engine error: {0}")]
    Engine(String),
    /// Bytes on disk do not decode; names the column family and key.
    #[error("corrupted data in {location}: {detail}")]
    Malformed {
        /// Where the bad bytes are (column family, key).
        location: String,
        /// What is wrong with them.
        detail: String,
    },
    /// A snapshot or data directory cannot be used.
    #[error("{0}")]
    Unusable(String),
}

impl StoreError {
    /// The gRPC-independent class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Compacted | StoreError::FutureRevision => ErrorClass::OutOfRange,
            StoreError::LeaseNotFound => ErrorClass::NotFound,
            StoreError::LeaseExists
            | StoreError::KeyNotFound
            | StoreError::EmptyKey
            | StoreError::ValueProvided
            | StoreError::LeaseProvided
            | StoreError::TooManyOps
            | StoreError::DuplicateKey => ErrorClass::InvalidArgument,
            StoreError::LeaseTtlTooLarge => ErrorClass::OutOfRange,
            StoreError::NoSpace => ErrorClass::ResourceExhausted,
            StoreError::Corrupt => ErrorClass::FailedPrecondition,
            StoreError::Engine(_) | StoreError::Malformed { .. } | StoreError::Unusable(_) => ErrorClass::Internal,
        }
    }

    /// Rebuilds an error from its message, as it crossed a process boundary.
    /// Unknown messages become [`StoreError::Unusable`] carrying the text.
    pub fn from_message(message: &str) -> StoreError {
        const KNOWN: [StoreError; 13] = [
            StoreError::ValueProvided,
            StoreError::LeaseProvided,
            StoreError::Compacted,
            StoreError::FutureRevision,
            StoreError::LeaseNotFound,
            StoreError::LeaseExists,
            StoreError::LeaseTtlTooLarge,
            StoreError::KeyNotFound,
            StoreError::EmptyKey,
            StoreError::TooManyOps,
            StoreError::DuplicateKey,
            StoreError::NoSpace,
            StoreError::Corrupt,
        ];
        KNOWN
            .into_iter()
            .find(|e| e.to_string() == message)
            .unwrap_or_else(|| StoreError::Unusable(message.to_string()))
    }
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Engine(e.into_string())
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
