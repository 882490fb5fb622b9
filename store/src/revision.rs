//! Revisions: the logical clock of the keyspace.

/// A point in the store's history. `main` is the revision of a write transaction
/// (one per transaction that changes something); `sub` orders the changes inside it.
/// Ordered by `main`, then `sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The transaction's revision.
    pub main: i64,
    /// The change's position inside the transaction, from 0.
    pub sub: i64,
}

impl Revision {
    /// The first change of transaction `main`.
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }
}
